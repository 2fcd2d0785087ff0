"""WordNet taxonomy paths and zero-shot concept tags from the real models on real images.

Needs the built image and text models and the built taxonomy (`visearch models build`); a missing
one fails with ModelNotBuiltError. Prints the figures the docs quote (accuracy, timings).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import ImageOps

from visearch.offline.datasets import FASHION_MNIST_CLASSES, fashion_mnist
from visearch.services.classification.concepts import ConceptTagger
from visearch.services.classification.taxonomy import Taxonomy
from visearch.shared.encoders import Embedder
from visearch.shared.images import decode_image

pytestmark = [pytest.mark.models]

PER_CLASS = 30  # Fashion-MNIST test images per category (300 in all, ~20 s to embed on 2 cores)

# The taxonomy nodes (by name) a Fashion-MNIST category should fall under.
ACCEPTABLE = {
    **{c: {"clothing", "garment"} for c in ("t-shirt/top", "trouser", "pullover", "dress", "coat", "shirt")},
    **{c: {"footwear", "shoe"} for c in ("sandal", "sneaker", "ankle boot")},
    "bag": {"bag", "container"},
}


def best_ms(run, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs, in ms (this machine is shared: the best is the least noisy)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.from_cache()


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_cache()


@pytest.fixture(scope="module")
def tagger(embedder) -> ConceptTagger:
    start = time.perf_counter()
    tagger = ConceptTagger.from_embedder(embedder.embed_texts)
    print(f"\nconcept vocabulary: {len(tagger.tags)} concepts embedded in {time.perf_counter() - start:.2f} s")
    return tagger


@pytest.fixture(scope="module")
def photo_embeddings(embedder, photos):
    images = [decode_image(item.read_bytes()) for item in photos]
    result = embedder.embed_images(images)
    return {item.image_id.removeprefix("photo-"): i for i, item in enumerate(photos)}, result


def test_photo_paths(taxonomy, photo_embeddings):
    index, result = photo_embeddings
    paths = taxonomy.classify_batch(result.probs)
    batched_ms = best_ms(lambda: taxonomy.classify_batch(result.probs)) / len(paths)
    single_ms = best_ms(lambda: [taxonomy.classify(row) for row in result.probs]) / len(paths)
    print(f"\ntaxonomy classify: {batched_ms:.3f} ms/image batched, {single_ms:.3f} ms/image one by one")
    names = {photo: [n.name for n in paths[i]] for photo, i in index.items()}
    for photo, path in sorted(names.items()):
        print(f"  {photo:12s} {' > '.join(path) or '-'}")
    assert {"food", "beverage"} <= set(names["coffee"]), names["coffee"]
    assert {"animal", "mammal", "carnivore", "cat"} <= set(names["chelsea"]), names["chelsea"]
    assert {"animal", "dog"} <= set(names["dog"]), names["dog"]
    assert "bird" in names["eagle"]
    # scores fall from coarse to fine, all above the settings' minimum
    for path in paths:
        assert all(a.score >= b.score - 1e-6 for a, b in zip(path, path[1:]))
        assert all(node.score >= taxonomy.min_score for node in path)
        assert [node.depth for node in path] == list(range(len(path)))


def test_fashion_mnist_paths_reach_the_right_branch(embedder, taxonomy):
    """Fashion-MNIST stores each article as a 28 x 28 grey negative (Xiao et al. 2017, section 2:
    "negating the intensities"); we invert it back to a dark article on white, the way product
    photos look. Even so, 28 x 28 grey thumbnails are far from ImageNet photos: measured here,
    ~19 % of paths reach the right branch at the default min score 0.5 (~12 % without the inversion),
    and a path that names a branch names the right one (57 of 57)."""
    items: dict[str, list] = defaultdict(list)
    for item in fashion_mnist("test"):
        if len(items[item.category]) < PER_CLASS:
            items[item.category].append(item)
        if all(len(items[c]) == PER_CLASS for c in FASHION_MNIST_CLASSES):
            break
    selected = [item for c in FASHION_MNIST_CLASSES for item in items[c]]
    images = [ImageOps.invert(decode_image(item.read_bytes())) for item in selected]
    paths = taxonomy.classify_batch(embedder.embed_images(images).probs)

    hits, named, named_right = Counter(), 0, 0
    all_names = set().union(*ACCEPTABLE.values())
    for item, path in zip(selected, paths):
        names = {node.name for node in path}
        hits[item.category] += bool(names & ACCEPTABLE[item.category])
        if names & all_names:  # the path names some branch: is it the right one?
            named += 1
            named_right += bool(names & ACCEPTABLE[item.category])
    overall = sum(hits.values()) / len(selected)
    print(f"\nFashion-MNIST test split, {PER_CLASS} per category, min score {taxonomy.min_score}:")
    for category in FASHION_MNIST_CLASSES:
        print(f"  {category:12s} {hits[category] / PER_CLASS:.2f}")
    print(f"  overall      {overall:.3f}; paths naming a branch: {named}, right branch: {named_right}")
    assert overall >= 0.12  # measured 0.19
    assert named >= 30 and named_right / named >= 0.9  # measured 57 of 57
    clothing = [c for c in FASHION_MNIST_CLASSES if ACCEPTABLE[c] == {"clothing", "garment"}]
    assert sum(hits[c] for c in clothing) / (len(clothing) * PER_CLASS) >= 0.2  # measured 0.31


def test_concept_tags(tagger, photo_embeddings):
    index, result = photo_embeddings
    tags = tagger.tag(result.joint)
    print(f"\nconcept tagging: {best_ms(lambda: tagger.tag(result.joint)) / len(tags):.3f} ms/image")
    by_photo = {photo: [t for t, _ in tags[i]] for photo, i in index.items()}
    for photo in sorted(by_photo):
        print(f"  {photo:12s} {tags[index[photo]]}")
    assert set(by_photo["coffee"]) & {"food", "drink", "coffee"}, by_photo["coffee"]
    assert set(by_photo["chelsea"]) & {"animal", "pet", "cat"}, by_photo["chelsea"]
    assert set(by_photo["astronaut"]) & {"person", "people", "portrait", "athlete", "child"}, by_photo["astronaut"]
    assert "cat" in by_photo["chelsea"] and "coffee" in by_photo["coffee"]
    # not the same tags everywhere: the food photo and the cat photo share none, and no tag is on
    # more than a third of the photos
    assert not set(by_photo["coffee"]) & set(by_photo["chelsea"])
    counts = Counter(t for photo_tags in by_photo.values() for t in photo_tags)
    assert max(counts.values()) <= len(by_photo) / 3, counts.most_common(3)
    for row in tags:  # best first, within the settings' limits
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and len(row) <= tagger.max_concepts
        assert all(s >= tagger.min_score for s in scores)


def test_concept_scores_are_centred_cosines(tagger, photo_embeddings):
    """The centring only shifts each image's cosines by their mean over the vocabulary."""
    _, result = photo_embeddings
    scores = tagger.scores(result.joint)
    cosine = result.joint @ tagger.vectors.T
    assert scores.shape == (len(result.joint), len(tagger.tags))
    assert np.allclose(scores, cosine - cosine.mean(axis=1, keepdims=True), atol=1e-5)
    assert np.allclose(scores.mean(axis=1), 0, atol=1e-5)
