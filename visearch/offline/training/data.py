"""What ``visearch train`` trains on: catalogues with categories and tags, and their frozen embeddings.

Frozen embeddings are the image encoder's own output (EfficientNet-Lite0, 1280-d, L2-normalised;
``ImageEncoder.encode``) of each image decoded exactly as the services decode it, so a model trained on
them sees at serving time the same vectors it was trained on. They are cached as ``.npz`` under
``<cache_dir>/_features/<encoder name@key>/`` keyed by catalogue, split, offset and limit: a rerun
(or the tests after a first run) skips the encoder entirely. numpy only: no torch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visearch.offline.datasets import FASHION_MNIST_CLASSES, CatalogueItem, fashion_mnist
from visearch.shared.config import ModelSettings
from visearch.shared.images import decode_image
from visearch.shared.models.trained import EMBEDDING_DIM, ENCODER, catalogue_slug

ENCODE_CHUNK = 256  # images decoded and held in memory at once while encoding

# Fashion-MNIST tags, derived from the category (Fashion-MNIST has category labels only): each tag is
# a property every article of the category typically has. Category-derived tags are exact for the
# garment type and approximate for the article (some "t-shirt/top" images are sleeveless tops; some
# "sandal" images are closed slippers): the head learns the tags of the category it sees.
FASHION_MNIST_TAG_NAMES = (
    "garment",  # clothing worn on the body (not shoes, not bags)
    "upper-body",  # worn on the torso: t-shirt/top, pullover, coat, shirt
    "lower-body",  # worn on the legs: trouser
    "one-piece",  # covers torso and legs: dress
    "has-sleeves",  # t-shirt/top (short), pullover, coat, shirt (long)
    "long-sleeves",  # pullover, coat, shirt
    "outerwear",  # worn over other clothes: coat
    "footwear",  # sandal, sneaker, ankle boot
    "open-toe",  # sandal
    "covers-ankle",  # ankle boot
    "accessory",  # bag
)
FASHION_MNIST_TAGS: dict[str, tuple[str, ...]] = {
    "t-shirt/top": ("garment", "upper-body", "has-sleeves"),
    "trouser": ("garment", "lower-body"),
    "pullover": ("garment", "upper-body", "has-sleeves", "long-sleeves"),
    "dress": ("garment", "one-piece"),
    "coat": ("garment", "upper-body", "has-sleeves", "long-sleeves", "outerwear"),
    "sandal": ("footwear", "open-toe"),
    "shirt": ("garment", "upper-body", "has-sleeves", "long-sleeves"),
    "sneaker": ("footwear",),
    "bag": ("accessory",),
    "ankle boot": ("footwear", "covers-ankle"),
}


@dataclass(frozen=True)
class TrainingCatalogue:
    """A labelled catalogue ``visearch train`` can fit heads for.

    ``categories``: class names in label order. ``tag_names``: the multi-label vocabulary.
    ``tags``: category -> its tags. ``items(split, offset, limit)``: the catalogue's images
    (``CatalogueItem`` with ``category`` set), deterministic order.
    """

    name: str
    categories: tuple[str, ...]
    tag_names: tuple[str, ...]
    tags: dict[str, tuple[str, ...]]
    items: Callable[[str, int, int], Iterator[CatalogueItem]] = field(compare=False)
    source: str = ""

    def tag_matrix(self, labels: np.ndarray) -> np.ndarray:
        """Multi-hot tag targets: float32 ``[N, len(tag_names)]`` of 0/1 for int category ``labels`` [N]."""
        table = np.zeros((len(self.categories), len(self.tag_names)), np.float32)
        for c, category in enumerate(self.categories):
            for tag in self.tags[category]:
                table[c, self.tag_names.index(tag)] = 1.0
        return table[np.asarray(labels, dtype=np.int64)]


FASHION_MNIST = TrainingCatalogue(
    name="fashion-mnist",
    categories=FASHION_MNIST_CLASSES,
    tag_names=FASHION_MNIST_TAG_NAMES,
    tags=FASHION_MNIST_TAGS,
    items=lambda split, offset, limit: fashion_mnist(split, limit=limit, offset=offset),
    source="Debian dataset-fashion-mnist (Xiao, Rasul & Vollgraf 2017)",
)
CATALOGUES = {FASHION_MNIST.name: FASHION_MNIST}


def training_catalogue(name: str) -> TrainingCatalogue:
    """The catalogue called ``name``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in CATALOGUES:
        raise ValueError(f"unknown catalogue {name!r}; known: {sorted(CATALOGUES)}")
    return CATALOGUES[name]


@dataclass
class FrozenEmbeddings:
    """Frozen encoder embeddings of a slice of a catalogue.

    ``embeddings``: float32 [N, 1280], unit norm. ``labels``: int64 [N], category indices.
    ``source``: what they are (catalogue, split, offset, limit, encoder), recorded in trained models' meta.json.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    source: dict


def features_path(cache_dir: Path, catalogue: str, split: str, offset: int, limit: int, encoder: str = ENCODER) -> Path:
    """Cache file of one slice: ``<cache_dir>/_features/<encoder>/<catalogue slug>-<split>-<offset>-<limit>.npz``."""
    return Path(cache_dir) / "_features" / encoder / f"{catalogue_slug(catalogue)}-{split}-{offset}-{limit}.npz"


def frozen_embeddings(
    catalogue: TrainingCatalogue,
    split: str,
    offset: int,
    limit: int,
    models: ModelSettings | None = None,
    progress: bool = False,
) -> FrozenEmbeddings:
    """Embeddings and labels of ``catalogue`` images ``offset .. offset+limit-1`` of ``split``, cached.

    Images are decoded with the services' decoder and encoded by the built image model (onnxruntime, or
    Triton when ``VISEARCH_MODEL_TRITON_URL`` is set), ``ENCODE_CHUNK`` at a time.

    Raises:
        ModelNotBuiltError: the image model is not built (``visearch models build``).
        FileNotFoundError: the catalogue's data is not installed.
        ValueError: the split holds fewer than ``limit`` images after ``offset``, or ``limit`` < 1.
    """
    from visearch.shared.encoders import ImageEncoder  # services import shared, not the reverse

    if limit < 1 or offset < 0:
        raise ValueError(f"need offset >= 0 and limit >= 1, got offset={offset}, limit={limit}")
    models = models or ModelSettings()
    source = {"catalogue": catalogue.name, "split": split, "offset": offset, "limit": limit, "encoder": ENCODER}
    path = features_path(models.cache_dir, catalogue.name, split, offset, limit)
    if path.is_file():
        with np.load(path) as data:
            return FrozenEmbeddings(data["embeddings"], data["labels"], source)
    encoder = ImageEncoder.from_cache(models)
    embeddings, labels, chunk = [], [], []
    bar = tqdm(
        total=limit, unit="img", desc=f"embed {catalogue.name} {split}[{offset}:{offset + limit}]", disable=not progress
    )

    def flush() -> None:
        embeddings.append(encoder.encode([decode_image(item.content or item.read_bytes()) for item in chunk])[0])
        labels.extend(catalogue.categories.index(item.category) for item in chunk)
        bar.update(len(chunk))
        chunk.clear()

    for item in catalogue.items(split, offset, limit):
        chunk.append(item)
        if len(chunk) == ENCODE_CHUNK:
            flush()
    if chunk:
        flush()
    bar.close()
    if sum(len(e) for e in embeddings) != limit:
        raise ValueError(f"{catalogue.name} {split} has fewer than {offset + limit} images")
    out = FrozenEmbeddings(np.concatenate(embeddings).astype(np.float32), np.asarray(labels, np.int64), source)
    assert out.embeddings.shape == (limit, EMBEDDING_DIM)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, embeddings=out.embeddings, labels=out.labels)
    os.replace(tmp, path)
    return out
