"""The moderation model (nsfwjs MobileNetV2 converted from TF.js) on every real photo of the catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visearch.services.classification.moderation import MODERATION_CLASSES, ModerationModel
from visearch.shared.config import ClassificationSettings, ModelSettings
from visearch.shared.images import decode_image
from visearch.shared.models.registry import MODERATION_MODEL

pytestmark = [pytest.mark.models]

# Everyday photographs: "neutral" must be the top class (the rocket and some textures look drawn).
NEUTRAL_PHOTOS = {
    "photo-dog",
    "photo-horses",
    "photo-person",
    "photo-kite",
    "photo-china",
    "photo-flower",
    "photo-coffee",
    "photo-chelsea",
    "photo-astronaut",
    "photo-eagle",
}


@pytest.fixture(scope="module")
def model() -> ModerationModel:
    return ModerationModel.from_cache()  # ModelNotBuiltError (a failure) when the model is not built


@pytest.fixture(scope="module")
def judged(model, photos):
    ids = [p.image_id for p in photos]
    probs = model.predict([decode_image(p.read_bytes()) for p in photos])
    return ids, probs


def test_probabilities_are_a_distribution_per_image(judged, photos):
    ids, probs = judged
    assert probs.shape == (len(photos), len(MODERATION_CLASSES)) and probs.dtype == np.float32
    assert (probs >= 0).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(ids) >= 15


def test_every_real_photo_is_safe(model, judged):
    ids, probs = judged
    unsafe = model.unsafe_scores(probs)
    worst = int(unsafe.argmax())
    print(f"max unsafe score (porn + hentai + sexy): {unsafe[worst]:.4f} ({ids[worst]})")
    assert model.is_safe(probs).all(), dict(zip(ids, unsafe.round(3)))
    assert unsafe.max() < 0.25  # far below the 0.6 threshold, not just under it


def test_everyday_photos_are_neutral(judged):
    ids, probs = judged
    top = {i: MODERATION_CLASSES[int(p.argmax())] for i, p in zip(ids, probs)}
    assert {i: top[i] for i in NEUTRAL_PHOTOS if top[i] != "neutral"} == {}


def test_threshold_decides_safety(model, judged):
    _, probs = judged
    strict = ModerationModel(model.runner, ClassificationSettings(moderation_unsafe_threshold=0.0))
    assert not strict.is_safe(probs).any()  # unsafe score >= 0 always reaches a threshold of 0
    # Columns: drawing, hentai, neutral, porn, sexy. Unsafe = hentai + porn + sexy; default threshold 0.6.
    hand = np.array([[0.0, 0.3, 0.0, 0.2, 0.25], [0.0, 0.2, 0.5, 0.1, 0.2]], dtype=np.float32)
    assert model.unsafe_scores(hand) == pytest.approx([0.75, 0.5])
    assert model.is_safe(hand).tolist() == [False, True]


def test_batching_and_empty_input(model, photos, judged):
    ids, probs = judged
    small = ModerationModel(model.runner, batch_size=3)
    first = [decode_image(p.read_bytes()) for p in photos[:7]]
    np.testing.assert_allclose(small.predict(first), probs[:7], atol=1e-5)
    assert model.predict([]).shape == (0, len(MODERATION_CLASSES))


def test_built_model_records_labels_and_parity(model):
    folder = MODERATION_MODEL.locate(ModelSettings().cache_dir)
    assert [c.lower() for c in json.loads((folder / "labels.json").read_text())] == list(MODERATION_CLASSES)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["parity"]["top1_equal"] and meta["parity"]["max_abs_prob_diff"] <= 1e-4
    assert model.model_name == f"nsfw_mobilenet_v2@{MODERATION_MODEL.key}"
