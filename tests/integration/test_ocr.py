"""OCR with the real PP-OCR models (built by `visearch models build`) on real photos.

Text is drawn onto scikit-image, scikit-learn and Debian darknet photos with DejaVu TrueType fonts
(Sans, Serif, Mono, Bold; 20-44 px), light on dark and dark on light, one line tilted by 13 degrees,
one by -10 and one upside down; plus a real brand name in a real photo and photos with no text.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visearch.offline.models.build_ocr import DrawnLine, char_errors, draw_lines, edit_distance
from visearch.services.ocr.reader import TextLine, TextReader
from visearch.shared.config import OcrSettings
from visearch.shared.models.registry import OCR_DET_MODEL, OCR_REC_MODEL

pytestmark = [pytest.mark.models]

MIN_CHAR_ACCURACY = 0.95  # measured 1.000 (case-sensitive) on this machine; margin for other CPUs/BLAS

SCENES = {
    "photo-astronaut": [
        DrawnLine("Space Mission 2025", (20, 20), "DejaVuSans-Bold.ttf", 34),
        DrawnLine("Houston we have liftoff", (30, 440), "DejaVuSerif.ttf", 22, light_on_dark=True),
    ],
    "photo-china": [
        DrawnLine("Temple Gardens", (30, 30), "DejaVuSerif-Bold.ttf", 40, light_on_dark=True),
        DrawnLine("Tickets sold here", (300, 130), "DejaVuSans.ttf", 28, angle=13),
        DrawnLine("Open daily 9am to 5pm", (40, 340), "DejaVuSansMono.ttf", 24),
    ],
    "photo-dog": [
        DrawnLine("Good Boy Rescue", (30, 20), "DejaVuSans-Bold.ttf", 44),
        DrawnLine("Limited Edition", (430, 130), "DejaVuSans.ttf", 30, angle=180),
        DrawnLine("Adopt a friend today", (380, 470), "DejaVuSerif.ttf", 26, light_on_dark=True),
        DrawnLine("SKU 88-1043", (30, 530), "DejaVuSansMono-Bold.ttf", 20),
    ],
    "photo-eagle": [
        DrawnLine("Birds of Prey Exhibit", (40, 40), "DejaVuSans.ttf", 30, angle=-10),
        DrawnLine("Members free entry", (420, 440), "DejaVuSerif-Bold.ttf", 24),
    ],
}
NO_TEXT_PHOTOS = ["photo-chelsea", "photo-eagle", "photo-astronaut"]


@pytest.fixture(scope="module")
def reader() -> TextReader:
    """The reader over the built models; a missing model raises ModelNotBuiltError (a failure)."""
    return TextReader.from_cache()


@pytest.fixture(scope="module")
def scenes(photos):
    """image id -> (photo with text drawn, drawn lines, pasted tile boxes)."""
    by_id = {p.image_id: p for p in photos}
    out = {}
    for image_id, lines in SCENES.items():
        photo = Image.open(io.BytesIO(by_id[image_id].read_bytes()))
        image, boxes = draw_lines(photo, lines)
        out[image_id] = (image, lines, boxes)
    return out


@pytest.fixture(scope="module")
def reads(reader, scenes):
    """image id -> (lines read from that image alone, seconds per stage)."""
    out = {}
    for image_id, (image, _, _) in scenes.items():
        timings: dict[str, float] = {}
        out[image_id] = (reader.read([image], timings=timings)[0], timings)
    return out


def _closest(text: str, found: list[TextLine]) -> TextLine | None:
    return min(found, key=lambda line: edit_distance(text, line.text), default=None)


def test_reads_drawn_text_with_high_character_accuracy(scenes, reads):
    """Character accuracy over all drawn lines (each matched to its closest read line) >= 0.95, case-sensitive."""
    truth, per_image_ms = [], []
    errors = 0
    for image_id, (image, lines, _) in scenes.items():
        found, timings = reads[image_id]
        per_image_ms.append({k: v * 1000 for k, v in timings.items()})
        texts = [line.text for line in found]
        image_errors = char_errors([d.text for d in lines], texts)
        errors += image_errors
        truth += [d.text for d in lines]
        print(
            f"{image_id} {image.size}: {texts}, {image_errors} char errors "
            f"(det {timings['det'] * 1000:.0f} ms, cls {timings['cls'] * 1000:.0f} ms, rec {timings['rec'] * 1000:.0f} ms)"
        )
        assert all(0.0 <= line.score <= 1.0 for line in found)
    accuracy = 1 - errors / sum(len(t) for t in truth)
    mean = {k: np.mean([t[k] for t in per_image_ms]) for k in ("det", "cls", "rec")}
    print(
        f"character accuracy {accuracy:.4f} over {len(truth)} lines, {sum(map(len, truth))} chars; "
        f"mean per image: det {mean['det']:.0f} ms, cls {mean['cls']:.0f} ms, rec {mean['rec']:.0f} ms"
    )
    assert accuracy >= MIN_CHAR_ACCURACY


def test_polygons_are_in_original_pixels_and_lines_in_reading_order(scenes, reads):
    """Each drawn line's read polygon has its centre inside the drawn tile, lies inside the image, and
    lines come top to bottom."""
    for image_id, (image, lines, boxes) in scenes.items():
        found = reads[image_id][0]
        matched = []
        for drawn, (left, top, right, bottom) in zip(lines, boxes):
            line = _closest(drawn.text, found)
            assert line is not None and edit_distance(drawn.text, line.text) <= 2, (image_id, drawn.text, found)
            poly = np.array(line.polygon)
            assert poly.shape == (4, 2)
            cx, cy = poly.mean(axis=0)
            assert left <= cx <= right and top <= cy <= bottom, (
                image_id,
                drawn.text,
                line.polygon,
                (left, top, right, bottom),
            )
            assert (poly >= 0).all() and (poly[:, 0] <= image.width).all() and (poly[:, 1] <= image.height).all()
            # clockwise from top-left: top edge above the bottom edge, left edge left of the right edge
            assert (
                poly[0, 1] < poly[3, 1]
                and poly[1, 1] < poly[2, 1]
                and poly[0, 0] < poly[1, 0]
                and poly[3, 0] < poly[2, 0]
            )
            matched.append((top, found.index(line)))
        order = [index for _, index in sorted(matched)]
        assert order == sorted(order), (image_id, [line.text for line in found])


def test_tilted_lines_read_and_polygon_follows_the_tilt(reads):
    """A line rotated 13 degrees counter-clockwise is read exactly; its polygon's top edge rises to the right."""
    line = _closest("Tickets sold here", reads["photo-china"][0])
    assert line.text == "Tickets sold here"
    (x0, y0), (x1, y1) = line.polygon[0], line.polygon[1]
    angle = np.degrees(np.arctan2(y0 - y1, x1 - x0))
    assert 8 <= angle <= 18, angle


def test_upside_down_line_needs_the_direction_classifier(reader, scenes, reads):
    """The 180-degree line reads right only with the classifier; without it, that line is lost or garbled."""
    image, _, _ = scenes["photo-dog"]
    with_cls = [line.text for line in reads["photo-dog"][0]]
    assert "Limited Edition" in with_cls
    no_cls = TextReader(reader.det, None, reader.rec, reader.charset, OcrSettings(use_angle_classifier=False))
    without = [line.text for line in no_cls.read([image])[0]]
    assert "Limited Edition" not in without, without
    assert "Good Boy Rescue" in without  # the upright lines do not need it


def test_batch_of_images_reads_the_same_as_one_by_one(reader, scenes, reads):
    """Reading several images in one call (crops batched across images) gives the same texts."""
    together = reader.read([image for image, _, _ in scenes.values()])
    alone = [reads[image_id][0] for image_id in scenes]
    assert [[line.text for line in page] for page in together] == [[line.text for line in page] for page in alone]
    assert reader.read([]) == []


def test_real_text_in_a_real_photo(reader, photos):
    """The YAMAHA badge on the motorcycle's tank in scikit-image's motorcycle photo."""
    item = next((p for p in photos if p.image_id == "photo-motorcycle"), None)
    assert item is not None, "scikit-image's motorcycle_left.png is missing"
    found = reader.read([Image.open(io.BytesIO(item.read_bytes()))])[0]
    assert [line.text for line in found] == ["YAMAHA"]
    cx, cy = np.array(found[0].polygon).mean(axis=0)
    assert 380 <= cx <= 470 and 180 <= cy <= 225  # the badge on the red tank


@pytest.mark.parametrize("image_id", NO_TEXT_PHOTOS)
def test_photo_without_text_gives_no_lines(reader, photos, image_id):
    """Photos with no text in them yield no lines at the default min_score."""
    item = next(p for p in photos if p.image_id == image_id)
    assert reader.read([Image.open(io.BytesIO(item.read_bytes()))]) == [[]]


def test_wide_low_banner_and_grey_image(reader):
    """A 1000 x 48 banner (padded above and below for the detector) and a greyscale image are read;
    polygons stay inside the original image."""
    banner, _ = draw_lines(
        Image.new("RGB", (1000, 48), (255, 255, 255)),
        [DrawnLine("Free returns within 30 days", (10, 2), "DejaVuSans.ttf", 28)],
    )
    grey = draw_lines(Image.new("L", (400, 200), 128), [DrawnLine("Grey Label", (40, 60), "DejaVuSerif.ttf", 36)])[
        0
    ].convert("L")
    wide, low = reader.read([banner, grey])
    assert [line.text for line in wide] == ["Free returns within 30 days"]
    poly = np.array(wide[0].polygon)
    assert (poly[:, 1] >= 0).all() and (poly[:, 1] <= 48).all() and poly[:, 0].max() <= 1000
    assert [line.text for line in low] == ["Grey Label"]


def test_model_name_names_the_recipes(reader):
    """The label results carry: det and rec recipe keys."""
    assert reader.model_name == f"ppocr@{OCR_DET_MODEL.key}+{OCR_REC_MODEL.key}"
