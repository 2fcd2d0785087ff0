"""The text-to-visual map at query time (shared/text_map.py) and its fit (visearch/offline/models/build_text_map.py)."""

from __future__ import annotations

import numpy as np
import pytest

from visearch.offline.models.build_text_map import fit_ridge
from visearch.shared.text_map import TextToVisualMap


def unit(rows) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def small_map() -> TextToVisualMap:
    mapping = np.eye(3, 4, dtype=np.float32)  # text dim 3 -> visual dim 4
    return TextToVisualMap(
        mapping,
        joint_bank_mean=unit([1, 1, 0]) * 0.5,
        visual_bank_mean=unit([1, 0, 0, 0]) * 0.5,
        model_name="text_to_visual@test",
        class_weights=unit([[0, 0, 0, 1], [0, 0, 1, 0]]),
    )


def test_to_visual_maps_and_normalises():
    out = small_map().to_visual(unit([[1, 1, 0], [0, 0, 1]]))
    assert out.shape == (2, 4) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(out[1], [0, 0, 1, 0], atol=1e-6)


def test_centering_moves_the_query_away_from_the_bank_mean():
    text = unit([[1, 1, 0]])
    plain, centred = small_map().to_visual(text), small_map().to_visual(text, centering=1.0)
    hub = np.array([1, 0, 0, 0], dtype=np.float32)  # an image lying on the bank's mean direction
    assert centred @ hub < plain @ hub
    np.testing.assert_allclose(np.linalg.norm(centred), 1, rtol=1e-6)


def test_class_mix_pulls_towards_the_named_classes_and_a_zero_mix_changes_nothing():
    text = unit([[1, 0, 0], [1, 0, 0]])
    mix = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    out = small_map().to_visual(text, class_mix=mix, class_weight=1.0)
    assert out[0] @ np.array([0, 0, 0, 1]) == pytest.approx(np.sqrt(0.5), rel=1e-5)
    np.testing.assert_allclose(out[1], small_map().to_visual(text[1:])[0], atol=1e-6)


def test_centre_joint_off_is_the_identity():
    text = unit([[0, 1, 1]])
    assert small_map().centre_joint(text, 0.0) is text
    centred = small_map().centre_joint(text, 1.0)
    assert centred @ unit([1, 1, 0]) < text @ unit([1, 1, 0])


def test_fit_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(8, 5))
    texts = rng.normal(size=(200, 8)).astype(np.float32)
    fitted = fit_ridge(texts, texts @ truth, ridge=1e-6)
    assert fitted.dtype == np.float32 and fitted.shape == (8, 5)
    np.testing.assert_allclose(fitted, truth, atol=1e-3)


def test_label_like_queries_are_also_embedded_in_the_class_prompt_template():
    """Up to VISEARCH_CONSE_QUERY_PROMPT_WORDS words: the normalised mean of the query as typed and of
    "a photo of a <query>", in one inference call; longer queries (and every query with the setting at 0) as
    typed."""
    from types import SimpleNamespace

    from visearch.shared.encoders import Embedder

    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.stack([table.setdefault(t, _unit(rng.normal(size=8))) for t in texts]).astype(np.float32)

    texts = ["galaxy", " hot drink ", "launch towers lit up under a dark blue sky", ""]
    embedder = SimpleNamespace(query_prompt_words=3, text=SimpleNamespace(encode=encode))
    vectors = Embedder.encode_queries(embedder, texts)  # type: ignore[arg-type]
    assert calls == [[*texts, "a photo of a galaxy", "a photo of a hot drink"]]
    np.testing.assert_allclose(vectors[0], _unit(table["galaxy"] + table["a photo of a galaxy"]), atol=1e-6)
    np.testing.assert_allclose(vectors[1], _unit(table[" hot drink "] + table["a photo of a hot drink"]), atol=1e-6)
    np.testing.assert_allclose(vectors[2:], np.stack([table[texts[2]], table[""]]), atol=1e-6)
    embedder.query_prompt_words = 0
    calls.clear()
    Embedder.encode_queries(embedder, texts)  # type: ignore[arg-type]
    assert calls == [texts]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
