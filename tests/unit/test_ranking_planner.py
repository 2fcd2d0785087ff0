"""The query planner (services/ranking/planner.py): which query-understanding signals an image query
computes, which retrieval routes it runs per region mode, the BM25 route, and how deep the routes fetch
and which stored fields they read."""

from __future__ import annotations

import numpy as np
import pytest

from visearch.services.ranking import planner
from visearch.services.ranking.factor_registry import route_fields
from visearch.services.ranking.planner import FetchPlan, bm25_route, plan_fetch, plan_routes, plan_signals
from visearch.services.ranking.query import Query
from visearch.services.ranking.ranker import BUILTIN_PROFILES, Ranker
from visearch.services.ranking.routes import MAX_WINDOW, Bm25Route, ColourRoute, JointRoute, RegionRoute, VisualRoute
from visearch.services.ranking.understanding import QueryObject, SignalPlan
from visearch.shared.config import RankingSettings
from visearch.shared.store import OUTPUT_FIELDS
from visearch.v1 import common_pb2, search_pb2

Mode = search_pb2.RegionMode
SETTINGS = RankingSettings()


def profile(name: str) -> Ranker:
    return Ranker(name, BUILTIN_PROFILES[name])


# --- plan_signals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.REGION_MODE_AUTO, Mode.REGION_MODE_GLOBAL_ONLY, Mode.REGION_MODE_QUERY_OBJECTS])
def test_without_understanding_only_the_objects_the_mode_needs(mode):
    plan = plan_signals(profile("blended"), mode, False, SETTINGS)
    assert plan == SignalPlan(objects=mode == Mode.REGION_MODE_QUERY_OBJECTS)


def test_the_blended_profile_plans_every_signal_it_weighs():
    plan = plan_signals(profile("blended"), Mode.REGION_MODE_AUTO, True, SETTINGS)
    assert plan == SignalPlan(pixels=True, framing=True, classes=True, text=True, objects=False)
    assert plan.expected() == {"visual", "colour", "phash", "tags", "taxonomy", "text"}


def test_visual_only_plans_only_the_framing():
    plan = plan_signals(profile("visual_only"), Mode.REGION_MODE_AUTO, True, SETTINGS)
    assert plan == SignalPlan(framing=True)
    assert plan.expected() == {"visual"}


def test_a_request_region_disables_the_framing():
    plan = plan_signals(profile("blended"), Mode.REGION_MODE_AUTO, True, SETTINGS, has_region=True)
    assert plan == SignalPlan(pixels=True, framing=False, classes=True, text=True)
    assert plan_signals(profile("visual_only"), Mode.REGION_MODE_AUTO, True, SETTINGS, has_region=True) == SignalPlan()


def test_the_colour_profile_plans_pixels_but_no_classes():
    plan = plan_signals(profile("colour"), Mode.REGION_MODE_AUTO, True, SETTINGS)
    assert plan == SignalPlan(pixels=True)  # no visual factor: nothing to frame; no tags or taxonomy: no classes


def test_the_framed_queries_setting_disables_the_framing():
    plan = plan_signals(profile("blended"), Mode.REGION_MODE_AUTO, True, RankingSettings(framed_queries=False))
    assert plan == SignalPlan(pixels=True, framing=False, classes=True, text=True)


def test_query_objects_plans_objects_without_framing():
    plan = plan_signals(profile("blended"), Mode.REGION_MODE_QUERY_OBJECTS, True, SETTINGS)
    assert plan == SignalPlan(pixels=True, framing=False, classes=True, text=True, objects=True)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"phash": 1.0}, SignalPlan(pixels=True)),
        ({"tags": 1.0}, SignalPlan(pixels=True, classes=True)),
        ({"taxonomy": 1.0}, SignalPlan(classes=True)),
        ({"bm25": 1.0}, SignalPlan(text=True)),
        ({"visual": 1.0, "bm25": -0.5}, SignalPlan(framing=True, text=True)),  # a negative weight is still weighed
        ({"in_stock": 1.0}, SignalPlan()),
    ],
)
def test_each_signal_follows_the_factors_it_feeds(weights, expected):
    assert plan_signals(Ranker("custom", weights), Mode.REGION_MODE_AUTO, True, SETTINGS) == expected


# --- plan_routes ---------------------------------------------------------------------------------------------

VISUAL = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
MAIN = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)


def _describe(routes) -> list[tuple]:
    return [
        (
            type(r).__name__,
            tuple(np.asarray(r.vector).tolist()),
            getattr(r, "query_box", None),
            getattr(r, "query_label", None),
        )
        for r in routes
    ]


def test_auto_with_the_region_weighed_adds_the_region_route_with_the_query_box():
    box = common_pb2.Box(x1=1, y1=2, x2=3, y2=4)
    routes = plan_routes(Query("image", visual=VISUAL), profile("blended"), Mode.REGION_MODE_AUTO, query_box=box)
    assert [type(r) for r in routes] == [VisualRoute, RegionRoute]
    assert routes[1].query_box == box and routes[1].query_label == ""
    np.testing.assert_array_equal(routes[0].vector, VISUAL)
    np.testing.assert_array_equal(routes[1].vector, VISUAL)


def test_auto_without_the_region_weight_is_the_global_route_alone():
    routes = plan_routes(Query("image", visual=VISUAL), profile("visual_only"), Mode.REGION_MODE_AUTO)
    assert [type(r) for r in routes] == [VisualRoute]


def test_global_only_never_searches_the_regions():
    routes = plan_routes(Query("image", visual=VISUAL), profile("blended"), Mode.REGION_MODE_GLOBAL_ONLY)
    assert [type(r) for r in routes] == [VisualRoute]


def test_query_objects_searches_the_regions_once_per_object():
    boxes = [common_pb2.Box(x1=0, y1=0, x2=10, y2=10), common_pb2.Box(x1=5, y1=5, x2=50, y2=60)]
    objects = [
        QueryObject(common_pb2.Detection(label="dog", score=0.9, box=boxes[0]), np.full(4, 0.5, np.float32)),
        QueryObject(common_pb2.Detection(label="ball", score=0.8, box=boxes[1]), np.full(4, 0.25, np.float32)),
    ]
    routes = plan_routes(
        Query("image", visual=VISUAL, main_visual=MAIN), profile("blended"), Mode.REGION_MODE_QUERY_OBJECTS, objects
    )
    assert _describe(routes) == [
        ("RegionRoute", (0.5,) * 4, boxes[0], "dog"),
        ("RegionRoute", (0.25,) * 4, boxes[1], "ball"),
    ]


@pytest.mark.parametrize("objects", [None, []])
def test_query_objects_without_objects_searches_the_whole_image_against_the_regions(objects):
    routes = plan_routes(Query("image", visual=VISUAL), profile("visual_only"), Mode.REGION_MODE_QUERY_OBJECTS, objects)
    assert _describe(routes) == [("RegionRoute", tuple(VISUAL.tolist()), None, "")]


@pytest.mark.parametrize(
    ("mode", "ranker", "kinds"),
    [
        (Mode.REGION_MODE_AUTO, "blended", ["VisualRoute", "VisualRoute", "RegionRoute"]),
        (Mode.REGION_MODE_AUTO, "visual_only", ["VisualRoute", "VisualRoute"]),
        (Mode.REGION_MODE_GLOBAL_ONLY, "blended", ["VisualRoute", "VisualRoute"]),
    ],
)
def test_a_main_photo_adds_a_second_visual_route(mode, ranker, kinds):
    routes = plan_routes(Query("image", visual=VISUAL, main_visual=MAIN), profile(ranker), mode)
    assert [type(r).__name__ for r in routes] == kinds
    np.testing.assert_array_equal(routes[0].vector, VISUAL)
    np.testing.assert_array_equal(routes[1].vector, MAIN)
    if len(routes) == 3:
        np.testing.assert_array_equal(routes[2].vector, VISUAL)  # the regions against the whole query


# --- bm25_route ----------------------------------------------------------------------------------------------

JOINT = np.array([0.0, 0.0, 1.0], dtype=np.float32)


def test_the_bm25_route_needs_text_and_the_bm25_weight():
    assert bm25_route(Query("image", visual=VISUAL), profile("blended")) is None  # no text
    assert bm25_route(Query("text", joint=JOINT, text="red"), profile("visual_only")) is None  # bm25 not weighed
    assert bm25_route(Query("text", joint=JOINT, text="red"), Ranker("z", {"bm25": 0.0})) is None


def test_the_bm25_route_carries_the_joint_vector_only_when_the_text_factor_is_weighed():
    route = bm25_route(Query("text", joint=JOINT, text="red shoe"), profile("blended"))
    assert isinstance(route, Bm25Route) and route.text == "red shoe"
    np.testing.assert_array_equal(route.joint, JOINT)
    route = bm25_route(Query("text", joint=JOINT, text="red shoe"), Ranker("bm25", {"bm25": 1.0}))
    assert route == Bm25Route("red shoe", None)
    # An image query's OCR text: no joint vector to compare with.
    route = bm25_route(Query("image", visual=VISUAL, text="sale"), profile("blended"))
    assert route.text == "sale" and route.joint is None


# --- plan_fetch ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile_name", "query", "routes", "depth"),
    [
        # Only the route's own similarity is weighed: the ANN order is final, the page is enough.
        ("visual_only", Query("image", visual=np.ones(4)), [VisualRoute(np.ones(4))], 10),
        ("visual_only", Query("text", joint=np.ones(4), text="red"), [JointRoute(np.ones(4))], 10),
        # A second factor can reorder: the rerank window.
        ("visual_only", Query("image_id", visual=np.ones(4), joint=np.ones(4)), [VisualRoute(np.ones(4))], 100),
        ("blended", Query("image", visual=np.ones(4)), [VisualRoute(np.ones(4))], 100),
        ("colour", Query("colour", colour=np.ones(4)), [ColourRoute(np.ones(4))], 100),
        ("visual_only", Query("image", visual=np.ones(4)), [VisualRoute(np.ones(4)), RegionRoute(np.ones(4))], 100),
    ],
)
def test_rerank_depth_follows_what_the_ranker_weighs(profile_name, query, routes, depth):
    ranker = profile(profile_name)
    signals = query.signals()
    fetch = plan_fetch(10, ranker, signals, {r.factor for r in routes}, 100)
    expected = tuple(OUTPUT_FIELDS) if depth == 10 else route_fields(ranker, signals)
    assert fetch == FetchPlan(depth, expected)
    assert fetch.factor_fields is None  # one field list for every route


@pytest.mark.parametrize(
    ("profile_name", "signals", "fields"),
    [
        ("blended", {"visual"}, ("image_id", "in_stock")),
        (
            "blended",
            {"visual", "tags", "taxonomy", "phash", "colour", "text"},
            ("image_id", "tags", "attributes", "taxonomy", "in_stock", "phash"),
        ),
        ("visual_only", {"visual", "joint"}, ("image_id",)),
        ("colour", {"colour"}, ("image_id", "in_stock")),
    ],
)
def test_a_deep_window_reads_only_the_weighed_factors_fields(profile_name, signals, fields):
    fetch = plan_fetch(10, profile(profile_name), signals, {"visual"}, 100)
    assert fetch == FetchPlan(100, fields)


@pytest.mark.parametrize("rerank_depth", [10, 30, planner.ALL_FIELDS_DEPTH])
def test_a_shallow_window_reads_every_field_with_the_factors_first(rerank_depth):
    ranker = profile("blended")
    signals = {"visual", "tags", "phash"}
    fetch = plan_fetch(10, ranker, signals, {"visual", "region"}, rerank_depth)
    assert fetch.depth == max(10, rerank_depth)
    assert fetch.fields[:5] == ("image_id", "tags", "attributes", "in_stock", "phash")
    assert set(fetch.fields) == set(OUTPUT_FIELDS) and len(fetch.fields) == len(set(fetch.fields))
    # The region route, whose rows are per object and rarely the page, reads the factors' fields alone.
    assert (
        fetch.factor_fields == ("image_id", "tags", "attributes", "in_stock", "phash") == route_fields(ranker, signals)
    )


def test_just_past_the_all_fields_depth_the_page_is_read_later():
    fetch = plan_fetch(10, profile("blended"), {"visual"}, {"visual"}, planner.ALL_FIELDS_DEPTH + 1)
    assert fetch == FetchPlan(planner.ALL_FIELDS_DEPTH + 1, ("image_id", "in_stock"))


def test_the_window_is_at_least_the_page_and_at_most_the_milvus_limit():
    ranker = profile("blended")
    assert plan_fetch(200, ranker, {"visual"}, {"visual"}, 100).depth == 200
    assert plan_fetch(MAX_WINDOW, ranker, {"visual"}, {"visual"}, MAX_WINDOW + 5).depth == MAX_WINDOW


def test_a_negative_weight_on_the_route_factor_keeps_the_window():
    ranker = Ranker("odd", {"visual": -1.0})
    assert plan_fetch(10, ranker, Query("image", visual=np.ones(4)).signals(), {"visual"}, 100).depth == 100


def test_a_fetch_plan_from_the_signals_a_plan_expects():
    # An image search plans its fetch with SignalPlan.expected() before the signals arrive.
    ranker = profile("visual_only")
    assert plan_fetch(10, ranker, SignalPlan(framing=True).expected(), {"visual"}, 100) == FetchPlan(
        10, tuple(OUTPUT_FIELDS)
    )
    blended = plan_signals(profile("blended"), Mode.REGION_MODE_AUTO, True, SETTINGS).expected()
    assert plan_fetch(10, profile("blended"), blended, {"visual", "region"}, 100).fields == (
        "image_id",
        "tags",
        "attributes",
        "taxonomy",
        "in_stock",
        "phash",
    )


def test_object_tags_follow_the_tags_factor_and_the_setting():
    """The detector runs on the query for the tags factor only when query_object_tags is on (default off: the
    query's objects come from its classes and visual neighbours)."""
    blended = profile("blended")
    detect = RankingSettings(query_object_tags=True)
    assert not plan_signals(blended, Mode.REGION_MODE_AUTO, True, SETTINGS).object_tags
    assert plan_signals(blended, Mode.REGION_MODE_AUTO, True, detect).object_tags
    assert not plan_signals(profile("visual_only"), Mode.REGION_MODE_AUTO, True, detect).object_tags
    assert not plan_signals(blended, Mode.REGION_MODE_AUTO, False, detect).object_tags
