"""Personalisation: concept keys, folding feedback into profiles (decay, idempotence, skip-above contrast), the
profile book (versions, tombstones), the profile folder over the in-process transport (at-least-once without
double counting) and the personaliser's guard rails (no history: the very same ranker)."""

from __future__ import annotations

import json

import pytest

from visearch.services.profiles.folder import ProfileFolder
from visearch.services.ranking.feedback import FeedbackLog
from visearch.services.ranking.personalisation import PREFERENCE_FACTOR, Personaliser, preference_of
from visearch.services.ranking.ranker import FACTORS, Ranker
from visearch.shared.config import PersonalisationSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.profile_topic import InProcessProfileTail, ProfileBook, profiles_topic, write_tombstone
from visearch.shared.transport import InProcessTransport, Message, feedback_topic
from visearch.shared.user_profiles import (
    affinities,
    concept_keys,
    evidence_now,
    factor_multipliers,
    fold,
    preference_score,
)
from visearch.v1 import events_pb2, search_pb2

Event = events_pb2.FeedbackEvent
DAY_MS = 86_400_000
T0 = 1_700_000_000_000


def click(user="u1", query="q1", image="a", concepts=(), skipped=(), when=T0, action=Event.ACTION_CLICK, lift=None):
    event = Event(
        user_id=user,
        query_id=query,
        image_id=image,
        action=action,
        concepts=list(concepts),
        skipped_concepts=list(skipped),
        factor_lift=lift or {},
    )
    event.event_time.FromMilliseconds(when)
    return event


def test_concept_keys_of_a_stored_row():
    fields = {
        "tags": "Sneaker; summer",
        "attributes": json.dumps([["colour", "red", 0.6], ["colour", "white", 0.05], ["object", "shoe", 0.9]]),
        "taxonomy": "clothing > footwear > sneaker",
        "brand": "Acme",
        "category": "Sneaker",
    }
    assert concept_keys(fields) == [
        "brand:acme",
        "category:sneaker",
        "colour:red",  # white covers 5% of the pixels: no concept of the image
        "tag:shoe",
        "tag:sneaker",
        "tag:summer",
        "taxonomy:clothing",
        "taxonomy:clothing > footwear",
        "taxonomy:clothing > footwear > sneaker",
    ]
    assert concept_keys({}) == []


def test_fold_is_idempotent_per_event_and_ignores_impressions_and_other_users():
    profile = events_pb2.UserProfile()
    assert fold(profile, click(concepts=["colour:red"]), 30)
    assert not fold(profile, click(concepts=["colour:red"]), 30)  # redelivered: same query, image, action
    assert not fold(profile, click(action=Event.ACTION_IMPRESSION, image="b"), 30)
    assert not fold(profile, click(user="u2", image="c"), 30)
    assert not fold(profile, click(user="", image="d"), 30)
    assert fold(profile, click(image="a", action=Event.ACTION_PURCHASE, concepts=["colour:red"]), 30)
    assert profile.events == 2 and profile.evidence == pytest.approx(1 + 3)
    assert profile.positive["colour:red"] == pytest.approx(4)


def test_counts_decay_with_event_time_and_old_events_weigh_less():
    profile = events_pb2.UserProfile()
    fold(profile, click(image="a", concepts=["brand:x"]), half_life_days=10)
    fold(profile, click(image="b", concepts=["brand:y"], when=T0 + 10 * DAY_MS), half_life_days=10)
    assert profile.positive["brand:x"] == pytest.approx(0.5) and profile.positive["brand:y"] == pytest.approx(1)
    fold(profile, click(image="c", concepts=["brand:z"], when=T0 - 10 * DAY_MS), half_life_days=10)  # late event
    assert profile.positive["brand:z"] == pytest.approx(0.25) and profile.updated_ms == T0 + 10 * DAY_MS
    assert evidence_now(profile, T0 + 20 * DAY_MS, 10) == pytest.approx(profile.evidence / 2)


def test_skipped_hits_cancel_the_concepts_every_page_shares():
    profile = events_pb2.UserProfile()
    for n in range(5):  # the user skips two shoes above a red shoe, five times
        fold(
            profile,
            click(
                query=f"q{n}",
                concepts=["category:shoe", "colour:red"],
                skipped=["category:shoe", "colour:black", "category:shoe", "colour:white"],
            ),
            30,
        )
    taste = affinities(profile)
    assert taste["colour:red"] == pytest.approx(1.0) and "category:shoe" not in taste
    assert preference_score(taste, ["category:shoe", "colour:red"]) == pytest.approx(1.0)
    assert preference_score(taste, ["category:shoe", "colour:black"]) == 0.0
    assert preference_score({}, ["colour:red"]) == 0.0


def test_preference_is_the_share_of_the_users_families_a_candidate_matches():
    taste = {"colour:red": 0.8, "colour:blue": 0.2, "brand:x": 0.4}
    assert preference_score(taste, ["colour:red", "brand:x"]) == pytest.approx(1.0)
    assert preference_score(taste, ["colour:blue"]) == pytest.approx(0.2 / 1.2)
    assert preference_score(taste, ["brand:x", "tag:other"]) == pytest.approx(0.4 / 1.2)


def test_factor_multipliers_follow_the_lift_within_the_cap():
    profile = events_pb2.UserProfile()
    for n in range(4):
        fold(profile, click(query=f"q{n}", lift={"colour": 0.3, "visual": -0.05}), 30)
    multipliers = factor_multipliers(profile, ["colour", "visual", "text"], gain=2.0, cap=0.5)
    # Lifts 0.3 and -0.05, their mean 0.125: 1 +- 2 * 0.175.
    assert multipliers == pytest.approx({"colour": 1.35, "visual": 0.65})
    assert factor_multipliers(profile, ["colour"], gain=2.0, cap=0.5) == {}  # nothing to compare with
    assert factor_multipliers(profile, ["colour", "visual"], gain=10.0, cap=0.5) == pytest.approx(
        {"colour": 1.5, "visual": 0.5}
    )


def test_profile_book_keeps_the_newest_version_and_applies_tombstones():
    book = ProfileBook()
    book.put(events_pb2.UserProfile(user_id="u", version=3, events=3))
    book.apply(Message("t", b"u", events_pb2.UserProfile(user_id="u", version=2).SerializeToString()))
    assert book.get("u").version == 3  # a stale record the tail read after this process's own write
    book.apply(Message("t", b"u", b"\xff not a profile"))
    assert book.get("u").version == 3
    book.apply(Message("t", b"u", b""))  # tombstone
    assert book.get("u") is None and book.forgotten_ms("u") > 0 and len(book) == 0


def _feedback(transport, *events):
    for event in events:
        transport.produce(feedback_topic(), event.query_id.encode(), event.SerializeToString(), {})


def test_folder_writes_profiles_and_a_redelivered_batch_counts_once():
    transport, book = InProcessTransport(), ProfileBook()
    folder = ProfileFolder(transport, book, feedback_topic(), profiles_topic(), poll_timeout_s=0.0)
    _feedback(transport, click(image="a", concepts=["colour:red"]), click(image="b", concepts=["colour:red"]))
    transport.produce(feedback_topic(), b"junk", b"\xff\x00", {})
    _feedback(transport, click(user="", image="c"))
    report = folder.run_once()
    assert (report.records, report.folded, report.written) == (4, 2, 1)
    assert report.skipped == {"undecodable": 1, "anonymous": 1}
    written = transport.messages(profiles_topic())
    assert [m.key for m in written] == [b"u1"]
    assert events_pb2.UserProfile.FromString(written[0].value).events == 2

    # A crash after the profile write and before the commit: the batch comes back to a restarted folder, whose
    # book is rebuilt from the profiles topic; its records are recognised by their offsets, however late (here
    # with an id window of 1 event, too short to recognise them by id).
    _feedback(transport, click(image="c", concepts=["colour:red"]), click(image="d", concepts=["colour:red"]))
    settings = PersonalisationSettings(recent_events=1)
    crashing = ProfileFolder(transport, book, feedback_topic(), profiles_topic(), settings, poll_timeout_s=0.0)
    transport.commit = lambda topic, group: None  # the commit never happens
    crashing.run_once()
    del transport.commit
    transport.rewind_to_committed(feedback_topic(), settings.group)
    restarted_book = ProfileBook()
    InProcessProfileTail(transport, profiles_topic(), restarted_book).sync()
    restarted = ProfileFolder(
        transport, restarted_book, feedback_topic(), profiles_topic(), settings, poll_timeout_s=0.0
    )
    report = restarted.run_once()
    assert report.folded == 0 and report.skipped == {"redelivered": 2}
    assert restarted_book.get("u1").events == 4 and restarted_book.get("u1").positive["colour:red"] == 4


def test_folder_skips_events_from_before_a_forget():
    transport, book = InProcessTransport(), ProfileBook()
    folder = ProfileFolder(transport, book, feedback_topic(), profiles_topic(), poll_timeout_s=0.0)
    write_tombstone(transport, profiles_topic(), "u1")
    InProcessProfileTail(transport, profiles_topic(), book).sync()
    _feedback(transport, click(image="a", when=T0))  # happened before the user asked to be forgotten
    assert folder.run_once().skipped == {"before_forget": 1} and book.get("u1") is None


class _Store:
    """The store methods the personaliser calls: rows of known images."""

    def __init__(self, rows):
        self._rows = rows

    def rows(self, tenant, image_ids, output_fields=()):
        from visearch.shared.store import StoredHit

        return [StoredHit(i, 0.0, dict(self._rows[i])) for i in image_ids if i in self._rows]


def _personaliser(book, transport=None, **settings):
    s = PersonalisationSettings(**{"min_evidence": 3.0, "full_evidence": 10.0, **settings})
    feedback = FeedbackLog(transport or InProcessTransport(), feedback_topic(), "default")
    rows = {
        "red": {"image_id": "red", "category": "shoe", "attributes": json.dumps([["colour", "red", 0.7]])},
        "black": {"image_id": "black", "category": "shoe", "attributes": json.dumps([["colour", "black", 0.7]])},
    }
    return Personaliser(_Store(rows), s, book, None, feedback, profiles_topic(), "default")


def test_no_history_no_profile_or_opt_out_gets_the_same_ranker():
    book = ProfileBook()
    personaliser = _personaliser(book)
    ranker = Ranker("profile:blended", {"visual": 1.0, "colour": 0.05})
    assert personaliser.begin("", None, ranker) is ranker
    assert personaliser.begin("nobody", None, ranker) is ranker
    profile = events_pb2.UserProfile(user_id="u", updated_ms=T0, evidence=2.0, positive={"colour:red": 2.0})
    book.put(profile)
    assert personaliser.begin("u", None, ranker) is ranker  # below the minimum evidence: cold start
    assert preference_of({"attributes": json.dumps([["colour", "red", 0.7]])}) == 0.0


def test_a_profile_adds_the_capped_preference_factor_and_scales_the_users_factors(monkeypatch):
    import time

    book = ProfileBook()
    personaliser = _personaliser(book, weight=5.0, max_weight=0.6)
    now = int(time.time() * 1000)
    profile = events_pb2.UserProfile(
        user_id="u",
        updated_ms=now,
        evidence=20.0,
        positive={"colour:red": 20.0},
        factor_lift={"colour": 4.0, "visual": 0.0},
        lift_events=20.0,
    )
    book.put(profile)
    ranker = Ranker("profile:blended", {"visual": 1.0, "colour": 0.05})
    personal = personaliser.begin("u", None, ranker)
    assert personal.name == "profile:blended+personal" and PREFERENCE_FACTOR in FACTORS
    # Lifts 0.2 (colour) and 0 (visual), mean 0.1: x1.2 and x0.8.
    assert personal.weights == pytest.approx({"visual": 0.8, "colour": 0.05 * 1.2, PREFERENCE_FACTOR: 0.6})
    assert personaliser.current_user() == "u"
    assert preference_of({"attributes": json.dumps([["colour", "red", 0.7]])}) == pytest.approx(1.0)
    assert preference_of({"attributes": json.dumps([["colour", "black", 0.7]])}) == 0.0
    assert personaliser.begin("u", False, ranker) is ranker  # personalise=false
    assert preference_of({"attributes": json.dumps([["colour", "red", 0.7]])}) == 0.0  # the context is reset


def test_feedback_is_enriched_with_the_clicked_and_skipped_hits_concepts():
    personaliser = _personaliser(ProfileBook())
    personaliser.begin("u", None, Ranker("r", {"visual": 1.0}))
    response = search_pb2.SearchResponse(query_id="q")
    for image_id, visual in (("black", 0.9), ("red", 0.7)):
        response.hits.add(image_id=image_id).factors.add(name="visual", value=visual)
    personaliser.served(response)
    request = search_pb2.FeedbackRequest(events=[click(user="u", query="q", image="red")])
    event = personaliser.enrich(request).events[0]
    assert list(event.concepts) == ["category:shoe", "colour:red"]
    assert list(event.skipped_concepts) == ["category:shoe", "colour:black"]
    assert event.factor_lift["visual"] == pytest.approx(-0.2) and event.skipped_hits == 1
    assert not request.events[0].concepts  # the caller's request is left as it was
    first = personaliser.enrich(search_pb2.FeedbackRequest(events=[click(user="u", query="q", image="black")]))
    assert list(first.events[0].skipped_concepts) == ["category:shoe", "colour:red"]  # the next hit, not clicked


def test_show_and_forget_need_a_user_and_forget_writes_a_tombstone():
    transport, book = InProcessTransport(), ProfileBook()
    personaliser = _personaliser(book, transport)
    with pytest.raises(InvalidEventError):
        personaliser.show("")
    book.put(events_pb2.UserProfile(user_id="u", version=1, evidence=5.0, positive={"colour:red": 5.0}))
    shown = personaliser.show("u")
    assert shown.found and shown.concepts[0].value == "colour:red"
    assert personaliser.forget("u").existed and book.get("u") is None
    tombstone = transport.messages(profiles_topic())[-1]
    assert tombstone.key == b"u" and tombstone.value == b""
    assert not personaliser.show("u").found
