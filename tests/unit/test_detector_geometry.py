"""Letterbox geometry (model input <-> original pixels), per-class NMS and the detector's post-processing,
on hand-made images and arrays (no model: a stub runner stands in for it)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from visearch.services.detection.detector import INPUT_SIZE, Detector, Letterbox, letterbox, nms_per_class
from visearch.shared.config import DetectionSettings

LABELS = [f"class{i}" for i in range(80)]


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x1, y1, x2, y2 (exclusive ends) of the True pixels of a 2-D mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(
    ("size", "rect"),
    [
        ((800, 400), (100, 50, 300, 250)),  # landscape, shrunk: black bars above and below
        ((300, 900), (30, 600, 270, 880)),  # portrait, shrunk: bars left and right
        ((64, 48), (8, 8, 40, 32)),  # small, enlarged (bilinear)
        ((512, 512), (0, 0, 200, 100)),  # already the input size: identity
    ],
)
def test_letterbox_maps_a_drawn_rectangle_back_to_original_pixels(size, rect):
    img = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(img).rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=(255, 255, 255))
    canvas, geometry = letterbox(img)
    assert canvas.shape == (INPUT_SIZE, INPUT_SIZE, 3) and canvas.dtype == np.float32
    assert 0.0 <= canvas.min() and canvas.max() <= 255.0
    found = np.array(_extent(canvas[..., 0] > 127), dtype=np.float32)
    back = geometry.to_original(found[None])[0]
    # One input pixel is 1/scale original pixels; resampling blurs the edge by about one of them.
    tolerance = 1.0 / min(geometry.scale_x, geometry.scale_y) + 0.5
    np.testing.assert_allclose(back, rect, atol=tolerance)


def test_letterbox_centres_the_image_and_pads_with_black():
    img = Image.new("RGB", (1000, 500), (200, 100, 50))
    canvas, geometry = letterbox(img)
    assert (geometry.width, geometry.height) == (1000, 500)
    assert geometry.pad_x == 0 and geometry.pad_y == 128
    assert geometry.scale_x == pytest.approx(0.512) and geometry.scale_y == pytest.approx(0.512)
    assert (canvas[:128] == 0).all() and (canvas[384:] == 0).all()
    np.testing.assert_allclose(canvas[128:384].reshape(-1, 3).mean(axis=0), (200, 100, 50), atol=0.01)


def test_to_original_inverts_the_forward_mapping_and_clips_to_the_image():
    geometry = Letterbox(width=640, height=480, scale_x=0.8, scale_y=0.8, pad_x=0, pad_y=64)
    original = np.array([[10, 20, 300, 400], [0, 0, 640, 480]], dtype=np.float64)
    model = original * 0.8 + [0, 64, 0, 64]
    np.testing.assert_allclose(geometry.to_original(model), original, atol=1e-4)
    # A box reaching into the padding (y < 64 or y > 448) and past the right edge is clipped.
    clipped = geometry.to_original(np.array([[-20, 10, 530, 500]]))[0]
    np.testing.assert_allclose(clipped, (0, 0, 640, 480))


def test_nms_drops_overlapping_boxes_of_the_same_class_only():
    boxes = np.array(
        [
            [0, 0, 100, 100],  # 0: class 0, best
            [5, 5, 105, 105],  # 1: class 0, IoU 0.82 with box 0: suppressed
            [5, 5, 105, 105],  # 2: class 1, same place but another class: kept
            [200, 200, 260, 260],  # 3: class 0, far away: kept
            [60, 0, 160, 100],
        ]
    )  # 4: class 0, IoU 0.25 with box 0: kept
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    classes = np.array([0, 0, 1, 0, 0])
    keep = nms_per_class(boxes, scores, classes, score_threshold=0.1, iou_threshold=0.5, max_detections=10)
    assert keep.tolist() == [0, 2, 3, 4]


def test_nms_orders_by_score_applies_the_threshold_and_the_cap():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    scores = np.array([0.4, 0.95, 0.05, 0.7])
    classes = np.zeros(4, dtype=np.int64)
    assert nms_per_class(boxes, scores, classes, 0.1, 0.5, 10).tolist() == [1, 3, 0]
    assert nms_per_class(boxes, scores, classes, 0.1, 0.5, 2).tolist() == [1, 3]
    assert nms_per_class(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.1, 0.5, 10).tolist() == []


def test_nms_iou_threshold_is_respected():
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 60]])  # IoU 0.6
    scores = np.array([0.9, 0.8])
    classes = np.array([3, 3])
    assert nms_per_class(boxes, scores, classes, 0.1, 0.5, 10).tolist() == [0]
    assert nms_per_class(boxes, scores, classes, 0.1, 0.7, 10).tolist() == [0, 1]


class StubRunner:
    """Returns prepared model rows ([100, 6] per image, keyed by the image's mean colour) and records batches."""

    model_name = "stub"

    def __init__(self, rows_by_colour: dict[int, np.ndarray]) -> None:
        self.rows_by_colour = rows_by_colour
        self.batches: list[tuple[int, ...]] = []

    def infer(self, inputs, outputs):
        images = inputs["images"]
        self.batches.append(images.shape)
        assert images.dtype == np.float32 and images.shape[1:] == (512, 512, 3)
        rows = []
        for img in images:
            colour = int(round(float(img[256, 256, 0])))  # the centre pixel is always inside the image
            rows.append(self.rows_by_colour[colour])
        return {outputs[0]: np.stack(rows).astype(np.float32)}


def _rows(*detections: tuple[float, float, float, float, float, int]) -> np.ndarray:
    rows = np.zeros((100, 6), dtype=np.float32)
    rows[:, :4] = (0, 0, 4, 4)
    rows[: len(detections)] = detections
    return rows


def test_detector_postprocessing_maps_thresholds_suppresses_and_keeps_order():
    # 1024 x 512 image: scale 0.5, pad_y 128. Model-space rows -> original = (x / 0.5, (y - 128) / 0.5).
    rows = _rows(
        (100, 178, 200, 278, 0.9, 16),  # class 16 at original (200, 100, 400, 300)
        (102, 180, 202, 280, 0.6, 16),  # same object, same class: NMS drops it
        (100, 178, 200, 278, 0.5, 15),  # same place, class 15: kept
        (300, 100, 600, 300, 0.4, 2),  # starts in the top padding, runs past the right edge: clipped
        (10, 10, 50, 60, 0.8, 0),  # wholly inside the top padding: not an object
        (400, 200, 450, 250, 0.2, 1),  # below the score threshold
    )
    runner = StubRunner({60: rows, 90: _rows((0, 0, 512, 512, 0.7, 5))})
    detector = Detector(runner, LABELS, DetectionSettings(score_threshold=0.3, nms_iou=0.5, batch_size=2))
    images = [
        Image.new("RGB", (1024, 512), (60, 60, 60)),
        Image.new("RGB", (100, 100), (90, 90, 90)),
        Image.new("RGB", (1024, 512), (60, 60, 60)),
    ]
    first, second, third = detector.detect(images)
    assert runner.batches == [(2, 512, 512, 3), (1, 512, 512, 3)]
    assert [(d.label, d.class_id) for d in first] == [("class16", 16), ("class15", 15), ("class2", 2)]
    assert [d.score for d in first] == pytest.approx([0.9, 0.5, 0.4])
    assert first[0].box == pytest.approx((200, 100, 400, 300), abs=1e-3)
    assert first[2].box == pytest.approx((600, 0, 1024, 344), abs=1e-3)
    assert [(d.label, d.box) for d in third] == [(d.label, d.box) for d in first]
    assert len(second) == 1 and second[0].box == pytest.approx((0, 0, 100, 100), abs=1e-3)
    assert detector.detect([]) == []
