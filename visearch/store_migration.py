"""``visearch store migrate``: move a per_space catalogue (the Milvus 2.3 layout) into the unified layout.

Reads ``<prefix>_image`` page by page (a query iterator, primary key order), joins each page's joint and
colour vectors from ``<prefix>_joint`` and ``<prefix>_colour`` by primary key, and upserts one unified row
per image into ``<prefix>_items`` with its stored fields unchanged (``updated_ms`` included, so freshness
does not reset). Regions need nothing: both layouts keep ``<prefix>_region``.

Resumable: a page's images already in ``<prefix>_items`` are skipped, so a stopped run starts again where it
stopped. Verified at the end: row counts (images; images with a colour) and a sample of rows compared field
by field and vector by vector. Stop the writers (ingestion, attribute updates) while it runs: a write to
the old collections after its row was copied is not carried over.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from visearch.shared.config import StoreSettings
from visearch.shared.errors import ConfigError
from visearch.shared.logging import get_logger
from visearch.shared.store import OUTPUT_FIELDS, MilvusStore, literal

log = get_logger("store_migration")
_SCALARS = [*OUTPUT_FIELDS, "collection", "image_model"]


@dataclass
class MigrationReport:
    """What a migration did: ``rows`` old images, ``copied`` this run, ``skipped`` (copied by an earlier run),
    ``colour`` images with a colour vector, ``sampled`` rows compared and the ``mismatches`` found (pk: what)."""

    rows: int = 0
    copied: int = 0
    skipped: int = 0
    colour: int = 0
    sampled: int = 0
    mismatches: list[str] = field(default_factory=list)
    dropped: bool = False

    @property
    def verified(self) -> bool:
        """Counts equal and every sampled row identical."""
        return not self.mismatches


def migrate(
    settings: StoreSettings,
    batch_size: int = 500,
    samples: int = 50,
    drop_legacy: bool = False,
    on_page: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy every image of the per_space collections of ``settings.collection_prefix`` into the unified layout.

    Args:
        batch_size: images per page read and written.
        samples: rows compared field by field after the copy (0: counts only).
        drop_legacy: drop ``<prefix>_image``, ``_joint`` and ``_colour`` once verified (never when not).
        on_page: called with the number of images of each page done (a progress bar).

    Raises:
        ConfigError: there is no per_space catalogue under this prefix, or the server has no unified layout.
        DependencyUnavailableError: Milvus fails.
    """
    store = MilvusStore(settings.model_copy(update={"layout": "unified"}))
    legacy = MilvusStore.layout_collections(settings.collection_prefix, "per_space")
    client = store.client
    try:
        if not client.has_collection(legacy["image"]):
            raise ConfigError(f"no per_space catalogue to migrate: collection {legacy['image']} does not exist")
        report = MigrationReport()
        picked: list[str] = []
        rng = random.Random(0)
        iterator = client.query_iterator(
            collection_name=legacy["image"], batch_size=batch_size, filter="", output_fields=["pk", "vector", *_SCALARS]
        )
        try:
            while page := iterator.next():
                _copy_page(store, client, legacy, [dict(r) for r in page], report)
                for row in page:  # reservoir sample of the primary keys
                    report.rows += 1
                    if len(picked) < samples:
                        picked.append(row["pk"])
                    elif (slot := rng.randrange(report.rows)) < samples:
                        picked[slot] = row["pk"]
                if on_page:
                    on_page(len(page))
        finally:
            iterator.close()
        store.flush()
        _verify(store, client, legacy, picked, report)
        if drop_legacy and report.verified:
            for space in ("image", "joint", "colour"):
                client.drop_collection(legacy[space])
            report.dropped = True
        log.info(
            "store_migrated",
            rows=report.rows,
            copied=report.copied,
            skipped=report.skipped,
            verified=report.verified,
            dropped=report.dropped,
        )
        return report
    finally:
        store.close()


def _vectors_by_pk(client, collection: str, pks: list[str]) -> dict[str, list[float]]:
    rows = client.query(
        collection_name=collection,
        filter=f"pk in {literal(pks)}",
        output_fields=["pk", "vector"],
        consistency_level="Strong",
    )
    return {r["pk"]: r["vector"] for r in rows}


def _copy_page(store: MilvusStore, client, legacy: dict[str, str], page: list[dict], report: MigrationReport) -> None:
    pks = [r["pk"] for r in page]
    done = {
        r["pk"]
        for r in client.query(
            collection_name=store.collections["image"],
            filter=f"pk in {literal(pks)}",
            output_fields=["pk"],
            consistency_level="Strong",
        )
    }
    todo = [r for r in page if r["pk"] not in done]
    report.skipped += len(done)
    if not todo:
        return
    todo_pks = [r["pk"] for r in todo]
    joint = _vectors_by_pk(client, legacy["joint"], todo_pks)
    colour = _vectors_by_pk(client, legacy["colour"], todo_pks)
    missing = [pk for pk in todo_pks if pk not in joint]
    if missing:
        raise ConfigError(
            f"{len(missing)} images of {legacy['image']} have no joint vector in {legacy['joint']} "
            f"(e.g. {missing[0]}): the old catalogue is incomplete; reindex them"
        )
    data = [
        store.item_row({k: v for k, v in r.items() if k != "vector"}, r["vector"], joint[r["pk"]], colour.get(r["pk"]))
        for r in todo
    ]
    store.upsert_items(data)
    report.copied += len(data)


def _verify(store: MilvusStore, client, legacy: dict[str, str], picked: list[str], report: MigrationReport) -> None:
    """Compare counts and the sampled rows (every scalar field; each vector to float32 precision), reading the
    sample in one query per collection."""
    report.colour = _count(client, legacy["colour"])
    for what, old, new in (
        ("images", report.rows, store.count("image")),
        ("colours", report.colour, store.count("colour")),
    ):
        if old != new:
            report.mismatches.append(f"{what}: {old} in the old layout, {new} in the unified one")
    if not picked:
        return
    expr = f"pk in {literal(picked)}"
    old_rows = {
        r["pk"]: r
        for r in client.query(
            collection_name=legacy["image"],
            filter=expr,
            output_fields=["pk", "vector", *_SCALARS],
            consistency_level="Strong",
        )
    }
    old_vectors = {
        "image": {pk: r["vector"] for pk, r in old_rows.items()},
        "joint": _vectors_by_pk(client, legacy["joint"], picked),
        "colour": _vectors_by_pk(client, legacy["colour"], picked),
    }
    new_rows = {
        r["pk"]: r
        for r in client.query(
            collection_name=store.collections["image"],
            filter=expr,
            output_fields=["pk", *_SCALARS, "image", "joint", "colour", "has_colour"],
            consistency_level="Strong",
        )
    }
    for pk in picked:
        old, new = old_rows[pk], new_rows.get(pk)
        if new is None:
            report.mismatches.append(f"{pk}: missing")
            continue
        differ = [f for f in OUTPUT_FIELDS if old[f] != new[f]]
        for space, vectors in old_vectors.items():
            has = new["has_colour"] if space == "colour" else True
            if (pk in vectors) != has or (has and not np.allclose(new[space], vectors[pk], atol=1e-6)):
                differ.append(f"{space} vector")
        if differ:
            report.mismatches.append(f"{pk}: {', '.join(differ)} differ")
        report.sampled += 1


def _count(client, collection: str) -> int:
    rows = client.query(collection_name=collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])
