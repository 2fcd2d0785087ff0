"""``visearch train``: fit catalogue models on frozen image embeddings and install them as new model versions.

``train projection`` (metric learning) and ``train head`` (category + tags) embed the catalogue's
images with the built image model once (cached as .npy under the model cache), train with torch (the
``build`` extra; imported only here, never by serving), measure on held-out data, export to ONNX with
a parity check, and install ``<cache>/<kind>_<catalogue>/<version>/``. Services pick a version up
through settings alone: ``VISEARCH_MODEL_PROJECTION`` / ``VISEARCH_MODEL_CATALOGUE_HEAD`` =
``latest`` or a number (docs/configuration.md). ``train list`` shows the versions, ``train publish``
writes them into a Triton model repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visearch.shared.config import ModelSettings

train_app = typer.Typer(
    help="Train catalogue models on frozen image embeddings (needs the `build` extra): a metric-learning "
    "projection and a category + tags head, each installed as a new model version.",
    no_args_is_help=True,
)
console = Console()

CatalogueOption = Annotated[
    str, typer.Option("--catalogue", "--dataset", help="Labelled catalogue to train on (known: fashion-mnist).")
]
TrainOffsetOption = Annotated[
    int,
    typer.Option(
        help="First training image of the train split. Default 2000: after the evaluation catalogue, so no query ever searches an image the model was trained on."
    ),
]
TrainLimitOption = Annotated[int, typer.Option(help="Number of training images.")]
IndexOption = Annotated[
    int,
    typer.Option(
        "--eval-catalogue",
        help="Evaluation catalogue: the first N train-split images (what queries search; the Fashion-MNIST test indexes the same 2,000).",
    ),
]
TestOption = Annotated[
    int, typer.Option(help="Held-out test-split images: retrieval queries and classification test set.")
]
SeedOption = Annotated[int, typer.Option(help="Random seed (weights, batches): a rerun gives the same model on CPU.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the installed version's meta.json.")]


def _splits(catalogue_name: str, train_offset: int, train_limit: int, index: int, test: int):
    from visearch.offline.training.data import frozen_embeddings, training_catalogue
    from visearch.offline.training.heads import Splits

    try:
        catalogue = training_catalogue(catalogue_name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    models = ModelSettings()
    splits = Splits(
        train=frozen_embeddings(catalogue, "train", train_offset, train_limit, models, progress=True),
        index=frozen_embeddings(catalogue, "train", 0, index, models, progress=True),
        test=frozen_embeddings(catalogue, "test", 0, test, models, progress=True),
    )
    try:
        splits.check_disjoint()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return catalogue, splits


def _heads_module():
    try:
        from visearch.offline.training import heads
    except ImportError as exc:  # torch missing
        raise typer.BadParameter(f"{exc}: install the build extra: pip install -e '.[build,data]'") from exc
    return heads


def _progress(epochs: int):
    bar = Progress(
        TextColumn("[bold]train[/]"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = bar.add_task("train", total=epochs, loss=float("nan"))
    return bar, lambda epoch, loss: bar.update(task, completed=epoch + 1, loss=loss)


def _installed(meta: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(meta, indent=2))
        return
    console.print(
        f"[green]installed[/] {meta['name']} version {meta['version']} "
        f"({ModelSettings().cache_dir / meta['name'] / str(meta['version'])})"
    )
    setting = "VISEARCH_MODEL_PROJECTION" if meta["kind"] == "projection" else "VISEARCH_MODEL_CATALOGUE_HEAD"
    console.print(f"use it: {setting}=latest (or ={meta['version']}) VISEARCH_MODEL_CATALOGUE={meta['catalogue']}")


def _print_projection(meta: dict, first: int) -> None:
    m = meta["metrics"]
    table = Table(
        title=f"precision@{m['k']}: {m['queries']} test queries over {m['index']} catalogue images (chance {m['chance']:.3f})"
    )
    for column in ("embedding", "all queries", f"first {first}"):
        table.add_column(column)
    for space in ("raw", "projected"):
        table.add_row(space, f"{m[space]['precision']:.4f}", f"{m[space][f'precision_first_{first}']:.4f}")
    console.print(table)


def _print_head(meta: dict) -> None:
    table = Table(
        title=f"{meta['name']}: {len(meta['categories'])} categories, {len(meta['tags'])} tags "
        f"(tag threshold {meta['metrics']['tag_threshold']})"
    )
    for column in ("split", "images", "category accuracy", "tag mAP", "tag micro-F1", "tag macro-F1"):
        table.add_column(column)
    for split in ("train", "test"):
        s = meta["metrics"][split]
        table.add_row(
            split,
            str(s["images"]),
            f"{s['category_accuracy']:.4f}",
            f"{s['tag_mAP']:.4f}",
            f"{s['tag_micro_f1']:.4f}",
            f"{s['tag_macro_f1']:.4f}",
        )
    console.print(table)


def _train(
    kind: str,
    catalogue: str,
    train_offset: int,
    train_limit: int,
    eval_catalogue: int,
    test_limit: int,
    epochs: int,
    seed: int,
    as_json: bool,
) -> None:
    heads = _heads_module()
    cat, splits = _splits(catalogue, train_offset, train_limit, eval_catalogue, test_limit)
    cache = ModelSettings().cache_dir
    bar, update = _progress(epochs)
    with bar:
        if kind == "projection":
            meta = heads.run_projection(
                cat, splits, cache, heads.ProjectionConfig(epochs=epochs, seed=seed), update
            ).meta
        else:
            from visearch.shared.config import ClassificationSettings

            threshold = ClassificationSettings().head_tag_min_score  # the F1 threshold is the one serving applies
            meta = heads.run_head(
                cat, splits, cache, heads.HeadConfig(epochs=epochs, seed=seed), update, threshold
            ).meta
    if not as_json:
        _print_projection(meta, heads.FIRST_QUERIES) if kind == "projection" else _print_head(meta)
    _installed(meta, as_json)


def _register(kind: str, default_epochs: int, help_text: str) -> None:
    """Add ``visearch train <kind>``: both commands take the same options (only the epochs default differs)."""

    def command(
        catalogue: CatalogueOption = "fashion-mnist",
        train_offset: TrainOffsetOption = 2000,
        train_limit: TrainLimitOption = 6000,
        eval_catalogue: IndexOption = 2000,
        test_limit: TestOption = 2000,
        epochs: Annotated[int, typer.Option(min=1, help="Passes over the training images.")] = default_epochs,
        seed: SeedOption = 0,
        as_json: JsonOption = False,
    ) -> None:
        _train(kind, catalogue, train_offset, train_limit, eval_catalogue, test_limit, epochs, seed, as_json)

    command.__name__ = f"train_{kind}"
    train_app.command(kind, help=help_text)(command)


_register(
    "projection",
    10,
    "Metric-learning projection 1280 -> 1280 (linear, identity at start, on centred embeddings; batch-hard "
    "triplet loss on cosine distance, Hermans et al. 2017). Reports precision@10 of held-out test queries "
    "against the evaluation catalogue with the raw and the projected embedding, and installs the next version.",
)
_register(
    "head",
    30,
    "Multi-task head: softmax over the categories + sigmoid over the tags, one shared hidden layer, trained on "
    "cross-entropy + binary cross-entropy. Reports test category accuracy and tag mAP / F1 (threshold: "
    "VISEARCH_CLASSIFICATION_HEAD_TAG_MIN_SCORE), and installs the next version.",
)


@train_app.command("list")
def train_list(catalogue: CatalogueOption = "fashion-mnist") -> None:
    """The installed versions of the catalogue's projection and head, with their headline figures."""
    from visearch.shared.models.trained import KINDS, list_versions, read_meta

    cache = ModelSettings().cache_dir
    table = Table(title=f"trained models of {catalogue} in {cache}")
    for column in ("model", "version", "encoder", "trained on", "figures", "created"):
        table.add_column(column)
    for kind in KINDS:
        for version, folder in list_versions(cache, kind, catalogue):
            meta = read_meta(folder)
            m = meta.get("metrics", {})
            if kind == "projection":
                figures = f"P@10 {m['raw']['precision']:.3f} -> {m['projected']['precision']:.3f}" if "raw" in m else ""
            else:
                figures = (
                    f"acc {m['test']['category_accuracy']:.3f}, tag mAP {m['test']['tag_mAP']:.3f}"
                    if "test" in m
                    else ""
                )
            data = meta.get("training", {}).get("data", {})
            table.add_row(
                meta.get("name", kind),
                str(version),
                meta.get("encoder", ""),
                f"{data.get('split', '')}[{data.get('offset', '')}:{data.get('offset', 0) + data.get('limit', 0)}]",
                figures,
                meta.get("created", ""),
            )
    console.print(table)


@train_app.command("publish")
def train_publish(
    triton: Annotated[Path, typer.Option(help="Triton model repository to write into (e.g. var/triton/models).")],
    catalogue: CatalogueOption = "fashion-mnist",
    flavour: Annotated[
        str, typer.Option(help="local (python backend, CPU) or production (onnxruntime backend, GPU).")
    ] = "local",
) -> None:
    """Write every installed version of the catalogue's projection and head into a Triton model repository
    (<model>/config.pbtxt + <version>/model.onnx, all versions served)."""
    from visearch.offline.models.triton_repository import write_trained_repository

    for folder in write_trained_repository(ModelSettings().cache_dir, triton, catalogue, flavour):
        console.print(
            f"[green]ok[/] triton ({flavour}) {folder}: versions {sorted(p.name for p in folder.iterdir() if p.is_dir())}"
        )
