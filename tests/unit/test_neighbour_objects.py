"""Object tags of a query estimated from its visual neighbours (factors.neighbour_object_tags)."""

from __future__ import annotations

import json
import math

import pytest

from visearch.services.ranking.factors import neighbour_object_tags


def _fields(*objects: tuple[str, float]) -> dict:
    return {"attributes": json.dumps([["object", label, score] for label, score in objects] + [["colour", "red", 0.5]])}


def test_labels_are_the_distance_weighted_mean_of_the_voters_scores():
    tags = neighbour_object_tags(
        [(0.8, _fields(("Dog", 0.9), ("person", 0.5))), (0.78, _fields(("dog", 0.5)))], temperature=0.02
    )
    w = math.exp(-1.0)  # 0.02 below the nearest
    assert tags == pytest.approx({"dog": (0.9 + w * 0.5) / (1 + w), "person": 0.5 / (1 + w)})


def test_a_near_duplicate_gives_its_objects_nearly_alone():
    near_duplicate = (0.93, _fields(("person", 0.9), ("kite", 0.6)))
    others = [(0.62, _fields(("dog", 1.0))), (0.6, _fields(("dog", 1.0))), (0.58, _fields(("car", 1.0)))]
    tags = neighbour_object_tags([near_duplicate, *others])
    assert tags["person"] > 0.89 and tags["kite"] > 0.59 and tags["dog"] < 1e-5


def test_only_the_k_most_similar_with_a_positive_similarity_vote():
    neighbours = [(0.9, _fields(("cat", 1.0))), (0.5, _fields(("dog", 1.0))), (-0.3, _fields(("car", 1.0)))]
    assert set(neighbour_object_tags(neighbours, k=1)) == {"cat"}
    assert "car" not in neighbour_object_tags(neighbours, k=5)
    assert neighbour_object_tags([(-0.1, _fields(("cat", 1.0)))]) == {}
    assert neighbour_object_tags([]) == {}
