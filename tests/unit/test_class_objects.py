"""Objects from class probabilities (services/classification/class_objects.py) and the classifier's part for them."""

from __future__ import annotations

import numpy as np
import pytest

from visearch.services.classification.class_objects import ClassObjects
from visearch.services.classification.classifier import DEFAULT_PARTS, PARTS, PIXEL_FREE_PARTS


def _text(items) -> np.ndarray:
    return np.frombuffer("\n".join(items).encode("utf-8"), dtype=np.uint8)


def test_from_arrays_sums_the_probability_below_each_label():
    # synsets: 0 dog (classes 0, 1 below it), 1 horse (class 2), 2 person (no class); classes 0..3
    arrays = {
        "coco_labels": _text(["dog", "horse", "person"]),
        "coco_indptr": np.array([0, 1, 2, 3]),
        "coco_synset": np.array([0, 1, 2]),
        "group_indptr": np.array([0, 2, 3, 3]),
        "group_class": np.array([0, 1, 2], dtype=np.int16),
        "class_names": _text(["beagle", "pug", "sorrel", "teapot"]),
    }
    objects = ClassObjects.from_arrays(arrays)
    assert objects.labels == ["dog", "horse"]  # a label with no class below it can never score
    probs = np.array([[0.3, 0.35, 0.05, 0.3], [0.0, 0.0, 0.0, 1.0], [0.06, 0.06, 0.88, 0.0]], dtype=np.float32)
    tags = objects.tags(probs)
    assert [label for label, _ in tags[0]] == ["dog"] and tags[0][0][1] == pytest.approx(0.65)
    assert tags[1] == []  # a teapot is no COCO label here
    assert [label for label, _ in tags[2]] == ["horse", "dog"]  # highest first; dog 0.12 >= MIN_OBJECT_SCORE
    assert ClassObjects(["dog"], np.array([[1], [1], [0], [0]], dtype=bool), min_score=0.5).tags(probs[2:]) == [[]]


def test_members_must_match_the_labels():
    with pytest.raises(ValueError, match="members"):
        ClassObjects(["dog", "cat"], np.ones((4, 1), dtype=bool))


def test_class_objects_is_asked_for_not_a_default_part():
    assert "class_objects" in PARTS and "class_objects" in PIXEL_FREE_PARTS
    assert "class_objects" not in DEFAULT_PARTS  # indexed images keep the detector's objects only


@pytest.mark.models
def test_built_lexicon_maps_classes_to_their_coco_labels():
    objects = ClassObjects.from_cache()
    assert len(objects.labels) >= 50
    probs = np.zeros((4, 1000), dtype=np.float32)
    probs[0, 207] = 0.9  # golden retriever
    probs[1, 948] = 0.8  # Granny Smith
    probs[2, 339] = 0.7  # sorrel (a horse)
    probs[3, 0] = 1.0  # tench: a fish, no COCO label
    tags = objects.tags(probs)
    assert tags[0][0][0] == "dog" and tags[1][0][0] == "apple" and tags[2][0][0] == "horse"
    assert tags[3] == []
    dogs = np.zeros((1, 1000), dtype=np.float32)
    dogs[0, 151:269] = 1 / 118  # a mixture over ImageNet's dog breeds is a sure dog
    assert objects.tags(dogs)[0] == [("dog", pytest.approx(1.0, abs=1e-4))]
