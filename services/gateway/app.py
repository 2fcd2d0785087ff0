"""The HTTP/JSON API: the SearchService and recognition calls over HTTP, mirroring the protos.

Request and response bodies are the proto messages in the proto3 JSON mapping (``google.protobuf.json_format``;
camelCase names, snake_case also accepted). Routes (OpenAPI at ``/docs``, ``/openapi.json``):

- ``POST /v1/search`` (SearchRequest -> SearchResponse), ``/v1/similar`` (SimilarToRequest), ``/v1/alternatives``
  (AlternativesRequest), ``/v1/tag`` (TagRequest -> TagResponse), ``/v1/feedback`` (FeedbackRequest ->
  FeedbackResponse), ``/v1/recognize`` (``{"image": Image}`` -> objects, text, classification);
- ``POST /v1/{search,similar,tag,recognize}/upload``: the same with the image as a multipart file (part
  ``image``) and the rest of the request as JSON (part ``request``);
- ``GET /v1/thumbnails?image_id=&tenant=``: an indexed image's thumbnail (JPEG, from the thumbnail store);
- ``GET /healthz`` (alive), ``/readyz`` (the ranking service answers health checks), ``/metrics`` (here unless
  ``VISEARCH_GATEWAY_METRICS_PORT`` serves it apart, :mod:`visearch.services.gateway.server`);
- ``/playground/``: the web playground (static files).

An image URL in a request is fetched here with the same rules as the services' (``VISEARCH_IMAGE_*``: SSRF
checks, size and time limits; file URIs never) and sent on as bytes. Errors: HTTP status + the gRPC API's
reason codes (:mod:`visearch.services.gateway.errors`); bad input is never a 500.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from google.protobuf import json_format
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from visearch.services.gateway.backend import Backend
from visearch.services.gateway.errors import HttpError, bad_request, from_visearch
from visearch.services.gateway.guard import Guard
from visearch.services.gateway.jsonmap import message_to_dict
from visearch.services.gateway.recognize import RECOGNIZE_SCHEMA, recognize
from visearch.services.gateway.schema import message_ref
from visearch.shared.config import GatewaySettings, ImageSettings, SecuritySettings
from visearch.shared.errors import InvalidImageError, VisearchError
from visearch.shared.images import image_bytes
from visearch.shared.logging import get_logger
from visearch.shared.thumbnails import ThumbnailStore
from visearch.v1 import common_pb2, detection_pb2, ocr_pb2, search_pb2

log = get_logger("gateway")
STATIC_DIR = Path(__file__).parent / "static"

# route -> (SearchService method, request message, response message)
_SEARCH_ROUTES: dict[str, tuple[str, type[Message], type[Message]]] = {
    "search": ("Search", search_pb2.SearchRequest, search_pb2.SearchResponse),
    "similar": ("SimilarTo", search_pb2.SimilarToRequest, search_pb2.SearchResponse),
    "alternatives": ("Alternatives", search_pb2.AlternativesRequest, search_pb2.SearchResponse),
    "tag": ("Tag", search_pb2.TagRequest, search_pb2.TagResponse),
    "feedback": ("Feedback", search_pb2.FeedbackRequest, search_pb2.FeedbackResponse),
}
_UPLOAD_ROUTES = ("search", "similar", "tag")


class Gateway:
    """The gateway's state and handlers (see the module's docstring). :meth:`asgi` is the app to serve.

    Args:
        backend: the services to call.
        settings: ``VISEARCH_GATEWAY_*``; image_settings: fetch and size rules (file URIs are always refused);
        security: tokens and rate limits; thumbnails: the thumbnail store, or None (404 for every thumbnail);
        default_tenant: the tenant of a request that names none (for thumbnails; the services apply their own).
    """

    def __init__(
        self,
        backend: Backend,
        settings: GatewaySettings | None = None,
        image_settings: ImageSettings | None = None,
        security: SecuritySettings | None = None,
        thumbnails: ThumbnailStore | None = None,
        default_tenant: str = "default",
    ) -> None:
        self.backend = backend
        self.settings = settings or GatewaySettings()
        image_settings = image_settings or ImageSettings()
        # An HTTP client must never make the gateway read a local file, whatever the services allow.
        self.image_settings = image_settings.model_copy(update={"allow_file_uris": False})
        self.security = security or SecuritySettings()
        self.thumbnails = thumbnails
        self.default_tenant = default_tenant
        self.limiter = anyio.CapacityLimiter(self.settings.threads)
        self.max_body_bytes = self.image_settings.max_bytes * 4 // 3 + self.settings.max_json_bytes
        self.app = self._build()

    def asgi(self) -> Guard:
        """The ASGI app: the FastAPI app inside the auth / rate-limit / size / metrics middleware."""
        return Guard(self.app, self.security, self.max_body_bytes)

    # ------------------------------------------------------------------------------------------ parsing

    def parse(self, body: bytes | str, cls: type[Message]) -> Message:
        """``cls`` from a JSON body in the proto3 JSON mapping.

        Raises:
            HttpError: 400 ``invalid_json`` (not JSON, or not an object) or ``invalid_request`` (unknown field,
                wrong type).
        """
        try:
            data = json.loads(body or "{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body is not JSON: {exc}", "invalid_json") from exc
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object", "invalid_json")
        try:
            return json_format.ParseDict(data, cls())
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise bad_request(f"not a valid {cls.DESCRIPTOR.full_name}: {exc}", "invalid_request") from exc

    def resolve_image(self, image: common_pb2.Image) -> None:
        """Replace an image URL by its bytes (fetched with the services' rules) and check the size.

        Raises:
            HttpError: 422 for a URL that cannot be fetched (``address_not_allowed``, ``scheme_not_allowed``,
                ``fetch_timeout``...), 413 ``image_too_large``.
        """
        try:
            if image.WhichOneof("source") == "uri":
                image.content = image_bytes(image, self.image_settings)
            if len(image.content) > self.image_settings.max_bytes:
                raise InvalidImageError(
                    f"{len(image.content)} bytes > limit {self.image_settings.max_bytes}", reason="image_too_large"
                )
        except VisearchError as exc:
            raise from_visearch(exc) from exc

    def _images_of(self, request: Message) -> list[common_pb2.Image]:
        images = []
        if request.DESCRIPTOR.fields_by_name.get("image") is not None and request.HasField("image"):
            images.append(getattr(request, "image"))  # noqa: B009 (any request type with an image field)
        if isinstance(request, search_pb2.SearchRequest) and request.colour.HasField("image"):
            images.append(request.colour.image)
        return images

    async def call(self, route: str, request: Message, authorization: str | None) -> Response:
        """Resolve the request's image URLs, call the SearchService method of ``route``, answer its JSON."""
        method, _, _ = _SEARCH_ROUTES[route]

        def work() -> Message:
            for image in self._images_of(request):
                self.resolve_image(image)
            response: Message = self.backend.call(self.backend.search, method, request, authorization)
            return response

        return _json(await anyio.to_thread.run_sync(work, limiter=self.limiter))

    async def upload(self, http: Request, cls: type[Message]) -> Message:
        """A request of ``cls`` from a multipart body: file part ``image`` (required), JSON part ``request``.

        Raises:
            HttpError: 400 ``invalid_request`` (not multipart, no ``image`` part), or as :meth:`parse`.
        """
        try:
            form = await http.form(max_files=1, max_fields=4, max_part_size=self.settings.max_json_bytes)
        except HttpError:  # the body passed the size limit while it was read
            raise
        except Exception as exc:  # noqa: BLE001 (starlette raises several types for a malformed body)
            raise bad_request(f"a multipart/form-data body is expected: {exc}") from exc
        try:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise bad_request("the multipart body needs a file part named 'image'")
            raw = form.get("request")
            request = self.parse(raw if isinstance(raw, str) else "{}", cls)
            content = await upload.read()
        finally:
            await form.close()
        if not content:
            raise from_visearch(InvalidImageError("the uploaded file is empty", reason="empty_image"))
        getattr(request, "image").content = content  # noqa: B009 (SearchRequest, SimilarToRequest or TagRequest)
        return request

    # ------------------------------------------------------------------------------------------ routes

    def _build(self) -> FastAPI:
        app = FastAPI(
            title="visearch HTTP API",
            version="1",
            description="Search and tagging over HTTP/JSON: the visearch.v1 gRPC messages in the proto3 JSON "
            "mapping. Errors: HTTP status and the gRPC API's reason codes.",
        )

        @app.exception_handler(HttpError)
        async def _http_error(_: Request, exc: HttpError) -> Response:
            if exc.status >= 500:
                log.warning("http_error", status=exc.status, reason=exc.reason, error=exc.message)
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

        components: dict[str, Any] = {}
        for route, (method, request_cls, response_cls) in _SEARCH_ROUTES.items():
            self._add_json_route(app, route, method, request_cls, response_cls, components)
        for route in _UPLOAD_ROUTES:
            self._add_upload_route(app, route, components)
        self._add_recognize_routes(app, components)
        self._add_misc_routes(app)
        if self.settings.playground:
            app.mount("/playground", StaticFiles(directory=STATIC_DIR, html=True), name="playground")

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                schema = get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
                schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
                app.openapi_schema = schema
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        return app

    def _add_json_route(
        self,
        app: FastAPI,
        route: str,
        method: str,
        request_cls: type[Message],
        response_cls: type[Message],
        components: dict[str, Any],
    ) -> None:
        async def handler(http: Request) -> Response:
            request = self.parse(await http.body(), request_cls)
            return await self.call(route, request, http.headers.get("authorization"))

        app.post(
            f"/v1/{route}",
            summary=f"SearchService.{method}",
            openapi_extra=_openapi_io(message_ref(request_cls.DESCRIPTOR, components), response_cls, components),
            name=route,
        )(handler)

    def _add_upload_route(self, app: FastAPI, route: str, components: dict[str, Any]) -> None:
        method, request_cls, response_cls = _SEARCH_ROUTES[route]

        async def handler(http: Request) -> Response:
            request = await self.upload(http, request_cls)
            return await self.call(route, request, http.headers.get("authorization"))

        app.post(
            f"/v1/{route}/upload",
            summary=f"SearchService.{method} with an uploaded image",
            openapi_extra=_openapi_io(_multipart(request_cls.DESCRIPTOR.full_name), response_cls, components),
            name=f"{route}_upload",
        )(handler)

    def _add_recognize_routes(self, app: FastAPI, components: dict[str, Any]) -> None:
        image_ref = message_ref(common_pb2.Image.DESCRIPTOR, components)
        for message in (detection_pb2.ImageDetections, ocr_pb2.ImageText):
            message_ref(message.DESCRIPTOR, components)
        message_ref(common_pb2.Classification.DESCRIPTOR, components)
        output = {"200": {"description": "OK", "content": {"application/json": {"schema": RECOGNIZE_SCHEMA}}}}

        async def run(image: common_pb2.Image, authorization: str | None) -> Response:
            def work() -> dict[str, Any]:
                self.resolve_image(image)
                return recognize(self.backend, image, authorization)

            return JSONResponse(await anyio.to_thread.run_sync(work, limiter=self.limiter))

        async def from_json(http: Request) -> Response:
            wrapper = cast(
                search_pb2.TagRequest, self.parse(await http.body(), search_pb2.TagRequest)
            )  # {"image": Image}
            if not wrapper.HasField("image"):
                raise bad_request("give {'image': {'content': <base64>} or {'uri': <url>}}", "missing_image")
            return await run(wrapper.image, http.headers.get("authorization"))

        async def from_upload(http: Request) -> Response:
            request = cast(search_pb2.TagRequest, await self.upload(http, search_pb2.TagRequest))
            return await run(request.image, http.headers.get("authorization"))

        body = {"type": "object", "properties": {"image": image_ref}, "required": ["image"]}
        app.post(
            "/v1/recognize",
            summary="Objects, text, taxonomy, attributes, colours, quality and moderation of an image",
            openapi_extra={
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": output,
            },
            name="recognize",
        )(from_json)
        app.post(
            "/v1/recognize/upload",
            summary="/v1/recognize with an uploaded image",
            openapi_extra={"requestBody": _multipart("(none: only the image)"), "responses": output},
            name="recognize_upload",
        )(from_upload)

    def _add_misc_routes(self, app: FastAPI) -> None:
        @app.get("/v1/thumbnails", summary="An indexed image's thumbnail (JPEG)", response_class=Response)
        async def thumbnail(image_id: str, tenant: str = "") -> Response:
            data = self.thumbnails.get(tenant or self.default_tenant, image_id) if self.thumbnails else None
            if data is None:
                raise HttpError(404, "NOT_FOUND", "not_found", f"no thumbnail for {image_id!r}")
            return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

        @app.get("/healthz", summary="Liveness", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz", summary="Readiness: the ranking service answers", include_in_schema=False)
        async def readyz() -> Response:
            ready = await anyio.to_thread.run_sync(self.backend.ready)
            return JSONResponse({"status": "ok" if ready else "unavailable"}, status_code=200 if ready else 503)

        if not self.settings.metrics_port:  # else on the metrics port only, off the (public) API port

            @app.get("/metrics", include_in_schema=False)
            async def metrics() -> Response:
                return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        @app.get("/", include_in_schema=False)
        async def root() -> Response:
            return RedirectResponse("/playground/" if self.settings.playground else "/docs")


def _json(message: Message) -> Response:
    return Response(json.dumps(message_to_dict(message)).encode(), media_type="application/json")


def _openapi_io(
    request_schema: dict[str, Any], response_cls: type[Message], components: dict[str, Any]
) -> dict[str, Any]:
    body = (
        request_schema if "content" in request_schema else {"content": {"application/json": {"schema": request_schema}}}
    )
    response = {"application/json": {"schema": message_ref(response_cls.DESCRIPTOR, components)}}
    return {"requestBody": {"required": True, **body}, "responses": {"200": {"description": "OK", "content": response}}}


def _multipart(request_name: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "image": {"type": "string", "format": "binary"},
            "request": {"type": "string", "description": f"JSON of {request_name} without its image"},
        },
        "required": ["image"],
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
