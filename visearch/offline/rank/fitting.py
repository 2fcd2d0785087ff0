"""Fit the factor weights of a linear ranker on training data, and measure it on held-out queries.

Logistic regression (scikit-learn) over the raw factor values (a factor a candidate lacks is 0, as in
a blend), two objectives:

- ``pointwise`` (the default): each candidate is one example, the target "relevant" (label > 0), each
  positive weighted by its grade (a purchase, label 2, counts twice a click). Each query's feature rows
  are centred on the query's mean first: for a linear score the shift is the same for every candidate of
  the query, so the order within a query is unchanged, but the model no longer spends its weights on
  telling easy queries (high similarities everywhere) from hard ones, which is no ranking at all;
- ``pairwise`` (RankNet/RankSVM-style, Herbrich et al. 1999; Burges et al. 2005): each example is the
  difference of two candidates of one query with different labels, the target which one is better (at
  most ``max_pairs`` pairs a query, sampled with the seed, half of them flipped for balance).

Features are standardised for the fit (so the L2 penalty treats factors of different scales alike), and
the coefficients are folded back into raw-scale weights and a bias:

    w_f = coef_f / scale_f,    bias = intercept - sum_f coef_f * mean_f / scale_f

so the ranker file stays a plain linear blend over raw factor values (``score = bias + sum w_f v_f``,
:class:`~visearch.services.ranking.ranker.Ranker` with fusion "blend") and orders the candidates of a
query exactly as the fitted model's ``decision_function`` does. A factor that is constant in the
training data (never computed by the ranker that served the logged lists, e.g. a 0-weight factor)
gets weight 0.

Evaluation: queries are split (scikit-learn ``GroupShuffleSplit``, by query id, never a query on both
sides) into training and held-out queries; the model is fitted on the training queries only, and
nDCG@k (``sklearn.metrics.ndcg_score``, linear gains) of the fitted ranker, the default profile and
the current learned ranker is averaged over the held-out queries. The fitted ranker is the one written.

Why not LightGBM lambdarank: it learns an ensemble of trees, a piecewise-constant function of the
factors that no weight vector reproduces; the service's ranker is a linear blend (every hit explains
its score as per-factor contributions), so a tree model would need a second ranker kind in the service.
The pairwise objective above is the linear counterpart of what lambdarank optimises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ndcg_score
from sklearn.model_selection import GroupShuffleSplit
from sklearn.preprocessing import StandardScaler

from visearch.offline.rank.learning import Judgment, TrainingData
from visearch.services.ranking.ranker import FACTORS, Ranker

DEFAULT_K = 10
MIN_QUERIES = 4  # fewer than this cannot be split into training and held-out queries


class NotEnoughDataError(ValueError):
    """The training data cannot support a fit (too few queries, or no positive/negative examples)."""


def features(judgments: Sequence[Judgment], factors: Sequence[str] = FACTORS) -> np.ndarray:
    """The (candidates x factors) matrix of raw factor values; a missing factor is 0."""
    return np.array([[j.factors.get(f, 0.0) for f in factors] for j in judgments], dtype=np.float64).reshape(
        len(judgments), len(factors)
    )


OBJECTIVES = ("pointwise", "pairwise")


@dataclass(frozen=True)
class LinearFit:
    """A fitted logistic regression and its raw-scale form.

    For the candidates of one query, ``bias + weights . x`` orders them as ``decision_function`` of their
    prepared rows does (:func:`prepare_query`: centred for pointwise; pairwise models score differences).
    """

    weights: dict[str, float]
    bias: float
    model: LogisticRegression
    scaler: StandardScaler
    factors: tuple[str, ...]
    objective: str

    def ranker(self, name: str = "fitted") -> Ranker:
        return Ranker(name, dict(self.weights), fusion="blend", bias=self.bias)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """The sklearn model's scores of prepared feature rows (for checking the fold-back)."""
        return self.model.decision_function(self.scaler.transform(x))


def fold_back(
    coef: np.ndarray, intercept: float, mean: np.ndarray, scale: np.ndarray, factors: Sequence[str]
) -> tuple[dict[str, float], float]:
    """Raw-scale weights and bias of a linear model fitted on standardised features ``(x - mean) / scale``.

    Factors with ``scale`` 0 (zero variance in training; StandardScaler reports 1 for them) are dropped:
    their value was the same for every example, so nothing about their weight was learned.
    """
    weights, bias = {}, float(intercept)
    for f, c, m, s in zip(factors, coef, mean, scale, strict=True):
        if s <= 0 or c == 0:
            continue
        weights[f] = float(c / s)
        bias -= float(c * m / s)
    return weights, bias


def prepare_query(judgments: Sequence[Judgment], factors: Sequence[str] = FACTORS) -> np.ndarray:
    """A query's pointwise rows: raw factor values centred on the query's mean (order-preserving)."""
    x = features(judgments, factors)
    return x - x.mean(axis=0) if len(x) else x


def _pairs(
    judgments: Sequence[Judgment], factors: Sequence[str], max_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    x = features(judgments, factors)
    labels = np.array([j.label for j in judgments])
    better, worse = np.nonzero(labels[:, None] > labels[None, :])
    if len(better) > max_pairs:
        keep = rng.choice(len(better), max_pairs, replace=False)
        better, worse = better[keep], worse[keep]
    diff = x[better] - x[worse]
    flip = rng.random(len(diff)) < 0.5
    diff[flip] *= -1
    return diff, (~flip).astype(int)


def fit_linear(
    queries: Mapping[str, Sequence[Judgment]],
    objective: str = "pointwise",
    c: float = 1.0,
    seed: int = 0,
    max_pairs: int = 300,
    factors: Sequence[str] = FACTORS,
) -> LinearFit:
    """Fit the logistic regression on the judgments of ``queries`` and fold it back to raw-scale weights.

    Raises:
        NotEnoughDataError: no positive or no negative example (no pair of different labels, pairwise).
        ValueError: unknown objective.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    rng = np.random.default_rng(seed)
    if objective == "pointwise":
        groups = [list(js) for js in queries.values() if js]
        x = np.vstack([prepare_query(js, factors) for js in groups]) if groups else np.zeros((0, len(factors)))
        y = np.array([j.label > 0 for js in groups for j in js], dtype=int)
        sample_weight = np.array([max(j.label, 1) for js in groups for j in js], dtype=np.float64)
        scaler = StandardScaler()
    else:
        parts = [_pairs(js, factors, max_pairs, rng) for js in queries.values() if js]
        x = np.vstack([p[0] for p in parts]) if parts else np.zeros((0, len(factors)))
        y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=int)
        sample_weight = None
        scaler = StandardScaler(with_mean=False)  # differences: no centring, no intercept
    if len(y) == 0 or y.min() == y.max():
        raise NotEnoughDataError(
            "the training queries need candidates with different labels (relevant and non-relevant ones)"
        )
    scaler.fit(x)
    model = LogisticRegression(C=c, max_iter=5000, random_state=seed, fit_intercept=objective == "pointwise")
    model.fit(scaler.transform(x), y, sample_weight=sample_weight)
    scale = np.where(np.asarray(scaler.var_) > 0, scaler.scale_, 0.0)
    mean = scaler.mean_ if objective == "pointwise" else np.zeros(len(factors))
    intercept = float(model.intercept_[0]) if objective == "pointwise" else 0.0
    weights, bias = fold_back(model.coef_[0], intercept, mean, scale, factors)
    return LinearFit(weights, bias, model, scaler, tuple(factors), objective)


def mean_ndcg(ranker: Ranker, queries: Mapping[str, Sequence[Judgment]], k: int = DEFAULT_K) -> tuple[float, int]:
    """Mean nDCG@k of ``ranker`` over ``queries`` (``sklearn.metrics.ndcg_score``: linear gains, ties
    averaged); queries with a single candidate are left out (nDCG is undefined there). Returns the mean
    and the number of queries it is over (0 and 0 for none)."""
    values = []
    for judgments in queries.values():
        if len(judgments) < 2:
            continue
        scores = {h.image_id: h.score for h in ranker.rank({j.image_id: j.factors for j in judgments})}
        y_true = np.array([[j.label for j in judgments]], dtype=np.float64)
        y_score = np.array([[scores[j.image_id] for j in judgments]], dtype=np.float64)
        values.append(float(ndcg_score(y_true, y_score, k=k)))
    return (float(np.mean(values)), len(values)) if values else (0.0, 0)


def split_queries(query_ids: Sequence[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and held-out query ids (GroupShuffleSplit over queries; deterministic for a seed).

    Raises:
        NotEnoughDataError: fewer than MIN_QUERIES queries, or a holdout that leaves either side empty.
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    ids = sorted(set(query_ids))
    if len(ids) < MIN_QUERIES:
        raise NotEnoughDataError(f"{len(ids)} queries with a positive label; at least {MIN_QUERIES} are needed")
    splitter = GroupShuffleSplit(n_splits=1, test_size=holdout, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(ids)), groups=ids))
    if len(train) == 0 or len(test) == 0:
        raise NotEnoughDataError(f"holdout {holdout} of {len(ids)} queries leaves one side empty")
    return [ids[i] for i in train], [ids[i] for i in test]


@dataclass
class FitReport:
    """A fitted ranker and how it compares on held-out queries.

    ``heldout`` / ``train``: ranker name -> mean nDCG@k ("fitted" and each baseline); ``current`` the
    name of the baseline the service serves by default now (a learned ranker, else the default profile).
    """

    fit: LinearFit
    k: int
    holdout: float
    seed: int
    train_queries: list[str]
    heldout_queries: list[str]
    heldout: dict[str, float] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    evaluated_queries: int = 0
    current: str = ""

    @property
    def gain(self) -> float:
        """Held-out nDCG@k of the fitted ranker minus the current default's."""
        return self.heldout["fitted"] - self.heldout[self.current]

    @property
    def better(self) -> bool:
        """The fitted ranker is at least as good as the current default on the held-out queries."""
        return self.gain >= 0.0

    def metrics(self) -> dict:
        """The ranker file's ``metrics``."""
        return {
            "k": self.k,
            f"ndcg@{self.k}_heldout": self.heldout,
            f"ndcg@{self.k}_train": self.train,
            "compared_with": self.current,
            "gain": self.gain,
            "heldout_queries": self.evaluated_queries,
            "train_queries": len(self.train_queries),
            "holdout": self.holdout,
            "seed": self.seed,
            "model": f"logistic_regression({self.fit.objective})",
            "C": float(self.fit.model.C),
        }


def fit_and_evaluate(
    data: TrainingData,
    baselines: Iterable[Ranker],
    holdout: float = 0.3,
    seed: int = 0,
    k: int = DEFAULT_K,
    c: float = 1.0,
    objective: str = "pointwise",
) -> FitReport:
    """Split ``data`` by query, fit on the training queries, and compare the fitted ranker with each of
    ``baselines`` on the held-out ones (the last baseline is the current default, what ``better`` tests).

    Raises:
        NotEnoughDataError: too few queries, or no positive/negative example in the training split.
    """
    baselines = list(baselines)
    if not baselines:
        raise ValueError("at least one baseline ranker is needed")
    queries = data.queries()
    train_ids, test_ids = split_queries(list(queries), holdout, seed)
    fit = fit_linear({q: queries[q] for q in train_ids}, objective=objective, c=c, seed=seed)
    report = FitReport(fit, k, holdout, seed, train_ids, test_ids, current=baselines[-1].name)
    held = {q: queries[q] for q in test_ids}
    trained = {q: queries[q] for q in train_ids}
    for ranker in [fit.ranker("fitted"), *baselines]:
        name = "fitted" if ranker.name == "fitted" else ranker.name
        report.heldout[name], report.evaluated_queries = mean_ndcg(ranker, held, k)
        report.train[name], _ = mean_ndcg(ranker, trained, k)
    if report.evaluated_queries == 0:
        raise NotEnoughDataError("no held-out query has two or more candidates to rank")
    return report


@dataclass
class CrossValidation:
    """Held-out nDCG@k per fold (ranker name -> one value per fold) and the fitted-minus-baseline gains."""

    folds: int
    k: int
    heldout: dict[str, list[float]]
    baseline: str

    @property
    def gains(self) -> list[float]:
        return [f - b for f, b in zip(self.heldout["fitted"], self.heldout[self.baseline], strict=True)]

    def mean(self, name: str) -> float:
        return float(np.mean(self.heldout[name]))


def cross_validate(
    data: TrainingData,
    baselines: Iterable[Ranker],
    folds: int = 5,
    seed: int = 0,
    k: int = DEFAULT_K,
    c: float = 1.0,
    objective: str = "pointwise",
) -> CrossValidation:
    """K-fold cross-validation by query (every query held out once; queries shuffled with ``seed``): a
    steadier measure than one split for the docs and tests. ``baseline`` is the last of ``baselines``.

    Raises:
        NotEnoughDataError: fewer queries than folds, or a fold without different labels to learn from.
    """
    from sklearn.model_selection import GroupKFold

    baselines = list(baselines)
    queries = data.queries()
    ids = [str(q) for q in np.random.default_rng(seed).permutation(sorted(queries))]
    if len(ids) < max(folds, MIN_QUERIES):
        raise NotEnoughDataError(f"{len(ids)} queries cannot make {folds} folds")
    result = CrossValidation(folds, k, {"fitted": [], **{b.name: [] for b in baselines}}, baselines[-1].name)
    for train, test in GroupKFold(n_splits=folds).split(np.zeros(len(ids)), groups=ids):
        fit = fit_linear({ids[i]: queries[ids[i]] for i in train}, objective=objective, c=c, seed=seed)
        held = {ids[i]: queries[ids[i]] for i in test}
        for ranker in [fit.ranker("fitted"), *baselines]:
            result.heldout[ranker.name].append(mean_ndcg(ranker, held, k)[0])
    return result
