"""The HTTP/JSON gateway over the embedded photo platform: every endpoint, the proto3 JSON mapping, errors as
HTTP status + reason code (nothing stored on bad input), auth, rate limits, TLS, metrics and OpenAPI."""

from __future__ import annotations

import json
import os
import ssl

import httpx
import pytest
from google.protobuf import json_format

from tests import pki
from tests.integration.gateway_support import near_duplicate, serve_gateway, with_text
from visearch.shared.config import SecuritySettings
from visearch.v1 import search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]
TOKEN = "gateway-test-token-0123456789"


@pytest.fixture(scope="module")
def client(photo_platform):
    with serve_gateway(photo_platform) as server:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120) as http:
            yield http


@pytest.fixture(scope="module")
def by_id(photos):
    return {p.image_id: p for p in photos}


def upload(client, route, data, request=None, name="query.jpg", mime="image/jpeg"):
    files = {"image": (name, data, mime)}
    return client.post(route, files=files, data={"request": json.dumps(request or {})})


def error_of(response, status, reason):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["reason"] == reason and error["code"] == status, error
    assert error["details"][0]["reason"] == reason
    return error


def test_upload_finds_the_near_duplicate_first_with_its_thumbnail(client, by_id):
    response = upload(client, "/v1/search/upload", near_duplicate(by_id["photo-dog"].read_bytes()), {"topK": 5})
    assert response.status_code == 200, response.text
    parsed = json_format.ParseDict(response.json(), search_pb2.SearchResponse())  # the proto3 JSON mapping
    assert parsed.hits[0].image_id == "photo-dog" and parsed.query_id
    assert {f.name for f in parsed.hits[0].factors} >= {"visual"}
    thumb = client.get("/v1/thumbnails", params={"image_id": "photo-dog"})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff" and len(thumb.content) < 40_000
    error_of(client.get("/v1/thumbnails", params={"image_id": "no-such-image"}), 404, "not_found")


def test_text_id_colour_and_region_queries(client, by_id):
    text = client.post("/v1/search", json={"text": "a cup of coffee", "topK": 3}).json()
    assert text["hits"][0]["imageId"] == "photo-coffee"
    more = client.post("/v1/search", json={"imageId": "photo-horses", "topK": 3})
    assert more.status_code == 200 and more.json()["hits"]
    colour = client.post("/v1/search", json={"colour": {"palette": {"colours": [{"colour": "red", "weight": 1}]}}})
    assert colour.status_code == 200 and colour.json()["hits"]
    region = {"region": {"x1": 115, "y1": 134, "x2": 562, "y2": 475}, "topK": 3}
    response = upload(client, "/v1/search/upload", by_id["photo-dog"].read_bytes(), region)
    assert response.status_code == 200, response.text
    hit = response.json()["hits"][0]
    assert hit["imageId"] == "photo-dog"
    snake = client.post("/v1/search", json={"text": "dog", "top_k": 2})  # proto field names are accepted too
    assert snake.status_code == 200 and len(snake.json()["hits"]) == 2


def test_similar_exact_alternatives_tag_feedback(client, by_id):
    exact = upload(
        client, "/v1/similar/upload", near_duplicate(by_id["photo-chelsea"].read_bytes()), {"exactOnly": True}
    )
    assert exact.status_code == 200 and exact.json()["hits"][0]["imageId"] == "photo-chelsea"
    similar = client.post("/v1/similar", json={"imageId": "photo-dog", "topK": 3})
    assert similar.status_code == 200 and "photo-dog" not in [h["imageId"] for h in similar.json()["hits"]]
    error_of(client.post("/v1/similar", json={"imageId": "no-such-image"}), 404, "not_found")
    alternatives = client.post("/v1/alternatives", json={"imageId": "photo-dog", "topK": 3})
    assert alternatives.status_code == 200, alternatives.text
    tags = client.post("/v1/tag", json={"imageId": "photo-horses", "topN": 5})
    assert tags.status_code == 200 and tags.json()["modelTags"]
    assert upload(client, "/v1/tag/upload", by_id["photo-horses"].read_bytes()).json()["modelTags"]
    event = {"queryId": "q-1", "imageId": "photo-dog", "action": "ACTION_CLICK", "position": 0}
    assert client.post("/v1/feedback", json={"events": [event]}).json() == {"accepted": 1}


def test_recognize_objects_text_and_quality(client, by_id):
    response = upload(client, "/v1/recognize/upload", with_text(by_id["photo-coffee"].read_bytes()))
    assert response.status_code == 200, response.text
    result = response.json()
    assert "cup" in {d["label"] for d in result["detections"]["detections"]}
    assert "ESPRESSO" in result["text"]["text"].upper()
    names = {a["name"] for a in result["classification"]["attributes"]}
    assert {"category", "colour", "blur", "mosaic", "model", "detail", "moderation"} <= names
    assert result["classification"]["taxonomy"] and result["classification"]["moderation"]["scores"]


def test_bad_input_gets_its_status_and_reason_and_stores_nothing(client, photo_platform):
    rows, thumbs = photo_platform.store.count(), photo_platform.thumbnails.count()
    error_of(
        upload(client, "/v1/search/upload", b"just some text", name="a.txt", mime="text/plain"),
        415,
        "undecodable_image",
    )
    error_of(upload(client, "/v1/recognize/upload", b"%PDF-1.4 not an image"), 415, "undecodable_image")
    error_of(upload(client, "/v1/search/upload", b""), 415, "empty_image")
    big = b"\xff\xd8\xff" + os.urandom(21 * 1024 * 1024)  # over VISEARCH_IMAGE_MAX_BYTES (20 MiB): read, refused
    error_of(upload(client, "/v1/search/upload", big), 413, "image_too_large")
    huge = b"\xff\xd8\xff" + os.urandom(40 * 1024 * 1024)  # over the body limit: refused by its Content-Length
    error_of(upload(client, "/v1/search/upload", huge), 413, "image_too_large")
    for url in ("http://127.0.0.1:9/a.jpg", "http://10.1.2.3/a.jpg", "http://169.254.169.254/latest/meta-data"):
        error_of(client.post("/v1/search", json={"image": {"uri": url}}), 422, "address_not_allowed")
    error_of(
        client.post("/v1/recognize", json={"image": {"uri": "http://192.168.0.1/x.png"}}), 422, "address_not_allowed"
    )
    error_of(client.post("/v1/search", json={"image": {"uri": "file:///etc/passwd"}}), 422, "scheme_not_allowed")
    error_of(client.post("/v1/search", content=b'{"text": "dog",'), 400, "invalid_json")
    error_of(client.post("/v1/search", content=b"[1, 2]"), 400, "invalid_json")
    error_of(client.post("/v1/search", json={"txet": "dog"}), 400, "invalid_request")
    error_of(client.post("/v1/search", json={"topK": "many"}), 400, "invalid_request")
    error_of(client.post("/v1/search", json={"topK": 5000, "text": "dog"}), 400, "bad_top_k")
    error_of(client.post("/v1/search", json={}), 400, "empty_query")
    error_of(client.post("/v1/search/upload", data={"request": "{}"}), 400, "invalid_request")
    error_of(client.post("/v1/recognize", json={}), 400, "missing_image")
    assert photo_platform.store.count() == rows and photo_platform.thumbnails.count() == thumbs


def test_metrics_health_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    assert 'visearch_http_requests_total{route="/v1/search/upload",status="200"}' in metrics
    assert "visearch_http_request_seconds_bucket" in metrics
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/search",
        "/v1/search/upload",
        "/v1/similar",
        "/v1/alternatives",
        "/v1/tag",
        "/v1/recognize",
        "/v1/feedback",
    ):
        assert path in spec["paths"], path
    schema = spec["components"]["schemas"]["visearch.v1.SearchRequest"]["properties"]
    assert schema["topK"] == {"type": "integer", "format": "int32"} and "$ref" in schema["image"]
    assert client.get("/docs").status_code == 200
    assert client.get("/playground/").text.startswith("<!doctype html>")


def test_tokens_and_rate_limits_as_on_grpc(photo_platform):
    security = SecuritySettings(auth_tokens=f"tester:{TOKEN}", rate_limit_per_s=0.01, rate_limit_burst=2)
    with (
        serve_gateway(photo_platform, security=security) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http,
    ):
        body = {"text": "dog", "topK": 1}
        error_of(http.post("/v1/search", json=body), 401, "missing_token")
        error_of(
            http.post("/v1/search", json=body, headers={"Authorization": "Bearer wrong-token-0123456789"}),
            401,
            "invalid_token",
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert http.post("/v1/search", json=body, headers=auth).status_code == 200
        assert http.post("/v1/search", json=body, headers=auth).status_code == 200
        limited = http.post("/v1/search", json=body, headers=auth)
        error_of(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert http.get("/healthz").status_code == 200 and http.get("/playground/").status_code == 200


def test_tls(photo_platform, tmp_path):
    ca = pki.make_ca("gateway-test-ca")
    cert, key = pki.issue(ca, "localhost", True, tmp_path, "server")
    security = SecuritySettings(tls_cert_file=cert, tls_key_file=key)
    with serve_gateway(photo_platform, security=security) as server:
        context = ssl.create_default_context(cafile=pki.write_ca(ca, tmp_path / "ca.pem"))
        with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=context, timeout=60) as https:
            assert https.post("/v1/search", json={"text": "dog", "topK": 1}).status_code == 200
        with pytest.raises(httpx.TransportError), httpx.Client(timeout=10) as plain:
            plain.get(f"http://127.0.0.1:{server.port}/healthz")
