"""``visearch serve profiles``: the profile folder as its own process (health-only gRPC, /metrics, worker).

Reads the profiles topic into its book (a restart rebuilds it), then folds the feedback topic into profiles
(:mod:`visearch.services.profiles.folder`). Needs ``VISEARCH_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from visearch.services.profiles.folder import ProfileFolder
from visearch.shared.config import KafkaSettings, PersonalisationSettings, PipelineSettings, ServiceSettings
from visearch.shared.errors import ConfigError
from visearch.shared.grpcutil import serve
from visearch.shared.logging import configure_logging, get_logger
from visearch.shared.metrics import start_metrics_server
from visearch.shared.profile_topic import KafkaProfileTail, ProfileBook, profiles_topic
from visearch.shared.transport import feedback_topic

log = get_logger("profiles")
CATCH_UP_S = 120.0  # longest wait for the profiles topic to be read before folding starts


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Fold feedback into profiles until SIGTERM. Returns the exit code.

    Raises:
        SystemExit: VISEARCH_KAFKA_BOOTSTRAP is not set.
        ConfigError: VISEARCH_SERVICE_ROLE is ``grpc`` (the folder serves no API: it is a worker).
    """
    settings = settings or ServiceSettings()
    configure_logging("profiles", settings.log_level)
    if settings.service_role == "grpc":
        raise ConfigError("VISEARCH_SERVICE_ROLE=grpc: the profile folder serves no gRPC API (use all or worker)")
    kafka, personalisation = KafkaSettings(), PersonalisationSettings()
    if not kafka.bootstrap:
        raise SystemExit("the profile folder consumes Kafka: set VISEARCH_KAFKA_BOOTSTRAP (e.g. 127.0.0.1:9092)")
    from visearch.shared.kafka import KafkaTransport, create_topics

    # As `visearch topics create`: the compacted profiles topic must exist (compacted) before anyone writes to it.
    create_topics(kafka, PipelineSettings().stage_list)
    book = ProfileBook()
    tail = KafkaProfileTail(kafka, book).start()

    def work(stop: threading.Event) -> None:
        if not tail.wait_caught_up(CATCH_UP_S):
            raise ConfigError(f"the profiles topic was not read within {CATCH_UP_S:.0f} s")
        transport = KafkaTransport(kafka, client_id="visearch-profiles")
        try:
            folder = ProfileFolder(
                transport,
                book,
                feedback_topic(kafka.topic_prefix),
                profiles_topic(kafka.topic_prefix),
                personalisation,
                batch_size=kafka.max_poll_records,
                poll_timeout_s=kafka.poll_timeout_s,
            )
            log.info("profile_folder_started", profiles=len(book), group=personalisation.group)
            folder.run(stop)
        finally:
            transport.close()

    start_metrics_server(settings.metrics_port, settings.grpc_host)
    try:
        return serve("profiles", lambda server: [], settings, workers=(work,), **serve_kwargs)
    finally:
        tail.close()


if __name__ == "__main__":
    sys.exit(main())
