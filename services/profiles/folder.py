"""The profile folder: feedback events -> per-user taste profiles on the compacted profiles topic.

It consumes the feedback topic (group ``VISEARCH_PERSONALISATION_GROUP``), folds every taste action of a user
(clicks, likes, add-to-cart, purchases that carry a ``user_id``) into that user's ``visearch.v1.UserProfile``
(:func:`visearch.shared.user_profiles.fold`), writes the changed profiles to the profiles topic, and commits its
feedback offsets only once the broker acknowledged the writes (at-least-once). A redelivered record (after a crash
between the write and the commit) is recognised by the profile's last folded offset in its partition and not
counted twice, however late it comes back (another partition may be read first for a long while); an event sent
twice (a client retrying Feedback) by its id among the profile's recent ones.

Its own view of the profiles is a :class:`~visearch.shared.profile_topic.ProfileBook` rebuilt from the profiles
topic at start (and fed with the tombstones ``ForgetUser`` writes), so a restart loses nothing. Run one folder
per deployment: two would each hold a partial view of a user whose events they share (feedback is keyed by
query_id).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from visearch.shared.config import PersonalisationSettings
from visearch.shared.logging import get_logger
from visearch.shared.profile_topic import ProfileBook, write_profile
from visearch.shared.transport import Transport
from visearch.shared.user_profiles import fold
from visearch.v1 import events_pb2

log = get_logger("profiles")


@dataclass
class FoldReport:
    """What one batch did: records read, events folded, profiles written, records skipped by reason."""

    records: int = 0
    folded: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one skipped record."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class ProfileFolder:
    """Folds the feedback topic into profiles. Not thread-safe: one thread calls :meth:`run_once`.

    Args:
        transport: consumes the feedback topic and produces to the profiles topic.
        book: the folder's view of the profiles (rebuilt from the profiles topic by a tail before folding).
        feedback_topic, profiles_topic: topic names.
        settings: decay half-life, limits, consumer group.
        batch_size: records per poll.
    """

    def __init__(
        self,
        transport: Transport,
        book: ProfileBook,
        feedback_topic: str,
        profiles_topic: str,
        settings: PersonalisationSettings | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self.transport, self.book = transport, book
        self.feedback_topic, self.profiles_topic = feedback_topic, profiles_topic
        self.settings = settings or PersonalisationSettings()
        self.batch_size, self.poll_timeout_s = batch_size, poll_timeout_s

    def run_once(self) -> FoldReport:
        """Poll one batch, fold it, write the changed profiles, flush, then commit the feedback offsets.

        Raises:
            DependencyUnavailableError: a poll, write or commit failed; nothing of the batch is committed, the
                book is unchanged (the caller rewinds and retries: :meth:`run`).
        """
        report = FoldReport()
        messages = self.transport.poll(self.feedback_topic, self.settings.group, self.batch_size, self.poll_timeout_s)
        changed: dict[str, events_pb2.UserProfile] = {}
        for message in messages:
            report.records += 1
            try:
                event = events_pb2.FeedbackEvent.FromString(message.value)
            except Exception:  # noqa: BLE001 (protobuf's DecodeError and friends: skip the record)
                report.skip("undecodable")
                continue
            if not event.user_id:
                report.skip("anonymous")
                continue
            profile = changed.get(event.user_id) or self.book.get(event.user_id) or events_pb2.UserProfile()
            forgotten = self.book.forgotten_ms(event.user_id)
            if forgotten and event.event_time.ToMilliseconds() < forgotten:
                report.skip("before_forget")  # the user asked to be forgotten after this event
                continue
            if message.offset <= profile.feedback_offsets.get(message.partition, -1):
                report.skip("redelivered")  # folded before a crash that came before its commit
                continue
            s = self.settings
            if fold(profile, event, s.half_life_days, s.max_concepts, s.recent_events):
                profile.feedback_offsets[message.partition] = message.offset
                changed[event.user_id] = profile
                report.folded += 1
            else:
                report.skip("not_folded")
        for profile in changed.values():
            profile.version += 1
            write_profile(self.transport, self.profiles_topic, profile)
        if changed:
            self.transport.flush()  # acknowledged by the broker before the book or the offsets move
            for profile in changed.values():
                self.book.put(profile)
            report.written = len(changed)
        if messages:
            self.transport.commit(self.feedback_topic, self.settings.group)
        return report

    def run(self, stop: threading.Event, on_error: Callable[[Exception], float] | None = None) -> None:
        """Fold until ``stop`` is set. A failed batch is rewound to the committed offsets and retried after
        ``on_error(exc)`` seconds (default 1 s); the batch's events are folded again from the book's last
        acknowledged state, so none is lost or counted twice."""
        from visearch.shared.errors import VisearchError

        while not stop.is_set():
            try:
                report = self.run_once()
            except VisearchError as exc:
                log.warning("profile_fold_failed", error=str(exc))
                self.transport.rewind_to_committed(self.feedback_topic, self.settings.group)
                stop.wait(on_error(exc) if on_error else 1.0)
                continue
            if report.records:
                log.info(
                    "profiles_folded",
                    records=report.records,
                    folded=report.folded,
                    written=report.written,
                    skipped=report.skipped,
                )
