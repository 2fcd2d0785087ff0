"""Concept vocabulary loading and tag selection (no models: hand-made vectors)."""

from __future__ import annotations

import numpy as np
import pytest

from visearch.services.classification.concepts import (
    CONCEPT_PROMPT,
    DEFAULT_VOCABULARY,
    Concept,
    ConceptTagger,
    load_vocabulary,
)
from visearch.shared.config import ClassificationSettings
from visearch.shared.errors import InvalidEventError


def test_default_vocabulary():
    concepts = load_vocabulary()
    tags = [c.tag for c in concepts]
    assert 60 <= len(tags) <= 150 and len(set(tags)) == len(tags)
    assert {
        "outdoor",
        "food",
        "animal",
        "vehicle",
        "clothing",
        "footwear",
        "sport",
        "nature",
        "night",
        "portrait",
        "person",
    } <= set(tags)
    assert all(c.texts and all(c.texts) for c in concepts)
    assert DEFAULT_VOCABULARY.is_file()


def test_vocabulary_formats_and_errors(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("concepts:\n  - shoes\n  - {tag: drink, texts: [a drink, a beverage]}\n")
    assert load_vocabulary(path) == [Concept("shoes", ("shoes",)), Concept("drink", ("a drink", "a beverage"))]
    for bad in ("concepts: []\n", "concepts:\n  - a\n  - a\n", "concepts:\n  - {texts: [x]}\n"):
        path.write_text(bad)
        with pytest.raises(ValueError):
            load_vocabulary(path)


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic 4-d 'embeddings': one axis per keyword, so concepts are easy to reason about."""
    axes = {"cat": 0, "dog": 1, "car": 2, "food": 3}
    out = np.zeros((len(texts), 4), dtype=np.float32)
    for i, text in enumerate(texts):
        assert text.startswith(CONCEPT_PROMPT.format(text=""))  # embedded with the class-prompt template
        for word, axis in axes.items():
            out[i, axis] += word in text
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


CONCEPTS = [
    Concept("cat", ("a cat",)),
    Concept("dog", ("a dog",)),
    Concept("car", ("a car",)),
    Concept("pet", ("a cat", "a dog")),
]


def test_tags_are_centred_thresholded_and_capped():
    tagger = ConceptTagger.from_embedder(
        fake_embed, CONCEPTS, ClassificationSettings(concept_min_score=0.2, max_concepts=2)
    )
    # pet's vector is the normalised mean of cat and dog
    assert tagger.vectors[3] == pytest.approx(np.array([1, 1, 0, 0]) / np.sqrt(2))
    joint = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    tags = tagger.tag(joint)
    # row 0: cosines cat 1, pet .707, dog 0, car 0 (mean .427): cat .573, pet .280 kept
    assert [t for t, _ in tags[0]] == ["cat", "pet"]
    assert tags[0][0][1] == pytest.approx(1 - (1 + 0.7071) / 4, abs=1e-3)
    # row 1: pet .99, dog .8, cat .6: capped at 2
    assert [t for t, _ in tags[1]] == ["pet", "dog"]
    # row 2 (food) matches no concept: all cosines 0, nothing above the threshold
    assert tags[2] == []


def test_wrong_joint_dimension_is_an_invalid_event():
    tagger = ConceptTagger.from_embedder(fake_embed, CONCEPTS)
    with pytest.raises(InvalidEventError) as err:
        tagger.tag(np.zeros((1, 384), dtype=np.float32))
    assert err.value.reason == "joint_vector_mismatch"
