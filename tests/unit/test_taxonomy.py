"""Taxonomy scoring and pruning on a tiny hand-made tree (no models needed)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from visearch.offline.models.build_taxonomy import prune_tree
from visearch.services.classification.taxonomy import Taxonomy, TaxonomyNode
from visearch.shared.config import ClassificationSettings, ModelSettings
from visearch.shared.errors import InvalidEventError, ModelNotBuiltError

# animal > mammal > cat > {tabby, siamese}; animal > mammal > pug; animal > eagle; vehicle > {car, bus}
NODES = [
    {"id": "animal", "name": "animal", "parent": None},
    {"id": "mammal", "name": "mammal", "parent": "animal"},
    {"id": "cat", "name": "cat", "parent": "mammal"},
    {"id": "tabby", "name": "tabby", "parent": "cat"},
    {"id": "siamese", "name": "Siamese cat", "parent": "cat"},
    {"id": "pug", "name": "pug", "parent": "mammal"},
    {"id": "eagle", "name": "eagle", "parent": "animal"},
    {"id": "vehicle", "name": "vehicle", "parent": None},
    {"id": "car", "name": "car", "parent": "vehicle"},
    {"id": "bus", "name": "bus", "parent": "vehicle"},
]
CLASSES = ["tabby", "siamese", "pug", "eagle", "car", "bus"]


def probs(**p: float) -> np.ndarray:
    out = np.zeros(len(CLASSES), dtype=np.float32)
    for name, value in p.items():
        out[CLASSES.index(name)] = value
    return out


@pytest.fixture()
def tree() -> Taxonomy:
    return Taxonomy(NODES, CLASSES, min_score=0.5)


def test_node_probability_is_the_sum_of_its_classes(tree):
    scores = tree.node_scores(probs(tabby=0.4, siamese=0.3, pug=0.1, eagle=0.05, car=0.1, bus=0.05))[0]
    got = dict(zip(tree.ids, scores.tolist()))
    assert got["cat"] == pytest.approx(0.7)
    assert got["mammal"] == pytest.approx(0.8)
    assert got["animal"] == pytest.approx(0.85)
    assert got["vehicle"] == pytest.approx(0.15)
    assert got["tabby"] == pytest.approx(0.4)


def test_path_descends_greedily_and_stops_below_min_score(tree):
    path = tree.classify(probs(tabby=0.4, siamese=0.3, pug=0.1, eagle=0.05, car=0.1, bus=0.05))
    assert [n.id for n in path] == ["animal", "mammal", "cat"]  # tabby (0.4) < 0.5: stop at cat
    assert [n.depth for n in path] == [0, 1, 2]
    assert path[-1] == TaxonomyNode("cat", "cat", 2, pytest.approx(0.7))
    assert all(a.score >= b.score for a, b in zip(path, path[1:]))  # coarse to fine


def test_a_confident_class_gives_the_full_path(tree):
    path = tree.classify(probs(siamese=0.9, tabby=0.05, car=0.05))
    assert [n.name for n in path] == ["animal", "mammal", "cat", "Siamese cat"]


def test_node_at_exactly_min_score_is_kept(tree):
    path = tree.classify(probs(car=0.5, bus=0.25, eagle=0.25))
    assert [n.id for n in path] == ["vehicle", "car"]


def test_greedy_follows_the_most_probable_child(tree):
    # mammal (0.45) beats eagle (0.3) under animal, so the path never reaches eagle even though
    # eagle alone is the most probable class
    path = Taxonomy(NODES, CLASSES, min_score=0.2).classify(probs(eagle=0.3, pug=0.25, tabby=0.2, car=0.25))
    assert [n.id for n in path] == ["animal", "mammal", "pug"]


def test_no_confident_root_gives_an_empty_path():
    tree = Taxonomy(NODES, CLASSES, min_score=0.6)
    assert tree.classify(probs(tabby=0.2, pug=0.15, eagle=0.1, car=0.3, bus=0.25)) == []  # roots 0.45 and 0.55


def test_batch_matches_single(tree):
    batch = np.stack([probs(tabby=0.9, car=0.1), probs(bus=0.8, pug=0.2), probs(car=0.4, bus=0.3, eagle=0.3)])
    assert tree.classify_batch(batch) == [tree.classify(row) for row in batch]


def test_wrong_probability_shape_is_an_invalid_event(tree):
    with pytest.raises(InvalidEventError) as err:
        tree.classify(np.zeros(7, dtype=np.float32))
    assert err.value.reason == "probs_shape_mismatch"
    with pytest.raises(InvalidEventError):
        tree.classify(np.zeros((2, len(CLASSES)), dtype=np.float32))  # a batch: use classify_batch


def test_nodes_may_own_several_classes():
    """A deployment's own tree: nodes list the model classes they own."""
    nodes = [
        {"id": "pets", "name": "Pets", "parent": None},
        {"id": "cats", "name": "Cats", "parent": "pets", "classes": ["tabby", "siamese"]},
        {"id": "transport", "name": "Transport", "parent": None, "classes": ["car", "bus"]},
    ]
    tree = Taxonomy(nodes, CLASSES, min_score=0.5)
    assert [n.name for n in tree.classify(probs(tabby=0.3, siamese=0.3, car=0.4))] == ["Pets", "Cats"]
    assert tree.covered_classes == 4  # pug and eagle belong to no node


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}], "cycle"),
        ([{"id": "a", "parent": "nowhere"}], "unknown parent"),
        ([{"id": "a", "parent": None}, {"id": "a", "parent": None}], "duplicate"),
        ([{"id": "a", "parent": None, "classes": ["car"]}, {"id": "b", "parent": None, "classes": ["car"]}], "two"),
    ],
)
def test_inconsistent_trees_are_refused(nodes, message):
    with pytest.raises(ValueError, match=message):
        Taxonomy(nodes, CLASSES)


def test_yaml_round_trip_and_from_cache_with_a_deployment_file(tmp_path):
    path = tmp_path / "retail.yaml"
    path.write_text(yaml.safe_dump({"classes": CLASSES, "nodes": NODES}))
    loaded = Taxonomy.load(path, min_score=0.5)
    assert loaded.path_to("tabby") == ["animal", "mammal", "cat", "tabby"]
    assert loaded.depths.tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 1, 1]
    # from_cache honours the deployment's file and min score; the class list comes from the file,
    # so no model has to be built
    settings = ClassificationSettings(taxonomy_path=path, taxonomy_min_score=0.9)
    deployed = Taxonomy.from_cache(ModelSettings(cache_dir=tmp_path / "empty"), settings)
    assert [n.id for n in deployed.classify(probs(tabby=0.6, siamese=0.35, car=0.05))] == ["animal", "mammal", "cat"]


def test_yaml_without_class_list_needs_one(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"nodes": NODES}))
    with pytest.raises(ValueError, match="class list"):
        Taxonomy.load(path)
    assert Taxonomy.load(path, class_ids=CLASSES).classify(probs(bus=1.0))[-1].id == "bus"
    with pytest.raises(ModelNotBuiltError):  # from_cache falls back to the image model's classes.json
        Taxonomy.from_cache(ModelSettings(cache_dir=tmp_path / "empty"), ClassificationSettings(taxonomy_path=path))


def test_from_cache_without_a_build_names_the_build_command(tmp_path):
    with pytest.raises(ModelNotBuiltError, match="models build"):
        Taxonomy.from_cache(ModelSettings(cache_dir=tmp_path), ClassificationSettings())


# prune_tree: rules 2-4 of the build on a made-up hypernym chain.
# entity > object > animal > chordate > vertebrate > {bird > eagle, mammal > placental > {carnivore > {feline > cat >
#   {tabby, tiger cat}, dog > {toy dog > pug, hound > beagle}}, ungulate > zebra}};
# entity > object > artifact > clothing > {sweater, jean}
PARENT = {
    "entity": None,
    "object": "entity",
    "animal": "object",
    "chordate": "animal",
    "vertebrate": "chordate",
    "mammal": "vertebrate",
    "placental": "mammal",
    "carnivore": "placental",
    "feline": "carnivore",
    "cat": "feline",
    "tabby": "cat",
    "tiger cat": "cat",
    "dog": "carnivore",
    "toy dog": "dog",
    "pug": "toy dog",
    "hound": "dog",
    "beagle": "hound",
    "ungulate": "placental",
    "zebra": "ungulate",
    "artifact": "object",
    "clothing": "artifact",
    "sweater": "clothing",
    "jean": "clothing",
    "bird": "vertebrate",
    "eagle": "bird",
}
LEAVES = ["tabby", "tiger cat", "pug", "beagle", "zebra", "eagle", "sweater", "jean"]
FAMILIARITY = {"animal": 87, "mammal": 3, "dog": 42, "cat": 18, "clothing": 9, "vertebrate": 1}


def chain(parent: dict, node: str) -> list[str]:
    out = []
    while node is not None:
        out.append(node)
        node = parent[node]
    return out[::-1]


def test_prune_drops_upper_levels_and_chains():
    pruned = prune_tree(
        PARENT, LEAVES, {"entity", "object", "artifact"}, max_levels=10, near_chain=0.9, familiarity=FAMILIARITY
    )
    assert set(LEAVES) <= set(pruned)  # classes are never dropped
    assert {"entity", "object", "artifact"}.isdisjoint(pruned)
    # near-chains lose their less familiar node: chordate and vertebrate hold all of animal's
    # classes, placental all of mammal's; mammal (5 of animal's 6) is a real split and stays
    assert {"chordate", "vertebrate", "placental"}.isdisjoint(pruned) and "mammal" in pruned
    # a parent with one class below it goes, the class stays (pug under dog, not under toy dog)
    assert "toy dog" not in pruned and pruned["pug"] == "dog"
    assert "bird" not in pruned and pruned["eagle"] == "animal"
    assert chain(pruned, "tabby") == ["animal", "mammal", "carnivore", "cat", "tabby"]  # feline: one child
    assert chain(pruned, "jean") == ["clothing", "jean"]


def test_prune_caps_depth_keeping_familiar_broad_levels():
    pruned = prune_tree(
        PARENT, LEAVES, {"entity", "object", "artifact"}, max_levels=4, near_chain=0.9, familiarity=FAMILIARITY
    )
    depths = {leaf: len(chain(pruned, leaf)) for leaf in LEAVES}
    assert max(depths.values()) <= 4
    assert chain(pruned, "tabby")[0] == "animal" and chain(pruned, "tabby")[-2:] == ["cat", "tabby"]
    assert "dog" in chain(pruned, "beagle")  # familiar (42) and broad: kept over carnivore / hound
    for parent in pruned.values():  # still one tree over the kept nodes
        assert parent is None or parent in pruned
