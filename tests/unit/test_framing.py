"""visearch.shared.framing.main_region on real photos: an ordinary photo gives None; the same photos pasted
small into rendered shop pages (the screenshot suite's renderer, ``screenshot_page``) give their rectangle
back; thumbnails, pages without a photo and cut-out products give None."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw, ImageFont

from visearch.offline.datasets import fashion_mnist, photo_catalogue
from visearch.offline.evaluation.suites import FONT_FILE, SCREENSHOT_LAYOUTS, screenshot_page
from visearch.shared.framing import main_region

PAGES = {"white": (255, 255, 255), "light-grey": (240, 240, 240)}
SCALES = (0.3, 0.4, 0.5)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT_FILE), size) if FONT_FILE.is_file() else ImageFont.load_default(size)


def _jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    """The real colour photos of photo_catalogue() (scikit-image, scikit-learn, Debian darknet: make setup)."""
    found = {item.image_id: Image.open(io.BytesIO(item.read_bytes())) for item in photo_catalogue()}
    assert len(found) >= 10, "photo_catalogue() found too few photos: install the data packages (make setup)"
    return found


def test_ordinary_photos_are_not_framed(photos):
    """Every catalogue photo as it is (RGB or grey, PNG or JPEG; also re-encoded as JPEG q60) has nothing to
    trim. Textures (brick, grass, gravel), a black-sky photo (hubble) and a disc on black (retina) included."""
    for image_id, image in photos.items():
        assert main_region(image) is None, image_id
        assert main_region(_jpeg(image.convert("RGB"), 60)) is None, image_id


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("scale", SCALES)
def test_photos_pasted_into_a_page_are_found(photos, scale, page):
    """Each photo pasted at 30/40/50 % of the page width into a rendered shop page (header bar with a shop
    name, title, price, button, sometimes a sidebar; photo in the left column, centred or on the right),
    JPEG q90: the box overlaps the pasted rectangle with IoU >= 0.9. The light-grey page matters: kite's and
    china's skies are that grey (the finder must not eat them)."""
    for image_id, image in photos.items():
        for layout in SCREENSHOT_LAYOUTS:
            rng = random.Random(f"framing/{image_id}/{scale}/{layout}/{page}")
            canvas, pasted = screenshot_page(image, rng, scale=scale, layout=layout, page=PAGES[page])
            found = main_region(_jpeg(canvas))
            assert found is not None, (image_id, layout)
            assert _iou(found, pasted) >= 0.9, (image_id, layout, pasted, found)


@pytest.mark.parametrize("layout", SCREENSHOT_LAYOUTS)
def test_dark_page_and_heavier_jpeg(photos, layout):
    """A dark page (light text) and JPEG q60 still give the rectangle, for the photos that are not black at
    their edges (a black-sky photo on a black page has no visible rectangle: hubble is left out)."""
    for image_id in ("photo-astronaut", "photo-coffee", "photo-chelsea", "photo-dog", "photo-kite", "photo-scream"):
        rng = random.Random(f"framing-dark/{image_id}/{layout}")
        canvas, pasted = screenshot_page(photos[image_id], rng, scale=0.4, layout=layout, page=(24, 26, 30))
        found = main_region(_jpeg(canvas, 60))
        assert found is not None and _iou(found, pasted) >= 0.9, (image_id, pasted, found)


def test_the_box_is_in_image_pixels_whatever_the_size(photos):
    """The same page at 1x and 0.5x: boxes scale with the image, stay inside it, x2/y2 exclusive."""
    canvas, pasted = screenshot_page(photos["photo-dog"], random.Random(7), scale=0.4, layout="left")
    for factor in (1.0, 0.5):
        image = canvas.resize((round(canvas.width * factor), round(canvas.height * factor)), Image.LANCZOS)
        found = main_region(image)
        assert found is not None and all(isinstance(v, int) for v in found)
        x1, y1, x2, y2 = found
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        assert _iou(found, tuple(round(v * factor) for v in pasted)) >= 0.9


def test_fashion_mnist_thumbnails_are_never_framed():
    """28 x 28 grey items on black: below the minimum side, None (also as a 280 x 280 upscale: the item
    fills its frame)."""
    for item in fashion_mnist("test", limit=20):
        image = Image.open(io.BytesIO(item.content))
        assert image.size == (28, 28)
        assert main_region(image) is None, item.image_id
        assert main_region(image.resize((280, 280), Image.NEAREST)) is None, item.image_id


@pytest.mark.parametrize("seed", range(6))
def test_a_page_without_a_photo_is_not_framed(seed):
    """The rendered shop page with its photo painted over in the page colour: header bar, shop name, title,
    price, button, sidebar, no photo -> None."""
    blank = Image.new("RGB", (40, 30))
    canvas, pasted = screenshot_page(blank, random.Random(seed), page=PAGES["white"] if seed % 2 else None)
    colour = canvas.getpixel((pasted[0] - 4, pasted[1] - 4))
    ImageDraw.Draw(canvas).rectangle((pasted[0] - 1, pasted[1] - 1, pasted[2], pasted[3]), fill=colour)
    assert main_region(_jpeg(canvas)) is None


def test_a_header_bar_and_text_alone_are_not_framed():
    """A dark header bar with a shop name, a title line and a price on a white page: no region."""
    canvas = Image.new("RGB", (1280, 900), "white")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1280, 80), fill=(33, 37, 41))
    draw.text((32, 22), "ShopNow", font=_font(34), fill="white")
    draw.text((80, 160), "Bestseller - free delivery", font=_font(40), fill=(40, 40, 40))
    draw.text((80, 240), "EUR 49.99", font=_font(56), fill=(200, 16, 46))
    draw.rounded_rectangle((80, 340, 330, 400), radius=8, fill=(0, 122, 204))
    draw.text((110, 352), "Add to cart", font=_font(28), fill="white")
    assert main_region(canvas) is None


@pytest.mark.parametrize("size", [(400, 300), (800, 800), (600, 900)])
def test_a_product_cut_out_on_white_is_not_framed(size):
    """A product-like shape (a red ellipse with a handle and a dark outline) on white filling most of the
    image, as a studio shot: its region does not fill its box -> None."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.ellipse(
        (width * 0.08, height * 0.1, width * 0.8, height * 0.92), fill=(190, 30, 40), outline=(30, 10, 10), width=4
    )
    draw.ellipse((width * 0.7, height * 0.35, width * 0.95, height * 0.65), outline=(190, 30, 40), width=12)
    assert main_region(canvas) is None
    assert main_region(_jpeg(canvas, 70)) is None


def test_uniform_images_and_odd_modes():
    """A blank image, RGBA (alpha over white, as the services decode) and 16-bit grey: no crash, None."""
    assert main_region(Image.new("RGB", (500, 400), "white")) is None
    assert main_region(Image.new("RGBA", (500, 400), (0, 0, 0, 0))) is None
    assert main_region(Image.new("I;16", (500, 400), 1000)) is None
