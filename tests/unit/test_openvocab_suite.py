"""The ``openvocab`` evaluation suite (GitHub issue 16) without running models: enough queries, most of them
naming no ImageNet-1k class, judgments on images of its catalogue, a catalogue with no text to match, and
the hit@3 and hub-share figures it is read by, on hand-made rankings."""

from __future__ import annotations

import json
import re

import pytest

from visearch.offline.datasets import photo_catalogue
from visearch.offline.evaluation.metrics import HIT_K, QueryMetrics, hit_at_k, hub_share, summarise
from visearch.offline.evaluation.report import markdown
from visearch.offline.evaluation.runner import Profile, run_profile
from visearch.offline.evaluation.suites import (
    OPENVOCAB_TENANT,
    SUITES,
    EvalQuery,
    Suite,
    build_suites,
    distractor_images,
    openvocab_photos,
    suite_data,
)
from visearch.shared.config import ModelSettings
from visearch.shared.models.registry import IMAGE_MODEL
from visearch.v1 import search_pb2

QUERIES = suite_data()["openvocab"]
STOP = {"a", "an", "the", "of", "in", "on", "with", "and", "at", "to", "its", "his", "up", "for", "next", "across"}


@pytest.fixture(scope="module")
def suite() -> Suite:
    (built,) = build_suites(["openvocab"], distractors=3)
    return built


@pytest.fixture(scope="module")
def class_lemmas() -> set[str]:
    """Every lemma of the 1,000 ImageNet classes, lower case (from the built image model's classes.json)."""
    folder = IMAGE_MODEL.locate(ModelSettings().cache_dir)  # fails (not skips) before `visearch models build`
    classes = json.loads((folder / "classes.json").read_text())
    assert len(classes) == 1000
    return {lemma.lower() for c in classes for lemma in [c["name"], *c["lemmas"]]}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z][a-z'-]*", text.lower())


def _singulars(word: str) -> set[str]:
    forms = {word}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def lemmas_in(query: str, lemmas: set[str]) -> set[str]:
    """Class lemmas that are a whole phrase of ``query`` (any run of its words, the last one also singular):
    the whole query, each word, and each multi-word phrase such as "bald eagle"."""
    words = _words(query)
    found = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            for last in _singulars(words[j - 1]):
                phrase = " ".join([*words[i : j - 1], last])
                if phrase in lemmas:
                    found.add(phrase)
    return found


def test_openvocab_is_a_known_suite_with_its_own_tenant(suite):
    assert "openvocab" in SUITES and SUITES.index("openvocab") > SUITES.index("text2image")
    assert suite.name == "openvocab" and suite.tenant == OPENVOCAB_TENANT != "eval-photos"
    assert suite.stages is None  # the platform's whole chain: the text it can find comes from the pixels


def test_at_least_40_queries_most_of_them_open(suite):
    assert len(QUERIES) >= 44 and len(suite.queries) == len(QUERIES)
    opened = [q for q in QUERIES if q["open"]]
    assert len(opened) >= 0.6 * len(QUERIES), (len(opened), len(QUERIES))
    assert all(isinstance(q["open"], bool) for q in QUERIES)
    assert sum(q.info["open"] == "true" for q in suite.queries) == len(opened)
    texts = [q["query"].lower() for q in QUERIES]
    assert len(set(texts)) == len(texts), "a query appears twice"
    # Short, as users type them: most are 1-4 words.
    assert sum(len(_words(t)) <= 4 for t in texts) >= 0.8 * len(texts)


@pytest.mark.models
def test_open_queries_name_no_imagenet_class_and_closed_ones_do(class_lemmas):
    for q in QUERIES:
        found = lemmas_in(q["query"], class_lemmas)
        if q["open"]:
            assert not found, (q["query"], found)
        else:
            assert found, f"{q['query']!r} is marked closed but names no ImageNet class"


def test_lemma_phrases_are_matched_whole():
    lemmas = {"bald eagle", "kite", "stone wall", "cup"}
    assert lemmas_in("Bald Eagle", lemmas) == {"bald eagle"}
    assert lemmas_in("an eagle", lemmas) == set()
    assert lemmas_in("kites over the sea", lemmas) == {"kite"}
    assert lemmas_in("kitesurfing", lemmas) == set()
    assert lemmas_in("old stone walls", lemmas) == {"stone wall"}
    assert lemmas_in("cupboard", lemmas) == set()


def test_every_judgment_is_graded_and_names_an_image_of_the_catalogue(suite):
    declared = {i.image_id for i in [*photo_catalogue(), *distractor_images(), *openvocab_photos()]}
    present = {i.image_id for i in suite.catalogue}
    assert declared <= present
    for q in QUERIES:
        assert q["relevant"] and all(g in (1, 2) for g in q["relevant"].values()), q
        missing = set(q["relevant"]) - present
        assert not missing, (q["query"], missing)
    for q in suite.queries:
        assert q.text and q.judgments and q.info["query"] == q.text and q.info["open"] in ("true", "false")


def test_the_extra_photos_are_installed_package_files():
    extra = suite_data()["openvocab_photos"]
    assert [p.image_id for p in openvocab_photos()] == [p["id"] for p in extra]
    taken = {i.image_id for i in [*photo_catalogue(), *distractor_images()]}
    assert not taken & {p["id"] for p in extra}


def test_the_catalogue_is_image_only(suite):
    """No title, description, category, brand, tags, attributes or file path: BM25 has nothing to match."""
    ids = [i.image_id for i in suite.catalogue]
    assert len(ids) == len(set(ids))
    assert sum(i.startswith("fmnist-") for i in ids) == 3
    for item in suite.catalogue:
        assert item.content and item.uri is None, item.image_id
        assert (item.title, item.description, item.category, item.brand, item.tags, item.attributes) == (
            "",
            "",
            "",
            "",
            [],
            {},
        ), item.image_id


def test_queries_do_not_copy_titles():
    """A query of three content words or more shares at most half of them with any title it could be read
    from (one- and two-word queries naming the thing are not copies)."""
    titles = [i.title for i in [*photo_catalogue(), *distractor_images(), *openvocab_photos()]]
    for q in QUERIES:
        words = set(_words(q["query"])) - STOP
        if len(words) >= 3:
            for title in titles:
                shared = words & set(_words(title))
                assert len(shared) <= len(words) / 2, (q["query"], title, shared)


def test_hit_at_k_by_hand():
    judged = {"a": 2, "b": 1, "z": 0}
    assert hit_at_k(["x", "y", "b", "a"], judged, 3) == 1.0
    assert hit_at_k(["x", "y", "z", "a"], judged, 3) == 0.0  # grade 0 is not a hit; a is fourth
    assert hit_at_k(["x", "y", "z", "a"], judged, 4) == 1.0
    assert hit_at_k([], judged, 3) == 0.0
    with pytest.raises(ValueError):
        hit_at_k(["a"], judged, 0)
    per_query = [QueryMetrics.of(["x", "a"], {"a": 1}, 10), QueryMetrics.of(["x", "y", "z", "a"], {"a": 1}, 10)]
    assert [q.hit for q in per_query] == [1.0, 0.0]
    assert summarise(per_query, 10)[f"hit@{HIT_K}"] == pytest.approx(0.5)


def test_hub_share_by_hand():
    rankings = [["h", "a", "b"], ["c", "h", "d"], ["e", "f", "g", "h"], ["h", "h", "x"]]
    # h is in the top 3 of queries 1, 2 and 4 (counted once in 4); the third holds it at rank 4 only
    assert hub_share(rankings, 3) == ("h", pytest.approx(3 / 4))
    assert hub_share(rankings, 4) == ("h", pytest.approx(1.0))
    assert hub_share([["b", "a"], ["a", "b"]], 1) == ("a", pytest.approx(0.5))  # a tie goes to the smaller id
    assert hub_share([[], []], 3) == ("", 0.0)
    with pytest.raises(ValueError):
        hub_share([], 3)


class _Search:
    """SearchService stand-in: a fixed ranking per query text."""

    def __init__(self, rankings: dict[str, list[str]]) -> None:
        self.rankings = rankings

    def Search(self, request, context):  # noqa: N802 (the gRPC method name)
        hits = [search_pb2.Hit(image_id=i) for i in self.rankings[request.text]]
        return search_pb2.SearchResponse(hits=hits, ranker="profile:blended", took_ms=2.0)


class _Platform:
    def __init__(self, rankings: dict[str, list[str]]) -> None:
        self.search = _Search(rankings)


def test_run_profile_reports_hit_hub_and_the_open_split():
    queries = [
        EvalQuery("o00", {"a": 2}, text="sparrow", info={"query": "sparrow", "open": "true"}),
        EvalQuery("o01", {"b": 2, "c": 1}, text="meadow", info={"query": "meadow", "open": "true"}),
        EvalQuery("o02", {"c": 2}, text="cup", info={"query": "cup", "open": "false"}),
    ]
    platform = _Platform({"sparrow": ["h", "a", "x"], "meadow": ["h", "y", "z", "c"], "cup": ["c", "h"]})
    suite = Suite("openvocab", OPENVOCAB_TENANT, [], queries, description="test")
    run = run_profile(platform, suite, Profile("blended", "blended"), k=10, depth=10)
    s = run["summary"]
    assert s["hit@3"] == pytest.approx(2 / 3) and (s["hub_image"], s["hub@3"]) == ("h", pytest.approx(1.0))
    assert s["by_open"]["open"]["queries"] == 2 and s["by_open"]["closed"]["queries"] == 1
    assert s["by_open"]["open"]["hit@3"] == pytest.approx(0.5) and s["by_open"]["closed"]["nDCG@10"] == pytest.approx(
        1.0
    )
    assert [r["hit"] for r in run["queries"]] == [1.0, 0.0, 1.0] and run["queries"][0]["open"] == "true"

    result = {
        "k": 10,
        "depth": 10,
        "blended_weights": {"visual": 1.0},
        "suites": {"openvocab": {"description": "test", "ingest": {"seconds": 0}, "profiles": {"blended": run}}},
    }
    report = markdown(result)
    assert "| hit@3 | hub@3 | hub image |" in report and "| h |" in report
    assert "open (2)" in report and "closed (1) 1.000 / 1.000" in report
