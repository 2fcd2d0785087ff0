"""``make bench``, Kafka part: the five-stage chain over a real broker against the bare model compute of
each stage, measured in one run on this machine.

On a private Kafka broker and Milvus standalone (started by the project's scripts, see
:mod:`tests.chaos.harness`), with every service a ``visearch serve`` process running its models
in-process with one inference thread:

1. **bare**: each stage's own ``process()`` (decode, preprocess, inference, post-processing; the
   indexer: row building + Milvus upsert) called in this process on batches of ``--batch`` documents,
   also with one inference thread: images/s per stage, nothing else running;
2. **end to end**: ``--events`` Fashion-MNIST products published at once to the five running stages:
   images/s from the first publish to the last row stored;
3. **one stage at a time**: each stage's recorded input (the documents the end-to-end run wrote to its
   input topic, copied to a fresh topic) consumed by that stage's process alone: images/s over Kafka,
   and the ratio to the bare figure (what Kafka, protobuf and the worker loop cost);
4. **replicas**: the slowest stage again with two processes in one consumer group (4 partitions: 2 each);
5. **memory**: RSS of every service at rest (SERVING, before the first event) and after the run;
6. **Milvus standalone**: recall@10 of the store's index (HNSW) against exact search, latency and QPS per search ef, on
   ``--milvus-rows`` synthetic 1280-d vectors (default 10k and 70k).

Writes ``reports/bench_pipeline.json`` and ``reports/bench_pipeline.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

os.environ.setdefault("VISEARCH_MODEL_INTRA_OP_THREADS", "1")  # as the services run (harness.Services)

from tests.bench.run import bench_recall, write_report  # noqa: E402
from tests.chaos.harness import (  # noqa: E402  (after the thread setting: the models read it)
    ALL_STAGES,
    IsolatedStack,
    KafkaProbe,
    Reference,
    Services,
    StoreProbe,
    publish,
    rss_mb,
    run_dir,
    wait_until,
)
from tests.integration.stack import ServiceProcess  # noqa: E402
from visearch.embedded import item_to_event  # noqa: E402
from visearch.offline.datasets import fashion_mnist  # noqa: E402
from visearch.shared.kafka import KafkaTransport, create_topics  # noqa: E402
from visearch.shared.transport import stage_topics  # noqa: E402
from visearch.v1 import events_pb2  # noqa: E402

TENANT = "bench"
WAIT_S = 900
PARTITIONS = 4


def bare_rates(events, batch: int, milvus_uri: str) -> dict[str, float]:
    """Images/s of each stage's ``process()`` in this process (batches of ``batch``, after one warm-up batch)."""
    from visearch.services.indexer.stage import IndexerStage
    from visearch.shared.config import StoreSettings
    from visearch.shared.store import MilvusStore

    stages = Reference()._load()
    documents = []
    for event in events:
        doc = events_pb2.ImageDocument()
        doc.event.CopyFrom(event)
        documents.append(doc)
    rates = {}
    for name in ALL_STAGES[:-1]:
        stage = stages[name]
        stage.process(documents[:batch])  # warm-up: arenas, caches
        out, start = [], time.perf_counter()
        for i in range(0, len(documents), batch):
            out.extend(stage.process(documents[i : i + batch]))
        rates[name] = len(documents) / (time.perf_counter() - start)
        documents = out
    store = MilvusStore(StoreSettings(uri=milvus_uri, collection_prefix=f"bare{uuid.uuid4().hex[:6]}"))
    rows = [IndexerStage._row(d, TENANT) for d in documents]
    store.upsert(rows[:batch])
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        store.upsert(rows[i : i + batch])
    rates["indexer"] = len(rows) / (time.perf_counter() - start)
    store.close()
    return rates


def copy_topic(bootstrap: str, source: str, target_settings, target: str, n: int) -> None:
    """Copy the first ``n`` messages of ``source`` (every partition, key, value, headers) to ``target``."""
    from kafka import KafkaConsumer, TopicPartition

    source_settings = target_settings.model_copy(update={"bootstrap": bootstrap})  # same security, source cluster
    consumer = KafkaConsumer(**source_settings.client_options(), enable_auto_commit=False, consumer_timeout_ms=5000)
    parts = [TopicPartition(source, p) for p in sorted(consumer.partitions_for_topic(source) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    transport = KafkaTransport(target_settings, "bench-copy")
    copied = 0
    try:
        for record in consumer:
            transport.produce(target, record.key, record.value, {k: v.decode() for k, v in record.headers})
            copied += 1
            if copied >= n:
                break
        transport.flush()
    finally:
        transport.close()
        consumer.close()
    assert copied == n, f"{source} held {copied} messages, expected {n}"


class Bench:
    """One private stack; each measurement uses its own topic and collection prefix."""

    def __init__(self, infra: IsolatedStack, log_dir: Path, batch: int) -> None:
        self.infra, self.log_dir, self.batch = infra, log_dir, batch

    def services(self, prefix: str) -> Services:
        services = Services(
            self.infra,
            prefix,
            ALL_STAGES,
            self.log_dir / prefix,
            triton=False,
            extra_env={"VISEARCH_KAFKA_MAX_POLL_RECORDS": str(self.batch), "VISEARCH_TENANT": TENANT},
        )
        (self.log_dir / prefix).mkdir(parents=True, exist_ok=True)
        # Partitions: a multiple of the replica counts measured, so two consumers get equal shares.
        topics = services.kafka.model_copy(update={"partitions": PARTITIONS})
        assert set(create_topics(topics, ALL_STAGES).values()) == {"created"}
        return services

    def end_to_end(self, events) -> tuple[dict, str]:
        """All five stages, ``events`` published at once; returns figures and the run's prefix."""
        prefix = f"e{uuid.uuid4().hex[:8]}"
        services = self.services(prefix)
        services.start_all()
        procs = services.procs
        figures = {"rss_at_rest_mb": {n: round(rss_mb(p.process.pid)[0]) for n, p in procs.items()}}
        store, probe = StoreProbe(self.infra.milvus_uri, prefix), KafkaProbe(services.kafka, ALL_STAGES)
        try:
            start = time.perf_counter()
            publish(services.kafka, events)
            wait_until(
                lambda: store.count(TENANT) == len(events) and probe.total_lag() == 0,
                WAIT_S,
                0.2,
                "end-to-end run indexed",
            )
            elapsed = time.perf_counter() - start
            figures.update(
                {
                    "events": len(events),
                    "seconds": round(elapsed, 1),
                    "img_per_s": round(len(events) / elapsed, 2),
                    "rss_after_mb": {n: round(rss_mb(p.process.pid)[0]) for n, p in procs.items()},
                    "rss_peak_mb": {n: round(rss_mb(p.process.pid)[1]) for n, p in procs.items()},
                }
            )
        finally:
            codes = services.stop_all()
            probe.close()
            store.close()
        assert set(codes.values()) == {0}, codes
        return figures, prefix

    def one_stage(self, stage: str, recorded_prefix: str, n: int, replicas: int = 1) -> dict:
        """``stage`` alone (``replicas`` processes, one group) over a copy of its recorded input."""
        prefix = f"s{uuid.uuid4().hex[:8]}"
        services = self.services(prefix)
        procs = [services.add(stage)] + [
            ServiceProcess(stage, services.env, self.log_dir / prefix) for _ in range(replicas - 1)
        ]
        for proc in procs:
            proc.start(wait=False)
        for proc in procs:
            proc.wait_serving(240)
        probe = KafkaProbe(services.kafka, ALL_STAGES)
        source = stage_topics(ALL_STAGES, recorded_prefix)[stage].input
        target = stage_topics(ALL_STAGES, prefix)[stage].input
        try:
            start = time.perf_counter()
            copy_topic(self.infra.kafka_bootstrap, source, services.kafka, target, n)
            wait_until(lambda: (probe.committed(stage) or 0) >= n, WAIT_S, 0.1, f"{stage} consumed its input")
            elapsed = time.perf_counter() - start
        finally:
            codes = [proc.stop() for proc in procs]
            probe.close()
        assert set(codes) == {0}, codes
        return {"replicas": replicas, "img_per_s": round(n / elapsed, 2), "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=96, help="Fashion-MNIST products per run.")
    parser.add_argument("--batch", type=int, default=8, help="Documents per poll / per bare call.")
    parser.add_argument(
        "--milvus-rows",
        type=int,
        nargs="*",
        default=[10000, 70000],
        help="Synthetic 1280-d vectors per Milvus standalone recall run (1000000: ~5 GB of RAM and a long index build).",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for bench_pipeline.json/.md.")
    args = parser.parse_args()

    events = [item_to_event(item, TENANT) for item in fashion_mnist("train", limit=args.events, offset=30000)]
    root = run_dir("bench")
    infra = IsolatedStack(root, components=("kafka", "milvus"))
    results: dict = {"events": args.events, "batch": args.batch, "inference_threads_per_process": 1}
    try:
        results["startup_s"] = infra.up_all()
        bench = Bench(infra, root / "logs", args.batch)
        print("bare stage compute ...", flush=True)
        bare = bare_rates(events, args.batch, infra.milvus_uri)
        print("end to end over Kafka ...", flush=True)
        results["end_to_end"], recorded = bench.end_to_end(events)
        stages = {}
        for stage in ALL_STAGES:
            print(f"{stage} alone over Kafka ...", flush=True)
            kafka = bench.one_stage(stage, recorded, args.events)
            stages[stage] = {
                "bare_img_per_s": round(bare[stage], 2),
                "kafka_img_per_s": kafka["img_per_s"],
                "ratio_kafka_to_bare": round(kafka["img_per_s"] / bare[stage], 3),
            }
        results["stages"] = stages
        slowest = min(ALL_STAGES, key=lambda s: stages[s]["kafka_img_per_s"])
        print(f"{slowest} with two replicas ...", flush=True)
        two = bench.one_stage(slowest, recorded, args.events, replicas=2)
        results["replicas"] = {
            "stage": slowest,
            "one_img_per_s": stages[slowest]["kafka_img_per_s"],
            "two_img_per_s": two["img_per_s"],
            "speedup": round(two["img_per_s"] / stages[slowest]["kafka_img_per_s"], 2),
        }
        for rows in args.milvus_rows:
            print(f"Milvus standalone, {rows} vectors ...", flush=True)
            results.setdefault("milvus_standalone", []).append(bench_recall(rows, 100, uri=infra.milvus_uri))
        bare_chain = 1 / sum(1 / bare[s] for s in ALL_STAGES)  # every stage in turn on one core's worth
        results["end_to_end"]["bare_serial_img_per_s"] = round(bare_chain, 2)
        results["end_to_end"]["ratio_to_bare_serial"] = round(results["end_to_end"]["img_per_s"] / bare_chain, 3)
    finally:
        infra.close()

    e2e = results["end_to_end"]
    rows = [
        (
            f"{s}: bare / over Kafka alone / ratio",
            f"{f['bare_img_per_s']} / {f['kafka_img_per_s']} img/s / {f['ratio_kafka_to_bare']}",
        )
        for s, f in results["stages"].items()
    ]
    r = results["replicas"]
    rows += [
        ("end to end, five processes over Kafka", f"{e2e['img_per_s']} img/s ({e2e['events']} in {e2e['seconds']} s)"),
        ("bare chain, every stage in turn in one process", f"{e2e['bare_serial_img_per_s']} img/s"),
        ("end to end / bare chain", f"{e2e['ratio_to_bare_serial']}"),
        (
            f"slowest stage ({r['stage']}): 1 -> 2 replicas",
            f"{r['one_img_per_s']} -> {r['two_img_per_s']} img/s (x{r['speedup']})",
        ),
    ]
    for m in results.get("milvus_standalone", []):
        rows.append(
            (
                f"Milvus standalone, {m['rows']} x {m['dim']}-d, {m['index_type']} cosine: upsert / flush + index build",
                f"{m['insert_rows_per_s']:.0f} rows/s / {m['flush_and_index_s']} s",
            )
        )
        rows += [
            (
                f"Milvus standalone, {m['rows']} rows, ef {r['search_ef']}: recall@10 / p50 / p99 / QPS (4 clients)",
                f"{r['recall_at_10']} / {r['search_p50_ms']} ms / {r['search_p99_ms']} ms / {r['qps_4_clients']}/s",
            )
            for r in m["sweep"]
        ]
    rows += [
        (
            f"RSS {n}: at rest / after the run / peak",
            f"{e2e['rss_at_rest_mb'][n]} / {e2e['rss_after_mb'][n]} / {e2e['rss_peak_mb'][n]} MiB",
        )
        for n in ALL_STAGES
    ]
    table = "| measurement | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    write_report(args.out, "bench_pipeline", results, table)


if __name__ == "__main__":
    main()
