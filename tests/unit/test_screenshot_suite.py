"""The ``screenshot`` evaluation suite, built without models: deterministic query bytes, one query per photo
and layout, judgments pointing at the photo, shop wording that never copies a catalogue title, and pages
whose photo the framing heuristic finds again."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from visearch.offline.datasets import photo_catalogue
from visearch.offline.evaluation.suites import (
    SCREENSHOT_LAYOUTS,
    SHOP_LINES,
    SHOP_MENU,
    SHOP_NAMES,
    SHOP_NAV,
    SHOP_TITLES,
    SUITES,
    build_suites,
)
from visearch.shared.framing import main_region


@pytest.fixture(scope="module")
def suite():
    (built,) = build_suites(["screenshot"], distractors=0)
    return built


def test_screenshot_is_a_known_suite_after_the_other_photo_suites():
    assert SUITES.index("screenshot") > SUITES.index("text2image") > SUITES.index("neardup")
    names = [s.name for s in build_suites(["screenshot", "neardup"], distractors=0, transforms=["mirror_rotate_90"])]
    assert names == ["neardup", "screenshot"]


def test_building_twice_gives_the_same_bytes(suite):
    (again,) = build_suites(["screenshot"], distractors=0)
    assert [(q.qid, q.image, q.judgments, q.info) for q in again.queries] == [
        (q.qid, q.image, q.judgments, q.info) for q in suite.queries
    ]


def test_one_query_per_photo_and_layout_relevant_to_the_photo(suite):
    photos = [i.image_id for i in photo_catalogue()]
    assert photos, "no photos installed (make setup)"
    assert suite.tenant == "eval-photos" and {i.image_id for i in suite.catalogue} >= set(photos)
    expected = [f"{photo}/screenshot_{layout}" for photo in photos for layout in SCREENSHOT_LAYOUTS]
    assert [q.qid for q in suite.queries] == expected
    for q in suite.queries:
        assert q.text is None and q.judgments == {q.info["photo"]: 1} and q.qid.startswith(q.info["photo"] + "/")


def test_queries_are_jpeg_pages_with_the_photo_at_30_to_50_percent(suite):
    for q in suite.queries:
        page = Image.open(io.BytesIO(q.image))
        assert page.format == "JPEG" and page.mode == "RGB"
        assert 1280 <= page.width <= 1600 and 900 <= page.height <= 1000
        assert q.info["page"] == f"{page.width}x{page.height}"
        x1, y1, x2, y2 = map(int, q.info["box"].split(","))
        assert 0 <= x1 < x2 <= page.width and 0 <= y1 < y2 <= page.height
        # 30-50 % of the page width, less only where a tall or square photo had to fit the page's height
        assert 0.2 <= (x2 - x1) / page.width <= 0.5 + 1 / page.width, q.qid


def test_the_page_wording_never_copies_a_catalogue_title():
    """Shop names, titles, lines and menus share no word of four letters or more with any photo's title."""

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4}

    shop = set().union(
        *(
            words(t)
            for t in (
                *SHOP_NAMES,
                *SHOP_TITLES,
                *SHOP_LINES,
                *SHOP_NAV,
                *SHOP_MENU,
                "Add to cart",
                "Wishlist",
                "Search products",
            )
        )
    )
    for item in photo_catalogue():
        assert not words(item.title) & shop, (item.title, words(item.title) & shop)


def test_the_framing_heuristic_finds_every_pasted_photo(suite):
    """Part of the point of the suite: visearch.shared.framing.main_region recovers the pasted rectangle."""
    for q in suite.queries:
        found = main_region(Image.open(io.BytesIO(q.image)))
        box = tuple(map(int, q.info["box"].split(",")))
        assert found is not None, q.qid
        ix = max(0, min(found[2], box[2]) - max(found[0], box[0]))
        iy = max(0, min(found[3], box[3]) - max(found[1], box[1]))
        union = (found[2] - found[0]) * (found[3] - found[1]) + (box[2] - box[0]) * (box[3] - box[1]) - ix * iy
        assert ix * iy / union >= 0.9, (q.qid, box, found)
