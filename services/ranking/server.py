"""``visearch serve ranking``: the search API as its own process.

With ``VISEARCH_EMBEDDING_ADDR`` (ServiceSettings.embedding_addr) set (a gRPC target: ``host:port``,
``dns:///<headless Service>:port``, ``ipv4:h1:p1,h2:p2``) queries are embedded by the embedding service over
gRPC, each call balanced over its pods (``VISEARCH_GRPC_LB_POLICY``); otherwise the models are loaded in this
process (embedded mode). ``VISEARCH_DETECTION_ADDR`` enables search by the query's detected objects;
``VISEARCH_CLASSIFICATION_ADDR`` and ``VISEARCH_OCR_ADDR`` the query understanding of image queries (tags,
taxonomy, text) and the model tags of ``Tag``.
``VISEARCH_KAFKA_BOOTSTRAP`` enables the feedback topic (impressions logged, the Feedback RPC) and personalisation
(the compacted user-profiles topic, read by a background thread; ``VISEARCH_PERSONALISATION_*``);
``VISEARCH_RANKING_*`` the ranking profiles and the learned ranker's folder (hot-reloaded).
"""

from __future__ import annotations

import sys
from typing import Any

import grpc

from visearch.services.ranking.service import SERVICE_NAME, SearchService
from visearch.shared.config import (
    DetectionSettings,
    ImageSettings,
    KafkaSettings,
    PersonalisationSettings,
    RankingSettings,
    ServiceSettings,
    StoreSettings,
)
from visearch.shared.errors import ConfigError
from visearch.shared.grpcutil import InProcessStub, client_channel, serve
from visearch.shared.logging import configure_logging
from visearch.shared.metrics import start_metrics_server
from visearch.shared.profile_topic import KafkaProfileTail, ProfileBook, profiles_topic
from visearch.shared.store import MilvusStore
from visearch.shared.transport import feedback_topic
from visearch.v1 import classification_pb2_grpc, detection_pb2_grpc, embedding_pb2_grpc, ocr_pb2_grpc, search_pb2_grpc


def embedding_stub(
    address: str | None, in_process: InProcessStub | None = None
) -> embedding_pb2_grpc.EmbeddingServiceStub | InProcessStub:
    """A stub for the embedding service: gRPC to ``address`` (TLS and token per ``VISEARCH_SECURITY_*``), else
    ``in_process`` (a stub over a servicer in this process, which the composition root builds: the CLI's
    ``visearch serve ranking``; a service never imports another).

    Raises:
        ConfigError: neither is given.
    """
    if address:
        return embedding_pb2_grpc.EmbeddingServiceStub(client_channel(address))
    if in_process is None:
        raise ConfigError(
            "the ranking service needs the embedding service: set VISEARCH_EMBEDDING_ADDR, or run "
            "`visearch serve ranking`, which embeds in this process when it is unset"
        )
    return in_process


def main(settings: ServiceSettings | None = None, embedding: InProcessStub | None = None, **serve_kwargs: Any) -> int:
    """Serve SearchService until SIGTERM. Settings from VISEARCH_* variables. Returns the exit code.

    ``embedding``: an in-process EmbeddingService stub, used when ``VISEARCH_EMBEDDING_ADDR`` is unset.
    """
    settings = settings or ServiceSettings()
    configure_logging("ranking", settings.log_level)
    if settings.service_role == "worker":
        raise ConfigError("VISEARCH_SERVICE_ROLE=worker: the ranking service has no stage worker (use all or grpc)")
    store = MilvusStore(StoreSettings())
    kafka = KafkaSettings()
    feedback, tail, personalisation = None, None, PersonalisationSettings()
    if kafka.bootstrap:  # impressions and Feedback go to the feedback topic
        from visearch.shared.kafka import KafkaTransport

        feedback = KafkaTransport(kafka, client_id="visearch-ranking")
        if personalisation.enabled:  # user profiles: a thread reads the compacted topic into the book
            tail = KafkaProfileTail(kafka, ProfileBook()).start()
    servicer = SearchService(
        embedding_stub(settings.embedding_addr, embedding),
        store,
        settings.tenant,
        detection=detection_pb2_grpc.DetectionServiceStub(client_channel(settings.detection_addr))
        if settings.detection_addr
        else None,
        classification=classification_pb2_grpc.ClassificationServiceStub(client_channel(settings.classification_addr))
        if settings.classification_addr
        else None,
        ocr=ocr_pb2_grpc.OcrServiceStub(client_channel(settings.ocr_addr)) if settings.ocr_addr else None,
        image_settings=ImageSettings(),
        detection_settings=DetectionSettings(),
        ranking=RankingSettings(),
        feedback=feedback,
        feedback_topic_name=feedback_topic(kafka.topic_prefix),
        profiles=(tail.book, None) if tail is not None else None,
        personalisation=personalisation,
        profiles_topic_name=profiles_topic(kafka.topic_prefix),
    )
    start_metrics_server(settings.metrics_port, settings.grpc_host)

    def register(server: grpc.Server) -> list[str]:
        search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    try:
        return serve("ranking", register, settings, **serve_kwargs)
    finally:
        if tail is not None:
            tail.close()
        if feedback is not None:
            feedback.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
