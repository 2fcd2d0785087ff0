"""Each service as its own process: real gRPC servers on 127.0.0.1, health, reflection, errors, metrics.

The ranking service reaches the embedding service over gRPC (VISEARCH_EMBEDDING_ADDR) and reads the
Milvus Lite database that `visearch ingest` wrote in another process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.stack import ServiceProcess
from visearch.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]


@pytest.fixture(scope="module")
def services(built_models, tmp_path_factory):
    """Ingest the photos with the CLI, then start embedding and ranking servers; SIGTERM them after."""
    tmp = tmp_path_factory.mktemp("grpc")
    env = {"VISEARCH_MILVUS_URI": str(tmp / "index.db"), "VISEARCH_TENANT": "default"}
    subprocess.run(
        [sys.executable, "-m", "visearch", "ingest", "--dataset", "photos", "--no-progress"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    embedding = ServiceProcess("embedding", env, tmp)
    ranking = ServiceProcess("ranking", {**env, "VISEARCH_EMBEDDING_ADDR": embedding.address}, tmp)
    try:
        embedding.start()
        ranking.start()
        yield {
            "ports": {p.service: (p.port, p.metrics_port) for p in (embedding, ranking)},
            "processes": {"embedding": embedding.process, "ranking": ranking.process},
        }
    finally:
        codes = {"embedding": embedding.stop(), "ranking": ranking.stop()}
    # Graceful shutdown: SIGTERM drains and exits 0.
    assert codes == {"embedding": 0, "ranking": 0}


def channel(services, name: str) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{services['ports'][name][0]}")


@pytest.mark.parametrize(
    ("name", "service"), [("embedding", "visearch.v1.EmbeddingService"), ("ranking", "visearch.v1.SearchService")]
)
def test_health_and_reflection(services, name, service):
    """Each server reports SERVING for its service and lists it through reflection."""
    with channel(services, name) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {service, "grpc.health.v1.Health"} <= names


def test_search_by_text_and_image_over_grpc(services, photos):
    """Search through the ranking process, which embeds the query in the embedding process."""
    with channel(services, "ranking") as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        hits = stub.Search(search_pb2.SearchRequest(text="coffee", top_k=3), timeout=30).hits
        assert "photo-coffee" in [h.image_id for h in hits]
        dog = next(p for p in photos if p.image_id == "photo-dog").read_bytes()
        response = stub.Search(search_pb2.SearchRequest(image=common_pb2.Image(content=dog), top_k=3), timeout=30)
        hits = response.hits
        assert hits[0].image_id == "photo-dog" and hits[0].score > 0.99
        factors = {f.name: f for f in hits[0].factors}
        # An image query searches whole images and indexed regions; the blended score is the sum of the
        # factors' contributions, the visual one being weight * cosine.
        assert factors["visual"].value > 0.99 and factors["visual"].contribution == pytest.approx(
            factors["visual"].value
        )
        assert hits[0].score == pytest.approx(sum(f.contribution for f in hits[0].factors), abs=1e-5)
        assert (
            response.ranker == "profile:blended"
            and len(stub.Search(search_pb2.SearchRequest(text="dog")).query_id) == 32
        )


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (search_pb2.SearchRequest(image=common_pb2.Image(content=b"not an image")), grpc.StatusCode.INVALID_ARGUMENT),
        (search_pb2.SearchRequest(image_id="no-such-image"), grpc.StatusCode.NOT_FOUND),
        (search_pb2.SearchRequest(text="dog", top_k=5000), grpc.StatusCode.INVALID_ARGUMENT),
        (search_pb2.SearchRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (
            search_pb2.SearchRequest(image=common_pb2.Image(uri="/nonexistent/x.jpg")),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
def test_search_errors_have_precise_status(services, request_, code):
    """Bad requests get a precise gRPC status and a message; the server keeps serving."""
    with channel(services, "ranking") as ch:
        with pytest.raises(grpc.RpcError) as info:
            search_pb2_grpc.SearchServiceStub(ch).Search(request_, timeout=30)
        assert info.value.code() == code, info.value.details()
        assert info.value.details()
    assert services["processes"]["ranking"].poll() is None


def test_embed_text_over_grpc(services):
    """EmbedText returns one unit-norm 384-d vector per text."""
    with channel(services, "embedding") as ch:
        response = embedding_pb2_grpc.EmbeddingServiceStub(ch).EmbedText(
            embedding_pb2.EmbedTextRequest(texts=["red dress", "sneakers"]), timeout=30
        )
    assert len(response.vectors) == 2
    for vector in response.vectors:
        assert len(vector.values) == 384
        assert abs(sum(v * v for v in vector.values) - 1.0) < 1e-4


def test_metrics_endpoint_exports_latency_histograms(services):
    """/metrics of both processes exposes the documented series."""
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{services['ports']['embedding'][1]}/metrics", timeout=5)
        .read()
        .decode()
    )
    assert (
        'visearch_inference_duration_seconds_bucket{le="0.001",model="all_minilm_l6_v2",runner="onnxruntime"}' in body
    )
    assert "visearch_grpc_server_handling_seconds_count" in body
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{services['ports']['ranking'][1]}/metrics", timeout=5).read().decode()
    )
    assert 'visearch_milvus_request_duration_seconds_count{operation="search"}' in body
