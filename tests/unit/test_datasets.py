"""Unit tests for visearch.offline.datasets: folder catalogues with metadata, and Fashion-MNIST IDX reading."""

from __future__ import annotations

import gzip
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visearch.offline.datasets import (
    FASHION_MNIST_CLASSES,
    CatalogueItem,
    fashion_mnist,
    folder_catalogue,
)

# ------------------------------------------------------------------------------------------------ folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """tmp/catalogue with sub/a.png, sub/b.jpg, sub/deeper/c.PNG and a notes.txt that must be ignored."""
    root = tmp_path / "catalogue"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(root / "sub" / "a.png")
    Image.new("RGB", (8, 6), (0, 255, 0)).save(root / "sub" / "b.jpg")
    Image.new("L", (4, 4), 9).save(root / "sub" / "deeper" / "c.PNG", format="PNG")
    (root / "sub" / "notes.txt").write_text("not an image")
    (root / "README").write_text("no suffix")
    return root


def test_folder_catalogue_ids_are_relative_paths_without_suffix(folder):
    """Images are found recursively (suffix case-insensitive), sorted, ids relative without suffix; .txt ignored."""
    items = list(folder_catalogue(folder))
    assert [i.image_id for i in items] == ["sub/a", "sub/b", "sub/deeper/c"]
    assert items[0].uri == str(folder / "sub" / "a.png") and items[0].content is None
    assert items[0].read_bytes() == (folder / "sub" / "a.png").read_bytes()
    assert Image.open(io.BytesIO(items[1].read_bytes())).size == (8, 6)


def test_folder_catalogue_defaults_without_metadata(folder):
    """Without metadata every item has empty product fields, in stock, price 0."""
    item = next(folder_catalogue(folder))
    assert (item.title, item.category, item.brand, item.price, item.in_stock, item.tags, item.attributes) == (
        "",
        "",
        "",
        0.0,
        True,
        [],
        {},
    )


def test_folder_catalogue_jsonl_metadata(folder, tmp_path):
    """JSONL rows match by image_id, relative path or file name; tags lists kept; other keys become attributes."""
    meta = tmp_path / "meta.jsonl"
    rows = [
        {
            "image_id": "sub/a",
            "title": "Red",
            "category": "shoes",
            "price": 12.5,
            "in_stock": False,
            "tags": ["red", "sale"],
            "color": "red",
            "size": 42,
        },
        {"file": "sub/b.jpg", "title": "Green", "brand": "acme"},
        {"file": "c.PNG", "title": "Grey"},
    ]
    meta.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    items = {i.image_id: i for i in folder_catalogue(folder, meta)}
    a = items["sub/a"]
    assert (a.title, a.category, a.price, a.in_stock, a.tags) == ("Red", "shoes", 12.5, False, ["red", "sale"])
    assert a.attributes == {"color": "red", "size": "42"}
    assert (items["sub/b"].title, items["sub/b"].brand) == ("Green", "acme")
    assert items["sub/deeper/c"].title == "Grey"


def test_folder_catalogue_csv_metadata(folder, tmp_path):
    """CSV: tags are ';'-separated, in_stock 'false' -> False, price parsed, unknown columns -> attributes."""
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "image_id,title,price,in_stock,tags,colour,material\n"
        "sub/a,Red shoe,19.99,false,red; shoe ;;sale,red,leather\n"
        "sub/b,Green bag,5,true,,green,canvas\n"
    )
    items = {i.image_id: i for i in folder_catalogue(folder, meta)}
    a, b = items["sub/a"], items["sub/b"]
    assert (a.title, a.price, a.in_stock, a.tags) == ("Red shoe", 19.99, False, ["red", "shoe", "sale"])
    assert a.attributes == {"colour": "red", "material": "leather"}
    assert (b.price, b.in_stock, b.tags, b.attributes) == (5.0, True, [], {"colour": "green", "material": "canvas"})
    assert items["sub/deeper/c"].title == ""  # no row: defaults


@pytest.mark.parametrize("text", ["false", "False", "0", "no", " FALSE "])
def test_in_stock_false_spellings(folder, tmp_path, text):
    """CSV in_stock values false/0/no (any case, spaces) mean out of stock."""
    meta = tmp_path / "m.csv"
    meta.write_text(f"file,in_stock\na.png,{text}\n")
    assert next(folder_catalogue(folder, meta)).in_stock is False


def test_metadata_of_other_formats_is_refused(folder, tmp_path):
    """Metadata that is neither .jsonl nor .csv raises ValueError."""
    meta = tmp_path / "m.json"
    meta.write_text("{}")
    with pytest.raises(ValueError, match="jsonl or .csv"):
        list(folder_catalogue(folder, meta))


def test_catalogue_item_read_bytes_prefers_content():
    """An item with inline content returns it without touching the uri."""
    assert CatalogueItem(image_id="x", content=b"abc", uri="/does/not/exist").read_bytes() == b"abc"


# ------------------------------------------------------------------------------------------ fashion mnist


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzip IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 28x28 train images (labels 0..5) and two test images (labels 9, 8) as IDX files."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:2])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 8], dtype=np.uint8))
    return tmp_path, images, labels


def test_idx_magic_numbers_are_standard(mnist_root):
    """Our writer emits the standard IDX magics 0x00000803 (images) and 0x00000801 (labels)."""
    root, _, _ = mnist_root
    with gzip.open(root / "train-images-idx3-ubyte.gz") as fh:
        assert struct.unpack(">IIII", fh.read(16)) == (0x803, 6, 28, 28)
    with gzip.open(root / "train-labels-idx1-ubyte.gz") as fh:
        assert struct.unpack(">II", fh.read(8)) == (0x801, 6)


def test_fashion_mnist_items(mnist_root):
    """Ids fmnist-train-NNNNN, category names from labels, PNG content decoding to the exact 28x28 pixels."""
    root, images, labels = mnist_root
    items = list(fashion_mnist(root=root))
    assert [i.image_id for i in items] == [f"fmnist-train-{n:05d}" for n in range(6)]
    assert [i.category for i in items] == ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal"]
    for item, pixels in zip(items, images):
        assert item.uri is None
        img = Image.open(io.BytesIO(item.content))
        assert img.format == "PNG" and img.mode == "L" and img.size == (28, 28)
        assert np.array_equal(np.asarray(img), pixels)
    first = items[0]
    assert (first.brand, first.price, first.in_stock) == ("zalando", 10.0, False)
    assert items[1].in_stock is True and items[1].price == 11.0
    assert first.title == "t-shirt/top #0"
    assert first.attributes == {"source": "fashion-mnist", "split": "train"}


def test_fashion_mnist_limit_and_offset(mnist_root):
    """limit/offset select a window; windows past the end are clipped or empty."""
    root, _, _ = mnist_root
    ids = lambda **kw: [i.image_id for i in fashion_mnist(root=root, **kw)]  # noqa: E731
    assert ids(limit=2) == ["fmnist-train-00000", "fmnist-train-00001"]
    assert ids(limit=2, offset=3) == ["fmnist-train-00003", "fmnist-train-00004"]
    assert ids(limit=10, offset=4) == ["fmnist-train-00004", "fmnist-train-00005"]
    assert ids(offset=5) == ["fmnist-train-00005"]
    assert ids(limit=0) == []
    assert ids(offset=6) == []


def test_fashion_mnist_test_split(mnist_root):
    """The test split reads the t10k files and names ids fmnist-test-NNNNN."""
    root, _, _ = mnist_root
    items = list(fashion_mnist("test", root=root))
    assert [(i.image_id, i.category) for i in items] == [
        ("fmnist-test-00000", "ankle boot"),
        ("fmnist-test-00001", "bag"),
    ]
    assert items[0].attributes["split"] == "test"


def test_fashion_mnist_missing_files(tmp_path):
    """A root without the IDX files raises FileNotFoundError naming the Debian package."""
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        next(fashion_mnist(root=tmp_path))


def test_fashion_mnist_rejects_non_byte_idx(tmp_path):
    """An IDX file whose type is not unsigned byte (0x08) raises ValueError."""
    header = struct.pack(">HBBI", 0, 0x0D, 1, 1)  # 0x0D = float32
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as fh:
            fh.write(header + b"\0\0\0\0")
    with pytest.raises(ValueError, match="unsigned-byte"):
        next(fashion_mnist(root=tmp_path))


def test_real_fashion_mnist_files():
    """The installed dataset: first ids, valid categories, 28x28 PNGs, and exactly 60,000 train items."""
    items = list(fashion_mnist(limit=3))
    assert [i.image_id for i in items] == ["fmnist-train-00000", "fmnist-train-00001", "fmnist-train-00002"]
    for item in items:
        assert item.category in FASHION_MNIST_CLASSES
        assert Image.open(io.BytesIO(item.content)).size == (28, 28)
    tail = [i.image_id for i in fashion_mnist(limit=5, offset=59_998)]
    assert tail == ["fmnist-train-59998", "fmnist-train-59999"]


def test_null_and_empty_metadata_values_mean_not_given(tmp_path):
    """JSON null gives "" (not "None"); an empty in_stock cell keeps the default (in stock)."""
    from PIL import Image

    from visearch.offline.datasets import folder_catalogue

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"image_id": "a", "title": null, "category": null, "extra": null}\n')
    item = next(folder_catalogue(tmp_path, jsonl))
    assert (item.title, item.category, item.attributes) == ("", "", {})
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("image_id,in_stock,title\nb,,Bee\n")
    items = {i.image_id: i for i in folder_catalogue(tmp_path, csv_path)}
    assert items["b"].in_stock is True and items["b"].title == "Bee"
