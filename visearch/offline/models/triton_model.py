"""Triton python-backend model that runs one ONNX file with onnxruntime (the *local* flavour).

Copied verbatim as ``<model>/1/model.py`` by ``visearch models build --triton``, next to
``model.onnx``. It exists because the Triton build available without Docker (PyPI nvidia-pytriton)
has only the python backend; production uses Triton's onnxruntime or TensorRT backend over the same
``model.onnx`` and needs no Python at all.

Requests that Triton's dynamic batcher hands over together are concatenated into one onnxruntime
call when their shapes agree past the batch dimension (e.g. images), and run as separate calls
otherwise (e.g. token sequences of different lengths), so results never depend on batching.
Imports only numpy, onnxruntime and Triton's own ``triton_python_backend_utils``.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend stub


class TritonPythonModel:
    """Triton python backend entry point (initialize / execute / finalize)."""

    def initialize(self, args):
        """Load ``model.onnx`` of this model version; threads from the ``intra_op_threads`` and
        ``allow_spinning`` parameters."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "1"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        """One response per request, in order."""
        arrays = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests
        ]
        groups = {}
        for index, inputs in enumerate(arrays):
            groups.setdefault(tuple(a.shape[1:] for a in inputs), []).append(index)
        results = [None] * len(requests)
        for indices in groups.values():
            feed = {name: np.concatenate([arrays[i][k] for i in indices]) for k, name in enumerate(self.input_names)}
            outputs = self.session.run(self.output_names, feed)
            start = 0
            for i in indices:
                size = arrays[i][0].shape[0]
                results[i] = [out[start : start + size] for out in outputs]
                start += size
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, out) for name, out in zip(self.output_names, outs)]
            )
            for outs in results
        ]

    def finalize(self):
        """Release the session."""
        self.session = None
