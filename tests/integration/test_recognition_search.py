"""Recognition through the whole ingest chain (detection -> embedding -> ocr -> classification ->
indexer) on real photos, and the searches it enables: by region, by the query's objects, by colour,
exact match, near-duplicates flagged at ingest, open-ended tags, moderation filter.

Embedded mode: the same stage and service classes as the services, one process, Milvus Lite.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.integration.conftest import LOCAL_FILES, jpeg_bytes
from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import CatalogueItem
from visearch.shared.config import ServiceSettings, StoreSettings
from visearch.v1 import common_pb2, events_pb2, search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

TENANT = "rec"
ALL_STAGES = ["detection", "embedding", "ocr", "classification", "indexer"]


def _copy(
    item: CatalogueItem, image_id: str, crop: float = 0.9, scale: float = 0.6, quality: int = 60
) -> CatalogueItem:
    """A cropped (centre ``crop`` of each side), rescaled, JPEG re-encoded copy of a photo."""
    img = Image.open(io.BytesIO(item.read_bytes())).convert("RGB")
    w, h = img.size
    dx, dy = int(w * (1 - crop) / 2), int(h * (1 - crop) / 2)
    img = img.crop((dx, dy, w - dx, h - dy))
    img = img.resize((int(img.width * scale), int(img.height * scale)))
    return CatalogueItem(image_id=image_id, content=jpeg_bytes(img, quality), title=f"copy of {item.title}")


@pytest.fixture(scope="module")
def platform(built_models, photos, tmp_path_factory):
    """The photo catalogue through the five-stage chain, then a near-duplicate copy of the cat photo."""
    db = tmp_path_factory.mktemp("recognition") / "rec.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)),
        service_settings=ServiceSettings(tenant=TENANT),
        stages=ALL_STAGES,
        image_settings=LOCAL_FILES,
    ) as p:
        report = p.ingest(photos, progress=False)
        assert report.indexed == len(photos) and not report.failed, report.failed
        chelsea = next(i for i in photos if i.image_id == "photo-chelsea")
        report = p.ingest([_copy(chelsea, "chelsea-copy")], progress=False)
        assert report.indexed == 1
        yield p


def by_id(photos, image_id):
    return next(p for p in photos if p.image_id == image_id)


def best_regions(platform, image_id: str) -> dict[str, dict]:
    """The highest-scored stored region of each label of an image (region indices follow detection score)."""
    best: dict[str, dict] = {}
    for region in platform.store.regions(TENANT, image_id):
        best.setdefault(region["label"], region)
    return best


def test_ingest_stores_recognition_results(platform):
    """The dog photo's row carries objects, taxonomy, moderation, a pHash, a colour vector and its regions."""
    row = platform.store.get(TENANT, "photo-dog")
    tags = row["tags"].split(";")
    assert {"dog", "bicycle"} <= set(tags), tags
    assert row["taxonomy"] and row["safe"] is True and row["phash"] != 0
    assert platform.store.get(TENANT, "photo-dog", "colour") is not None
    labels = [r["label"] for r in platform.store.regions(TENANT, "photo-dog")]
    assert "dog" in labels and "bicycle" in labels, labels


def test_region_search_finds_the_photo_and_the_matching_region(platform, photos):
    """A crop of one object of a multi-object photo retrieves that photo, matched through that object's region."""
    bicycle = best_regions(platform, "photo-dog")["bicycle"]
    img = Image.open(io.BytesIO(by_id(photos, "photo-dog").read_bytes())).convert("RGB")
    crop = img.crop(tuple(int(v) for v in bicycle["box"]))
    request = search_pb2.SearchRequest(image=common_pb2.Image(content=jpeg_bytes(crop, 85)), top_k=3, tenant=TENANT)
    hits = platform.search.Search(request, None).hits
    assert hits[0].image_id == "photo-dog", [(h.image_id, h.score) for h in hits]
    assert hits[0].HasField("region") and hits[0].region.label == "bicycle"
    assert hits[0].region.index == bicycle["region_index"]
    assert {f.name for f in hits[0].factors} >= {"visual", "region"}


def test_region_box_of_the_query_and_query_objects(platform, photos):
    """A box of the query image searches with that crop; QUERY_OBJECTS searches with each detected object."""
    x1, y1, x2, y2 = best_regions(platform, "photo-dog")["dog"]["box"]
    dog = common_pb2.Image(content=by_id(photos, "photo-dog").read_bytes())
    request = search_pb2.SearchRequest(
        image=dog, region=common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2), top_k=3, tenant=TENANT
    )
    top = platform.search.Search(request, None).hits[0]
    assert top.image_id == "photo-dog" and top.region.label == "dog" and top.region.query_box.x2 == pytest.approx(x2)
    request = search_pb2.SearchRequest(
        image=dog, region_mode=search_pb2.REGION_MODE_QUERY_OBJECTS, top_k=3, tenant=TENANT
    )
    top = platform.search.Search(request, None).hits[0]
    assert top.image_id == "photo-dog" and top.region.query_label in {"dog", "bicycle", "truck", "car"}
    # Found through the query's objects: the region factor is there (the blend adds the others).
    assert "region" in {f.name for f in top.factors}


def test_near_duplicate_is_flagged_at_ingest(platform):
    """The cropped, rescaled, re-encoded copy is marked as a duplicate of the original; originals are not."""
    assert platform.store.get(TENANT, "chelsea-copy")["duplicate_of"] == "photo-chelsea"
    assert platform.store.get(TENANT, "photo-coffee")["duplicate_of"] == ""


def test_similar_to_exact_only(platform, photos):
    """SimilarTo(exact_only) returns the verified copy first with an "exact" factor, and nothing unrelated."""
    request = search_pb2.SimilarToRequest(image_id="photo-chelsea", exact_only=True, top_k=5, tenant=TENANT)
    hits = platform.search.SimilarTo(request, None).hits
    assert [h.image_id for h in hits] == ["chelsea-copy"], [(h.image_id, h.score) for h in hits]
    assert {f.name: f.value for f in hits[0].factors}["exact"] > 0.25
    request = search_pb2.SimilarToRequest(image_id="photo-coffee", exact_only=True, top_k=5, tenant=TENANT)
    assert list(platform.search.SimilarTo(request, None).hits) == []
    # Without exact_only it is "more like this".
    request = search_pb2.SimilarToRequest(image_id="photo-coffee", top_k=5, tenant=TENANT)
    assert len(platform.search.SimilarTo(request, None).hits) == 5


def test_colour_search_by_palette_and_by_image(platform, photos):
    """A red palette ranks a red photo first among the catalogue; an image's own colours find it first."""
    request = search_pb2.SearchRequest(top_k=3, tenant=TENANT)
    request.colour.palette.colours.add(colour="#d02020", weight=1.0)
    hits = platform.search.Search(request, None).hits
    assert hits[0].factors[0].name == "colour"
    rows = [platform.store.get(TENANT, h.image_id) for h in hits]
    assert any("red" in (r["tags"] or "") for r in rows[:1]), [(h.image_id, r["tags"]) for h, r in zip(hits, rows)]
    request = search_pb2.SearchRequest(top_k=1, tenant=TENANT)
    request.colour.image_id = "photo-flower"
    assert platform.search.Search(request, None).hits[0].image_id == "photo-flower"


def test_moderation_filter(platform, photos):
    """Every real photo is judged safe: the unsafe filter finds nothing, the safe one finds them."""
    unsafe = search_pb2.SearchRequest(text="photo", top_k=50, tenant=TENANT, filter=search_pb2.Filter(safe=False))
    assert list(platform.search.Search(unsafe, None).hits) == []
    safe = search_pb2.SearchRequest(text="photo", top_k=50, tenant=TENANT, filter=search_pb2.Filter(safe=True))
    assert len(platform.search.Search(safe, None).hits) == len(photos) + 1


def test_tag_returns_phrases_and_model_tags(platform, photos):
    """Tag aggregates phrases from the visual neighbours' linked text (here: crops of the cat photo whose
    titles share "tabby cat", among the other photos) and returns the image's stored model tags."""
    tenant = "tags"
    chelsea = by_id(photos, "photo-chelsea")
    titles = ("tabby cat asleep on a rug", "a grey tabby cat, close up", "tabby cat portrait | free shipping")
    items = [_copy(chelsea, f"cat-{i}", crop=0.8 - 0.1 * i, scale=0.5) for i in range(len(titles))]
    for item, title in zip(items, titles):
        item.title = title
    others = [p for p in photos if p.image_id != "photo-chelsea"]
    assert platform.ingest([*items, *others], progress=False, tenant=tenant).indexed == len(items) + len(others)
    platform.store.flush()
    chelsea_copy = _copy(chelsea, "query-cat", crop=0.95, scale=0.7)
    assert platform.ingest([chelsea_copy], progress=False, tenant=tenant).indexed == 1
    response = platform.search.Tag(
        search_pb2.TagRequest(image_id="query-cat", tenant=tenant, neighbours=5, top_n=5), None
    )
    assert response.neighbours_used == 5
    phrases = [(p.value, round(p.score, 2)) for p in response.phrases]
    assert phrases and phrases[0][0] == "tabby cat", phrases
    assert all("shipping" not in p for p, _ in phrases)  # boilerplate is filtered
    assert {a.name for a in response.model_tags} >= {"category", "colour", "moderation"}


def test_text_search_reads_ocr_text_and_objects(platform, photos):
    """The indexed joint vector carries OCR text and detected objects: a word painted on a photo of a
    temple makes it the first hit for that word, ahead of every photo without it."""
    from PIL import ImageDraw, ImageFont

    tenant = "signs"
    china = Image.open(io.BytesIO(by_id(photos, "photo-china").read_bytes())).convert("RGB")
    draw = ImageDraw.Draw(china)
    draw.rectangle((40, 40, 420, 130), fill=(250, 250, 250))
    draw.text(
        (60, 50),
        "PIZZA",
        font=ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 64),
        fill=(200, 20, 20),
    )
    sign = CatalogueItem(image_id="china-pizza-sign", content=jpeg_bytes(china, 92))
    items = [by_id(photos, i) for i in ("photo-china", "photo-coffee", "photo-dog", "photo-chelsea", "photo-flower")]
    assert platform.ingest([*items, sign], progress=False, tenant=tenant).indexed == len(items) + 1
    assert "PIZZA" in platform.store.get(tenant, "china-pizza-sign")["ocr_text"]
    hits = platform.search.Search(search_pb2.SearchRequest(text="pizza", top_k=3, tenant=tenant), None).hits
    assert hits[0].image_id == "china-pizza-sign", [(h.image_id, h.score) for h in hits]
    hits = platform.search.Search(search_pb2.SearchRequest(text="a bicycle", top_k=2, tenant=tenant), None).hits
    assert hits[0].image_id == "photo-dog", [(h.image_id, h.score) for h in hits]  # its detected bicycle


def test_shorter_chain_for_thumbnails(platform):
    """A catalogue ingested through embedding -> classification -> indexer gets colours, taxonomy and
    moderation but no regions, and does not replay the main chain's events (the photos keep theirs)."""
    from visearch.offline.datasets import fashion_mnist

    before = len(platform.store.regions(TENANT, "photo-dog"))
    items = list(fashion_mnist("test", limit=5))
    report = platform.ingest(items, progress=False, tenant="thumbs", stages=["embedding", "classification", "indexer"])
    assert report.indexed == 5 and not report.failed
    row = platform.store.get("thumbs", items[0].image_id)
    assert row["attributes"] and platform.store.get("thumbs", items[0].image_id, "colour") is not None
    assert platform.store.regions("thumbs", items[0].image_id) == []
    assert len(platform.store.regions(TENANT, "photo-dog")) == before > 0


def test_attribute_update_and_delete_reach_every_collection(platform):
    """An attribute update rewrites regions and colour rows too; a delete removes them."""
    event = events_pb2.ImageEvent(
        image_id="photo-dog",
        kind=events_pb2.ImageEvent.KIND_ATTRIBUTE_UPDATE,
        tenant=TENANT,
        product=events_pb2.Product(in_stock=False, price=12.5),
    )
    platform.publish(event)
    for worker in platform.workers:
        worker.drain()
    assert all(r["in_stock"] is False and r["price"] == 12.5 for r in platform.store.regions(TENANT, "photo-dog"))
    assert platform.store.get(TENANT, "photo-dog", "colour")["in_stock"] is False
    assert len(platform.store.regions(TENANT, "photo-dog")) >= 2  # vectors kept
    platform.publish(events_pb2.ImageEvent(image_id="photo-dog", kind=events_pb2.ImageEvent.KIND_DELETE, tenant=TENANT))
    for worker in platform.workers:
        worker.drain()
    assert platform.store.get(TENANT, "photo-dog") is None
    assert platform.store.get(TENANT, "photo-dog", "colour") is None
    assert platform.store.regions(TENANT, "photo-dog") == []
