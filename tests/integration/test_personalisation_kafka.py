"""Personalisation over a real Apache Kafka broker (kafka.sh in its own folder, on free ports): feedback events
published through the ranking service -> the profile folder (`visearch serve profiles`, its own process) folds
them into the compacted user-profiles topic -> the running ranking service's next search reflects the profile,
without a restart. A kill -9 of the folder in the middle of a stream of events loses none and counts none twice;
`visearch user forget` removes the profile from the service's cache and tombstones it on the topic; a restarted
ranking service rebuilds its cache from the topic (the forgotten user stays forgotten).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import grpc
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.stack import ROOT, ServiceProcess, free_port, stable_response, wait_until
from visearch.shared.config import KafkaSettings
from visearch.shared.kafka import KafkaTransport, create_topics
from visearch.shared.profile_topic import profiles_topic
from visearch.shared.transport import feedback_topic
from visearch.v1 import events_pb2, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.kafka, pytest.mark.models, pytest.mark.milvus_lite, pytest.mark.slow]

PREFIX = f"p{uuid.uuid4().hex[:8]}"
TENANT = "shop"
CATALOGUE = 120
Action = events_pb2.FeedbackEvent
BACKLOG = 3000  # feedback events folded across two kill -9 of the folder
TASTE = "ankle boot"  # the shoppers' taste: the first ankle boot of a page is clicked
QUERIES = ("trainers", "slides", "running shoes", "boots")  # footwear words: ankle boots among other hits
MEASURED = QUERIES[:2]  # the pages where ankle boots are a minority for everyone


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """A plaintext broker of its own (state in a temporary folder, free ports); its topics, profiles compacted."""
    root = tmp_path_factory.mktemp("kafka-var")
    port = free_port()
    env = {
        **os.environ,
        "VISEARCH_VAR_DIR": str(root),
        "VISEARCH_KAFKA_PORT": str(port),
        "VISEARCH_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    shared_lib = ROOT / "var" / "kafka" / "lib"  # the jars, resolved once by `make kafka-up`: read only
    if shared_lib.is_dir():
        (root / "kafka").mkdir(parents=True, exist_ok=True)
        (root / "kafka" / "lib").symlink_to(shared_lib.resolve(), target_is_directory=True)

    def script(*args):
        return subprocess.run(
            ["bash", str(ROOT / "deploy" / "kafka" / "kafka.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    up = script("up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", topic_prefix=PREFIX, partitions=3)
        assert create_topics(settings, ["embedding", "indexer"])[profiles_topic(PREFIX)] == "created"
        # The broker's own tools (kafka-python's describe_configs answers nothing from this broker).
        yield SimpleNamespace(
            bootstrap=settings.bootstrap,
            tool=lambda *args: script("tool", *args, "--bootstrap-server", settings.bootstrap),
        )
    finally:
        script("down", "--purge")


@pytest.fixture(scope="module")
def stack(built_models, kafka, tmp_path_factory):
    """The catalogue in a Milvus Lite file (ingested by the CLI), the ranking service and the profile folder."""
    tmp = tmp_path_factory.mktemp("personal-kafka")
    env = {
        "VISEARCH_MILVUS_URI": str(tmp / "shop.db"),
        "VISEARCH_TENANT": TENANT,
        "VISEARCH_PIPELINE_STAGES": "embedding,indexer",
        "VISEARCH_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.2",
        "VISEARCH_KAFKA_MAX_POLL_RECORDS": "5",  # small batches: a kill -9 lands between a write and a commit
    }
    ingest = [sys.executable, "-m", "visearch", "ingest", "--dataset", "fashion-mnist", "--limit", str(CATALOGUE)]
    no_kafka = {k: v for k, v in env.items() if not k.startswith("VISEARCH_KAFKA")}
    subprocess.run([*ingest, "--no-progress"], env={**os.environ, **no_kafka}, check=True, capture_output=True)
    ranking, folder = ServiceProcess("ranking", env, tmp), ServiceProcess("profiles", env, tmp)
    try:
        ranking.start()
        folder.start()
        with grpc.insecure_channel(ranking.address) as channel:
            yield {"search": search_pb2_grpc.SearchServiceStub(channel), "ranking": ranking, "folder": folder}
    finally:
        codes = {"ranking": ranking.stop(), "folder": folder.stop()}
    assert codes == {"ranking": 0, "folder": 0}, ranking.log_tail() + folder.log_tail()


def _search(search, text, user_id=""):
    return search.Search(search_pb2.SearchRequest(text=text, top_k=10, user_id=user_id), timeout=60)


def _click(search, user_id, response, image_id):
    event = Action(
        query_id=response.query_id, image_id=image_id, action=Action.ACTION_CLICK, user_id=user_id, tenant=TENANT
    )
    assert search.Feedback(search_pb2.FeedbackRequest(events=[event]), timeout=60).accepted == 1


def _profile(search, user_id):
    return search.GetUserProfile(search_pb2.UserProfileRequest(user_id=user_id), timeout=30)


def _click_taste(search, user_id, rounds):
    """Search, click the first hit of the taste on the page; returns the clicks sent."""
    clicks = 0
    for n in range(rounds):
        response = _search(search, QUERIES[n % len(QUERIES)], user_id)
        liked = [h.image_id for h in response.hits if h.category == TASTE]
        if liked:
            _click(search, user_id, response, liked[0])
            clicks += 1
    return clicks


def test_the_profiles_topic_is_compacted(kafka):
    described = kafka.tool("org.apache.kafka.tools.TopicCommand", "--describe", "--topic", profiles_topic(PREFIX))
    assert described.returncode == 0 and "cleanup.policy=compact" in described.stdout, described.stdout


def test_feedback_updates_the_profile_and_the_next_search_reflects_it(stack):
    search, user = stack["search"], "u-boots"

    def liked_shown(user_id=""):
        pages = [_search(search, text, user_id) for text in MEASURED]
        return sum(h.category == TASTE for page in pages for h in page.hits), pages

    before, _ = liked_shown()
    assert _search(search, "boots", user).ranker == "profile:blended" and not _profile(search, user).found
    clicks = _click_taste(search, user, 12)
    assert clicks >= 9
    wait_until(lambda: _profile(search, user).profile.events == clicks, 60, what="the profile of the clicks")
    after, pages = liked_shown(user)  # the running service, no restart
    assert {page.ranker for page in pages} == {"profile:blended+personal"}
    assert all("preference" in {f.name for f in h.factors} for page in pages for h in page.hits)
    assert after > before, (before, after)


def test_kill9_of_the_folder_loses_no_event_and_counts_none_twice(stack, kafka):
    search, folder, user = stack["search"], stack["folder"], "u-crash"
    transport = KafkaTransport(KafkaSettings(bootstrap=kafka.bootstrap), "test-feedback")
    try:  # a backlog of clicks (batches of 5 records: folding takes seconds), as clients would send them
        for n in range(BACKLOG):
            event = Action(query_id=f"q{n}", image_id="x", action=Action.ACTION_CLICK, user_id=user, tenant=TENANT)
            event.event_time.GetCurrentTime()
            transport.produce(feedback_topic(PREFIX), event.query_id.encode(), event.SerializeToString(), {})
        transport.flush()
    finally:
        transport.close()
    seen = 0
    for _ in range(2):  # kill -9 twice while folding: no drain, no commit of the batch in flight
        seen = wait_until(
            lambda s=seen: (e := _profile(search, user).profile.events) > s and e, 60, what="folding progress"
        )
        folder.kill9()
        assert seen < BACKLOG, "the backlog was folded before the kill: make it longer"
        folder.start()
    wait_until(lambda: _profile(search, user).profile.events >= BACKLOG, 120, what="every event folded")
    time.sleep(2)  # a late redelivery would show now
    assert _profile(search, user).profile.events == BACKLOG  # none lost, none counted twice


def test_user_forget_removes_the_profile_from_the_cache_and_the_topic(stack, kafka):
    search, ranking, user = stack["search"], stack["ranking"], "u-forget"
    _click_taste(search, user, 8)
    wait_until(lambda: _profile(search, user).applies, 60, what="the profile applying")
    forget = subprocess.run(
        [sys.executable, "-m", "visearch", "user", "forget", user, "--server", ranking.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert forget.returncode == 0 and "profile removed" in forget.stdout, forget.stdout + forget.stderr
    assert not _profile(search, user).found
    assert stable_response(_search(search, "boots", user)) == stable_response(_search(search, "boots"))
    assert _last_value(kafka, user) is None  # the tombstone: compaction removes the key

    ranking.stop()  # a restarted service rebuilds its cache from the topic: the others' profiles come back
    ranking.start()
    wait_until(lambda: _profile(search, "u-boots").found, 60, what="the cache rebuilt from the topic")
    assert not _profile(search, user).found
    shown = subprocess.run(
        [sys.executable, "-m", "visearch", "user", "show", "u-boots", "--server", ranking.address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0 and f"category:{TASTE}" in shown.stdout, shown.stdout + shown.stderr


def _last_value(kafka, user_id):
    """The value of the profiles topic's last record for ``user_id`` (None: a tombstone)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    try:
        topic = profiles_topic(PREFIX)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends, last, found = consumer.end_offsets(partitions), b"missing", False
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == user_id.encode():
                        last, found = record.value, True
        assert found, f"no record for {user_id}"
        return last
    finally:
        consumer.close()
