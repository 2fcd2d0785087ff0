"""The classification service's model set: taxonomy, tags with scores, colours, quality and moderation.

One :class:`Classifier` turns an image (plus what earlier stages found: class probabilities, joint
vector, detected objects, text lines) into a ``visearch.v1.Classification``: a coarse-to-fine taxonomy
path, a flat attribute list (attribute -> value, score, as ViSenze's tagging returns it), dominant
colours and a colour descriptor for colour search, a moderation verdict and a perceptual hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from PIL import Image

from visearch.services.classification.class_objects import ClassObjects
from visearch.services.classification.concepts import ConceptTagger
from visearch.services.classification.moderation import MODERATION_CLASSES, ModerationModel
from visearch.services.classification.quality import quality_attributes
from visearch.services.classification.taxonomy import Taxonomy
from visearch.shared.colour import colour_descriptor, dominant_colours
from visearch.shared.config import ClassificationSettings, ConseSettings, ModelSettings
from visearch.shared.duplicates import perceptual_hash
from visearch.shared.encoders import Embedder
from visearch.shared.models.trained import CatalogueHead
from visearch.v1 import classification_pb2, common_pb2

# The parts of a Classification (ClassifyPart in protos/visearch/v1/classification.proto, lower case).
PARTS = frozenset(
    classification_pb2.ClassifyPart.Name(v).removeprefix("CLASSIFY_PART_").lower()
    for v in classification_pb2.ClassifyPart.values()
    if v
)
# Parts computed from the model outputs alone (class probabilities, joint vector) or other services.
PIXEL_FREE_PARTS = frozenset({"taxonomy", "concepts", "objects", "text", "class_objects"})
# What a request without parts gets: everything but the objects estimated from the classes (a query's stand-in
# for the detector's objects; an indexed image has the detector's).
DEFAULT_PARTS = PARTS - {"class_objects"}


class Classifier:
    """Taxonomy (WordNet over ImageNet probabilities), concept tags (joint space), colours, quality,
    moderation (nsfwjs MobileNetV2) and pHash, for batches of decoded RGB images.

    Build with :meth:`from_cache`; ``embedder`` supplies class probabilities and joint vectors for
    images that arrive without them (the synchronous API) and the text encoder for the concept vocabulary.
    With a trained catalogue ``head`` (``VISEARCH_MODEL_CATALOGUE_HEAD``, see ``shared/models/trained.py``)
    each result also gets the head's ``category`` and its ``tag`` attributes above
    ``head_tag_min_score``, and ``model`` ends with ``+head_<catalogue>@<version>``.
    ``class_objects`` (the ``class_objects`` part) estimates "object" attributes from the class probabilities.
    """

    def __init__(
        self,
        embedder: Embedder,
        taxonomy: Taxonomy,
        concepts: ConceptTagger,
        moderation: ModerationModel,
        settings: ClassificationSettings | None = None,
        head: CatalogueHead | None = None,
        class_objects: ClassObjects | None = None,
    ) -> None:
        self.embedder = embedder
        self.class_objects = class_objects
        self.taxonomy = taxonomy
        self.concepts = concepts
        self.moderation = moderation
        self.settings = settings or ClassificationSettings()
        self.head = head
        self.model_name = f"{embedder.image_model}+{moderation.model_name}" + (f"+{head.model_name}" if head else "")

    @classmethod
    def from_cache(
        cls,
        models: ModelSettings | None = None,
        settings: ClassificationSettings | None = None,
        embedder: Embedder | None = None,
    ) -> Classifier:
        """Load every model from the cache (or Triton when configured).

        Raises:
            ModelNotBuiltError: a model, the taxonomy or the lexicon is not built (run ``visearch models build``), or
                ``models.catalogue_head`` names a version that is not there (run ``visearch train head``).
        """
        models, settings = models or ModelSettings(), settings or ClassificationSettings()
        embedder = embedder or Embedder.from_cache(models, ConseSettings())
        return cls(
            embedder,
            Taxonomy.from_cache(models, settings),
            ConceptTagger.from_embedder(embedder, settings=settings),
            ModerationModel.from_cache(models, settings),
            settings,
            CatalogueHead.from_settings(models, models.catalogue_head),
            ClassObjects.from_cache(models),
        )

    def classify(
        self,
        images: Sequence[Image.Image] | None,
        probs: np.ndarray | None = None,
        joint: np.ndarray | None = None,
        detections: Sequence[Sequence[common_pb2.Detection]] | None = None,
        text_lines: Sequence[Sequence[common_pb2.TextLine]] | None = None,
        encoder_vectors: np.ndarray | None = None,
        parts: frozenset[str] | None = None,
    ) -> list[common_pb2.Classification]:
        """Classify N >= 1 images.

        Args:
            images: decoded RGB images; may be None when ``probs`` and ``joint`` are given and every part in
                ``parts`` needs no pixels (:data:`PIXEL_FREE_PARTS`).
            probs: float32 [N, 1000] ImageNet probabilities from the embedding stage (computed if None).
            joint: float32 [N, 384] joint-space vectors (computed with ``probs`` if None, then with the
                objects and text added, see ``Embedder.contextualise``).
            detections: per image, the detection stage's objects (empty: no "object" attributes).
            text_lines: per image, the OCR stage's lines (used for ``has_text``).
            encoder_vectors: float32 [N, 1280], the image encoder's unprojected vectors (``embedder.encoder_model``
                space) for the catalogue head; computed when a head is configured and they are None.
            parts: the parts of :data:`PARTS` to compute (None: :data:`DEFAULT_PARTS`). The search API asks for
                the taxonomy, concepts and class objects of a query from the embedding's outputs, which costs no
                image-model pass and no detector.

        Raises:
            ValueError: ``images`` is None while a requested part needs pixels or the model outputs are missing,
                or the ``class_objects`` part is asked of a classifier built without them.
        """
        parts = DEFAULT_PARTS if parts is None else parts
        if "class_objects" in parts and self.class_objects is None:
            raise ValueError("the class_objects part needs the classifier's ClassObjects (the WordNet lexicon build)")
        if images is None:
            if parts - PIXEL_FREE_PARTS or probs is None or joint is None:
                raise ValueError(f"parts {sorted(parts - PIXEL_FREE_PARTS)} need the images (or give probs and joint)")
            count = len(probs)
        else:
            count = len(images)
        detections = detections or [[] for _ in range(count)]
        text_lines = text_lines or [[] for _ in range(count)]
        if probs is None or joint is None:
            emb = self.embedder.embed_images(list(_with_pixels(images)))
            probs, encoder_vectors = emb.probs, emb.raw if encoder_vectors is None else encoder_vectors
            joint = self.embedder.contextualise(
                emb.joint,
                [[(d.label, d.score) for d in row] for row in detections],
                [" ".join(line.text for line in row) for row in text_lines],
            )
        head_attributes: list[list[tuple[str, str, float]]] = [[] for _ in range(count)]
        if self.head is not None and "catalogue_head" in parts:
            if encoder_vectors is None:
                encoder_vectors = self.embedder.image.encode(list(_with_pixels(images)))[0]
            head_attributes = self.head.attributes(encoder_vectors, self.settings.head_tag_min_score)
        moderation = self.moderation.predict(list(_with_pixels(images))) if "moderation" in parts else None
        safe = self.moderation.is_safe(moderation) if moderation is not None else None
        concepts = self.concepts.tag(np.asarray(joint, dtype=np.float32)) if "concepts" in parts else [[]] * count
        class_objects = (
            self.class_objects.tags(probs)
            if "class_objects" in parts and self.class_objects is not None
            else [[]] * count
        )
        results = []
        for i in range(count):
            image = images[i] if images is not None else None
            out = common_pb2.Classification(model=self.model_name)
            if "phash" in parts:
                out.phash = perceptual_hash(_with_pixels(image))
            for node in self.taxonomy.classify(probs[i]) if "taxonomy" in parts else []:
                out.taxonomy.add(id=node.id, name=node.name, depth=node.depth, score=node.score)
                out.attributes.add(name="category", value=node.name, score=node.score)
            best: dict[str, float] = {}
            for label, score in class_objects[i]:
                best[label] = score
            for d in detections[i]:
                best[d.label] = max(best.get(d.label, 0.0), d.score)
            out.attributes.extend(common_pb2.Attribute(name="object", value=k, score=v) for k, v in best.items())
            if "colours" in parts:
                for colour in dominant_colours(_with_pixels(image), self.settings.colours):
                    out.colours.add(name=colour.name, hex=colour.hex, fraction=colour.fraction)
                    out.attributes.add(name="colour", value=colour.name, score=colour.fraction)
                out.colour_descriptor.values[:] = colour_descriptor(_with_pixels(image))
            out.attributes.extend(common_pb2.Attribute(name="concept", value=c, score=s) for c, s in concepts[i])
            out.attributes.extend(common_pb2.Attribute(name=n, value=v, score=s) for n, v, s in head_attributes[i])
            if "quality" in parts:
                quality = quality_attributes(_with_pixels(image), len(text_lines[i]), detections[i])
                for name, (value, score) in quality.items():
                    out.attributes.add(name=name, value=value, score=score)
            if moderation is not None and safe is not None:
                unsafe = float(sum(moderation[i][MODERATION_CLASSES.index(c)] for c in ("porn", "hentai", "sexy")))
                out.moderation.safe = bool(safe[i])
                out.moderation.scores.extend(
                    common_pb2.ClassScore(name=c, score=float(p)) for c, p in zip(MODERATION_CLASSES, moderation[i])
                )
                out.attributes.add(name="moderation", value="safe" if safe[i] else "unsafe", score=unsafe)
            results.append(out)
        return results


_T = TypeVar("_T")


def _with_pixels(images: _T | None) -> _T:
    """The images (or one image) of a part that needs pixels: :meth:`Classifier.classify` refused a request
    without images that asks for such a part."""
    assert images is not None, "a part that needs pixels, without images"
    return images
