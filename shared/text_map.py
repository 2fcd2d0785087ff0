"""Text queries into the image encoder's space, with hubness reduction (the query side of issue 16).

``TextToVisualMap`` applies the DeViSE-style map that ``visearch models build`` fits (see
``visearch/offline/models/build_text_map.py``): a MiniLM text vector [384] times ``M`` [384, 1280], L2-normalised, is
a query for the global image embeddings (EfficientNet-Lite0's pooled feature), searched by cosine like an
image query. It also holds the query bank's centroids for hubness reduction.

Hubness reduction: in a high-dimensional space a few points ("hubs") are near neighbours of most
queries (Radovanović et al., JMLR 2010). CSLS (Lample et al., ICLR 2018) scores
``2 cos(q, x) - r(q) - r(x)``, where ``r(x)`` is the mean similarity of image ``x`` to its K nearest
queries; ``r(q)`` does not change a query's ranking. With K spanning the whole query bank, ``r(x)`` is
``x . mean(bank)``, so the ranking becomes that of ``(q - beta * mean(bank)) . x``: centring the query on the
bank's mean (Suzuki et al., "Centering Similarity Measures to Reduce Hubs", EMNLP 2013) gives the same
order at no cost at query time, and the vector engine (Milvus) still does the search. ``beta`` is
``ConseSettings.query_centering`` (0: off).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visearch.shared.models.registry import TEXT_TO_VISUAL


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class TextToVisualMap:
    """The fitted text-to-visual map and the query bank's centroids.

    Args:
        mapping: float32 [384, 1280]. joint_bank_mean: float32 [384]. visual_bank_mean: float32 [1280].
        model_name: ``text_to_visual@<recipe key>``, reported with the vectors it makes.
        class_weights: float32 [1000, 1280], unit rows: where a query's WordNet classes lie in the image space.
    """

    def __init__(
        self,
        mapping: np.ndarray,
        joint_bank_mean: np.ndarray,
        visual_bank_mean: np.ndarray,
        model_name: str,
        class_weights: np.ndarray | None = None,
    ) -> None:
        self.mapping = mapping.astype(np.float32)
        self.class_weights = class_weights
        """float32 [1000, 1280], the image model's class weight vectors (unit rows), or None."""
        self.joint_bank_mean = joint_bank_mean.astype(np.float32)
        self.visual_bank_mean = visual_bank_mean.astype(np.float32)
        self.model_name = model_name

    @classmethod
    def from_cache(cls, cache_dir: Path) -> TextToVisualMap:
        """Load the build in ``cache_dir``.

        Raises:
            ModelNotBuiltError: not built; run ``visearch models build``.
        """
        folder = TEXT_TO_VISUAL.locate(Path(cache_dir))
        return cls(
            np.load(folder / "text_to_visual.npy"),
            np.load(folder / "joint_bank_mean.npy"),
            np.load(folder / "visual_bank_mean.npy"),
            f"{TEXT_TO_VISUAL.name}@{TEXT_TO_VISUAL.key}",
            np.load(folder / "class_weights.npy"),
        )

    def to_visual(
        self,
        text_vectors: np.ndarray,
        centering: float = 0.0,
        class_mix: np.ndarray | None = None,
        class_weight: float | np.ndarray = 0.0,
    ) -> np.ndarray:
        """Image-space query vectors of text vectors: float32 [N, 384] -> float32 [N, 1280], unit norm.

        ``class_mix`` float32 [N, 1000] (rows summing to 1 or 0: the ImageNet classes a query names through
        WordNet) adds ``class_weight`` (a number, or float32 [N, 1] per query) x the unit mixture of those classes' weight vectors; then the result
        is centred on the bank's mean by ``centering`` (beta >= 0, module doc) and normalised.
        """
        visual = _normalise(text_vectors @ self.mapping)
        if class_mix is not None and self.class_weights is not None:
            visual = _normalise(
                visual
                + class_weight * _normalise(class_mix @ self.class_weights) * (class_mix.sum(axis=1, keepdims=True) > 0)
            )
        return _normalise(visual - centering * self.visual_bank_mean) if centering else visual

    def centre_joint(self, text_vectors: np.ndarray, centering: float) -> np.ndarray:
        """Joint-space query vectors centred on the bank's mean: float32 [N, 384] -> [N, 384], unit norm."""
        return _normalise(text_vectors - centering * self.joint_bank_mean) if centering else text_vectors
