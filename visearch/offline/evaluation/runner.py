"""Run suites against the search API of an embedded platform under several ranking profiles.

Each query goes through ``SearchService.Search`` exactly as a client's would (image bytes or text, the
suite's tenant, ``top_k`` = the evaluation depth, ``RankingProfile`` of the profile under test), so the
figures measure the served ranking: candidate routes, query understanding, factors and fusion.

Profiles (the ablation):
- ``visual_only``, ``blended``: the service's named profiles;
- ``blended_rrf``: the blended weights under reciprocal rank fusion;
- ``blended-no-<factor>``: the blended profile with that factor's weight overridden to 0, one per
  factor the blended profile weighs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tqdm import tqdm

from visearch.offline.evaluation.metrics import HIT_K, RECALL_LEVELS, QueryMetrics, hub_share, summarise
from visearch.offline.evaluation.suites import Suite
from visearch.shared.config import RankingSettings
from visearch.v1 import common_pb2, search_pb2

BASE_PROFILES = ("visual_only", "blended", "blended_rrf")
ABLATION_PREFIX = "blended-no-"


@dataclass(frozen=True)
class Profile:
    """A named RankingProfile request message (what the client sends)."""

    name: str
    base: str
    weights: Mapping[str, float] = field(default_factory=dict)
    fusion: int = search_pb2.FUSION_DEFAULT

    def message(self) -> search_pb2.RankingProfile:
        return search_pb2.RankingProfile(name=self.base, weights=dict(self.weights), fusion=self.fusion)


def blended_factors(search) -> list[str]:
    """The factors the service's ``blended`` profile weighs (non-zero), in the ranker's factor order."""
    from visearch.services.ranking.ranker import FACTORS

    weights = search.rankers.profiles["blended"].weights
    return [f for f in FACTORS if weights.get(f, 0.0) != 0.0]


def profiles_for(names: list[str] | None, factors: list[str]) -> list[Profile]:
    """Profiles by name (default: every base profile and one ablation per blended factor).

    Raises:
        ValueError: an unknown name (not a base profile nor ``blended-no-<factor>`` of ``factors``).
    """
    known = {
        "visual_only": Profile("visual_only", "visual_only"),
        "blended": Profile("blended", "blended"),
        "blended_rrf": Profile("blended_rrf", "blended", fusion=search_pb2.FUSION_RRF),
    }
    known.update({f"{ABLATION_PREFIX}{f}": Profile(f"{ABLATION_PREFIX}{f}", "blended", {f: 0.0}) for f in factors})
    names = names or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown profiles {unknown}; known: {list(known)}")
    return [known[n] for n in names]


EVAL_SIGNAL_BUDGET_MS = 60_000.0  # per query signal: no deadline in practice


def evaluation_settings(**overrides) -> RankingSettings:
    """Ranking settings for measuring quality: no impressions on the feedback topic (evaluation is not user
    traffic), and the query signals' time budgets lifted, so every signal the plan asks for is used whatever
    the machine's load (the budgets are a latency guard, measured by ``make bench``)."""
    budgets = {name: EVAL_SIGNAL_BUDGET_MS for name in RankingSettings().signal_budgets_ms}
    return RankingSettings(**{"feedback_impressions": False, "signal_budgets_ms": budgets, **overrides})


def ingest_suite(platform, suite: Suite, progress: bool = True) -> dict:
    """Ingest the suite's catalogue into its tenant; returns counts and seconds. Failures raise."""
    start = time.perf_counter()
    report = platform.ingest(
        suite.catalogue, progress=progress, total=len(suite.catalogue), tenant=suite.tenant, stages=suite.stages
    )
    if report.failed or report.indexed != len(suite.catalogue):
        raise RuntimeError(
            f"{suite.name}: indexed {report.indexed} of {len(suite.catalogue)}; failed: {report.failed[:5]}"
        )
    return {"indexed": report.indexed, "seconds": round(time.perf_counter() - start, 2)}


def run_profile(
    platform, suite: Suite, profile: Profile, k: int, depth: int, progress: Callable[[], None] | None = None
) -> dict:
    """Every query of ``suite`` under ``profile``: the summary (means; the hub image of the first :data:`HIT_K`
    results and the share of queries that hold it, ``hub@3`` and ``hub_image``; for queries with an ``open``
    info, nDCG@k and hit@3 of the open and the closed ones under ``by_open``), and per query its metrics and
    top ``k``."""
    per_query, rows, took, tops = [], [], [], []
    for q in suite.queries:
        request = search_pb2.SearchRequest(top_k=depth, tenant=suite.tenant, ranking=profile.message())
        if q.text is not None:
            request.text = q.text
        else:
            request.image.CopyFrom(common_pb2.Image(content=q.image))
        response = platform.search.Search(request, None)
        ranked = [h.image_id for h in response.hits]
        took.append(response.took_ms)
        tops.append(ranked[:HIT_K])
        metrics = QueryMetrics.of(ranked, q.judgments, k, depth)
        per_query.append(metrics)
        rows.append(
            {
                "qid": q.qid,
                **q.info,
                "ndcg": round(metrics.ndcg, 4),
                "ap": round(metrics.ap, 4),
                "rr": round(metrics.rr, 4),
                "hit": metrics.hit,
                "top": ranked[:k],
                "ranker": response.ranker,
                "top_factors": {f.name: round(f.contribution, 4) for f in response.hits[0].factors}
                if response.hits
                else {},
            }
        )
        if progress:
            progress()
    summary = summarise(per_query, k)
    summary["median_took_ms"] = float(sorted(took)[len(took) // 2])
    summary["hub_image"], summary[f"hub@{HIT_K}"] = hub_share(tops, HIT_K)
    groups = {
        "open": [m for q, m in zip(suite.queries, per_query) if q.info.get("open") == "true"],
        "closed": [m for q, m in zip(suite.queries, per_query) if q.info.get("open") == "false"],
    }
    by_open = {}
    for name, group in groups.items():
        if group:
            means = summarise(group, k)
            by_open[name] = {key: means[key] for key in (f"nDCG@{k}", f"hit@{HIT_K}", "queries")}
    if by_open:
        summary["by_open"] = by_open
    return {
        "profile": profile.name,
        "request": {
            "name": profile.base,
            "weights": dict(profile.weights),
            "fusion": search_pb2.Fusion.Name(profile.fusion),
        },
        "summary": summary,
        "queries": rows,
    }


def evaluate(
    platform,
    suites: list[Suite],
    profile_names: list[str] | None = None,
    k: int = 10,
    depth: int = 100,
    progress: bool = True,
) -> dict:
    """Ingest and run every suite under every profile; the whole result as one JSON-able document."""
    factors = blended_factors(platform.search)
    profiles = profiles_for(profile_names, factors)
    result = {
        "k": k,
        "depth": depth,
        "recall_levels": list(RECALL_LEVELS),
        "blended_factors": factors,
        "blended_weights": dict(platform.search.rankers.profiles["blended"].weights),
        "profiles": [p.name for p in profiles],
        "suites": {},
    }
    ingested: dict[tuple, dict] = {}
    for suite in suites:
        key = (suite.tenant, id(suite.catalogue))  # neardup and text2image share their catalogue
        if key not in ingested:
            ingested[key] = ingest_suite(platform, suite, progress)
        bar = tqdm(
            total=len(suite.queries) * len(profiles), desc=f"eval {suite.name}", unit="query", disable=not progress
        )
        runs = {p.name: run_profile(platform, suite, p, k, depth, bar.update) for p in profiles}
        bar.close()
        result["suites"][suite.name] = {
            "description": suite.description,
            "tenant": suite.tenant,
            "catalogue": len(suite.catalogue),
            "queries": len(suite.queries),
            "ingest": ingested[key],
            "profiles": runs,
        }
    return result
