"""Unit tests for the OCR pre- and post-processing in visearch.services.ocr.reader, on hand-made arrays.

The TextReader glue is tested with stub runners (no model files): fixed probability maps and CTC
outputs, so box mapping, padding, filtering and the charset check are checked exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from visearch.services.ocr.reader import (
    TextReader,
    crop_line,
    ctc_greedy_decode,
    db_boxes,
    det_input,
    det_input_size,
    order_points_clockwise,
    reading_order,
    rec_batch,
    to_bgr,
    vertical_padding,
)
from visearch.shared.config import OcrSettings
from visearch.shared.errors import ModelNotBuiltError

# --------------------------------------------------------------------------------------------- resize / limit side


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((576, 768), 960, (576, 768)),  # small enough: not scaled, already multiples of 32
        ((1800, 2400), 960, (704, 960)),  # longest side limited to 960; 1800 * 0.4 = 720 -> 704 (round to 32)
        ((2400, 1800), 960, (960, 704)),
        ((500, 700), 960, (512, 704)),  # sides rounded to the nearest multiple of 32, never scaled up
        ((10, 300), 960, (32, 288)),  # at least 32
        ((4000, 100), 640, (640, 32)),
    ],
)
def test_det_input_size_limits_the_longest_side_and_rounds_to_32(size, max_side, expected):
    """The detector's input: longest side <= max_side (plus rounding), both sides multiples of 32, >= 32."""
    h, w = det_input_size(*size, max_side)
    assert (h, w) == expected
    assert h % 32 == 0 and w % 32 == 0


def test_det_input_size_rejects_empty_images():
    with pytest.raises(ValueError):
        det_input_size(0, 10, 960)


def test_det_input_is_bgr_chw_scaled_to_minus_one_one():
    """A pure red RGB image: channel 2 (R in BGR) is +1, the others -1; shape [3, h, w] float32."""
    bgr = to_bgr(Image.new("RGB", (100, 64), (255, 0, 0)))
    assert bgr.shape == (64, 100, 3) and bgr.dtype == np.uint8 and tuple(bgr[0, 0]) == (0, 0, 255)
    x = det_input(bgr, 960)
    assert x.shape == (3, 64, 96) and x.dtype == np.float32
    assert np.allclose(x[2], 1.0) and np.allclose(x[:2], -1.0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((400, 600), 0),  # ordinary photo
        ((48, 1000), 101),  # 1000/48 > 8: padded to 2 * 125 = 250 rows in total
        ((20, 100), 20),  # 20 <= 30 px high: padded to 2 * 30 = 60 rows
        ((30, 240), 15),
    ],
)
def test_vertical_padding_only_for_low_or_very_wide_images(size, expected):
    assert vertical_padding(*size) == expected


# --------------------------------------------------------------------------------------------- box ordering


def test_order_points_clockwise_from_any_order():
    """The corners of a tilted rectangle, shuffled, come back as tl, tr, br, bl."""
    tl, tr, br, bl = [10, 20], [110, 10], [114, 50], [14, 60]
    rng = np.random.default_rng(0)
    for _ in range(5):
        pts = np.array([tl, tr, br, bl], dtype=np.float32)[rng.permutation(4)]
        assert order_points_clockwise(pts).tolist() == [tl, tr, br, bl]


def _box(x: float, y: float, w: float = 50, h: float = 20) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


def test_reading_order_rows_top_to_bottom_then_left_to_right():
    """Boxes within 10 px of each other vertically form a row, read left to right; rows top to bottom."""
    boxes = np.stack(
        [
            _box(300, 105),  # row 2, right
            _box(10, 12),  # row 1, left (y differs from the row's other box by 7 px < 10)
            _box(20, 100),  # row 2, left
            _box(200, 5),  # row 1, right
            _box(15, 200),  # row 3
        ]
    )
    # y=5 and y=12 are one row, so x decides: 10 before 200; y=100 and y=105 likewise
    assert reading_order(boxes).tolist() == [1, 3, 2, 0, 4]
    assert reading_order(np.zeros((0, 4, 2), np.float32)).tolist() == []


# --------------------------------------------------------------------------------------------- DB post-processing


def test_db_boxes_finds_text_kernels_grows_and_rescales_them():
    """Two solid kernels in a 64 x 128 map become two boxes in 128 x 256 output pixels, grown around
    the kernels by the unclip offset; a faint region (mean 0.35 < box threshold) and a 2 px speck are dropped."""
    prob = np.zeros((64, 128), np.float32)
    prob[10:20, 10:60] = 0.9  # kernel A: x 10..59, y 10..19
    prob[40:50, 70:120] = 0.8  # kernel B
    prob[30:36, 5:40] = 0.35  # above the pixel threshold, below the box threshold
    prob[55:57, 5:7] = 1.0  # speck: short side < 3
    boxes, scores = db_boxes(prob, 128, 256)
    assert len(boxes) == 2
    order = np.argsort(boxes[:, 0, 1])
    a, b = boxes[order]
    # score = mean probability inside the (dilated, so 1 px larger) kernel rectangle: 0.9 * 500 / 561
    assert scores[order[0]] == pytest.approx(0.9 * 500 / 561, abs=0.01)
    assert scores[order[1]] == pytest.approx(0.8 * 500 / 561, abs=0.01)
    # kernel A spans x 20..118, y 20..38 at 2x; the box encloses it with a margin (unclip ratio 1.6)
    assert a[0, 0] < 20 and a[2, 0] > 118 and a[0, 1] < 20 and a[2, 1] > 38
    # the dilated kernel's rectangle is 50 x 10 map px; unclip adds 50*10*1.6/120 = 6.7 px on each side:
    # 63.3 x 23.3 map px = 127 x 47 output px
    assert a[2, 0] - a[0, 0] == pytest.approx(127, abs=4) and a[2, 1] - a[0, 1] == pytest.approx(47, abs=4)
    assert (b[:, 0] <= 255).all() and (b[:, 1] <= 127).all()
    for box in (a, b):
        assert order_points_clockwise(box).tolist() == box.tolist()


def test_db_boxes_on_an_empty_map():
    boxes, scores = db_boxes(np.zeros((32, 32), np.float32), 100, 100)
    assert boxes.shape == (0, 4, 2) and scores == []


def test_db_boxes_thresholds_are_honoured():
    """Raising the box threshold above a kernel's mean probability drops it."""
    prob = np.zeros((64, 64), np.float32)
    prob[20:30, 10:50] = 0.6
    assert len(db_boxes(prob, 64, 64, box_threshold=0.5)[0]) == 1
    assert len(db_boxes(prob, 64, 64, box_threshold=0.7)[0]) == 0


# --------------------------------------------------------------------------------------------- crops and batches


def test_crop_line_rectifies_a_tilted_quadrilateral():
    """A white band drawn at 20 degrees comes out as an upright crop, white inside."""
    img = np.zeros((200, 300, 3), np.uint8)
    rect = ((150, 100), (200, 40), -20)
    pts = cv2.boxPoints(rect)
    cv2.fillPoly(img, [pts.astype(np.int32)], (255, 255, 255))
    crop = crop_line(img, order_points_clockwise(pts))
    assert abs(crop.shape[1] - 200) <= 2 and abs(crop.shape[0] - 40) <= 2
    assert crop[5:-5, 5:-5].mean() > 240


def test_crop_line_turns_vertical_text():
    """A crop 1.5x taller than wide is turned 90 degrees (vertical text reads left to right)."""
    img = np.zeros((300, 300, 3), np.uint8)
    crop = crop_line(img, _box(100, 50, 30, 150))
    assert crop.shape[:2] == (30, 150)


def test_rec_batch_pads_to_the_widest_and_at_least_320():
    """Crops resized to height 48, keeping aspect; the batch is as wide as the widest (>= 320); padding is 0."""
    narrow = np.full((24, 48, 3), 255, np.uint8)  # ratio 2 -> 96 px wide
    batch = rec_batch([narrow])
    assert batch.shape == (1, 3, 48, 320) and batch.dtype == np.float32
    assert np.allclose(batch[0, :, :, :96], 1.0) and np.allclose(batch[0, :, :, 96:], 0.0)
    wide = np.zeros((20, 400, 3), np.uint8)  # ratio 20 -> 960 px
    batch = rec_batch([narrow, wide])
    assert batch.shape == (2, 3, 48, 960)
    assert np.allclose(batch[1], -1.0)  # black fills the whole width
    assert batch.min() >= -1.0 and batch.max() <= 1.0


# --------------------------------------------------------------------------------------------- CTC decoding


def _probs(path: list[int], classes: int, p: float = 0.9) -> np.ndarray:
    """One-row CTC output whose best path is ``path``, each best class with probability ``p``."""
    out = np.full((1, len(path), classes), (1 - p) / (classes - 1), np.float32)
    out[0, np.arange(len(path)), path] = p
    return out


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    """Path a a _ a b b _ -> "aab": repeats merge, a blank separates two a's."""
    labels = ["", "a", "b", " "]
    probs = _probs([1, 1, 0, 1, 2, 2, 0], len(labels))
    probs[0, 4, 2] = 0.7  # one kept step less sure
    ((text, score),) = ctc_greedy_decode(probs, labels)
    assert text == "aab"
    assert score == pytest.approx((0.9 + 0.9 + 0.7) / 3, abs=1e-6)  # kept steps t=0, t=3, t=4


def test_ctc_greedy_decode_score_is_the_mean_of_kept_steps():
    labels = ["", "x", "y"]
    probs = _probs([1, 0, 2], 3)
    probs[0, 2] = [0.1, 0.2, 0.7]
    ((text, score),) = ctc_greedy_decode(probs, labels)
    assert text == "xy" and score == pytest.approx((0.9 + 0.7) / 2, abs=1e-6)


def test_ctc_greedy_decode_all_blank_and_batches():
    labels = ["", "x", " "]
    probs = np.concatenate([_probs([0, 0, 0], 3), _probs([1, 2, 1], 3)])
    assert ctc_greedy_decode(probs, labels) == [("", 0.0), ("x x", pytest.approx(0.9, abs=1e-6))]


# --------------------------------------------------------------------------------------------- the reader, stub models


class StubRunner:
    """An InferenceRunner that returns a fixed output per call and records its inputs."""

    def __init__(self, name: str, make):
        self.model_name = name
        self.make = make
        self.calls: list[np.ndarray] = []

    def infer(self, inputs, outputs):
        x = inputs["image"]
        self.calls.append(x)
        return {outputs[0]: self.make(x)}


def _det_with_kernel(x: np.ndarray) -> np.ndarray:
    """A probability map with one text kernel in the middle half of the width, 40%..60% of the height."""
    n, _, h, w = x.shape
    out = np.zeros((n, 1, h, w), np.float32)
    out[:, :, int(h * 0.4) : int(h * 0.6), w // 4 : 3 * w // 4] = 0.95
    return out


def _rec_reads(path: list[int], p: float, classes: int = 5):
    """A recogniser whose best path is ``path`` (then blanks) for every crop; 5 classes = blank + a, b, c + space."""

    def make(x: np.ndarray) -> np.ndarray:
        steps = x.shape[3] // 8
        row = _probs((path + [0] * steps)[:steps], classes, p)
        return np.repeat(row, x.shape[0], axis=0)

    return make


def test_reader_maps_boxes_back_through_padding_and_filters_by_score():
    """A 1000 x 50 banner is padded for the detector; the polygon comes back in banner pixels, clockwise."""
    det = StubRunner("det", _det_with_kernel)
    rec = StubRunner("rec", _rec_reads([1, 0, 2, 3, 1], 0.9))
    reader = TextReader(det, None, rec, ["a", "b", "c"], OcrSettings())
    lines = reader.read([Image.new("RGB", (1000, 50), "white")])[0]
    pad = vertical_padding(50, 1000)
    assert pad == 100 and det.calls[0].shape == (1, 3, 256, 960)
    assert [line.text for line in lines] == ["abca"]  # labels: blank, a, b, c, space -> [1,0,2,3,1] = a b c a
    poly = np.array(lines[0].polygon)
    assert (poly[:, 1] >= 0).all() and (poly[:, 1] <= 50).all()
    # the kernel spans x 250..750 in banner pixels; the box grows around it by the unclip offset
    assert 150 < poly[0, 0] < 250 and 750 < poly[1, 0] < 850
    assert poly[0, 1] < poly[3, 1] and poly[0, 0] < poly[1, 0]

    unsure = TextReader(det, None, StubRunner("rec", _rec_reads([1, 2], 0.4)), ["a", "b", "c"], OcrSettings())
    assert unsure.read([Image.new("RGB", (1000, 50), "white")]) == [[]]  # 0.4 < min_score 0.5


def test_reader_batches_equal_sized_images_and_keeps_per_image_results():
    det = StubRunner("det", _det_with_kernel)
    rec = StubRunner("rec", _rec_reads([1], 0.95))
    reader = TextReader(det, None, rec, ["a", "b", "c"])
    timings: dict[str, float] = {}
    pages = reader.read(
        [Image.new("RGB", (320, 320)), Image.new("RGB", (320, 320)), Image.new("L", (640, 320))], timings=timings
    )
    assert [len(p) for p in pages] == [1, 1, 1]
    assert sorted(c.shape[0] for c in det.calls) == [1, 2]  # the two 320 x 320 images in one call
    assert set(timings) == {"det", "cls", "rec"} and all(v >= 0 for v in timings.values())
    assert reader.model_name == "ppocr@det+rec"


def test_reader_splits_large_detector_batches():
    """Ten same-size images go to the detector in calls of at most 8 (DET_MAX_BATCH)."""
    det = StubRunner("det", _det_with_kernel)
    reader = TextReader(det, None, StubRunner("rec", _rec_reads([1], 0.95)), ["a", "b", "c"])
    pages = reader.read([Image.new("RGB", (64, 64))] * 10)
    assert [c.shape[0] for c in det.calls] == [8, 2] and [len(p) for p in pages] == [1] * 10


def test_reader_turns_crops_the_classifier_finds_upside_down():
    """Crops classified "180" with p > cls_threshold are turned before recognition; p at the threshold is not."""
    seen = []

    def rec_make(x):
        seen.append(x.copy())
        return _rec_reads([1], 0.9)(x)

    det = StubRunner("det", _det_with_kernel)
    for p180, turned in ((0.95, True), (0.9, False)):
        seen.clear()
        cls = StubRunner("cls", lambda x, p=p180: np.tile(np.array([[1 - p, p]], np.float32), (x.shape[0], 1)))
        reader = TextReader(det, cls, StubRunner("rec", rec_make), ["a", "b", "c"], OcrSettings(cls_threshold=0.9))
        gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (320, 1))
        reader.read([Image.fromarray(np.stack([gradient] * 3, axis=2))])
        assert cls.calls[0].shape[1:] == (3, 48, 192)
        row = seen[0][0, 0, 24]
        width = int((row != 0).sum())
        left_darker = row[2] < row[width - 3]
        assert left_darker != turned  # the gradient runs dark -> light unless the crop was turned


def test_reader_rejects_a_charset_that_does_not_match_the_model():
    det = StubRunner("det", _det_with_kernel)
    rec = StubRunner("rec", _rec_reads([1], 0.9, classes=4))
    reader = TextReader(det, None, rec, ["a", "b", "c"])  # needs 5 classes: blank + 3 + space
    with pytest.raises(ModelNotBuiltError):
        reader.read([Image.new("RGB", (320, 320))])


# --------------------------------------------------------------------------------------------- accuracy metric


def test_edit_distance_and_character_errors():
    """Levenshtein distance and the per-line character errors the OCR accuracy figures are built from."""
    from visearch.offline.models.build_ocr import char_accuracy, char_errors, edit_distance

    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    assert edit_distance("Order", "0rder") == 1
    # each true line is matched to its closest read line; an unread line costs all its characters
    assert char_errors(["Sale", "Free"], ["Free", "5ale", "noise"]) == 1
    assert char_errors(["Sale"], []) == 4
    assert char_accuracy(["Sale", "Free"], ["Sale", "Free"]) == 1.0
    assert char_accuracy(["abcd"], ["abed"]) == 0.75
