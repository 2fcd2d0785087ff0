"""``make bench``, search part: search latency over gRPC on the local stack, against its bare parts.

On a private Kafka broker, Milvus standalone and Triton (started by the project's scripts on free
127.0.0.1 ports, see :mod:`tests.chaos.harness`; every model served by Triton, as under ``make up``),
the five stage services and the ranking service run as ``visearch serve`` processes with one inference
thread each; the ranking service reaches the embedding, detection, OCR and classification services over
gRPC (``VISEARCH_*_ADDR``), the classification service the detection and OCR services.

1. **catalogue**: the real photos of ``photo_catalogue()`` and 300 Fashion-MNIST products, published as
   ImageEvents (inline bytes) to Kafka, one tenant, until every row is in Milvus;
2. **image queries**: every photo re-encoded as a 1600-px (longest side, bicubic) JPEG, quality 90, sent to
   ``SearchService.Search`` with (a) the default profile (blended) and ``understand_query`` unset (the
   service default, on) and (b) ``RankingProfile(name="visual_only")`` with ``understand_query=False``,
   interleaved query by query (the order alternates every pass) so that noise hits both alike;
3. **text queries**: short texts with the default profile, against their bare parts over the same
   stack: one ``EmbedText`` call to the embedding service + one Milvus search of the joint collection;
4. one warm-up pass, then ``--passes`` measured passes; p50 / p99 (client side, numpy percentiles) and
   the ratios of the query engine's acceptance: blended p50 / visual_only p50 (target <= 1.5), blended
   p99 / visual_only p99 (<= 2), text search p50 / (bare EmbedText p50 + bare ANN p50) (<= 1.3); and
   from each SearchResponse its query signals (used, or skipped and why).

Informational: nothing is asserted (latency lives in benchmarks, not tests). Writes
``reports/bench_search_stack.json`` and ``reports/bench_search_stack.md`` and prints the table.
Run: ``python -m tests.bench.search_stack --out reports`` (``make bench`` runs it after tests.bench.pipeline).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("VISEARCH_MODEL_INTRA_OP_THREADS", "1")  # as the services run (harness.Services)

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.bench.run import write_report  # noqa: E402
from tests.chaos.harness import (  # noqa: E402
    ALL_STAGES,
    IsolatedStack,
    KafkaProbe,
    Services,
    StoreProbe,
    publish,
    run_dir,
    wait_until,
    write_triton_repository,
)
from visearch.embedded import item_to_event  # noqa: E402
from visearch.offline.datasets import CatalogueItem, fashion_mnist, photo_catalogue  # noqa: E402
from visearch.shared.kafka import create_topics  # noqa: E402
from visearch.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, search_pb2, search_pb2_grpc  # noqa: E402

TENANT = "benchsearch"
FASHION_ITEMS = 300
QUERY_SIDE = 1600  # longest side of the JPEG photo queries, pixels
QUERY_QUALITY = 90
TOP_K = 10
RPC_TIMEOUT_S = 60.0
WAIT_S = 1800  # ingest of the catalogue through the five stages on Triton
TEXT_QUERIES = [
    "dog",
    "a cup of coffee",
    "ankle boot",
    "red dress",
    "a cat",
    "horses on a field",
    "a sneaker",
    "a motorcycle",
]
TARGETS = {
    "blended_p50_over_visual_only_p50": 1.5,
    "blended_p99_over_visual_only_p99": 2.0,
    "text_p50_over_bare_parts_p50": 1.3,
}
HAS_SIGNALS = "signals" in search_pb2.SearchResponse.DESCRIPTOR.fields_by_name


def catalogue_events() -> list:
    """The photos (inline bytes: the services refuse file URIs) and the Fashion-MNIST products, as ImageEvents."""
    items = [dataclasses.replace(p, content=p.read_bytes(), uri=None) for p in photo_catalogue()]
    items += list(fashion_mnist("train", limit=FASHION_ITEMS))
    return [item_to_event(item, TENANT) for item in items]


def query_jpeg(item: CatalogueItem, side: int = QUERY_SIDE, quality: int = QUERY_QUALITY) -> bytes:
    """``item``'s photo resized (bicubic) to ``side`` pixels on its longest side, as a JPEG of ``quality``."""
    img = Image.open(io.BytesIO(item.read_bytes())).convert("RGB")
    scale = side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def start_services(infra: IsolatedStack, prefix: str, log_dir: Path) -> Services:
    """The five stages and the ranking service on ``infra`` (models on its Triton), all SERVING.

    Started in waves: the classification and ranking services are given the final gRPC addresses of
    the services they call (a start whose port was taken moves to another port)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    services = Services(infra, prefix, ALL_STAGES, log_dir, triton=True, extra_env={"VISEARCH_TENANT": TENANT})
    created = create_topics(services.kafka, ALL_STAGES)
    assert set(created.values()) == {"created"}, created
    first = ["detection", "embedding", "ocr", "indexer"]
    services.start_all(first)
    addr = {name: services.procs[name].address for name in first}

    services.add("classification", {"VISEARCH_DETECTION_ADDR": addr["detection"], "VISEARCH_OCR_ADDR": addr["ocr"]})
    services.start_all(["classification"])
    services.add(
        "ranking",
        {
            "VISEARCH_EMBEDDING_ADDR": addr["embedding"],
            "VISEARCH_DETECTION_ADDR": addr["detection"],
            "VISEARCH_OCR_ADDR": addr["ocr"],
            "VISEARCH_CLASSIFICATION_ADDR": services.procs["classification"].address,
        },
    )
    services.start_all(["ranking"])
    return services


def ingest(services: Services, infra: IsolatedStack, events: list) -> float:
    """Publish ``events`` and wait until every row is stored and every stage's lag is 0. Returns seconds.

    Raises:
        AssertionError: a service died or an event went to a dead-letter topic (it would never be stored).
    """
    store, probe = StoreProbe(infra.milvus_uri, services.prefix), KafkaProbe(services.kafka, ALL_STAGES)
    try:
        start = time.perf_counter()
        publish(services.kafka, events)

        def done() -> bool:
            dead = [n for n, ok in services.alive().items() if not ok]
            assert not dead, f"services died: {dead}\n{services.logs(40)}"
            dlq = probe.dlq_sizes() or {}
            assert not any(dlq.values()), f"dead letters during the ingest: {dlq}\n{services.logs(40)}"
            return store.count(TENANT) == len(events) and probe.total_lag() == 0

        wait_until(done, WAIT_S, 1.0, f"{len(events)} rows indexed")
        return time.perf_counter() - start
    finally:
        probe.close()
        store.close()


class Measure:
    """The gRPC stubs and the bare Milvus store; one list of seconds per measured kind."""

    def __init__(self, services: Services, infra: IsolatedStack) -> None:
        from visearch.shared.config import StoreSettings
        from visearch.shared.store import MilvusStore

        self.search_channel = grpc.insecure_channel(services.procs["ranking"].address)
        self.embed_channel = grpc.insecure_channel(services.procs["embedding"].address)
        self.search = search_pb2_grpc.SearchServiceStub(self.search_channel)
        self.embed = embedding_pb2_grpc.EmbeddingServiceStub(self.embed_channel)
        self.store = MilvusStore(StoreSettings(uri=infra.milvus_uri, collection_prefix=services.prefix))
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.server_ms: dict[str, list[float]] = defaultdict(list)
        self.hits: dict[str, list[int]] = defaultdict(list)
        self.signals: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.signal_ms: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.recording = False

    def _keep(self, kind: str, seconds: float) -> None:
        if self.recording:
            self.seconds[kind].append(seconds)

    def _search(self, kind: str, request: search_pb2.SearchRequest) -> None:
        start = time.perf_counter()
        response = self.search.Search(request, timeout=RPC_TIMEOUT_S)
        self._keep(kind, time.perf_counter() - start)
        if not self.recording:
            return
        self.server_ms[kind].append(response.took_ms)
        self.hits[kind].append(len(response.hits))
        if HAS_SIGNALS:
            for s in response.signals:
                self.signals[kind][s.name]["used" if s.used else f"skipped:{s.skipped or '?'}"] += 1
                self.signal_ms[kind][s.name].append(s.took_ms)

    def image(self, jpeg: bytes, profile: str) -> None:
        """One image query: ``blended`` (default profile, understand_query unset) or ``visual_only``
        (understand_query off)."""
        image = common_pb2.Image(content=jpeg)
        if profile == "blended":
            request = search_pb2.SearchRequest(image=image, top_k=TOP_K, tenant=TENANT)
        else:
            request = search_pb2.SearchRequest(
                image=image,
                top_k=TOP_K,
                tenant=TENANT,
                understand_query=False,
                ranking=search_pb2.RankingProfile(name="visual_only"),
            )
        self._search(f"image_{profile}", request)

    def text(self, text: str) -> None:
        """One text query through the ranking service (default profile)."""
        self._search("text", search_pb2.SearchRequest(text=text, top_k=TOP_K, tenant=TENANT))

    def bare_text(self, text: str) -> None:
        """The text query's bare parts: one EmbedText call, one Milvus search of the joint collection."""
        start = time.perf_counter()
        response = self.embed.EmbedText(embedding_pb2.EmbedTextRequest(texts=[text]), timeout=RPC_TIMEOUT_S)
        self._keep("bare_embed_text", time.perf_counter() - start)
        vector = np.asarray(response.vectors[0].values, dtype=np.float32)
        start = time.perf_counter()
        hits = self.store.search("joint", vector, tenant=TENANT, top_k=TOP_K)
        self._keep("bare_ann", time.perf_counter() - start)
        if self.recording:
            self.hits["bare_ann"].append(len(hits))

    def one_pass(self, queries: list[bytes], index: int) -> None:
        """Every query once, image profiles and text/bare interleaved query by query; the order within a
        pair alternates with ``index`` so neither always runs first."""
        flip = index % 2 == 1
        for jpeg in queries:
            for profile in ("visual_only", "blended") if flip else ("blended", "visual_only"):
                self.image(jpeg, profile)
        for text in TEXT_QUERIES:
            for run in (self.bare_text, self.text) if flip else (self.text, self.bare_text):
                run(text)

    def close(self) -> None:
        self.search_channel.close()
        self.embed_channel.close()
        self.store.close()


def figures(values: list[float]) -> dict:
    """n, p50, p99, mean and max of ``values`` (seconds) in milliseconds (numpy percentiles)."""
    ms = np.asarray(values, dtype=np.float64) * 1000
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def summarise(measure: Measure) -> dict:
    """Per-kind latency figures, the three ratios against their targets, and the query signals."""
    lat = {kind: figures(values) for kind, values in measure.seconds.items()}
    for kind, values in measure.server_ms.items():
        lat[kind]["server_took_p50_ms"] = round(float(np.percentile(values, 50)), 2)
    blended, visual, text = lat["image_blended"], lat["image_visual_only"], lat["text"]
    bare_sum = lat["bare_embed_text"]["p50_ms"] + lat["bare_ann"]["p50_ms"]
    ratios = {
        "blended_p50_over_visual_only_p50": blended["p50_ms"] / visual["p50_ms"],
        "blended_p99_over_visual_only_p99": blended["p99_ms"] / visual["p99_ms"],
        "text_p50_over_bare_parts_p50": text["p50_ms"] / bare_sum,
    }
    signals = {}
    if HAS_SIGNALS:
        for kind, names in measure.signals.items():
            signals[kind] = {
                name: {**dict(counts), "took_p50_ms": round(float(np.percentile(measure.signal_ms[kind][name], 50)), 1)}
                for name, counts in names.items()
            }
    return {
        "latency": lat,
        "bare_text_parts_p50_ms": round(bare_sum, 2),
        "ratios": {
            name: {"value": round(value, 3), "target_max": TARGETS[name], "pass": value <= TARGETS[name]}
            for name, value in ratios.items()
        },
        "hits_per_query_min": {kind: min(v) for kind, v in measure.hits.items()},
        "signals": signals if HAS_SIGNALS else "SearchResponse has no signals field in this build",
    }


def table(results: dict) -> str:
    lat, ratios = results["latency"], results["ratios"]
    labels = {
        "image_blended": "image (1600-px JPEG), blended, understand_query default (on)",
        "image_visual_only": "image (1600-px JPEG), visual_only, understand_query=False",
        "text": "text, default profile",
        "bare_embed_text": "bare EmbedText (embedding service, gRPC)",
        "bare_ann": "bare ANN (Milvus standalone, joint, top 10)",
    }
    out = [
        f"Search over gRPC on the local stack (Kafka, Milvus standalone, Triton): {results['catalogue_rows']} rows, "
        f"{results['passes']} passes, 1 inference thread per service\n",
        "| query | n | p50 ms | p99 ms | server took p50 ms |",
        "|---|---|---|---|---|",
    ]
    for kind, label in labels.items():
        f = lat[kind]
        out.append(f"| {label} | {f['n']} | {f['p50_ms']} | {f['p99_ms']} | {f.get('server_took_p50_ms', '')} |")
    out += ["", "| ratio | value | target | |", "|---|---|---|---|"]
    names = {
        "blended_p50_over_visual_only_p50": "blended p50 / visual_only p50",
        "blended_p99_over_visual_only_p99": "blended p99 / visual_only p99",
        "text_p50_over_bare_parts_p50": "text p50 / (bare EmbedText p50 + bare ANN p50)",
    }
    for key, label in names.items():
        r = ratios[key]
        out.append(f"| {label} | {r['value']} | <= {r['target_max']} | {'PASS' if r['pass'] else 'FAIL'} |")
    if isinstance(results["signals"], dict) and results["signals"].get("image_blended"):
        out += ["", "| signal (blended image queries) | used | skipped | took p50 ms |", "|---|---|---|---|"]
        for name, c in results["signals"]["image_blended"].items():
            skipped = ", ".join(
                f"{k.removeprefix('skipped:')} {v}" for k, v in sorted(c.items()) if k.startswith("skipped:")
            )
            out.append(f"| {name} | {c.get('used', 0)} | {skipped or '-'} | {c['took_p50_ms']} |")
    return "\n".join(out) + "\n"


def _terminate(signum, frame) -> None:  # SIGTERM: unwind through the finally blocks like Ctrl-C
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--passes", type=int, default=3, help="Measured passes over every query (after one warm-up pass)."
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for bench_search_stack.json/.md.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)

    t0 = time.perf_counter()
    events = catalogue_events()
    queries = [query_jpeg(item) for item in photo_catalogue()]
    results: dict = {
        "catalogue_rows": len(events),
        "photos": len(queries),
        "fashion_mnist": FASHION_ITEMS,
        "query_side_px": QUERY_SIDE,
        "query_jpeg_quality": QUERY_QUALITY,
        "query_jpeg_kb_mean": round(sum(map(len, queries)) / len(queries) / 1024, 1),
        "text_queries": TEXT_QUERIES,
        "passes": args.passes,
        "top_k": TOP_K,
        "inference_threads_per_process": 1,
        "models_on": "triton",
    }
    root = run_dir("bsearch")
    infra = services = measure = None
    try:
        infra = IsolatedStack(
            root,
            components=("kafka", "milvus", "triton"),
            triton_repository=write_triton_repository(root / "triton-repo"),
        )
        print("starting Kafka, Milvus standalone and Triton ...", flush=True)
        results["startup_s"] = infra.up_all()
        print("starting the services ...", flush=True)
        start = time.perf_counter()
        services = start_services(infra, f"q{uuid.uuid4().hex[:8]}", root / "logs")
        results["services_start_s"] = round(time.perf_counter() - start, 1)
        print(f"ingesting {len(events)} events through Kafka ...", flush=True)
        results["ingest_s"] = round(ingest(services, infra, events), 1)
        measure = Measure(services, infra)
        print("warm-up pass ...", flush=True)
        measure.one_pass(queries, 0)
        measure.recording = True
        for i in range(args.passes):
            print(f"pass {i + 1}/{args.passes} ...", flush=True)
            measure.one_pass(queries, i + 1)
        results.update(summarise(measure))
    except BaseException:
        if services is not None:
            print(f"--- service logs (last lines)\n{services.logs(40)}", file=sys.stderr, flush=True)
        raise
    finally:
        for step in (measure and measure.close, services and services.stop_all, infra and infra.close):
            if step:
                try:
                    result = step()
                    if isinstance(result, dict):
                        results["exit_codes"] = result
                except Exception as exc:  # noqa: BLE001 (stop everything else anyway)
                    print(f"cleanup step failed: {exc!r}", file=sys.stderr, flush=True)
        if infra is None and os.environ.get("VISEARCH_FAULTS_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    write_report(args.out, "bench_search_stack", results, table(results))


if __name__ == "__main__":
    main()
