"""``visearch store``: the vector store's layout and its migration.

``store info`` connects as a service would and prints the Milvus version, the layout it chose (unified:
one collection per tenant space with BM25 in Milvus; per_space: Milvus 2.3's one collection per vector,
keyword search in each ranking process) and the row counts. ``store migrate`` moves a per_space catalogue
into the unified layout (resumable, verified by counts and sampled rows; ``visearch/store_migration.py``).
Exit code 1: the migration's verification found differences; 2: nothing to migrate or a server without
the unified layout.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

store_app = typer.Typer(
    help="The vector store: its layout (unified or per_space) and the migration between them.", no_args_is_help=True
)
console = Console(width=None if sys.stdout.isatty() else 140)

DbOption = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        help="Milvus URI: a .db path (Milvus Lite) or http://host:19530. Default: $VISEARCH_MILVUS_URI or ~/.cache/visearch/milvus.db.",
    ),
]
PrefixOption = Annotated[
    Optional[str],
    typer.Option("--prefix", help="Collection prefix. Default: $VISEARCH_MILVUS_COLLECTION_PREFIX or 'visearch'."),
]


def _settings(db: str | None, prefix: str | None):
    from visearch.shared.config import StoreSettings

    overrides = {k: v for k, v in (("uri", db), ("collection_prefix", prefix)) if v}
    return StoreSettings(**overrides)


@store_app.command("info")
def store_info(db: DbOption = None, prefix: PrefixOption = None) -> None:
    """Print the Milvus version, the layout in use, where keyword search runs, and the row counts."""
    from visearch.shared.store import MilvusStore

    store = MilvusStore(_settings(db, prefix))
    try:
        console.print(f"milvus        {store.server_version}  ({store.settings.uri})")
        console.print(
            f"layout        {store.layout}  (collections: {', '.join(dict.fromkeys(store.collections.values()))})"
        )
        console.print(
            f"keyword search {'BM25 in Milvus' if store.full_text else 'in each ranking process (in-memory BM25)'}"
        )
        console.print(
            f"images        {store.count('image')}  (with a colour: {store.count('colour')}; "
            f"regions: {store.count('region')})"
        )
    finally:
        store.close()


@store_app.command("migrate")
def store_migrate(
    db: DbOption = None,
    prefix: PrefixOption = None,
    batch_size: Annotated[int, typer.Option(min=1, max=16384, help="Images per page read and written.")] = 500,
    samples: Annotated[int, typer.Option(min=0, help="Rows compared field by field after the copy.")] = 50,
    drop_legacy: Annotated[
        bool, typer.Option(help="Drop the old <prefix>_image/_joint/_colour collections once verified.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
) -> None:
    """Move a per_space catalogue (Milvus 2.3 layout) into the unified layout, without re-ingesting.

    Needs Milvus >= 2.5 or Milvus Lite >= 3. Resumable: run it again after an interruption. Stop ingestion and
    attribute updates while it runs. Services started afterwards with VISEARCH_MILVUS_LAYOUT=auto use the
    unified layout.
    """
    from tqdm import tqdm

    from visearch.shared.errors import ConfigError
    from visearch.store_migration import migrate

    settings = _settings(db, prefix)
    bar = tqdm(unit="img", desc="migrate", disable=not progress)
    try:
        report = migrate(settings, batch_size=batch_size, samples=samples, drop_legacy=drop_legacy, on_page=bar.update)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        bar.close()
    console.print(
        f"images {report.rows}: copied {report.copied}, already there {report.skipped}; "
        f"with a colour {report.colour}; {report.sampled} sampled rows compared"
    )
    for mismatch in report.mismatches:
        console.print(f"[red]mismatch[/] {mismatch}")
    if not report.verified:
        raise typer.Exit(1)
    console.print("verified" + (": old collections dropped" if report.dropped else ""))
