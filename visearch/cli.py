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
topics_app = typer.Typer(help="Kafka topics of the pipeline (admin).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
dlq_app = typer.Typer(help="Inspect and replay dead-letter topics.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
BootstrapOption = Annotated[Optional[str], typer.Option("--bootstrap", help="Kafka bootstrap servers. Default: $VISEARCH_KAFKA_BOOTSTRAP or 127.0.0.1:9092 (the local stack).")]
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
    indexer = "indexer"
    ranking = "ranking"


def _kafka_settings(bootstrap: str | None):
    from visearch.shared.config import KafkaSettings

    settings = KafkaSettings()
    settings.bootstrap = bootstrap or settings.bootstrap or "127.0.0.1:9092"
    return settings


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
    triton: Annotated[Optional[Path], typer.Option(help="Also write a Triton model repository into this folder.")] = None,
    flavour: Annotated[str, typer.Option(help="Triton repository flavour: local (python backend, CPU) or production (onnxruntime backend, GPU).")] = "local",
) -> None:
    """Export the models to ONNX in the model cache, verify them against the source framework, and
    optionally write a Triton model repository."""
    cache = ModelSettings().cache_dir
    from visearch.shared.models.registry import ALL_MODELS

    missing = [s.name for s in ALL_MODELS if not (s.directory(cache) / "meta.json").is_file()]
    if missing or force or only:
        try:
            from visearch.shared.models.build import build_models
        except ImportError as exc:  # torch missing
            raise typer.BadParameter(f"{exc}: install the build extra: pip install -e '.[build,data]'") from exc
        for name, path in build_models(cache, only, force).items():
            meta = json.loads((path / "meta.json").read_text())
            console.print(f"[green]ok[/] {name} -> {path}  parity: {meta.get('parity')}")
    else:
        console.print(f"models up to date in {cache}")
    if triton is not None:
        from visearch.shared.models.triton_repository import write_repository

        for folder in write_repository(cache, triton, flavour):
            console.print(f"[green]ok[/] triton ({flavour}) {folder}")


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
    """Ingest a catalogue through the pipeline (embedding -> indexer) into Milvus, in this process."""
    from visearch.shared.embedded import EmbeddedPlatform

    items, total = _catalogue(path, metadata, dataset, limit, offset, split)
    start = time.perf_counter()
    with EmbeddedPlatform(_store_settings(db), service_settings=_service_settings(tenant)) as platform:
        report = platform.ingest(items, progress=progress, total=total)
        stored = platform.store.count(tenant=platform.tenant)
    elapsed = time.perf_counter() - start
    console.print(f"published {report.published}, indexed {report.indexed}, failed {len(report.failed)} "
                  f"in {elapsed:.1f} s ({report.published / max(elapsed, 1e-9):.1f} img/s); {stored} images in the index")
    for image_id, reason, message in report.failed:
        console.print(f"  [red]failed[/] {image_id}: {reason}: {message}")


def _catalogue(path: Path | None, metadata: Path | None, dataset: "Dataset | None", limit: int | None, offset: int,
               split: str):
    """The items a command names: a folder (with metadata) or a built-in dataset; and their count if known."""
    from visearch.shared import datasets

    if (path is None) == (dataset is None):
        raise typer.BadParameter("give either a folder PATH or --dataset")
    if dataset is Dataset.fashion_mnist:
        return datasets.fashion_mnist(split, limit=limit, offset=offset), limit
    if dataset is Dataset.photos:
        items = datasets.photo_catalogue()[offset:][:limit]
        return items, len(items)
    if not path.is_dir():
        raise typer.BadParameter(f"{path} is not a folder")
    items = datasets.folder_catalogue(path, metadata)
    if limit is not None:
        items = (item for i, item in enumerate(items) if i < limit)
    return items, None


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
    server: Annotated[Optional[str], typer.Option("--server", help="Ask a running ranking service (host:port) instead of searching in-process, e.g. 127.0.0.1:50051 for `make up`.")] = None,
) -> None:
    """Search the index by image, text or indexed id, with filters."""
    request = _search_request(image, text, image_id, top_k, offset, category, brand, in_stock, price_min, price_max)
    request.tenant = tenant or ""
    if server:
        import grpc

        from visearch.v1 import search_pb2_grpc

        with grpc.insecure_channel(server) as channel:
            try:
                response = search_pb2_grpc.SearchServiceStub(channel).Search(request, timeout=30)
            except grpc.RpcError as exc:
                console.print(f"[red]error[/] {exc.code().name}: {exc.details()}")
                raise typer.Exit(2) from exc
    else:
        from visearch.shared.embedded import EmbeddedPlatform

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
    """Run one service as a long-running process (gRPC with health and reflection, /metrics).

    With VISEARCH_KAFKA_BOOTSTRAP set, embedding and indexer also consume their pipeline topic.
    """
    settings = ServiceSettings()
    if port is not None:
        settings.grpc_port = port
    if service is ServiceName.embedding:
        from visearch.services.embedding.server import main as run
    elif service is ServiceName.indexer:
        from visearch.services.indexer.server import main as run
    else:
        from visearch.services.ranking.server import main as run
    raise typer.Exit(run(settings))


@topics_app.command("create")
def topics_create(bootstrap: BootstrapOption = None) -> None:
    """Create the pipeline's topics and their .dlq topics (partitions, retention from VISEARCH_KAFKA_*)."""
    from visearch.shared.config import PipelineSettings
    from visearch.shared.kafka import create_topics

    settings = _kafka_settings(bootstrap)
    for topic, state in create_topics(settings, PipelineSettings().stage_list).items():
        console.print(f"{state:8s} {topic}")


@topics_app.command("lag")
def topics_lag(bootstrap: BootstrapOption = None) -> None:
    """Consumer lag of each stage's group on its input topic, per partition."""
    from visearch.shared.config import PipelineSettings
    from visearch.shared.kafka import group_lag
    from visearch.shared.transport import stage_topics

    settings = _kafka_settings(bootstrap)
    for stage, topics in stage_topics(PipelineSettings().stage_list, settings.topic_prefix).items():
        lag = group_lag(settings, topics.input, f"visearch-{stage}")
        console.print(f"{stage:14s} {topics.input:28s} total {sum(lag.values()):6d}  per partition {lag}")


@app.command()
def publish(
    path: Annotated[Optional[Path], typer.Argument(help="Folder of images to publish (recursively).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="JSONL or CSV of product fields keyed by image_id or file.")] = None,
    dataset: Annotated[Optional[Dataset], typer.Option(help="Built-in real dataset instead of a folder.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Publish at most this many items.")] = None,
    offset: Annotated[int, typer.Option(help="Skip this many items of a dataset first.")] = 0,
    split: Annotated[str, typer.Option(help="Fashion-MNIST split: train or test.")] = "train",
    tenant: TenantOption = None,
    bootstrap: BootstrapOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Publish upsert ImageEvents (inline image bytes) to Kafka, as an upstream system would."""
    from tqdm import tqdm

    from visearch.shared.embedded import item_to_event
    from visearch.shared.kafka import KafkaTransport, images_topic
    from visearch.shared.pipeline import encode_event

    items, total = _catalogue(path, metadata, dataset, limit, offset, split)
    settings = _kafka_settings(bootstrap)
    transport = KafkaTransport(settings, "visearch-publish")
    topic, count, start = images_topic(settings), 0, time.perf_counter()
    try:
        for item in tqdm(items, total=total, unit="event", desc="publish", disable=not progress):
            item.content, item.uri = item.read_bytes(), None  # inline bytes: consumers need no access to our files
            transport.produce(topic, *encode_event(item_to_event(item, tenant or "")))
            count += 1
            if count % 256 == 0:
                transport.flush()
        transport.flush()
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    console.print(f"published {count} events to {topic} in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.0f} events/s)")


def _publish_events(events, bootstrap: str | None) -> None:
    from visearch.shared.kafka import KafkaTransport, images_topic
    from visearch.shared.pipeline import encode_event

    settings = _kafka_settings(bootstrap)
    transport = KafkaTransport(settings, "visearch-publish")
    try:
        for event in events:
            transport.produce(images_topic(settings), *encode_event(event))
        transport.flush()
    finally:
        transport.close()


@app.command("publish-delete")
def publish_delete(
    image_ids: Annotated[list[str], typer.Argument(help="Image ids to delete.")],
    tenant: TenantOption = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Publish delete events: the indexer removes every vector of these images."""
    from visearch.v1 import events_pb2

    _publish_events([events_pb2.ImageEvent(image_id=i, kind=events_pb2.ImageEvent.KIND_DELETE, tenant=tenant or "")
                     for i in image_ids], bootstrap)
    console.print(f"published {len(image_ids)} delete events")


@app.command("publish-update")
def publish_update(
    image_id: Annotated[str, typer.Argument(help="Image id to update.")],
    in_stock: Annotated[bool, typer.Option("--in-stock/--out-of-stock", help="New stock state.")],
    price: Annotated[float, typer.Option(help="New price.")],
    title: Annotated[str, typer.Option(help="New title (empty keeps the stored one).")] = "",
    tenant: TenantOption = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Publish an attribute update: Milvus attributes change, the models are skipped."""
    from visearch.v1 import events_pb2

    event = events_pb2.ImageEvent(image_id=image_id, kind=events_pb2.ImageEvent.KIND_ATTRIBUTE_UPDATE, tenant=tenant or "",
                                  product=events_pb2.Product(in_stock=in_stock, price=price, title=title))
    _publish_events([event], bootstrap)
    console.print(f"published attribute update for {image_id}")


@dlq_app.command("inspect")
def dlq_inspect(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic, e.g. visearch.images.v1.dlq.")],
    limit: Annotated[int, typer.Option(help="Show at most this many messages.")] = 20,
    bootstrap: BootstrapOption = None,
) -> None:
    """Show dead letters with their reason, stage, original offset and error (reads without committing)."""
    from visearch.shared.dlq import read_dead_letters

    table = Table(title=topic, title_justify="left")
    for col in ("partition:offset", "key", "reason", "stage", "from", "exception", "error"):
        table.add_column(col)
    for letter in read_dead_letters(_kafka_settings(bootstrap), topic, limit):
        table.add_row(f"{letter.partition}:{letter.offset}", letter.key, letter.reason, letter.stage,
                      f"{letter.source_topic}@{letter.source_partition}:{letter.source_offset}", letter.exception, letter.error[:80])
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic to replay.")],
    reason: Annotated[Optional[list[str]], typer.Option(help="Only replay letters with this reason (repeatable).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Examine at most this many letters.")] = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Re-publish dead letters to the topic they came from (after a fix); progress is committed by the
    consumer group visearch-dlq-replay, so each letter is replayed once."""
    from visearch.shared.dlq import replay_dead_letters

    replayed, skipped = replay_dead_letters(_kafka_settings(bootstrap), topic, reasons=reason, limit=limit)
    console.print(f"replayed {replayed}, skipped {skipped} (other reasons)")


@app.command()
def health(
    addresses: Annotated[list[str], typer.Argument(help="gRPC servers to check, host:port.")],
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for SERVING.")] = 0.0,
) -> None:
    """Check grpc.health.v1 of each server; exit 1 unless all are SERVING (within --wait seconds)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + wait
    for address in addresses:
        while True:
            with grpc.insecure_channel(address) as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    status = health_pb2.HealthCheckResponse.UNKNOWN
            if status == health_pb2.HealthCheckResponse.SERVING:
                console.print(f"SERVING  {address}")
                break
            if time.monotonic() >= deadline:
                console.print(f"[red]{health_pb2.HealthCheckResponse.ServingStatus.Name(status)}[/]  {address}")
                raise typer.Exit(1)
            time.sleep(0.5)


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
