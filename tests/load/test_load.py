"""Bounded load test: steady ingest through the five-stage chain and concurrent search against the
ranking service, then a slow indexer to show that backpressure keeps memory bounded.

The stack is private (Kafka and Milvus standalone started by the project's scripts on free loopback
ports, see :mod:`tests.chaos.harness`); the five stages and the ranking service run as ``visearch
serve`` processes with their models in-process (onnxruntime, one inference thread each). Fashion-MNIST
products are the ingest; text queries and Fashion-MNIST test images are the searches.

``test_steady_ingest_and_concurrent_search`` publishes ``VISEARCH_LOAD_INGEST_RATE`` events/s for
``VISEARCH_LOAD_DURATION_S`` while ``VISEARCH_LOAD_SEARCH_CLIENTS`` clients send
``VISEARCH_LOAD_SEARCH_RATE`` queries/s in all (half text, half image). It records ingest throughput,
search p50/p99 per kind, consumer lag over time and RSS per service, and checks that every event is
indexed exactly once, no search failed, nothing was dead-lettered and every service is alive.

``test_slow_indexer_backpressure`` slows the indexer's Milvus connection (a delay proxy) and puts a burst
of camera-size photos (4000 px JPEGs of ~4 MB, carried inline in every document of the chain) on the
indexer's input topic at once: the backlog must wait in Kafka (lag grows) while the indexer's peak RSS
stays within a bound, because a worker holds at most one poll (``VISEARCH_KAFKA_MAX_POLL_RECORDS``) in
memory and its consumer fetches no more than ``max_partition_fetch_bytes`` per partition ahead. The bound
sits between the measured growth of the real worker and that of a worker whose in-flight records are not
limited (figures at RSS_GROWTH_BOUND_MB).

Figures go to ``reports/load.json`` and are printed. CI runs the defaults (60 s); ``make load`` runs
300 s at a higher rate (see the Makefile). Throughput and latency are reported, never asserted: the
machine is shared and noisy (see docs/reliability.md for the measured table).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.chaos.harness import (
    ALL_STAGES,
    DelayProxy,
    IsolatedStack,
    KafkaProbe,
    Sampler,
    Services,
    StoreProbe,
    env_float,
    percentile,
    publish,
    rss_mb,
    run_dir,
    wait_until,
    write_report,
)
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist, photo_catalogue
from visearch.shared.config import KafkaSettings
from visearch.shared.kafka import KafkaTransport, create_topics
from visearch.shared.pipeline import SCHEMA_DOCUMENT
from visearch.shared.transport import HEADER_SCHEMA, HEADER_TRACE_ID, stage_topics
from visearch.v1 import common_pb2, events_pb2, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.load, pytest.mark.kafka, pytest.mark.milvus, pytest.mark.models, pytest.mark.slow]

DURATION_S = env_float("VISEARCH_LOAD_DURATION_S", 60.0)  # steady phase length
INGEST_RATE = env_float("VISEARCH_LOAD_INGEST_RATE", 1.5)  # events/s published during the steady phase
SEARCH_CLIENTS = int(env_float("VISEARCH_LOAD_SEARCH_CLIENTS", 2))
SEARCH_RATE = env_float("VISEARCH_LOAD_SEARCH_RATE", 4.0)  # queries/s over all clients
BURST = int(env_float("VISEARCH_LOAD_BURST", 96))  # camera-size documents put at once before a slow indexer
SLOW_DELAY_S = env_float("VISEARCH_LOAD_SLOW_DELAY_S", 0.5)  # per chunk each way on the indexer's Milvus link
SEED = 32  # indexed before the steady phase, so searches hit
BATCH = 8  # VISEARCH_KAFKA_MAX_POLL_RECORDS
CAMERA_PHOTOS = ("photo-dog", "photo-coffee", "photo-motorcycle", "photo-kite")  # re-encoded at camera size
CAMERA_LONG_SIDE = 4000  # px: a 12-Mpixel camera's 4000 x 3000
# Slow indexer: growth of the indexer's peak RSS (VmHWM) over the burst of BURST camera-size documents (3.84 MB
# each on average, 96 of them: 368 MB). Measured on this 2-core machine: the real worker (one poll of BATCH
# records, plus what its consumer fetched ahead: at most max_partition_fetch_bytes per partition) grew 179, 281
# and 281 MiB with bursts of 48, 64 and 64, and 196, 245 and 233 MiB with 96: not with the burst. A worker that
# reads the backlog ahead (in-flight records unbounded: a poll loop until nothing is waiting) grew 450 MiB with
# 48 and 823 MiB with 96 (~2.2 copies of every waiting document). The bound sits between the two: below the
# geometric mean of the real worker's worst (281) and the unbounded one's (823), 481 MiB.
RSS_GROWTH_BOUND_MB = 450.0
SEARCH_TIMEOUT_S = 30.0
WAIT_S = 900  # any wait; a hang fails, it does not eat CI
TENANT = "load"
TEXT_QUERIES = ["a sneaker", "an ankle boot", "a dress", "a shirt", "a bag", "a pullover", "trousers", "a sandal"]
SERVICES = [*ALL_STAGES, "ranking"]

REPORT: dict = {
    "duration_s": DURATION_S,
    "ingest_rate_per_s": INGEST_RATE,
    "search_clients": SEARCH_CLIENTS,
    "search_rate_per_s": SEARCH_RATE,
    "batch": BATCH,
}
_offsets = iter(range(10_000, 60_000, 5_000))  # each phase its own Fashion-MNIST slice


def _events(n: int):
    offset = next(_offsets)
    return [item_to_event(item, TENANT) for item in fashion_mnist("train", limit=n, offset=offset)]


class Stack:
    """The private infrastructure, the six services and the probes of this module."""

    def __init__(self, infra: IsolatedStack, log_dir) -> None:
        self.infra = infra
        self.prefix = f"l{uuid.uuid4().hex[:8]}"
        self.proxy = DelayProxy(infra.ports["milvus"])  # the indexer's Milvus link; 0 s delay unless slowed
        self.services = Services(
            infra,
            self.prefix,
            ALL_STAGES,
            log_dir,
            triton=False,
            extra_env={"VISEARCH_KAFKA_MAX_POLL_RECORDS": str(BATCH), "VISEARCH_TENANT": TENANT},
        )
        self.services.add("indexer", {"VISEARCH_MILVUS_URI": f"http://127.0.0.1:{self.proxy.port}"})
        embedding = self.services.add("embedding")
        self.services.add(
            "ranking", {"VISEARCH_PIPELINE_STAGES": "indexer", "VISEARCH_EMBEDDING_ADDR": embedding.address}
        )
        self.kafka = self.services.kafka
        created = create_topics(self.kafka, ALL_STAGES)
        assert set(created.values()) == {"created"}, created
        self.probe = KafkaProbe(self.kafka, ALL_STAGES)
        self.store = StoreProbe(infra.milvus_uri, self.prefix)

    def check_alive(self) -> None:
        dead = [n for n, ok in self.services.alive().items() if not ok]
        assert not dead, f"services died: {dead}\n{self.services.logs()}"

    def rss(self) -> dict[str, float]:
        """Current RSS per service in MiB."""
        return {n: rss_mb(p.process.pid)[0] for n, p in self.services.procs.items()}

    def wait_indexed(self, expected: int) -> float:
        """Wait until ``expected`` rows of the tenant are stored and the lag is 0; return the time."""

        def done():
            self.check_alive()
            return self.store.count(TENANT) == expected and self.probe.total_lag() == 0

        wait_until(done, WAIT_S, 0.5, f"{expected} indexed and lag 0")
        return time.perf_counter()


@pytest.fixture(scope="module")
def stack(built_models, tmp_path_factory):
    """Kafka + Milvus standalone in a private run directory, the six services, a seeded catalogue."""
    infra = IsolatedStack(run_dir("load"), components=("kafka", "milvus"))
    stack = None
    try:
        REPORT["startup_s"] = infra.up_all()
        stack = Stack(infra, tmp_path_factory.mktemp("load-logs"))
        REPORT["services_start_s"] = round(stack.services.start_all(SERVICES), 1)
        REPORT["rss_at_rest_mb"] = {n: round(v) for n, v in stack.rss().items()}
        seed = _events(SEED)
        publish(stack.kafka, seed)
        stack.wait_indexed(SEED)
        stack.published = [e.image_id for e in seed]
        yield stack
    finally:
        codes = stack.services.stop_all() if stack else {}
        if stack:
            stack.probe.close()
            stack.store.close()
            stack.proxy.close()
        infra.close()
        REPORT["exit_codes"] = codes
        write_report("load", REPORT)
    assert set(codes.values()) <= {0}, f"exit codes {codes}"


def _query_images(n: int = 16) -> list[bytes]:
    return [item.content for item in fashion_mnist("test", limit=n)]


class Searcher(threading.Thread):
    """One search client: alternates text and image queries at ``rate`` per second until stopped;
    records (kind, seconds, status code name) per query."""

    def __init__(self, address: str, rate: float, images: list[bytes], index: int, stop: threading.Event) -> None:
        super().__init__(name=f"searcher-{index}", daemon=True)
        self.address, self.rate, self.images, self.index, self.stop_event = address, rate, images, index, stop
        self.results: list[tuple[str, float, str, int]] = []

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            start, count = time.perf_counter(), 0
            while not self.stop_event.is_set():
                i = self.index + count * SEARCH_CLIENTS
                if i % 2 == 0:
                    kind, request = (
                        "text",
                        search_pb2.SearchRequest(text=TEXT_QUERIES[i // 2 % len(TEXT_QUERIES)], top_k=10),
                    )
                else:
                    image = common_pb2.Image(content=self.images[i // 2 % len(self.images)])
                    kind, request = "image", search_pb2.SearchRequest(image=image, top_k=10)
                t0 = time.perf_counter()
                try:
                    hits = len(stub.Search(request, timeout=SEARCH_TIMEOUT_S).hits)
                    code = "OK"
                except grpc.RpcError as exc:
                    hits, code = 0, exc.code().name
                self.results.append((kind, time.perf_counter() - t0, code, hits))
                count += 1
                delay = start + count / self.rate - time.perf_counter()
                if delay > 0:
                    self.stop_event.wait(delay)


def _latency_figures(results, kind: str) -> dict:
    seconds = [s for k, s, code, _ in results if k == kind and code == "OK"]
    return {
        "queries": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p99_ms": round(percentile(seconds, 99) * 1000, 1),
        "max_ms": round(max(seconds, default=0) * 1000, 1),
    }


def test_steady_ingest_and_concurrent_search(stack):
    """Steady ingest and concurrent search; every event indexed exactly once, no failed query."""
    events = _events(max(1, int(DURATION_S * INGEST_RATE)))
    dlq_before = stack.probe.dlq_sizes()
    images, stop = _query_images(), threading.Event()
    searchers = [
        Searcher(stack.services.procs["ranking"].address, SEARCH_RATE / SEARCH_CLIENTS, images, i, stop)
        for i in range(SEARCH_CLIENTS)
    ]
    lag = Sampler(stack.probe.total_lag, 2.0).start()
    rss = Sampler(stack.rss, 2.0).start()
    start = time.perf_counter()
    for searcher in searchers:
        searcher.start()
    published = publish(stack.kafka, events, rate_per_s=INGEST_RATE)
    published_at = time.perf_counter()
    stop.set()
    for searcher in searchers:
        searcher.join(SEARCH_TIMEOUT_S + 10)
    search_s = time.perf_counter() - start
    done = stack.wait_indexed(SEED + published)
    lags, rss_samples = lag.stop(), rss.stop()

    stack.published += [e.image_id for e in events]
    stored = sorted(stack.store.ids(TENANT))
    assert stored == sorted(stack.published), (
        f"{len(stored)} rows, {len(set(stored))} distinct, {len(stack.published)} published"
    )
    dlq_after = stack.probe.dlq_sizes()
    assert sum(dlq_after.values()) == sum(dlq_before.values()), f"dead letters under load: {dlq_after}"
    results = [r for s in searchers for r in s.results]
    failed = [r for r in results if r[2] != "OK"]
    assert not failed, f"{len(failed)} of {len(results)} queries failed: {failed[:5]}"
    assert all(hits > 0 for *_, hits in results), "a query over a seeded catalogue returned no hits"

    lag_values = [v for _, v in lags if v is not None]
    figures = {
        "events": published,
        "ingest_throughput_per_s": round(published / (done - start), 2),
        "drain_after_publish_s": round(done - published_at, 1),
        "search_qps": round(len(results) / search_s, 2),
        "search_text": _latency_figures(results, "text"),
        "search_image": _latency_figures(results, "image"),
        "lag_max": max(lag_values, default=0),
        "lag_at_publish_end": next((v for t, v in reversed(lags) if t <= published_at - start and v is not None), 0),
        "rss_peak_mb": {n: round(max(s[n] for _, s in rss_samples)) for n in SERVICES},
        "rss_end_mb": {n: round(v) for n, v in stack.rss().items()},
    }
    REPORT["steady"] = figures
    write_report("load", REPORT)
    print(f"\nsteady load ({DURATION_S:.0f} s, {INGEST_RATE}/s ingest, {SEARCH_RATE}/s search): {figures}")


def camera_jpegs() -> dict[str, bytes]:
    """The CAMERA_PHOTOS re-encoded as a camera writes them: upscaled to CAMERA_LONG_SIDE px, with sensor-like
    grain (seeded Gaussian, sigma 4) so that a quality-95 JPEG weighs what a 12-Mpixel camera's does (~4 MB)."""
    by_id = {item.image_id: item for item in photo_catalogue()}
    rng, jpegs = np.random.default_rng(12), {}
    for image_id in CAMERA_PHOTOS:
        img = Image.open(by_id[image_id].uri).convert("RGB")
        scale = CAMERA_LONG_SIDE / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
        pixels = np.asarray(img, dtype=np.int16) + rng.normal(0, 4, (img.height, img.width, 1)).astype(np.int16)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
        jpegs[f"camera-{image_id}"] = buf.getvalue()
    return jpegs


def indexer_inputs(settings: KafkaSettings, topic: str, keys: set[str]) -> dict[str, events_pb2.ImageDocument]:
    """The last document of each key in ``keys`` on ``topic`` (read from the start, no group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.client_options(),
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(52428800, settings.max_message_bytes),
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends, found = consumer.end_offsets(tps), {}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=5000).values():
                for record in records:
                    if (key := (record.key or b"").decode()) in keys:
                        found[key] = events_pb2.ImageDocument.FromString(record.value)
        return found
    finally:
        consumer.close(autocommit=False)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of ``pid`` (a child of this process) to its current RSS; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def test_slow_indexer_backpressure(stack):
    """A slow indexer (its Milvus link delayed) under a burst of BURST camera-size documents put on its input
    topic at once: the backlog waits in Kafka, the indexer's peak RSS grows by at most RSS_GROWTH_BOUND_MB,
    nothing is lost.

    The documents are the chain's own: CAMERA_PHOTOS go through the five stages first (unslowed; their
    documents carry the ~4 MB JPEG inline, as every document of the chain does), then copies of those
    documents under new image ids make the burst, so that the backlog is the indexer's alone."""
    from kafka.record import util

    assert util.crc32c_c is not None, "kafka-python checks CRC-32C in pure Python (~3.5 MB/s): install crc32c"
    jpegs = camera_jpegs()
    camera_events = [
        events_pb2.ImageEvent(
            image_id=image_id,
            kind=events_pb2.ImageEvent.KIND_UPSERT,
            tenant=TENANT,
            image=common_pb2.Image(content=jpeg),
            product=events_pb2.Product(title=image_id, category="photos"),
        )
        for image_id, jpeg in jpegs.items()
    ]
    chain_start = time.perf_counter()
    publish(stack.kafka, camera_events)
    stack.published += [e.image_id for e in camera_events]
    stack.wait_indexed(len(stack.published))  # also warms the indexer up with documents of this size
    chain_s = time.perf_counter() - chain_start
    indexer_topic = stage_topics(ALL_STAGES, stack.kafka.topic_prefix)["indexer"].input
    documents = indexer_inputs(stack.kafka, indexer_topic, set(jpegs))
    assert set(documents) == set(jpegs), f"documents of {sorted(documents)} found on {indexer_topic}"
    sizes = [doc.ByteSize() for doc in documents.values()]
    assert min(sizes) > 3_000_000, f"a camera-size document weighs only {min(sizes)} bytes"
    originals, burst = list(documents.values()), [f"burst-{i:03d}" for i in range(BURST)]

    indexer_pid = stack.services.procs["indexer"].process.pid
    base = stack.probe.committed("indexer")
    stack.proxy.delay_s = SLOW_DELAY_S
    try:
        peak_known = reset_peak_rss(indexer_pid)
        rss_before = rss_mb(indexer_pid)[0]
        rss = Sampler(lambda: rss_mb(indexer_pid)[0], 0.5).start()
        lag = Sampler(lambda: (stack.probe.lags() or {}).get("indexer"), 1.0).start()
        start = time.perf_counter()
        transport = KafkaTransport(stack.kafka, "burst-publisher")
        try:
            for i, image_id in enumerate(burst):  # copies of the chain's documents, made one at a time
                doc = events_pb2.ImageDocument()
                doc.CopyFrom(originals[i % len(originals)])
                doc.event.image_id, doc.event.trace_id = image_id, uuid.uuid4().hex
                headers = {HEADER_SCHEMA: SCHEMA_DOCUMENT, HEADER_TRACE_ID: doc.event.trace_id}
                transport.produce(indexer_topic, image_id.encode(), doc.SerializeToString(), headers)
            transport.flush()
        finally:
            transport.close()
        published_s = time.perf_counter() - start

        def first_batch_done():  # the slow indexer committed a batch while the rest of the burst waited in Kafka
            stack.check_alive()
            return (stack.probe.committed("indexer") or 0) >= base + BATCH

        wait_until(first_batch_done, WAIT_S, 0.5, "the slow indexer through its first batch of the burst")
        slow_s = time.perf_counter() - start
    finally:
        stack.proxy.delay_s = 0.0
    done = stack.wait_indexed(len(stack.published) + BURST)
    rss_samples, lag_samples = rss.stop(), lag.stop()
    stack.published += burst
    stored = sorted(stack.store.ids(TENANT))
    assert stored == sorted(stack.published), f"{len(stored)} rows for {len(stack.published)} published"

    sampled_peak = max(v for _, v in rss_samples)
    peak = rss_mb(indexer_pid)[1] if peak_known else sampled_peak
    lag_peak = max((v for _, v in lag_samples if v is not None), default=0)
    figures = {
        "burst": BURST,
        "document_mb": round(sum(sizes) / len(sizes) / 2**20, 2),
        "burst_mb": round(sum(sizes[i % len(sizes)] for i in range(BURST)) / 2**20),
        "camera_photos_through_chain_s": round(chain_s, 1),
        "delay_per_chunk_s": SLOW_DELAY_S,
        "publish_s": round(published_s, 1),
        "slow_phase_s": round(slow_s, 1),
        "indexer_lag_peak": lag_peak,
        "indexer_rss_before_mb": round(rss_before),
        "indexer_rss_peak_mb": round(peak),
        "indexer_rss_peak_sampled_mb": round(sampled_peak),
        "indexer_rss_peak_sampled_slow_phase_mb": round(max((v for t, v in rss_samples if t <= slow_s), default=0)),
        "indexer_rss_growth_mb": round(peak - rss_before),
        "peak_from": "VmHWM" if peak_known else "samples every 0.5 s",
        "recovery_after_slow_s": round(done - start - slow_s, 1),
    }
    REPORT["slow_indexer"] = figures
    write_report("load", REPORT)
    print(f"\nslow indexer: {figures}")
    assert lag_peak >= BURST // 2, f"the indexer was not the bottleneck (lag peak {lag_peak}): raise the delay"
    assert peak - rss_before <= RSS_GROWTH_BOUND_MB, (
        f"indexer peak RSS grew {peak - rss_before:.0f} MiB under a backlog of {lag_peak} camera-size "
        f"documents (bound {RSS_GROWTH_BOUND_MB} MiB)"
    )
