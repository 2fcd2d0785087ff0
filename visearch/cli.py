"""The ``visearch`` command line: build models, ingest catalogues, search, serve, run the demo.

Every command works in embedded mode (one process, Milvus Lite at ``VISEARCH_MILVUS_URI`` or
``--db``); ``serve`` runs one service as its own process. Logs go to stderr as JSON lines; results
go to stdout (``--json`` for machine-readable output).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from visearch.shared.config import ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.errors import VisearchError
from visearch.shared.logging import configure_logging

app = typer.Typer(
    help="visearch: visual search and recognition platform.", no_args_is_help=True, pretty_exceptions_enable=False
)
models_app = typer.Typer(help="Build and inspect the ONNX models (needs the `build` extra).", no_args_is_help=True)
app.add_typer(models_app, name="models")
topics_app = typer.Typer(help="Kafka topics of the pipeline (admin).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
dlq_app = typer.Typer(help="Inspect and replay dead-letter topics.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

# Sub-commands kept in their own modules (each imports its heavy dependencies only when it runs).
from visearch.cli_eval import eval_app  # noqa: E402 (after `app`: the modules are plain typer apps)
from visearch.cli_rank import rank_app  # noqa: E402
from visearch.cli_store import store_app  # noqa: E402
from visearch.cli_train import train_app  # noqa: E402
from visearch.cli_user import user_app  # noqa: E402

app.add_typer(eval_app, name="eval")
app.add_typer(rank_app, name="rank")
app.add_typer(store_app, name="store")
app.add_typer(train_app, name="train")
app.add_typer(user_app, name="user")

BootstrapOption = Annotated[
    Optional[str],
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap servers. Default: $VISEARCH_KAFKA_BOOTSTRAP or 127.0.0.1:9092 (the local stack).",
    ),
]
console = Console(width=None if sys.stdout.isatty() else 140)

TenantOption = Annotated[
    Optional[str], typer.Option("--tenant", help="Tenant (catalogue owner). Default: $VISEARCH_TENANT or 'default'.")
]
DbOption = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        help="Milvus URI: a .db path (Milvus Lite) or http://host:19530. Default: $VISEARCH_MILVUS_URI or ~/.cache/visearch/milvus.db.",
    ),
]


ServerOption = Annotated[
    Optional[str],
    typer.Option(
        "--server",
        help="Ask a running ranking service (host:port) instead of searching in-process, e.g. 127.0.0.1:50051 for `make up`. TLS, client certificate and token from $VISEARCH_SECURITY_* (docs/operations.md#security).",
    ),
]
DEMO_PHOTOS = "photos"
DEMO_FASHION = "fashion"


class Dataset(str, Enum):
    photos = "photos"
    fashion_mnist = "fashion-mnist"


class ServiceName(str, Enum):
    detection = "detection"
    embedding = "embedding"
    ocr = "ocr"
    classification = "classification"
    indexer = "indexer"
    ranking = "ranking"
    gateway = "gateway"  # HTTP/JSON API and playground over the others (services/gateway, visearch/cli_gateway.py)
    profiles = "profiles"  # no API: folds the feedback topic into user profiles (services/profiles/server.py)
    lag_exporter = "lag-exporter"  # no gRPC: the pipeline groups' consumer lag on /metrics (shared/kafka_lag.py)


@contextlib.contextmanager
def _kafka_errors() -> Iterator[None]:
    """Kafka settings that cannot work, a TLS or SASL failure (ConfigError) or an unreachable broker: one
    red line and exit code 2 instead of a traceback."""
    from visearch.shared.errors import ConfigError, DependencyUnavailableError

    try:
        yield
    except (ConfigError, DependencyUnavailableError) as exc:
        console.print(f"[red]Kafka:[/] {exc}")
        raise typer.Exit(2) from exc


def _kafka_settings(bootstrap: str | None):
    from visearch.shared.config import KafkaSettings

    with _kafka_errors():
        settings = KafkaSettings()
    settings.bootstrap = bootstrap or settings.bootstrap or "127.0.0.1:9092"
    return settings


def _store_settings(db: str | None) -> StoreSettings:
    return StoreSettings(uri=db) if db else StoreSettings()


def _service_settings(tenant: str | None) -> ServiceSettings:
    return ServiceSettings(tenant=tenant) if tenant else ServiceSettings()


def _local_image_settings():
    """ImageSettings of the CLI's in-process platform: it may read the operator's own catalogue files by
    path (services keep VISEARCH_IMAGE_ALLOW_FILE_URIS off); http(s) URLs keep every fetch rule."""
    from visearch.shared.config import ImageSettings

    return ImageSettings(allow_file_uris=True)


@app.callback()
def main(log_level: Annotated[str, typer.Option(help="Log level for JSON logs on stderr.")] = "warning") -> None:
    """visearch: visual search and recognition platform."""
    configure_logging("cli", log_level)


@models_app.command("build")
def models_build(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this model (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the cache has this recipe.")] = False,
    triton: Annotated[
        Optional[Path], typer.Option(help="Also write a Triton model repository into this folder.")
    ] = None,
    flavour: Annotated[
        str,
        typer.Option(
            help="Triton repository flavour: local (python backend, CPU) or production (onnxruntime backend, GPU)."
        ),
    ] = "local",
) -> None:
    """Export the models to ONNX in the model cache, verify them against the source framework, and
    optionally write a Triton model repository."""
    cache = ModelSettings().cache_dir
    from visearch.shared.models.registry import ALL_BUILDS as ALL_MODELS

    missing = [s.name for s in ALL_MODELS if not (s.directory(cache) / "meta.json").is_file()]
    if missing or force or only:
        try:
            from visearch.offline.models.build import build_models
        except ImportError as exc:  # torch missing
            raise typer.BadParameter(f"{exc}: install the build extra: pip install -e '.[build,data]'") from exc
        for name, path in build_models(cache, only, force).items():
            meta = json.loads((path / "meta.json").read_text())
            console.print(f"[green]ok[/] {name} -> {path}  parity: {meta.get('parity')}")
    else:
        console.print(f"models up to date in {cache}")
    if triton is not None:
        from visearch.offline.models.triton_repository import write_repository

        for folder in write_repository(cache, triton, flavour):
            console.print(f"[green]ok[/] triton ({flavour}) {folder}")


@models_app.command("list")
def models_list() -> None:
    """Show each model's recipe key and whether it is built."""
    from visearch.shared.models.registry import ALL_BUILDS as ALL_MODELS

    cache = ModelSettings().cache_dir
    for spec in ALL_MODELS:
        folder = spec.directory(cache)
        state = "built" if (folder / "meta.json").is_file() else "missing"
        console.print(f"{spec.name:22s} {spec.key}  {state:8s} {folder}")


@app.command()
def ingest(
    path: Annotated[Optional[Path], typer.Argument(help="Folder of images to ingest (recursively).")] = None,
    metadata: Annotated[
        Optional[Path], typer.Option(help="JSONL or CSV of product fields keyed by image_id or file.")
    ] = None,
    dataset: Annotated[Optional[Dataset], typer.Option(help="Built-in real dataset instead of a folder.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Ingest at most this many items.")] = None,
    offset: Annotated[int, typer.Option(help="Skip this many items of a dataset first.")] = 0,
    split: Annotated[str, typer.Option(help="Fashion-MNIST split: train or test.")] = "train",
    tenant: TenantOption = None,
    db: DbOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    stages: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated ingest chain, ending with indexer (default: $VISEARCH_PIPELINE_STAGES, all five stages), e.g. embedding,classification,indexer for thumbnails."
        ),
    ] = None,
) -> None:
    """Ingest a catalogue through the pipeline (detection -> embedding -> ocr -> classification -> indexer)
    into Milvus, in this process."""
    from visearch.embedded import EmbeddedPlatform

    items, total = _catalogue(path, metadata, dataset, limit, offset, split)
    chain = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    start = time.perf_counter()
    with EmbeddedPlatform(
        _store_settings(db),
        service_settings=_service_settings(tenant),
        stages=chain,
        image_settings=_local_image_settings(),
    ) as platform:
        report = platform.ingest(items, progress=progress, total=total)
        stored = platform.store.count(tenant=platform.tenant)
    elapsed = time.perf_counter() - start
    console.print(
        f"published {report.published}, indexed {report.indexed}, failed {len(report.failed)} "
        f"in {elapsed:.1f} s ({report.published / max(elapsed, 1e-9):.1f} img/s); {stored} images in the index"
    )
    for image_id, reason, message in report.failed:
        console.print(f"  [red]failed[/] {image_id}: {reason}: {message}")


def _catalogue(
    path: Path | None, metadata: Path | None, dataset: Dataset | None, limit: int | None, offset: int, split: str
):
    """The items a command names: a folder (with metadata) or a built-in dataset; and their count if known."""
    from visearch.offline import datasets

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


def _image_message(image: str):
    """A visearch.v1.Image for a CLI argument: an http(s) URL, or a file read into inline bytes."""
    from visearch.v1 import common_pb2

    if image.startswith(("http://", "https://")):
        return common_pb2.Image(uri=image)
    try:
        return common_pb2.Image(content=Path(image).read_bytes())
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {image}: {exc.strerror}") from exc


def _search_request(
    image: str | None,
    text: str | None,
    image_id: str | None,
    top_k: int,
    offset: int,
    category: list[str] | None,
    brand: list[str] | None,
    in_stock: bool | None,
    price_min: float | None,
    price_max: float | None,
    colour: list[str] | None = None,
    region: str | None = None,
    objects: bool = False,
    safe: bool | None = None,
):
    from visearch.v1 import common_pb2, search_pb2

    if sum(x is not None for x in (image, text, image_id)) + bool(colour) != 1:
        raise typer.BadParameter("give exactly one of --image, --text, --id, --colour")
    flt = search_pb2.Filter(categories=category or [], brands=brand or [])
    if in_stock is not None:
        flt.in_stock = in_stock
    if price_min is not None:
        flt.price_min = price_min
    if price_max is not None:
        flt.price_max = price_max
    if safe is not None:
        flt.safe = safe
    request = search_pb2.SearchRequest(top_k=top_k, offset=offset, filter=flt)
    if (region or objects) and image is None:
        raise typer.BadParameter("--region and --objects go with --image")
    if image is not None:
        request.image.CopyFrom(_image_message(image))
        if region:
            try:
                x1, y1, x2, y2 = (float(v) for v in region.split(","))
            except ValueError as exc:
                raise typer.BadParameter("--region is x1,y1,x2,y2 in pixels") from exc
            request.region.CopyFrom(common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2))
        if objects:
            request.region_mode = search_pb2.REGION_MODE_QUERY_OBJECTS
    elif text is not None:
        request.text = text
    elif colour:
        request.colour.palette.colours.extend(search_pb2.WeightedColour(colour=c, weight=1.0) for c in colour)
    else:
        request.image_id = image_id
    return request


def _ranking_profile(profile: str | None, weights: list[str] | None, rrf: bool):
    """A RankingProfile from ``--profile``, ``--weight factor=w`` (repeatable) and ``--rrf``."""
    from visearch.v1 import search_pb2

    ranking = search_pb2.RankingProfile(
        name=profile or "", fusion=search_pb2.FUSION_RRF if rrf else search_pb2.FUSION_DEFAULT
    )
    for item in weights or []:
        name, _, value = item.partition("=")
        try:
            ranking.weights[name.strip()] = float(value)
        except ValueError as exc:
            raise typer.BadParameter(f"--weight is factor=number, got {item!r}") from exc
    return ranking


ProfileOption = Annotated[
    Optional[str],
    typer.Option(
        "--profile",
        help="Ranking profile: blended, visual_only, colour, or one configured in VISEARCH_RANKING_PROFILES.",
    ),
]
WeightOption = Annotated[
    Optional[list[str]],
    typer.Option("--weight", help="Override one factor's weight, factor=number (repeatable), e.g. --weight bm25=0."),
]
RrfOption = Annotated[bool, typer.Option("--rrf", help="Reciprocal rank fusion instead of the weighted blend.")]


def print_hits(title: str, response, as_json: bool = False) -> None:
    """Print a SearchResponse as a table (or JSON lines)."""
    if as_json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True)))
        return
    ranker = f", ranker {response.ranker}" if response.ranker else ""
    table = Table(title=f"{title}  ({response.took_ms:.0f} ms{ranker})", title_justify="left")
    for col in ("#", "image_id", "score", "factors", "matched region", "category", "title"):
        table.add_column(col)
    for rank, hit in enumerate(response.hits, 1):
        # value, then its contribution to the score in brackets
        factors = ", ".join(f"{f.name}={f.value:.3f} ({f.contribution:+.3f})" for f in hit.factors)
        region = ""
        if hit.HasField("region"):
            b = hit.region.box
            region = f"#{hit.region.index} {hit.region.label} [{b.x1:.0f},{b.y1:.0f},{b.x2:.0f},{b.y2:.0f}]"
        table.add_row(str(rank), hit.image_id, f"{hit.score:.3f}", factors, region, hit.category, hit.title[:50])
    console.print(table)
    if response.signals:  # which query signals the search used, and why others were skipped
        console.print(
            "query signals: "
            + ", ".join(
                f"{s.name} ({s.took_ms:.0f} ms)" if s.used else f"{s.name} skipped: {s.skipped}"
                for s in response.signals
            )
        )
    if response.HasField("main_region"):
        b = response.main_region
        console.print(
            f"framed query: searched its main photo [{b.x1:.0f},{b.y1:.0f},{b.x2:.0f},{b.y2:.0f}] beside the whole image"
        )


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
    colour: Annotated[
        Optional[list[str]],
        typer.Option(
            "--colour",
            help="Search by colour: a palette name (red, navy...) or hex (#d02020); repeatable for a palette.",
        ),
    ] = None,
    region: Annotated[
        Optional[str], typer.Option(help="With --image: search with this box of the image, x1,y1,x2,y2 pixels.")
    ] = None,
    objects: Annotated[
        bool,
        typer.Option(
            "--objects", help="With --image: detect the query's objects and search the indexed regions with each."
        ),
    ] = False,
    safe: Annotated[Optional[bool], typer.Option("--safe/--unsafe", help="Filter on the moderation verdict.")] = None,
    profile: ProfileOption = None,
    weight: WeightOption = None,
    rrf: RrfOption = False,
    understand: Annotated[
        Optional[bool],
        typer.Option(
            "--understand/--no-understand",
            help="With --image: read the query's text and tags for the text and tag factors (default: on).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    tenant: TenantOption = None,
    db: DbOption = None,
    server: ServerOption = None,
) -> None:
    """Search the index by image (whole, a region, or its objects), text, colour or indexed id, with filters.

    Hits are ranked by the blended ranker; each factor is printed as value (contribution to the score).
    """
    request = _search_request(
        image,
        text,
        image_id,
        top_k,
        offset,
        category,
        brand,
        in_stock,
        price_min,
        price_max,
        colour,
        region,
        objects,
        safe,
    )
    request.tenant = tenant or ""
    request.ranking.CopyFrom(_ranking_profile(profile, weight, rrf))
    if understand is not None:
        request.understand_query = understand
    response = _call_search("Search", request, server, db, tenant)
    print_hits(f"query: {request.WhichOneof('query')}", response, as_json)


def _call_search(method: str, request, server: str | None, db: Path | None, tenant: str | None):
    """Call a SearchService method on a running ranking service (``server``) or in-process; exit 2 on an error."""
    if server:
        import grpc

        from visearch.shared.grpcutil import client_channel
        from visearch.v1 import search_pb2_grpc

        with client_channel(server) as channel:
            try:
                return getattr(search_pb2_grpc.SearchServiceStub(channel), method)(request, timeout=60)
            except grpc.RpcError as exc:
                console.print(f"[red]error[/] {exc.code().name}: {exc.details()}")
                raise typer.Exit(2) from exc
    from visearch.embedded import EmbeddedPlatform

    # File URIs: exact-match verification re-reads indexed images by the paths `ingest` stored.
    with EmbeddedPlatform(
        _store_settings(db), service_settings=_service_settings(tenant), image_settings=_local_image_settings()
    ) as platform:
        try:
            return getattr(platform.search, method)(request, None)
        except VisearchError as exc:
            console.print(f"[red]error[/] {exc.code.name}: {exc}")
            raise typer.Exit(2) from exc


@app.command()
def similar(
    image_id: Annotated[Optional[str], typer.Option("--id", help="An indexed image.")] = None,
    image: Annotated[Optional[str], typer.Option(help="A query image: a file path or http(s) URL.")] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Only near-duplicates and exact matches (pHash, ORB + RANSAC).")
    ] = False,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Number of hits.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    tenant: TenantOption = None,
    db: DbOption = None,
    server: ServerOption = None,
) -> None:
    """More like an indexed or given image; --exact keeps only verified duplicates and exact matches."""
    from visearch.v1 import search_pb2

    if (image_id is None) == (image is None):
        raise typer.BadParameter("give exactly one of --id, --image")
    request = search_pb2.SimilarToRequest(exact_only=exact, top_k=top_k, tenant=tenant or "")
    if image_id is not None:
        request.image_id = image_id
    else:
        request.image.CopyFrom(_image_message(image))
    print_hits("exact matches" if exact else "similar", _call_search("SimilarTo", request, server, db, tenant), as_json)


@app.command()
def alternatives(
    image_id: Annotated[str, typer.Argument(help="An indexed item (typically out of stock).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Number of hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Hits to skip (pagination).")] = 0,
    profile: ProfileOption = None,
    weight: WeightOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    tenant: TenantOption = None,
    db: DbOption = None,
    server: ServerOption = None,
) -> None:
    """In-stock alternatives to an item: same taxonomy node (or category), visually closest first."""
    from visearch.v1 import search_pb2

    request = search_pb2.AlternativesRequest(
        image_id=image_id,
        top_k=top_k,
        offset=offset,
        tenant=tenant or "",
        ranking=_ranking_profile(profile, weight, False),
    )
    print_hits(
        f"in-stock alternatives to {image_id}", _call_search("Alternatives", request, server, db, tenant), as_json
    )


@app.command()
def tag(
    image_id: Annotated[Optional[str], typer.Option("--id", help="An indexed image.")] = None,
    image: Annotated[Optional[str], typer.Option(help="A query image: a file path or http(s) URL.")] = None,
    neighbours: Annotated[int, typer.Option(help="Visual neighbours whose linked text is aggregated.")] = 20,
    top_n: Annotated[int, typer.Option(help="Phrases to return.")] = 10,
    tenant: TenantOption = None,
    db: DbOption = None,
    server: ServerOption = None,
) -> None:
    """Open-ended tags: phrases from the titles, descriptions and OCR text of visually similar images."""
    from visearch.v1 import search_pb2

    if (image_id is None) == (image is None):
        raise typer.BadParameter("give exactly one of --id, --image")
    request = search_pb2.TagRequest(neighbours=neighbours, top_n=top_n, tenant=tenant or "")
    if image_id is not None:
        request.image_id = image_id
    else:
        request.image.CopyFrom(_image_message(image))
    response = _call_search("Tag", request, server, db, tenant)
    table = Table(title=f"open-ended tags from {response.neighbours_used} neighbours", title_justify="left")
    table.add_column("phrase")
    table.add_column("score")
    for phrase in response.phrases:
        table.add_row(phrase.value, f"{phrase.score:.3f}")
    console.print(table)
    print_attributes("model tags", response.model_tags)


def print_attributes(title: str, attributes) -> None:
    """Print an attribute list (attribute, value, score) as a table."""
    table = Table(title=title, title_justify="left")
    for col in ("attribute", "value", "score"):
        table.add_column(col)
    for a in attributes:
        table.add_row(a.name, a.value, f"{a.score:.3f}")
    console.print(table)


def print_recognition(name: str, result, detections, text) -> None:
    """Print what recognition found in one image: objects, text, taxonomy path, tags, moderation."""
    objects = (
        ", ".join(
            f"{d.label} {d.score:.2f} [{d.box.x1:.0f},{d.box.y1:.0f},{d.box.x2:.0f},{d.box.y2:.0f}]" for d in detections
        )
        or "-"
    )
    path = " > ".join(f"{n.name} ({n.score:.2f})" for n in result.taxonomy) or "-"
    colours = ", ".join(f"{c.name} {c.fraction:.0%}" for c in result.colours)
    tags = ", ".join(f"{a.value} {a.score:.2f}" for a in result.attributes if a.name == "concept") or "-"
    quality = ", ".join(
        f"{a.name}={a.value}"
        for a in result.attributes
        if a.name in ("blur", "resolution", "has_text", "aspect", "collage")
    )
    verdict = "safe" if result.moderation.safe else "UNSAFE"
    scores = ", ".join(f"{s.name} {s.score:.2f}" for s in result.moderation.scores)
    console.print(
        f"[bold]{name}[/]\n  objects:    {objects}\n  text:       {text.replace(chr(10), ' | ') or '-'}"
        f"\n  taxonomy:   {path}\n  colours:    {colours}\n  concepts:   {tags}\n  quality:    {quality}"
        f"\n  moderation: {verdict} ({scores})"
    )


@app.command()
def recognize(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the responses as JSON.")] = False,
) -> None:
    """Detect objects, read text, classify (taxonomy, tags, colours, quality) and moderate images, in-process."""
    import tempfile

    from visearch.embedded import EmbeddedPlatform
    from visearch.v1 import classification_pb2, common_pb2, detection_pb2, ocr_pb2

    # The recognition services need no index; the platform still opens one, in a throw-away folder.
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPlatform(StoreSettings(uri=str(Path(tmp) / "r.db"))) as platform:
        if platform.classification is None:
            raise typer.BadParameter(
                "recognize needs the detection, ocr and classification stages (VISEARCH_PIPELINE_STAGES)"
            )
        for path in images:
            msg = [common_pb2.Image(content=path.read_bytes())]
            try:
                detected = platform.detection.Detect(detection_pb2.DetectRequest(images=msg), None).results[0]
                text = platform.ocr.Read(ocr_pb2.ReadRequest(images=msg), None).results[0]
                result = platform.classification.Classify(classification_pb2.ClassifyRequest(images=msg), None).results[
                    0
                ]
            except VisearchError as exc:
                console.print(f"[red]{path}[/]: {exc.code.name} {exc.reason}: {exc}")
                continue
            if as_json:
                from google.protobuf.json_format import MessageToDict

                print(
                    json.dumps(
                        {
                            "image": str(path),
                            "detections": MessageToDict(detected),
                            "text": MessageToDict(text),
                            "classification": MessageToDict(result),
                        }
                    )
                )
            else:
                print_recognition(str(path), result, detected.detections, text.text)


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    port: Annotated[
        Optional[int],
        typer.Option(
            help="gRPC port (default $VISEARCH_GRPC_PORT or 50051); gateway: HTTP port ($VISEARCH_GATEWAY_PORT)."
        ),
    ] = None,
    db: Annotated[
        Optional[str],
        typer.Option(
            "--db", help="gateway only, without VISEARCH_GATEWAY_SEARCH_ADDR: serve over this catalogue in-process."
        ),
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Run one service as a long-running process (gRPC with health and reflection, /metrics).

    With VISEARCH_KAFKA_BOOTSTRAP set, every stage in VISEARCH_PIPELINE_STAGES (detection, embedding,
    ocr, classification, indexer) also consumes its pipeline topic. VISEARCH_SERVICE_ROLE=grpc serves
    the gRPC API only, =worker runs the stage worker only (exit 2 when there is none to run).
    `lag-exporter` serves no gRPC: the pipeline groups' consumer lag, read from the broker at each scrape,
    on VISEARCH_METRICS_PORT (/metrics; /livez for probes). `gateway` serves the HTTP/JSON API, /docs and the
    web playground over VISEARCH_GATEWAY_SEARCH_ADDR (or, without it, over the catalogue --db in-process).
    """
    import importlib

    from visearch.shared.errors import ConfigError

    settings = ServiceSettings()
    if port is not None:
        settings.grpc_port = port
    try:
        if service is ServiceName.gateway:
            from visearch import cli_gateway

            raise typer.Exit(cli_gateway.serve(port, db, tenant))
        if service is ServiceName.lag_exporter:
            from visearch.shared.kafka_lag import main as run_exporter

            raise typer.Exit(run_exporter(settings))
        run = importlib.import_module(f"visearch.services.{service.value}.server").main
        if service is ServiceName.ranking and not settings.embedding_addr:
            # no embedding service to call: embed the queries in this process
            from visearch.services.embedding.service import EmbeddingService
            from visearch.shared.config import ImageSettings
            from visearch.shared.encoders import Embedder
            from visearch.shared.grpcutil import InProcessStub

            code = run(settings, embedding=InProcessStub(EmbeddingService(Embedder.from_cache(), ImageSettings())))
        else:
            code = run(settings)
    except ConfigError as exc:
        console.print(f"[red]configuration error[/]: {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@topics_app.command("create")
def topics_create(bootstrap: BootstrapOption = None) -> None:
    """Create the pipeline's topics and their .dlq topics (partitions, retention from VISEARCH_KAFKA_*)."""
    from visearch.shared.config import PipelineSettings
    from visearch.shared.kafka import create_topics

    settings = _kafka_settings(bootstrap)
    with _kafka_errors():
        created = create_topics(settings, PipelineSettings().stage_list)
    for topic, state in created.items():
        console.print(f"{state:8s} {topic}")


@topics_app.command("lag")
def topics_lag(bootstrap: BootstrapOption = None) -> None:
    """Consumer lag of each stage's group on its input topic, per partition, and the age of its oldest waiting
    record: the figures the lag exporter exports (visearch_kafka_consumer_lag_records / _seconds)."""
    import time

    from visearch.shared.config import PipelineSettings
    from visearch.shared.kafka_lag import LagReader, pipeline_lag_targets

    settings = _kafka_settings(bootstrap)
    targets = pipeline_lag_targets(settings, PipelineSettings().stage_list)
    with _kafka_errors():
        reader = LagReader(settings, oldest_records=True)
        try:
            lags = reader.read(targets)
        finally:
            reader.close()
    now = time.time()
    for target in targets:
        mine = [lag for lag in lags if lag.group == target.group]
        per_partition = {lag.partition: lag.records for lag in mine}
        ages = [age for lag in mine if (age := lag.age_s(now))]
        oldest = f"  oldest waiting {max(ages):.0f} s" if ages else ""
        stage = target.group.removeprefix("visearch-")
        console.print(
            f"{stage:14s} {target.topic:28s} total {sum(per_partition.values()):6d}  per partition {per_partition}{oldest}"
        )


@app.command()
def publish(
    path: Annotated[Optional[Path], typer.Argument(help="Folder of images to publish (recursively).")] = None,
    metadata: Annotated[
        Optional[Path], typer.Option(help="JSONL or CSV of product fields keyed by image_id or file.")
    ] = None,
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

    from visearch.embedded import item_to_event
    from visearch.shared.kafka import KafkaTransport, images_topic
    from visearch.shared.pipeline import encode_event

    items, total = _catalogue(path, metadata, dataset, limit, offset, split)
    settings = _kafka_settings(bootstrap)
    with _kafka_errors():
        transport = KafkaTransport(settings, "visearch-publish")
    topic, count, start = images_topic(settings), 0, time.perf_counter()
    try:
        for item in tqdm(items, total=total, unit="event", desc="publish", disable=not progress):
            item.content, item.uri = item.read_bytes(), None  # inline bytes: consumers need no access to our files
            transport.produce(topic, *encode_event(item_to_event(item, tenant or ""), settings.max_message_bytes))
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
    with _kafka_errors():
        transport = KafkaTransport(settings, "visearch-publish")
    try:
        for event in events:
            transport.produce(images_topic(settings), *encode_event(event, settings.max_message_bytes))
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

    _publish_events(
        [
            events_pb2.ImageEvent(image_id=i, kind=events_pb2.ImageEvent.KIND_DELETE, tenant=tenant or "")
            for i in image_ids
        ],
        bootstrap,
    )
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

    event = events_pb2.ImageEvent(
        image_id=image_id,
        kind=events_pb2.ImageEvent.KIND_ATTRIBUTE_UPDATE,
        tenant=tenant or "",
        product=events_pb2.Product(in_stock=in_stock, price=price, title=title),
    )
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
    with _kafka_errors():
        letters = read_dead_letters(_kafka_settings(bootstrap), topic, limit)
    for letter in letters:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.key,
            letter.reason,
            letter.stage,
            f"{letter.source_topic}@{letter.source_partition}:{letter.source_offset}",
            letter.exception,
            letter.error[:80],
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic to replay.")],
    reason: Annotated[
        Optional[list[str]], typer.Option(help="Only replay letters with this reason (repeatable).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Examine at most this many letters.")] = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Re-publish dead letters to the topic they came from (after a fix); progress is committed by the
    consumer group visearch-dlq-replay, so each letter is replayed once."""
    from visearch.shared.dlq import replay_dead_letters

    with _kafka_errors():
        replayed, skipped = replay_dead_letters(_kafka_settings(bootstrap), topic, reasons=reason, limit=limit)
    console.print(f"replayed {replayed}, skipped {skipped} (other reasons)")


@app.command()
def health(
    addresses: Annotated[Optional[list[str]], typer.Argument(help="gRPC servers to check, host:port.")] = None,
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for SERVING.")] = 0.0,
    db: Annotated[
        Optional[str],
        typer.Option(
            "--db",
            help="Also check the vector store at this Milvus URI (a .db path or http://host:19530): reachable, version, layout and where keyword search runs.",
        ),
    ] = None,
) -> None:
    """Check grpc.health.v1 of each server (and, with --db, the vector store); exit 1 unless all are SERVING
    (within --wait seconds) and the store answers."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from visearch.shared.grpcutil import client_channel

    if not addresses and db is None:
        console.print("[red]nothing to check[/]: give gRPC addresses and/or --db")
        raise typer.Exit(2)
    if db is not None:
        _store_health(db)
    deadline = time.monotonic() + wait
    for address in addresses or []:
        while True:
            with client_channel(address) as channel:
                try:
                    status = (
                        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    )
                except grpc.RpcError:
                    status = health_pb2.HealthCheckResponse.UNKNOWN
            if status == health_pb2.HealthCheckResponse.SERVING:
                console.print(f"SERVING  {address}")
                break
            if time.monotonic() >= deadline:
                console.print(f"[red]{health_pb2.HealthCheckResponse.ServingStatus.Name(status)}[/]  {address}")
                raise typer.Exit(1)
            time.sleep(0.5)


def _store_health(db: str) -> None:
    """Print the store's version and layout (``OK``), or exit 1 when Milvus does not answer."""
    from visearch.shared.errors import ConfigError, DependencyUnavailableError
    from visearch.shared.store import MilvusStore

    try:
        store = MilvusStore(_store_settings(db))
    except (DependencyUnavailableError, ConfigError) as exc:
        console.print(f"[red]UNAVAILABLE[/]  store {db}: {exc}")
        raise typer.Exit(1) from exc
    try:
        where = "BM25 in Milvus" if store.full_text else "in each ranking process (Milvus 2.3 fallback)"
        console.print(
            f"OK       store {db}: Milvus {store.server_version}, layout {store.layout}, keyword search {where}"
        )
    finally:
        store.close()


@app.command()
def demo(
    fashion: Annotated[int, typer.Option(help="Fashion-MNIST items to ingest.")] = 2000,
    db: DbOption = None,
    serve_port: Annotated[
        Optional[int],
        typer.Option("--serve", help="Then serve the playground over the demo catalogue on this port until Ctrl-C."),
    ] = None,
) -> None:
    """Ingest real photos (every stage) and Fashion-MNIST products, show what recognition finds in a few
    photos, then search by image, region, text and colour, find exact matches and open-ended tags."""
    from PIL import Image

    from visearch.embedded import EmbeddedPlatform
    from visearch.offline import datasets
    from visearch.v1 import common_pb2, search_pb2

    with EmbeddedPlatform(_store_settings(db), image_settings=_local_image_settings()) as platform:
        photos = datasets.photo_catalogue()
        report = platform.ingest(photos, total=len(photos), tenant=DEMO_PHOTOS)
        # 28 x 28 thumbnails: no objects or text to find, so detection and OCR are left out of their chain.
        thumbs = [s for s in ("embedding", "classification", "indexer") if s in platform.stages]
        report_f = platform.ingest(
            datasets.fashion_mnist("train", limit=fashion), total=fashion, tenant=DEMO_FASHION, stages=thumbs
        )
        console.print(
            f"indexed {report.indexed} photos (tenant {DEMO_PHOTOS!r}) and {report_f.indexed} Fashion-MNIST "
            f"products (tenant {DEMO_FASHION!r}), {len(report.failed) + len(report_f.failed)} failed, "
            f"into {platform.store.settings.uri}"
        )

        dog = next(p for p in photos if p.image_id == "photo-dog")
        img = Image.open(io.BytesIO(dog.read_bytes())).convert("RGB")
        w, h = img.size
        variant = img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w // 2, h // 2)).rotate(5)
        buf = io.BytesIO()
        variant.save(buf, format="JPEG", quality=70)
        query = search_pb2.SearchRequest(image=common_pb2.Image(content=buf.getvalue()), top_k=5, tenant=DEMO_PHOTOS)
        print_hits(
            f"image query: cropped, resized, rotated JPEG copy of {dog.image_id}", platform.search.Search(query, None)
        )

        for text in ("dog", "a cup of coffee", "a cat"):
            request = search_pb2.SearchRequest(text=text, top_k=5, tenant=DEMO_PHOTOS)
            print_hits(f"text query over the photos: {text!r}", platform.search.Search(request, None))
        request = search_pb2.SearchRequest(text="ankle boot", top_k=5, tenant=DEMO_FASHION)
        print_hits("text query over the fashion catalogue: 'ankle boot'", platform.search.Search(request, None))

        if platform.classification is not None:
            _demo_recognition(platform, photos)

        held_out = next(datasets.fashion_mnist("test", limit=1))
        query = search_pb2.SearchRequest(
            image=common_pb2.Image(content=held_out.content),
            top_k=5,
            tenant=DEMO_FASHION,
            filter=search_pb2.Filter(in_stock=True),
        )
        print_hits(
            f"image query: held-out Fashion-MNIST {held_out.category!r}, in stock only",
            platform.search.Search(query, None),
        )
        tags = platform.search.Tag(
            search_pb2.TagRequest(
                image=common_pb2.Image(content=held_out.content), neighbours=20, top_n=5, tenant=DEMO_FASHION
            ),
            None,
        )
        console.print(
            f"open-ended tags of the held-out {held_out.category!r}, from its {tags.neighbours_used} visual "
            "neighbours' titles: " + ", ".join(f"{p.value} {p.score:.2f}" for p in tags.phrases)
        )
    _demo_playground(db, serve_port)


def _demo_playground(db: str | None, serve_port: int | None) -> None:
    """The demo's last words: where the playground is (served now with --serve, else the command to serve it)."""
    from visearch import cli_gateway

    port = serve_port or cli_gateway.DEFAULT_PORT
    url = cli_gateway.playground_url("127.0.0.1", port, DEMO_PHOTOS)
    db_arg = f" --db {db}" if db else ""
    if serve_port is None:
        console.print(
            f"playground: run '.venv/bin/visearch serve gateway{db_arg} --tenant {DEMO_PHOTOS} --port {port}' "
            f"(or give the demo --serve {port}: ingest, then serve), then open {url} (tenant {DEMO_FASHION!r}: "
            f"?tenant={DEMO_FASHION})"
        )
        return
    console.print(f"playground on the demo catalogue: {url} (Ctrl-C stops it)")
    raise typer.Exit(cli_gateway.serve(serve_port, db, DEMO_PHOTOS))


def _demo_recognition(platform, photos) -> None:
    """The recognition part of the demo: what the services see in a few real photos, then search by a
    region, by colour, for exact matches, and open-ended tags."""
    from PIL import Image, ImageDraw, ImageFont

    from visearch.v1 import classification_pb2, common_pb2, detection_pb2, ocr_pb2, search_pb2

    by_id = {p.image_id: p for p in photos}
    coffee = Image.open(io.BytesIO(by_id["photo-coffee"].read_bytes())).convert("RGB")
    draw = ImageDraw.Draw(coffee)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 36)
    draw.rectangle((20, 20, 420, 80), fill=(255, 255, 255))
    draw.text((30, 28), "ESPRESSO 2.50 EUR", font=font, fill=(10, 10, 10))
    signed = io.BytesIO()
    coffee.save(signed, format="JPEG", quality=92)
    samples = [
        (f"{i} ({by_id[i].title})", by_id[i].read_bytes()) for i in ("photo-dog", "photo-horses", "photo-astronaut")
    ]
    samples.append(("photo-coffee with text drawn on it", signed.getvalue()))
    console.rule("recognition: detection, OCR, taxonomy, tags, moderation")
    for name, data in samples:
        msg = [common_pb2.Image(content=data)]
        detected = platform.detection.Detect(detection_pb2.DetectRequest(images=msg), None).results[0]
        text = platform.ocr.Read(ocr_pb2.ReadRequest(images=msg), None).results[0]
        result = platform.classification.Classify(classification_pb2.ClassifyRequest(images=msg), None).results[0]
        print_recognition(name, result, detected.detections, text.text)

    dog = by_id["photo-dog"].read_bytes()
    detected = platform.detection.Detect(
        detection_pb2.DetectRequest(images=[common_pb2.Image(content=dog)]), None
    ).results[0]
    bicycle = next((d for d in detected.detections if d.label == "bicycle"), None)
    if bicycle is not None:
        crop = (
            Image.open(io.BytesIO(dog))
            .convert("RGB")
            .crop((bicycle.box.x1, bicycle.box.y1, bicycle.box.x2, bicycle.box.y2))
        )
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=85)
        request = search_pb2.SearchRequest(image=common_pb2.Image(content=buf.getvalue()), top_k=3, tenant=DEMO_PHOTOS)
        print_hits("region search: a crop of the bicycle in photo-dog", platform.search.Search(request, None))
    request = search_pb2.SearchRequest(top_k=5, tenant=DEMO_PHOTOS)
    request.colour.palette.colours.add(colour="red", weight=1.0)
    print_hits("colour search: palette ['red']", platform.search.Search(request, None))
    img = Image.open(io.BytesIO(by_id["photo-chelsea"].read_bytes())).convert("RGB")
    w, h = img.size
    copy = io.BytesIO()
    img.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w * 2 // 3, h * 2 // 3)).save(
        copy, format="JPEG", quality=60
    )
    request = search_pb2.SimilarToRequest(
        image=common_pb2.Image(content=copy.getvalue()), exact_only=True, top_k=3, tenant=DEMO_PHOTOS
    )
    print_hits(
        "exact match: a cropped, resized JPEG q60 copy of photo-chelsea", platform.search.SimilarTo(request, None)
    )


if __name__ == "__main__":
    sys.exit(app())
