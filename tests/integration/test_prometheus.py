"""A real Prometheus (Debian's package, unpacked by deploy/tools/install-prometheus.sh) scrapes the
services and Triton of a local stack, with the chart's alert rules loaded: the key series exist with
their documented labels, and poison events fire the DLQ alert."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.integration.stack import (
    KAFKA_BOOTSTRAP,
    MILVUS_URI,
    ROOT,
    ExporterProcess,
    PrometheusProcess,
    ScriptManaged,
    ServiceProcess,
    wait_until,
)
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist
from visearch.offline.models.triton_repository import write_repository
from visearch.shared.config import KafkaSettings, ModelSettings
from visearch.shared.kafka import KafkaTransport, create_topics, images_topic
from visearch.shared.pipeline import encode_event
from visearch.v1 import common_pb2, events_pb2, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.kafka, pytest.mark.milvus, pytest.mark.triton, pytest.mark.models, pytest.mark.slow]

ALERTS = ROOT / "helm" / "visearch" / "files" / "alerts.yaml"


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]


def query(port: int, promql: str) -> list[dict]:
    return api(port, "query", query=promql)["result"]


@pytest.fixture(scope="module")
def stack(built_models, tmp_path_factory):
    """Kafka, Milvus, Triton, the three services on Triton, the lag exporter, and Prometheus scraping them all."""
    tmp = tmp_path_factory.mktemp("prom")
    subprocess.run(["bash", str(ROOT / "deploy" / "tools" / "install-prometheus.sh")], check=True, timeout=300)
    repository = tmp / "triton-repo"
    write_repository(ModelSettings().cache_dir, repository, "local")
    parts = [ScriptManaged("kafka"), ScriptManaged("milvus"), ScriptManaged("triton", up_args=(str(repository),))]
    procs, prometheus = [], None
    try:
        for part in parts:
            part.up()
        prefix = f"pm{uuid.uuid4().hex[:8]}"
        settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=prefix, partitions=3)
        create_topics(settings, ["embedding", "indexer"])
        env = {
            "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
            "VISEARCH_KAFKA_TOPIC_PREFIX": prefix,
            "VISEARCH_MILVUS_URI": MILVUS_URI,
            "VISEARCH_MILVUS_COLLECTION_PREFIX": prefix,
            "VISEARCH_MODEL_TRITON_URL": "127.0.0.1:8001",
            "VISEARCH_TENANT": "prom",
            "VISEARCH_PIPELINE_STAGES": "embedding,indexer",
            # Poison on purpose: keep the DLQ policy from stopping the worker during this test.
            "VISEARCH_KAFKA_DLQ_MAX_CONSECUTIVE": "100000",
        }
        embedding = ServiceProcess("embedding", env, tmp)
        procs = [
            embedding,
            ServiceProcess("indexer", env, tmp),
            ServiceProcess("ranking", {**env, "VISEARCH_EMBEDDING_ADDR": embedding.address}, tmp),
            ExporterProcess(env, tmp),  # the stage groups' consumer lag, read from the broker
        ]
        for proc in procs:
            proc.start()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "visearch",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{p.metrics_port}"], "labels": {"service": p.service}} for p in procs
                    ],
                },
                {
                    "job_name": "triton",
                    "static_configs": [{"targets": ["127.0.0.1:8002"], "labels": {"service": "triton"}}],
                },
            ],
        }
        prometheus = PrometheusProcess(config, tmp)
        port = prometheus.start()
        yield {"port": port, "settings": settings, "procs": {p.service: p for p in procs}}
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in procs:
            proc.stop()
        for part in reversed(parts):
            part.down()


def publish(settings: KafkaSettings, events) -> None:
    transport = KafkaTransport(settings, "test-prometheus")
    for event in events:
        transport.produce(images_topic(settings), *encode_event(event))
    transport.flush()
    transport.close()


def poison(n: int, start: int) -> list[events_pb2.ImageEvent]:
    return [
        events_pb2.ImageEvent(
            image_id=f"poison-{i}",
            kind=events_pb2.ImageEvent.KIND_UPSERT,
            tenant="prom",
            image=common_pb2.Image(content=b"not an image at all"),
        )
        for i in range(start, start + n)
    ]


def test_key_series_exist_and_dlq_alert_fires(stack):
    """Scraped series carry the documented labels; >100 dead letters in an hour fire VisearchDLQMessages."""
    import grpc

    port, settings, procs = stack["port"], stack["settings"], stack["procs"]
    topic = images_topic(settings)
    publish(
        settings, [item_to_event(item, "prom") for item in fashion_mnist("train", limit=20, offset=8000)] + poison(5, 0)
    )
    wait_until(
        lambda: query(port, f'visearch_dlq_messages_total{{topic="{topic}"}}'), 120, what="first dead letters scraped"
    )
    time.sleep(3)  # a few scrapes of the small value, so increase() sees the jump that follows
    publish(settings, poison(120, 5))
    with grpc.insecure_channel(procs["ranking"].address) as channel:
        try:
            search_pb2_grpc.SearchServiceStub(channel).Search(
                search_pb2.SearchRequest(text="sneaker", tenant="prom"), timeout=30
            )
        except grpc.RpcError as error:  # say where the time went: the ranking and embedding services' own logs
            pytest.fail(
                f"Search failed: {error.code()} {error.details()}\n--- ranking\n{procs['ranking'].log_tail(40)}"
                f"\n--- embedding\n{procs['embedding'].log_tail(40)}"
            )

    expected_series = [
        'up{job="visearch",service="embedding"} == 1',
        'up{job="visearch",service="indexer"} == 1',
        'up{job="visearch",service="ranking"} == 1',
        'up{job="visearch",service="lag-exporter"} == 1',
        'up{job="triton"} == 1',
        'visearch_stage_items_total{stage="embedding",outcome="ok"} > 0',
        'visearch_stage_items_total{stage="indexer",outcome="ok"} > 0',
        'visearch_stage_duration_seconds_count{stage="embedding"} > 0',
        'visearch_stage_batch_size_count{stage="indexer"} > 0',
        f'visearch_kafka_consumer_lag_records{{service="lag-exporter",group="visearch-indexer",topic="{settings.topic_prefix}.embedded.v1"}}',
        f'visearch_kafka_consumer_lag_seconds{{service="lag-exporter",group="visearch-embedding",topic="{topic}"}}',
        'visearch_kafka_lag_scrape_success{service="lag-exporter"} == 1',
        'visearch_ingest_freshness_seconds_count{service="indexer",kind="upsert"} > 0',
        f'visearch_kafka_records_consumed_total{{group="visearch-embedding",topic="{topic}"}} > 0',
        'visearch_inference_duration_seconds_count{model="efficientnet_lite0",runner="triton"} > 0',
        'visearch_inference_batch_size_count{model="all_minilm_l6_v2"} > 0',
        'visearch_milvus_request_duration_seconds_count{operation="upsert"} > 0',
        'visearch_grpc_server_handling_seconds_count{grpc_service="visearch.v1.SearchService",grpc_method="Search",grpc_code="OK"} > 0',
        'nv_inference_count{model="efficientnet_lite0"} > 0',
    ]
    for promql in expected_series:
        wait_until(lambda promql=promql: query(port, promql), 60, what=promql)
    dlq = wait_until(
        lambda: query(port, f'visearch_dlq_messages_total{{topic="{topic}",reason="undecodable_image"}} >= 125'),
        120,
        what="125 dead letters scraped",
    )
    assert dlq[0]["metric"]["reason"] == "undecodable_image"

    def firing():
        return [
            a
            for a in api(port, "alerts")["alerts"]
            if a["labels"]["alertname"] == "VisearchDLQMessages"
            and a["state"] == "firing"
            and a["labels"].get("topic") == topic
        ]

    alert = wait_until(firing, 120, what="VisearchDLQMessages firing")[0]
    assert alert["labels"]["reason"] == "undecodable_image"
    assert alert["annotations"]["runbook_url"].startswith("docs/operations.md#")
    assert all(p.process.poll() is None for p in procs.values())
