"""Personalisation suite: simulated shoppers with known tastes, on the real Fashion-MNIST catalogue.

Catalogue: the first N Fashion-MNIST training images through embedding, classification (colours, tags,
taxonomy) and the indexer. Fashion-MNIST items all carry the brand "zalando"; each gets one of
:data:`BRANDS` by its index (``index % 4``), a label uncorrelated with what the images show, which only
personalisation can learn (the hardest case for a visual ranker).

Shoppers (:data:`TASTES`): colour-driven (white items), category-driven (sneakers among footwear, pullovers among
tops), brand-driven, and a mixed one (light grey and a brand, half the gain for either). A shopper searches
the text queries of :data:`QUERIES` (footwear and tops: the groups with several categories) in turn, examines
the first page of 10 and clicks the first hit that matches their taste best (no click when none does); each
click is sent through the Feedback RPC with their user_id and folded into their profile
(``EmbeddedPlatform.fold_profiles``, as ``visearch serve profiles`` does over Kafka).

Relevance of a hit for a query: its garment group is the query's (:func:`~visearch.offline.rank.judged.
fashion_grade` > 0) times its taste gain (the share of the taste's parts it matches, from its stored concepts).
The figures: per shopper, mean nDCG@10 over the held-out queries (every other query: the shopper never clicked
on their pages), personalised (``user_id``) against global (``personalise=false``), after each number of clicks
of :data:`CHECKPOINTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from visearch.offline.datasets import CatalogueItem, fashion_mnist
from visearch.offline.evaluation.metrics import ndcg_at_k
from visearch.offline.rank.judged import FASHION_TEXT_QUERIES, fashion_grade
from visearch.shared.user_profiles import concept_keys
from visearch.v1 import events_pb2, search_pb2

TENANT = "eval-personal"
STAGES = ["embedding", "classification", "indexer"]
BRANDS = ("northwind", "alder", "kestrel", "moss")
QUERY_GROUPS = ("footwear", "tops")
CHECKPOINTS = (0, 5, 10, 20, 30)
K = 10


@dataclass(frozen=True)
class Taste:
    """A shopper's taste: parts, each a set of alternative concept keys; gain = share of the parts matched."""

    name: str
    parts: tuple[tuple[str, ...], ...]

    def gain(self, concepts: set[str]) -> float:
        """The share of the taste's parts the concept keys match, in [0, 1]."""
        return sum(1.0 for part in self.parts if concepts.intersection(part)) / len(self.parts)


TASTES = (
    Taste("colour", (("colour:white",),)),
    Taste("category", (("category:sneaker", "category:pullover"),)),
    Taste("brand", (("brand:kestrel",),)),
    Taste("mixed", (("colour:light grey",), ("brand:alder",))),
)


def queries() -> list[tuple[str, str]]:
    """(text, category) of the text queries of :data:`QUERY_GROUPS`, in a fixed order."""
    from visearch.offline.rank.judged import FASHION_GROUPS

    return [(w, c) for w, c in FASHION_TEXT_QUERIES.items() if FASHION_GROUPS[c] in QUERY_GROUPS]


def catalogue(size: int) -> list[CatalogueItem]:
    """The first ``size`` Fashion-MNIST training items, each with a brand of :data:`BRANDS` by its index."""
    return [replace(item, brand=BRANDS[n % len(BRANDS)]) for n, item in enumerate(fashion_mnist("train", limit=size))]


@dataclass
class Shopper:
    """A simulated user: their taste, and the concept keys and category of every catalogue item."""

    user_id: str
    taste: Taste
    concepts: dict[str, set[str]]
    categories: dict[str, str]

    def gain(self, image_id: str, query_category: str) -> float:
        """Relevance of a hit: matches the query's garment group, times the taste gain."""
        if image_id not in self.concepts or fashion_grade(query_category, self.categories[image_id]) == 0:
            return 0.0
        return self.taste.gain(self.concepts[image_id])

    def judgments(self, query_category: str) -> dict[str, float]:
        """Every catalogue item's relevance for a query of ``query_category``."""
        return {i: self.gain(i, query_category) for i in self.concepts}

    def pick(self, hits: list[str], query_category: str) -> str | None:
        """The hit clicked on a page: the first of those with the best positive gain, or None."""
        gains = [self.gain(i, query_category) for i in hits]
        best = max(gains, default=0.0)
        return hits[gains.index(best)] if best > 0 else None


def search_ids(search, text: str, user_id: str, personalise: bool, tenant: str = TENANT) -> tuple[str, list[str]]:
    """(query_id, hit ids) of a text search of ``search`` (a SearchService or stub) for ``user_id``."""
    request = search_pb2.SearchRequest(text=text, top_k=K, tenant=tenant, user_id=user_id, personalise=personalise)
    response = search.Search(request, None) if hasattr(search, "personaliser") else search.Search(request)
    return response.query_id, [h.image_id for h in response.hits]


def mean_ndcg(search, shopper: Shopper, held_out: list[tuple[str, str]], personalise: bool) -> float:
    """Mean nDCG@10 of ``shopper`` over ``held_out`` queries, personalised or global."""
    scores = []
    for text, category in held_out:
        _, ids = search_ids(search, text, shopper.user_id, personalise)
        scores.append(ndcg_at_k(ids, shopper.judgments(category), K))
    return sum(scores) / len(scores)


def run_shopper(
    platform, shopper: Shopper, checkpoints: tuple[int, ...] = CHECKPOINTS, fold: Callable[[], object] | None = None
) -> dict:
    """Let ``shopper`` search and click until the last checkpoint; nDCG@10 personalised and global at each.

    Returns ``{"global": x, "personalised": {clicks: nDCG}, "clicks": n, "searches": n}``.
    """
    search, fold = platform.search, fold or platform.fold_profiles
    all_queries = queries()
    train, held_out = all_queries[0::2], all_queries[1::2]
    result: dict = {"global": mean_ndcg(search, shopper, held_out, False), "personalised": {}}
    clicks = searches = 0
    for target in checkpoints:
        while clicks < target and searches < 10 * max(checkpoints):
            text, category = train[searches % len(train)]
            searches += 1
            query_id, ids = search_ids(search, text, shopper.user_id, True)
            chosen = shopper.pick(ids, category)
            if chosen is None:
                continue
            event = events_pb2.FeedbackEvent(
                query_id=query_id,
                tenant=TENANT,
                image_id=chosen,
                action=events_pb2.FeedbackEvent.ACTION_CLICK,
                position=ids.index(chosen),
                user_id=shopper.user_id,
            )
            search.Feedback(search_pb2.FeedbackRequest(events=[event]), None)
            fold()
            clicks += 1
        result["personalised"][target] = mean_ndcg(search, shopper, held_out, True)
    result.update(clicks=clicks, searches=searches)
    return result


def shoppers(platform, items: list[CatalogueItem], tenant: str = TENANT) -> list[Shopper]:
    """One shopper per taste of :data:`TASTES`, with the catalogue's stored concepts (colours from the models)."""
    rows = platform.store.rows(tenant, [i.image_id for i in items])
    concepts = {r.image_id: set(concept_keys(r.fields)) for r in rows}
    categories = {r.image_id: str(r.fields.get("category", "")) for r in rows}
    return [Shopper(f"shopper-{t.name}", t, concepts, categories) for t in TASTES]


def evaluate_personalisation(platform, size: int = 600, checkpoints: tuple[int, ...] = CHECKPOINTS) -> dict:
    """Ingest the catalogue into ``platform`` (an EmbeddedPlatform with the classification stage) and run every
    shopper. Returns ``{"catalogue": n, "k": 10, "checkpoints": [...], "tastes": {name: run_shopper(...)}}``."""
    items = catalogue(size)
    report = platform.ingest(items, progress=False, tenant=TENANT, stages=STAGES)
    if report.failed:
        raise RuntimeError(f"personalisation catalogue: {len(report.failed)} items failed to ingest")
    tastes = {s.taste.name: run_shopper(platform, s, checkpoints) for s in shoppers(platform, items)}
    return {"catalogue": size, "k": K, "checkpoints": list(checkpoints), "tastes": tastes}


def markdown(result: dict) -> str:
    """The suite's table: per taste, global nDCG@10 and personalised after each checkpoint, and the gain."""
    checkpoints = result["checkpoints"]
    head = " | ".join(f"after {n}" for n in checkpoints)
    lines = [
        f"Personalisation: simulated shoppers, {result['catalogue']} Fashion-MNIST items, nDCG@{result['k']} of "
        "their taste on held-out queries",
        "",
        f"| taste | global | {head} | gain after {checkpoints[-1]} |",
        "|---" * (len(checkpoints) + 3) + "|",
    ]
    for name, run in result["tastes"].items():
        values = " | ".join(f"{run['personalised'][n]:.3f}" for n in checkpoints)
        gain = run["personalised"][checkpoints[-1]] - run["global"]
        lines.append(f"| {name} | {run['global']:.3f} | {values} | {gain:+.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    """nDCG@10 against clicks per taste (personalised: solid; global: dashed), as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, (name, run) in enumerate(result["tastes"].items()):
        colour = f"C{n}"
        points = sorted((int(k), v) for k, v in run["personalised"].items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, label=f"{name}")
        ax.axhline(run["global"], color=colour, linestyle="--", linewidth=1)
    ax.set_xlabel("clicks (interactions)")
    ax.set_ylabel(f"nDCG@{result['k']} of the taste")
    ax.set_title("Personalised (solid) vs global ranking (dashed)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
