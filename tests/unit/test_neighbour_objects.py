"""Object tags of a query estimated from its visual neighbours (factors.neighbour_object_tags)."""

from __future__ import annotations

import json

import pytest

from visearch.services.ranking.factors import neighbour_object_tags


def _fields(*objects: tuple[str, float]) -> dict:
    return {"attributes": json.dumps([["object", label, score] for label, score in objects] + [["colour", "red", 0.5]])}


def test_labels_are_the_similarity_weighted_mean_of_the_voters_scores():
    tags = neighbour_object_tags([(0.8, _fields(("Dog", 0.9), ("person", 0.5))), (0.2, _fields(("dog", 0.5)))])
    assert tags == pytest.approx({"dog": (0.8 * 0.9 + 0.2 * 0.5) / 1.0, "person": 0.8 * 0.5 / 1.0})


def test_only_the_k_most_similar_with_a_positive_similarity_vote():
    neighbours = [(0.9, _fields(("cat", 1.0))), (0.5, _fields(("dog", 1.0))), (-0.3, _fields(("car", 1.0)))]
    assert set(neighbour_object_tags(neighbours, k=1)) == {"cat"}
    assert "car" not in neighbour_object_tags(neighbours, k=5)
    assert neighbour_object_tags([(-0.1, _fields(("cat", 1.0)))]) == {}
    assert neighbour_object_tags([]) == {}
