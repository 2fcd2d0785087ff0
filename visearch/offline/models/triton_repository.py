"""Write a Triton model repository from the built ONNX models: the repository as data.

One description (the ONNX file's own inputs and outputs, plus per-model serving settings) gives two
flavours of ``<model>/config.pbtxt``:

- ``production``: Triton's onnxruntime backend on GPU (``KIND_GPU``), with a commented TensorRT FP16
  accelerator block to enable on GPUs that support it (see docs/architecture.md, "Models on Triton");
- ``local``: the python backend running the same ONNX with onnxruntime on CPU
  (``visearch/offline/models/triton_model.py`` as ``model.py``), because the Triton build we can install here
  (PyPI nvidia-pytriton) has only the python backend.

Both carry dynamic batching with preferred sizes and a bounded queue delay, and a ``recipe``
parameter (the model's recipe key) that clients check at start-up, so a client never talks to a
model built from another recipe.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from visearch.shared.models.registry import (
    ALL_MODELS,
    DETECTOR_MODEL,
    IMAGE_MODEL,
    MODERATION_MODEL,
    OCR_CLS_MODEL,
    OCR_DET_MODEL,
    OCR_REC_MODEL,
    TEXT_MODEL,
    ModelSpec,
)

FLAVOURS = ("local", "production")
_ONNX_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32"}
MODEL_VERSION = "1"


@dataclass(frozen=True)
class ServingSpec:
    """Serving settings of one model: batch limits and the batcher's behaviour."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    cpu_instances: int = 1
    gpu_instances: int = 1


SERVING = {
    IMAGE_MODEL.name: ServingSpec(max_batch_size=32, preferred_batch_sizes=(8, 16, 32), max_queue_delay_us=2000),
    TEXT_MODEL.name: ServingSpec(max_batch_size=64, preferred_batch_sizes=(16, 32, 64), max_queue_delay_us=1000),
    # OCR: Triton batches only requests of equal shape. Detector inputs differ per image size (a few
    # requests of one size at most); classifier crops are all 48 x 192; recogniser batches are groups
    # of similar-width crops (OcrSettings.rec_batch_size, default 6).
    OCR_DET_MODEL.name: ServingSpec(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=1000),
    OCR_CLS_MODEL.name: ServingSpec(max_batch_size=64, preferred_batch_sizes=(16, 32, 64), max_queue_delay_us=500),
    OCR_REC_MODEL.name: ServingSpec(max_batch_size=32, preferred_batch_sizes=(6, 12, 24), max_queue_delay_us=1000),
    # Detector: 512 x 512 inputs, ~45 ms per image on 2 CPU cores (~70 ms on one); DetectionSettings.batch_size = 8.
    DETECTOR_MODEL.name: ServingSpec(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=2000),
    # Moderation: 224 x 224 MobileNetV2, ~12 ms per image on 2 CPU cores; batches of ModelSettings.image_batch_size.
    MODERATION_MODEL.name: ServingSpec(max_batch_size=32, preferred_batch_sizes=(8, 16, 32), max_queue_delay_us=2000),
}


def _tensors(kind: str, metas) -> str:
    blocks = []
    for meta in metas:
        dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in meta.shape[1:])  # batch dim is implicit
        blocks.append(
            f'  {{\n    name: "{meta.name}"\n    data_type: {_ONNX_TO_TRITON[meta.type]}\n    dims: [ {dims} ]\n  }}'
        )
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def config_pbtxt(spec: ModelSpec, onnx_path: Path, flavour: str) -> str:
    """The config.pbtxt text of ``spec`` for ``flavour`` ("local" or "production")."""
    return _config_text(spec.name, SERVING[spec.name], onnx_path, flavour, spec.key)


def _config_text(
    name: str, serving: ServingSpec, onnx_path: Path, flavour: str, recipe: str, all_versions: bool = False
) -> str:
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    lines = [f'name: "{name}"']
    if flavour == "production":
        lines.append('backend: "onnxruntime"')
    else:
        lines.append('backend: "python"')
    lines.append(f"max_batch_size: {serving.max_batch_size}")
    if all_versions:
        lines.append("version_policy: { all { } }")
    text = "\n".join(lines) + "\n"
    text += _tensors("input", session.get_inputs()) + _tensors("output", session.get_outputs())
    preferred = ", ".join(str(s) for s in serving.preferred_batch_sizes)
    text += (
        f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {serving.max_queue_delay_us}\n}}\n"
    )
    if flavour == "production":
        text += f"instance_group [\n  {{\n    kind: KIND_GPU\n    count: {serving.gpu_instances}\n  }}\n]\n"
        text += (
            "# TensorRT with FP16 on GPUs that support it (measure the accuracy cost with `visearch eval` first):\n"
            "# optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
            '#   name: "tensorrt"\n'
            '#   parameters { key: "precision_mode" value: "FP16" }\n'
            '#   parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }\n'
        )
    else:
        text += f"instance_group [\n  {{\n    kind: KIND_CPU\n    count: {serving.cpu_instances}\n  }}\n]\n"
        text += 'parameters {\n  key: "intra_op_threads"\n  value: { string_value: "0" }\n}\n'
        # idle onnxruntime threads sleep instead of spinning: the model instances share the CPU cores
        text += 'parameters {\n  key: "allow_spinning"\n  value: { string_value: "0" }\n}\n'
    text += f'parameters {{\n  key: "recipe"\n  value: {{ string_value: "{recipe}" }}\n}}\n'
    return text


def write_repository(cache_dir: Path, target: Path, flavour: str = "local") -> list[Path]:
    """Write ``<target>/<model>/config.pbtxt`` and ``<target>/<model>/1/model.onnx`` (+ ``model.py``
    for the local flavour) for every model. Existing model folders are replaced.

    Raises:
        ModelNotBuiltError: a model is not built in ``cache_dir``.
    """
    written = []
    for spec in ALL_MODELS:
        source = spec.locate(cache_dir) / "model.onnx"
        folder = Path(target) / spec.name
        if folder.exists():
            shutil.rmtree(folder)
        version_dir = folder / MODEL_VERSION
        version_dir.mkdir(parents=True)
        shutil.copy(source, version_dir / "model.onnx")
        if flavour == "local":
            shutil.copy(Path(__file__).with_name("triton_model.py"), version_dir / "model.py")
        (folder / "config.pbtxt").write_text(config_pbtxt(spec, source, flavour))
        written.append(folder)
    return written


# Trained catalogue models (`visearch train`): a few matrix products per vector.
TRAINED_SERVING = ServingSpec(max_batch_size=64, preferred_batch_sizes=(16, 32, 64), max_queue_delay_us=500)


def write_trained_repository(cache_dir: Path, target: Path, catalogue: str, flavour: str = "local") -> list[Path]:
    """Publish every installed version of ``catalogue``'s trained models (``visearch train``) as Triton model
    versions: ``<target>/<kind>_<catalogue>/config.pbtxt`` (all versions served; the ``recipe`` parameter is
    the encoder the versions were trained on) and ``<target>/<kind>_<catalogue>/<version>/model.onnx``
    (+ ``model.py`` for the local flavour). A client picks a version by number, as ``TritonRunner(version=...)``
    does. The services themselves run these small models in-process (``shared/models/trained.py``).

    Existing folders of these models are replaced. Returns the model folders written (none when nothing
    is installed). Raises ValueError when the versions were trained on different encoders.
    """
    from visearch.shared.models.trained import KINDS, list_versions, read_meta, trained_name

    written = []
    for kind in KINDS:
        versions = list_versions(cache_dir, kind, catalogue)
        if not versions:
            continue
        encoders = {read_meta(folder).get("encoder", "") for _, folder in versions}
        if len(encoders) != 1:
            raise ValueError(
                f"{kind} versions of {catalogue!r} come from several encoders {sorted(encoders)}: remove the stale ones"
            )
        folder = Path(target) / trained_name(kind, catalogue)
        if folder.exists():
            shutil.rmtree(folder)
        for version, source in versions:
            (folder / str(version)).mkdir(parents=True)
            shutil.copy(source / "model.onnx", folder / str(version) / "model.onnx")
            if flavour == "local":
                shutil.copy(Path(__file__).with_name("triton_model.py"), folder / str(version) / "model.py")
        (folder / "config.pbtxt").write_text(
            _config_text(
                folder.name, TRAINED_SERVING, versions[-1][1] / "model.onnx", flavour, encoders.pop(), all_versions=True
            )
        )
        written.append(folder)
    return written
