"""Inference runners: one small interface, so a model runs in-process or (later) on Triton by config.

``OnnxRunner`` runs an ONNX file with onnxruntime on CPU: the embedded default. A Triton gRPC runner
with the same ``infer`` signature comes with the Triton issue; callers never know which they hold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from visearch.shared.errors import InvalidEventError
from visearch.shared.metrics import INFERENCE_BATCH_SIZE, INFERENCE_SECONDS


class InferenceRunner(Protocol):
    """Runs one model: named float/int arrays in, named arrays out (batch dimension first)."""

    model_name: str

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run one batch. Raises InvalidEventError on a shape/dtype mismatch with the model's inputs."""
        ...


class OnnxRunner:
    """onnxruntime CPU session over ``model.onnx`` with full graph optimisation.

    Args:
        path: the ONNX file.
        model_name: label for metrics and logs.
        intra_op_threads: onnxruntime intra-op threads (0 = its default: one per physical core).
    """

    def __init__(self, path: Path, model_name: str, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        self.model_name = model_name
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i for i in self._session.get_inputs()}

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:  # noqa: D102
        for name, meta in self._inputs.items():
            if name not in inputs:
                raise InvalidEventError(f"{self.model_name}: missing input {name!r}", reason="model_input_mismatch")
            arr = inputs[name]
            expected = np.float32 if meta.type == "tensor(float)" else np.int64
            if arr.dtype != expected or arr.ndim != len(meta.shape):
                raise InvalidEventError(
                    f"{self.model_name}: input {name!r} must be {np.dtype(expected).name} with {len(meta.shape)} dims, "
                    f"got {arr.dtype} {arr.shape}", reason="model_input_mismatch")
        batch = next(iter(inputs.values())).shape[0]
        start = time.perf_counter()
        results = self._session.run(outputs, inputs)
        INFERENCE_SECONDS.labels(model=self.model_name, runner="onnxruntime").observe(time.perf_counter() - start)
        INFERENCE_BATCH_SIZE.labels(model=self.model_name).observe(batch)
        return dict(zip(outputs, results))
