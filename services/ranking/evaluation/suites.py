"""The evaluation suites: real catalogues, queries and relevance judgments.

- ``fashion``: Fashion-MNIST category retrieval. Catalogue: the first N training images; queries: the
  first M test images (held out, never indexed), by image; relevant = same category (grade 1).
- ``neardup``: near-duplicate retrieval. Catalogue: the real photos of ``photo_catalogue()`` plus real
  distractor images (``suites.yaml``) and Fashion-MNIST items; queries: each photo transformed at run
  time with Pillow (tight crop to one object, off-centre crop, small thumbnail, rotation, mirror + 90°,
  colour jitter, grey + heavy JPEG, a text banner, and all of that combined); relevant = the original.
- ``text2image``: text queries written by hand per photo (``suites.yaml``) over the same catalogue as
  ``neardup``, graded relevance (2 = the photo meant, 1 = another that partly fits).

Every suite is deterministic: the same inputs give the same queries byte for byte.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from visearch.shared.datasets import CatalogueItem, fashion_mnist, photo_catalogue

DATA_FILE = Path(__file__).with_name("suites.yaml")
SUITES = ("fashion", "neardup", "text2image")
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian fonts-dejavu-core
BANNER_TEXT = "SUMMER SALE -50%"
# The image-only ingest chain of a thumbnail catalogue (28 x 28 grey: no objects or text to find),
# with classification for the tag, taxonomy, colour and pHash factors.
FASHION_STAGES = ["embedding", "classification", "indexer"]


@dataclass
class EvalQuery:
    """One query: text or encoded image bytes, and its judgments (image id -> grade, > 0 relevant)."""

    qid: str
    judgments: dict[str, int]
    text: str | None = None
    image: bytes | None = None
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class Suite:
    """A catalogue to ingest (into ``tenant``, through ``stages``; None: the platform's chain) and its queries."""

    name: str
    tenant: str
    catalogue: list[CatalogueItem]
    queries: list[EvalQuery]
    description: str
    stages: list[str] | None = None


@cache
def suite_data() -> dict:
    """The hand-written data of the suites (text queries, distractor titles, object boxes)."""
    return yaml.safe_load(DATA_FILE.read_text())


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT_FILE), size) if FONT_FILE.is_file() else ImageFont.load_default(size)


def banner(image: Image.Image, text: str = BANNER_TEXT) -> Image.Image:
    """``text`` in white bold letters on a dark band across the middle (an advert's overlay)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // 8)
    font = _font(size)
    while size > 12 and draw.textlength(text, font=font) > out.width * 0.9:
        size -= 2
        font = _font(size)
    width = draw.textlength(text, font=font)
    top = out.height // 2 - size
    draw.rectangle((0, top, out.width, top + 2 * size), fill=(20, 20, 20))
    draw.text(((out.width - width) / 2, top + size // 2), text, font=font, fill=(255, 255, 255))
    return out


def jitter(image: Image.Image) -> Image.Image:
    """Strong colour jitter: hue rotated by a quarter turn, saturation x1.6, brightness x0.75, contrast x1.3."""
    h, s, v = image.convert("RGB").convert("HSV").split()
    h = h.point(lambda x: (x + 64) % 256)
    out = Image.merge("HSV", (h, s, v)).convert("RGB")
    out = ImageEnhance.Color(out).enhance(1.6)
    out = ImageEnhance.Brightness(out).enhance(0.75)
    return ImageEnhance.Contrast(out).enhance(1.3)


def _offcentre(im: Image.Image) -> Image.Image:
    return im.crop((im.width * 5 // 100, im.height * 10 // 100, im.width * 60 // 100, im.height * 65 // 100))


def _tight(im: Image.Image, box) -> Image.Image:
    if box:
        return im.crop(tuple(box))
    w, h = im.width, im.height  # textures and scenes without one object: the central 40 %
    return im.crop((w * 30 // 100, h * 30 // 100, w * 70 // 100, h * 70 // 100))


# name -> (image, object box or None) -> transformed image. Relevant for every one: the original photo.
TRANSFORMS: dict[str, Callable[[Image.Image, list | None], Image.Image]] = {
    "crop_object": _tight,
    "crop_offcentre": lambda im, box: _offcentre(im),
    "thumbnail_64px": lambda im, box: im.resize((64, max(1, round(64 * im.height / im.width))), Image.BILINEAR),
    "rotate_25deg": lambda im, box: im.rotate(25, resample=Image.BILINEAR, expand=True, fillcolor=(255, 255, 255)),
    "mirror_rotate_90": lambda im, box: ImageOps.mirror(im).transpose(Image.Transpose.ROTATE_90),
    "colour_jitter": lambda im, box: jitter(im),
    "grey_jpeg_q10": lambda im, box: Image.open(io.BytesIO(_jpeg(ImageOps.grayscale(im), quality=10))),
    "text_banner": lambda im, box: banner(im),
    "combined": lambda im, box: banner(jitter(_offcentre(im).rotate(12, resample=Image.BILINEAR, expand=True,
                                                                     fillcolor=(255, 255, 255)))),
}


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def distractor_images() -> list[CatalogueItem]:
    """The real distractor images of ``suites.yaml`` that are installed (a missing package gives none)."""
    items = []
    for d in suite_data()["distractors"]:
        path = _package_file(d["package"], d["file"])
        if path is not None:
            items.append(CatalogueItem(image_id=d["id"], uri=str(path), title=d["title"], category=d["category"],
                                       brand=d["package"], attributes={"source": d["package"], "file": Path(d["file"]).name}))
    return items


def photo_suite_catalogue(fashion_distractors: int = 200) -> list[CatalogueItem]:
    """The catalogue of ``neardup`` and ``text2image``: photos, real distractors, Fashion-MNIST items
    (the test split's last ``fashion_distractors`` images, so they never overlap the fashion suite)."""
    fashion = list(fashion_mnist("test", limit=fashion_distractors, offset=10_000 - fashion_distractors)) \
        if fashion_distractors > 0 else []
    return [*photo_catalogue(), *distractor_images(), *fashion]


def fashion_suite(catalogue_size: int = 2000, queries: int = 200) -> Suite:
    """Fashion-MNIST category retrieval by image (see the module doc)."""
    catalogue = list(fashion_mnist("train", limit=catalogue_size))
    by_category: dict[str, dict[str, int]] = {}
    for item in catalogue:
        by_category.setdefault(item.category, {})[item.image_id] = 1
    eval_queries = [EvalQuery(q.image_id, by_category.get(q.category, {}), image=q.content, info={"category": q.category})
                    for q in fashion_mnist("test", limit=queries)]
    return Suite("fashion", "eval-fashion", catalogue, eval_queries, stages=FASHION_STAGES,
                 description=f"Fashion-MNIST: {catalogue_size} training images indexed, {queries} test images as "
                             "queries, relevant = same category")


def neardup_suite(catalogue: list[CatalogueItem], transforms: list[str] | None = None) -> Suite:
    """Transformed copies of every photo of ``catalogue`` (ids ``photo-*``) as queries; relevant = the original."""
    names = transforms or list(TRANSFORMS)
    unknown = set(names) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transforms {sorted(unknown)}; known: {list(TRANSFORMS)}")
    boxes = suite_data()["objects"]
    queries = []
    for item in catalogue:
        if not item.image_id.startswith("photo-"):
            continue
        original = Image.open(io.BytesIO(item.read_bytes())).convert("RGB")
        for name in names:
            copy = TRANSFORMS[name](original, boxes.get(item.image_id))
            queries.append(EvalQuery(f"{item.image_id}/{name}", {item.image_id: 1}, image=_jpeg(copy),
                                     info={"photo": item.image_id, "transform": name}))
    photos = sum(1 for i in catalogue if i.image_id.startswith("photo-"))
    return Suite("neardup", "eval-photos", catalogue, queries,
                 description=f"near-duplicates: {photos} photos x {len(names)} transformations, among "
                             f"{len(catalogue)} images; relevant = the original")


def text2image_suite(catalogue: list[CatalogueItem]) -> Suite:
    """The hand-written text queries of ``suites.yaml`` over ``catalogue`` (judgments for its images only)."""
    present = {i.image_id for i in catalogue}
    queries = []
    for n, q in enumerate(suite_data()["text2image"]):
        judgments = {i: int(g) for i, g in q["relevant"].items() if i in present}
        if any(g > 0 for g in judgments.values()):
            queries.append(EvalQuery(f"t{n:02d}", judgments, text=q["query"], info={"query": q["query"]}))
    return Suite("text2image", "eval-photos", catalogue, queries,
                 description=f"text to image: {len(queries)} hand-written queries, graded relevance, among "
                             f"{len(catalogue)} images")


def build_suites(names: list[str], fashion_catalogue: int = 2000, fashion_queries: int = 200,
                 distractors: int = 200, transforms: list[str] | None = None) -> list[Suite]:
    """The named suites, in :data:`SUITES` order; neardup and text2image share one catalogue and tenant."""
    unknown = set(names) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; known: {list(SUITES)}")
    photos = photo_suite_catalogue(distractors) if {"neardup", "text2image"} & set(names) else []
    builders = {"fashion": lambda: fashion_suite(fashion_catalogue, fashion_queries),
                "neardup": lambda: neardup_suite(photos, transforms),
                "text2image": lambda: text2image_suite(photos)}
    return [builders[name]() for name in SUITES if name in names]
