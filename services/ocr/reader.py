"""Reading text in photos: PP-OCR text detection, direction classification and recognition.

Models: PaddleOCR's PP-OCR (Du et al. 2020, "PP-OCR: A Practical Ultra Lightweight OCR System"; PP-OCRv6
small detector and recogniser, PP-OCR mobile v2.0 direction classifier), as ONNX files from the PyPI
wheel ``rapidocr`` 3.10.0 (Apache-2.0), built into the model cache by ``visearch models build``
(``visearch/offline/models/build_ocr.py``). Each is an :class:`~visearch.shared.model_base.InferenceModel`
(:class:`TextDetection`, :class:`TextDirection`, :class:`TextRecognition`) over an :class:`InferenceRunner`,
so in-process onnxruntime or Triton; every pre- and post-processing step runs here, in numpy, OpenCV and
pyclipper.

Pipeline per image (algorithms and constants follow rapidocr 3.10.0, ``rapidocr/ch_ppocr_*`` and
``rapidocr/utils/process_img.py``, themselves ports of PaddleOCR's ``ppocr`` code):

1. Very wide or very low images get black bands above and below (rapidocr ``apply_vertical_padding``).
2. Detector (DB, Liao et al. 2020, "Real-time Scene Text Detection with Differentiable Binarization"):
   the image, longest side limited to ``det_max_side`` and both sides rounded to multiples of 32, BGR,
   ``(x/255 - 0.5)/0.5``, gives a text probability map. The map is binarised at ``det_threshold`` and
   dilated (2x2); each contour's minimum-area rectangle is scored by the mean probability inside it,
   grown by the Vatti clipping offset ``area * unclip_ratio / perimeter`` (pyclipper), and rescaled to
   image pixels.
3. Lines are put in reading order: by top-left y, lines whose y differ by < 10 px are one row, left to right.
4. Each quadrilateral is rectified by a perspective warp; crops at least 1.5x taller than wide are
   turned 90 degrees (vertical text).
5. Direction classifier: each crop at 48 x 192 px; turned 180 degrees when "180" scores > ``cls_threshold``.
6. Recogniser (SVTR-style CTC): crops at height 48, batched by similar aspect ratio, padded to the widest
   of the batch (at least 320 px); greedy CTC decoding (argmax per step, merge repeats, drop blanks);
   the line's score is the mean probability of its kept characters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pyclipper
from PIL import Image

from visearch.shared.config import ModelSettings, OcrSettings
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.inference import InferenceRunner
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import OCR_CLS_MODEL, OCR_DET_MODEL, OCR_REC_MODEL

# Tensor names of the built models (build_ocr.py renames PaddleOCR's "x" / "fetch_name_0" to these).
INPUT = "image"
DET_OUTPUT = "prob_map"
PROBS_OUTPUT = "probs"

DET_MULTIPLE = 32  # the detector's feature pyramid needs sides divisible by 32
DET_MAX_BATCH = 8  # images per detector call (same as its Triton max_batch_size)
DET_MIN_BOX_SIDE = 3  # DBPostProcess.min_size: shorter sides (map pixels) are noise
DET_DILATION_KERNEL = np.ones((2, 2), np.uint8)  # DB "use_dilation": joins characters split by thin gaps
PAD_MIN_HEIGHT = 30  # apply_vertical_padding: images this low or lower get padded ...
PAD_MAX_ASPECT = 8.0  # ... and so do images more than 8x wider than high
LINE_Y_TOLERANCE = 10  # px: boxes whose top-left y differ by less are on the same row
CLS_SHAPE = (48, 192)  # height, width of the direction classifier's input
CLS_LABELS = ("0", "180")
REC_HEIGHT = 48
REC_MIN_WIDTH = 320  # a batch is never narrower than 320 px (ratio 320/48), as PaddleOCR trains it
VERTICAL_CROP_RATIO = 1.5  # crops this much taller than wide are read as vertical text


@dataclass
class TextLine:
    """One line of text found in an image.

    Attributes:
        text: the recognised characters (non-empty, stripped of nothing: spaces inside are kept).
        score: recognition confidence, 0..1: the mean CTC probability of the kept characters.
        polygon: the line's 4 corners in ORIGINAL image pixels (float), clockwise from top-left
            (top-left, top-right, bottom-right, bottom-left), clipped to the image.
    """

    text: str
    score: float
    polygon: list[tuple[float, float]]


# --------------------------------------------------------------------------------------------- pre-processing


def to_bgr(image: Image.Image) -> np.ndarray:
    """uint8 ``[H, W, 3]`` BGR array of a PIL image (PaddleOCR models are trained on OpenCV's BGR order)."""
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def vertical_padding(height: int, width: int) -> int:
    """Rows of black added above and below an image before detection (rapidocr ``get_padding_h``).

    Images at most 30 px high, or more than 8x wider than high, are padded to
    ``2 * max(width // 8, 30)`` rows in total, so the detector sees enough context. Returns 0 otherwise.
    """
    if height <= PAD_MIN_HEIGHT or width / height > PAD_MAX_ASPECT:
        new_height = max(int(width / PAD_MAX_ASPECT), PAD_MIN_HEIGHT) * 2
        return int(abs(new_height - height) / 2)
    return 0


def det_input_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) the detector sees: scaled down (never up) so the longest side is at most
    ``max_side``, then each side rounded to the nearest multiple of 32 (at least 32).

    Raises:
        ValueError: a side is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    ratio = min(1.0, max_side / max(height, width))

    def fit(side: int) -> int:
        return max(DET_MULTIPLE, int(round(int(side * ratio) / DET_MULTIPLE) * DET_MULTIPLE))

    return fit(height), fit(width)


def det_input(bgr: np.ndarray, max_side: int) -> np.ndarray:
    """Detector input for one BGR uint8 image: float32 ``[3, h, w]``, ``(x/255 - 0.5)/0.5`` in [-1, 1]."""
    h, w = det_input_size(bgr.shape[0], bgr.shape[1], max_side)
    resized = cv2.resize(bgr, (w, h))
    return ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------- DB post-processing


def order_points_clockwise(points: np.ndarray) -> np.ndarray:
    """The 4 points ``[4, 2]`` (x, y) as top-left, top-right, bottom-right, bottom-left (float32).

    The two left-most points are the left side (upper one first), the two right-most the right side
    (imutils ``order_points``, as rapidocr's ``DBPostProcess.order_points_clockwise``).
    """
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle of a contour as 4 points (tl, tr, br, bl order of rapidocr) and its short side."""
    rect = cv2.minAreaRect(contour)
    pts = cv2.boxPoints(rect)
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    tl, bl = (0, 1) if pts[1, 1] > pts[0, 1] else (1, 0)
    tr, br = (2, 3) if pts[3, 1] > pts[2, 1] else (3, 2)
    return pts[[tl, tr, br, bl]], min(rect[1])


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability of ``prob`` inside the polygon ``box`` (DB "fast" score mode)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=box.dtype)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Grow a polygon by ``area * ratio / perimeter`` with rounded joins (pyclipper's Vatti offset)."""
    distance = cv2.contourArea(box) * ratio / cv2.arcLength(box, True)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    # An offset can in theory split into several polygons; as rapidocr, take all their points together.
    return np.array([pt for path in offset.Execute(distance) for pt in path], dtype=np.float32).reshape(-1, 1, 2)


def db_boxes(
    prob: np.ndarray,
    out_height: int,
    out_width: int,
    threshold: float = 0.3,
    box_threshold: float = 0.5,
    unclip_ratio: float = 1.6,
    max_candidates: int = 1000,
) -> tuple[np.ndarray, list[float]]:
    """Text boxes from one DB probability map (rapidocr ``DBPostProcess``, score mode "fast", dilation on).

    Args:
        prob: float32 ``[h, w]`` text probabilities 0..1 (the detector's map for one image).
        out_height, out_width: size of the image the boxes are returned for (pixels).
        threshold: map values above it are text pixels.
        box_threshold: boxes whose mean probability is below it are dropped.
        unclip_ratio: how far each shrunk text kernel is grown back (DB's offset ``area * r / perimeter``).
        max_candidates: at most this many contours are examined.

    Returns:
        ``(boxes float32 [K, 4, 2], scores)``: quadrilaterals in ``out`` pixels, clockwise from top-left,
        clipped to ``[0, out_width - 1] x [0, out_height - 1]``, and their mean probabilities (0..1).
        Sides of 3 px or less are dropped. Order: OpenCV contour order (see :func:`reading_order`).
    """
    height, width = prob.shape
    bitmap = cv2.dilate((prob > threshold).astype(np.uint8), DET_DILATION_KERNEL)
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        points, short_side = _mini_box(contour)
        if short_side < DET_MIN_BOX_SIDE:
            continue
        score = _box_score(prob, points)
        if score < box_threshold:
            continue
        expanded = _unclip(points, unclip_ratio)
        if len(expanded) == 0:
            continue
        box, short_side = _mini_box(expanded)
        if short_side < DET_MIN_BOX_SIDE + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * out_width), 0, out_width)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * out_height), 0, out_height)
        box = order_points_clockwise(box.astype(np.int32).astype(np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, out_width - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, out_height - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
        scores.append(score)
    return np.array(boxes, dtype=np.float32).reshape(-1, 4, 2), scores


def reading_order(boxes: np.ndarray, y_tolerance: float = LINE_Y_TOLERANCE) -> np.ndarray:
    """Indices that put boxes ``[K, 4, 2]`` in reading order: top to bottom, then left to right.

    Boxes are sorted by the y of their first (top-left) point; consecutive boxes whose y differ by
    less than ``y_tolerance`` pixels form one row, sorted by x (rapidocr ``TextDetector.sorted_boxes``).
    Returns int64 ``[K]``.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    y = boxes[:, 0, 1]
    by_y = np.argsort(y, kind="stable")
    rows = np.concatenate([[0], np.cumsum(np.diff(y[by_y]) >= y_tolerance)])
    return by_y[np.lexsort((boxes[by_y, 0, 0], rows))]


def crop_line(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The quadrilateral ``box`` ``[4, 2]`` (tl, tr, br, bl) of ``bgr`` rectified to an upright uint8 crop.

    Width and height are the longer of the opposite sides; bicubic perspective warp with replicated
    borders. A crop at least 1.5x taller than wide is turned 90 degrees counter-clockwise, so vertical
    text reads left to right (rapidocr ``get_rotate_crop_image``).
    """
    box = box.astype(np.float32)
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box, target)
    crop = cv2.warpPerspective(bgr, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= VERTICAL_CROP_RATIO:
        crop = np.rot90(crop)
    return crop


def _normalised(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """``crop`` resized to ``height`` keeping its aspect (at most ``width`` wide), scaled to [-1, 1] and
    right-padded with zeros to ``[3, height, width]`` float32."""
    resized_w = min(width, int(math.ceil(height * crop.shape[1] / crop.shape[0])))
    resized = cv2.resize(crop, (resized_w, height), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = (resized.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out


def rec_batch(crops: list[np.ndarray]) -> np.ndarray:
    """Recogniser input for crops read together: float32 ``[N, 3, 48, W]``, each crop resized to height 48
    and right-padded with zeros to the common width ``W = int(48 * max(320/48, widest aspect ratio))``."""
    max_ratio = max([REC_MIN_WIDTH / REC_HEIGHT] + [c.shape[1] / c.shape[0] for c in crops])
    width = int(REC_HEIGHT * max_ratio)
    return np.stack([_normalised(c, REC_HEIGHT, width) for c in crops])


def ctc_greedy_decode(probs: np.ndarray, labels: list[str]) -> list[tuple[str, float]]:
    """Greedy (best path) CTC decoding (Graves et al. 2006) of ``probs`` float32 ``[N, T, C]``.

    Per step the most probable class; repeats of the same class merge, class 0 (the blank) is dropped.
    ``labels[c]`` is the text of class c (``labels[0]``, the blank, is never emitted).

    Returns:
        ``(text, score)`` per row; score is the mean probability of the kept steps, 0.0 for an empty text.
    """
    best = probs.argmax(axis=2)
    best_p = probs.max(axis=2)
    results = []
    for idx, p in zip(best, best_p):
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        text = "".join(labels[i] for i in idx[keep])
        results.append((text, float(p[keep].mean()) if keep.any() else 0.0))
    return results


# --------------------------------------------------------------------------------------------- the three models


class TextDetection(InferenceModel[np.ndarray, list[np.ndarray]]):
    """The DB text detector: BGR uint8 images whose detector inputs have one size -> one probability map
    float32 ``[h, w]`` each (``image`` ``[N, 3, h, w]`` -> ``prob_map`` ``[N, 1, h, w]``).

    ``predict_items`` / ``predict_batches`` need the option ``max_side`` (the longest input side, see
    :func:`det_input`).
    """

    spec = OCR_DET_MODEL
    outputs = (DET_OUTPUT,)

    def preprocess(self, items: Sequence[np.ndarray], **options: Any) -> Batch:  # noqa: D102
        return Batch({INPUT: np.stack([det_input(bgr, options["max_side"]) for bgr in items])})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> list[np.ndarray]:  # noqa: D102
        return [prob[0] for prob in outputs[DET_OUTPUT]]


class TextDirection(InferenceModel[np.ndarray, list[bool]]):
    """The 0/180 degree direction classifier: line crops -> whether each is upside down, i.e. P("180") is
    the larger and above ``threshold`` (``image`` ``[N, 3, 48, 192]`` -> ``probs`` ``[N, 2]``)."""

    spec = OCR_CLS_MODEL
    outputs = (PROBS_OUTPUT,)

    def __init__(self, runner: InferenceRunner | None = None, threshold: float = 0.9, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.threshold = threshold

    def preprocess(self, items: Sequence[np.ndarray], **options: Any) -> Batch:  # noqa: D102
        return Batch({INPUT: np.stack([_normalised(crop, *CLS_SHAPE) for crop in items])})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> list[bool]:  # noqa: D102
        return [bool(CLS_LABELS[int(p.argmax())] == "180" and p.max() > self.threshold) for p in outputs[PROBS_OUTPUT]]


class TextRecognition(InferenceModel[np.ndarray, list[tuple[str, float]]]):
    """The CTC recogniser: line crops read together (see :func:`rec_batch`) -> ``(text, score)`` each
    (``image`` ``[N, 3, 48, W]`` -> ``probs`` ``[N, W/8, len(labels)]``, greedy-decoded over ``labels``).

    Raises:
        ModelNotBuiltError: the model's class count is not ``len(labels)``.
    """

    spec = OCR_REC_MODEL
    outputs = (PROBS_OUTPUT,)

    def __init__(self, runner: InferenceRunner | None = None, labels: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.labels = list(labels)

    def preprocess(self, items: Sequence[np.ndarray], **options: Any) -> Batch:  # noqa: D102
        return Batch({INPUT: rec_batch(list(items))})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> list[tuple[str, float]]:  # noqa: D102
        probs = outputs[PROBS_OUTPUT]
        if probs.shape[2] != len(self.labels):
            raise ModelNotBuiltError(
                f"{self.runner.model_name} has {probs.shape[2]} classes but the charset gives {len(self.labels)} "
                f"(blank + {len(self.labels) - 2} + space): rebuild the model"
            )
        return ctc_greedy_decode(probs, self.labels)


# --------------------------------------------------------------------------------------------- the reader

_Page = tuple[np.ndarray, int, tuple[int, int]]  # padded BGR image, rows of padding above, original (h, w)


class TextReader:
    """PP-OCR text reading: the pipeline over three models (:class:`TextDetection`, :class:`TextDirection`,
    :class:`TextRecognition`), each behind an :class:`InferenceRunner` (in-process onnxruntime or Triton).

    Args:
        det: the detector's runner: ``image`` float32 ``[N, 3, H, W]`` (H, W multiples of 32) -> ``prob_map``
            float32 ``[N, 1, H, W]``.
        cls: the 0/180 degree direction classifier's runner (``image`` ``[N, 3, 48, 192]`` -> ``probs``
            ``[N, 2]``), or None to skip it (also skipped when ``settings.use_angle_classifier`` is false).
        rec: the recogniser's runner: ``image`` ``[N, 3, 48, W]`` -> ``probs`` ``[N, W/8, len(charset) + 2]``.
        charset: the recogniser's characters in class order (the model's ``character`` metadata,
            ``charset.txt`` of its build); class 0 is the CTC blank and the last class a space.
        settings: thresholds and limits (default: ``OcrSettings()``).
        model_name: label for results and logs (default from the runners' names).

    ``det``, ``cls`` and ``rec`` stay readable as the runners (None: no classifier).
    """

    def __init__(
        self,
        det: InferenceRunner,
        cls: InferenceRunner | None,
        rec: InferenceRunner,
        charset: list[str],
        settings: OcrSettings | None = None,
        model_name: str | None = None,
    ) -> None:
        self.settings = settings or OcrSettings()
        self.charset = list(charset)
        self.labels = ["", *charset, " "]  # CTC class order: blank, the charset, a space (PaddleOCR's use_space_char)
        # Images per detector call: at most DET_MAX_BATCH, all with one input size (see _detect).
        self.detection = TextDetection(det, batch_size=DET_MAX_BATCH)
        size = self.settings.rec_batch_size
        self.direction = TextDirection(cls, self.settings.cls_threshold, batch_size=size) if cls is not None else None
        self.recognition = TextRecognition(rec, self.labels, batch_size=size)
        self.model_name = model_name or f"ppocr@{det.model_name}+{rec.model_name}"

    @property
    def det(self) -> InferenceRunner:
        """The detector's runner."""
        return self.detection.runner

    @property
    def cls(self) -> InferenceRunner | None:
        """The direction classifier's runner (None: none)."""
        return self.direction.runner if self.direction is not None else None

    @property
    def rec(self) -> InferenceRunner:
        """The recogniser's runner."""
        return self.recognition.runner

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None, settings: OcrSettings | None = None) -> TextReader:
        """Load the built PP-OCR models: onnxruntime in-process, or Triton when ``models.triton_url`` is set.

        The classifier is loaded only when ``settings.use_angle_classifier`` is true.

        Raises:
            ModelNotBuiltError: a model is not built (run ``visearch models build``), or the recogniser's
                ``charset.txt`` is missing.
            DependencyUnavailableError: Triton is configured but unreachable or a model is not ready.
        """
        models = models or ModelSettings()
        settings = settings or OcrSettings()
        OCR_DET_MODEL.locate(models.cache_dir)
        charset_path = OCR_REC_MODEL.locate(models.cache_dir) / "charset.txt"
        if not charset_path.is_file():
            raise ModelNotBuiltError(
                f"{charset_path} is missing; rebuild: visearch models build --force --only {OCR_REC_MODEL.name}"
            )
        charset = charset_path.read_text(encoding="utf-8").split("\n")
        cls_runner = TextDirection(models=models).load() if settings.use_angle_classifier else None
        det = TextDetection(models=models).load()
        rec = TextRecognition(models=models).load()
        return cls(det, cls_runner, rec, charset, settings, model_name=f"ppocr@{OCR_DET_MODEL.key}+{OCR_REC_MODEL.key}")

    def read(
        self, images: list[Image.Image], timings: dict[str, float] | None = None, det_max_side: int = 0
    ) -> list[list[TextLine]]:
        """Read the text lines of each image.

        Args:
            images: decoded PIL images of any size and mode (converted to RGB).
            det_max_side: the detector's longest input side for this call, pixels (0: ``settings.det_max_side``);
                smaller is faster and finds only larger text. Recognition runs on the found lines only.
            timings: if given, receives the seconds spent in ``det``, ``cls`` and ``rec`` (model calls
                plus their pre- and post-processing) summed over the images.

        Returns:
            One list per image of the lines whose recognition score is at least ``settings.min_score``
            and whose text is not blank, in reading order (top to bottom, left to right).
            Crops of all images are recognised together, batched by aspect ratio.

        Raises:
            InvalidEventError: (``model_input_mismatch``) a model rejects its input.
            ModelNotBuiltError: the recogniser's class count does not match the charset.
            DependencyUnavailableError: Triton did not answer.
        """
        timings = {} if timings is None else timings
        timings.update(det=0.0, cls=0.0, rec=0.0)
        if not images:
            return []
        start = time.perf_counter()
        pages, boxes = self._detect(images, det_max_side or self.settings.det_max_side)
        crops = [
            (page, k, crop_line(pages[page][0], box))
            for page, page_boxes in enumerate(boxes)
            for k, box in enumerate(page_boxes)
        ]
        timings["det"] = time.perf_counter() - start
        start = time.perf_counter()
        if self.direction is not None and self.settings.use_angle_classifier and crops:
            crops = self._orient(crops)
        timings["cls"] = time.perf_counter() - start
        start = time.perf_counter()
        texts = self._recognise([c for _, _, c in crops])
        timings["rec"] = time.perf_counter() - start

        results: list[list[TextLine]] = [[] for _ in images]
        for (page, k, _), (text, score) in zip(crops, texts):
            if not text.strip() or score < self.settings.min_score:
                continue
            _, pad, (height, width) = pages[page]
            polygon = boxes[page][k] - np.array([0.0, pad], dtype=np.float32)
            polygon[:, 0] = np.clip(polygon[:, 0], 0, width)
            polygon[:, 1] = np.clip(polygon[:, 1], 0, height)
            results[page].append(TextLine(text=text, score=score, polygon=[(float(x), float(y)) for x, y in polygon]))
        return results

    def _detect(self, images: list[Image.Image], max_side: int) -> tuple[list[_Page], list[np.ndarray]]:
        """Per image: (padded BGR, pad rows, original (h, w)) and its boxes in padded pixels, in reading order."""
        pages = []
        for image in images:
            bgr = to_bgr(image)
            pad = vertical_padding(*bgr.shape[:2])
            padded = cv2.copyMakeBorder(bgr, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)) if pad else bgr
            pages.append((padded, pad, bgr.shape[:2]))
        # Images whose detector inputs have the same size go through the model together, at most
        # DET_MAX_BATCH at a time (a 960 x 960 input is 11 MB of float32).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (padded, _, _) in enumerate(pages):
            height, width = padded.shape[:2]
            groups.setdefault(det_input_size(height, width, max_side), []).append(i)
        maps: list[np.ndarray | None] = [None] * len(images)
        for indices in groups.values():
            for i, prob in zip(
                indices, self.detection.predict_items([pages[i][0] for i in indices], max_side=max_side)
            ):
                maps[i] = prob
        s = self.settings
        boxes = []
        for (padded, _, _), prob in zip(pages, maps):
            assert prob is not None  # every page is in one of the groups
            found, _ = db_boxes(
                prob, padded.shape[0], padded.shape[1], s.det_threshold, s.det_box_threshold, s.det_unclip_ratio
            )
            boxes.append(found[reading_order(found)])
        return pages, boxes

    def _orient(self, crops: list[tuple[int, int, np.ndarray]]) -> list[tuple[int, int, np.ndarray]]:
        """Turn crops the direction classifier finds upside down (P("180") > cls_threshold) by 180 degrees."""
        if self.direction is None:
            return crops
        upside_down = self.direction.predict_items([c for _, _, c in crops])
        return [
            (page, k, cv2.rotate(crop, cv2.ROTATE_180) if turn else crop)
            for (page, k, crop), turn in zip(crops, upside_down)
        ]

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop; crops are batched in order of aspect ratio so padding stays small."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = np.argsort(np.array([c.shape[1] / c.shape[0] for c in crops]))
        for i, decoded in zip(order, self.recognition.predict_items([crops[i] for i in order])):
            results[i] = decoded
        return results
