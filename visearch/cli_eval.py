"""`visearch eval`: run the evaluation suites under ranking profiles and write a report folder.

Kept light to import (the CLI loads it at start): the platform, the models and matplotlib are loaded
only when the command runs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

eval_app = typer.Typer(
    help="Measure search quality: suites x ranking profiles -> JSON, report.md, PNG plots.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@eval_app.callback(invoke_without_command=True)
def eval_command(
    suite: Annotated[
        Optional[list[str]],
        typer.Option(
            "--suite",
            help="Suite to run (repeatable): fashion, neardup, text2image, screenshot, openvocab (short text queries, most naming no ImageNet class, over the photos indexed untitled), personalisation (simulated shoppers with known tastes: nDCG@10 of their taste against clicks, personalised vs global). Default: all.",
        ),
    ] = None,
    profile: Annotated[
        Optional[list[str]],
        typer.Option(
            "--profile",
            help="Ranking profile (repeatable): visual_only, blended, blended_rrf, blended-no-<factor>. Default: all of them.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder (results.json, report.md, PNGs).")] = Path(
        "reports/eval"
    ),
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Cut-off of precision, recall and nDCG.")] = 10,
    depth: Annotated[
        int, typer.Option("--depth", min=1, max=1000, help="Hits requested per query (the list AP is computed over).")
    ] = 100,
    fashion_catalogue: Annotated[int, typer.Option(min=10, help="fashion: training images indexed.")] = 2000,
    fashion_queries: Annotated[int, typer.Option(min=1, help="fashion: test images used as queries.")] = 200,
    distractors: Annotated[
        int,
        typer.Option(
            min=0, help="neardup/text2image/screenshot/openvocab: Fashion-MNIST distractors added to the photos."
        ),
    ] = 200,
    transform: Annotated[
        Optional[list[str]], typer.Option("--transform", help="neardup: transformation (repeatable). Default: all.")
    ] = None,
    db: Annotated[
        Optional[Path],
        typer.Option("--db", help="Milvus Lite file to use (default: a temporary folder, removed after)."),
    ] = None,
    personalisation_catalogue: Annotated[
        int, typer.Option(min=50, help="personalisation: Fashion-MNIST training images indexed.")
    ] = 600,
    plots: Annotated[bool, typer.Option(help="Write the PNG plots (needs matplotlib: the eval extra).")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Ingest the suites into an embedded platform (real models, Milvus Lite), search every query under
    every profile, and write results.json, report.md and the plots into --out."""
    from rich.console import Console
    from rich.table import Table

    from visearch.embedded import EmbeddedPlatform
    from visearch.offline.evaluation.metrics import HIT_K
    from visearch.offline.evaluation.report import write_report
    from visearch.offline.evaluation.runner import evaluate, evaluation_settings
    from visearch.offline.evaluation.suites import SUITES, build_suites
    from visearch.shared.config import ImageSettings, StoreSettings

    console = Console(stderr=False)
    names = list(suite or [*SUITES, "personalisation"])
    shoppers = "personalisation" in names  # its own runner (visearch/offline/evaluation/personalisation.py)
    names = [n for n in names if n != "personalisation"]
    try:
        suites = build_suites(names, fashion_catalogue, fashion_queries, distractors, transform) if names else []
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise typer.BadParameter("plots need matplotlib: pip install -e '.[eval]' (or --no-plots)") from exc
    with tempfile.TemporaryDirectory(prefix="visearch-eval-") as tmp:
        store = StoreSettings(uri=str(db or Path(tmp) / "eval.db"))
        # The photos are read from local package files: the in-process platform may read file URIs.
        with EmbeddedPlatform(
            store, image_settings=ImageSettings(allow_file_uris=True), ranking_settings=evaluation_settings()
        ) as platform:
            try:
                result = (
                    evaluate(platform, suites, list(profile) if profile else None, k, depth, progress) if suites else {}
                )
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            if shoppers:
                _personalisation(platform, personalisation_catalogue, out, plots, console)
    if not suites:
        return
    paths = write_report(result, out, with_plots=plots)
    key = f"nDCG@{k}"
    table = Table(
        title=f"visearch eval: {key}, recall@{k}, mAP, hit@{HIT_K}, hub@{HIT_K} (queries with the hub image in their top {HIT_K})"
    )
    table.add_column("suite")
    table.add_column("profile")
    for col in (key, f"recall@{k}", "mAP", f"hit@{HIT_K}", f"hub@{HIT_K}"):
        table.add_column(col, justify="right")
    table.add_column("hub image")
    for name, s in result["suites"].items():
        for pname, run in s["profiles"].items():
            summary = run["summary"]
            table.add_row(
                name,
                pname,
                f"{summary[key]:.3f}",
                f"{summary[f'recall@{k}']:.3f}",
                f"{summary['mAP']:.3f}",
                f"{summary[f'hit@{HIT_K}']:.3f}",
                f"{summary[f'hub@{HIT_K}']:.3f}",
                summary["hub_image"] or "-",
            )
    console.print(table)
    console.print(json.dumps({name: str(path) for name, path in paths.items()}))


def _personalisation(platform, catalogue: int, out: Path, plots: bool, console) -> None:
    """Run the simulated shoppers; write personalisation.json, personalisation.md (and .png) into ``out``."""
    from visearch.offline.evaluation.personalisation import evaluate_personalisation, markdown, plot

    result = evaluate_personalisation(platform, catalogue)
    out.mkdir(parents=True, exist_ok=True)
    (out / "personalisation.json").write_text(json.dumps(result, indent=2))
    (out / "personalisation.md").write_text(markdown(result))
    if plots:
        plot(result, out / "personalisation.png")
    console.print(markdown(result))
