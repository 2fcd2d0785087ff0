"""Milvus standalone index benchmark: recall@10 against exact search, latency and QPS per search knob.

Starts its own Milvus 2.3 standalone server (``deploy/milvus/milvus.sh`` in an isolated folder under
``var/faults``, purged at the end), then for every ``--rows`` builds one collection of synthetic clustered 1280-d unit
vectors with each ``--index-type`` and sweeps the HNSW search ``ef`` (``tests.bench.run.bench_recall``).
``make bench`` measures the same inside ``tests.bench.pipeline``; this entry point measures the index
alone (e.g. ``--rows 1000000``: ~5 GB of RAM and a long index build) without the pipeline runs.

Writes ``<out>/bench_milvus.json`` and ``<out>/bench_milvus.md`` and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.bench.run import bench_recall, write_report
from tests.chaos.harness import IsolatedStack, run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10000, 70000], help="Synthetic vectors per run.")
    parser.add_argument(
        "--index-type",
        nargs="+",
        default=["HNSW"],
        choices=["HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX"],
        help="Index types to build (one collection each).",
    )
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[16, 64, 128, 256, 512], help="HNSW search ef values swept."
    )
    parser.add_argument("--queries", type=int, default=100, help="Queries per setting (near stored vectors).")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for bench_milvus.json/.md.")
    args = parser.parse_args()

    infra = IsolatedStack(run_dir("bench-milvus"), components=("milvus",))
    results = []
    try:
        infra.up_all()
        for rows in args.rows:
            for kind in args.index_type:
                print(f"{rows} vectors, {kind} ...", flush=True)
                results.append(
                    bench_recall(rows, args.queries, uri=infra.milvus_uri, index_type=kind, efs=tuple(args.ef))
                )
    finally:
        infra.close()
    lines = [
        "| rows | index | search ef | recall@10 | p50 / p99 | QPS (4 clients) | upsert | flush + index build |",
        "|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for m in results:
        for r in m["sweep"]:
            ef = r["search_ef"] if m["index_type"] == "HNSW" else "-"
            lines.append(
                f"| {m['rows']:,} | {m['index_type']} | {ef} | {r['recall_at_10']} | {r['search_p50_ms']} / "
                f"{r['search_p99_ms']} ms | {r['qps_4_clients']}/s | {m['insert_rows_per_s']:.0f} rows/s | "
                f"{m['flush_and_index_s']} s |"
            )
    table = "\n".join(lines) + "\n"
    write_report(args.out, "bench_milvus", results, table)


if __name__ == "__main__":
    main()
