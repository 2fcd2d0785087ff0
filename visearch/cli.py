"""The ``visearch`` command line: build models, ingest catalogues, search, serve, run the demo.

Every command works in embedded mode (one process, Milvus Lite at ``VISEARCH_MILVUS_URI`` or
``--db``); ``serve`` runs one service as its own process. Logs go to stderr as JSON lines; results
go to stdout (``--json`` for machine-readable output).
"""

from __future__ import annotations

import io
import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from visearch.shared.config import ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.errors import VisearchError
from visearch.shared.logging import configure_logging

app = typer.Typer(help="visearch: visual search and recognition platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
models_app = typer.Typer(help="Build and inspect the ONNX models (needs the `build` extra).", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(width=None if sys.stdout.isatty() else 140)

TenantOption = Annotated[Optional[str], typer.Option("--tenant", help="Tenant (catalogue owner). Default: $VISEARCH_TENANT or 'default'.")]
DbOption = Annotated[Optional[str], typer.Option("--db", help="Milvus URI: a .db path (Milvus Lite) or http://host:19530. Default: $VISEARCH_MILVUS_URI or ~/.cache/visearch/milvus.db.")]


DEMO_PHOTOS = "photos"
DEMO_FASHION = "fashion"


class Dataset(str, Enum):
    photos = "photos"
    fashion_mnist = "fashion-mnist"


class ServiceName(str, Enum):
    embedding = "embedding"
    ranking = "ranking"


def _store_settings(db: str | None) -> StoreSettings:
    return StoreSettings(uri=db) if db else StoreSettings()


def _service_settings(tenant: str | None) -> ServiceSettings:
    return ServiceSettings(tenant=tenant) if tenant else ServiceSettings()


@app.callback()
def main(log_level: Annotated[str, typer.Option(help="Log level for JSON logs on stderr.")] = "warning") -> None:
    """visearch: visual search and recognition platform."""
    configure_logging("cli", log_level)


@models_app.command("build")
def models_build(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this model (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the cache has this recipe.")] = False,
) -> None:
    """Export the models to ONNX in the model cache and verify them against the source framework."""
    try:
        from visearch.shared.models.build import build_models
    except ImportError as exc:  # torch missing
        raise typer.BadParameter(f"{exc}: install the build extra: pip install -e '.[build,data]'") from exc
    cache = ModelSettings().cache_dir
    for name, path in build_models(cache, only, force).items():
        meta = json.loads((path / "meta.json").read_text())
        console.print(f"[green]ok[/] {name} -> {path}  parity: {meta.get('parity')}")


@models_app.command("list")
def models_list() -> None:
    """Show each model's recipe key and whether it is built."""
    from visearch.shared.models.registry import ALL_MODELS

    cache = ModelSettings().cache_dir
    for spec in ALL_MODELS:
        folder = spec.directory(cache)
        state = "built" if (folder / "meta.json").is_file() else "missing"
        console.print(f"{spec.name:22s} {spec.key}  {state:8s} {folder}")


@app.command()
def ingest(
    path: Annotated[Optional[Path], typer.Argument(help="Folder of images to ingest (recursively).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="JSONL or CSV of product fields keyed by image_id or file.")] = None,
    dataset: Annotated[Optional[Dataset], typer.Option(help="Built-in real dataset instead of a folder.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Ingest at most this many items.")] = None,
    offset: Annotated[int, typer.Option(help="Skip this many items of a dataset first.")] = 0,
    split: Annotated[str, typer.Option(help="Fashion-MNIST split: train or test.")] = "train",
    tenant: TenantOption = None,
    db: DbOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Ingest a catalogue through the pipeline (embedding -> indexer) into Milvus."""
    from visearch.shared import datasets
    from visearch.shared.embedded import EmbeddedPlatform

    if (path is None) == (dataset is None):
        raise typer.BadParameter("give either a folder PATH or --dataset")
    total = None
    if dataset is Dataset.fashion_mnist:
        items = datasets.fashion_mnist(split, limit=limit, offset=offset)
        total = limit
    elif dataset is Dataset.photos:
        items = datasets.photo_catalogue()[offset:][:limit]
        total = len(items)
    else:
        if not path.is_dir():
            raise typer.BadParameter(f"{path} is not a folder")
        items = datasets.folder_catalogue(path, metadata)
        if limit is not None:
            items = (item for i, item in enumerate(items) if i < limit)
    start = time.perf_counter()
    with EmbeddedPlatform(_store_settings(db), service_settings=_service_settings(tenant)) as platform:
        report = platform.ingest(items, progress=progress, total=total)
        stored = platform.store.count(tenant=platform.tenant)
    elapsed = time.perf_counter() - start
    console.print(f"published {report.published}, indexed {report.indexed}, failed {len(report.failed)} "
                  f"in {elapsed:.1f} s ({report.published / max(elapsed, 1e-9):.1f} img/s); {stored} images in the index")
    for image_id, reason, message in report.failed:
        console.print(f"  [red]failed[/] {image_id}: {reason}: {message}")


def _search_request(image: str | None, text: str | None, image_id: str | None, top_k: int, offset: int,
                    category: list[str] | None, brand: list[str] | None, in_stock: bool | None,
                    price_min: float | None, price_max: float | None):
    from visearch.v1 import common_pb2, search_pb2

    if sum(x is not None for x in (image, text, image_id)) != 1:
        raise typer.BadParameter("give exactly one of --image, --text, --id")
    flt = search_pb2.Filter(categories=category or [], brands=brand or [])
    if in_stock is not None:
        flt.in_stock = in_stock
    if price_min is not None:
        flt.price_min = price_min
    if price_max is not None:
        flt.price_max = price_max
    request = search_pb2.SearchRequest(top_k=top_k, offset=offset, filter=flt)
    if image is not None:
        is_url = image.startswith(("http://", "https://"))
        request.image.CopyFrom(common_pb2.Image(uri=image) if is_url else common_pb2.Image(content=Path(image).read_bytes()))
    elif text is not None:
        request.text = text
    else:
        request.image_id = image_id
    return request


def print_hits(title: str, response, as_json: bool = False) -> None:
    """Print a SearchResponse as a table (or JSON lines)."""
    if as_json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True)))
        return
    table = Table(title=f"{title}  ({response.took_ms:.0f} ms)", title_justify="left")
    for col in ("#", "image_id", "score", "factors", "category", "title"):
        table.add_column(col)
    for rank, hit in enumerate(response.hits, 1):
        factors = ", ".join(f"{f.name}={f.value:.3f}" for f in hit.factors)
        table.add_row(str(rank), hit.image_id, f"{hit.score:.3f}", factors, hit.category, hit.title[:50])
    console.print(table)


@app.command()
def search(
    image: Annotated[Optional[str], typer.Option(help="Query image: a file path or http(s) URL.")] = None,
    text: Annotated[Optional[str], typer.Option(help="Query text.")] = None,
    image_id: Annotated[Optional[str], typer.Option("--id", help="More like this indexed image.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Number of hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Hits to skip (pagination).")] = 0,
    category: Annotated[Optional[list[str]], typer.Option(help="Only these categories (repeatable).")] = None,
    brand: Annotated[Optional[list[str]], typer.Option(help="Only these brands (repeatable).")] = None,
    in_stock: Annotated[Optional[bool], typer.Option("--in-stock/--out-of-stock", help="Filter on stock.")] = None,
    price_min: Annotated[Optional[float], typer.Option(help="Minimum price.")] = None,
    price_max: Annotated[Optional[float], typer.Option(help="Maximum price.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    tenant: TenantOption = None,
    db: DbOption = None,
) -> None:
    """Search the index by image, text or indexed id, with filters."""
    from visearch.shared.embedded import EmbeddedPlatform

    request = _search_request(image, text, image_id, top_k, offset, category, brand, in_stock, price_min, price_max)
    with EmbeddedPlatform(_store_settings(db), service_settings=_service_settings(tenant)) as platform:
        try:
            response = platform.search.Search(request, None)
        except VisearchError as exc:
            console.print(f"[red]error[/] {exc.code.name}: {exc}")
            raise typer.Exit(2) from exc
    print_hits(f"query: {request.WhichOneof('query')}", response, as_json)


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    port: Annotated[Optional[int], typer.Option(help="gRPC port (default $VISEARCH_GRPC_PORT or 50051).")] = None,
) -> None:
    """Run one service as a long-running process (gRPC with health and reflection, /metrics)."""
    settings = ServiceSettings()
    if port is not None:
        settings.grpc_port = port
    if service is ServiceName.embedding:
        from visearch.services.embedding.server import main as run
    else:
        from visearch.services.ranking.server import main as run
    run(settings)


@app.command()
def demo(
    fashion: Annotated[int, typer.Option(help="Fashion-MNIST items to ingest.")] = 2000,
    db: DbOption = None,
) -> None:
    """Ingest real photos and Fashion-MNIST products, then search by image and by text."""
    from PIL import Image

    from visearch.shared import datasets
    from visearch.shared.embedded import EmbeddedPlatform
    from visearch.v1 import common_pb2, search_pb2

    with EmbeddedPlatform(_store_settings(db)) as platform:
        photos = datasets.photo_catalogue()
        report = platform.ingest(photos, total=len(photos), tenant=DEMO_PHOTOS)
        report_f = platform.ingest(datasets.fashion_mnist("train", limit=fashion), total=fashion, tenant=DEMO_FASHION)
        console.print(f"indexed {report.indexed} photos (tenant {DEMO_PHOTOS!r}) and {report_f.indexed} Fashion-MNIST "
                      f"products (tenant {DEMO_FASHION!r}), {len(report.failed) + len(report_f.failed)} failed, "
                      f"into {platform.store.settings.uri}")

        dog = next(p for p in photos if p.image_id == "photo-dog")
        img = Image.open(io.BytesIO(dog.read_bytes())).convert("RGB")
        w, h = img.size
        variant = img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w // 2, h // 2)).rotate(5)
        buf = io.BytesIO()
        variant.save(buf, format="JPEG", quality=70)
        query = search_pb2.SearchRequest(image=common_pb2.Image(content=buf.getvalue()), top_k=5, tenant=DEMO_PHOTOS)
        print_hits(f"image query: cropped, resized, rotated JPEG copy of {dog.image_id}", platform.search.Search(query, None))

        for text in ("dog", "a cup of coffee", "a cat"):
            request = search_pb2.SearchRequest(text=text, top_k=5, tenant=DEMO_PHOTOS)
            print_hits(f"text query over the photos: {text!r}", platform.search.Search(request, None))
        request = search_pb2.SearchRequest(text="ankle boot", top_k=5, tenant=DEMO_FASHION)
        print_hits("text query over the fashion catalogue: 'ankle boot'", platform.search.Search(request, None))

        held_out = next(datasets.fashion_mnist("test", limit=1))
        query = search_pb2.SearchRequest(image=common_pb2.Image(content=held_out.content), top_k=5, tenant=DEMO_FASHION,
                                         filter=search_pb2.Filter(in_stock=True))
        print_hits(f"image query: held-out Fashion-MNIST {held_out.category!r}, in stock only",
                   platform.search.Search(query, None))


if __name__ == "__main__":
    sys.exit(app())
