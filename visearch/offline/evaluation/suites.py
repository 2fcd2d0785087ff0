"""The evaluation suites: real catalogues, queries and relevance judgments.

- ``fashion``: Fashion-MNIST category retrieval. Catalogue: the first N training images; queries: the
  first M test images (held out, never indexed), by image; relevant = same category (grade 1).
- ``neardup``: near-duplicate retrieval. Catalogue: the real photos of ``photo_catalogue()`` plus real
  distractor images (``suites.yaml``) and Fashion-MNIST items; queries: each photo transformed at run
  time with Pillow (tight crop to one object, off-centre crop, small thumbnail, rotation, mirror + 90°,
  colour jitter, grey + heavy JPEG, a text banner, and all of that combined); relevant = the original.
- ``text2image``: text queries written by hand per photo (``suites.yaml``) over the same catalogue as
  ``neardup``, graded relevance (2 = the photo meant, 1 = another that partly fits).
- ``screenshot``: "search with a screenshot" over the same catalogue as ``neardup``: each photo pasted
  small (30-50 % of the page width; less where a tall photo must fit the page's height) into a rendered
  shop page (:func:`screenshot_page`: a light page, a header bar with a shop name, a breadcrumb, a
  product title, a price, an 'Add to cart' button, maybe a grey sidebar), once per layout of
  :data:`SCREENSHOT_LAYOUTS` (photo left, centred, right), as JPEG q90; relevant = the original photo
  (grade 1). The page's words come from fixed shop phrases, never from the catalogue titles (a real
  screenshot comes from another shop with its own wording).
- ``openvocab``: short text queries as users type them (``suites.yaml``), most of them (``open``) naming
  things that are not ImageNet-1k class names (a kind of bird or flower, materials, scenes, weather,
  generic words such as "pet" or "vehicle"), graded relevance. Catalogue: the photos and distractors of
  ``neardup`` plus ``openvocab_photos`` (``suites.yaml``) and the Fashion-MNIST items, indexed image-only
  (:func:`image_only`: no title, description, category, brand, tags or attributes, inline bytes rather
  than a file path) in its own tenant, as a user's own untitled photos: only what the models see in the
  pixels can match a query word.

Every suite is deterministic: the same inputs give the same queries byte for byte.
"""

from __future__ import annotations

import importlib.util
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from visearch.offline.datasets import CatalogueItem, fashion_mnist, photo_catalogue

DATA_FILE = Path(__file__).with_name("suites.yaml")
SUITES = ("fashion", "neardup", "text2image", "screenshot", "openvocab")
OPENVOCAB_TENANT = "eval-openvocab"
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian fonts-dejavu-core
BANNER_TEXT = "SUMMER SALE -50%"
# The image-only ingest chain of a thumbnail catalogue (28 x 28 grey: no objects or text to find),
# with classification for the tag, taxonomy, colour and pHash factors.
FASHION_STAGES = ["embedding", "classification", "indexer"]


@dataclass
class EvalQuery:
    """One query: text or encoded image bytes, and its judgments (image id -> grade, > 0 relevant)."""

    qid: str
    judgments: dict[str, int]
    text: str | None = None
    image: bytes | None = None
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class Suite:
    """A catalogue to ingest (into ``tenant``, through ``stages``; None: the platform's chain) and its queries."""

    name: str
    tenant: str
    catalogue: list[CatalogueItem]
    queries: list[EvalQuery]
    description: str
    stages: list[str] | None = None


@cache
def suite_data() -> dict:
    """The hand-written data of the suites (text queries, distractor titles, object boxes)."""
    return yaml.safe_load(DATA_FILE.read_text())


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT_FILE), size) if FONT_FILE.is_file() else ImageFont.load_default(size)


def banner(image: Image.Image, text: str = BANNER_TEXT) -> Image.Image:
    """``text`` in white bold letters on a dark band across the middle (an advert's overlay)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // 8)
    font = _font(size)
    while size > 12 and draw.textlength(text, font=font) > out.width * 0.9:
        size -= 2
        font = _font(size)
    width = draw.textlength(text, font=font)
    top = out.height // 2 - size
    draw.rectangle((0, top, out.width, top + 2 * size), fill=(20, 20, 20))
    draw.text(((out.width - width) / 2, top + size // 2), text, font=font, fill=(255, 255, 255))
    return out


def jitter(image: Image.Image) -> Image.Image:
    """Strong colour jitter: hue rotated by a quarter turn, saturation x1.6, brightness x0.75, contrast x1.3."""
    h, s, v = image.convert("RGB").convert("HSV").split()
    h = h.point(lambda x: (x + 64) % 256)
    out = Image.merge("HSV", (h, s, v)).convert("RGB")
    out = ImageEnhance.Color(out).enhance(1.6)
    out = ImageEnhance.Brightness(out).enhance(0.75)
    return ImageEnhance.Contrast(out).enhance(1.3)


def _offcentre(im: Image.Image) -> Image.Image:
    return im.crop((im.width * 5 // 100, im.height * 10 // 100, im.width * 60 // 100, im.height * 65 // 100))


def _tight(im: Image.Image, box) -> Image.Image:
    if box:
        return im.crop(tuple(box))
    w, h = im.width, im.height  # textures and scenes without one object: the central 40 %
    return im.crop((w * 30 // 100, h * 30 // 100, w * 70 // 100, h * 70 // 100))


# name -> (image, object box or None) -> transformed image. Relevant for every one: the original photo.
TRANSFORMS: dict[str, Callable[[Image.Image, list | None], Image.Image]] = {
    "crop_object": _tight,
    "crop_offcentre": lambda im, box: _offcentre(im),
    "thumbnail_64px": lambda im, box: im.resize((64, max(1, round(64 * im.height / im.width))), Image.BILINEAR),
    "rotate_25deg": lambda im, box: im.rotate(25, resample=Image.BILINEAR, expand=True, fillcolor=(255, 255, 255)),
    "mirror_rotate_90": lambda im, box: ImageOps.mirror(im).transpose(Image.Transpose.ROTATE_90),
    "colour_jitter": lambda im, box: jitter(im),
    "grey_jpeg_q10": lambda im, box: Image.open(io.BytesIO(_jpeg(ImageOps.grayscale(im), quality=10))),
    "text_banner": lambda im, box: banner(im),
    "combined": lambda im, box: banner(
        jitter(_offcentre(im).rotate(12, resample=Image.BILINEAR, expand=True, fillcolor=(255, 255, 255)))
    ),
}


# The "search with a screenshot" pages: fixed shop wording (never a catalogue title), page and header colours.
SCREENSHOT_LAYOUTS = ("left", "centre", "right")  # where the photo sits; the text goes beside it, or around it
SHOP_NAMES = (
    "ShopNow",
    "Marketo",
    "Bazaar 24",
    "The Corner Shop",
    "Emporium",
    "BuyMore",
    "Dealhouse",
    "Northwind Store",
)
SHOP_TITLES = (
    "Bestseller - free delivery",
    "New arrival - limited stock",
    "Customer favourite",
    "Premium quality - 2 year warranty",
    "Today only: special offer",
    "Top rated in its category",
    "Exclusive online deal",
    "Back in stock - order now",
)
SHOP_LINES = (
    "Free delivery from EUR 25",
    "In stock - ships within 24 h",
    "30-day free returns",
    "Secure payment",
    "4.6 / 5 - 128 reviews",
    "Pay in 3 instalments",
    "Gift wrapping available",
    "Click & collect in store",
)
SHOP_NAV = ("Home", "New", "Sale", "Brands", "Help", "Account", "Basket")
SHOP_MENU = ("Women", "Men", "Kids", "Home & living", "Outdoor", "Electronics", "Gifts", "Outlet")
PAGE_COLOURS = ((255, 255, 255), (248, 248, 248), (242, 242, 240), (250, 248, 243))
HEADER_COLOURS = ((33, 37, 41), (24, 44, 84), (176, 28, 46), (0, 105, 92), (232, 234, 238))
ACCENT_COLOURS = ((232, 93, 4), (0, 122, 204), (34, 139, 34), (200, 16, 46))
INK = (40, 40, 40)
GREY_INK = (120, 120, 120)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _text_block(
    draw: ImageDraw.ImageDraw, x: int, y: int, width: int, text: str, size: int, fill: tuple[int, int, int]
) -> int:
    """``text`` wrapped into ``width`` px at (x, y); returns the y below it."""
    font = _font(size)
    for line in _wrap(draw, text, font, max(width, 1)):
        draw.text((x, y), line, font=font, fill=fill)
        y += round(size * 1.3)
    return y


def _button(draw: ImageDraw.ImageDraw, x: int, y: int, label: str, colour: tuple[int, int, int], size: int = 20) -> int:
    font = _font(size)
    width = round(draw.textlength(label, font=font)) + 2 * size
    draw.rounded_rectangle((x, y, x + width, y + 2 * size), radius=size // 3, fill=colour)
    draw.text((x + size, y + size // 2), label, font=font, fill=(255, 255, 255))
    return x + width


def screenshot_page(
    photo: Image.Image,
    rng: random.Random,
    *,
    scale: float | None = None,
    layout: str | None = None,
    page: tuple[int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A shop's product page with ``photo`` pasted small in it, like a user's screenshot.

    Args:
        photo: any PIL image (converted to RGB).
        rng: every choice the caller leaves open is drawn from it (same state -> same page, pixel for pixel).
        scale: the photo's width as a fraction of the page width (default: uniform in 0.30-0.50); the photo
            shrinks below it when its height (or, beside a text column, its width) would not fit the page.
        layout: one of :data:`SCREENSHOT_LAYOUTS`: the photo in the left column with the text on its right,
            centred with the title above and price below, or on the right (default: drawn from ``rng``).
        page: the page's RGB colour (default: white or a light grey from :data:`PAGE_COLOURS`); on a dark
            one the text is light.
        size: (width, height) of the page in px (default: 1280-1600 x 900-1000).

    Returns:
        (page, box): the RGB page and the pasted photo's rectangle (x1, y1, x2, y2) in page pixels, x2/y2
        exclusive. Around the photo: a header bar (dark, coloured or light grey) with a shop name and menu
        words, a breadcrumb, sometimes a grey sidebar with a category menu, a product title and a price in
        DejaVu Sans Bold, an 'Add to cart' button and short shop lines; sometimes a 1 px grey frame around
        the photo, outside the box.
    """
    width, height = size or (rng.randint(1280, 1600), rng.randint(900, 1000))
    scale = rng.uniform(0.30, 0.50) if scale is None else scale
    layout = layout or rng.choice(SCREENSHOT_LAYOUTS)
    if layout not in SCREENSHOT_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {SCREENSHOT_LAYOUTS}")
    background = page or rng.choice(PAGE_COLOURS)
    canvas = Image.new("RGB", (width, height), background)
    dark = sum(background) < 3 * 128  # a dark page (an option for callers; the suite's pages are light)
    ink, grey_ink = ((235, 235, 235), (160, 160, 160)) if dark else (INK, GREY_INK)
    draw = ImageDraw.Draw(canvas)

    # Header bar: shop name on the left, menu words on the right, sometimes a search field.
    header_h = rng.randint(56, 88)
    header = rng.choice(HEADER_COLOURS)
    header_ink = (255, 255, 255) if sum(header) < 3 * 150 else INK
    draw.rectangle((0, 0, width, header_h), fill=header)
    name_size = round(header_h * 0.42)
    draw.text((32, (header_h - name_size) // 2), rng.choice(SHOP_NAMES), font=_font(name_size), fill=header_ink)
    nav_font = _font(17)
    x = width - 32
    for word in reversed(rng.sample(SHOP_NAV, 4)):
        x -= round(draw.textlength(word, font=nav_font))
        draw.text((x, (header_h - 17) // 2), word, font=nav_font, fill=header_ink)
        x -= 28
    if rng.random() < 0.5:
        draw.rounded_rectangle(
            (width // 3, header_h // 4, width // 3 + width // 4, header_h * 3 // 4), radius=6, fill=(255, 255, 255)
        )
        draw.text((width // 3 + 12, header_h // 2 - 9), "Search products", font=_font(15), fill=GREY_INK)

    left, right = 40, width - 40
    if rng.random() < 0.4:  # a grey category sidebar under the header
        side_w = rng.randint(200, 260)
        delta = rng.randint(12, 22)
        shade = tuple(min(255, c + delta) if dark else max(0, c - delta) for c in background)
        draw.rectangle((0, header_h, side_w, height), fill=shade)
        y = header_h + 30
        for word in rng.sample(SHOP_MENU, 6):
            draw.text((24, y), word, font=_font(17), fill=ink)
            y += 36
        left = side_w + 40
    top = header_h + 16
    crumb = f"Home > {rng.choice(SHOP_MENU)} > Item {rng.randint(1000, 99999)}"
    draw.text((left, top), crumb, font=_font(14), fill=grey_ink)
    top += 34
    accent = rng.choice(ACCENT_COLOURS)
    title = rng.choice(SHOP_TITLES)
    price = f"EUR {rng.randint(9, 299)}.{rng.choice(('99', '95', '49', '00'))}"
    lines = rng.sample(SHOP_LINES, 3)
    title_size = rng.randint(28, 36)

    # The photo's size: `scale` of the page width, shrunk to fit the content area and its layout.
    content_w, content_h = right - left, height - top - 40
    max_w = content_w if layout == "centre" else content_w * 0.62
    max_h = content_h - (title_size * 2 + 110 if layout == "centre" else 0)
    pw = scale * width
    ph = pw * photo.height / photo.width
    shrink = min(1.0, max_w / pw, max_h / ph)
    pw, ph = max(1, round(pw * shrink)), max(1, round(ph * shrink))
    resized = photo.convert("RGB").resize((pw, ph), Image.LANCZOS)

    gap = rng.randint(36, 64)
    if layout == "centre":
        px = left + (content_w - pw) // 2
        y = _text_block(draw, px, top, pw, title, title_size, ink)
        py = y + 12
        below = py + ph + 20
        draw.text((px, below), price, font=_font(32), fill=accent)
        _button(draw, px + round(draw.textlength(price, font=_font(32))) + 32, below - 4, "Add to cart", accent)
        draw.text((px, below + 50), "  |  ".join(lines[:2]), font=_font(15), fill=grey_ink)
    else:
        py = top + rng.randint(0, 24)
        if layout == "left":
            px, tx = left, left + pw + gap
            text_w = right - tx
        else:
            px, tx = right - pw, left
            text_w = px - gap - left
        y = _text_block(draw, tx, py + 8, text_w, title, title_size, ink)
        y = _text_block(draw, tx, y + 8, text_w, lines[0], 16, grey_ink)
        draw.text((tx, y + 16), price, font=_font(rng.randint(32, 40)), fill=accent)
        y += 80
        draw.line((tx, y, tx + text_w, y), fill=(215, 215, 215), width=1)
        end = _button(draw, tx, y + 20, "Add to cart", accent)
        if end + 180 < tx + text_w and rng.random() < 0.5:
            draw.rounded_rectangle((end + 16, y + 20, end + 176, y + 60), radius=6, outline=grey_ink, width=2)
            draw.text((end + 34, y + 30), "Wishlist", font=_font(18), fill=ink)
        y += 90
        for line in lines[1:]:
            y = _text_block(draw, tx, y, text_w, line, 16, grey_ink) + 6
    if rng.random() < 0.3:
        draw.rectangle((px - 1, py - 1, px + pw, py + ph), outline=(210, 210, 210), width=1)
    canvas.paste(resized, (px, py))
    return canvas, (px, py, px + pw, py + ph)


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def distractor_images() -> list[CatalogueItem]:
    """The real distractor images of ``suites.yaml`` that are installed (a missing package gives none)."""
    items = []
    for d in suite_data()["distractors"]:
        path = _package_file(d["package"], d["file"])
        if path is not None:
            items.append(
                CatalogueItem(
                    image_id=d["id"],
                    uri=str(path),
                    title=d["title"],
                    category=d["category"],
                    brand=d["package"],
                    attributes={"source": d["package"], "file": Path(d["file"]).name},
                )
            )
    return items


def openvocab_photos() -> list[CatalogueItem]:
    """The real photos of ``suites.yaml``'s ``openvocab_photos`` that are installed (a missing file gives none)."""
    items = []
    for d in suite_data().get("openvocab_photos") or []:
        path = _package_file(d["package"], d["file"])
        if path is not None:
            items.append(
                CatalogueItem(
                    image_id=d["id"],
                    uri=str(path),
                    title=d["title"],
                    brand=d["package"],
                    attributes={"source": d["package"], "file": Path(d["file"]).name},
                )
            )
    return items


def image_only(items: list[CatalogueItem]) -> list[CatalogueItem]:
    """Copies of ``items`` that carry only their id and encoded bytes (read now): no title, description, brand,
    category, tags, attributes, nor a file path whose name could be matched, like a user's untitled photos."""
    return [CatalogueItem(image_id=item.image_id, content=item.read_bytes()) for item in items]


def photo_suite_catalogue(fashion_distractors: int = 200) -> list[CatalogueItem]:
    """The catalogue of ``neardup`` and ``text2image``: photos, real distractors, Fashion-MNIST items
    (the test split's last ``fashion_distractors`` images, so they never overlap the fashion suite)."""
    fashion = (
        list(fashion_mnist("test", limit=fashion_distractors, offset=10_000 - fashion_distractors))
        if fashion_distractors > 0
        else []
    )
    return [*photo_catalogue(), *distractor_images(), *fashion]


def openvocab_catalogue(fashion_distractors: int = 200) -> list[CatalogueItem]:
    """The catalogue of ``openvocab``: the photos, real distractors and ``openvocab_photos``, then the
    Fashion-MNIST items of :func:`photo_suite_catalogue`, all :func:`image_only`."""
    items = photo_suite_catalogue(fashion_distractors)
    photos = [i for i in items if not i.image_id.startswith("fmnist-")]
    fashion = [i for i in items if i.image_id.startswith("fmnist-")]
    return image_only([*photos, *openvocab_photos(), *fashion])


def fashion_suite(catalogue_size: int = 2000, queries: int = 200) -> Suite:
    """Fashion-MNIST category retrieval by image (see the module doc)."""
    catalogue = list(fashion_mnist("train", limit=catalogue_size))
    by_category: dict[str, dict[str, int]] = {}
    for item in catalogue:
        by_category.setdefault(item.category, {})[item.image_id] = 1
    eval_queries = [
        EvalQuery(q.image_id, by_category.get(q.category, {}), image=q.content, info={"category": q.category})
        for q in fashion_mnist("test", limit=queries)
    ]
    return Suite(
        "fashion",
        "eval-fashion",
        catalogue,
        eval_queries,
        stages=FASHION_STAGES,
        description=f"Fashion-MNIST: {catalogue_size} training images indexed, {queries} test images as "
        "queries, relevant = same category",
    )


def neardup_suite(catalogue: list[CatalogueItem], transforms: list[str] | None = None) -> Suite:
    """Transformed copies of every photo of ``catalogue`` (ids ``photo-*``) as queries; relevant = the original."""
    names = transforms or list(TRANSFORMS)
    unknown = set(names) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transforms {sorted(unknown)}; known: {list(TRANSFORMS)}")
    boxes = suite_data()["objects"]
    queries = []
    for item in catalogue:
        if not item.image_id.startswith("photo-"):
            continue
        original = Image.open(io.BytesIO(item.read_bytes())).convert("RGB")
        for name in names:
            copy = TRANSFORMS[name](original, boxes.get(item.image_id))
            queries.append(
                EvalQuery(
                    f"{item.image_id}/{name}",
                    {item.image_id: 1},
                    image=_jpeg(copy),
                    info={"photo": item.image_id, "transform": name},
                )
            )
    photos = sum(1 for i in catalogue if i.image_id.startswith("photo-"))
    return Suite(
        "neardup",
        "eval-photos",
        catalogue,
        queries,
        description=f"near-duplicates: {photos} photos x {len(names)} transformations, among "
        f"{len(catalogue)} images; relevant = the original",
    )


def text2image_suite(catalogue: list[CatalogueItem]) -> Suite:
    """The hand-written text queries of ``suites.yaml`` over ``catalogue`` (judgments for its images only)."""
    present = {i.image_id for i in catalogue}
    queries = []
    for n, q in enumerate(suite_data()["text2image"]):
        judgments = {i: int(g) for i, g in q["relevant"].items() if i in present}
        if any(g > 0 for g in judgments.values()):
            queries.append(EvalQuery(f"t{n:02d}", judgments, text=q["query"], info={"query": q["query"]}))
    return Suite(
        "text2image",
        "eval-photos",
        catalogue,
        queries,
        description=f"text to image: {len(queries)} hand-written queries, graded relevance, among "
        f"{len(catalogue)} images",
    )


def openvocab_suite(catalogue: list[CatalogueItem]) -> Suite:
    """The ``openvocab`` text queries of ``suites.yaml`` over ``catalogue`` (an :func:`openvocab_catalogue`;
    judgments for its images only, queries left without a relevant image dropped), in its own tenant.
    ``info["open"]`` is "true" for a query that names no ImageNet-1k class, else "false"."""
    present = {i.image_id for i in catalogue}
    queries = []
    for n, q in enumerate(suite_data()["openvocab"]):
        judgments = {i: int(g) for i, g in q["relevant"].items() if i in present}
        if any(g > 0 for g in judgments.values()):
            queries.append(
                EvalQuery(
                    f"o{n:02d}",
                    judgments,
                    text=q["query"],
                    info={"query": q["query"], "open": "true" if q["open"] else "false"},
                )
            )
    opened = sum(q.info["open"] == "true" for q in queries)
    return Suite(
        "openvocab",
        OPENVOCAB_TENANT,
        catalogue,
        queries,
        description=f"open vocabulary: {len(queries)} short text queries ({opened} naming no ImageNet-1k "
        f"class), graded relevance, among {len(catalogue)} untitled images",
    )


def screenshot_suite(catalogue: list[CatalogueItem], layouts: tuple[str, ...] = SCREENSHOT_LAYOUTS) -> Suite:
    """Every photo of ``catalogue`` (ids ``photo-*``) pasted into a rendered shop page, once per layout, as
    JPEG q90 queries; relevant = the original photo (grade 1). Each page is drawn from
    ``random.Random("<image id>/screenshot/<layout>")``, so the queries are the same bytes on every run."""
    queries = []
    for item in catalogue:
        if not item.image_id.startswith("photo-"):
            continue
        original = Image.open(io.BytesIO(item.read_bytes())).convert("RGB")
        for layout in layouts:
            page, box = screenshot_page(original, random.Random(f"{item.image_id}/screenshot/{layout}"), layout=layout)
            info = {
                "photo": item.image_id,
                "layout": layout,
                "page": f"{page.width}x{page.height}",
                "box": ",".join(map(str, box)),
            }
            queries.append(
                EvalQuery(f"{item.image_id}/screenshot_{layout}", {item.image_id: 1}, image=_jpeg(page), info=info)
            )
    photos = sum(1 for i in catalogue if i.image_id.startswith("photo-"))
    return Suite(
        "screenshot",
        "eval-photos",
        catalogue,
        queries,
        description=f"screenshots: {photos} photos x {len(layouts)} shop-page layouts (photo at 30-50 % "
        f"of the page width), among {len(catalogue)} images; relevant = the original",
    )


def build_suites(
    names: list[str],
    fashion_catalogue: int = 2000,
    fashion_queries: int = 200,
    distractors: int = 200,
    transforms: list[str] | None = None,
) -> list[Suite]:
    """The named suites, in :data:`SUITES` order; neardup, text2image and screenshot share one catalogue
    and tenant; openvocab has its own (the same images, untitled) and tenant."""
    unknown = set(names) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; known: {list(SUITES)}")
    photos = photo_suite_catalogue(distractors) if {"neardup", "text2image", "screenshot"} & set(names) else []
    builders = {
        "fashion": lambda: fashion_suite(fashion_catalogue, fashion_queries),
        "neardup": lambda: neardup_suite(photos, transforms),
        "text2image": lambda: text2image_suite(photos),
        "screenshot": lambda: screenshot_suite(photos),
        "openvocab": lambda: openvocab_suite(openvocab_catalogue(distractors)),
    }
    return [builders[name]() for name in SUITES if name in names]
