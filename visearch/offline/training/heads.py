"""Trainable heads on frozen image embeddings (torch): networks, losses, batch-hard mining, training, ONNX export.

Training path only (the ``build`` extra): serving never imports this module; it reads what
:func:`export_and_install` writes through ``visearch.shared.models.trained``.

- **Multi-task head** (:class:`MultiTaskHead`): one shared hidden layer, a softmax over the
  catalogue's categories and sigmoids over its multi-label tags, trained jointly on the sum of the
  cross-entropy and the binary cross-entropy, as multi-task product classifiers are (e.g. Picalike's
  shared-trunk category + attribute heads).
- **Metric-learning projection** (:class:`ProjectionNet`): 1280 -> 1280 (Milvus schemas unchanged),
  ``normalise(W (x - c))`` with ``W`` = identity at start and ``c`` the training mean, so training
  starts from the (centred) raw embedding. Trained with the triplet loss on cosine distance
  (``torch.nn.functional.triplet_margin_with_distance_loss``) over batch-hard triplets from P x K
  batches: for each anchor the farthest same-category and the nearest other-category sample of its batch
  (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for Person Re-Identification", arXiv:1703.07737).

Everything is seeded (:func:`seed_everything`); on CPU a rerun gives the same weights.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visearch.offline.models.build import ParityError
from visearch.offline.training.data import FrozenEmbeddings, TrainingCatalogue
from visearch.shared.models.trained import EMBEDDING_DIM, ENCODER, install_version, staging_folder, trained_name

OPSET = 17
PARITY_TOLERANCE = 1e-5  # max |onnxruntime - torch| over every output value, float32 on CPU


def seed_everything(seed: int, threads: int = 1) -> np.random.Generator:
    """Seed torch (CPU), set its intra-op threads, and return a numpy Generator seeded with ``seed`` for batches."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------- networks


class MultiTaskHead(nn.Module):
    """Shared hidden layer + category and tag outputs.

    ``forward(x)``: x float32 [N, input_dim] (unit-norm embeddings; scaled by sqrt(input_dim) inside so
    the hidden layer sees components of about unit size). Returns ``(category_logits [N, C], tag_logits [N, T])``.
    """

    def __init__(
        self, categories: int, tags: int, input_dim: int = EMBEDDING_DIM, hidden: int = 512, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.scale = math.sqrt(input_dim)
        self.shared = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.category = nn.Linear(hidden, categories)
        self.tags = nn.Linear(hidden, tags)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        h = self.shared(x * self.scale)
        return self.category(h), self.tags(h)


class HeadProbabilities(nn.Module):
    """Export wrapper: ``(softmax(category_logits), sigmoid(tag_logits))`` of a :class:`MultiTaskHead`."""

    def __init__(self, head: MultiTaskHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        category, tags = self.head(x)
        return torch.softmax(category, dim=1), torch.sigmoid(tags)


class ProjectionNet(nn.Module):
    """Linear metric map ``y = normalise(W (x - c))``, 1280 -> 1280, with ``W`` the identity at initialisation.

    ``c`` is a fixed centre (the training embeddings' mean; zero when not given): the encoder's features
    are non-negative, so every pair of raw embeddings has a large shared component. Without it a triplet
    loss on cosine distance can be lowered by inflating that shared direction until every distance, and
    so the loss, collapses to the margin; with centred inputs a linear map cannot send all of them to one
    direction (their mean is zero). Before training ``y = normalise(x - c)``: the raw embedding, centred.
    No bias (a constant shift would bring the shared direction back).

    ``forward(x)``: float32 [N, dim] -> float32 [N, dim], unit norm (L2, eps 1e-12).
    """

    def __init__(self, dim: int = EMBEDDING_DIM, centre: np.ndarray | None = None) -> None:
        super().__init__()
        centre = np.zeros(dim, np.float32) if centre is None else np.asarray(centre, np.float32).reshape(dim)
        self.register_buffer("centre", torch.from_numpy(centre.copy()))
        self.linear = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.normalize(self.linear(x - self.centre), p=2, dim=1, eps=1e-12)


# ------------------------------------------------------------------------------------ losses, mining


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise ``1 - cos(a_i, b_i)`` in [0, 2] for float tensors [N, D] -> [N]."""
    return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-12)


def batch_hard_indices(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-hard mining (Hermans et al. 2017): per anchor, its hardest positive and hardest negative.

    Args:
        embeddings: float [B, D], unit norm (distances are cosine distances ``1 - z_i . z_j``).
        labels: int [B].

    Returns:
        ``(positive [B] int64, negative [B] int64, valid [B] bool)``: the index of the farthest other
        sample with the anchor's label and of the nearest sample with another label; ``valid`` is False
        for anchors that have no positive or no negative in the batch (their indices are meaningless).
    """
    with torch.no_grad():
        distance = 1.0 - embeddings @ embeddings.T
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positives, negatives = same & ~eye, ~same
        positive = distance.masked_fill(~positives, -math.inf).argmax(dim=1)
        negative = distance.masked_fill(~negatives, math.inf).argmin(dim=1)
        valid = positives.any(dim=1) & negatives.any(dim=1)
    return positive, negative, valid


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over valid anchors of ``max(0, margin + d(a, p_hard) - d(a, n_hard))``, d = cosine distance.

    The functional ``torch.nn.functional.triplet_margin_with_distance_loss`` over the triplets
    :func:`batch_hard_indices` mines; gradients flow through anchors, positives and negatives.
    Returns a scalar tensor (0 when no anchor is valid).
    """
    positive, negative, valid = batch_hard_indices(embeddings, labels)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    anchors = embeddings[valid]
    return F.triplet_margin_with_distance_loss(
        anchors,
        embeddings[positive[valid]],
        embeddings[negative[valid]],
        distance_function=cosine_distance,
        margin=margin,
    )


def pk_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P x K batches (Hermans et al. 2017): each batch takes ``p`` labels at random (all of
    them if there are fewer) and ``k`` samples of each (without replacement when the label has ``k``).

    Returns ``len(labels) // (p * k)`` (at least 1) index arrays into ``labels``.
    """
    by_label = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    p = min(p, len(by_label))
    batches = []
    for _ in range(max(1, len(labels) // (p * k))):
        chosen = rng.choice(len(by_label), size=p, replace=False)
        batches.append(np.concatenate([rng.choice(by_label[c], size=k, replace=len(by_label[c]) < k) for c in chosen]))
    return batches


# ------------------------------------------------------------------------------------------ training


@dataclass
class HeadConfig:
    """Hyper-parameters of :func:`train_head` (defaults: what docs/quality.md reports)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 512
    dropout: float = 0.2
    tag_weight: float = 1.0  # loss = CE(category) + tag_weight * BCE(tags)
    seed: int = 0
    threads: int = 1  # torch intra-op threads: the network is small, more threads mostly wait on a busy machine


@dataclass
class ProjectionConfig:
    """Hyper-parameters of :func:`train_projection` (defaults: what docs/quality.md reports)."""

    epochs: int = 10
    p: int = 10  # labels per batch
    k: int = 16  # samples per label
    lr: float = 3e-4
    weight_decay: float = 0.0
    margin: float = 0.2
    centre: bool = True  # subtract the training mean first (see ProjectionNet)
    seed: int = 0
    threads: int = 1  # torch intra-op threads: the network is small, more threads mostly wait on a busy machine


@dataclass
class TrainResult:
    """A trained network and its per-epoch mean training loss."""

    model: nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _fit(model: nn.Module, config, epoch_batches, batch_loss, progress) -> TrainResult:
    """AdamW over ``config.epochs`` epochs: ``epoch_batches()`` gives an epoch's index arrays,
    ``batch_loss(idx)`` the loss of one batch; records the batch-size-weighted mean loss per epoch."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result, start = TrainResult(model), time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        total, count = 0.0, 0
        for batch in epoch_batches():
            loss = batch_loss(torch.from_numpy(batch))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, count = total + float(loss.detach()) * len(batch), count + len(batch)
        result.losses.append(total / count)
        if progress:
            progress(epoch, result.losses[-1])
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def train_head(
    data: FrozenEmbeddings, tags: np.ndarray, categories: int, config: HeadConfig | None = None, progress=None
) -> TrainResult:
    """Fit a :class:`MultiTaskHead` with AdamW on ``CE(category) + tag_weight * BCE(tags)``, shuffled minibatches.

    Args:
        data: training embeddings float32 [N, D] and labels int64 [N] in [0, categories).
        tags: float32 [N, T] multi-hot tag targets.
        progress: optional callable(epoch, loss) called after each epoch.

    Returns:
        The network in eval mode (outputs logits; wrap in :class:`HeadProbabilities` for probabilities).
    """
    config = config or HeadConfig()
    rng = seed_everything(config.seed, config.threads)
    x, y, t = (
        torch.from_numpy(data.embeddings),
        torch.from_numpy(data.labels),
        torch.from_numpy(np.asarray(tags, np.float32)),
    )
    model = MultiTaskHead(categories, t.shape[1], x.shape[1], config.hidden, config.dropout)

    def batches() -> list[np.ndarray]:
        order = rng.permutation(len(x))
        return [order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)]

    def loss(idx: torch.Tensor) -> torch.Tensor:
        category, tag = model(x[idx])
        return F.cross_entropy(category, y[idx]) + config.tag_weight * F.binary_cross_entropy_with_logits(tag, t[idx])

    return _fit(model, config, batches, loss, progress)


def train_projection(data: FrozenEmbeddings, config: ProjectionConfig | None = None, progress=None) -> TrainResult:
    """Fit a :class:`ProjectionNet` with AdamW on the batch-hard triplet loss over P x K batches.

    Args:
        data: training embeddings float32 [N, D] (unit norm) and labels int64 [N].
        progress: optional callable(epoch, loss) called after each epoch.

    Returns:
        The network in eval mode.
    """
    config = config or ProjectionConfig()
    rng = seed_everything(config.seed, config.threads)
    x, y = torch.from_numpy(data.embeddings), torch.from_numpy(data.labels)
    model = ProjectionNet(x.shape[1], data.embeddings.mean(axis=0) if config.centre else None)
    return _fit(
        model,
        config,
        lambda: pk_batches(data.labels, config.p, config.k, rng),
        lambda idx: batch_hard_triplet_loss(model(x[idx]), y[idx], config.margin),
        progress,
    )


# -------------------------------------------------------------------------------------------- export


def export_onnx(module: nn.Module, path: Path, input_dim: int, output_names: list[str], check: np.ndarray) -> dict:
    """Export ``module`` (eval mode) to ONNX (opset 17, input ``embedding`` float32 [N, input_dim], dynamic N)
    and check that onnxruntime reproduces torch on ``check`` (float32 [M, input_dim]).

    Returns:
        ``{"rows": M, "max_abs_diff": float}``, the parity figures.

    Raises:
        ParityError: some output differs by more than ``PARITY_TOLERANCE``.
    """
    import onnxruntime as ort

    module.eval()
    dynamic = {"embedding": {0: "N"}, **{name: {0: "N"} for name in output_names}}
    torch.onnx.export(
        module,
        (torch.zeros(2, input_dim),),
        str(path),
        input_names=["embedding"],
        output_names=output_names,
        dynamic_axes=dynamic,
        opset_version=OPSET,
        dynamo=False,
    )
    with torch.no_grad():
        reference = module(torch.from_numpy(check))
    reference = [reference] if isinstance(reference, torch.Tensor) else list(reference)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(output_names, {"embedding": check})
    diff = max(float(np.abs(o - r.numpy()).max()) for o, r in zip(outputs, reference))
    if diff > PARITY_TOLERANCE:
        raise ParityError(f"{path.name}: onnxruntime differs from torch by {diff:.2e} > {PARITY_TOLERANCE}")
    return {"rows": len(check), "max_abs_diff": diff}


def export_and_install(
    kind: str, module: nn.Module, catalogue: TrainingCatalogue, cache_dir: Path, meta: dict, check: np.ndarray
) -> tuple[int, Path]:
    """Export ``module`` as the next version of ``kind`` ("projection" or "head") for ``catalogue`` in ``cache_dir``.

    Writes ``model.onnx`` and ``meta.json`` (``meta`` plus name, kind, encoder, I/O contract, parity,
    torch version) into a staging folder, checks parity (:func:`export_onnx`), then installs it with
    ``visearch.shared.models.trained.install_version``. Returns (version, folder).

    Raises:
        ParityError: the ONNX file does not reproduce torch; nothing is installed.
    """
    outputs = ["projected"] if kind == "projection" else ["category_probs", "tag_probs"]
    wrapped = module if kind == "projection" else HeadProbabilities(module)
    staging = staging_folder(cache_dir, kind, catalogue.name)
    try:
        parity = export_onnx(wrapped, staging / "model.onnx", EMBEDDING_DIM, outputs, check)
        contract = {
            "input": f"embedding: float32[N,{EMBEDDING_DIM}], {ENCODER} image embedding, L2-normalised",
            "outputs": (
                ["projected: float32[N,1280], L2-normalised"]
                if kind == "projection"
                else [
                    f"category_probs: float32[N,{len(catalogue.categories)}], softmax",
                    f"tag_probs: float32[N,{len(catalogue.tag_names)}], sigmoid",
                ]
            ),
        }
        full = {
            "name": trained_name(kind, catalogue.name),
            "kind": kind,
            "catalogue": catalogue.name,
            "encoder": ENCODER,
            "input_dim": EMBEDDING_DIM,
            "opset": OPSET,
            **contract,
            **meta,
            "parity": parity,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / "meta.json").write_text(json.dumps(full, indent=2))
        return install_version(staging, cache_dir, kind, catalogue.name)
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging)


def config_dict(config: HeadConfig | ProjectionConfig) -> dict:
    """A config as a plain dict (for meta.json)."""
    return asdict(config)


# ------------------------------------------------------------------------------- train, measure, install


@dataclass
class Splits:
    """The frozen embeddings one run uses: ``train`` (fit), ``index`` (the evaluation catalogue that
    queries search) and ``test`` (queries / held-out classification set). ``train`` must not overlap ``index``."""

    train: FrozenEmbeddings
    index: FrozenEmbeddings
    test: FrozenEmbeddings

    def check_disjoint(self) -> None:
        """Raises ValueError when ``train`` and ``index`` share images of the same split."""
        a, b = self.train.source, self.index.source
        if (
            a.get("split") == b.get("split")
            and a["offset"] < b["offset"] + b["limit"]
            and b["offset"] < a["offset"] + a["limit"]
        ):
            raise ValueError(
                f"training images {a['split']}[{a['offset']}:{a['offset'] + a['limit']}] overlap the evaluation "
                f"catalogue {b['split']}[{b['offset']}:{b['offset'] + b['limit']}]: use --train-offset >= {b['offset'] + b['limit']}"
            )


FIRST_QUERIES = 200  # the first 200 test images: the query set of tests/integration/test_fashion_mnist.py


@dataclass
class RunResult:
    """What a run installed: its ``meta.json`` (version, metrics, training data...), the torch network
    (eval mode; :class:`MultiTaskHead` outputs logits) and the version folder."""

    meta: dict
    model: nn.Module
    folder: Path


def retrieval_report(splits: Splits, catalogue: TrainingCatalogue, project=None, k: int = 10) -> dict:
    """precision@k of test queries against the index, raw and (when ``project`` is given) projected.

    ``project``: callable float32 [N, 1280] -> float32 [N, 1280]. Reports all test queries and the first 200.
    """
    from visearch.offline.training.metrics import chance_precision, precision_at_k

    q, qy, ix, iy = splits.test.embeddings, splits.test.labels, splits.index.embeddings, splits.index.labels
    spaces = {"raw": (q, ix)}
    if project is not None:
        spaces["projected"] = (project(q), project(ix))
    report = {"k": k, "index": len(ix), "queries": len(q), "chance": chance_precision(iy)}
    for name, (qv, iv) in spaces.items():
        mean, per = precision_at_k(qv, qy, iv, iy, k)
        first, _ = precision_at_k(qv[:FIRST_QUERIES], qy[:FIRST_QUERIES], iv, iy, k)
        report[name] = {
            "precision": mean,
            f"precision_first_{FIRST_QUERIES}": first,
            "per_category": {catalogue.categories[c]: v for c, v in per.items()},
        }
    return report


def _torch_apply(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _training_meta(splits: Splits, catalogue: TrainingCatalogue, config, result: TrainResult) -> dict:
    return {
        "training": {
            "data": splits.train.source,
            "dataset_source": catalogue.source,
            "config": asdict(config),
            "epoch_losses": [round(v, 5) for v in result.losses],
            "seconds": round(result.seconds, 2),
            "evaluation": {"index": splits.index.source, "queries": splits.test.source},
        }
    }


def run_projection(
    catalogue: TrainingCatalogue, splits: Splits, cache_dir: Path, config: ProjectionConfig | None = None, progress=None
) -> RunResult:
    """Train a projection on ``splits.train``, measure precision@10 raw vs projected, export and install it.

    Returns the installed version (its ``meta.json`` has ``version``, ``metrics``, ``training``...). Raises
    ValueError when ``train`` overlaps ``index``, ParityError when the ONNX export does not match torch.
    """
    config = config or ProjectionConfig()
    splits.check_disjoint()
    result = train_projection(splits.train, config, progress)
    metrics = retrieval_report(splits, catalogue, lambda x: _torch_apply(result.model, x))
    meta = {"metrics": metrics, **_training_meta(splits, catalogue, config, result)}
    _, folder = export_and_install("projection", result.model, catalogue, cache_dir, meta, splits.test.embeddings[:256])
    return RunResult(json.loads((folder / "meta.json").read_text()), result.model, folder)


def run_head(
    catalogue: TrainingCatalogue,
    splits: Splits,
    cache_dir: Path,
    config: HeadConfig | None = None,
    progress=None,
    tag_threshold: float = 0.5,
) -> RunResult:
    """Train a multi-task head on ``splits.train``; measure category accuracy, tag mAP and F1 on ``splits.test``;
    export and install it. Returns the installed version (``meta.json`` with ``categories`` and ``tags`` names).

    Raises ValueError when ``train`` overlaps ``index``, ParityError when the export does not match torch.
    """
    from visearch.offline.training.metrics import accuracy, tag_scores

    config = config or HeadConfig()
    splits.check_disjoint()
    tags = catalogue.tag_matrix(splits.train.labels)
    result = train_head(splits.train, tags, len(catalogue.categories), config, progress)
    wrapped = HeadProbabilities(result.model)
    metrics = {}
    for name, data in (("train", splits.train), ("test", splits.test)):
        with torch.no_grad():
            category, tag = (t.numpy() for t in wrapped(torch.from_numpy(data.embeddings)))
        scores = tag_scores(tag, catalogue.tag_matrix(data.labels), tag_threshold)
        metrics[name] = {
            "images": len(data.labels),
            "category_accuracy": accuracy(category, data.labels),
            **{f"tag_{k}": v for k, v in scores.items()},
        }
    _, counts = np.unique(splits.test.labels, return_counts=True)
    metrics["test"]["chance_accuracy"] = float(counts.max() / counts.sum())
    metrics["tag_threshold"] = tag_threshold
    meta = {
        "categories": list(catalogue.categories),
        "tags": list(catalogue.tag_names),
        "tag_map": {c: list(t) for c, t in catalogue.tags.items()},
        "metrics": metrics,
        **_training_meta(splits, catalogue, config, result),
    }
    _, folder = export_and_install("head", result.model, catalogue, cache_dir, meta, splits.test.embeddings[:256])
    return RunResult(json.loads((folder / "meta.json").read_text()), result.model, folder)
