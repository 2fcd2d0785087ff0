#!/usr/bin/env python3
"""Exercise every MilvusClient call that visearch.shared.store uses against a running Milvus server.

Run it with the PROJECT's interpreter (pymilvus 2.6), not the server's venv:

    .venv/bin/python deploy/milvus/check_compat.py [--uri http://127.0.0.1:19530] [--keep]

Each call is reported as OK or FAIL with the exact exception text; the exit status is the number of
failed calls. The collection (``visearch_compat_check``) is dropped at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus import __version__ as pymilvus_version

DIM = 1280
results: list[tuple[str, bool, str]] = []


def step(name: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # report, do not stop: later calls may still work
        ms = (time.perf_counter() - t0) * 1000
        msg = f"{type(exc).__name__}: {exc}"
        results.append((name, False, msg))
        print(f"FAIL {name} ({ms:.1f} ms): {msg}", flush=True)
        if os.environ.get("CHECK_TRACEBACK"):
            traceback.print_exc()
        return None
    ms = (time.perf_counter() - t0) * 1000
    shown = repr(out)
    results.append((name, True, shown))
    print(f"OK   {name} ({ms:.1f} ms): {shown[:300]}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", default=os.environ.get("VISEARCH_MILVUS_URI", "http://127.0.0.1:19530"))
    parser.add_argument("--collection", default="visearch_compat_check")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = args.collection
    print(f"pymilvus {pymilvus_version}, server {args.uri}")

    client = MilvusClient(uri=args.uri)
    print(f"server version: {step('get_server_version', client.get_server_version)}")
    if client.has_collection(name):
        client.drop_collection(name)

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=640)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tenant", DataType.VARCHAR, max_length=64)
    schema.add_field("category", DataType.VARCHAR, max_length=256)
    schema.add_field("image_id", DataType.VARCHAR, max_length=512)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("in_stock", DataType.BOOL)
    schema.add_field("updated_ms", DataType.INT64)
    index = client.prepare_index_params()
    # The store's default index (StoreSettings.index_type): HNSW with its build parameters.
    index.add_index(
        field_name="vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200}
    )
    step(
        "create_collection(schema, index_params HNSW/COSINE)",
        client.create_collection,
        collection_name=name,
        schema=schema,
        index_params=index,
    )
    step("has_collection", client.has_collection, name)
    step("describe_index", client.describe_index, collection_name=name, index_name="vector")
    step("load_collection", client.load_collection, name)

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((40, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = [
        {
            "pk": f"a/img{i}",
            "vector": vecs[i].tolist(),
            "tenant": "a" if i < 30 else "b",
            "category": ["x", "y", "z"][i % 3],
            "image_id": f"img{i}",
            "price": float(i),
            "in_stock": i % 2 == 0,
            "updated_ms": int(time.time() * 1000),
        }
        for i in range(40)
    ]
    up = step("upsert(40 rows)", client.upsert, collection_name=name, data=rows)
    if up is None:
        step("insert(40 rows) [fallback]", client.insert, collection_name=name, data=rows)
    step("upsert(same 40 rows again, idempotent)", client.upsert, collection_name=name, data=rows)

    flt = 'tenant == "a" and in_stock == true and price >= 1.0 and category in ["x","y"]'
    expected = sorted(f"img{i}" for i in range(1, 30) if i % 2 == 0 and i % 3 in (0, 1))
    out_fields = ["image_id", "tenant", "category", "price", "in_stock"]
    # Reads exactly as visearch.shared.store issues them (collection default consistency), right after the
    # writes, then again with consistency_level="Strong".
    for label, extra in (("default consistency", {}), ("Strong", {"consistency_level": "Strong"})):
        print(f"--- reads right after the writes, {label}")
        res = step(
            f"search(filter=..., {label})",
            client.search,
            collection_name=name,
            data=[vecs[4].tolist()],
            filter=flt,
            limit=20,
            output_fields=out_fields,
            search_params={"metric_type": "COSINE"},
            **extra,
        )
        if res is not None:
            got_ids = sorted(h["entity"]["image_id"] for h in res[0])
            print(
                f"     {len(got_ids)} hits, filter exact: {got_ids == expected}; best: "
                f"{[(h['entity']['image_id'], round(float(h['distance']), 4)) for h in res[0][:3]]}"
            )
        res0 = step(
            f"search(search_params={{metric_type: COSINE, offset: 0, ef: 128}}, {label})",
            client.search,
            collection_name=name,
            data=[vecs[4].tolist()],
            filter='tenant == "a"',
            limit=5,
            output_fields=out_fields,
            search_params={"metric_type": "COSINE", "offset": 0, "params": {"ef": 128}},
            **extra,
        )
        res2 = step(
            f"search(search_params={{metric_type: COSINE, offset: 2, ef: 128}}, {label})",
            client.search,
            collection_name=name,
            data=[vecs[4].tolist()],
            filter='tenant == "a"',
            limit=5,
            output_fields=out_fields,
            search_params={"metric_type": "COSINE", "offset": 2, "params": {"ef": 128}},
            **extra,
        )
        if res0 is not None and res2 is not None:
            ids0 = [h["entity"]["image_id"] for h in res0[0]]
            ids2 = [h["entity"]["image_id"] for h in res2[0]]
            print(
                f"     offset 0: {ids0}\n     offset 2: {ids2} (offset honoured: {bool(ids0) and ids2[:3] == ids0[2:5]})"
            )
        got = step(
            f"get(ids, output_fields incl. vector, {label})",
            client.get,
            collection_name=name,
            ids=["a/img1", "a/img2"],
            output_fields=[*out_fields, "vector"],
            **extra,
        )
        if got is not None:
            print("     got:", [(g["image_id"], len(g["vector"])) for g in got])
        step(
            f"query(filter='', output_fields=['count(*)'], {label})",
            client.query,
            collection_name=name,
            filter="",
            output_fields=["count(*)"],
            **extra,
        )
        step(
            f"query(filter='tenant == \"a\"', output_fields=['count(*)'], {label})",
            client.query,
            collection_name=name,
            filter='tenant == "a"',
            output_fields=["count(*)"],
            **extra,
        )

    step("delete(ids)", client.delete, collection_name=name, ids=["a/img1", "a/img2"])
    step(
        "get(deleted ids), default consistency",
        client.get,
        collection_name=name,
        ids=["a/img1", "a/img2"],
        output_fields=["image_id"],
    )
    step(
        "get(deleted ids), Strong",
        client.get,
        collection_name=name,
        ids=["a/img1", "a/img2"],
        output_fields=["image_id"],
        consistency_level="Strong",
    )
    step(
        "query(count(*)) after delete, Strong",
        client.query,
        collection_name=name,
        filter="",
        output_fields=["count(*)"],
        consistency_level="Strong",
    )

    # How long until a fresh write is visible to a default-consistency read (the store's behaviour)?
    probe = {**rows[0], "pk": "a/visibility-probe", "image_id": "visibility-probe"}
    client.upsert(collection_name=name, data=[probe])
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 15:
        if client.get(collection_name=name, ids=["a/visibility-probe"], output_fields=["image_id"]):
            print(f"a new row became visible to default-consistency get() after {time.perf_counter() - t0:.2f} s")
            break
        time.sleep(0.05)
    else:
        print("a new row was NOT visible to default-consistency get() within 15 s")
    step("get_collection_stats", client.get_collection_stats, name)
    step("describe_collection (consistency_level)", lambda: client.describe_collection(name).get("consistency_level"))

    # latency of the store's search call shape, on a warm collection
    lat = []
    for i in range(50):
        t0 = time.perf_counter()
        client.search(
            collection_name=name,
            data=[vecs[i % 40].tolist()],
            filter='tenant == "a"',
            limit=10,
            output_fields=out_fields,
            search_params={"metric_type": "COSINE"},
        )
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    print(f"search latency over 50 calls: p50 {lat[25]:.2f} ms, p90 {lat[45]:.2f} ms, max {lat[-1]:.2f} ms")

    if not args.keep:
        step("drop_collection", client.drop_collection, name)
    step("close", client.close)
    failed = [r for r in results if not r[1]]
    print(f"\n{len(results) - len(failed)} OK, {len(failed)} FAILED")
    for n, _, msg in failed:
        print(f"  FAILED {n}: {msg}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
