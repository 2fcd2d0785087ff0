"""Client-side load balancing: query load spread over two real embedding servers (issue 22).

Two `visearch serve embedding` processes on 127.0.0.1 stand for two pods behind a headless Service. A client
channel (`client_channel`, as every service opens its peers) with the static target
`ipv4:127.0.0.1:<p1>,127.0.0.1:<p2>` sends real EmbedImage calls, and so does a ranking process whose embedding
peer is that target; each server's own Prometheus request counter says how many calls it answered.

- round_robin (the default, VISEARCH_GRPC_LB_POLICY): the calls are split within 30 % of each other;
- pick_first (gRPC's default, the behaviour before): one server answers every call, the other none.

Measured (2-core machine, 60 calls): round_robin 30/30 or 31/29 on the channel, 30/30 or 29/31 through ranking;
pick_first 60/0 both ways.
"""

from __future__ import annotations

import io
import urllib.request

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import ServiceProcess
from visearch.shared.grpcutil import client_channel
from visearch.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

CALLS = 60
SERVICE = "visearch.v1.EmbeddingService"


def served_calls(metrics_port: int) -> int:
    """Calls to EmbeddingService a server has answered (any method, any code), from its own /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return round(
        sum(
            sample.value
            for family in text_string_to_metric_families(body)
            if family.name == "visearch_grpc_server_handling_seconds"
            for sample in family.samples
            if sample.name.endswith("_count") and sample.labels.get("grpc_service") == SERVICE
        )
    )


@pytest.fixture(scope="module")
def embedding_servers(built_models, tmp_path_factory):
    """Two embedding servers (own ports, metrics and logs); the static target naming both."""
    tmp = tmp_path_factory.mktemp("balancing")
    servers = [ServiceProcess("embedding", {}, tmp / name) for name in ("a", "b")]
    try:
        for server in servers:
            server.log_path.parent.mkdir()
            server.start(wait=False)
        for server in servers:
            server.wait_serving()
        yield servers
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0]


def static_target(servers: list[ServiceProcess]) -> str:
    return "ipv4:" + ",".join(server.address for server in servers)


def count_calls(servers: list[ServiceProcess], send) -> list[int]:
    """Per server, the calls it answered while ``send()`` ran."""
    before = [served_calls(server.metrics_port) for server in servers]
    send()
    return [served_calls(server.metrics_port) - b for server, b in zip(servers, before, strict=True)]


def small_jpeg(photos) -> bytes:
    image = Image.open(io.BytesIO(next(p for p in photos if p.image_id == "photo-dog").read_bytes())).convert("RGB")
    image.thumbnail((256, 256))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.mark.parametrize("policy", ["round_robin", "pick_first"])
def test_one_channel_spreads_calls_over_both_servers(embedding_servers, photos, policy):
    """60 EmbedImage calls on one channel to both servers: round_robin splits them (within 30 %), pick_first (the
    old behaviour) sends every one to the same server."""
    request = embedding_pb2.EmbedImageRequest(images=[common_pb2.Image(content=small_jpeg(photos))])

    def send() -> None:
        with client_channel(static_target(embedding_servers), lb_policy=policy) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            for _ in range(CALLS):
                assert len(stub.EmbedImage(request, timeout=30).embeddings) == 1

    counts = count_calls(embedding_servers, send)
    print(f"{policy}: calls per embedding server {counts}")
    assert sum(counts) == CALLS
    if policy == "round_robin":
        assert min(counts) >= 0.7 * max(counts), counts
    else:
        assert sorted(counts) == [0, CALLS], counts


@pytest.mark.parametrize("policy", ["round_robin", "pick_first"])
def test_ranking_spreads_searches_over_both_embedding_servers(embedding_servers, photos, tmp_path, policy):
    """The ranking service with VISEARCH_EMBEDDING_ADDR naming both servers: 60 image searches (an EmbedImage call
    each) are answered by both embedding servers within 30 % of each other; with VISEARCH_GRPC_LB_POLICY=pick_first
    (the old behaviour: a ranking pod pinned to one embedding pod) by one of them only."""
    ranking = ServiceProcess(
        "ranking",
        {
            "VISEARCH_MILVUS_URI": str(tmp_path / "empty.db"),
            "VISEARCH_EMBEDDING_ADDR": static_target(embedding_servers),
            "VISEARCH_GRPC_LB_POLICY": policy,
            "VISEARCH_RANKING_UNDERSTAND_QUERY": "false",
        },
        tmp_path,
    )
    request = search_pb2.SearchRequest(image=common_pb2.Image(content=small_jpeg(photos)), top_k=3)
    try:
        ranking.start()

        def send() -> None:
            with client_channel(ranking.address) as channel:
                stub = search_pb2_grpc.SearchServiceStub(channel)
                for _ in range(CALLS):
                    stub.Search(request, timeout=30)

        counts = count_calls(embedding_servers, send)
    finally:
        assert ranking.stop() == 0
    print(f"ranking -> embedding ({policy}): calls per embedding server {counts}")
    assert sum(counts) == CALLS, counts
    if policy == "round_robin":
        assert min(counts) >= 0.7 * max(counts), counts
    else:
        assert sorted(counts) == [0, CALLS], counts
