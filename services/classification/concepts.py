"""Zero-shot concept tags: open-vocabulary tags scored in the joint image-text space.

The embedding service places an image in the text encoder's space (ConSE, Norouzi et al. 2014: the
probability-weighted mean of the embeddings of its top ImageNet class prompts). A concept from a
vocabulary ("food", "outdoor", "footwear", ...) is embedded by the same text encoder, so its cosine
with the image's joint vector says how well the concept describes the image, for concepts that no
classifier was trained on (DeViSE, Frome et al. 2013).

Calibration (measured on the 19 real photos of ``photo_catalogue()``):

- Each concept text is embedded as ``"a photo of {text}"``, the template of the class prompts the
  joint vectors are built from, and a concept's vector is the mean of its texts' (renormalised).
  Every vector then shares the template, so raw cosines all sit high (0.5-0.9), and bare words
  without it favour concepts close to "photo" itself ("camera" was in the top 3 of 7 photos, "art"
  of 5).
- The score is the cosine minus the image's mean cosine over the vocabulary: how much better the
  concept fits than the vocabulary's average. It keeps each image's ranking and makes one threshold
  work across images whose joint vectors sit closer to or farther from all text. With the default
  threshold 0.18 the photos get 0-5 tags each (coffee: coffee, drink, home appliance; chelsea: cat,
  pet, animal, wildlife) and no tag is in the top 3 of more than 5 of the 19 photos ("pet",
  "animal"; 7 of the photos show animals). Subtracting instead each concept's mean affinity to the 1000 class prompts
  (a per-concept prior) over-penalised the concepts of ImageNet's largest branch (animals are 40 %
  of the classes): "dog" fell below 0 on the dog photo, "pet" and "animal" left chelsea's top 5.

Timing here (2 cores): embedding the 111-concept default vocabulary (259 texts) ~2.8 s once at
start-up; scoring and tagging ~1.5 ms per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from visearch.shared.config import ClassificationSettings, ModelSettings
from visearch.shared.errors import InvalidEventError

if TYPE_CHECKING:  # the embedding service's models load only when from_cache is used
    from visearch.shared.encoders import Embedder

DEFAULT_VOCABULARY = Path(__file__).with_name("concepts.yaml")
CONCEPT_PROMPT = "a photo of {text}"  # the class prompt template of the joint space (shared.text.CLASS_PROMPT)

TextEmbedder = Callable[[list[str]], np.ndarray]
"""texts -> float32 [N, D] unit vectors in the joint space (e.g. ``Embedder.embed_texts``)."""


@dataclass(frozen=True)
class Concept:
    """A vocabulary entry: the ``tag`` returned, and the ``texts`` whose mean embedding stands for it."""

    tag: str
    texts: tuple[str, ...]


def load_vocabulary(path: Path | None = None) -> list[Concept]:
    """Read a concept vocabulary YAML (default: ``concepts.yaml`` next to this module).

    Format: ``{concepts: [{tag: str, texts: [str, ...]} | str, ...]}``; a bare string is a tag
    that is its own text, an entry without ``texts`` is embedded as its tag.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: no concepts, an empty or duplicate tag, or an empty text.
    """
    path = Path(path or DEFAULT_VOCABULARY)
    data = yaml.safe_load(path.read_text())
    entries = data.get("concepts") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty 'concepts' list")
    concepts, seen = [], set()
    for entry in entries:
        if isinstance(entry, str):
            entry = {"tag": entry}
        tag = str(entry.get("tag", "")).strip()
        texts = tuple(str(t).strip() for t in (entry.get("texts") or [tag]))
        if not tag or not all(texts):
            raise ValueError(f"{path}: concept {entry!r} needs a tag and non-empty texts")
        if tag in seen:
            raise ValueError(f"{path}: duplicate concept tag {tag!r}")
        seen.add(tag)
        concepts.append(Concept(tag, texts))
    return concepts


class ConceptTagger:
    """Scores every vocabulary concept against joint-space image vectors; keeps the best tags.

    Args:
        concepts: the vocabulary.
        vectors: float32 ``[len(concepts), D]``, each concept's unit vector in the joint space.
        min_score: smallest score of a kept tag (centred cosine, see the module docstring; the
            useful range is about 0.1-0.5).
        max_concepts: most tags per image (>= 0).
    """

    def __init__(
        self, concepts: list[Concept], vectors: np.ndarray, min_score: float = 0.18, max_concepts: int = 5
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(concepts) or not concepts:
            raise ValueError(f"vectors must be [{len(concepts)}, D] for {len(concepts)} concepts, got {vectors.shape}")
        self.concepts = list(concepts)
        self.tags = [c.tag for c in concepts]
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.min_score = min_score
        self.max_concepts = max_concepts

    @classmethod
    def from_embedder(
        cls,
        embed: TextEmbedder | Embedder,
        concepts: list[Concept] | None = None,
        settings: ClassificationSettings | None = None,
    ) -> ConceptTagger:
        """Embed the vocabulary once with ``embed``: an ``Embedder`` or a texts -> vectors callable.

        ``concepts`` default to ``settings.concept_vocabulary_path``, else the built-in vocabulary.

        Raises:
            FileNotFoundError, ValueError: an unreadable or malformed vocabulary file.
        """
        if hasattr(embed, "embed_texts"):
            embed = embed.embed_texts
        settings = settings or ClassificationSettings()
        concepts = concepts if concepts is not None else load_vocabulary(settings.concept_vocabulary_path)
        texts = [CONCEPT_PROMPT.format(text=t) for c in concepts for t in c.texts]
        embedded = np.asarray(embed(texts), dtype=np.float32)
        vectors, start = [], 0
        for concept in concepts:
            mean = embedded[start : start + len(concept.texts)].mean(axis=0)
            vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            start += len(concept.texts)
        return cls(concepts, np.stack(vectors), settings.concept_min_score, settings.max_concepts)

    @classmethod
    def from_cache(
        cls, models: ModelSettings | None = None, settings: ClassificationSettings | None = None
    ) -> ConceptTagger:
        """Load the text encoder from the model cache and embed the vocabulary with it.

        Raises:
            ModelNotBuiltError: the text model is not built.
        """
        from visearch.shared.encoders import Embedder

        return cls.from_embedder(Embedder.from_cache(models), settings=settings)

    def scores(self, joint: np.ndarray) -> np.ndarray:
        """Centred affinities float32 ``[N, concepts]``: cosine minus the row's mean cosine.

        Args:
            joint: float ``[N, D]`` joint-space image vectors (normalised here; a zero row scores 0).

        Raises:
            InvalidEventError: (reason ``joint_vector_mismatch``) not ``[N, D]`` with this D.
        """
        joint = np.asarray(joint, dtype=np.float32)
        if joint.ndim != 2 or joint.shape[1] != self.vectors.shape[1]:
            raise InvalidEventError(
                f"joint vectors must be [N, {self.vectors.shape[1]}], got {joint.shape}", reason="joint_vector_mismatch"
            )
        unit = joint / np.maximum(np.linalg.norm(joint, axis=1, keepdims=True), 1e-12)
        cosine = unit @ self.vectors.T
        return cosine - cosine.mean(axis=1, keepdims=True)

    def tag(self, joint: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per image, up to ``max_concepts`` (tag, score) with score >= ``min_score``, best first.

        Args:
            joint: float ``[N, D]`` joint-space vectors (``ImageEmbeddings.joint``).
        """
        out = []
        for row in self.scores(joint):
            order = np.argsort(-row, kind="stable")[: self.max_concepts]
            out.append([(self.tags[k], round(float(row[k]), 4)) for k in order if row[k] >= self.min_score])
        return out
