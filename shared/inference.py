"""Inference runners: one small interface, so a model runs in-process or on Triton by config.

``OnnxRunner`` runs an ONNX file with onnxruntime on CPU: the embedded default. ``TritonRunner`` has the
same ``infer`` signature over Triton's gRPC API; callers never know which they hold. Model classes use a
runner through :class:`visearch.shared.model_base.InferenceModel`, which creates it with :func:`runner_for`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort

from visearch.shared.errors import InvalidEventError
from visearch.shared.metrics import INFERENCE_BATCH_SIZE, INFERENCE_SECONDS

if TYPE_CHECKING:
    from visearch.shared.config import ModelSettings
    from visearch.shared.models.registry import ModelSpec


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_quota_cores(root: Path = CGROUP_ROOT) -> int | None:
    """The container's CPU limit in whole cores (rounded up), from the cgroup's CFS quota; None without a limit.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``), else cgroup v1
    ``cpu/cpu.cfs_quota_us`` / ``cpu/cpu.cfs_period_us`` (quota -1: no limit). A Kubernetes
    ``resources.limits.cpu: 2`` reads as 2, ``1500m`` as 2.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else max(1, math.ceil(quota_us / period_us))


def intra_op_threads(configured: int, root: Path = CGROUP_ROOT) -> int:
    """onnxruntime's intra-op thread count: ``configured`` when > 0, else the container's CPU limit
    (:func:`cpu_quota_cores`), else 0 (onnxruntime's default: one per physical core of the node, which in a
    container with a CPU limit oversubscribes the quota and gets throttled)."""
    if configured > 0:
        return configured
    return cpu_quota_cores(root) or 0


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
        intra_op_threads: onnxruntime intra-op threads (0 = its default: one per physical core; see
            :func:`intra_op_threads` for what runner_for passes).
        spinning: whether idle intra-op threads spin-wait (onnxruntime's default) or sleep
            (``session.intra_op.allow_spinning``; see ``ModelSettings.thread_spinning``).
    """

    def __init__(self, path: Path, model_name: str, intra_op_threads: int = 0, spinning: bool = True) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.model_name = model_name
        self.path = Path(path)
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
                    f"got {arr.dtype} {arr.shape}",
                    reason="model_input_mismatch",
                )
        batch = next(iter(inputs.values())).shape[0]
        start = time.perf_counter()
        results = self._session.run(outputs, inputs)
        INFERENCE_SECONDS.labels(model=self.model_name, runner="onnxruntime").observe(time.perf_counter() - start)
        INFERENCE_BATCH_SIZE.labels(model=self.model_name).observe(batch)
        return dict(zip(outputs, results))


_NP_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}


class TritonRunner:
    """A model served by Triton, over tritonclient's gRPC client.

    At start-up it checks that the server and the model version are ready and that the model was
    built from ``recipe_key`` (the ``recipe`` parameter of its config.pbtxt), and reads the model's
    ``max_batch_size``: ``infer`` splits larger batches into chunks of that size. Each call has a
    deadline; UNAVAILABLE (server down or restarting) is retried with exponential backoff and jitter.

    Raises:
        DependencyUnavailableError: Triton unreachable, the model not ready, or retries exhausted.
        InvalidEventError: (reason ``model_input_mismatch``) a name, shape or dtype the model rejects.
        ModelNotBuiltError: the served model comes from a different recipe than this client expects.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        recipe_key: str | None = None,
        version: str = "1",
        timeout_s: float = 30.0,
        retries: int = 5,
    ) -> None:
        import tritonclient.grpc as triton
        from tritonclient.utils import InferenceServerException

        from visearch.shared.errors import DependencyUnavailableError, ModelNotBuiltError

        self._triton, self._error = triton, InferenceServerException
        self.model_name, self.version, self.url = model_name, version, url
        self.timeout_s, self.retries = timeout_s, retries
        self._client = triton.InferenceServerClient(url=url)
        try:
            if not self._client.is_server_ready(client_timeout=timeout_s):
                raise DependencyUnavailableError(f"Triton at {url} is not ready")
            if not self._client.is_model_ready(model_name, version, client_timeout=timeout_s):
                raise DependencyUnavailableError(
                    f"model {model_name} version {version} is not ready on Triton at {url}"
                )
            config = self._client.get_model_config(model_name, version, as_json=True, client_timeout=timeout_s)[
                "config"
            ]
        except InferenceServerException as exc:
            raise DependencyUnavailableError(f"Triton at {url}: {exc.message()}") from exc
        served_recipe = config.get("parameters", {}).get("recipe", {}).get("string_value")
        if recipe_key and served_recipe != recipe_key:
            raise ModelNotBuiltError(
                f"Triton serves {model_name} from recipe {served_recipe}, this client expects "
                f"{recipe_key}: rebuild the repository (visearch models build --triton)"
            )
        self.max_batch_size = int(config.get("max_batch_size", 0)) or 1

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:  # noqa: D102
        batch = next(iter(inputs.values())).shape[0]
        parts = [
            self._infer_chunk({k: v[s : s + self.max_batch_size] for k, v in inputs.items()}, outputs)
            for s in range(0, batch, self.max_batch_size)
        ]
        return {name: np.concatenate([p[name] for p in parts]) for name in outputs}

    def _infer_chunk(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        from visearch.shared.errors import DependencyUnavailableError

        infer_inputs = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            if array.dtype not in _NP_TO_TRITON:
                raise InvalidEventError(
                    f"{self.model_name}: unsupported dtype {array.dtype} for {name!r}", reason="model_input_mismatch"
                )
            tensor = self._triton.InferInput(name, list(array.shape), _NP_TO_TRITON[array.dtype])
            tensor.set_data_from_numpy(array)
            infer_inputs.append(tensor)
        requested = [self._triton.InferRequestedOutput(name) for name in outputs]

        def call() -> Any:  # tritonclient's InferResult
            return self._client.infer(
                self.model_name,
                infer_inputs,
                model_version=self.version,
                outputs=requested,
                client_timeout=self.timeout_s,
            )

        def unavailable(exc: BaseException) -> bool:
            return isinstance(exc, self._error) and "UNAVAILABLE" in str(exc.status())

        start = time.perf_counter()
        try:
            result = Retrying(
                retry=retry_if_exception(unavailable),
                stop=stop_after_attempt(self.retries),
                wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
                reraise=True,
            )(call)
        except self._error as exc:
            status = str(exc.status())
            if "INVALID_ARG" in status:
                raise InvalidEventError(f"{self.model_name}: {exc.message()}", reason="model_input_mismatch") from exc
            raise DependencyUnavailableError(f"Triton {self.model_name}: {status}: {exc.message()}") from exc
        INFERENCE_SECONDS.labels(model=self.model_name, runner="triton").observe(time.perf_counter() - start)
        INFERENCE_BATCH_SIZE.labels(model=self.model_name).observe(next(iter(inputs.values())).shape[0])
        return {name: result.as_numpy(name) for name in outputs}


def runner_for(models: ModelSettings, spec: ModelSpec, folder: Path) -> InferenceRunner:
    """The runner of a built model: Triton when ``models.triton_url`` is set (the model served from the
    same recipe), else onnxruntime in this process over ``folder/model.onnx``.

    Pre- and post-processing stay in the calling process either way (see docs/architecture.md).

    Args:
        models: ``ModelSettings``. spec: the model's ``ModelSpec``. folder: its built folder.

    Raises:
        DependencyUnavailableError, ModelNotBuiltError: see :class:`TritonRunner`.
    """
    if models.triton_url:
        return TritonRunner(models.triton_url, spec.name, spec.key, timeout_s=models.triton_timeout_s)
    threads = intra_op_threads(models.intra_op_threads)
    return OnnxRunner(folder / "model.onnx", spec.name, threads, models.thread_spinning)
