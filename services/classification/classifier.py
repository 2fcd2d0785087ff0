"""The classification service's model set: taxonomy, tags with scores, colours, quality and moderation.

One :class:`Classifier` turns an image (plus what earlier stages found: class probabilities, joint
vector, detected objects, text lines) into a ``visearch.v1.Classification``: a coarse-to-fine taxonomy
path, a flat attribute list (attribute -> value, score, as ViSenze's tagging returns it), dominant
colours and a colour descriptor for colour search, a moderation verdict and a perceptual hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from visearch.shared.config import ClassificationSettings, ConseSettings, ModelSettings
from visearch.shared.duplicates import perceptual_hash
from visearch.shared.models.trained import CatalogueHead
from visearch.services.classification.colour import colour_descriptor, dominant_colours
from visearch.services.classification.concepts import ConceptTagger
from visearch.services.classification.moderation import MODERATION_CLASSES, ModerationModel
from visearch.services.classification.quality import quality_attributes
from visearch.services.classification.taxonomy import Taxonomy
from visearch.services.embedding.encoders import Embedder
from visearch.v1 import common_pb2


class Classifier:
    """Taxonomy (WordNet over ImageNet probabilities), concept tags (joint space), colours, quality,
    moderation (nsfwjs MobileNetV2) and pHash, for batches of decoded RGB images.

    Build with :meth:`from_cache`; ``embedder`` supplies class probabilities and joint vectors for
    images that arrive without them (the synchronous API) and the text encoder for the concept vocabulary.
    With a trained catalogue ``head`` (``VISEARCH_MODEL_CATALOGUE_HEAD``, see ``shared/models/trained.py``)
    each result also gets the head's ``category`` and its ``tag`` attributes above
    ``head_tag_min_score``, and ``model`` ends with ``+head_<catalogue>@<version>``.
    """

    def __init__(self, embedder: Embedder, taxonomy: Taxonomy, concepts: ConceptTagger, moderation: ModerationModel,
                 settings: ClassificationSettings | None = None, head: CatalogueHead | None = None) -> None:
        self.embedder = embedder
        self.taxonomy = taxonomy
        self.concepts = concepts
        self.moderation = moderation
        self.settings = settings or ClassificationSettings()
        self.head = head
        self.model_name = f"{embedder.image_model}+{moderation.model_name}" + (f"+{head.model_name}" if head else "")

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None, settings: ClassificationSettings | None = None,
                   embedder: Embedder | None = None) -> "Classifier":
        """Load every model from the cache (or Triton when configured).

        Raises:
            ModelNotBuiltError: a model or the taxonomy is not built (run ``visearch models build``), or
                ``models.catalogue_head`` names a version that is not there (run ``visearch train head``).
        """
        models, settings = models or ModelSettings(), settings or ClassificationSettings()
        embedder = embedder or Embedder.from_cache(models, ConseSettings())
        return cls(embedder, Taxonomy.from_cache(models, settings), ConceptTagger.from_embedder(embedder, settings=settings),
                   ModerationModel.from_cache(models, settings), settings,
                   CatalogueHead.from_settings(models, models.catalogue_head))

    def classify(self, images: Sequence[Image.Image], probs: np.ndarray | None = None, joint: np.ndarray | None = None,
                 detections: Sequence[Sequence[common_pb2.Detection]] | None = None,
                 text_lines: Sequence[Sequence[common_pb2.TextLine]] | None = None,
                 encoder_vectors: np.ndarray | None = None) -> list[common_pb2.Classification]:
        """Classify N >= 1 images.

        Args:
            images: decoded RGB images.
            probs: float32 [N, 1000] ImageNet probabilities from the embedding stage (computed if None).
            joint: float32 [N, 384] joint-space vectors (computed with ``probs`` if None, then with the
                objects and text added, see ``Embedder.contextualise``).
            detections: per image, the detection stage's objects (empty: no "object" attributes).
            text_lines: per image, the OCR stage's lines (used for ``has_text``).
            encoder_vectors: float32 [N, 1280], the image encoder's unprojected vectors (``embedder.encoder_model``
                space) for the catalogue head; computed when a head is configured and they are None.
        """
        detections = detections or [[] for _ in images]
        text_lines = text_lines or [[] for _ in images]
        if probs is None or joint is None:
            emb = self.embedder.embed_images(list(images))
            probs, encoder_vectors = emb.probs, emb.raw if encoder_vectors is None else encoder_vectors
            joint = self.embedder.contextualise(emb.joint, [[(d.label, d.score) for d in row] for row in detections],
                                                [" ".join(line.text for line in row) for row in text_lines])
        head_attributes: list[list[tuple[str, str, float]]] = [[] for _ in images]
        if self.head is not None:
            if encoder_vectors is None:
                encoder_vectors = self.embedder.image.encode(list(images))[0]
            head_attributes = self.head.attributes(encoder_vectors, self.settings.head_tag_min_score)
        moderation = self.moderation.predict(list(images))
        safe = self.moderation.is_safe(moderation)
        concepts = self.concepts.tag(np.asarray(joint, dtype=np.float32))
        results = []
        for i, image in enumerate(images):
            out = common_pb2.Classification(model=self.model_name, phash=perceptual_hash(image))
            for node in self.taxonomy.classify(probs[i]):
                out.taxonomy.add(id=node.id, name=node.name, depth=node.depth, score=node.score)
                out.attributes.add(name="category", value=node.name, score=node.score)
            best: dict[str, float] = {}
            for d in detections[i]:
                best[d.label] = max(best.get(d.label, 0.0), d.score)
            out.attributes.extend(common_pb2.Attribute(name="object", value=k, score=v) for k, v in best.items())
            for colour in dominant_colours(image, self.settings.colours):
                out.colours.add(name=colour.name, hex=colour.hex, fraction=colour.fraction)
                out.attributes.add(name="colour", value=colour.name, score=colour.fraction)
            out.colour_descriptor.values[:] = colour_descriptor(image)
            out.attributes.extend(common_pb2.Attribute(name="concept", value=c, score=s) for c, s in concepts[i])
            out.attributes.extend(common_pb2.Attribute(name=n, value=v, score=s) for n, v, s in head_attributes[i])
            for name, (value, score) in quality_attributes(image, len(text_lines[i])).items():
                out.attributes.add(name=name, value=value, score=score)
            unsafe = float(sum(moderation[i][MODERATION_CLASSES.index(c)] for c in ("porn", "hentai", "sexy")))
            out.moderation.safe = bool(safe[i])
            out.moderation.scores.extend(common_pb2.ClassScore(name=c, score=float(p))
                                         for c, p in zip(MODERATION_CLASSES, moderation[i]))
            out.attributes.add(name="moderation", value="safe" if safe[i] else "unsafe", score=unsafe)
            results.append(out)
        return results
