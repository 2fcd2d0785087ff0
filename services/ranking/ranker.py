"""The blended ranker: factor values per candidate -> one score per hit, with each factor's contribution.

A ranker is data: factor weights, a fusion method and a bias. Two fusions:

- ``blend``: ``score = bias + sum_f w_f * value_f`` (a linear model; what ``visearch rank fit`` learns
  with logistic regression, so a learned ranker explains itself the same way a hand-set one does);
- ``rrf``: reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009):
  ``score = sum_f w_f / (k + rank_f)``, rank_f the candidate's 1-based rank by factor f among the
  candidates with a positive value of it (ties share a rank). Insensitive to the factors' scales.

Profiles are named weight sets (built in, from configuration, per tenant); a request may name one and
override single weights. A learned ranker (``ranker-v<N>.json`` in the ranker folder) replaces the
default profile when present, and is hot-reloaded by :class:`RankerRegistry`.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from visearch.shared.errors import InvalidEventError
from visearch.shared.logging import get_logger
from visearch.shared.metrics import RANKER_VERSION

log = get_logger("ranker")

# Every factor a hit can carry (see FactorScore in protos/visearch/v1/search.proto for their ranges).
FACTORS = (
    "visual",
    "region",
    "text",
    "bm25",
    "tags",
    "taxonomy",
    "colour",
    "in_stock",
    "freshness",
    "phash",
    "exact",
    "preference",  # personalisation: weighed only for a user with a profile (services/ranking/personalisation.py)
)
FUSIONS = ("blend", "rrf")
RANKER_FORMAT = "visearch.ranker/1"
_RANKER_FILE = re.compile(r"^ranker-v(\d+)\.json$")

# Hand-set starting points, measured on the eval suites (docs/quality.md); `visearch rank fit` learns better.
BUILTIN_PROFILES: dict[str, dict[str, float]] = {
    # Vector similarity only: the global visual cosine for image queries, the joint-space cosine for text.
    "visual_only": {"visual": 1.0, "text": 1.0},
    "blended": {
        "visual": 1.0,
        "region": 0.3,
        "text": 1.0,
        "bm25": 1.0,
        "tags": 0.2,
        "taxonomy": 0.1,
        "colour": 0.05,
        "phash": 0.3,
        "in_stock": 0.02,
        "freshness": 0.0,
    },
    # Search by colour: the palette decides, stock breaks ties.
    "colour": {"colour": 1.0, "in_stock": 0.02},
}
DEFAULT_PROFILE = "blended"


@dataclass(frozen=True)
class RankedHit:
    """A candidate's place after ranking: ``score`` and ``contributions`` (factor -> its part of the score)."""

    image_id: str
    score: float
    contributions: dict[str, float]


@dataclass(frozen=True)
class Ranker:
    """Weights over :data:`FACTORS`, a fusion and a bias: everything that orders a candidate list.

    Args:
        name: what served a list, reported in SearchResponse.ranker ("profile:blended", "learned:3").
        weights: factor -> weight (any real; missing factors weigh 0).
        fusion: "blend" or "rrf".
        rrf_k: the RRF constant k (60 in Cormack et al.).
        bias: added to every blended score (a learned intercept; does not change the order).
    """

    name: str
    weights: Mapping[str, float] = field(default_factory=dict)
    fusion: str = "blend"
    rrf_k: int = 60
    bias: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FACTORS)
        if unknown:
            raise InvalidEventError(
                f"unknown ranking factors {sorted(unknown)}; known: {list(FACTORS)}", reason="bad_ranking_profile"
            )
        if self.fusion not in FUSIONS:
            raise InvalidEventError(
                f"fusion must be one of {FUSIONS}, got {self.fusion!r}", reason="bad_ranking_profile"
            )
        if any(not math.isfinite(w) for w in self.weights.values()):
            raise InvalidEventError("ranking weights must be finite numbers", reason="bad_ranking_profile")

    def active(self, factor: str) -> bool:
        """True when ``factor`` carries a non-zero weight (worth computing for the candidates)."""
        return self.weights.get(factor, 0.0) != 0.0

    def with_overrides(self, weights: Mapping[str, float] | None = None, fusion: str | None = None) -> Ranker:
        """A copy with some weights (and the fusion) replaced; its name gets a ``+override`` suffix."""
        if not weights and not fusion:
            return self
        return replace(
            self,
            name=f"{self.name}+override",
            weights={**self.weights, **(weights or {})},
            fusion=fusion or self.fusion,
        )

    def rank(self, factors: Mapping[str, Mapping[str, float]]) -> list[RankedHit]:
        """Order candidates, best first (ties broken by image id, so results are deterministic).

        Args:
            factors: image id -> (factor -> raw value); a factor a candidate lacks counts as 0 in a blend;
                in RRF only positive values rank (no evidence, no contribution).
        """
        if self.fusion == "rrf":
            hits = self._rrf(factors)
        else:
            hits = []
            for image_id, values in factors.items():
                parts = {f: self.weights[f] * v for f, v in values.items() if self.weights.get(f, 0.0) != 0.0}
                hits.append(RankedHit(image_id, self.bias + sum(parts.values()), parts))
        return sorted(hits, key=lambda h: (-h.score, h.image_id))

    def _rrf(self, factors: Mapping[str, Mapping[str, float]]) -> list[RankedHit]:
        parts: dict[str, dict[str, float]] = {image_id: {} for image_id in factors}
        for factor, weight in self.weights.items():
            if weight == 0.0:
                continue
            # A factor's list holds the candidates with evidence (value > 0); ties share the best rank.
            having = sorted(
                (i for i, v in factors.items() if v.get(factor, 0.0) > 0), key=lambda i: -factors[i][factor]
            )
            rank, previous = 0, None
            for position, image_id in enumerate(having, start=1):
                if factors[image_id][factor] != previous:
                    rank, previous = position, factors[image_id][factor]
                parts[image_id][factor] = weight / (self.rrf_k + rank)
        return [RankedHit(i, sum(p.values()), p) for i, p in parts.items()]

    def to_json(self, **extra: Any) -> str:
        """The ranker file's content: format, weights, fusion, bias, plus ``extra`` (version, metrics...)."""
        return json.dumps(
            {
                "format": RANKER_FORMAT,
                "name": self.name,
                "weights": dict(self.weights),
                "fusion": self.fusion,
                "rrf_k": self.rrf_k,
                "bias": self.bias,
                **extra,
            },
            indent=2,
        )


def read_ranker(path: Path) -> tuple[Ranker, dict[str, Any]]:
    """Read a ranker file written by :meth:`Ranker.to_json`; returns the ranker and the whole document.

    Raises:
        ValueError: the file is not a visearch ranker (wrong format tag, bad JSON, unknown factors).
    """
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != RANKER_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {RANKER_FORMAT!r}")
        ranker = Ranker(
            name=doc.get("name", Path(path).stem),
            weights={k: float(v) for k, v in doc["weights"].items()},
            fusion=doc.get("fusion", "blend"),
            rrf_k=int(doc.get("rrf_k", 60)),
            bias=float(doc.get("bias", 0.0)),
        )
    except (OSError, KeyError, TypeError, json.JSONDecodeError, InvalidEventError) as exc:
        raise ValueError(f"{path} is not a usable ranker file: {exc}") from exc
    return ranker, doc


def write_ranker(directory: Path, ranker: Ranker, **extra: Any) -> Path:
    """Write ``ranker`` as the next version ``ranker-v<N+1>.json`` in ``directory`` (created if needed).

    Written to a temporary name and renamed, so a service reloading the folder never reads half a file.
    Returns the new file's path; its document carries ``version`` = N+1.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    version = max((v for v, _ in ranker_files(directory)), default=0) + 1
    named = replace(ranker, name=f"learned:{version}")
    path = directory / f"ranker-v{version}.json"
    tmp = directory / f".{path.name}.tmp"
    tmp.write_text(named.to_json(version=version, **extra))
    tmp.replace(path)
    return path


def ranker_files(directory: Path) -> list[tuple[int, Path]]:
    """The ``ranker-v<N>.json`` files of ``directory`` as (N, path), oldest first (other names ignored)."""
    found = []
    for p in directory.glob("ranker-v*.json"):
        m = _RANKER_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


class RankerRegistry:
    """The rankers a ranking service can use: built-in and configured profiles, per-tenant defaults, and
    the newest learned ranker of ``learned_dir``, re-read when a newer version appears (checked at most
    every ``reload_interval_s`` seconds, on the request path: no thread to manage).

    A broken newest file is logged and skipped; the previous ranker keeps serving.

    Args:
        profiles: extra named profiles (name -> weights), on top of :data:`BUILTIN_PROFILES`.
        default_profile: the profile used when neither request nor tenant names one and no ranker is learned.
        tenant_profiles: tenant -> profile name.
        learned_dir: folder of ``ranker-v<N>.json`` files (None: no learned ranker).
    """

    def __init__(
        self,
        profiles: Mapping[str, Mapping[str, float]] | None = None,
        default_profile: str = DEFAULT_PROFILE,
        tenant_profiles: Mapping[str, str] | None = None,
        learned_dir: Path | None = None,
        reload_interval_s: float = 5.0,
        rrf_k: int = 60,
    ) -> None:
        self.profiles = {
            name: Ranker(f"profile:{name}", dict(w), rrf_k=rrf_k)
            for name, w in {**BUILTIN_PROFILES, **(profiles or {})}.items()
        }
        for name in [default_profile, *(tenant_profiles or {}).values()]:
            if name not in self.profiles:
                raise ValueError(f"unknown ranking profile {name!r}; known: {sorted(self.profiles)}")
        self.default_profile = default_profile
        self.tenant_profiles = dict(tenant_profiles or {})
        self.learned_dir = Path(learned_dir) if learned_dir else None
        self.reload_interval_s = reload_interval_s
        self._learned: Ranker | None = None
        self._learned_version = 0
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    @property
    def learned(self) -> Ranker | None:
        """The learned ranker in use (after a reload check), or None."""
        if time.monotonic() - self._checked >= self.reload_interval_s:
            self.reload()
        return self._learned

    def reload(self) -> int:
        """Serve the newest readable ranker file of the folder; returns the version in use (0: none, profiles).

        A newer version is loaded; when the file of the version in use has been deleted (a rollback), the
        newest remaining one is, or with none left the profiles serve again. Unreadable files are skipped.
        """
        with self._lock:
            self._checked = time.monotonic()
            versions = (
                ranker_files(self.learned_dir) if self.learned_dir is not None and self.learned_dir.is_dir() else []
            )
            present = {v for v, _ in versions}
            if versions and max(present) <= self._learned_version and self._learned_version in present:
                return self._learned_version  # nothing newer, and the one in use is still there
            for version, path in reversed(versions):
                if version == self._learned_version:
                    return version
                try:
                    self._learned, _ = read_ranker(path)
                except ValueError as exc:
                    log.error("ranker_unreadable", path=str(path), error=str(exc))
                    continue
                log.info("ranker_loaded", version=version, path=str(path), previous=self._learned_version)
                self._learned_version = version
                RANKER_VERSION.set(version)
                return version
            if self._learned is not None:
                log.warning("ranker_removed", version=self._learned_version, serving="profiles")
            self._learned, self._learned_version = None, 0
            RANKER_VERSION.set(0)
            return 0

    def resolve(
        self,
        tenant: str,
        name: str = "",
        weights: Mapping[str, float] | None = None,
        fusion: str | None = None,
        default: str | None = None,
    ) -> Ranker:
        """The ranker for one request: the named profile, else the learned ranker, else the tenant's or
        ``default`` profile; then the request's weight and fusion overrides.

        Raises:
            InvalidEventError: unknown profile name or factor (reason ``bad_ranking_profile``).
        """
        if name:
            if name not in self.profiles:
                raise InvalidEventError(
                    f"unknown ranking profile {name!r}; known: {sorted(self.profiles)}", reason="bad_ranking_profile"
                )
            base = self.profiles[name]
        elif default is not None:  # the query kind has its own profile (colour search)
            base = self.profiles[default]
        else:
            learned = self.learned
            base = learned or self.profiles[self.tenant_profiles.get(tenant, self.default_profile)]
        return base.with_overrides(weights, fusion)
