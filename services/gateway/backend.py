"""The gRPC services behind the gateway: stubs over channels (``visearch serve gateway``) or in-process
servicers (the embedded platform), called the same way, with the caller's bearer token forwarded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from visearch.services.gateway.errors import HttpError, from_rpc, from_visearch
from visearch.shared.config import GatewaySettings, SecuritySettings, ServiceSettings
from visearch.shared.errors import ConfigError, VisearchError
from visearch.shared.grpcutil import InProcessStub, client_channel
from visearch.shared.security import AUTH_METADATA_KEY
from visearch.v1 import classification_pb2_grpc, detection_pb2_grpc, ocr_pb2_grpc, search_pb2_grpc

# A service stub: generated (over a channel) or in-process; both are called ``stub.Method(request, timeout=...,
# metadata=...)``.
Stub = Any


@dataclass
class Backend:
    """The services a gateway calls: ``search`` (the ranking service) always; ``detection``, ``ocr`` and
    ``classification`` for ``/v1/recognize`` (None: that part of the answer is left out).

    Args:
        timeout_s: deadline of each call, seconds.
        channels: channels to close with :meth:`close`.
    """

    search: Stub
    detection: Stub | None = None
    ocr: Stub | None = None
    classification: Stub | None = None
    timeout_s: float = 30.0
    channels: list[grpc.Channel] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls,
        gateway: GatewaySettings,
        service: ServiceSettings | None = None,
        security: SecuritySettings | None = None,
    ) -> Backend:
        """Channels to ``VISEARCH_GATEWAY_SEARCH_ADDR`` and the recognition services' ``VISEARCH_*_ADDR``
        (TLS, client token and load balancing as every service-to-service channel).

        Raises:
            ConfigError: no search address is set.
        """
        if not gateway.search_addr:
            raise ConfigError("the gateway needs VISEARCH_GATEWAY_SEARCH_ADDR (the ranking service's target)")
        service = service or ServiceSettings()
        channels: list[grpc.Channel] = []

        def stub(address: str, make: Callable[[grpc.Channel], Stub]) -> Stub | None:
            if not address:
                return None
            channel = client_channel(address, security, timeout_s=gateway.timeout_s)
            channels.append(channel)
            return make(channel)

        return cls(
            search=stub(gateway.search_addr, search_pb2_grpc.SearchServiceStub),
            detection=stub(service.detection_addr, detection_pb2_grpc.DetectionServiceStub),
            ocr=stub(service.ocr_addr, ocr_pb2_grpc.OcrServiceStub),
            classification=stub(service.classification_addr, classification_pb2_grpc.ClassificationServiceStub),
            timeout_s=gateway.timeout_s,
            channels=channels,
        )

    @classmethod
    def in_process(
        cls, search: object, detection: object = None, ocr: object = None, classification: object = None
    ) -> Backend:
        """A backend over servicers in this process (the embedded platform's)."""

        def stub(servicer: object) -> Stub | None:
            return InProcessStub(servicer) if servicer is not None else None

        return cls(InProcessStub(search), detection=stub(detection), ocr=stub(ocr), classification=stub(classification))

    def call(self, stub: Stub, method: str, request: Message, authorization: str | None = None) -> Any:
        """``stub.method(request)`` with the gateway's deadline, forwarding ``authorization`` (the HTTP header)
        as gRPC metadata, so the service sees the caller's token.

        Raises:
            HttpError: the call failed (the service's reason code and the matching HTTP status).
        """
        metadata = [(AUTH_METADATA_KEY, authorization)] if authorization else None
        try:
            return getattr(stub, method)(request, timeout=self.timeout_s, metadata=metadata)
        except VisearchError as exc:
            raise from_visearch(exc) from exc
        except grpc.RpcError as exc:
            raise from_rpc(exc, method) from exc

    def ready(self) -> bool:
        """Whether the search service answers a health check within 2 s (always, in process)."""
        if not self.channels:
            return True
        try:
            response = health_pb2_grpc.HealthStub(self.channels[0]).Check(
                health_pb2.HealthCheckRequest(service="visearch.v1.SearchService"), timeout=2.0
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Close the channels this backend opened."""
        for channel in self.channels:
            channel.close()


__all__ = ["Backend", "HttpError", "Stub"]
