"""The Triton model repository written from the built models parses as Triton's own ModelConfig."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from visearch.offline.models.triton_repository import write_repository
from visearch.shared.config import ModelSettings
from visearch.shared.models.registry import ALL_MODELS, IMAGE_MODEL, TEXT_MODEL

pytestmark = [pytest.mark.models]


@pytest.mark.parametrize("flavour", ["local", "production"])
def test_repository_layout_and_config(built_models, tmp_path, flavour):
    """Each model: config.pbtxt (valid ModelConfig, dynamic batching, recipe key) and 1/model.onnx."""
    write_repository(ModelSettings().cache_dir, tmp_path, flavour)
    for spec, inputs, outputs in (
        (IMAGE_MODEL, {"image": [3, 224, 224]}, {"logits": [1000], "embedding": [1280]}),
        (TEXT_MODEL, {"input_ids": [-1], "attention_mask": [-1]}, {"sentence_embedding": [384]}),
    ):
        folder = tmp_path / spec.name
        config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == spec.name
        assert config.backend == ("python" if flavour == "local" else "onnxruntime")
        assert config.max_batch_size >= 32
        assert {t.name: list(t.dims) for t in config.input} == inputs
        assert {t.name: list(t.dims) for t in config.output} == outputs
        assert list(config.dynamic_batching.preferred_batch_size)
        assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000
        kind = (
            model_config_pb2.ModelInstanceGroup.KIND_CPU
            if flavour == "local"
            else model_config_pb2.ModelInstanceGroup.KIND_GPU
        )
        assert config.instance_group[0].kind == kind
        assert config.parameters["recipe"].string_value == spec.key
        assert (folder / "1" / "model.onnx").stat().st_size > 1_000_000
        assert (folder / "1" / "model.py").is_file() == (flavour == "local")


def test_every_model_is_in_the_repository(built_models, tmp_path):
    """Recognition models (detector, moderation, OCR det/cls/rec) are served like the embedding models."""
    write_repository(ModelSettings().cache_dir, tmp_path, "local")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.name for s in ALL_MODELS)
    for spec in ALL_MODELS:
        config = text_format.Parse((tmp_path / spec.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.max_batch_size >= 1 and config.parameters["recipe"].string_value == spec.key
        assert list(config.dynamic_batching.preferred_batch_size)
