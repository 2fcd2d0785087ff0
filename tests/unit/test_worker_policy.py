"""StageWorker.run: transient failures are retried after a rewind (nothing skipped); the DLQ policy
stops a worker whose failures look like a bad deploy, before dead-lettering or committing."""

from __future__ import annotations

import threading

import pytest

from visearch.shared.errors import DependencyUnavailableError, InvalidImageError
from visearch.shared.pipeline import DlqPolicy, DlqPolicyError, Stage, StageWorker, encode_event
from visearch.shared.transport import InProcessTransport, dlq_topic
from visearch.v1 import events_pb2


def publish(transport: InProcessTransport, n: int, topic: str = "in") -> None:
    for i in range(n):
        transport.produce(
            topic, *encode_event(events_pb2.ImageEvent(image_id=f"i{i}", kind=events_pb2.ImageEvent.KIND_UPSERT))
        )


class Flaky(Stage):
    """Fails the first ``failures`` batches with a transient error, then passes everything."""

    name = "flaky"

    def __init__(self, failures: int, stop: threading.Event, expected: int) -> None:
        self.failures, self.stop, self.expected, self.seen = failures, stop, expected, []

    def process(self, documents):
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailableError("milvus down")
        self.seen.extend(d.event.image_id for d in documents)
        if len(self.seen) >= self.expected:
            self.stop.set()
        return documents


def test_transient_failures_are_retried_without_skipping():
    """Three failed attempts, then every event is processed exactly once, in order."""
    transport, stop = InProcessTransport(), threading.Event()
    publish(transport, 10)
    stage = Flaky(failures=3, stop=stop, expected=10)
    worker = StageWorker(stage, transport, "in", "out", batch_size=4)
    thread = threading.Thread(target=worker.run, args=(stop, 0.01, 0.05))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert stage.seen == [f"i{i}" for i in range(10)]
    assert len(transport.messages("out")) == 10 and transport.lag("in", worker.group) == 0


def test_stop_during_backoff_returns_without_committing():
    """A stop request while backing off ends run() cleanly; the failed batch stays uncommitted."""
    transport, stop = InProcessTransport(), threading.Event()
    publish(transport, 3)
    worker = StageWorker(Flaky(failures=10**6, stop=stop, expected=99), transport, "in", "out")
    thread = threading.Thread(target=worker.run, args=(stop, 0.05, 0.1))
    thread.start()
    stop.wait(0.3)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert transport.lag("in", worker.group) == 3


class AllBad(Stage):
    name = "allbad"

    def process(self, documents):
        return [self.fail(d, InvalidImageError("bad", reason="undecodable_image")) for d in documents]


def test_dlq_policy_consecutive_trips_before_dead_lettering():
    """With max 5 consecutive failures, the batch that would reach 5 raises and is not dead-lettered or committed."""
    transport = InProcessTransport()
    publish(transport, 8)
    worker = StageWorker(
        AllBad(), transport, "in", None, batch_size=4, policy=DlqPolicy(max_consecutive=5, max_ratio=1.0, window=100)
    )
    assert worker.run_once() == (0, 4)
    with pytest.raises(DlqPolicyError, match="5 consecutive"):
        worker.run_once()
    assert len(transport.messages(dlq_topic("in"))) == 4
    assert transport.lag("in", worker.group) == 4


def test_dlq_policy_ratio_over_window():
    """Half of a full window failing trips the ratio rule; fewer does not."""
    policy = DlqPolicy(max_consecutive=1000, max_ratio=0.5, window=10)
    policy.check([False, True] * 4 + [False, False])  # 4 of 10
    with pytest.raises(DlqPolicyError, match="of the last 10"):
        policy.check([True])  # window now holds 5 failures of 10
    policy.check([False])  # a tripped check recorded nothing


def test_worker_run_propagates_policy_error():
    """run() does not retry a DlqPolicyError: the process must stop and be looked at."""
    transport, stop = InProcessTransport(), threading.Event()
    publish(transport, 4)
    worker = StageWorker(AllBad(), transport, "in", None, policy=DlqPolicy(max_consecutive=2))
    with pytest.raises(DlqPolicyError):
        worker.run(stop, 0.01, 0.02)
