"""The learning-to-rank loop over a real Apache Kafka broker (started by deploy/kafka/kafka.sh): the ranking
service as its own process logs impressions to the feedback topic and publishes the Feedback RPC's clicks
and purchases there; `visearch rank fit --from-kafka` reads the topic, fits and writes ranker-v1.json;
a RankerRegistry and the running service pick it up without a restart (SearchResponse.ranker
"learned:1"), and the impressions it logs from then on name it.

The catalogue (Fashion-MNIST, embedding + indexer) is in a Milvus Lite file owned by the ranking process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import grpc
import pytest

from tests.integration.stack import KAFKA_BOOTSTRAP, ScriptManaged, ServiceProcess, wait_until
from visearch.offline.datasets import fashion_mnist
from visearch.offline.rank.judged import FASHION_TEXT_QUERIES, simulated_feedback
from visearch.offline.rank.learning import feedback_values, join_feedback
from visearch.services.ranking.ranker import RankerRegistry, read_ranker
from visearch.shared.config import KafkaSettings
from visearch.shared.kafka import KafkaTransport, create_topics
from visearch.shared.transport import HEADER_SCHEMA, feedback_topic
from visearch.v1 import events_pb2, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.kafka, pytest.mark.models, pytest.mark.milvus_lite, pytest.mark.slow]

PREFIX = f"l{uuid.uuid4().hex[:8]}"
TENANT = "shop"
CATALOGUE = 300
MORE_LIKE_THIS = 80  # catalogue items used as "more like this" queries (plus the everyday-word text queries)
Action = events_pb2.FeedbackEvent


@pytest.fixture(scope="module")
def kafka():
    """Kafka via deploy/kafka/kafka.sh (stopped afterwards if this module started it); this module's feedback topic."""
    broker = ScriptManaged("kafka")
    broker.up()
    settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=PREFIX, partitions=3)
    # `visearch topics create` (create_topics) makes the feedback topic beside the pipeline's.
    assert create_topics(settings, ["embedding", "indexer"])[feedback_topic(PREFIX)] == "created"
    assert create_topics(settings, ["embedding", "indexer"])[feedback_topic(PREFIX)] == "exists"
    yield settings
    broker.down()


@pytest.fixture(scope="module")
def stack(built_models, kafka, tmp_path_factory):
    """The catalogue ingested by the CLI into a Milvus Lite file, then embedding and ranking as processes; the
    ranking service logs impressions to this module's feedback topic and watches the ranker folder."""
    tmp = tmp_path_factory.mktemp("ltr-kafka")
    rankers = tmp / "rankers"
    env = {
        "VISEARCH_MILVUS_URI": str(tmp / "shop.db"),
        "VISEARCH_TENANT": TENANT,
        "VISEARCH_PIPELINE_STAGES": "embedding,indexer",
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "visearch",
            "ingest",
            "--dataset",
            "fashion-mnist",
            "--limit",
            str(CATALOGUE),
            "--no-progress",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=600,
    )
    embedding = ServiceProcess("embedding", env, tmp)
    ranking = ServiceProcess(
        "ranking",
        {
            **env,
            "VISEARCH_EMBEDDING_ADDR": embedding.address,
            "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
            "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
            "VISEARCH_RANKING_LEARNED_DIR": str(rankers),
            "VISEARCH_RANKING_RELOAD_INTERVAL_S": "0.5",
        },
        tmp,
    )
    try:
        embedding.start()
        ranking.start()
        with grpc.insecure_channel(ranking.address) as channel:
            yield {"search": search_pb2_grpc.SearchServiceStub(channel), "rankers": rankers, "ranking": ranking}
    finally:
        codes = {"embedding": embedding.stop(), "ranking": ranking.stop()}
    assert codes == {"embedding": 0, "ranking": 0}, ranking.log_tail()


def _queries():
    """(request, category the user wants): "more like this" on catalogue items, and everyday words."""
    for item in fashion_mnist("train", limit=MORE_LIKE_THIS):
        yield search_pb2.SearchRequest(image_id=item.image_id, top_k=20), item.category
    for words, category in FASHION_TEXT_QUERIES.items():
        yield search_pb2.SearchRequest(text=words, top_k=20), category


def _rank_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visearch", "rank", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_feedback_over_kafka_fits_a_ranker_the_running_service_hot_reloads(stack, kafka):
    search, rankers = stack["search"], stack["rankers"]
    topic = feedback_topic(PREFIX)
    served = 0
    for request, category in _queries():
        response = search.Search(request, timeout=60)
        assert response.ranker == "profile:blended" and len(response.hits) == 20
        served += len(response.hits)
        # Simulated users look at the whole page of 20: click the relevant hits, buy those of their category.
        events = simulated_feedback(response, category, examined=20)
        if events:
            assert search.Feedback(search_pb2.FeedbackRequest(events=events), timeout=60).accepted == len(events)
    # Bad records on the topic are skipped and reported, never fatal.
    transport = KafkaTransport(kafka, "test-bad-feedback")
    try:
        transport.produce(topic, b"junk", b"\xff\x00 not a FeedbackEvent", {HEADER_SCHEMA: "visearch.v1.FeedbackEvent"})
        transport.produce(
            topic,
            b"q-unknown",
            Action(query_id="q-unknown", image_id="x", action=Action.ACTION_CLICK).SerializeToString(),
            {HEADER_SCHEMA: "visearch.v1.FeedbackEvent"},
        )
        transport.flush()
    finally:
        transport.close()

    logged = join_feedback(feedback_values(KafkaSettings(bootstrap=KAFKA_BOOTSTRAP), topic))
    assert logged.records >= served + 2 and logged.skipped == {"undecodable": 1, "feedback_without_impression": 1}
    queries = len(logged.queries())
    assert queries >= 90, logged.summary()

    args = ("fit", "--from-kafka", "--bootstrap", KAFKA_BOOTSTRAP, "--topic-prefix", PREFIX, "--out-dir", str(rankers))
    fit = _rank_cli(*args)
    print("\n" + fit.stdout)
    assert f"{logged.records} records" in fit.stdout and "undecodable" in fit.stdout, fit.stdout + fit.stderr
    # The gate: written when the fitted ranker is at least as good as the default on the held-out queries,
    # else refused with nothing written. The split follows the service's random query ids, so either can
    # happen: measured 0.7900 vs blended 0.7858 (written), and, with users who bought the first matching hit
    # (order-dependent labels), 0.8482 < 0.8582 and 0.7826 < 0.8414 (refused). These lists only carry
    # visual, text, bm25 and in_stock; the quality of the fit is tested on judged data
    # (test_learning_to_rank.py). A refused ranker is then written with --force, marked forced.
    assert fit.returncode in (0, 1), fit.stdout + fit.stderr
    refused = fit.returncode == 1
    if refused:
        assert "refused" in fit.stdout and (not rankers.exists() or not any(rankers.iterdir()))
        fit = _rank_cli(*args, "--force")
        print(fit.stdout)
        assert fit.returncode == 0, fit.stdout + fit.stderr
    assert "wrote" in fit.stdout
    ranker, doc = read_ranker(rankers / "ranker-v1.json")
    assert doc["trained_on"]["source"] == f"kafka:{topic}" and doc["trained_on"]["queries"] == queries
    assert doc["metrics"]["compared_with"] == "profile:blended" and doc["forced"] == refused == (
        doc["metrics"]["gain"] < 0
    )

    assert RankerRegistry(learned_dir=rankers).resolve(TENANT).name == "learned:1"
    # The running service: no restart, the folder is checked every 0.5 s.
    request = search_pb2.SearchRequest(text="jeans", top_k=5)
    response = wait_until(
        lambda: (r := search.Search(request, timeout=60)).ranker == "learned:1" and r,
        30,
        what="the ranking service serving learned:1",
    )
    hit = response.hits[0]
    assert hit.score == pytest.approx(ranker.bias + sum(f.contribution for f in hit.factors), abs=1e-4)
    shown = _rank_cli("show", "--out-dir", str(rankers))
    assert shown.returncode == 0 and "learned rankers in" in shown.stdout, shown.stdout + shown.stderr

    def impressions_of(query_id):
        events = []
        for value in feedback_values(KafkaSettings(bootstrap=KAFKA_BOOTSTRAP), topic):
            if value.startswith(b"\xff"):  # the junk record above
                continue
            event = Action.FromString(value)
            if event.query_id == query_id:
                events.append(event)
        return events

    served_by = wait_until(lambda: impressions_of(response.query_id), 30, what="the new impressions on the topic")
    assert {e.ranker for e in served_by} == {"learned:1"} and len(served_by) == 5
