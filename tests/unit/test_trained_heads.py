"""Trainable heads: batch-hard mining and the triplet loss, the networks' start and export shapes, the
versioned model folders the services select by setting, Fashion-MNIST's tags, the metrics, the Triton copy.

Small and fast: synthetic tensors and tiny training runs; the real-data run is
tests/integration/test_trained_heads.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

# Plain imports, not importorskip: without torch (the build extra, which make test installs) or with a broken
# heads module these tests must fail, not vanish as skips.
import torch  # noqa: E402
from pydantic import ValidationError

from visearch.offline.training import heads  # noqa: E402
from visearch.offline.training.data import FASHION_MNIST, FrozenEmbeddings
from visearch.offline.training.metrics import chance_precision, precision_at_k, tag_scores
from visearch.shared.config import ModelSettings
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.models import trained


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def angles(*degrees: float) -> torch.Tensor:
    """Unit vectors in 2-d at the given angles (cosine distance grows with the angle between them)."""
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees], dtype=torch.float32)


# ------------------------------------------------------------------------------------- mining and loss


def test_batch_hard_picks_farthest_positive_and_nearest_negative():
    """Anchor 0 (label 0 at 0°): positives at 10° and 50° -> 50° (index 2); negatives at 60° and 170° -> 60° (index 3)."""
    z = angles(0, 10, 50, 60, 170, 90)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    positive, negative, valid = heads.batch_hard_indices(z, labels)
    assert (int(positive[0]), int(negative[0])) == (2, 3)
    assert (int(positive[3]), int(negative[3])) == (4, 2)  # label 1 at 60°: other label-1 is 170°; nearest other is 50°
    assert valid.tolist() == [True, True, True, True, True, False]  # label 2 has no positive in the batch


def test_batch_hard_loss_matches_the_formula_and_has_gradients():
    """loss = mean over valid anchors of max(0, m + d(a, p_hard) - d(a, n_hard)), d = 1 - cos; gradients reach z."""
    z = angles(0, 10, 50, 60, 170, 90).requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    margin = 0.2
    loss = heads.batch_hard_triplet_loss(z, labels, margin)
    zn = z.detach().numpy()
    d = 1 - zn @ zn.T
    expected = []
    for a in range(5):
        same = [j for j in range(6) if labels[j] == labels[a] and j != a]
        other = [j for j in range(6) if labels[j] != labels[a]]
        expected.append(max(0.0, margin + max(d[a, same]) - min(d[a, other])))
    assert float(loss.detach()) == pytest.approx(np.mean(expected), abs=1e-6)
    loss.backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_loss_is_zero_for_separated_classes_and_without_valid_anchors():
    """Classes farther apart than the margin give 0; a batch of one label per sample gives 0 (no positives)."""
    separated = heads.batch_hard_triplet_loss(angles(0, 5, 90, 95), torch.tensor([0, 0, 1, 1]), margin=0.2)
    assert float(separated) == 0.0
    alone = heads.batch_hard_triplet_loss(angles(0, 90, 180).requires_grad_(True), torch.tensor([0, 1, 2]), 0.2)
    assert float(alone) == 0.0 and alone.requires_grad


def test_pk_batches_take_k_samples_of_p_labels():
    """Each batch has p labels x k samples; an epoch has len // (p k) batches; small labels are drawn with replacement."""
    labels = np.array([0] * 40 + [1] * 40 + [2] * 40 + [3] * 3)
    batches = heads.pk_batches(labels, p=3, k=4, rng=np.random.default_rng(0))
    assert len(batches) == len(labels) // 12
    for batch in batches:
        values, counts = np.unique(labels[batch], return_counts=True)
        assert len(batch) == 12 and len(values) == 3 and set(counts) == {4}


def test_projection_training_lowers_the_triplet_loss_on_overlapping_classes():
    """A short seeded run on two noisy, overlapping clusters lowers the mean batch-hard loss and is reproducible."""
    rng = np.random.default_rng(1)
    centres = unit(rng.normal(size=(2, 32)))
    x = unit(np.repeat(centres, 100, axis=0) + 0.35 * rng.normal(size=(200, 32)))
    data = FrozenEmbeddings(x, np.repeat([0, 1], 100), {})
    config = heads.ProjectionConfig(epochs=8, p=2, k=16, lr=1e-3)
    first = heads.train_projection(data, config)
    again = heads.train_projection(data, config)
    assert first.losses[-1] < first.losses[0]
    assert first.losses == again.losses


# -------------------------------------------------------------------------------------- networks, export


def test_projection_starts_at_the_centred_identity():
    """Before training the projection returns normalise(x - centre): the raw embedding, centred (x itself without a centre)."""
    x = unit(np.random.default_rng(0).normal(size=(5, 1280)))
    centre = x.mean(axis=0)
    with torch.no_grad():
        assert torch.allclose(heads.ProjectionNet()(torch.from_numpy(x)), torch.from_numpy(x), atol=1e-6)
        centred = heads.ProjectionNet(centre=centre)(torch.from_numpy(x)).numpy()
    assert np.allclose(centred, unit(x - centre), atol=1e-6)


def test_centred_linear_projection_cannot_collapse():
    """The collapse batch-hard training can fall into (every vector one direction, loss = margin) is out of
    reach: centred inputs have mean zero, so their images under any linear map have mean zero too."""
    rng = np.random.default_rng(0)
    x = unit(np.abs(rng.normal(size=(64, 1280))))  # non-negative, like the encoder's features
    net = heads.ProjectionNet(centre=x.mean(axis=0))
    with torch.no_grad():
        net.linear.weight.add_(torch.from_numpy(rng.normal(size=(1280, 1280)).astype(np.float32)) * 0.1)
        y = net(torch.from_numpy(x)).numpy()
    assert float(np.mean(y @ y.T)) < 0.1  # mean cosine of the raw, uncentred vectors: ~0.64


def test_export_shapes_and_parity(tmp_path):
    """ONNX files take float32 [N, 1280] for any N and match torch: projection -> [N, 1280] unit norm;
    head -> category probabilities [N, C] summing to 1 and tag probabilities [N, T] in [0, 1]."""
    import onnxruntime as ort

    check = unit(np.random.default_rng(0).normal(size=(16, 1280)))
    torch.manual_seed(0)
    projection = heads.ProjectionNet()
    torch.nn.init.normal_(projection.linear.weight, std=0.05)  # not the identity, so parity means something
    parity = heads.export_onnx(projection, tmp_path / "p.onnx", 1280, ["projected"], check)
    assert parity["rows"] == 16 and parity["max_abs_diff"] <= heads.PARITY_TOLERANCE
    head = heads.HeadProbabilities(heads.MultiTaskHead(categories=10, tags=11))
    heads.export_onnx(head, tmp_path / "h.onnx", 1280, ["category_probs", "tag_probs"], check)
    for n in (1, 7):
        x = check[:n]
        (projected,) = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"embedding": x})
        assert projected.shape == (n, 1280) and projected.dtype == np.float32
        assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
        category, tags = ort.InferenceSession(str(tmp_path / "h.onnx")).run(None, {"embedding": x})
        assert category.shape == (n, 10) and tags.shape == (n, 11)
        assert np.allclose(category.sum(axis=1), 1.0, atol=1e-5) and ((tags >= 0) & (tags <= 1)).all()


def test_export_refuses_a_model_onnx_cannot_reproduce(tmp_path, monkeypatch):
    """With a zero tolerance, any float difference between torch and onnxruntime is a ParityError."""
    from visearch.offline.models.build import ParityError

    monkeypatch.setattr(heads, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ParityError):
        heads.export_onnx(
            heads.ProjectionNet(), tmp_path / "p.onnx", 1280, ["projected"], unit(np.ones((2, 1280), np.float32))
        )


# --------------------------------------------------------------------------- versions, settings, serving


def install_projection(cache, encoder: str = trained.ENCODER, seed: int = 0) -> tuple[int, object]:
    """Export a small random projection as the next version (meta with the given encoder)."""
    staging = trained.staging_folder(cache, "projection", "fashion-mnist")
    torch.manual_seed(seed)
    net = heads.ProjectionNet()
    torch.nn.init.normal_(net.linear.weight, std=0.05)
    heads.export_onnx(net, staging / "model.onnx", 1280, ["projected"], unit(np.ones((2, 1280), np.float32)))
    (staging / "meta.json").write_text(json.dumps({"encoder": encoder, "input_dim": 1280}))
    return trained.install_version(staging, cache, "projection", "fashion-mnist")


def test_versions_install_in_order_and_latest_follows_the_encoder(tmp_path):
    """Versions are 1, 2, 3...; `latest` is the newest trained on this encoder; a pinned version from another
    encoder, a missing version and an empty cache raise ModelNotBuiltError naming `visearch train`."""
    with pytest.raises(ModelNotBuiltError, match="visearch train projection"):
        trained.resolve_version(tmp_path, "projection", "fashion-mnist", "latest")
    assert trained.resolve_version(tmp_path, "projection", "fashion-mnist", "") is None
    assert install_projection(tmp_path)[0] == 1
    assert install_projection(tmp_path, seed=1)[0] == 2
    assert install_projection(tmp_path, encoder="efficientnet_lite0@000000000000")[0] == 3
    root = tmp_path / "projection_fashion_mnist"
    assert [v for v, _ in trained.list_versions(tmp_path, "projection", "fashion-mnist")] == [1, 2, 3]
    assert trained.resolve_version(tmp_path, "projection", "fashion-mnist", "latest") == root / "2"
    assert trained.resolve_version(tmp_path, "projection", "fashion-mnist", "1") == root / "1"
    assert json.loads((root / "2" / "meta.json").read_text())["version"] == 2
    with pytest.raises(ModelNotBuiltError, match="trained on efficientnet_lite0@000000000000"):
        trained.resolve_version(tmp_path, "projection", "fashion-mnist", "3")
    with pytest.raises(ModelNotBuiltError, match="version 9"):
        trained.resolve_version(tmp_path, "projection", "fashion-mnist", "9")
    assert not any(p.name.startswith(".staging") for p in root.iterdir())


def test_projection_selected_by_setting_projects_to_unit_norm(tmp_path, monkeypatch):
    """VISEARCH_MODEL_PROJECTION=latest loads the newest version; its name carries the version; output is unit norm."""
    install_projection(tmp_path)
    install_projection(tmp_path, seed=1)
    monkeypatch.setenv("VISEARCH_MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VISEARCH_MODEL_PROJECTION", "latest")
    models = ModelSettings()
    projection = trained.Projection.from_settings(models, models.projection)
    assert projection.model_name == "projection_fashion_mnist@2"
    out = projection.project(unit(np.random.default_rng(0).normal(size=(3, 1280))))
    assert out.shape == (3, 1280) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[N, 1280\]"):
        projection.project(np.zeros((2, 384), np.float32))
    assert trained.Projection.from_settings(models, "") is None


@pytest.mark.parametrize("value", ["newest", "0", "-1", "1.5", "v2"])
def test_selector_settings_refuse_other_values(monkeypatch, value):
    """VISEARCH_MODEL_PROJECTION / _CATALOGUE_HEAD accept only '', 'latest' or a positive version number."""
    monkeypatch.setenv("VISEARCH_MODEL_PROJECTION", value)
    with pytest.raises(ValidationError):
        ModelSettings()
    monkeypatch.delenv("VISEARCH_MODEL_PROJECTION")
    monkeypatch.setenv("VISEARCH_MODEL_CATALOGUE_HEAD", value)
    with pytest.raises(ValidationError):
        ModelSettings()


def test_catalogue_names_become_model_names():
    """The model folder / Triton name is <kind>_<catalogue slug>."""
    assert trained.trained_name("head", "Fashion-MNIST") == "head_fashion_mnist"
    with pytest.raises(ValueError):
        trained.trained_name("ranker", "fashion-mnist")
    with pytest.raises(ValueError):
        trained.catalogue_slug("--")


def test_trained_versions_publish_as_triton_model_versions(tmp_path):
    """`visearch train publish`: config.pbtxt parses as Triton's ModelConfig, serves all versions, one folder per version."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from visearch.offline.models.triton_repository import write_trained_repository

    cache, repo = tmp_path / "cache", tmp_path / "repo"
    install_projection(cache)
    install_projection(cache, seed=1)
    (folder,) = write_trained_repository(cache, repo, "fashion-mnist", "local")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "projection_fashion_mnist" and config.HasField("version_policy")
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    assert {t.name: list(t.dims) for t in config.input} == {"embedding": [1280]}
    assert {t.name: list(t.dims) for t in config.output} == {"projected": [1280]}
    assert config.parameters["recipe"].string_value == trained.ENCODER
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["1", "2"]
    assert (folder / "2" / "model.onnx").is_file() and (folder / "2" / "model.py").is_file()


# ----------------------------------------------------------------------------------- tags and metrics


def test_fashion_mnist_tags_are_a_documented_function_of_the_category():
    """Every category has at least one tag, every tag is used, and the matrix follows the mapping."""
    matrix = FASHION_MNIST.tag_matrix(np.arange(10))
    assert matrix.shape == (10, len(FASHION_MNIST.tag_names)) and set(np.unique(matrix)) == {0.0, 1.0}
    assert matrix.sum(axis=1).min() >= 1 and matrix.sum(axis=0).min() >= 1
    footwear = FASHION_MNIST.tag_names.index("footwear")
    assert [FASHION_MNIST.categories[c] for c in np.flatnonzero(matrix[:, footwear])] == [
        "sandal",
        "sneaker",
        "ankle boot",
    ]


def test_precision_at_k_and_chance():
    """Queries next to their own label's cluster get precision 1; chance is sum p_c^2."""
    index = unit(np.array([[1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]], np.float32))
    mean, per = precision_at_k(
        unit(np.array([[1, 0], [0, 1]], np.float32)), np.array([0, 1]), index, np.array([0, 0, 1, 1]), k=2
    )
    assert mean == 1.0 and per == {0: 1.0, 1: 1.0}
    assert chance_precision(np.array([0, 0, 1, 1])) == 0.5
    with pytest.raises(ValueError):
        precision_at_k(index, np.zeros(4), index[:1], np.zeros(1), k=2)


def test_tag_scores_of_perfect_and_inverted_predictions():
    """Perfect probabilities give mAP = F1 = 1; inverted ones give F1 = 0."""
    targets = FASHION_MNIST.tag_matrix(np.arange(10))
    perfect = tag_scores(targets, targets)
    assert perfect == {"mAP": 1.0, "micro_f1": 1.0, "macro_f1": 1.0}
    assert tag_scores(1 - targets, targets)["micro_f1"] == 0.0
