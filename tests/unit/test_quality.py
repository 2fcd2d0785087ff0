"""Quality attributes on real photos (scikit-image, scikit-learn, Debian darknet) and layouts made from them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from visearch.offline.datasets import fashion_mnist, photo_catalogue
from visearch.services.classification.quality import collage_score, quality_attributes
from visearch.shared.errors import InvalidEventError, InvalidImageError
from visearch.shared.images import decode_image

NEEDED = {
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle",
    "brick",
    "china",
    "dog",
    "eagle",
    "horses",
    "kite",
    "retina",
    "flower",
    "giraffe",
}


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    found = {p.image_id.removeprefix("photo-"): decode_image(p.read_bytes()) for p in photo_catalogue()}
    assert NEEDED <= set(found), f"photos missing (run make setup): {sorted(NEEDED - set(found))}"
    return found


def grid(images: list[Image.Image], cols: int, size=(300, 200), gutter=0, background=(255, 255, 255)) -> Image.Image:
    """Tile photos (cropped to ``size``) into a collage, row by row."""
    rows = -(-len(images) // cols)
    out = Image.new("RGB", (cols * size[0] + (cols - 1) * gutter, rows * size[1] + (rows - 1) * gutter), background)
    for i, img in enumerate(images):
        out.paste(ImageOps.fit(img, size), ((i % cols) * (size[0] + gutter), (i // cols) * (size[1] + gutter)))
    return out


def test_attributes_and_score_ranges(photos):
    attrs = quality_attributes(photos["coffee"], text_lines=2)
    assert set(attrs) == {"blur", "resolution", "has_text", "aspect", "collage", "mosaic", "model", "detail"}
    for value, score in attrs.values():
        assert isinstance(value, str) and 0.0 <= score <= 1.0
    assert attrs["has_text"] == ("yes", pytest.approx(0.4))
    assert attrs["aspect"] == ("landscape", pytest.approx(0.6))  # 600 x 400


def test_real_photos_are_sharp_and_blurring_makes_them_blurry(photos):
    for name in ("astronaut", "coffee", "chelsea", "motorcycle", "china", "dog", "eagle", "giraffe"):
        img = photos[name]
        value, sharp = quality_attributes(img)["blur"]
        assert value == "sharp", name
        # the same photo through a Gaussian blur of 2 px at the 512 px working size
        blurred = img.filter(ImageFilter.GaussianBlur(2 * max(img.size) / 512))
        b_value, b_score = quality_attributes(blurred)["blur"]
        assert b_value == "blurry" and b_score < sharp - 0.4, name
    # more blur, lower score
    img = photos["dog"]
    scores = [quality_attributes(img.filter(ImageFilter.GaussianBlur(r)))["blur"][1] for r in (0.5, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True)


def test_soft_fundus_photo_is_blurry(photos):
    assert quality_attributes(photos["retina"])["blur"][0] == "blurry"  # smooth retina image: 69 < 100


@pytest.mark.parametrize(
    "size, resolution",
    [
        ((320, 240), "low"),
        ((639, 480), "low"),
        ((640, 480), "medium"),
        ((1600, 1200), "medium"),
        ((1920, 1080), "high"),
        ((4000, 3000), "high"),
    ],
)
def test_resolution_by_pixel_count(size, resolution):
    value, score = quality_attributes(Image.new("RGB", size, (128, 128, 128)))["resolution"]
    assert value == resolution
    assert 0 < score <= 1


def test_resolution_score_grows_with_pixels():
    scores = [quality_attributes(Image.new("RGB", (s, s)))["resolution"][1] for s in (50, 100, 300, 1000, 3163, 5000)]
    assert scores[0] == 0.0 and scores[1] == 0.0 and scores[-2] == pytest.approx(1.0, abs=1e-3) and scores[-1] == 1.0
    assert scores == sorted(scores)


@pytest.mark.parametrize(
    "size, aspect",
    [
        ((300, 300), "square"),
        ((325, 300), "square"),
        ((400, 300), "landscape"),
        ((300, 400), "portrait"),
        ((599, 300), "landscape"),
        ((600, 300), "panorama"),
        ((3000, 800), "panorama"),
    ],
)
def test_aspect(size, aspect):
    value, score = quality_attributes(Image.new("RGB", size))["aspect"]
    assert value == aspect
    assert score == pytest.approx(size[0] / (size[0] + size[1]), abs=1e-4)


@pytest.mark.parametrize(
    "lines, expected", [(0, ("no", 0.0)), (1, ("yes", 0.2)), (5, ("yes", 1.0)), (12, ("yes", 1.0))]
)
def test_has_text_from_ocr_line_count(lines, expected):
    assert quality_attributes(Image.new("RGB", (64, 64)), text_lines=lines)["has_text"] == expected


def test_bad_inputs():
    with pytest.raises(InvalidEventError) as err:
        quality_attributes(Image.new("RGB", (64, 64)), text_lines=-1)
    assert err.value.reason == "invalid_text_lines"
    with pytest.raises(InvalidImageError):
        quality_attributes(Image.new("RGB", (0, 0)))


def test_real_photos_are_not_collages(photos):
    for name, img in photos.items():
        assert quality_attributes(img)["collage"] == ("no", 0.0), name


def test_a_straight_line_inside_one_picture_is_not_a_seam(photos):
    """The brick paving has a joint running straight through it (a candidate seam covering ~99 % of the
    height); the same texture on both sides keeps it from counting."""
    assert collage_score(np.asarray(photos["brick"].convert("RGB"))) == 0.0


@pytest.mark.parametrize(
    "names, cols, gutter, background",
    [
        (("coffee", "chelsea", "dog", "eagle"), 2, 0, (255, 255, 255)),  # 2 x 2 grid, no gutter
        (("astronaut", "rocket"), 2, 0, (255, 255, 255)),  # side by side
        (("china", "flower"), 1, 0, (255, 255, 255)),  # stacked
        (("horses", "kite"), 2, 10, (255, 255, 255)),  # white gutter
        (("motorcycle", "giraffe", "coffee", "dog", "chelsea", "china"), 3, 4, (0, 0, 0)),  # 3 x 2, black gutter
    ],
)
def test_grids_of_real_photos_are_collages(photos, names, cols, gutter, background):
    value, score = quality_attributes(grid([photos[n] for n in names], cols, gutter=gutter, background=background))[
        "collage"
    ]
    assert value == "yes" and score >= 0.8


def test_thumbnails_are_not_checked_for_collage():
    """Fashion-MNIST's 28 x 28 garments have straight outlines across the frame: too small to judge."""
    for item in fashion_mnist("test", limit=20):
        assert quality_attributes(decode_image(item.read_bytes()))["collage"] == ("no", 0.0)
