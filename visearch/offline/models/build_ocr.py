"""Build the PP-OCR models (text detector, direction classifier, recogniser) from rapidocr's wheel.

Source: PyPI ``rapidocr`` 3.10.0 (Apache-2.0) carries PaddleOCR's models as ONNX in ``rapidocr/models/``:
``PP-OCRv6_det_small.onnx`` (DB text detector), ``ch_ppocr_mobile_v2.0_cls_mobile.onnx`` (0/180 degree
line direction classifier) and ``PP-OCRv6_rec_small.onnx`` (CTC recogniser; its 18,708 characters are
in the ONNX metadata ``character``). Each build:

1. copies the file to ``model.onnx`` with readable tensor names (``image`` in; ``prob_map`` or ``probs``
   out) and named dynamic dimensions; the batch dimension is dynamic in all three, so Triton can batch;
   the classifier's input is fixed to the 48 x 192 it is always fed;
2. writes the recogniser's character list to ``charset.txt`` (UTF-8, one character per line, in class
   order; class 0 is the CTC blank and the last class a space, both implicit);
3. checks that a batch of 2 gives the same outputs as 2 single calls;
4. checks parity: our reader (``services/ocr/reader.py``) over the built file, with the other two
   models straight from the wheel, gives the same texts in the same order as rapidocr's own
   ``RapidOCR`` engine on real photos with text drawn on them, boxes within 1 px and scores within 1e-3.

Figures land in ``meta.json`` (``parity``). Needs the ``build`` extra (rapidocr, onnx).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visearch.offline.models.build import ParityError, build_atomically
from visearch.shared.models.registry import OCR_CLS_MODEL, OCR_DET_MODEL, OCR_REC_MODEL, ModelSpec

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")  # Debian fonts-dejavu-core
PARITY_MAX_BOX_DIFF_PX = 1.0
PARITY_MAX_SCORE_DIFF = 1e-3
PARITY_MIN_LINES = 6  # the drawn images must give at least this many lines, or the check proves nothing
BATCH_MAX_ABS_DIFF = 1e-4

# Per model: output tensor name, and the names of the input's and the output's dimensions ("" keeps a
# fixed size; an int fixes a dynamic one).
_LAYOUT = {
    OCR_DET_MODEL.name: ("prob_map", ("N", 3, "H", "W"), ("N", 1, "H", "W")),
    OCR_CLS_MODEL.name: ("probs", ("N", 3, 48, 192), ("N", 2)),
    OCR_REC_MODEL.name: ("probs", ("N", 3, 48, "W"), ("N", "T", "")),
}
_SPECS = (OCR_DET_MODEL, OCR_CLS_MODEL, OCR_REC_MODEL)


@dataclass(frozen=True)
class DrawnLine:
    """A line of text to draw on a photo.

    Attributes:
        text: the characters.
        xy: top-left corner (pixels) of the line's background box before rotation.
        font: TrueType file name in /usr/share/fonts/truetype/dejavu (falls back to Pillow's default font).
        size: font size, pixels.
        light_on_dark: white text on a near-black box; otherwise black text on a near-white box.
        angle: rotation of the line about its box centre, degrees counter-clockwise (180 = upside down).
    """

    text: str
    xy: tuple[int, int]
    font: str = "DejaVuSans.ttf"
    size: int = 32
    light_on_dark: bool = False
    angle: float = 0.0


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = DEJAVU / name
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


def draw_lines(photo: Image.Image, lines: list[DrawnLine]) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A copy of ``photo`` (RGB) with each line drawn on a contrasting box (padding 0.3 x size), and the
    pixel box ``(left, top, right, bottom)`` each line's (rotated) tile covers.

    Rotated lines are rendered on their own tile, rotated with bicubic resampling and pasted through
    a mask, so the photo shows around them.
    """
    out = photo.convert("RGB").copy()
    boxes = []
    for line in lines:
        font = _font(line.font, line.size)
        left, top, right, bottom = font.getbbox(line.text)
        pad = int(line.size * 0.3)
        tile_size = (right - left + 2 * pad, bottom - top + 2 * pad)
        fg, bg = ((245, 245, 245), (25, 25, 25)) if line.light_on_dark else ((15, 15, 15), (240, 240, 240))
        tile = Image.new("RGB", tile_size, bg)
        ImageDraw.Draw(tile).text((pad - left, pad - top), line.text, font=font, fill=fg)
        mask = Image.new("L", tile_size, 255)
        if line.angle:
            tile = tile.rotate(line.angle, resample=Image.BICUBIC, expand=True)
            mask = mask.rotate(line.angle, resample=Image.BICUBIC, expand=True)
        out.paste(tile, line.xy, mask)
        boxes.append((line.xy[0], line.xy[1], line.xy[0] + tile.width, line.xy[1] + tile.height))
    return out, boxes


# Parity photos: Debian darknet's data/ photos, each with lines that exercise fonts, sizes, polarity,
# a tilted line and an upside-down one (which only the direction classifier reads right).
PARITY_SCENES = {
    "dog.jpg": [
        DrawnLine("Summer Sale 50% off", (30, 20), "DejaVuSans-Bold.ttf", 36),
        DrawnLine("Free shipping today", (300, 470), "DejaVuSerif.ttf", 28, light_on_dark=True),
        DrawnLine("Order 1234-XY", (40, 330), "DejaVuSansMono.ttf", 26, angle=12),
    ],
    "horses.jpg": [
        DrawnLine("Horse Riding Lessons", (40, 30), "DejaVuSerif-Bold.ttf", 40, light_on_dark=True),
        DrawnLine("Call 555 0199", (330, 420), "DejaVuSans.ttf", 30, angle=180),
    ],
    "eagle.jpg": [
        DrawnLine("Wildlife Photography", (30, 25), "DejaVuSans.ttf", 34),
        DrawnLine("Eagle Watch 2024", (250, 420), "DejaVuSansMono-Bold.ttf", 30, light_on_dark=True),
    ],
}


def parity_images() -> list[tuple[Image.Image, list[DrawnLine]]]:
    """The parity scenes drawn on Debian darknet's photos (``/usr/share/darknet/data``).

    Raises:
        RuntimeError: darknet's photos are not installed (``make setup`` installs them).
    """
    from visearch.offline.datasets import DARKNET_DATA

    scenes = []
    for name, lines in PARITY_SCENES.items():
        path = DARKNET_DATA / name
        if not path.is_file():
            raise RuntimeError(f"{path} missing: the OCR parity check needs Debian darknet's photos (make setup)")
        scenes.append((draw_lines(Image.open(path), lines)[0], lines))
    return scenes


def _source(spec: ModelSpec) -> Path:
    """The ONNX file inside the installed rapidocr wheel (read as package data, without importing rapidocr)."""
    dist = importlib.metadata.distribution(spec.source_package)
    path = Path(dist.locate_file(f"rapidocr/models/{spec.recipe['file']}"))
    if not path.is_file():
        raise RuntimeError(f"{path} missing from {spec.source_package}=={spec.source_version}")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_dims(value_info, names: tuple) -> None:
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) != len(names):
        raise RuntimeError(f"{value_info.name}: expected {len(names)} dims, the model has {len(dims)}")
    for dim, name in zip(dims, names):
        fixed = dim.HasField("dim_value") and dim.dim_value > 0  # Paddle's exporter writes -1 for dynamic
        if isinstance(name, int):
            if fixed and dim.dim_value != name:
                raise RuntimeError(f"{value_info.name}: fixed dim {dim.dim_value} != expected {name}")
            dim.dim_value = name
        elif name and not fixed:
            dim.dim_param = name  # (a oneof: clears a -1 dim_value)


def _describe(value_info) -> str:
    """``name[d0,d1,...]`` with each dimension's size or symbolic name (``?`` when it has neither)."""
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value_info.type.tensor_type.shape.dim
    ]
    return f"{value_info.name}[{','.join(dims)}]"


def write_model(spec: ModelSpec, out: Path) -> dict:
    """Write ``out/model.onnx`` (renamed tensors, named dims) and, for the recogniser, ``out/charset.txt``.

    Returns facts for meta.json: source file and hashes, tensor names and shapes, charset size.

    Raises:
        RuntimeError: the wheel's file does not have the expected single input/output or layout.
    """
    import onnx

    from visearch.services.ocr.reader import INPUT

    src = _source(spec)
    model = onnx.load(str(src))
    graph = model.graph
    output_name, in_dims, out_dims = _LAYOUT[spec.name]
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise RuntimeError(f"{src.name}: expected 1 input and 1 output")
    renames = {graph.input[0].name: INPUT, graph.output[0].name: output_name}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for info in (*graph.input, *graph.output, *graph.value_info):
        info.name = renames.get(info.name, info.name)
    _set_dims(graph.input[0], in_dims)
    _set_dims(graph.output[0], out_dims)
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    facts = {
        "source_file": src.name,
        "source_sha256": _sha256(src),
        "model_sha256": _sha256(out / "model.onnx"),
        "input": _describe(graph.input[0]),
        "output": _describe(graph.output[0]),
    }
    if spec is OCR_REC_MODEL:
        meta = {p.key: p.value for p in model.metadata_props}
        charset = meta["character"].splitlines()  # as rapidocr reads it
        (out / "charset.txt").write_text("\n".join(charset), encoding="utf-8")
        if (out / "charset.txt").read_text(encoding="utf-8").split("\n") != charset:
            raise RuntimeError("charset.txt does not round-trip (a character contains a line break)")
        facts["charset_size"] = len(charset)
    return facts


def _batch_check(spec: ModelSpec, folder: Path) -> float:
    """Max |difference| between a batch of 2 real inputs and the 2 run one by one."""
    import onnxruntime as ort

    from visearch.services.ocr import reader as r

    bgr = [r.to_bgr(img) for img, _ in parity_images()[:2]]
    if spec is OCR_DET_MODEL:
        x = np.stack([r.det_input(cv[:480, :640], 640) for cv in bgr])
    elif spec is OCR_CLS_MODEL:
        x = np.stack([r._normalised(cv[:60, :300], *r.CLS_SHAPE) for cv in bgr])
    else:
        x = r.rec_batch([cv[:48, :400] for cv in bgr])
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (batched,) = session.run(None, {r.INPUT: x})
    single = np.concatenate([session.run(None, {r.INPUT: x[i : i + 1]})[0] for i in range(len(x))])
    return float(np.abs(batched - single).max())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1) between two strings."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def char_errors(truth: list[str], read: list[str]) -> int:
    """Character errors of reading the lines ``truth`` as ``read``: the summed edit distance of each true
    line to its closest read line (a line not read at all counts all its characters)."""
    return sum(min([edit_distance(t, r) for r in read] + [len(t)]) for t in truth)


def char_accuracy(truth: list[str], read: list[str]) -> float:
    """1 - :func:`char_errors` / (summed length of ``truth``): 1.0 when every character was read right."""
    return 1.0 - char_errors(truth, read) / max(1, sum(len(t) for t in truth))


def parity(folders: dict[str, Path]) -> dict:
    """Compare our reader over the model folders (name -> folder) with rapidocr's ``RapidOCR``.

    rapidocr runs its own bundled files with the same limits and thresholds: the ``OcrSettings`` defaults
    (environment variables are ignored, so a build does not depend on the shell it runs in).

    Returns:
        figures: images, lines read, max box and score differences, and the reader's character accuracy
        against the drawn text (lines matched to the closest read line).

    Raises:
        ParityError: different texts or order, boxes > 1 px or scores > 1e-3 apart, or too few lines.
    """
    from rapidocr import RapidOCR

    from visearch.services.ocr.reader import TextReader
    from visearch.shared.config import OcrSettings
    from visearch.shared.inference import OnnxRunner

    settings = OcrSettings.model_construct()  # field defaults only
    charset = (folders[OCR_REC_MODEL.name] / "charset.txt").read_text(encoding="utf-8").split("\n")
    runners = [OnnxRunner(folders[s.name] / "model.onnx", s.name) for s in _SPECS]
    reader = TextReader(
        runners[0], runners[1] if settings.use_angle_classifier else None, runners[2], charset, settings
    )
    engine = RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.text_score": settings.min_score,
            "Global.use_cls": settings.use_angle_classifier,
            "Det.model_path": str(_source(OCR_DET_MODEL)),
            "Det.limit_type": "max",
            "Det.limit_side_len": settings.det_max_side,
            "Det.thresh": settings.det_threshold,
            "Det.box_thresh": settings.det_box_threshold,
            "Det.unclip_ratio": settings.det_unclip_ratio,
            "Cls.model_path": str(_source(OCR_CLS_MODEL)),
            "Cls.cls_thresh": settings.cls_threshold,
            "Cls.cls_batch_num": settings.rec_batch_size,
            "Rec.model_path": str(_source(OCR_REC_MODEL)),
            "Rec.rec_batch_num": settings.rec_batch_size,
        }
    )
    lines = 0
    box_diff = score_diff = 0.0
    errors = chars = 0
    for image, drawn in parity_images():
        ours = reader.read([image])[0]
        ref = engine(image)
        ref_texts = list(ref.txts or ())
        texts = [line.text for line in ours]
        if texts != ref_texts:
            raise ParityError(f"OCR parity failed: reader read {texts}, rapidocr {ref_texts}")
        if ref_texts:
            box_diff = max(box_diff, float(np.abs(np.array([line.polygon for line in ours]) - ref.boxes).max()))
            scores = np.array([line.score for line in ours])
            score_diff = max(score_diff, float(np.abs(scores - np.array(ref.scores)).max()))
        lines += len(texts)
        chars += sum(len(d.text) for d in drawn)
        errors += char_errors([d.text for d in drawn], texts)
    if lines < PARITY_MIN_LINES or box_diff > PARITY_MAX_BOX_DIFF_PX or score_diff > PARITY_MAX_SCORE_DIFF:
        raise ParityError(
            f"OCR parity failed: {lines} lines (need {PARITY_MIN_LINES}), "
            f"max box diff {box_diff:.2f} px, max score diff {score_diff:.2e}"
        )
    return {
        "images": len(PARITY_SCENES),
        "lines": lines,
        "texts_equal": True,
        "max_box_diff_px": box_diff,
        "max_score_diff": score_diff,
        "drawn_lines": sum(len(v) for v in PARITY_SCENES.values()),
        "char_accuracy_vs_drawn": round(1 - errors / chars, 4),
        "reference": "rapidocr.RapidOCR 3.10.0 over the wheel's own ONNX files",
    }


def _build(spec: ModelSpec, cache_dir: Path, force: bool) -> Path:
    def export(out: Path) -> dict:
        facts = write_model(spec, out)
        facts["batch_max_abs_diff"] = diff = _batch_check(spec, out)
        if diff > BATCH_MAX_ABS_DIFF:
            raise ParityError(f"{spec.name}: a batch of 2 differs from single calls by {diff:.2e}")
        scratch = Path(tempfile.mkdtemp(prefix="ppocr-parity-"))
        try:
            folders = {s.name: out if s is spec else scratch / s.name for s in _SPECS}
            for other in _SPECS:
                if other is not spec:
                    write_model(other, folders[other.name])
            facts["parity"] = parity(folders)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return facts

    return build_atomically(spec, cache_dir, force, export)


def build_ocr_det_model(cache_dir: Path, force: bool = False) -> Path:
    """Build PP-OCRv6 small text detector (DB) into the cache; returns its folder (model.onnx, meta.json).

    Raises:
        ParityError: the reader over it does not match rapidocr, or batching changes its output.
    """
    return _build(OCR_DET_MODEL, cache_dir, force)


def build_ocr_cls_model(cache_dir: Path, force: bool = False) -> Path:
    """Build the PP-OCR mobile v2.0 0/180 degree direction classifier; returns its folder.

    Raises:
        ParityError: the reader over it does not match rapidocr, or batching changes its output.
    """
    return _build(OCR_CLS_MODEL, cache_dir, force)


def build_ocr_rec_model(cache_dir: Path, force: bool = False) -> Path:
    """Build the PP-OCRv6 small recogniser; returns its folder (model.onnx, charset.txt, meta.json).

    Raises:
        ParityError: the reader over it does not match rapidocr, or batching changes its output.
    """
    return _build(OCR_REC_MODEL, cache_dir, force)
