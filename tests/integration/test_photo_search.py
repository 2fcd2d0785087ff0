"""Search by image and by text over real photos, with the real models and Milvus Lite."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.integration.conftest import jpeg_bytes
from visearch.v1 import common_pb2, search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

# Transformations an uploaded copy of a catalogue photo typically went through.
TRANSFORMS = {
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
    "resize": lambda im: im.resize((im.width // 3, im.height // 3)),
    "jpeg_q40": lambda im: Image.open(io.BytesIO(jpeg_bytes(im, quality=40))),
    "rotate_7deg": lambda im: im.rotate(7, resample=Image.BILINEAR, fillcolor=(255, 255, 255)),
    "all_combined": lambda im: (
        im.crop((im.width // 12, 0, im.width, im.height * 11 // 12))
        .resize((im.width // 2, im.height // 2))
        .rotate(4, resample=Image.BILINEAR)
    ),
}
QUERY_PHOTOS = [
    "photo-dog",
    "photo-coffee",
    "photo-chelsea",
    "photo-astronaut",
    "photo-china",
    "photo-eagle",
    "photo-horses",
    "photo-rocket",
]


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("image_id", QUERY_PHOTOS)
def test_transformed_copy_retrieves_original_at_rank_1(photo_platform, photos, image_id, transform):
    """A cropped / resized / re-encoded / rotated copy of a photo finds the original first."""
    original = next(p for p in photos if p.image_id == image_id)
    query = TRANSFORMS[transform](Image.open(io.BytesIO(original.read_bytes())).convert("RGB"))
    request = search_pb2.SearchRequest(image=common_pb2.Image(content=jpeg_bytes(query)), top_k=3)
    hits = photo_platform.search.Search(request, None).hits
    assert hits[0].image_id == image_id, [(h.image_id, round(h.score, 3)) for h in hits]
    assert hits[0].factors[0].name == "visual"
    assert hits[0].score > hits[1].score


# (query, expected image, max rank). The two the issue names, and more we tried; measured ranks are
# recorded in docs/quality.md.
TEXT_QUERIES = [
    ("dog", "photo-dog", 3),
    ("coffee", "photo-coffee", 3),
    ("a cup of coffee", "photo-coffee", 1),
    ("cat", "photo-chelsea", 1),
    ("a rocket", "photo-rocket", 1),
    ("motorcycle", "photo-motorcycle", 1),
    ("flower", "photo-flower", 1),
    ("eagle", "photo-eagle", 1),
    ("horse", "photo-horses", 1),
    ("giraffe", "photo-giraffe", 1),
]


@pytest.mark.parametrize(("text", "expected", "max_rank"), TEXT_QUERIES)
def test_text_query_ranks_matching_photo(photo_platform, text, expected, max_rank):
    """A text query ranks the photo that shows it within ``max_rank`` (the joint ConSE space and the text's
    image-space vector: both factors score the hit)."""
    hits = photo_platform.search.Search(search_pb2.SearchRequest(text=text, top_k=10), None).hits
    ranked = [h.image_id for h in hits]
    rank = ranked.index(expected) + 1 if expected in ranked else None
    print(f"text query {text!r}: {expected} at rank {rank}; top 3 {ranked[:3]}")
    assert rank is not None and rank <= max_rank, f"{expected} at rank {rank}; got {ranked[:5]}"
    assert {"text", "visual"} <= {f.name for f in hits[0].factors}


def test_more_like_this_excludes_the_query_item(photo_platform):
    """Search by indexed id returns other images, never the query item itself."""
    hits = photo_platform.search.Search(search_pb2.SearchRequest(image_id="photo-dog", top_k=5), None).hits
    assert len(hits) == 5
    assert "photo-dog" not in [h.image_id for h in hits]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_filters_and_pagination(photo_platform):
    """Category filter keeps only that category; offset pages continue the same ranking."""
    animals = photo_platform.search.Search(
        search_pb2.SearchRequest(text="an animal", top_k=20, filter=search_pb2.Filter(categories=["animals"])), None
    ).hits
    assert animals and {h.category for h in animals} == {"animals"}
    page1 = photo_platform.search.Search(search_pb2.SearchRequest(text="an animal", top_k=3), None).hits
    page2 = photo_platform.search.Search(search_pb2.SearchRequest(text="an animal", top_k=3, offset=3), None).hits
    both = photo_platform.search.Search(search_pb2.SearchRequest(text="an animal", top_k=6), None).hits
    assert [h.image_id for h in list(page1) + list(page2)] == [h.image_id for h in both]


def test_a_changed_title_is_found_by_keyword_on_the_next_query(built_models, photos, tmp_path):
    """The unified store layout (Milvus Lite 3 here) does BM25 in Milvus: a title changed by an attribute update
    is found by the very next text query, its BM25 factor showing, with no index to rebuild in the process."""
    from tests.integration.conftest import LOCAL_FILES
    from visearch.embedded import EmbeddedPlatform
    from visearch.shared.config import ServiceSettings, StoreSettings

    chosen = [p for p in photos if p.image_id in ("photo-dog", "photo-coffee", "photo-rocket")]
    with EmbeddedPlatform(
        StoreSettings(uri=str(tmp_path / "fresh.db")),
        service_settings=ServiceSettings(tenant="f"),
        image_settings=LOCAL_FILES,
    ) as platform:
        platform.ingest(chosen, progress=False)
        assert platform.store.full_text and platform.search.text_index is None
        assert platform.store.update_attributes("f", "photo-rocket", {"title": "vintage quokkaphone"})
        hits = platform.search.Search(search_pb2.SearchRequest(text="quokkaphones", top_k=3), None).hits
        assert hits[0].image_id == "photo-rocket" and hits[0].title == "vintage quokkaphone"
        assert {f.name: f.value for f in hits[0].factors}["bm25"] == pytest.approx(1.0)
