"""Learning to rank on real data (embedded mode, real models, Milvus Lite): judged Fashion-MNIST queries
through the real search API, a fitted linear ranker against the default profile on held-out queries,
and the loop in one process: impressions and clicks on the feedback topic -> fit -> a new ranker
version that the running SearchService serves without a restart.

Figures are printed (`-s` shows them); docs/quality.md ("Learning to rank") has the larger run.
"""

from __future__ import annotations

import numpy as np
import pytest

from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import fashion_mnist
from visearch.offline.rank.fitting import cross_validate, fit_and_evaluate
from visearch.offline.rank.judged import fashion_queries, judge, simulated_feedback
from visearch.offline.rank.learning import TrainingData, join_feedback
from visearch.services.ranking.ranker import BUILTIN_PROFILES, DEFAULT_PROFILE, Ranker, read_ranker, write_ranker
from visearch.shared.config import RankingSettings, ServiceSettings, StoreSettings
from visearch.shared.transport import feedback_topic
from visearch.v1 import common_pb2, search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite, pytest.mark.slow]

TENANT = "ltr"
CATALOGUE = 400  # Fashion-MNIST train-split items indexed
IMAGE_QUERIES = 150  # test-split images as queries (+ 23 everyday-word text queries)


@pytest.fixture(scope="module")
def setup(built_models, tmp_path_factory):
    """The catalogue through embedding, OCR, classification and the indexer; the search service watches an
    (empty) learned-ranker folder every 0.1 s."""
    learned = tmp_path_factory.mktemp("rankers")
    db = tmp_path_factory.mktemp("ltr") / "ltr.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)),
        service_settings=ServiceSettings(tenant=TENANT),
        stages=["embedding", "ocr", "classification", "indexer"],
        ranking_settings=RankingSettings(learned_dir=learned, reload_interval_s=0.1),
    ) as platform:
        report = platform.ingest(fashion_mnist("train", limit=CATALOGUE), progress=False)
        assert report.indexed == CATALOGUE and not report.failed, report.failed
        yield platform, learned


@pytest.fixture(scope="module")
def judged(setup) -> TrainingData:
    platform, _ = setup
    rows = list(judge(platform.search, fashion_queries(IMAGE_QUERIES), tenant=TENANT, top_k=100))
    return TrainingData(judgments=rows, source="judged fashion-mnist")


def default_profile() -> Ranker:
    return Ranker(f"profile:{DEFAULT_PROFILE}", BUILTIN_PROFILES[DEFAULT_PROFILE])


def test_judged_hits_carry_the_factors_of_the_blended_profile(judged):
    """Every hit of the blended profile comes with the factor values the service ranked it by."""
    queries = judged.queries()
    assert len(queries) == IMAGE_QUERIES + 23 and all(len(js) == 100 for js in queries.values())
    image = {f for j in judged.judgments if j.query_id.startswith("image:") for f in j.factors}
    text = {f for j in judged.judgments if j.query_id.startswith("text:") for f in j.factors}
    assert {"visual", "tags", "colour", "phash", "in_stock"} <= image and {"text", "bm25", "in_stock"} <= text
    labels = np.bincount([j.label for j in judged.judgments])
    print(f"\njudged: {len(queries)} queries, {len(judged.judgments)} hits, labels 0/1/2 = {labels.tolist()}")
    assert labels[2] > 0 and labels[0] > 0


def test_fitted_ranker_beats_the_default_profile_on_held_out_queries(judged):
    """5-fold cross-validation by query (every query held out once): mean held-out nDCG@10 of the fitted
    linear ranker against the default profile's weights.

    Measured on this data (400 items, 150 image + 23 text queries, the blended profile of ranker.py as of
    issue 6), two runs (the service's query understanding changed between them): pointwise 0.7714 vs
    0.7622 (+0.0093; folds +0.0146, +0.0047, +0.0128, +0.0129, +0.0013) and 0.7737 vs 0.7640 (+0.0097;
    folds +0.0174, +0.0075, -0.0010, +0.0125, +0.0119); pairwise +0.0102 and +0.0096. docs/quality.md has
    the larger run (323 queries: +0.0198).
    """
    baseline = default_profile()
    for objective in ("pointwise", "pairwise"):
        cv = cross_validate(judged, [baseline], folds=5, seed=0, objective=objective)
        gains = cv.gains
        print(
            f"\n{objective}: nDCG@10 held-out fitted {cv.mean('fitted'):.4f} vs {baseline.name} "
            f"{cv.mean(baseline.name):.4f}, gain {np.mean(gains):+.4f} per fold {[round(g, 4) for g in gains]}"
        )
        assert np.mean(gains) >= 0.005, (objective, gains)
        assert sum(g > 0 for g in gains) >= 4, (objective, gains)


def test_feedback_loop_in_process_hot_reloads_the_new_ranker(setup, judged):
    """Searches log impressions; simulated users click the relevant hits of the page and buy those of the
    query's own category; the join of the topic is fitted and written as the next version, and
    the same SearchService serves "learned:1" without a restart; its hits explain their scores with it."""
    platform, learned = setup
    topic = feedback_topic()
    start = len(platform.transport.messages(topic))
    for item in fashion_mnist("test", limit=60, offset=IMAGE_QUERIES):
        response = platform.search.Search(
            search_pb2.SearchRequest(tenant=TENANT, top_k=30, image=common_pb2.Image(content=item.content)), None
        )
        assert response.ranker == f"profile:{DEFAULT_PROFILE}" and response.query_id
        events = simulated_feedback(response, item.category, examined=30)
        if events:
            assert platform.search.Feedback(search_pb2.FeedbackRequest(events=events), None).accepted == len(events)
    data = join_feedback((m.value for m in platform.transport.messages(topic)[start:]), source=f"in-process:{topic}")
    assert len(data.queries()) >= 55 and not data.skipped, data.summary()
    assert {j.label for j in data.judgments} == {0, 1, 2}
    report = fit_and_evaluate(data, [default_profile()], holdout=0.3, seed=0)
    # Measured: fitted 0.8575 vs blended 0.8492 on 18 held-out queries (not asserted: too few queries).
    print(f"\nclick log: {data.summary()['labels']}, held-out nDCG@10 {report.heldout}")
    path = write_ranker(learned, report.fit.ranker(), trained_on=data.summary(), metrics=report.metrics())
    assert path.name == "ranker-v1.json" and read_ranker(path)[0].weights == report.fit.weights

    response = platform.search.Search(search_pb2.SearchRequest(tenant=TENANT, top_k=5, text="jeans"), None)
    assert response.ranker == "learned:1"
    hit = response.hits[0]
    assert hit.score == pytest.approx(report.fit.bias + sum(f.contribution for f in hit.factors), abs=1e-4)
    # A request can still name a profile (the per-request rollback).
    named = platform.search.Search(
        search_pb2.SearchRequest(
            tenant=TENANT, top_k=5, text="jeans", ranking=search_pb2.RankingProfile(name=DEFAULT_PROFILE)
        ),
        None,
    )
    assert named.ranker == f"profile:{DEFAULT_PROFILE}"
