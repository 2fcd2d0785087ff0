"""Models served by a real Triton server (deploy/triton/triton.sh, python backend on CPU).

Parity: Triton's outputs equal in-process onnxruntime outputs on real images and texts. End to end:
search (embedded platform and the gRPC services) and Kafka ingest with the models on Triton.
"""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import jpeg_bytes
from tests.integration.stack import KAFKA_BOOTSTRAP, MILVUS_URI, ScriptManaged, ServiceProcess, wait_until
from visearch.embedded import EmbeddedPlatform, item_to_event
from visearch.offline.datasets import fashion_mnist
from visearch.offline.models.triton_repository import write_repository
from visearch.shared.config import ImageSettings, KafkaSettings, ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.images import decode_image, preprocess_imagenet
from visearch.shared.inference import OnnxRunner, TritonRunner
from visearch.shared.kafka import KafkaTransport, create_topics, images_topic
from visearch.shared.models.registry import IMAGE_MODEL, TEXT_MODEL
from visearch.shared.pipeline import encode_event
from visearch.shared.store import MilvusStore
from visearch.shared.text import Tokenizer
from visearch.v1 import common_pb2, search_pb2

pytestmark = [pytest.mark.triton, pytest.mark.models]

TRITON_URL = "127.0.0.1:8001"
# Tolerances: same ONNX file, same onnxruntime CPU kernels; batch composition may change float
# summation order slightly.
LOGIT_ABS_TOL = 1e-3
COSINE_TOL = 0.99999


@pytest.fixture(scope="module")
def triton(built_models, tmp_path_factory):
    """Triton over a fresh local-flavour repository of the built models."""
    repository = tmp_path_factory.mktemp("triton-repo")
    write_repository(ModelSettings().cache_dir, repository, "local")
    server = ScriptManaged("triton", up_args=(str(repository),))
    server.up()
    yield TRITON_URL
    server.down()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_image_model_parity(triton, photos):
    """Logits and embeddings through Triton equal in-process ones for 19 real photos plus a batch of
    40 (more than max_batch_size, so the client splits it)."""
    local = OnnxRunner(IMAGE_MODEL.locate(ModelSettings().cache_dir) / "model.onnx", IMAGE_MODEL.name)
    remote = TritonRunner(triton, IMAGE_MODEL.name, IMAGE_MODEL.key)
    batch = np.stack([preprocess_imagenet(decode_image(p.read_bytes())) for p in photos])
    batch = np.concatenate([batch, batch, batch[:2]])  # 40 images
    want = local.infer({"image": batch}, ["logits", "embedding"])
    got = remote.infer({"image": batch}, ["logits", "embedding"])
    assert got["logits"].shape == (40, 1000) and got["embedding"].shape == (40, 1280)
    max_abs = float(np.abs(got["logits"] - want["logits"]).max())
    print(
        f"image parity: max |dlogit| {max_abs:.2e}, min cosine {cosine_rows(got['embedding'], want['embedding']).min():.7f}"
    )
    assert max_abs <= LOGIT_ABS_TOL
    assert cosine_rows(got["embedding"], want["embedding"]).min() >= COSINE_TOL
    assert (got["logits"].argmax(1) == want["logits"].argmax(1)).all()


def test_text_model_parity(triton):
    """Sentence embeddings through Triton equal in-process ones, for texts of different lengths sent
    as one batch and as concurrent single requests (which Triton's batcher may merge)."""
    from concurrent.futures import ThreadPoolExecutor

    folder = TEXT_MODEL.locate(ModelSettings().cache_dir)
    tokenizer = Tokenizer(folder / "tokenizer.json")
    local = OnnxRunner(folder / "model.onnx", TEXT_MODEL.name)
    remote = TritonRunner(triton, TEXT_MODEL.name, TEXT_MODEL.key)
    texts = [
        "dog",
        "a cup of coffee on a wooden table",
        "red dress",
        "Ein Hund spielt im Park",
        "",
        "running shoes with white soles and a blue logo on the side",
    ]
    ids, mask = tokenizer.encode(texts)
    want = local.infer({"input_ids": ids, "attention_mask": mask}, ["sentence_embedding"])["sentence_embedding"]
    got = remote.infer({"input_ids": ids, "attention_mask": mask}, ["sentence_embedding"])["sentence_embedding"]
    assert cosine_rows(got, want).min() >= COSINE_TOL

    def one(text):
        i, m = tokenizer.encode([text])
        return remote.infer({"input_ids": i, "attention_mask": m}, ["sentence_embedding"])["sentence_embedding"][0]

    with ThreadPoolExecutor(8) as pool:
        singles = np.stack(list(pool.map(one, texts * 4)))
    assert cosine_rows(singles, np.concatenate([want] * 4)).min() >= COSINE_TOL


def test_wrong_input_gives_clear_error(triton):
    """A tensor of the wrong shape is refused with InvalidEventError (model_input_mismatch)."""
    remote = TritonRunner(triton, IMAGE_MODEL.name, IMAGE_MODEL.key)
    with pytest.raises(InvalidEventError) as info:
        remote.infer({"image": np.zeros((1, 3, 100, 100), dtype=np.float32)}, ["embedding"])
    assert info.value.reason == "model_input_mismatch"


def test_recipe_mismatch_is_refused(triton):
    """A client expecting another recipe of the model refuses to start against this server."""
    from visearch.shared.errors import ModelNotBuiltError

    with pytest.raises(ModelNotBuiltError, match="recipe"):
        TritonRunner(triton, IMAGE_MODEL.name, "000000000000")


def test_search_with_models_on_triton(triton, photos, tmp_path):
    """The five-stage chain and search (near-duplicate and text) with every model call going to Triton."""
    settings = ModelSettings(triton_url=triton)
    with EmbeddedPlatform(
        StoreSettings(uri=str(tmp_path / "t.db")),
        settings,
        ServiceSettings(tenant="t"),
        image_settings=ImageSettings(allow_file_uris=True),
    ) as platform:
        assert isinstance(platform.embedder.image.runner, TritonRunner)
        # The recognition models too: detector, OCR det/cls/rec, moderation.
        reader = platform.ocr.reader
        for runner in (
            platform.detection.detector.runner,
            reader.det,
            reader.cls,
            reader.rec,
            platform.classification.classifier.moderation.runner,
        ):
            assert isinstance(runner, TritonRunner), runner
        report = platform.ingest(photos, progress=False)
        assert report.indexed == len(photos) and not report.failed
        assert {"dog", "bicycle"} <= {r["label"] for r in platform.store.regions("t", "photo-dog")}
        assert platform.store.get("t", "photo-motorcycle")["ocr_text"] == "YAMAHA"
        dog = next(p for p in photos if p.image_id == "photo-dog")
        img = Image.open(io.BytesIO(dog.read_bytes())).convert("RGB")
        query = jpeg_bytes(
            img.crop((20, 20, img.width - 20, img.height - 20)).resize((img.width // 2, img.height // 2)), 50
        )
        hits = platform.search.Search(
            search_pb2.SearchRequest(image=common_pb2.Image(content=query), top_k=3), None
        ).hits
        assert hits[0].image_id == "photo-dog"
        hits = platform.search.Search(search_pb2.SearchRequest(text="a cup of coffee", top_k=3), None).hits
        assert hits[0].image_id == "photo-coffee"


def test_kafka_ingest_and_grpc_search_with_models_on_triton(triton, tmp_path):
    """The pipeline services (embedding, indexer) and the ranking service, all using Triton."""
    kafka, milvus = ScriptManaged("kafka"), ScriptManaged("milvus")
    kafka.up()
    milvus.up()
    prefix = f"tr{uuid.uuid4().hex[:8]}"
    procs = []
    try:
        settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=prefix, partitions=3)
        create_topics(settings, ["embedding", "indexer"])
        store = MilvusStore(StoreSettings(uri=MILVUS_URI, collection_prefix=prefix, search_consistency="Strong"))
        env = {
            "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
            "VISEARCH_KAFKA_TOPIC_PREFIX": prefix,
            "VISEARCH_MILVUS_URI": MILVUS_URI,
            "VISEARCH_MILVUS_COLLECTION_PREFIX": prefix,
            "VISEARCH_MILVUS_SEARCH_CONSISTENCY": "Strong",
            "VISEARCH_MODEL_TRITON_URL": triton,
            "VISEARCH_TENANT": "tr",
            "VISEARCH_PIPELINE_STAGES": "embedding,indexer",
        }
        for name in ("embedding", "indexer"):
            procs.append(ServiceProcess(name, env, tmp_path).start())
        ranking = ServiceProcess("ranking", {**env, "VISEARCH_EMBEDDING_ADDR": procs[0].address}, tmp_path)
        procs.append(ranking.start())

        events = [item_to_event(item, "tr") for item in fashion_mnist("train", limit=200, offset=7000)]
        transport = KafkaTransport(settings, "test-triton")
        for event in events:
            transport.produce(images_topic(settings), *encode_event(event))
        transport.flush()
        transport.close()
        wait_until(lambda: store.count(tenant="tr") >= 200, 300, what="200 indexed through Triton")
        assert store.count(tenant="tr") == 200

        import grpc

        from visearch.v1 import search_pb2_grpc

        with grpc.insecure_channel(ranking.address) as channel:
            query = search_pb2.SearchRequest(image=common_pb2.Image(content=events[0].image.content), top_k=3)
            try:
                hits = search_pb2_grpc.SearchServiceStub(channel).Search(query, timeout=30).hits
            except grpc.RpcError as error:
                pytest.fail(f"Search failed: {error.code()} {error.details()}\n--- ranking\n{ranking.log_tail(40)}")
        assert hits[0].image_id == events[0].image_id and hits[0].score > 0.99, [(h.image_id, h.score) for h in hits]
        store.close()
    finally:
        codes = [p.stop() for p in procs]
        milvus.down()
        kafka.down()
    assert codes == [0, 0, 0]
