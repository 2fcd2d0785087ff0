"""The base class of every inference model: load once, then preprocess, run and postprocess in batches.

The pattern of Immich's machine-learning ``InferenceModel``: a model knows its name, how to load its runner
(the built files in the local cache, or Triton, through :func:`visearch.shared.inference.runner_for`), how to
turn a batch of items into the network's named input arrays and how to turn the network's outputs back
into results. The base owns what every model repeated: creating the runner once, splitting the items
into batches of at most ``batch_size`` and putting the results back in input order.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from visearch.shared.config import ModelSettings
from visearch.shared.inference import InferenceRunner, runner_for
from visearch.shared.models.registry import ModelSpec

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass
class Batch:
    """One batch ready for the runner.

    Attributes:
        inputs: the model's named input arrays, batch dimension first, in the dtypes the model declares.
        context: what :meth:`InferenceModel.postprocess` needs from preprocessing besides the network's
            outputs (e.g. where each image sits in the model input); None when nothing.
    """

    inputs: dict[str, np.ndarray]
    context: Any = None


class InferenceModel(ABC, Generic[ItemT, ResultT]):
    """A model behind an :class:`~visearch.shared.inference.InferenceRunner`.

    Subclasses set:

    - ``spec``: the model's :class:`~visearch.shared.models.registry.ModelSpec` (name, recipe key, built
      folder); an instance may get another one (``spec=``, e.g. the int8 text model).
    - ``outputs``: the names of the output tensors :meth:`run` requests.

    and implement:

    - :meth:`preprocess`: at most ``batch_size`` items -> a :class:`Batch` whose arrays have the batch
      dimension first (``N`` = the number of items) and the dtypes the model declares (float32 or int64).
    - :meth:`postprocess`: the network's outputs for one batch (arrays with the same first dimension ``N``)
      -> that batch's result (e.g. an array ``[N, ...]`` or a list of ``N`` results).

    :meth:`predict_batches` runs them over any number of items; a subclass's public method (``encode``,
    ``detect``, ``predict``...) puts the per-batch results together (:meth:`predict_items` when each
    batch's result is a list with one entry per item).

    Loading: with a ``runner`` the model is ready; without one, :meth:`load` creates it once (the first
    call, or the first use of :attr:`runner`) from ``models`` (default ``ModelSettings()``): Triton when
    ``models.triton_url`` is set, else onnxruntime over the built ``model.onnx``. ``from_cache``
    constructors call :meth:`load` themselves, so a missing model fails at start-up, not on the first
    request. Subclasses with another source of runners override :meth:`_load`.

    Args:
        runner: the model's runner, or None to load it from ``models``.
        models: where built models live and how they run (used only by :meth:`load`).
        spec: this instance's recipe (default: the class's ``spec``).
        batch_size: items per runner call; 0: all items in one call.
        model_name: label for results and logs (default ``<spec name>@<recipe key>``).

    Raises:
        ModelNotBuiltError: (:meth:`load`) the model is not built, or Triton serves another recipe.
        DependencyUnavailableError: (:meth:`load`, :meth:`run`) Triton is configured but did not answer.
        InvalidEventError: (:meth:`run`, reason ``model_input_mismatch``) the model rejects an input's
            name, shape or dtype. Errors of :meth:`preprocess` and :meth:`postprocess` propagate unchanged.
    """

    spec: ModelSpec | None = None
    outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        runner: InferenceRunner | None = None,
        *,
        models: ModelSettings | None = None,
        spec: ModelSpec | None = None,
        batch_size: int = 0,
        model_name: str | None = None,
    ) -> None:
        if spec is not None:
            self.spec = spec
        self.models = models
        self.batch_size = batch_size
        self.model_name = model_name or (f"{self.spec.name}@{self.spec.key}" if self.spec else type(self).__name__)
        self._runner = runner
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the runner exists (given, or created by :meth:`load`)."""
        return self._runner is not None

    @property
    def runner(self) -> InferenceRunner:
        """The model's runner (loaded on first use)."""
        return self.load()

    def load(self) -> InferenceRunner:
        """Create the runner unless it exists (once, even when threads call at once) and return it."""
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = self._load()
        return self._runner

    def _load(self) -> InferenceRunner:
        """A new runner for ``spec`` from ``models``: Triton or in-process onnxruntime (see ``runner_for``)."""
        if self.spec is None:
            raise TypeError(f"{type(self).__name__} has no ModelSpec to load; pass a runner")
        models = self.models or ModelSettings()
        return runner_for(models, self.spec, self.spec.locate(models.cache_dir))

    @abstractmethod
    def preprocess(self, items: Sequence[ItemT], **options: Any) -> Batch:
        """The runner's inputs for 1..``batch_size`` items (``options``: as given to :meth:`predict_batches`)."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One runner call: the named ``outputs`` of the model for ``inputs``."""
        return self.runner.infer(inputs, list(self.outputs))

    @abstractmethod
    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> ResultT:
        """One batch's result from the network's ``outputs`` for ``batch``."""

    def predict_batches(self, items: Sequence[ItemT], **options: Any) -> list[ResultT]:
        """Preprocess, run and postprocess ``items`` in batches of at most ``batch_size`` (all at once when 0).

        Returns:
            One result per batch, in input order: batch ``b`` holds items ``[b * batch_size, (b + 1) *
            batch_size)``. ``[]`` for no items (the runner is then neither loaded nor called).
        """
        step = self.batch_size or max(len(items), 1)
        results = []
        for start in range(0, len(items), step):
            batch = self.preprocess(items[start : start + step], **options)
            results.append(self.postprocess(self.run(batch.inputs), batch))
        return results

    def predict_items(self, items: Sequence[ItemT], **options: Any) -> list[Any]:
        """For a model whose batch result is a list with one entry per item: the entries of all batches,
        one per item, in input order (see :meth:`predict_batches`)."""
        batches: list[Any] = self.predict_batches(items, **options)
        return [result for batch in batches for result in batch]
