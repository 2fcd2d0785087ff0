"""The quality attributes that read the detector's boxes or grid structure: mosaic, model, detail, on real photos
(the catalogue of photo_catalogue(), grids and crops of them) with the real detector."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from visearch.services.classification.quality import quality_attributes
from visearch.services.detection.detector import Detector
from visearch.services.detection.service import detection_message

pytestmark = pytest.mark.models

# Scenes: several objects, or one object that does not fill the frame (no close-up, no mosaic).
SCENES = ("photo-dog", "photo-horses", "photo-eagle", "photo-coffee", "photo-motorcycle", "photo-kite", "photo-giraffe")


@pytest.fixture(scope="module")
def images(photos):
    return {p.image_id: Image.open(io.BytesIO(p.read_bytes())).convert("RGB") for p in photos}


@pytest.fixture(scope="module")
def attributes(built_models):
    detector = Detector.from_cache()

    def run(img: Image.Image) -> dict[str, tuple[str, float]]:
        return quality_attributes(img, 0, [detection_message(d) for d in detector.detect([img])[0]])

    run.detector = detector
    return run


def grid(images: list[Image.Image], rows: int, cols: int, side: int = 200) -> Image.Image:
    out = Image.new("RGB", (cols * side, rows * side))
    for i, img in enumerate(images[: rows * cols]):
        out.paste(img.resize((side, side)), ((i % cols) * side, (i // cols) * side))
    return out


def test_mosaic_is_a_grid_of_photos_and_no_single_photo(images, attributes):
    photos = list(images.values())
    assert all(attributes(img)["mosaic"][0] == "no" for img in photos)
    for rows, cols, start in ((2, 2, 0), (3, 3, 4), (2, 2, 8)):
        assert attributes(grid(photos[start:], rows, cols))["mosaic"] == ("yes", 1.0), (rows, cols, start)
    side_by_side = attributes(grid(photos[2:], 1, 2))
    assert side_by_side["collage"][0] == "yes" and side_by_side["mosaic"][0] == "no"


def test_model_needs_a_large_person(images, attributes):
    assert attributes(images["photo-astronaut"])["model"][0] == "yes"  # a person fills the portrait
    for name in ("photo-kite", "photo-dog", "photo-coffee", "photo-eagle", "photo-horses"):
        value, score = attributes(images[name])["model"]
        assert value == "no" and score < 0.35, name  # no person, or small ones (the kite flyers)


def test_detail_is_a_close_up_not_a_scene(images, attributes):
    for name in SCENES:
        assert attributes(images[name])["detail"][0] == "no", name
    close_ups = []
    for name in ("photo-chelsea", "photo-horses", "photo-astronaut", "photo-kite"):
        img = images[name]
        largest = max(attributes.detector.detect([img])[0], key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        x1, y1, x2, y2 = largest.box
        inset_x, inset_y = (x2 - x1) * 0.12, (y2 - y1) * 0.12  # inside the object: the frame cuts it on every side
        crop = img.crop((int(x1 + inset_x), int(y1 + inset_y), int(x2 - inset_x), int(y2 - inset_y)))
        close_ups.append(attributes(crop)["detail"])
    assert all(value == "yes" and score >= 0.6 for value, score in close_ups), close_ups
