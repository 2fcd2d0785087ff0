"""Trained catalogue models (``visearch train``): versioned folders in the model cache, and their runtimes.

``visearch train`` fits two small networks on FROZEN image embeddings (EfficientNet-Lite0, 1280-d,
L2-normalised, exactly what ``ImageEncoder.encode`` returns) of one catalogue and exports each to ONNX:

- ``projection``: a metric-learning map 1280 -> 1280 (triplet loss, batch-hard negatives) whose output
  is L2-normalised inside the graph. The embedding service applies it after the encoder when
  ``VISEARCH_MODEL_PROJECTION`` selects a version; vectors keep 1280 dims, so Milvus schemas do not change.
- ``head``: a multi-task classifier (softmax over the catalogue's categories, sigmoid over its tags).
  The classification service adds its ``category`` and ``tag`` attributes when
  ``VISEARCH_MODEL_CATALOGUE_HEAD`` selects a version.

Layout, shaped like a Triton model repository (``visearch train publish`` copies it there)::

    <cache_dir>/<kind>_<catalogue slug>/<version>/model.onnx
                                                 /meta.json   (version, encoder, training data, metrics, labels)

``<version>`` is 1, 2, 3...: each training run installs the next one and never overwrites an old one.
A version is usable only with the encoder it was trained on (``meta.json: encoder``, the image
model's ``name@recipe key``): a rebuilt encoder makes old versions unselectable rather than silently wrong.
Serving reads these folders with onnxruntime only; building them needs torch (``visearch/offline/training/heads.py``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self, cast

import numpy as np

from visearch.shared.config import ModelSettings
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.inference import OnnxRunner, intra_op_threads
from visearch.shared.model_base import Batch, InferenceModel, ResultT
from visearch.shared.models.registry import IMAGE_MODEL

KINDS = ("projection", "head")
ENCODER = f"{IMAGE_MODEL.name}@{IMAGE_MODEL.key}"
"""The embedding space trained models take as input: the image model's name and recipe key."""
EMBEDDING_DIM = 1280
SELECTOR_PATTERN = r"^(|latest|[1-9][0-9]*)$"
"""Values of the ``projection`` / ``catalogue_head`` settings: empty (off), ``latest``, or a version number."""


def catalogue_slug(catalogue: str) -> str:
    """``catalogue`` lower-cased with every run of other characters than [a-z0-9] turned into ``_``.

    Raises:
        ValueError: nothing is left (e.g. an empty name).
    """
    slug = re.sub(r"[^a-z0-9]+", "_", catalogue.lower()).strip("_")
    if not slug:
        raise ValueError(f"catalogue name {catalogue!r} has no letters or digits")
    return slug


def trained_name(kind: str, catalogue: str) -> str:
    """Model name of a trained kind for a catalogue, e.g. ``projection_fashion_mnist`` (also its Triton name).

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`, or the catalogue name is empty.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"{kind}_{catalogue_slug(catalogue)}"


def trained_root(cache_dir: Path, kind: str, catalogue: str) -> Path:
    """Folder holding every version of ``kind`` for ``catalogue``: ``<cache_dir>/<kind>_<slug>``."""
    return Path(cache_dir) / trained_name(kind, catalogue)


def list_versions(cache_dir: Path, kind: str, catalogue: str) -> list[tuple[int, Path]]:
    """Finished versions (folders named by a positive integer holding ``meta.json``), oldest first."""
    root = trained_root(cache_dir, kind, catalogue)
    if not root.is_dir():
        return []
    found = [
        (int(p.name), p)
        for p in root.iterdir()
        if p.is_dir() and p.name.isdigit() and int(p.name) > 0 and (p / "meta.json").is_file()
    ]
    return sorted(found)


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of a version folder, as a dict."""
    meta: dict[str, Any] = json.loads((Path(folder) / "meta.json").read_text())
    return meta


def resolve_version(cache_dir: Path, kind: str, catalogue: str, selector: str, encoder: str = ENCODER) -> Path | None:
    """The version folder a setting selects.

    Args:
        selector: ``""`` (off: returns None), ``"latest"`` (the newest version trained on ``encoder``)
            or a version number as text.
        encoder: the embedding space the caller produces (default: the registered image model).

    Raises:
        ModelNotBuiltError: no version trained on ``encoder`` exists (``latest``), the numbered version does
            not exist, or it was trained on another encoder. The message names the command to run.
        ValueError: a selector that is neither empty, ``latest`` nor a positive integer.
    """
    selector = selector.strip()
    if not selector:
        return None
    if not re.fullmatch(SELECTOR_PATTERN, selector):
        raise ValueError(f"a {kind} selector is '', 'latest' or a version number, got {selector!r}")
    versions = list_versions(cache_dir, kind, catalogue)
    hint = f"run `visearch train {kind} --catalogue {catalogue}`"
    if selector == "latest":
        usable = [folder for _, folder in versions if read_meta(folder).get("encoder") == encoder]
        if not usable:
            raise ModelNotBuiltError(
                f"no {kind} for catalogue {catalogue!r} trained on {encoder} in {cache_dir}; {hint}"
            )
        return usable[-1]
    folder = dict(versions).get(int(selector))
    if folder is None:
        raise ModelNotBuiltError(f"{kind} version {selector} of catalogue {catalogue!r} is not in {cache_dir}; {hint}")
    trained_on = read_meta(folder).get("encoder")
    if trained_on != encoder:
        raise ModelNotBuiltError(
            f"{kind} version {selector} of catalogue {catalogue!r} was trained on {trained_on}, "
            f"the image model is {encoder}; {hint}"
        )
    return folder


def install_version(staging: Path, cache_dir: Path, kind: str, catalogue: str) -> tuple[int, Path]:
    """Move a finished staging folder (``model.onnx`` + ``meta.json``) into place as the next version.

    ``meta.json`` gets ``version`` and ``name`` before the folder is renamed, so a reader never sees a
    version without them. Two concurrent runs get different numbers (a rename onto an existing folder
    fails and the next number is tried).

    Returns:
        (version, its folder).

    Raises:
        FileNotFoundError: ``staging`` lacks ``model.onnx`` or ``meta.json``.
    """
    staging = Path(staging)
    for required in ("model.onnx", "meta.json"):
        if not (staging / required).is_file():
            raise FileNotFoundError(f"{staging / required} missing")
    root = trained_root(cache_dir, kind, catalogue)
    root.mkdir(parents=True, exist_ok=True)
    meta = read_meta(staging)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    version = max(taken, default=0) + 1
    while True:
        meta.update(name=trained_name(kind, catalogue), version=version)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        target = root / str(version)
        try:
            os.rename(staging, target)  # fails if target exists and is not empty (or is a file)
        except OSError:
            if not target.exists():
                raise
            version += 1
            continue
        return version, target


def staging_folder(cache_dir: Path, kind: str, catalogue: str) -> Path:
    """A fresh temporary folder beside the versions (same file system, so :func:`install_version` renames)."""
    root = trained_root(cache_dir, kind, catalogue)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=root))


class TrainedModel(InferenceModel[np.ndarray, ResultT]):
    """One installed version: its ``meta.json`` and an onnxruntime session over its ``model.onnx``.

    Runs in this process even when ``VISEARCH_MODEL_TRITON_URL`` is set: these heads are a few matrix
    products per vector (<= 1280 x 1280), far cheaper than a network round trip. All rows go through the
    model in one call (``batch_size`` 0). ``model_name`` is ``<name>@<version>`` (e.g.
    ``projection_fashion_mnist@3``), recorded with results so stored rows say which space they are in.

    Args:
        folder: the version folder. intra_op_threads: onnxruntime threads (0: its default).

    Raises:
        ModelNotBuiltError: the folder holds no ``meta.json`` or ``model.onnx``.
    """

    kind = ""

    def __init__(self, folder: Path, intra_op_threads: int = 0) -> None:
        folder = Path(folder)
        if not (folder / "meta.json").is_file() or not (folder / "model.onnx").is_file():
            raise ModelNotBuiltError(f"{folder} is not a trained model version (model.onnx + meta.json)")
        self.folder = folder
        self.meta = read_meta(folder)
        self.version = int(self.meta["version"])
        self.input_dim = int(self.meta.get("input_dim", EMBEDDING_DIM))
        self.intra_op_threads = intra_op_threads
        super().__init__(model_name=f"{self.meta['name']}@{self.version}")
        self.load()

    @classmethod
    def from_settings(cls, models: ModelSettings, selector: str) -> Self | None:
        """The version ``selector`` names for ``models.catalogue`` in ``models.cache_dir``; None when off.

        Raises:
            ModelNotBuiltError, ValueError: see :func:`resolve_version`.
        """
        folder = resolve_version(models.cache_dir, cls.kind, models.catalogue, selector)
        return None if folder is None else cls(folder, models.intra_op_threads)

    def _load(self) -> OnnxRunner:
        return OnnxRunner(self.folder / "model.onnx", self.meta["name"], intra_op_threads(self.intra_op_threads))

    def _check(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"{self.model_name} takes float32 [N, {self.input_dim}], got {x.shape}")
        return x

    def preprocess(self, items: Sequence[np.ndarray], **options: Any) -> Batch:
        """``embedding``: the rows as checked by ``_check`` (float32 ``[N, input_dim]``)."""
        return Batch({"embedding": np.asarray(items)})

    def _predict(self, x: np.ndarray) -> ResultT:
        """The model's result for the checked rows ``x`` (N >= 1), in one runner call."""
        return self.predict_batches(cast("Sequence[np.ndarray]", x))[0]  # an [N, D] array is a sequence of N rows


class Projection(TrainedModel[np.ndarray]):
    """The metric-learning projection of a catalogue (Hermans et al. 2017 batch-hard triplet training).

    ``project(x)``: x float32 [N, 1280], the image encoder's L2-normalised embeddings (N >= 1).
    Returns float32 [N, 1280], unit norm (normalised inside the ONNX graph).

    Raises:
        ValueError: ``x`` is not [N, 1280].
    """

    kind = "projection"
    outputs = ("projected",)

    def project(self, embeddings: np.ndarray) -> np.ndarray:  # noqa: D102
        x = self._check(embeddings)
        if not len(x):
            return x
        return self._predict(x)

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> np.ndarray:  # noqa: D102
        return outputs["projected"]


class CatalogueHead(TrainedModel[tuple[np.ndarray, np.ndarray]]):
    """The multi-task head of a catalogue: one shared hidden layer, a softmax over ``categories`` and
    independent sigmoids over ``tags`` (names from ``meta.json``).

    ``predict(x)``: x float32 [N, 1280], the image encoder's L2-normalised (unprojected) embeddings.
    Returns ``(category_probs float32 [N, C] rows summing to 1, tag_probs float32 [N, T] each in [0, 1])``.

    Raises:
        ValueError: ``x`` is not [N, 1280].
    """

    kind = "head"
    outputs = ("category_probs", "tag_probs")

    def __init__(self, folder: Path, intra_op_threads: int = 0) -> None:
        super().__init__(folder, intra_op_threads)
        self.categories: list[str] = list(self.meta["categories"])
        self.tags: list[str] = list(self.meta["tags"])

    def predict(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        x = self._check(embeddings)
        if not len(x):
            return np.zeros((0, len(self.categories)), np.float32), np.zeros((0, len(self.tags)), np.float32)
        return self._predict(x)

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        return outputs["category_probs"], outputs["tag_probs"]

    def attributes(self, embeddings: np.ndarray, tag_min_score: float) -> list[list[tuple[str, str, float]]]:
        """Per image, ``("category", best category, its probability)`` then ``("tag", tag, probability)``
        for each tag whose probability is at least ``tag_min_score`` (highest first)."""
        categories, tags = self.predict(embeddings)
        out = []
        for cat_row, tag_row in zip(categories, tags):
            best = int(cat_row.argmax())
            row = [("category", self.categories[best], float(cat_row[best]))]
            row += [
                ("tag", self.tags[j], float(tag_row[j])) for j in np.argsort(-tag_row) if tag_row[j] >= tag_min_score
            ]
            out.append(row)
        return out
