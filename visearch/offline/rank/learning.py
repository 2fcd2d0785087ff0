"""Training data for learning to rank: logged impressions joined with clicks and purchases, or judged data.

Two sources give the same thing, a list of :class:`Judgment` (query id, image id, raw factor values,
graded label):

- the feedback topic (``<prefix>.feedback.v1``, :func:`visearch.shared.transport.feedback_topic`): the
  ranking service logs an ``ACTION_IMPRESSION`` FeedbackEvent per served hit, with the raw factor values
  it ranked the hit by; clients report ``ACTION_CLICK`` / ``ACTION_PURCHASE`` through the Feedback RPC.
  :func:`join_feedback` joins them by (query_id, image_id): label 2 = purchased, 1 = clicked,
  0 = shown and not clicked. :func:`read_feedback_topic` reads the topic over Kafka from the beginning
  up to the end offsets it finds at start (a bounded snapshot; nothing is committed);
- a JSONL file of judged data (:func:`read_judgments`), one line per (query, candidate):
  ``{"query_id": "q1", "image_id": "a", "factors": {"visual": 0.8, ...}, "label": 2}`` with graded
  labels 0..3 (what :mod:`visearch.offline.rank.judged` writes).

Queries without any positive label are dropped: they say nothing about which hit is better (the
standard treatment of click logs; a list nobody clicked is as often a bad query as a bad ranking).
Malformed records are skipped and counted by reason (:attr:`TrainingData.skipped`); reading never
fails on bad data, only on an unreachable broker or a missing topic/file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from visearch.services.ranking.ranker import FACTORS
from visearch.shared.config import KafkaSettings
from visearch.v1 import events_pb2

Action = events_pb2.FeedbackEvent
# Label of an impression by the strongest action on it; a purchase implies interest beyond a click.
ACTION_LABELS = {Action.ACTION_CLICK: 1, Action.ACTION_PURCHASE: 2}
MAX_LABEL = 3  # judged data grades 0..3 (feedback gives 0..2)


@dataclass(frozen=True)
class Judgment:
    """One candidate of one query: its raw factor values (factor -> value; a missing factor counts as 0
    in a blend, as in :meth:`Ranker.rank`) and its graded relevance label (0 = not relevant)."""

    query_id: str
    image_id: str
    factors: Mapping[str, float]
    label: int

    def to_json(self) -> str:
        return json.dumps(
            {"query_id": self.query_id, "image_id": self.image_id, "factors": dict(self.factors), "label": self.label},
            sort_keys=True,
        )


@dataclass
class TrainingData:
    """Judgments grouped by query, and what was left out of them.

    Attributes:
        judgments: the usable judgments, in input order.
        records: records read (events or lines).
        skipped: reason -> records skipped (malformed, unknown action, a click without its impression...).
        dropped_queries: queries left out because no candidate has a positive label.
        ignored_factors: factor names seen in records but unknown to the ranker (values ignored) -> count.
        source: where the data came from (for the ranker file's ``trained_on``).
    """

    judgments: list[Judgment] = field(default_factory=list)
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    dropped_queries: int = 0
    ignored_factors: Counter = field(default_factory=Counter)
    source: str = ""

    def queries(self) -> dict[str, list[Judgment]]:
        """query id -> its judgments (insertion order)."""
        grouped: dict[str, list[Judgment]] = {}
        for j in self.judgments:
            grouped.setdefault(j.query_id, []).append(j)
        return grouped

    def summary(self) -> dict:
        """Counts for reports and the ranker file."""
        labels = Counter(j.label for j in self.judgments)
        return {
            "source": self.source,
            "records": self.records,
            "queries": len({j.query_id for j in self.judgments}),
            "judgments": len(self.judgments),
            "labels": {str(k): labels[k] for k in sorted(labels)},
            "skipped": dict(sorted(self.skipped.items())),
            "dropped_queries_without_positive": self.dropped_queries,
            "ignored_factors": dict(sorted(self.ignored_factors.items())),
        }


def _clean_factors(raw, data: TrainingData) -> dict[str, float] | None:
    """The known factors of ``raw`` as floats; None when a value is not a finite number (record skipped)."""
    if not isinstance(raw, Mapping):
        return None
    clean = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        if name not in FACTORS or name == "preference":  # per user: personalisation sets its weight, not a fit
            data.ignored_factors[str(name)] += 1
            continue
        clean[name] = float(value)
    return clean


def _drop_queries_without_positive(data: TrainingData) -> TrainingData:
    positive = {j.query_id for j in data.judgments if j.label > 0}
    data.dropped_queries = len({j.query_id for j in data.judgments} - positive)
    data.judgments = [j for j in data.judgments if j.query_id in positive]
    return data


def join_feedback(values: Iterable[bytes | events_pb2.FeedbackEvent], source: str = "feedback") -> TrainingData:
    """Join impressions with clicks and purchases by (query_id, image_id) into labelled judgments.

    Args:
        values: serialized FeedbackEvents (a topic's message values) or parsed ones, in any order (clicks
            may come before their impressions: a topic has several partitions).
        source: recorded in :attr:`TrainingData.source`.

    Skipped records (counted in ``skipped``): ``undecodable`` (not a FeedbackEvent), ``missing_ids``
    (no query_id or image_id), ``unknown_action``, ``bad_factors`` (an impression whose factor values are
    not finite numbers), ``no_factors`` (an impression without any known factor), ``duplicate_impression``
    (the same hit logged twice, e.g. redelivered: the first is kept), ``feedback_without_impression`` (a
    click or purchase on a hit never logged as shown: its factor values are unknown).
    """
    data = TrainingData(source=source)
    impressions: dict[tuple[str, str], dict[str, float]] = {}
    labels: dict[tuple[str, str], int] = {}
    for value in values:
        data.records += 1
        if isinstance(value, events_pb2.FeedbackEvent):
            event = value
        else:
            try:
                event = events_pb2.FeedbackEvent.FromString(bytes(value))
            except (DecodeError, TypeError, ValueError):
                data.skipped["undecodable"] += 1
                continue
        if not event.query_id or not event.image_id:
            data.skipped["missing_ids"] += 1
            continue
        key = (event.query_id, event.image_id)
        if event.action == Action.ACTION_IMPRESSION:
            factors = _clean_factors(dict(event.factors), data)
            if factors is None:
                data.skipped["bad_factors"] += 1
            elif not factors:
                data.skipped["no_factors"] += 1
            elif key in impressions:
                data.skipped["duplicate_impression"] += 1
            else:
                impressions[key] = factors
        elif event.action in ACTION_LABELS:
            labels[key] = max(labels.get(key, 0), ACTION_LABELS[event.action])
        else:
            data.skipped["unknown_action"] += 1
    orphans = sum(1 for key in labels if key not in impressions)
    if orphans:
        data.skipped["feedback_without_impression"] += orphans
    data.judgments = [Judgment(q, i, factors, labels.get((q, i), 0)) for (q, i), factors in impressions.items()]
    return _drop_queries_without_positive(data)


def parse_judgments(lines: Iterable[str], source: str = "judgments") -> TrainingData:
    """Judged data, one JSON object per line: ``query_id``, ``image_id``, ``factors`` (factor -> number),
    ``label`` (integer 0..3). Blank lines are ignored; ``bad_json``, ``missing_fields``, ``bad_label``,
    ``bad_factors``, ``no_factors`` and ``duplicate`` (the same query and image again) lines are skipped."""
    data = TrainingData(source=source)
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if not line.strip():
            continue
        data.records += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            data.skipped["bad_json"] += 1
            continue
        if (
            not isinstance(row, dict)
            or not all(isinstance(row.get(k), str) and row.get(k) for k in ("query_id", "image_id"))
            or "factors" not in row
            or "label" not in row
        ):
            data.skipped["missing_fields"] += 1
            continue
        label = row["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= MAX_LABEL:
            data.skipped["bad_label"] += 1
            continue
        factors = _clean_factors(row["factors"], data)
        if factors is None:
            data.skipped["bad_factors"] += 1
            continue
        if not factors:
            data.skipped["no_factors"] += 1
            continue
        key = (row["query_id"], row["image_id"])
        if key in seen:
            data.skipped["duplicate"] += 1
            continue
        seen.add(key)
        data.judgments.append(Judgment(row["query_id"], row["image_id"], factors, label))
    return _drop_queries_without_positive(data)


def read_judgments(path: Path) -> TrainingData:
    """:func:`parse_judgments` over a JSONL file (undecodable bytes count as bad lines, not as a crash).

    Raises:
        FileNotFoundError: no such file.
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        return parse_judgments(fh, source=f"judgments:{path}")


def write_judgments(path: Path, judgments: Iterable[Judgment]) -> int:
    """Write judgments as JSONL (the format :func:`read_judgments` reads); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for j in judgments:
            fh.write(j.to_json() + "\n")
            n += 1
    return n


def feedback_values(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> Iterator[bytes]:
    """Every message value of ``topic`` from the beginning up to the end offsets found at start.

    A plain consumer with manually assigned partitions and no group: nothing is committed, and the
    services' consumer groups are not disturbed. Messages produced while reading are left for the next run.

    Raises:
        LookupError: the topic does not exist.
        TimeoutError: the end offsets were not reached within ``timeout_s`` (broker gone mid-read).
        kafka.errors.KafkaError: the broker cannot be reached.
        visearch.shared.errors.ConfigError: TLS or SASL failed (a wrong password, an untrusted certificate).
        visearch.shared.errors.DependencyUnavailableError: with TLS or SASL, no bootstrap server answered.
    """
    import time

    from kafka import KafkaConsumer, TopicPartition

    from visearch.shared.kafka import connection_options

    consumer = KafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        client_id="visearch-rank-fit",
        consumer_timeout_ms=1000,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist at {settings.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: end offsets not reached in {timeout_s} s")
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record.value or b""
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close(autocommit=False)


def read_feedback_topic(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> TrainingData:
    """:func:`join_feedback` over a snapshot of the feedback topic (see :func:`feedback_values`)."""
    return join_feedback(feedback_values(settings, topic, timeout_s), source=f"kafka:{topic}")
