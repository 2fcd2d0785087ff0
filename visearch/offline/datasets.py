"""Real catalogues to ingest: a folder with optional metadata, Fashion-MNIST, and photos shipped by packages.

Every loader yields :class:`CatalogueItem` with a deterministic ``image_id``, so re-ingesting the same
data upserts the same rows.

Sources (installed by ``make setup``):
- Debian ``dataset-fashion-mnist``: 70,000 Zalando article images, 28 x 28 grey, 10 categories
  (Xiao, Rasul & Vollgraf 2017), read from its IDX files in /usr/share/datasets/fashion-mnist.
- Colour photos: scikit-image's bundled data images, scikit-learn's sample images, and the photos in
  Debian ``darknet``'s data folder.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from visearch.shared.config import ImageSettings
from visearch.shared.images import read_uri

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DARKNET_DATA = Path("/usr/share/darknet/data")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class CatalogueItem:
    """One catalogue image and its product fields. Exactly one of ``uri`` and ``content`` is set."""

    image_id: str
    uri: str | None = None
    content: bytes | None = None
    title: str = ""
    description: str = ""
    brand: str = ""
    category: str = ""
    price: float = 0.0
    in_stock: bool = True
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        """The encoded image: ``content``, or the bytes at ``uri`` (a local path of the operator's own
        catalogue is read even though services refuse file URIs; http(s) goes through the safe fetcher)."""
        return (
            self.content if self.content is not None else read_uri(self.uri or "", ImageSettings(allow_file_uris=True))
        )


# (package-relative file, image id, title, category) of the colour photos we ship in the demo catalogue.
_SKIMAGE_PHOTOS = (
    ("astronaut.png", "astronaut", "Astronaut Eileen Collins in an orange flight suit", "people"),
    ("coffee.png", "coffee", "A cup of coffee on a saucer", "food"),
    ("chelsea.png", "chelsea", "Chelsea the tabby cat", "animals"),
    ("rocket.jpg", "rocket", "A rocket on the launch pad", "vehicles"),
    ("motorcycle_left.png", "motorcycle", "A motorcycle in a garage", "vehicles"),
    ("hubble_deep_field.jpg", "hubble", "Hubble deep field: galaxies in space", "space"),
    ("brick.png", "brick", "A brick wall texture", "textures"),
    ("grass.png", "grass", "A patch of grass", "textures"),
    ("gravel.png", "gravel", "Gravel stones", "textures"),
    ("retina.jpg", "retina", "A human retina photographed through the pupil", "science"),
)
_SKLEARN_PHOTOS = (
    ("china.jpg", "china", "A Chinese temple with trees", "places"),
    ("flower.jpg", "flower", "A pink flower close up", "plants"),
)
_DARKNET_PHOTOS = (
    ("dog.jpg", "dog", "A dog next to a bicycle and a truck", "animals"),
    ("eagle.jpg", "eagle", "An eagle on a branch", "animals"),
    ("giraffe.jpg", "giraffe", "A giraffe and a zebra", "animals"),
    ("horses.jpg", "horses", "Horses in a field", "animals"),
    ("kite.jpg", "kite", "People flying kites on a beach", "people"),
    ("person.jpg", "person", "A person with a dog and a horse", "people"),
    ("scream.jpg", "scream", "The Scream, painting by Edvard Munch", "art"),
)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def photo_catalogue() -> list[CatalogueItem]:
    """Real colour photos from scikit-image, scikit-learn and Debian darknet that are installed here.

    Image ids are ``photo-<name>``; a missing source package just contributes no photos.
    """
    items: list[CatalogueItem] = []
    sources = (
        (_package_dir("skimage"), "data", _SKIMAGE_PHOTOS, "scikit-image"),
        (_package_dir("sklearn"), "datasets/images", _SKLEARN_PHOTOS, "scikit-learn"),
        (DARKNET_DATA.parent, "data", _DARKNET_PHOTOS, "darknet"),
    )
    for root, sub, photos, brand in sources:
        if root is None:
            continue
        for filename, name, title, category in photos:
            path = root / sub / filename
            if path.is_file():
                items.append(
                    CatalogueItem(
                        image_id=f"photo-{name}",
                        uri=str(path),
                        title=title,
                        category=category,
                        brand=brand,
                        attributes={"source": brand, "file": filename},
                    )
                )
    return items


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(
    split: str = "train", limit: int | None = None, offset: int = 0, root: Path = FASHION_MNIST_DIR
) -> Iterator[CatalogueItem]:
    """Fashion-MNIST items as inline PNG bytes (28 x 28 grey), ids ``fmnist-<split>-<index>``.

    Args:
        split: ``train`` (60,000) or ``test`` (10,000).
        limit: at most this many items (default all); ``offset``: index of the first one.

    Raises:
        FileNotFoundError: Debian's ``dataset-fashion-mnist`` is not installed (``make setup`` installs it).
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.is_file():
        raise FileNotFoundError(f"{images_path} missing: install Debian's dataset-fashion-mnist (make setup)")
    images = _read_idx(images_path)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    stop = len(images) if limit is None else min(len(images), offset + limit)
    for index in range(offset, stop):
        buf = io.BytesIO()
        Image.fromarray(images[index], mode="L").save(buf, format="PNG")
        category = FASHION_MNIST_CLASSES[int(labels[index])]
        yield CatalogueItem(
            image_id=f"fmnist-{split}-{index:05d}",
            content=buf.getvalue(),
            title=f"{category} #{index}",
            category=category,
            brand="zalando",
            price=float(10 + (index % 90)),
            in_stock=index % 5 != 0,
            attributes={"source": "fashion-mnist", "split": split},
        )


def folder_catalogue(folder: Path, metadata: Path | None = None) -> Iterator[CatalogueItem]:
    """Images in ``folder`` (recursively, by suffix), ids = path relative to the folder without suffix.

    ``metadata`` (optional) is JSONL or CSV with an ``image_id`` or ``file`` column and any of the
    CatalogueItem fields (title, description, brand, category, price, in_stock, tags [list or
    ';'-separated]); other columns become ``attributes``.
    """
    folder = Path(folder)
    meta = _read_metadata(metadata) if metadata else {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(folder)
        image_id = str(rel.with_suffix("")).replace("\\", "/")
        row = meta.get(image_id) or meta.get(str(rel)) or meta.get(path.name) or {}
        yield _item_from_row(image_id, str(path), row)


def _read_metadata(path: Path) -> dict[str, dict]:
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise ValueError(f"metadata must be .jsonl or .csv, got {path.name}")
    return {str(row.get("image_id") or row.get("file")): row for row in rows}


_FIELDS = {"title", "description", "brand", "category", "price", "in_stock", "tags"}


def _item_from_row(image_id: str, uri: str, row: dict) -> CatalogueItem:
    tags = row.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(";") if t.strip()]
    in_stock = row.get("in_stock")
    if isinstance(in_stock, str):  # CSV: an empty cell means "not given", like a missing column
        in_stock = in_stock.strip().lower() not in ("0", "false", "no") if in_stock.strip() else None
    return CatalogueItem(
        image_id=image_id,
        uri=uri,
        title=_text(row, "title"),
        description=_text(row, "description"),
        brand=_text(row, "brand"),
        category=_text(row, "category"),
        price=float(row.get("price") or 0.0),
        in_stock=True if in_stock is None else bool(in_stock),
        tags=list(tags),
        attributes={k: str(v) for k, v in row.items() if k not in _FIELDS | {"image_id", "file"} and v is not None},
    )


def _text(row: dict, key: str) -> str:
    """A text field of a metadata row; JSON null and missing CSV cells give ""."""
    value = row.get(key)
    return "" if value is None else str(value)
