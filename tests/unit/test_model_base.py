"""The inference model base class (shared/model_base.py): batching, order, errors, loading once."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from visearch.shared.config import ModelSettings
from visearch.shared.errors import InvalidEventError, ModelNotBuiltError
from visearch.shared.inference import OnnxRunner
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import ModelSpec

SPEC = ModelSpec(name="doubler", source_package="none", source_version="0")


class FakeRunner:
    """Doubles ``x``; records each batch's size; raises ``error`` when set."""

    model_name = "doubler"

    def __init__(self, error: Exception | None = None) -> None:
        self.batches: list[int] = []
        self.error = error

    def infer(self, inputs, outputs):
        if self.error is not None:
            raise self.error
        self.batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


class Doubler(InferenceModel[float, list[float]]):
    """Numbers in, twice each out (as a list per batch); the context is the batch's items."""

    spec = SPEC
    outputs = ("y",)

    def preprocess(self, items: Sequence[float], **options) -> Batch:
        scale = options.get("scale", 1.0)
        return Batch({"x": np.asarray(items, dtype=np.float32).reshape(-1, 1) * scale}, list(items))

    def postprocess(self, outputs, batch: Batch) -> list[float]:
        assert len(outputs["y"]) == len(batch.context)
        return [float(v) for v in outputs["y"][:, 0]]


def test_batches_split_to_batch_size_and_results_keep_input_order():
    runner = FakeRunner()
    model = Doubler(runner, batch_size=3)
    items = [float(i) for i in range(8)]
    batches = model.predict_batches(items)
    assert runner.batches == [3, 3, 2]
    assert batches == [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0], [12.0, 14.0]]
    assert model.predict_items(items) == [2 * x for x in items]
    assert model.predict_items(items[:2], scale=10.0) == [0.0, 20.0]  # options reach preprocess


def test_batch_size_zero_runs_everything_in_one_call():
    runner = FakeRunner()
    assert Doubler(runner).predict_items([1.0] * 40) == [2.0] * 40
    assert runner.batches == [40]


def test_no_items_neither_load_nor_run():
    model = Doubler(models=ModelSettings(cache_dir="/nonexistent", triton_url=""))
    assert model.predict_batches([]) == [] and model.predict_items([]) == []
    assert not model.loaded


def test_runner_errors_propagate_unchanged():
    error = InvalidEventError("doubler: input 'x' must be float32", reason="model_input_mismatch")
    with pytest.raises(InvalidEventError) as raised:
        Doubler(FakeRunner(error), batch_size=2).predict_items([1.0, 2.0, 3.0])
    assert raised.value is error and raised.value.reason == "model_input_mismatch"


def test_preprocess_and_postprocess_errors_propagate():
    class Broken(Doubler):
        def postprocess(self, outputs, batch):
            raise ModelNotBuiltError("doubler has 3 classes, expected 5")

    runner = FakeRunner()
    with pytest.raises(ModelNotBuiltError, match="3 classes"):
        Broken(runner, batch_size=2).predict_items([1.0, 2.0, 3.0])
    assert runner.batches == [2]  # stopped at the first batch
    with pytest.raises(ValueError):
        Doubler(runner).predict_items(["not a number"])


def test_load_creates_the_runner_once_even_from_many_threads():
    created = []

    class Counted(Doubler):
        def _load(self):
            created.append(1)
            return FakeRunner()

    model = Counted()
    assert not model.loaded
    start = threading.Barrier(8)

    def use():
        start.wait()
        model.predict_items([1.0])

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and model.loaded
    assert model.load() is model.runner is model.load()
    assert model.runner.batches == [1] * 8


def test_a_given_runner_is_used_as_is():
    runner = FakeRunner()
    model = Doubler(runner)
    assert model.loaded and model.load() is runner


def test_model_name_defaults_to_spec_name_and_key():
    assert Doubler(FakeRunner()).model_name == f"doubler@{SPEC.key}"
    assert Doubler(FakeRunner(), model_name="custom@1").model_name == "custom@1"
    other = ModelSpec(name="other", source_package="none", source_version="1")
    model = Doubler(FakeRunner(), spec=other)
    assert model.spec is other and model.model_name == f"other@{other.key}"
    assert Doubler.spec is SPEC  # the class keeps its own


def _write_doubler(folder):
    """A built ``doubler``: model.onnx computing y = 2x over float32 [N, 1], plus meta.json."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "meta.json").write_text("{}")


def test_load_builds_an_onnxruntime_runner_from_the_cache(tmp_path):
    models = ModelSettings(cache_dir=tmp_path, triton_url="")
    model = Doubler(models=models, batch_size=2)
    with pytest.raises(ModelNotBuiltError, match="doubler"):
        model.load()
    assert not model.loaded
    _write_doubler(SPEC.directory(tmp_path))
    assert model.predict_items([1.0, 2.5, -3.0]) == [2.0, 5.0, -6.0]
    assert isinstance(model.runner, OnnxRunner) and model.runner.model_name == "doubler"
    with pytest.raises(InvalidEventError) as raised:  # the runner's own checks: int64 is not the model's float32
        model.run({"x": np.zeros((1, 1), np.int64)})
    assert raised.value.reason == "model_input_mismatch"


# ---------------------------------------------------------------------------------- threads from the CPU limit


def test_cpu_quota_cores_reads_cgroup_v2_and_v1(tmp_path):
    from visearch.shared.inference import cpu_quota_cores, intra_op_threads

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # limits.cpu: 1500m
    assert cpu_quota_cores(tmp_path) == 2 and intra_op_threads(0, tmp_path) == 2
    assert intra_op_threads(3, tmp_path) == 3  # a configured count wins
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota_cores(tmp_path) is None and intra_op_threads(0, tmp_path) == 0
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota_cores(tmp_path) == 4
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota_cores(tmp_path) is None
    assert cpu_quota_cores(tmp_path / "missing") is None
