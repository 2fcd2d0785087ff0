"""Judged data for learning to rank, from a real catalogue through the real search API.

Fashion-MNIST items (Debian's ``dataset-fashion-mnist``) are ingested into a platform; queries are
sent through ``SearchService.Search`` with the ``blended`` profile and a deep ``top_k``, so every hit
carries the raw factor values the service computes (``hit.factors``); each hit is graded by ground
truth, not by any model:

- image queries: held-out test-split images; grade 2 = the query's category, 1 = the same garment
  group (tops: t-shirt/top, pullover, coat, shirt; footwear: sandal, sneaker, ankle boot), 0 = other;
- text queries: everyday words for a category that are not in the catalogue's titles ("jeans",
  "handbag", "trainers"...; the titles say "trouser #12"), graded the same way.

The result is :class:`~visearch.offline.rank.learning.Judgment` rows (``visearch rank fit
--judgments`` reads them as JSONL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from visearch.offline.datasets import FASHION_MNIST_CLASSES, fashion_mnist
from visearch.offline.rank.learning import Judgment
from visearch.v1 import common_pb2, events_pb2, search_pb2

FASHION_GROUPS = {
    "t-shirt/top": "tops",
    "pullover": "tops",
    "coat": "tops",
    "shirt": "tops",
    "dress": "dress",
    "trouser": "trouser",
    "sandal": "footwear",
    "sneaker": "footwear",
    "ankle boot": "footwear",
    "bag": "bag",
}
# Words people search with, none of them in a Fashion-MNIST title ("<category> #<index>").
FASHION_TEXT_QUERIES = {
    "jeans": "trouser",
    "slacks": "trouser",
    "pants": "trouser",
    "handbag": "bag",
    "purse": "bag",
    "tote": "bag",
    "boots": "ankle boot",
    "chelsea boots": "ankle boot",
    "jumper": "pullover",
    "sweater": "pullover",
    "hoodie": "pullover",
    "jacket": "coat",
    "parka": "coat",
    "tee": "t-shirt/top",
    "tank top": "t-shirt/top",
    "blouse": "shirt",
    "button-down": "shirt",
    "gown": "dress",
    "summer frock": "dress",
    "flip flops": "sandal",
    "slides": "sandal",
    "trainers": "sneaker",
    "running shoes": "sneaker",
}
assert set(FASHION_GROUPS) == set(FASHION_MNIST_CLASSES) >= set(FASHION_TEXT_QUERIES.values())


def fashion_grade(query_category: str, hit_category: str) -> int:
    """2: same category; 1: same garment group; 0: otherwise (hits that are not Fashion-MNIST items too)."""
    if hit_category == query_category:
        return 2
    return 1 if FASHION_GROUPS.get(hit_category) == FASHION_GROUPS[query_category] else 0


@dataclass(frozen=True)
class JudgedQuery:
    """A query with its ground truth: ``request`` fills a SearchRequest's query, ``grade`` grades a hit."""

    query_id: str
    request: Callable[[search_pb2.SearchRequest], None]
    grade: Callable[[search_pb2.Hit], int]


def fashion_queries(images: int, test_offset: int = 0, text: bool = True) -> list[JudgedQuery]:
    """``images`` image queries from the Fashion-MNIST test split (starting at ``test_offset``), plus the
    text queries of :data:`FASHION_TEXT_QUERIES` with ``text``."""
    queries = []
    for item in fashion_mnist("test", limit=images, offset=test_offset):

        def fill(request, content=item.content):
            request.image.CopyFrom(common_pb2.Image(content=content))

        queries.append(
            JudgedQuery(f"image:{item.image_id}", fill, lambda hit, c=item.category: fashion_grade(c, hit.category))
        )
    if text:
        for words, category in FASHION_TEXT_QUERIES.items():

            def fill_text(request, words=words):
                request.text = words

            queries.append(
                JudgedQuery(f"text:{words}", fill_text, lambda hit, c=category: fashion_grade(c, hit.category))
            )
    return queries


def judge(
    search, queries: Iterable[JudgedQuery], tenant: str = "", top_k: int = 100, profile: str = "blended"
) -> Iterator[Judgment]:
    """Send each query through ``search`` (a SearchService or a SearchService stub) with ``profile`` and
    ``top_k``; yield one judgment per hit: its factor values (``hit.factors``) and its ground-truth grade."""
    for query in queries:
        request = search_pb2.SearchRequest(tenant=tenant, top_k=top_k, ranking=search_pb2.RankingProfile(name=profile))
        query.request(request)
        response = search.Search(request, None)
        for hit in response.hits:
            yield Judgment(query.query_id, hit.image_id, {f.name: f.value for f in hit.factors}, query.grade(hit))


def simulated_feedback(
    response: search_pb2.SearchResponse, category: str, examined: int = 10
) -> list[events_pb2.FeedbackEvent]:
    """What a user who wants a Fashion-MNIST ``category`` sends back for a served list: among the first
    ``examined`` hits, a click on every relevant one (grade >= 1) and a purchase of every one of the category
    (grade 2), so the labels of the join equal the ground-truth grades of the examined hits.

    A deterministic user who looks at every examined hit alike. Behaviour that depends on the served order
    (buying the first matching hit, looking at the top few only) labels by the logging ranker's own order,
    and a fit on such labels loses to that ranker on them (docs/quality.md, position bias).
    """
    action = events_pb2.FeedbackEvent
    events = []
    for position, hit in enumerate(response.hits[:examined]):
        grade = fashion_grade(category, hit.category)
        for kind in [action.ACTION_CLICK, action.ACTION_PURCHASE][:grade]:
            events.append(action(query_id=response.query_id, image_id=hit.image_id, position=position, action=kind))
    return events
