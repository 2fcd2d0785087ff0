"""Trainable heads on real Fashion-MNIST images and the real encoder (EfficientNet-Lite0, frozen).

Protocol (as tests/integration/test_fashion_mnist.py): the evaluation catalogue is the first 2,000 train
images, queries are test images (never trained on or indexed), relevant = same category. Training uses
train images 2,000..7,999: disjoint from the catalogue. Both models are installed into a temporary model
cache (next to links to the built models) and the services are then built through their normal
``from_cache`` path with settings alone.

Frozen embeddings come from the real model cache (``VISEARCH_MODEL_CACHE_DIR``/_features): the first run
encodes 10,000 images (a few minutes on 2 cores), later runs read them back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

# Plain imports, not importorskip: without torch (the build extra, which make test installs) or with a broken
# heads module these tests must fail, not vanish as skips.
import torch  # noqa: E402

from visearch.offline.datasets import fashion_mnist
from visearch.offline.training import heads  # noqa: E402
from visearch.offline.training.data import FASHION_MNIST, frozen_embeddings
from visearch.shared.config import ModelSettings
from visearch.shared.images import decode_image
from visearch.shared.models.registry import ALL_BUILDS
from visearch.shared.models.trained import CatalogueHead, Projection

pytestmark = [pytest.mark.models, pytest.mark.slow]

TRAIN_OFFSET, TRAIN_LIMIT = 2000, 6000  # the `visearch train` defaults
INDEX, TEST = 2000, 2000
# Measured on this machine with the defaults (seed 0; docs/quality.md, "Trainable heads"):
# precision@10 raw -> projected: first 200 queries 0.7540 -> 0.8155 (+0.062); 2,000 queries 0.7534 -> 0.8070 (+0.054).
PROJECTION_GAIN = 0.04
# Head on 2,000 test images: category accuracy 0.8795 (chance: the largest class share, 0.110); tag mAP 0.977.
MIN_ACCURACY = 0.85
MIN_TAG_MAP = 0.95


@pytest.fixture(scope="module")
def splits(built_models):
    """Frozen embeddings of the training slice, the evaluation catalogue and the test queries (cached)."""
    models = ModelSettings()
    return heads.Splits(
        train=frozen_embeddings(FASHION_MNIST, "train", TRAIN_OFFSET, TRAIN_LIMIT, models),
        index=frozen_embeddings(FASHION_MNIST, "train", 0, INDEX, models),
        test=frozen_embeddings(FASHION_MNIST, "test", 0, TEST, models),
    )


@pytest.fixture(scope="module")
def model_cache(built_models, tmp_path_factory):
    """A fresh model cache: links to every built model, and no trained version yet."""
    cache = tmp_path_factory.mktemp("model-cache")
    real = ModelSettings().cache_dir
    for spec in ALL_BUILDS:
        (cache / spec.name).mkdir()
        (cache / spec.name / spec.key).symlink_to(spec.directory(real), target_is_directory=True)
    return cache


@pytest.fixture(scope="module")
def projection_run(splits, model_cache):
    return heads.run_projection(FASHION_MNIST, splits, model_cache)


@pytest.fixture(scope="module")
def head_run(splits, model_cache):
    return heads.run_head(FASHION_MNIST, splits, model_cache)


def test_projection_improves_precision_at_10(projection_run):
    """The projection beats the raw embedding on held-out queries, on both query sets."""
    meta = projection_run.meta
    m = meta["metrics"]
    print(
        "projection",
        json.dumps({s: {k: round(v, 4) for k, v in m[s].items() if k != "per_category"} for s in ("raw", "projected")}),
    )
    assert meta["version"] == 1 and meta["training"]["data"]["offset"] == TRAIN_OFFSET
    assert m["raw"]["precision_first_200"] == pytest.approx(0.7545, abs=0.01)  # test_fashion_mnist.py: 0.754 via Milvus
    for key in ("precision", "precision_first_200"):
        assert m["projected"][key] >= m["raw"][key] + PROJECTION_GAIN, m


def test_head_accuracy_and_tags_far_above_chance(head_run):
    """Category accuracy and tag mAP on 2,000 test images are far above chance; names recorded in meta.json."""
    meta = head_run.meta
    test = meta["metrics"]["test"]
    print("head", json.dumps({k: round(v, 4) for k, v in test.items()}))
    assert meta["categories"] == list(FASHION_MNIST.categories) and meta["tags"] == list(FASHION_MNIST.tag_names)
    assert test["chance_accuracy"] < 0.12
    assert test["category_accuracy"] >= MIN_ACCURACY
    assert test["tag_mAP"] >= MIN_TAG_MAP


def test_exported_onnx_matches_torch(projection_run, head_run, splits):
    """The installed ONNX versions, run by the serving classes (onnxruntime), reproduce the torch networks."""
    x = splits.test.embeddings[:500]
    with torch.no_grad():
        projected = projection_run.model(torch.from_numpy(x)).numpy()
        categories, tags = (t.numpy() for t in heads.HeadProbabilities(head_run.model)(torch.from_numpy(x)))
    served = Projection(projection_run.folder).project(x)
    served_categories, served_tags = CatalogueHead(head_run.folder).predict(x)
    assert np.abs(served - projected).max() <= 1e-5
    assert np.abs(served_categories - categories).max() <= 1e-5 and np.abs(served_tags - tags).max() <= 1e-5
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_services_pick_up_the_versions_through_settings(projection_run, head_run, model_cache, monkeypatch):
    """With VISEARCH_MODEL_PROJECTION / _CATALOGUE_HEAD = latest, the embedding service returns projected
    vectors under a model name carrying the version, and the classification service (API and stage) adds
    the head's category and tags."""
    from visearch.services.classification.classifier import Classifier
    from visearch.services.classification.service import ClassificationStage
    from visearch.services.embedding.service import EmbeddingService, EmbeddingStage
    from visearch.shared.encoders import Embedder
    from visearch.v1 import common_pb2, embedding_pb2, events_pb2

    monkeypatch.setenv("VISEARCH_MODEL_CACHE_DIR", str(model_cache))
    monkeypatch.setenv("VISEARCH_MODEL_PROJECTION", "latest")
    monkeypatch.setenv("VISEARCH_MODEL_CATALOGUE_HEAD", "latest")
    items = list(fashion_mnist("test", limit=8))
    images = [decode_image(item.content) for item in items]

    embedder = Embedder.from_cache()
    assert embedder.image_model == f"{embedder.encoder_model}+projection_fashion_mnist@1"
    response = EmbeddingService(embedder).EmbedImage(
        embedding_pb2.EmbedImageRequest(images=[common_pb2.Image(content=i.content) for i in items]), None
    )
    assert response.image_model == embedder.image_model
    raw = embedder.image.encode(images)[0]
    vectors = np.array([e.image.values for e in response.embeddings], np.float32)
    assert np.abs(vectors - Projection(projection_run.folder).project(raw)).max() <= 1e-5

    classifier = Classifier.from_cache(embedder=embedder)
    assert classifier.model_name.endswith("+head_fashion_mnist@1")
    head = CatalogueHead(head_run.folder)
    expected = head.attributes(raw, classifier.settings.head_tag_min_score)
    results = classifier.classify(images)

    def check(result, expected_row):
        got = {(a.name, a.value, round(a.score, 5)) for a in result.attributes}
        assert set(expected_row) <= got
        assert sorted(t for t in got if t[0] == "tag") == sorted(t for t in expected_row if t[0] == "tag")

    rounded = [[(n, v, round(s, 5)) for n, v, s in row] for row in expected]
    for result, row in zip(results, rounded):
        check(result, row)
    assert sum(row[0][1] == item.category for row, item in zip(expected, items)) >= 6  # the head is ~0.9 accurate
    assert all(any(n == "tag" for n, _, _ in row) for row in expected)

    # The pipeline: the embedding stage stores projected vectors, so the classification stage re-encodes
    # the images for the head (its input is the unprojected space) and gets the same attributes.
    documents = [events_pb2.ImageDocument(event=events_pb2.ImageEvent(image_id=i.image_id)) for i in items]
    encoded = [i.content for i in items]
    EmbeddingStage(embedder).process_images(documents, images, encoded)
    assert {d.embeddings.image_model for d in documents} == {embedder.image_model}
    ClassificationStage(classifier).process_images(documents, images, encoded)
    for document, row in zip(documents, rounded):
        check(document.classification, row)
