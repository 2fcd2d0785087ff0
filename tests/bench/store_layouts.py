"""``make bench`` (store layouts): keyword search in Milvus (unified layout) against the in-process BM25 index
(per_space layout, the Milvus 2.3 fallback), at two catalogue sizes, in one run.

Milvus Lite 3.2 runs as its own server process on 127.0.0.1 (``python -m milvus_lite server``), so the
ranking process holds only what the search tier holds in production. Each layout gets a synthetic
catalogue (titles of three to five WordNet words, random unit vectors) grown to each size; a fresh
ranking process (SearchService with the text encoder in process) then runs text searches with the
blended profile (BM25 + joint space + text-to-visual) and reports:

- its RSS before the first search and after the searches (the in-process BM25 index is built by the
  first), and the growth between them;
- text search p50 / p99 over the same queries;
- whether an image upserted just before is found by keyword on the next query.

First, `make bench`'s own text search (``tests/bench/run.py``: the 19 photos and 500 Fashion-MNIST items, in
process on Milvus Lite, 8 queries) with both layouts side by side, interleaved query by query.

Milvus Lite is a Python engine: its per-search cost grows with the rows it scans, more so for rows that hold
several vectors, so the latencies at 10k-100k rows show Lite, not a Milvus server.

Writes ``reports/store_layouts.json`` / ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TENANT = "bench"
QUERIES = 40


def _words(limit: int = 20000) -> list[str]:
    """Single-word WordNet noun and adjective lemmas (Debian wordnet), a deterministic sample."""
    words = []
    for name in ("index.noun", "index.adj"):
        with open(f"/usr/share/wordnet/{name}", encoding="utf-8") as f:
            words += [
                line.split(" ", 1)[0] for line in f if not line.startswith(" ") and "_" not in line.split(" ", 1)[0]
            ]
    words = [w for w in words if w.isalpha() and len(w) > 2]
    return random.Random(0).sample(words, min(limit, len(words)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def load(uri: str, layout: str, start: int, stop: int, words: list[str]) -> float:
    """Upsert rows ``start``..``stop`` of the synthetic catalogue into ``layout``; returns seconds taken."""
    from visearch.shared.config import StoreSettings
    from visearch.shared.store import IndexRow, MilvusStore

    store = MilvusStore(StoreSettings(uri=uri, collection_prefix=f"bench_{layout}", layout=layout))
    rng = np.random.default_rng(start)
    began = time.perf_counter()
    for first in range(start, stop, 1000):
        n = min(1000, stop - first)
        image = rng.standard_normal((n, 1280), dtype=np.float32)
        joint = rng.standard_normal((n, 384), dtype=np.float32)
        image /= np.linalg.norm(image, axis=1, keepdims=True)
        joint /= np.linalg.norm(joint, axis=1, keepdims=True)
        pick = random.Random(first)
        store.upsert(
            IndexRow(
                image_id=f"item-{first + i}",
                tenant=TENANT,
                image_vector=image[i],
                joint_vector=joint[i],
                title=" ".join(pick.sample(words, pick.randint(3, 5))),
                category="synthetic",
            )
            for i in range(n)
        )
    store.flush()  # seal the segments so they are indexed (a Milvus server does it by itself; Lite does not)
    store.close()
    return time.perf_counter() - began


def interleaved_text_search(queries: int = 240, warmup: int = 16) -> dict:
    """``make bench``'s text search on both layouts, in one process, interleaved: p50 / p99 ms per layout."""
    from visearch.embedded import EmbeddedPlatform
    from visearch.offline.datasets import fashion_mnist, photo_catalogue
    from visearch.shared.config import ImageSettings, ServiceSettings, StoreSettings
    from visearch.v1 import search_pb2

    texts = ["dog", "a cup of coffee", "ankle boot", "red dress", "a cat", "sneaker", "flower", "rocket"]
    times: dict[str, list[float]] = {"unified": [], "per_space": []}
    with tempfile.TemporaryDirectory() as tmp:
        platforms = {}
        try:
            for layout in times:
                platforms[layout] = platform = EmbeddedPlatform(
                    StoreSettings(uri=str(Path(tmp) / f"{layout}.db"), layout=layout),
                    service_settings=ServiceSettings(tenant="bench"),
                    stages=["embedding", "indexer"],
                    image_settings=ImageSettings(allow_file_uris=True),
                )
                platform.ingest(fashion_mnist("train", limit=500, offset=20000), progress=False)
                platform.ingest(photo_catalogue(), progress=False)
            for i in range(queries):
                for layout, platform in platforms.items():
                    began = time.perf_counter()
                    platform.search.Search(search_pb2.SearchRequest(text=texts[i % len(texts)], top_k=10), None)
                    if i >= warmup:
                        times[layout].append((time.perf_counter() - began) * 1000)
        finally:
            for platform in platforms.values():
                platform.close()
    return {
        layout: {"p50_ms": round(float(np.percentile(t, 50)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2)}
        for layout, t in times.items()
    }


def child(uri: str, layout: str, words: list[str]) -> dict:
    """One ranking process: RSS before and after the text searches, their latency, and freshness."""
    from visearch.services.embedding.service import EmbeddingService
    from visearch.services.ranking.service import SearchService
    from visearch.shared.config import ImageSettings, StoreSettings
    from visearch.shared.encoders import Embedder
    from visearch.shared.grpcutil import InProcessStub
    from visearch.shared.store import IndexRow, MilvusStore
    from visearch.v1 import search_pb2

    store = MilvusStore(StoreSettings(uri=uri, collection_prefix=f"bench_{layout}", layout=layout))
    service = SearchService(InProcessStub(EmbeddingService(Embedder.from_cache(), ImageSettings())), store, TENANT)
    pick = random.Random(7)
    queries = [" ".join(pick.sample(words[:5000], 2)) for _ in range(QUERIES)]
    service.understanding.embed_text("warm up")
    before = _rss_mb()
    latencies = []
    for text in queries:
        began = time.perf_counter()
        service.Search(search_pb2.SearchRequest(text=text, top_k=10), None)
        latencies.append((time.perf_counter() - began) * 1000)
    after = _rss_mb()
    rng = np.random.default_rng(1)
    vector = rng.standard_normal(1280, dtype=np.float32)
    store.upsert(
        [
            IndexRow(
                image_id="fresh-item",
                tenant=TENANT,
                image_vector=vector / np.linalg.norm(vector),
                joint_vector=np.ones(384, dtype=np.float32) / np.sqrt(384),
                title="quokkaphone",
            )
        ]
    )
    hits = service.Search(search_pb2.SearchRequest(text="quokkaphone", top_k=3), None).hits
    store.delete(TENANT, ["fresh-item"])
    store.close()
    return {
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_growth_mb": round(after - before, 1),
        "text_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "text_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "fresh_found": bool(hits) and hits[0].image_id == "fresh-item",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10000, 100000], help="Catalogue sizes, ascending.")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for store_layouts.json / .md.")
    parser.add_argument("--child", nargs=2, metavar=("URI", "LAYOUT"), help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, metavar=("URI", "LAYOUT", "START", "STOP"), help=argparse.SUPPRESS)
    parser.add_argument("--interleaved", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    words = _words()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], words)))
        return
    if args.load:
        print(json.dumps(load(args.load[0], args.load[1], int(args.load[2]), int(args.load[3]), words)))
        return
    if args.interleaved:
        print(json.dumps(interleaved_text_search()))
        return

    from tests.bench.run import write_report

    results: dict[str, dict] = {"unified": {}, "per_space": {}}
    small_catalogue = json.loads(_run("--interleaved"))
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "milvus_lite",
                "server",
                "--data-dir",
                str(Path(tmp) / "lite"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        uri = f"http://127.0.0.1:{port}"
        try:
            _await_port(port, server)
            loaded = 0
            for rows in args.rows:
                for layout in results:
                    # Every Milvus client lives in a child process: an idle pymilvus channel's keepalive pings make
                    # the Lite server close it ("too_many_pings") while another process runs.
                    took = json.loads(_run("--load", uri, layout, str(loaded), str(rows)))
                    print(f"{layout}: {rows} rows ({took:.0f} s to add {rows - loaded})", file=sys.stderr, flush=True)
                    results[layout][rows] = json.loads(_run("--child", uri, layout))
                loaded = rows
        finally:
            server.terminate()
            server.wait(timeout=30)

    lines = [
        (
            f"make bench's text search (photos + 500 items, in process), {layout}, interleaved: p50 / p99",
            f"{r['p50_ms']} / {r['p99_ms']} ms",
        )
        for layout, r in small_catalogue.items()
    ]
    lines.append(
        (
            "make bench's text search p50 unified / per_space",
            f"{small_catalogue['unified']['p50_ms'] / small_catalogue['per_space']['p50_ms']:.2f}",
        )
    )
    results["make_bench_text_search"] = small_catalogue
    for layout, by_rows in ((k, results[k]) for k in ("unified", "per_space")):
        for rows, r in by_rows.items():
            lines.append(
                (f"{layout}: text search at {rows} rows, p50 / p99", f"{r['text_p50_ms']} / {r['text_p99_ms']} ms")
            )
            lines.append(
                (
                    f"{layout}: ranking-process RSS at {rows} rows, before -> after searches",
                    f"{r['rss_before_mb']} -> {r['rss_after_mb']} MB (+{r['rss_growth_mb']})",
                )
            )
            lines.append(
                (
                    f"{layout}: an image upserted just before found by keyword at {rows} rows",
                    "yes" if r["fresh_found"] else "no",
                )
            )
    small, large = args.rows[0], args.rows[-1]
    for layout, by_rows in ((k, results[k]) for k in ("unified", "per_space")):
        lines.append(
            (
                f"{layout}: RSS growth {large} vs {small} rows",
                f"{by_rows[large]['rss_growth_mb']} vs {by_rows[small]['rss_growth_mb']} MB",
            )
        )
    lines.append(
        (
            f"text search p50 unified / per_space at {large} rows (Milvus Lite server)",
            f"{results['unified'][large]['text_p50_ms'] / results['per_space'][large]['text_p50_ms']:.2f}",
        )
    )
    table = "| measurement | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in lines) + "\n"
    write_report(args.out, "store_layouts", results, table)


def _run(*args: str) -> str:
    """Run this module with ``args`` in a child process; its last stdout line."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.store_layouts", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if out.returncode:
        raise RuntimeError(f"store_layouts {args[0]} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def _await_port(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"milvus_lite server exited with {server.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"milvus_lite server did not listen on 127.0.0.1:{port} within {timeout} s")


if __name__ == "__main__":
    main()
