"""Image moderation: nsfwjs's MobileNetV2 classifier (5 classes: drawing, hentai, neutral, porn, sexy).

Model: npm ``nsfwjs`` 4.4.0 (MIT, Infinite Red), its default "MobileNetV2" Keras model (MobileNetV2,
Sandler et al. 2018, fine-tuned on the nsfw_data_scraper categories), a TF.js layers model whose
weights the package embeds base64-encoded in JS files. ``visearch models build`` decodes it, loads it with
the tensorflowjs converter's Keras loader and converts it to ONNX with tf2onnx
(``visearch/offline/models/build_tfjs.py``).

Preprocessing is nsfwjs's own (``NSFWJS.infer`` in ``dist/esm/core.js``): pixels / 255, then a bilinear
resize to 224 x 224 with ``alignCorners = true`` (the whole image, stretched: no crop, no padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from visearch.shared.config import ClassificationSettings, ModelSettings
from visearch.shared.inference import InferenceRunner
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import MODERATION_MODEL

MODERATION_CLASSES = ("drawing", "hentai", "neutral", "porn", "sexy")
"""Output order of the model (nsfwjs ``NSFW_CLASSES``: Drawing, Hentai, Neutral, Porn, Sexy), lower-cased."""
UNSAFE_CLASSES = ("hentai", "porn", "sexy")
INPUT_SIZE = 224
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def resize_bilinear_align_corners(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[H, W, C]`` to ``[size, size, C]`` with aligned corners, as TensorFlow.js
    ``tf.image.resizeBilinear(x, [size, size], alignCorners=true)`` computes it: output pixel ``i`` samples
    input coordinate ``i * (H - 1) / (size - 1)``; no antialiasing. Returns float32."""
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(size, dtype=np.float64) * ((n - 1) / (size - 1) if size > 1 else 0.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(height)
    x0, x1, fx = axis(width)
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx[None, :, None]
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx[None, :, None]
    return (top + (bottom - top) * fy[:, None, None]).astype(np.float32)


def preprocess_moderation(img: Image.Image) -> np.ndarray:
    """nsfwjs input for one image: float32 ``[224, 224, 3]``, RGB in 0..1 (see module docstring)."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return resize_bilinear_align_corners(rgb, INPUT_SIZE)


class ModerationModel(InferenceModel[Image.Image, np.ndarray]):
    """nsfwjs MobileNetV2: decoded RGB images of any size -> probabilities of :data:`MODERATION_CLASSES`.

    Args:
        runner: runs the ONNX model: input ``images`` float32 ``[N, 224, 224, 3]`` (RGB 0..1), output
            ``probabilities`` float32 ``[N, 5]`` (softmax, :data:`MODERATION_CLASSES` order).
            None: loaded from ``models`` (see :class:`~visearch.shared.model_base.InferenceModel`).
        settings: ``moderation_unsafe_threshold`` is used by :meth:`is_safe`.
        batch_size: images per inference call.
        models: where the runner is loaded from when ``runner`` is None (default ``ModelSettings()``).
    """

    spec = MODERATION_MODEL
    outputs = (OUTPUT_NAME,)

    def __init__(
        self,
        runner: InferenceRunner | None,
        settings: ClassificationSettings | None = None,
        batch_size: int = 16,
        *,
        models: ModelSettings | None = None,
    ) -> None:
        super().__init__(runner, models=models, batch_size=batch_size)
        self.settings = settings or ClassificationSettings()

    @classmethod
    def from_cache(
        cls, models: ModelSettings | None = None, settings: ClassificationSettings | None = None
    ) -> ModerationModel:
        """Load the built model: Triton when ``models.triton_url`` is set, else in-process onnxruntime.

        Raises:
            ModelNotBuiltError: the model is not built; run ``visearch models build``.
            DependencyUnavailableError: Triton is configured but not reachable or the model not ready.
        """
        models = models or ModelSettings()
        model = cls(None, settings, models.image_batch_size, models=models)
        model.load()
        return model

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        """Class probabilities of decoded RGB images (any size): float32 ``[N, 5]``, rows sum to 1
        (``[0, 5]`` for no images). Columns follow :data:`MODERATION_CLASSES`.

        Raises:
            InvalidEventError: (reason ``model_input_mismatch``) the served model's inputs differ.
            DependencyUnavailableError: Triton did not answer (Triton runner only).
        """
        empty = np.zeros((0, len(MODERATION_CLASSES)), dtype=np.float32)
        return np.concatenate([empty, *self.predict_batches(images)])

    def preprocess(self, items: Sequence[Image.Image], **options: Any) -> Batch:
        """nsfwjs inputs ``[N, 224, 224, 3]`` (see :func:`preprocess_moderation`)."""
        return Batch({INPUT_NAME: np.stack([preprocess_moderation(img) for img in items])})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> np.ndarray:
        """float32 ``[N, 5]`` probabilities."""
        return outputs[OUTPUT_NAME].astype(np.float32)

    def unsafe_scores(self, probs: np.ndarray) -> np.ndarray:
        """P(porn) + P(hentai) + P(sexy) of each row of ``probs`` ``[N, 5]``: float32 ``[N]`` in 0..1."""
        cols = [MODERATION_CLASSES.index(c) for c in UNSAFE_CLASSES]
        return np.asarray(probs, dtype=np.float32).reshape(-1, len(MODERATION_CLASSES))[:, cols].sum(axis=1)

    def is_safe(self, probs: np.ndarray) -> np.ndarray:
        """bool ``[N]``: True where P(porn) + P(hentai) + P(sexy) < ``settings.moderation_unsafe_threshold``."""
        return self.unsafe_scores(probs) < self.settings.moderation_unsafe_threshold
