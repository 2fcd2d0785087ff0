"""``make bench``, gateway part: the HTTP/JSON gateway's overhead over the same search on gRPC.

The photo catalogue of ``photo_catalogue()`` is ingested into an embedded platform (Milvus Lite in a
temporary folder); its SearchService is served by a real gRPC server on a free 127.0.0.1 port, and the gateway
runs as its own process, ``visearch serve gateway`` on another free port, calling that server over gRPC (as
deployed: the HTTP path adds the gateway's process and hop). Each query is sent both ways, interleaved (the order alternates every pass):

- **text**: ``{"text": ...}`` to ``POST /v1/search`` vs ``SearchService.Search(text=...)``;
- **image**: a 640-px JPEG of each photo as a multipart upload to ``POST /v1/search/upload`` vs
  ``SearchService.Search(image.content=...)``;

The HTTP client is the standard library's keep-alive ``http.client`` (httpx's own Python cost, about 1 ms a
request on this machine, is the client's, not the gateway's; the gRPC side is grpcio's C core). One warm-up
pass, then ``--passes`` measured ones; client-side p50 / p99, and the ratio HTTP p50 / gRPC p50
(acceptance: <= 1.1). The p50 of a few distinct queries (6 texts) jumps between their latencies from run to run,
so the report also gives the paired figures: for each query in each pass (both ways back to back), HTTP - gRPC in
ms and HTTP / gRPC, their medians (``overhead_ms``, ``paired_ratio``). Informational, nothing asserted. Writes
``reports/bench_gateway.json`` and prints the table. Run: ``python -m tests.bench.gateway --out reports``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import numpy as np
from PIL import Image

from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import photo_catalogue
from visearch.shared.config import ImageSettings, StoreSettings
from visearch.shared.grpcutil import client_channel
from visearch.v1 import common_pb2, search_pb2, search_pb2_grpc

TEXTS = ("a cup of coffee", "a dog", "horses in a field", "a red motorcycle", "an astronaut", "a cat")


def _jpeg(data: bytes, side: int = 640) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class _Http:
    """A keep-alive HTTP/1.1 client on one connection: POST a body, read the whole answer, fail on a non-200."""

    BOUNDARY = "visearch-bench-boundary"

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        self.conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status} {data[:200]!r}")

    def upload(self, path: str, image: bytes, request: str) -> None:
        b = self.BOUNDARY.encode()
        body = (
            b"--" + b + b'\r\nContent-Disposition: form-data; name="request"\r\n\r\n' + request.encode() + b"\r\n"
            b"--" + b + b'\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n--" + b + b"--\r\n"
        )
        self.post(path, body, f"multipart/form-data; boundary={self.BOUNDARY}")

    def close(self) -> None:
        self.conn.close()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _start_gateway(grpc_port: int, folder: Path) -> tuple[subprocess.Popen, int]:
    """``visearch serve gateway`` on a free port over the gRPC server at ``grpc_port``; waits for /healthz."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VISEARCH_GATEWAY_SEARCH_ADDR": f"127.0.0.1:{grpc_port}", "VISEARCH_LOG_LEVEL": "warning"}
    log = open(folder / "gateway.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "visearch", "serve", "gateway", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the gateway did not start: " + (folder / "gateway.log").read_text()[-2000:])


def run(passes: int) -> dict:
    photos = photo_catalogue()
    with tempfile.TemporaryDirectory() as tmp:
        platform = EmbeddedPlatform(
            StoreSettings(uri=str(Path(tmp) / "bench.db")), image_settings=ImageSettings(allow_file_uris=True)
        )
        platform.ingest(photos, progress=False)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        search_pb2_grpc.add_SearchServiceServicer_to_server(platform.search, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = client_channel(f"127.0.0.1:{port}", timeout_s=60)
        stub = search_pb2_grpc.SearchServiceStub(channel)
        gateway = _start_gateway(port, Path(tmp))
        http = _Http(gateway[1])
        images = [_jpeg(p.read_bytes()) for p in photos]
        cases = {
            "text": [
                (
                    lambda t=t: stub.Search(search_pb2.SearchRequest(text=t, top_k=10)),
                    lambda t=t: http.post("/v1/search", json.dumps({"text": t, "topK": 10}).encode()),
                )
                for t in TEXTS
            ],
            "image": [
                (
                    lambda d=d: stub.Search(search_pb2.SearchRequest(image=common_pb2.Image(content=d), top_k=10)),
                    lambda d=d: http.upload("/v1/search/upload", d, '{"topK": 10}'),
                )
                for d in images
            ],
        }
        # times[kind][way][j]: the j-th measured call of that kind (the same query for both ways)
        times: dict[str, dict[str, list[float]]] = {k: {"grpc": [], "http": []} for k in cases}
        try:
            for i in range(passes + 1):
                for kind, queries in cases.items():
                    for grpc_call, http_call in queries:
                        order = (("grpc", grpc_call), ("http", http_call))
                        for way, call in order if i % 2 == 0 else order[::-1]:
                            elapsed = _timed(call)
                            if i > 0:  # pass 0 warms up
                                times[kind][way].append(elapsed)
        finally:
            http.close()
            gateway[0].terminate()
            gateway[0].wait(timeout=30)
            channel.close()
            server.stop(0)
            platform.close()
    return {kind: _summary(ways) for kind, ways in times.items()}


def _summary(ways: dict[str, list[float]]) -> dict[str, float]:
    """p50 / p99 of each way, the p50 ratio, and the medians of the paired differences and ratios."""
    row = {f"{w}_{q}_ms": round(float(np.percentile(v, q)), 2) for w, v in ways.items() for q in (50, 99)}
    grpc = np.asarray(ways["grpc"])
    for way in (w for w in ways if w != "grpc"):
        other = np.asarray(ways[way])
        row[f"{way}_over_grpc_p50"] = round(row[f"{way}_50_ms"] / row["grpc_50_ms"], 3)
        row[f"{way}_overhead_ms"] = round(float(np.median(other - grpc)), 2)
        row[f"{way}_paired_ratio"] = round(float(np.median(other / grpc)), 3)
    row["queries"] = len(grpc)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for bench_gateway.json.")
    parser.add_argument("--passes", type=int, default=10, help="Measured passes over the queries.")
    args = parser.parse_args()
    result = run(args.passes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gateway.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        "\n| query | gRPC p50 ms | HTTP p50 ms | gRPC p99 ms | HTTP p99 ms | HTTP/gRPC p50 (target <= 1.1) "
        "| paired: HTTP - gRPC ms | paired HTTP/gRPC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in result.items():
        print(
            f"| {kind} ({r['queries']}) | {r['grpc_50_ms']} | {r['http_50_ms']} | {r['grpc_99_ms']} | {r['http_99_ms']} "
            f"| {r['http_over_grpc_p50']} | {r['http_overhead_ms']} | {r['http_paired_ratio']} |"
        )


if __name__ == "__main__":
    main()
