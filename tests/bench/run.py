"""``make bench``: figures and ratios measured in one run on this machine (embedded mode, CPU).

First version (issue 9 grows it): ingest throughput against the bare model compute, search latency
by image and by text against one bare encode + one bare ANN query, Milvus Lite recall@10 of the
index against exact search, per-image latency of every recognition model and the five-stage chain's
throughput on real photos, and the process RSS. The chain over Kafka (per stage against the bare
stage compute, end to end, two replicas, RSS per service) is tests/bench/pipeline.py, also run by
``make bench``; Milvus standalone recall per HNSW ef is tests/bench/milvus.py (``make bench-milvus``).
The fast-path options are measured here too: draft-mode JPEG decode and int8 dynamic quantisation of
the query encoders (speed and how far their embeddings move).

Writes ``reports/bench.json`` and ``reports/bench.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import fashion_mnist, photo_catalogue
from visearch.offline.evaluation.suites import FASHION_STAGES
from visearch.shared.config import ImageSettings, ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.images import decode_image, preprocess_imagenet
from visearch.shared.models.registry import TEXT_MODEL_INT8
from visearch.shared.store import IndexRow, MilvusStore
from visearch.v1 import common_pb2, search_pb2


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def rss_mb() -> float:
    """Peak resident set size of this process, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ingest(platform: EmbeddedPlatform, n: int) -> dict:
    items = list(fashion_mnist("train", limit=n, offset=20000))
    images = [decode_image(item.content) for item in items]
    batch = platform.embedder.image.batch_size
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        tensor = np.stack([preprocess_imagenet(img) for img in images[i : i + batch]])
        platform.embedder.image.runner.infer({"image": tensor}, ["logits", "embedding"])
    bare = n / (time.perf_counter() - start)
    start = time.perf_counter()
    report = platform.ingest(items, progress=False)
    pipeline = report.indexed / (time.perf_counter() - start)
    return {
        "images": n,
        "bare_model_img_per_s": round(bare, 1),
        "pipeline_img_per_s": round(pipeline, 1),
        "ratio_pipeline_to_bare": round(pipeline / bare, 3),
    }


def bench_search(platform: EmbeddedPlatform, queries: int) -> dict:
    photos = photo_catalogue()
    image_bytes = [p.read_bytes() for p in photos]
    texts = ["dog", "a cup of coffee", "ankle boot", "red dress", "a cat", "sneaker", "flower", "rocket"]
    out = {}
    for kind in ("image", "text"):
        latencies, encode, ann = [], [], []
        for i in range(queries):
            if kind == "image":
                request = search_pb2.SearchRequest(
                    image=common_pb2.Image(content=image_bytes[i % len(image_bytes)]), top_k=10
                )
            else:
                request = search_pb2.SearchRequest(text=texts[i % len(texts)], top_k=10)
            start = time.perf_counter()
            platform.search.Search(request, None)
            latencies.append((time.perf_counter() - start) * 1000)
            # The bare path: one encode and one ANN query, nothing else.
            start = time.perf_counter()
            if kind == "image":
                vector = platform.embedder.embed_images([decode_image(image_bytes[i % len(image_bytes)])]).image[0]
            else:
                vector = platform.embedder.embed_texts([texts[i % len(texts)]])[0]
            middle = time.perf_counter()
            platform.store.search("image" if kind == "image" else "joint", vector, tenant=platform.tenant, top_k=10)
            encode.append((middle - start) * 1000)
            ann.append((time.perf_counter() - middle) * 1000)
        bare = [e + a for e, a in zip(encode, ann)]
        out[kind] = {
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "bare_encode_p50_ms": round(statistics.median(encode), 2),
            "bare_ann_p50_ms": round(statistics.median(ann), 2),
            "ratio_p50_to_bare": round(percentile(latencies, 50) / statistics.median(bare), 3),
        }
    return out


def bench_search_breakdown(platform: EmbeddedPlatform, queries: int) -> dict:
    """p50 of each part of a search by image and by text, in one run: decode, preprocess (or tokenise),
    inference, one ANN query, the whole ``Search`` in process (``ranking_and_api`` is what it adds to those
    parts: query understanding, the other routes, re-scoring, the response) and over gRPC on 127.0.0.1
    (``transport`` is what the server, serialisation and the loopback add); ``in_process_vector_only`` the
    same query with the visual_only profile and no query understanding (``blend_cost`` the difference).
    Milliseconds."""
    from concurrent import futures

    import grpc

    from visearch.v1 import search_pb2_grpc

    photos = photo_catalogue()
    image_bytes = [p.read_bytes() for p in photos]
    texts = ["dog", "a cup of coffee", "ankle boot", "red dress", "a cat", "sneaker", "flower", "rocket"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    search_pb2_grpc.add_SearchServiceServicer_to_server(platform.search, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = search_pb2_grpc.SearchServiceStub(channel)
    image_model, text_model = platform.embedder.image, platform.embedder.text
    parts: dict[str, dict[str, list[float]]] = {"image": {}, "text": {}}

    def record(kind: str, name: str, seconds: float) -> None:
        parts[kind].setdefault(name, []).append(seconds * 1000)

    try:
        for i in range(queries):
            data, text = image_bytes[i % len(image_bytes)], texts[i % len(texts)]
            t0 = time.perf_counter()
            image = decode_image(data)
            t1 = time.perf_counter()
            tensor = preprocess_imagenet(image)[None]
            t2 = time.perf_counter()
            vector = image_model.runner.infer({"image": tensor}, ["logits", "embedding"])["embedding"][0]
            t3 = time.perf_counter()
            platform.store.search("image", vector / np.linalg.norm(vector), tenant=platform.tenant, top_k=10)
            t4 = time.perf_counter()
            for name, seconds in (
                ("decode", t1 - t0),
                ("preprocess", t2 - t1),
                ("inference", t3 - t2),
                ("ann", t4 - t3),
            ):
                record("image", name, seconds)
            t0 = time.perf_counter()
            ids, mask = text_model.tokenizer.encode([text])
            t1 = time.perf_counter()
            vector = text_model.runner.infer({"input_ids": ids, "attention_mask": mask}, ["sentence_embedding"])[
                "sentence_embedding"
            ][0]
            t2 = time.perf_counter()
            platform.store.search("joint", vector / np.linalg.norm(vector), tenant=platform.tenant, top_k=10)
            t3 = time.perf_counter()
            for name, seconds in (("preprocess", t1 - t0), ("inference", t2 - t1), ("ann", t3 - t2)):
                record("text", name, seconds)
            for kind, request in (
                ("image", search_pb2.SearchRequest(image=common_pb2.Image(content=data), top_k=10)),
                ("text", search_pb2.SearchRequest(text=text, top_k=10)),
            ):
                t0 = time.perf_counter()
                platform.search.Search(request, None)
                t1 = time.perf_counter()
                stub.Search(request, timeout=30)
                t2 = time.perf_counter()
                record(kind, "in_process", t1 - t0)
                record(kind, "grpc", t2 - t1)
                # The same query ranked by vector similarity alone, without query understanding: what the
                # blend (OCR + classification of the query, BM25, re-scoring every factor) costs.
                request.ranking.name, request.understand_query = "visual_only", False
                t0 = time.perf_counter()
                platform.search.Search(request, None)
                record(kind, "in_process_vector_only", time.perf_counter() - t0)
    finally:
        channel.close()
        server.stop(None)
    out = {}
    for kind, named in parts.items():
        p50 = {name: round(statistics.median(values), 2) for name, values in named.items()}
        bare = sum(p50[n] for n in ("decode", "preprocess", "inference", "ann") if n in p50)
        p50["ranking_and_api"] = round(max(0.0, p50["in_process"] - bare), 2)
        p50["blend_cost"] = round(p50["in_process"] - p50["in_process_vector_only"], 2)
        p50["transport"] = round(max(0.0, p50["grpc"] - p50["in_process"]), 2)
        p50["grpc_p99"] = round(percentile(named["grpc"], 99), 2)
        p50["ratio_grpc_to_bare"] = round(p50["grpc"] / bare, 3)
        p50["ratio_vector_only_to_bare"] = round(p50["in_process_vector_only"] / bare, 3)
        out[kind] = p50
    return out


def large_jpeg(data: bytes, side: int = 1600, quality: int = 90) -> bytes:
    """A photo re-encoded as a JPEG whose longest side is ``side`` px (Pillow bicubic): a phone or catalogue-size query."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = side / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def bench_blend(platform: EmbeddedPlatform, passes: int, tenant: str) -> dict:
    """Search by image with every recognition service loaded, 1600-px JPEG photo queries (the real photos
    re-encoded), interleaved query by query: the default profile (blended) with query understanding (the
    service default) against visual_only without it, and blended with the detector run on the query
    (``query_object_tags`` on; the default estimates its objects from its classes and neighbours). p50 / p99 milliseconds,
    their ratios, and how often each query signal was used or skipped (SearchResponse.signals)."""
    queries = [large_jpeg(p.read_bytes()) for p in photo_catalogue()]
    times: dict[str, list[float]] = {"blended": [], "visual_only": [], "blended_object_detection": []}
    signals: dict[str, dict[str, int]] = {}
    requests = {
        "blended": lambda q: search_pb2.SearchRequest(image=common_pb2.Image(content=q), top_k=10, tenant=tenant),
        "blended_object_detection": lambda q: search_pb2.SearchRequest(
            image=common_pb2.Image(content=q), top_k=10, tenant=tenant
        ),
        "visual_only": lambda q: search_pb2.SearchRequest(
            image=common_pb2.Image(content=q),
            top_k=10,
            tenant=tenant,
            ranking=search_pb2.RankingProfile(name="visual_only"),
            understand_query=False,
        ),
    }
    settings = platform.search.settings
    default_object_tags = settings.query_object_tags

    def search(name: str, q: bytes):
        settings.query_object_tags = default_object_tags or name == "blended_object_detection"
        try:
            return platform.search.Search(requests[name](q), None)
        finally:
            settings.query_object_tags = default_object_tags

    for q in queries:  # warm-up: first calls pay lazy initialisation
        for name in requests:
            search(name, q)
    for _ in range(passes):
        for q in queries:
            for name in requests:
                start = time.perf_counter()
                response = search(name, q)
                times[name].append((time.perf_counter() - start) * 1000)
                if name == "blended":
                    for s in response.signals:
                        counts = signals.setdefault(s.name, {"used": 0})
                        key = "used" if s.used else f"skipped_{s.skipped}"
                        counts[key] = counts.get(key, 0) + 1
    out = {
        name: {"p50_ms": round(percentile(t, 50), 2), "p99_ms": round(percentile(t, 99), 2), "queries": len(t)}
        for name, t in times.items()
    }
    out["ratio_p50_blended_to_visual_only"] = round(out["blended"]["p50_ms"] / out["visual_only"]["p50_ms"], 3)
    out["ratio_p99_blended_to_visual_only"] = round(out["blended"]["p99_ms"] / out["visual_only"]["p99_ms"], 3)
    out["ratio_p50_object_detection_to_visual_only"] = round(
        out["blended_object_detection"]["p50_ms"] / out["visual_only"]["p50_ms"], 3
    )
    out["signals"] = signals
    return out


def write_report(out: Path, stem: str, results, table: str) -> None:
    """Write ``<out>/<stem>.json`` (every figure) and ``<out>/<stem>.md`` (the table), and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    print(table)


def bench_recall(
    n: int,
    queries: int,
    dim: int = 1280,
    uri: str | None = None,
    clients: int = 4,
    index_type: str = "HNSW",
    efs: tuple[int, ...] = (16, 64, 128, 256, 512),
) -> dict:
    """Recall@10 of the store's index (``index_type``, cosine) against exact search, on ``n`` synthetic
    clustered unit vectors: Milvus Lite in a temporary folder, or the Milvus server at ``uri`` (a fresh
    collection prefix). For HNSW on a server, one row per search ``ef`` in ``efs`` (the index is built
    once): recall, latency (one client) and QPS with ``clients`` concurrent clients. The top-level
    figures are those of the default ``search_ef``."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    data = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 10000):  # in chunks: 1M x 1280-d is 5 GB as float32 already
        m = min(n, i + 10000) - i
        chunk = centres[rng.integers(0, 64, m)] + 0.5 * rng.normal(size=(m, dim)).astype(np.float32)
        data[i : i + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    default_ef = StoreSettings.model_fields["search_ef"].default
    with tempfile.TemporaryDirectory() as tmp:
        store = MilvusStore(
            StoreSettings(
                uri=uri or str(Path(tmp) / "recall.db"),
                index_type=index_type,
                collection_prefix=f"bench{rng.integers(1 << 30):x}",
            )
        )
        joint = np.zeros(384, dtype=np.float32)
        joint[0] = 1.0
        start = time.perf_counter()
        for i in range(0, n, 1000):
            store.upsert(
                IndexRow(image_id=f"v{j}", tenant="b", image_vector=data[j], joint_vector=joint)
                for j in range(i, min(n, i + 1000))
            )
        insert_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        store.flush()
        if uri:  # a server builds the index in the background: wait until every row is indexed
            client, name = store._client, store.collections["image"]
            deadline = time.monotonic() + max(900.0, n / 200)  # 1M rows: ~70 min on two cores
            while time.monotonic() < deadline:
                info = client.describe_index(name, "vector") or {}
                if info.get("indexed_rows", 0) >= n and not info.get("pending_index_rows", 0):
                    break
                time.sleep(1)
        index_s = time.perf_counter() - start
        query_vectors = [data[q * 7 % n] + 0.1 * rng.normal(size=dim).astype(np.float32) for q in range(queries)]
        exact = [set(np.argsort(-(data @ query))[:10].tolist()) for query in query_vectors]
        sweep = []
        for ef in efs if uri and index_type == "HNSW" else (default_ef,):
            store.settings.search_ef = ef
            hits, latencies = 0, []
            for query, truth in zip(query_vectors, exact):
                start = time.perf_counter()
                found = store.search("image", query, tenant="b", top_k=10)
                latencies.append((time.perf_counter() - start) * 1000)
                hits += len(truth & {int(h.image_id[1:]) for h in found})
            with ThreadPoolExecutor(clients) as pool:
                start = time.perf_counter()
                list(pool.map(lambda q: store.search("image", q, tenant="b", top_k=10), query_vectors * 2))
                qps = 2 * len(query_vectors) / (time.perf_counter() - start)
            sweep.append(
                {
                    "search_ef": ef,
                    "recall_at_10": round(hits / (10 * queries), 4),
                    "search_p50_ms": round(percentile(latencies, 50), 2),
                    "search_p99_ms": round(percentile(latencies, 99), 2),
                    f"qps_{clients}_clients": round(qps, 1),
                }
            )
        store.close()
    default = next((r for r in sweep if r["search_ef"] == default_ef), sweep[-1])
    return {
        "rows": n,
        "dim": dim,
        "index_type": index_type,
        **default,
        "sweep": sweep,
        "insert_rows_per_s": round(insert_rate, 0),
        "flush_and_index_s": round(index_s, 1),
    }


def bench_recognition(platform: EmbeddedPlatform, repeats: int = 3) -> dict:
    """Per-image latency of each model (batch 1, preprocessing included, median over real photos and
    ``repeats`` runs) and the full five-stage chain's ingest throughput on the photos."""
    photos = photo_catalogue()
    images = [decode_image(p.read_bytes()) for p in photos]
    emb = platform.embedder.embed_images(images)
    steps = {
        "detection (CenterNet-MobileNetV3, 512 px letterbox, NMS)": lambda i: platform.detection.detector.detect(
            [images[i]]
        ),
        "embedding (EfficientNet-Lite0 + ConSE)": lambda i: platform.embedder.embed_images([images[i]]),
        "ocr (PP-OCR det <= 960 px + cls + rec)": lambda i: platform.ocr.reader.read([images[i]]),
        "moderation (nsfwjs MobileNetV2)": lambda i: platform.classification.classifier.moderation.predict([images[i]]),
        "classification (taxonomy, concepts, colours, quality, moderation, pHash)": lambda i: (
            platform.classification.classifier.classify([images[i]], emb.probs[i : i + 1], emb.joint[i : i + 1])
        ),
        "text encoder (MiniLM, one query)": lambda i: platform.embedder.embed_texts([photos[i].title]),
    }
    results = {}
    for name, step in steps.items():
        step(0)  # warm-up
        times = []
        for _ in range(repeats):
            for i in range(len(images)):
                start = time.perf_counter()
                step(i)
                times.append((time.perf_counter() - start) * 1000)
        results[name] = {"p50_ms": round(percentile(times, 50), 1), "p90_ms": round(percentile(times, 90), 1)}
    start = time.perf_counter()
    report = platform.ingest(photos, progress=False, tenant="bench-chain")
    elapsed = time.perf_counter() - start
    assert report.indexed == len(photos), f"the chain indexed {report.indexed} of {len(photos)} photos: {report}"
    results["chain"] = {
        "images": report.indexed,
        "img_per_s": round(report.indexed / elapsed, 2),
        "stages": list(platform.stages),
    }
    return results


def bench_draft_decode(platform: EmbeddedPlatform, repeats: int = 7) -> dict:
    """Full vs draft-mode JPEG decode (``decode_image(min_side=256)``, VISEARCH_IMAGE_DRAFT_DECODE) of the
    real JPEG photos whose short side is >= 512 px and of a 3000 x 2000 q90 JPEG (one photo upscaled, a
    catalogue-sized image): p50 milliseconds, their ratio, and the cosine between the EfficientNet-Lite0
    embeddings of the two decodes (1.0: the same vector)."""
    import io

    from PIL import Image

    jpegs = {p.image_id: p.read_bytes() for p in photo_catalogue()}
    jpegs = {
        k: v
        for k, v in jpegs.items()
        if Image.open(io.BytesIO(v)).format == "JPEG" and min(Image.open(io.BytesIO(v)).size) >= 512
    }
    big = Image.open(io.BytesIO(jpegs["photo-kite"])).convert("RGB").resize((3000, 2000), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    jpegs["3000x2000 q90"] = buf.getvalue()
    out = {}
    for name, data in jpegs.items():
        times: dict[int, list[float]] = {0: [], 256: []}
        for _ in range(repeats):
            for min_side in times:
                start = time.perf_counter()
                decode_image(data, min_side=min_side)
                times[min_side].append((time.perf_counter() - start) * 1000)
        full, draft = decode_image(data), decode_image(data, min_side=256)
        if full.size == draft.size:  # short side under 2 x 256 px at some scale: draft mode does nothing
            continue
        vectors = platform.embedder.embed_images([full, draft]).image
        out[name] = {
            "size": list(full.size),
            "draft_size": list(draft.size),
            "full_p50_ms": round(statistics.median(times[0]), 2),
            "draft_p50_ms": round(statistics.median(times[256]), 2),
            "speedup": round(statistics.median(times[0]) / statistics.median(times[256]), 2),
            "embedding_cosine": round(float(np.dot(vectors[0], vectors[1])), 4),
        }
    return out


def bench_int8(platform: EmbeddedPlatform, repeats: int = 3) -> dict:
    """onnxruntime dynamic int8 quantisation (``onnxruntime.quantization.quantize_dynamic``, weights QInt8)
    of the two query encoders, measured against their fp32 models on this CPU: batch-1 p50 milliseconds,
    speed-up, and the cosine of the int8 embedding to the fp32 one (min and median over the photos or
    query texts). EfficientNet-Lite0: every Conv and MatMul quantised here; MiniLM: its MatMuls, the
    ``all_minilm_l6_v2_int8`` build that ``VISEARCH_MODEL_TEXT_INT8`` serves."""
    import onnxruntime as ort

    from visearch.offline.models.build import quantize_int8

    photos = photo_catalogue()
    images = np.stack([preprocess_imagenet(decode_image(p.read_bytes())) for p in photos])
    tokenizer = platform.embedder.text.tokenizer
    texts = [p.title for p in photos] + ["dog", "a cup of coffee", "ankle boot", "red dress", "rocket launch at night"]
    options = ort.SessionOptions()  # as the services' sessions (shared/inference.py), one thread
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        image_int8 = Path(tmp) / "efficientnet_lite0-int8.onnx"
        quantize_int8(platform.embedder.image.runner.path, image_int8)
        cases = {
            "EfficientNet-Lite0 (image)": (
                platform.embedder.image.runner.path,
                image_int8,
                "embedding",
                [{"image": images[i : i + 1]} for i in range(len(images))],
            ),
            "MiniLM-L6 (text)": (
                platform.embedder.text.runner.path,
                TEXT_MODEL_INT8.locate(ModelSettings().cache_dir) / "model.onnx",
                "sentence_embedding",
                [dict(zip(("input_ids", "attention_mask"), tokenizer.encode([t]))) for t in texts],
            ),
        }
        for name, (source, target, output, feeds) in cases.items():
            sessions = {
                kind: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for kind, path in (("fp32", source), ("int8", target))
            }
            times: dict[str, list[float]] = {"fp32": [], "int8": []}
            vectors: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
            for _ in range(repeats):
                for feed in feeds:
                    for kind, session in sessions.items():
                        start = time.perf_counter()
                        vector = session.run([output], feed)[0][0]
                        times[kind].append((time.perf_counter() - start) * 1000)
                        vectors[kind].append(vector / np.linalg.norm(vector))
            cosines = [float(np.dot(a, b)) for a, b in zip(vectors["fp32"], vectors["int8"])]
            out[name] = {
                "fp32_p50_ms": round(statistics.median(times["fp32"]), 2),
                "int8_p50_ms": round(statistics.median(times["int8"]), 2),
                "speedup": round(statistics.median(times["fp32"]) / statistics.median(times["int8"]), 2),
                "cosine_min": round(min(cosines), 4),
                "cosine_median": round(statistics.median(cosines), 4),
                "size_mb": [round(Path(source).stat().st_size / 2**20, 1), round(target.stat().st_size / 2**20, 1)],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="Fashion-MNIST images for the ingest figures.")
    parser.add_argument("--queries", type=int, default=100, help="Queries per search kind.")
    parser.add_argument(
        "--blend-catalogue",
        type=int,
        default=300,
        help="Fashion-MNIST products indexed beside the photos for the blended-search figures.",
    )
    parser.add_argument("--blend-passes", type=int, default=5, help="Passes over the 1600-px photo queries.")
    parser.add_argument("--recall-rows", type=int, default=10000, help="Synthetic vectors for the recall figure.")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Folder for bench.json and bench.md.")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # The ingest ratio compares the embedding chain with its own model: the recognition stages are
        # measured per model below.
        with EmbeddedPlatform(
            StoreSettings(uri=str(Path(tmp) / "bench.db")),
            service_settings=ServiceSettings(tenant="bench"),
            stages=["embedding", "indexer"],
            image_settings=ImageSettings(allow_file_uris=True),
        ) as platform:
            rss_rest = rss_mb()
            results["ingest"] = bench_ingest(platform, args.images)
            platform.ingest(photo_catalogue(), progress=False)
            results["search"] = bench_search(platform, args.queries)
            results["search_breakdown"] = bench_search_breakdown(platform, args.queries)
            results["memory"] = {"rss_after_model_load_mb": round(rss_rest, 0), "rss_peak_mb": round(rss_mb(), 0)}
            results["draft_decode"] = bench_draft_decode(platform)
            results["int8"] = bench_int8(platform)
        with EmbeddedPlatform(
            StoreSettings(uri=str(Path(tmp) / "recognition.db")),
            service_settings=ServiceSettings(tenant="bench"),
            image_settings=ImageSettings(allow_file_uris=True),
        ) as platform:
            results["recognition"] = bench_recognition(platform)
            # A catalogue for the blended search: the photos (bench_recognition indexed them through the five
            # stages) and Fashion-MNIST products, as the eval's fashion suite indexes them.
            platform.ingest(
                fashion_mnist("train", limit=args.blend_catalogue, offset=40000),
                progress=False,
                tenant="bench-chain",
                stages=FASHION_STAGES,
            )
            results["blend"] = bench_blend(platform, args.blend_passes, "bench-chain")
            results["memory"]["rss_peak_all_models_mb"] = round(rss_mb(), 0)
    results["milvus_lite_recall"] = bench_recall(args.recall_rows, 100)

    rows = [
        (
            "ingest: bare EfficientNet-Lite0 (preprocess + inference)",
            f"{results['ingest']['bare_model_img_per_s']} img/s",
        ),
        (
            "ingest: embedded pipeline (decode, embed, ConSE, Milvus Lite upsert)",
            f"{results['ingest']['pipeline_img_per_s']} img/s",
        ),
        ("ingest ratio pipeline / bare model", f"{results['ingest']['ratio_pipeline_to_bare']}"),
    ]
    for kind in ("image", "text"):
        s = results["search"][kind]
        rows += [
            (f"search by {kind}: p50 / p99", f"{s['p50_ms']} / {s['p99_ms']} ms"),
            (
                f"search by {kind}: bare encode p50 + bare ANN p50",
                f"{s['bare_encode_p50_ms']} + {s['bare_ann_p50_ms']} ms",
            ),
            (
                f"search by {kind}: ratio p50 / bare",
                f"{s['ratio_p50_to_bare']}" + (" (target <= 1.3)" if kind == "text" else ""),
            ),
        ]
    for kind in ("image", "text"):
        b = results["search_breakdown"][kind]
        steps = " + ".join(
            f"{n} {b[n]}"
            for n in ("decode", "preprocess", "inference", "ann", "ranking_and_api", "transport")
            if n in b
        )
        rows += [
            (f"search by {kind} over gRPC, p50 parts (ms)", f"{steps} = {b['grpc']} (p99 {b['grpc_p99']})"),
            (f"search by {kind} over gRPC / bare parts", f"{b['ratio_grpc_to_bare']}"),
        ]
    for kind in ("image", "text"):
        b = results["search_breakdown"][kind]
        rows.append(
            (
                f"search by {kind}: blended vs visual_only profile (no recognition services), p50",
                f"{b['in_process']} vs {b['in_process_vector_only']} ms (blend costs {b['blend_cost']} ms; "
                f"visual_only / bare parts {b['ratio_vector_only_to_bare']})",
            )
        )
    blend = results["blend"]
    rows += [
        (
            "search by image, 1600-px JPEG queries, all services: blended + understanding vs visual_only, p50",
            f"{blend['blended']['p50_ms']} vs {blend['visual_only']['p50_ms']} ms "
            f"(x{blend['ratio_p50_blended_to_visual_only']}; target <= 1.5)",
        ),
        (
            "search by image, 1600-px JPEG queries: blended p99 (target <= 200 ms) vs visual_only p99",
            f"{blend['blended']['p99_ms']} vs {blend['visual_only']['p99_ms']} ms (x{blend['ratio_p99_blended_to_visual_only']})",
        ),
        (
            "search by image, 1600-px JPEG queries: blended with the detector run on the query, p50 / p99",
            f"{blend['blended_object_detection']['p50_ms']} / {blend['blended_object_detection']['p99_ms']} ms "
            f"(x{blend['ratio_p50_object_detection_to_visual_only']} visual_only p50)",
        ),
        (
            "query signals of the blended searches (used / skipped)",
            "; ".join(f"{n} " + ", ".join(f"{k} {v}" for k, v in c.items()) for n, c in blend["signals"].items()),
        ),
    ]
    r = results["milvus_lite_recall"]
    rows += [
        (f"Milvus Lite recall@10 ({r['rows']} x {r['dim']}-d)", f"{r['recall_at_10']}"),
        ("Milvus Lite search p50 / p99", f"{r['search_p50_ms']} / {r['search_p99_ms']} ms"),
        ("Milvus Lite upsert", f"{r['insert_rows_per_s']:.0f} rows/s"),
        (
            "RSS after model load / peak",
            f"{results['memory']['rss_after_model_load_mb']:.0f} / {results['memory']['rss_peak_mb']:.0f} MB",
        ),
    ]
    for name, d in results["draft_decode"].items():
        rows.append(
            (
                f"JPEG decode {name} ({d['size'][0]}x{d['size'][1]} -> draft {d['draft_size'][0]}x{d['draft_size'][1]}), "
                "full vs draft p50",
                f"{d['full_p50_ms']} vs {d['draft_p50_ms']} ms (x{d['speedup']}; "
                f"embedding cosine {d['embedding_cosine']})",
            )
        )
    for name, q in results["int8"].items():
        rows.append(
            (
                f"int8 dynamic quantisation, {name}: fp32 vs int8 p50",
                f"{q['fp32_p50_ms']} vs {q['int8_p50_ms']} ms (x{q['speedup']}; cosine to fp32 min {q['cosine_min']}, "
                f"median {q['cosine_median']}; {q['size_mb'][0]} -> {q['size_mb'][1]} MB)",
            )
        )
    for name, figures in results["recognition"].items():
        if name != "chain":
            rows.append(
                (f"model latency per image: {name}, p50 / p90", f"{figures['p50_ms']} / {figures['p90_ms']} ms")
            )
    chain = results["recognition"]["chain"]
    rows += [
        (
            f"ingest through {len(chain['stages'])} stages ({chain['images']} real photos)",
            f"{chain['img_per_s']} img/s",
        ),
        ("RSS peak with every model loaded", f"{results['memory']['rss_peak_all_models_mb']:.0f} MB"),
    ]
    table = "| measurement | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    write_report(args.out, "bench", results, table)


if __name__ == "__main__":
    main()
