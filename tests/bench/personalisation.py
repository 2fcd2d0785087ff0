"""``make bench`` (personalisation): the cost of a personalised search against the same search without it.

An embedded platform (real models, Milvus Lite) indexes the personalisation suite's catalogue (Fashion-MNIST with
classification), a simulated shopper clicks 20 times (``visearch.offline.evaluation.personalisation``), then the
same queries run interleaved, query by query, with the shopper's user_id (personalised: the preference factor and
the user's factor weights) and with ``personalise=false`` (the global ranking, the same request otherwise): text
queries, and "more like this" (image_id) queries. Reports p50 / p99 of each and the ratio of the p50s (the issue's
bar: within 1.1x). A global text search reads only the page from its vector routes when nothing it weighs can lift
a candidate from beyond it (``planner.plan_text_fetch``); the preference factor can, so a personalised text search
reads the rerank window, and Milvus Lite's cost grows with the rows it returns.

Writes ``reports/personalisation_bench.json`` / ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROUNDS = 10
CATALOGUE = 400


def measure(rounds: int = ROUNDS, size: int = CATALOGUE) -> dict:
    """Per-query latencies (ms) of personalised and global text search, interleaved; p50, p99 and their ratio."""
    from visearch.embedded import EmbeddedPlatform
    from visearch.offline.evaluation.personalisation import STAGES, TENANT, catalogue, queries, run_shopper, shoppers
    from visearch.offline.evaluation.runner import evaluation_settings
    from visearch.shared.config import StoreSettings
    from visearch.v1 import search_pb2

    with tempfile.TemporaryDirectory(prefix="visearch-bench-personal-") as tmp:
        store = StoreSettings(uri=str(Path(tmp) / "bench.db"))
        with EmbeddedPlatform(store, ranking_settings=evaluation_settings()) as platform:
            items = catalogue(size)
            platform.ingest(items, progress=False, tenant=TENANT, stages=STAGES)
            shopper = shoppers(platform, items)[0]
            run_shopper(platform, shopper, (20,))
            requests = {  # kind -> the query part of each request
                "text": [{"text": text} for text, _ in queries()],
                "more_like_this": [{"image_id": item.image_id} for item in items[:15]],
            }
            times: dict[str, dict[str, list[float]]] = {kind: {"personalised": [], "global": []} for kind in requests}
            for kind, asks in requests.items():
                for n in range(rounds * len(asks) + len(asks)):
                    for name, personalise in (("personalised", True), ("global", False)):
                        request = search_pb2.SearchRequest(
                            top_k=10,
                            tenant=TENANT,
                            user_id=shopper.user_id,
                            personalise=personalise,
                            **asks[n % len(asks)],
                        )
                        start = time.perf_counter()
                        response = platform.search.Search(request, None)
                        if n >= len(asks):  # the first round warms up
                            times[kind][name].append((time.perf_counter() - start) * 1000)
                        assert response.ranker.endswith("+personal") == personalise
    result: dict = {"catalogue": size}
    for kind, runs in times.items():
        result[kind] = {name: _percentiles(values) for name, values in runs.items()}
        result[kind]["queries"] = len(runs["global"])
        result[kind]["p50_ratio"] = result[kind]["personalised"]["p50_ms"] / result[kind]["global"]["p50_ms"]
    return result


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for personalisation_bench.json/.md.")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="Rounds over the text queries.")
    args = parser.parse_args()
    result = measure(args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "personalisation_bench.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Personalised search vs the same search without it (personalise=false), interleaved, {result['catalogue']} "
        "Fashion-MNIST items, Milvus Lite",
        "",
        "| query | queries | personalised p50 / p99 ms | global p50 / p99 ms | p50 ratio |",
        "|---|---|---|---|---|",
    ]
    for kind in ("text", "more_like_this"):
        r = result[kind]
        p, g = r["personalised"], r["global"]
        lines.append(
            f"| {kind} | {r['queries']} | {p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {g['p50_ms']:.1f} / {g['p99_ms']:.1f} "
            f"| {r['p50_ratio']:.3f} |"
        )
    table = "\n".join(lines) + "\n\nbar: p50 ratio <= 1.1\n"
    (args.out / "personalisation_bench.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
