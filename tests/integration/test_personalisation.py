"""Personalisation on the real Fashion-MNIST catalogue (real models, Milvus Lite, in-process topics): simulated
shoppers with known tastes click on what matches their taste; their profiles, folded from the feedback topic into
the profiles topic, lift the nDCG@10 of their taste by >= 0.10 over the global ranking after 20 clicks; a user
without history (or asking for no personalisation) gets exactly today's hits; two shoppers sending the same query
get different pages, each consistent with its taste; filters still win."""

from __future__ import annotations

import pytest

from tests.integration.stack import stable_response
from visearch.embedded import EmbeddedPlatform
from visearch.offline.evaluation.personalisation import (
    CHECKPOINTS,
    STAGES,
    TENANT,
    catalogue,
    queries,
    run_shopper,
    shoppers,
)
from visearch.offline.evaluation.runner import evaluation_settings
from visearch.shared.config import StoreSettings
from visearch.v1 import search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite, pytest.mark.slow]

CATALOGUE = 400
REQUIRED_GAIN = 0.10
AFTER = 20


@pytest.fixture(scope="module")
def trained(built_models, tmp_path_factory):
    """The catalogue ingested, then every simulated shopper's clicks up to 20 (nDCG measured on the way)."""
    db = tmp_path_factory.mktemp("personal") / "personal.db"
    with EmbeddedPlatform(StoreSettings(uri=str(db)), ranking_settings=evaluation_settings()) as platform:
        items = catalogue(CATALOGUE)
        report = platform.ingest(items, progress=False, tenant=TENANT, stages=STAGES)
        assert report.indexed == CATALOGUE and not report.failed
        people = shoppers(platform, items)
        runs = {s.taste.name: run_shopper(platform, s, tuple(c for c in CHECKPOINTS if c <= AFTER)) for s in people}
        yield platform, people, runs


def _page(platform, text, **fields):
    response = platform.search.Search(search_pb2.SearchRequest(text=text, top_k=10, tenant=TENANT, **fields), None)
    return response


def test_each_taste_beats_the_global_ranking_after_20_clicks(trained):
    _, _, runs = trained
    for name, run in runs.items():
        print(f"\n{name}: global {run['global']:.3f}, personalised {run['personalised']} ({run['searches']} searches)")
    for name, run in runs.items():
        assert run["clicks"] == AFTER, name
        assert run["personalised"][0] == pytest.approx(run["global"]), name  # no history: today's ranking
        assert run["personalised"][AFTER] - run["global"] >= REQUIRED_GAIN, (name, run)


def test_no_history_or_personalise_false_gives_byte_identical_results(trained):
    platform, people, _ = trained
    for text, _ in queries()[:4]:
        anonymous = stable_response(_page(platform, text))
        assert stable_response(_page(platform, text, user_id="a-newcomer")) == anonymous
        assert stable_response(_page(platform, text, user_id=people[0].user_id, personalise=False)) == anonymous
        personal = _page(platform, text, user_id=people[0].user_id)
        assert personal.ranker.endswith("+personal") and stable_response(personal) != anonymous


def test_two_shoppers_get_different_pages_consistent_with_their_tastes(trained):
    platform, people, _ = trained
    colour, brand = (next(p for p in people if p.taste.name == name) for name in ("colour", "brand"))
    text, category = queries()[1]
    pages = {p.user_id: [h.image_id for h in _page(platform, text, user_id=p.user_id).hits] for p in (colour, brand)}
    assert pages[colour.user_id] != pages[brand.user_id]
    for shopper, other in ((colour, brand), (brand, colour)):
        own = sum(shopper.gain(i, category) for i in pages[shopper.user_id])
        assert own > sum(shopper.gain(i, category) for i in pages[other.user_id]), shopper.taste.name


def test_preference_is_a_visible_capped_contribution_and_filters_win(trained):
    platform, people, _ = trained
    shopper = people[0]
    personal = _page(platform, "trainers", user_id=shopper.user_id)
    for hit in personal.hits:
        parts = {f.name: f for f in hit.factors}
        assert "preference" in parts and 0.0 <= parts["preference"].value <= 1.0
        assert parts["preference"].contribution <= platform.search.personaliser.settings.max_weight + 1e-6
        assert hit.score == pytest.approx(sum(f.contribution for f in hit.factors), abs=1e-4)
    filtered = _page(platform, "trainers", user_id=shopper.user_id, filter=search_pb2.Filter(categories=["sandal"]))
    assert filtered.hits and {h.category for h in filtered.hits} == {"sandal"}
    profile = platform.search.GetUserProfile(search_pb2.UserProfileRequest(user_id=shopper.user_id), None)
    assert profile.found and profile.applies and profile.profile.events == AFTER
    assert profile.concepts[0].value == "colour:white", list(profile.concepts)[:5]
