"""The gateway's side of the CLI: ``visearch serve gateway`` (over gRPC services, or over an embedded platform
on a Milvus Lite file) and the playground at the end of ``visearch demo``."""

from __future__ import annotations

import os

from visearch.shared.config import GatewaySettings, ImageSettings, ServiceSettings, StoreSettings

DEFAULT_PORT = 8080


def playground_url(host: str, port: int, tenant: str = "") -> str:
    """The playground's address on a gateway at ``host:port`` (for a tenant, when given)."""
    return f"http://{host}:{port}/playground/" + (f"?tenant={tenant}" if tenant else "")


def serve(port: int | None, db: str | None, tenant: str | None = None) -> int:
    """Run the gateway until SIGTERM: over ``VISEARCH_GATEWAY_SEARCH_ADDR`` when it is set, else over an
    embedded platform on ``db`` (every service in this process, the thumbnails beside the file). Returns the
    exit code."""
    from visearch.services.gateway.server import main

    settings = GatewaySettings()
    if port is not None:
        settings.port = port
    if settings.search_addr:
        return main(settings)
    from visearch.embedded import EmbeddedPlatform
    from visearch.services.gateway.backend import Backend

    service = ServiceSettings(tenant=tenant) if tenant else ServiceSettings()
    if tenant:
        os.environ["VISEARCH_TENANT"] = tenant  # the gateway's default tenant (thumbnails), as the platform's
    store = StoreSettings(uri=db) if db else StoreSettings()
    # The embedded ranking may re-read indexed files by path (exact matches); HTTP clients' URLs never can.
    with EmbeddedPlatform(store, service_settings=service, image_settings=ImageSettings(allow_file_uris=True)) as p:
        backend = Backend.in_process(p.search, p.detection, p.ocr, p.classification)
        return main(settings, backend, thumbnails=p.thumbnails)
