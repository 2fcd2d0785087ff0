"""``visearch rank``: learning to rank from the feedback topic or judged data, and the learned rankers.

``rank fit`` reads training data (the feedback topic over Kafka: impressions joined with clicks and
purchases; or a JSONL file of judged data), fits the factor weights by logistic regression on part of
the queries, compares the fitted ranker with the default profile and the current learned ranker by
nDCG@10 on the held-out queries, and writes ``ranker-v<N+1>.json`` into the ranker folder, where
ranking services (``VISEARCH_RANKING_LEARNED_DIR``) pick it up without a restart. It refuses (exit
code 1) to write a ranker that is worse on the held-out queries than the current default, unless
``--force``. Exit code 2: bad options, unreadable input or too little data.

``rank show`` lists the versions in the folder with their weights and metrics; ``rank rollback`` serves an
older version (or a profile) again by copying it as the next version; ``rank judge`` writes judged data from Fashion-MNIST through the real search API (for
trying the loop without traffic).
"""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

rank_app = typer.Typer(
    help="Learning to rank: fit the ranker's factor weights on logged feedback or judged data, list the "
    "learned rankers (ranker-v<N>.json, hot-reloaded by ranking services).",
    no_args_is_help=True,
)
console = Console()

DEFAULT_DIR = Path("var/rankers")
OutDirOption = Annotated[
    Optional[Path],
    typer.Option("--out-dir", "--dir", help=f"Ranker folder. Default: $VISEARCH_RANKING_LEARNED_DIR or {DEFAULT_DIR}."),
]


class Objective(str, Enum):
    pointwise = "pointwise"
    pairwise = "pairwise"


def _ranker_dir(out_dir: Path | None) -> Path:
    from visearch.shared.config import RankingSettings

    return out_dir or RankingSettings().learned_dir or DEFAULT_DIR


def _print_data(data) -> None:
    summary = data.summary()
    console.print(
        f"{summary['source']}: {summary['records']} records -> {summary['judgments']} judgments of "
        f"{summary['queries']} queries; labels {summary['labels']}"
    )
    if summary["dropped_queries_without_positive"]:
        console.print(
            f"  dropped {summary['dropped_queries_without_positive']} queries without any click, "
            "purchase or positive label (they cannot tell a better hit from a worse one)"
        )
    for reason, count in summary["skipped"].items():
        console.print(f"  [yellow]skipped[/] {count} records: {reason}")
    for name, count in summary["ignored_factors"].items():
        console.print(f"  [yellow]ignored[/] factor {name!r} (unknown to the ranker) in {count} records")


@rank_app.command("fit")
def fit(
    from_kafka: Annotated[
        bool,
        typer.Option(
            "--from-kafka", help="Read the feedback topic (<prefix>.feedback.v1) from the beginning to its current end."
        ),
    ] = False,
    bootstrap: Annotated[
        Optional[str],
        typer.Option(
            "--bootstrap", help="Kafka bootstrap servers. Default: $VISEARCH_KAFKA_BOOTSTRAP or 127.0.0.1:9092."
        ),
    ] = None,
    topic_prefix: Annotated[
        Optional[str],
        typer.Option("--topic-prefix", help="Topic prefix. Default: $VISEARCH_KAFKA_TOPIC_PREFIX or visearch."),
    ] = None,
    judgments: Annotated[
        Optional[Path], typer.Option("--judgments", help="JSONL judged data: query_id, image_id, factors, label 0..3.")
    ] = None,
    out_dir: OutDirOption = None,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Share of the queries held out for the comparison.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the query split (and pair sampling).")] = 0,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write the ranker even when it is worse than the current default on the held-out queries."
        ),
    ] = False,
    objective: Annotated[
        Objective,
        typer.Option(help="pointwise (per candidate, the default) or pairwise (per pair of candidates of one query)."),
    ] = Objective.pointwise,
    c: Annotated[
        float, typer.Option("--c", min=1e-6, help="Inverse L2 regularisation strength of the logistic regression.")
    ] = 1.0,
    k: Annotated[int, typer.Option("--k", min=1, help="nDCG cut-off of the comparison.")] = 10,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to read the topic to its end.")] = 120.0,
) -> None:
    """Fit a linear ranker on logged feedback or judged data and write it as the next version."""
    from visearch.offline.rank.fitting import NotEnoughDataError, fit_and_evaluate
    from visearch.offline.rank.learning import read_feedback_topic, read_judgments
    from visearch.services.ranking.ranker import RankerRegistry, write_ranker
    from visearch.shared.config import KafkaSettings, RankingSettings

    if from_kafka == (judgments is not None):
        raise typer.BadParameter("give exactly one of --from-kafka and --judgments FILE")
    directory = _ranker_dir(out_dir)
    if from_kafka:
        from kafka.errors import KafkaError

        from visearch.shared.errors import VisearchError
        from visearch.shared.transport import feedback_topic

        kafka = KafkaSettings()
        kafka.bootstrap = bootstrap or kafka.bootstrap or "127.0.0.1:9092"
        topic = feedback_topic(topic_prefix or kafka.topic_prefix)
        try:
            data = read_feedback_topic(kafka, topic, timeout)
        except (KafkaError, VisearchError, LookupError, TimeoutError) as exc:
            console.print(f"[red]cannot read {topic} at {kafka.bootstrap}:[/] {exc}")
            raise typer.Exit(2) from exc
    else:
        try:
            data = read_judgments(judgments)
        except OSError as exc:
            console.print(f"[red]cannot read {judgments}:[/] {exc}")
            raise typer.Exit(2) from exc
    _print_data(data)

    settings = RankingSettings()
    registry = RankerRegistry(
        settings.profiles,
        settings.profile,
        settings.tenant_profiles,
        directory,
        reload_interval_s=3600,
        rrf_k=settings.rrf_k,
    )
    baselines = [registry.profiles[settings.profile]]
    if registry.learned is not None:
        baselines.append(registry.learned)
    try:
        report = fit_and_evaluate(data, baselines, holdout=holdout, seed=seed, k=k, c=c, objective=objective.value)
    except NotEnoughDataError as exc:
        console.print(f"[red]not enough training data:[/] {exc}")
        raise typer.Exit(2) from exc

    table = Table(
        title=f"nDCG@{k}, {report.evaluated_queries} held-out queries ({len(report.train_queries)} trained on)"
    )
    for column in ("ranker", "held-out", "training queries"):
        table.add_column(column, justify="left" if column == "ranker" else "right")
    for name, value in report.heldout.items():
        table.add_row(
            name + (" (current default)" if name == report.current else ""), f"{value:.4f}", f"{report.train[name]:.4f}"
        )
    console.print(table)
    console.print("weights: " + _weights(report.fit.weights) + f"; bias {report.fit.bias:+.4f}")
    if not report.better and not force:
        console.print(
            f"[red]refused:[/] the fitted ranker is worse than {report.current} on the held-out queries "
            f"(nDCG@{k} {report.heldout['fitted']:.4f} < {report.heldout[report.current]:.4f}); "
            "nothing written (--force writes it anyway)"
        )
        raise typer.Exit(1)
    split = {
        "holdout": holdout,
        "seed": seed,
        "train_queries": len(report.train_queries),
        "heldout_queries": len(report.heldout_queries),
    }
    path = write_ranker(
        directory,
        report.fit.ranker(),
        trained_on={**data.summary(), **split},
        metrics=report.metrics(),
        forced=not report.better,
    )
    console.print(
        f"[green]wrote[/] {path} (nDCG@{k} {report.gain:+.4f} vs {report.current}); ranking services with "
        f"VISEARCH_RANKING_LEARNED_DIR={directory} serve it within VISEARCH_RANKING_RELOAD_INTERVAL_S"
    )


def _weights(weights: dict[str, float]) -> str:
    ordered = sorted(weights.items(), key=lambda kv: -abs(kv[1]))
    return ", ".join(f"{name} {value:+.3g}" for name, value in ordered) or "(none)"


@rank_app.command("show")
def show(
    out_dir: OutDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the documents as JSON lines.")] = False,
) -> None:
    """The learned rankers in the folder, newest first, with weights and held-out metrics (the newest readable one is served)."""
    from visearch.services.ranking.ranker import ranker_files, read_ranker

    directory = _ranker_dir(out_dir)
    versions = ranker_files(directory) if directory.is_dir() else []
    if not versions:
        console.print(f"no learned rankers in {directory} (services serve the ranking profiles)")
        return
    table = Table(title=f"learned rankers in {directory}")
    for column in ("version", "in use", "trained on", "nDCG@k held-out", "vs", "weights"):
        table.add_column(column)
    in_use = None
    for version, path in reversed(versions):
        try:
            ranker, doc = read_ranker(path)
        except ValueError as exc:
            table.add_row(str(version), "", f"[red]unreadable[/]: {exc}", "", "", "")
            continue
        if as_json:
            print(json.dumps(doc, sort_keys=True))
        if in_use is None:
            in_use = version
        metrics, trained = doc.get("metrics") or {}, doc.get("trained_on") or {}
        k = metrics.get("k", 10)
        heldout = metrics.get(f"ndcg@{k}_heldout") or {}
        current = metrics.get("compared_with", "")
        fitted = heldout.get("fitted")
        table.add_row(
            str(version),
            "yes" if version == in_use else "",
            f"{trained.get('queries', '?')} queries, {trained.get('judgments', '?')} judgments\n{trained.get('source', '')}",
            f"@{k}: {fitted:.4f}" if isinstance(fitted, float) and math.isfinite(fitted) else "",
            (f"{current} {heldout[current]:.4f}" if current in heldout else "")
            + (" [red]forced[/]" if doc.get("forced") else ""),
            _weights(dict(ranker.weights)) + f"; bias {ranker.bias:+.3g}",
        )
    if not as_json:
        console.print(table)


@rank_app.command("judge")
def judge(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write (query_id, image_id, factors, label).")],
    catalogue: Annotated[int, typer.Option(min=10, help="Fashion-MNIST train-split items to index.")] = 400,
    queries: Annotated[int, typer.Option(min=1, help="Held-out test-split images used as image queries.")] = 100,
    text: Annotated[
        bool, typer.Option(help="Add the everyday-word text queries (jeans, handbag, trainers...).")
    ] = True,
    top_k: Annotated[int, typer.Option(min=10, max=1000, help="Hits judged per query.")] = 100,
    db: Annotated[
        Optional[Path], typer.Option("--db", help="Milvus Lite file to index into (kept); default a temporary one.")
    ] = None,
) -> None:
    """Judged data through the real search API: Fashion-MNIST hits graded by ground truth (2 same category, 1 same group)."""
    import tempfile

    from visearch.embedded import EmbeddedPlatform
    from visearch.offline.datasets import fashion_mnist
    from visearch.offline.rank.judged import fashion_queries
    from visearch.offline.rank.judged import judge as judge_queries
    from visearch.offline.rank.learning import write_judgments
    from visearch.shared.config import ServiceSettings, StoreSettings

    with tempfile.TemporaryDirectory() as tmp:
        store = StoreSettings(uri=str(db or Path(tmp) / "judge.db"))
        with EmbeddedPlatform(
            store,
            service_settings=ServiceSettings(tenant="judged"),
            stages=["embedding", "ocr", "classification", "indexer"],
        ) as platform:
            report = platform.ingest(fashion_mnist("train", limit=catalogue), progress=True, total=catalogue)
            console.print(f"indexed {report.indexed} items ({len(report.failed)} failed)")
            rows = judge_queries(platform.search, fashion_queries(queries, text=text), tenant="judged", top_k=top_k)
            written = write_judgments(out, rows)
    console.print(f"[green]wrote[/] {written} judgments to {out}")


@rank_app.command("rollback")
def rollback(
    to: Annotated[
        Optional[int], typer.Option("--to", help="Version to serve again. Default: the one before the newest.")
    ] = None,
    to_profile: Annotated[
        Optional[str], typer.Option("--to-profile", help="Serve a ranking profile's weights instead (e.g. blended).")
    ] = None,
    out_dir: OutDirOption = None,
) -> None:
    """Serve an older version (or a profile) again without a restart: it is copied as the next version, which
    running services load like any new one (deleting the newest file rolls back too)."""
    from visearch.services.ranking.ranker import BUILTIN_PROFILES, Ranker, ranker_files, read_ranker, write_ranker
    from visearch.shared.config import RankingSettings

    directory = _ranker_dir(out_dir)
    if to_profile is not None:
        profiles = {**BUILTIN_PROFILES, **RankingSettings().profiles}
        if to_profile not in profiles or to is not None:
            raise typer.BadParameter(f"give --to or --to-profile (a known profile: {sorted(profiles)})")
        ranker, origin = Ranker(f"profile:{to_profile}", dict(profiles[to_profile])), f"profile:{to_profile}"
    else:
        versions = dict(ranker_files(directory)) if directory.is_dir() else {}
        target = to if to is not None else max((v for v in versions if v < max(versions, default=0)), default=None)
        if target not in versions:
            raise typer.BadParameter(f"no version {target} in {directory} (versions: {sorted(versions)})")
        try:
            ranker, _ = read_ranker(versions[target])
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        origin = f"learned:{target}"
    path = write_ranker(directory, ranker, rolled_back_to=origin)
    console.print(f"[green]wrote[/] {path}: the weights of {origin}, served as {read_ranker(path)[0].name}")
