"""The blended ranker on real models and images (embedded mode, Milvus Lite): BM25 and joint-space routes,
query understanding (a query image's OCR text and tags), profile overrides and RRF, out-of-stock
alternatives, and the feedback topic (impressions logged with their factors, Feedback clicks)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.integration.conftest import LOCAL_FILES, jpeg_bytes
from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import CatalogueItem, fashion_mnist
from visearch.shared.config import ServiceSettings, StoreSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.transport import feedback_topic
from visearch.v1 import common_pb2, events_pb2, search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

TENANT = "rank"
FASHION = 240


def _text_image(text: str, size=(640, 200)) -> bytes:
    """Black text on white, large enough for the OCR detector."""
    img = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=96)
    ImageDraw.Draw(img).text((30, 40), text, fill="black", font=font)
    return jpeg_bytes(img, 95)


@pytest.fixture(scope="module")
def platform(built_models, photos, tmp_path_factory):
    """Fashion-MNIST items (every 5th out of stock) and the photos, through embedding, OCR, classification
    and the indexer; plus one product whose only link to the word "zanzibar" is its title."""
    db = tmp_path_factory.mktemp("ranking") / "rank.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)),
        service_settings=ServiceSettings(tenant=TENANT),
        stages=["embedding", "ocr", "classification", "indexer"],
        image_settings=LOCAL_FILES,
    ) as p:
        coffee = next(i for i in photos if i.image_id == "photo-coffee")
        items = [
            *fashion_mnist("train", limit=FASHION),
            *photos,
            CatalogueItem(
                image_id="zanzibar-mug",
                content=coffee.read_bytes(),
                title="Zanzibar limited edition mug",
                category="mug",
                in_stock=True,
            ),
        ]
        report = p.ingest(items, progress=False)
        assert report.indexed == len(items) and not report.failed, report.failed
        yield p


def _search(p, **kwargs) -> search_pb2.SearchResponse:
    return p.search.Search(search_pb2.SearchRequest(tenant=TENANT, **kwargs), None)


def test_bm25_route_finds_what_only_the_linked_text_says(platform):
    """ "zanzibar" means nothing to the image models; BM25 over titles finds the item, visual-only cannot."""
    blended = _search(platform, text="zanzibar", top_k=5)
    assert blended.hits[0].image_id == "zanzibar-mug" and blended.ranker == "profile:blended"
    factors = {f.name: f for f in blended.hits[0].factors}
    assert factors["bm25"].value == pytest.approx(1.0) and factors["bm25"].contribution > 0
    assert blended.hits[0].score == pytest.approx(sum(f.contribution for f in blended.hits[0].factors), abs=1e-5)
    vector_only = _search(platform, text="zanzibar", top_k=5, ranking=search_pb2.RankingProfile(name="visual_only"))
    assert vector_only.ranker == "profile:visual_only"
    assert "zanzibar-mug" not in [h.image_id for h in vector_only.hits[:1]]
    # visual_only weighs the vector factors only: the joint space ("text") and the text's image-space vector
    assert all({f.name for f in h.factors} <= {"text", "visual"} for h in vector_only.hits)


def test_text_query_blend_beats_vector_only_on_category_words(platform):
    """Fashion-MNIST titles name the category: the blend's BM25 and tag factors make a category word
    retrieve that category (precision@10), where the ConSE joint space alone is weaker at 28 px."""
    precision = {}
    for profile in ("visual_only", "blended"):
        hits = _search(platform, text="trouser", top_k=10, ranking=search_pb2.RankingProfile(name=profile)).hits
        precision[profile] = sum(h.category == "trouser" for h in hits) / 10
    assert precision["blended"] == 1.0 and precision["blended"] > precision["visual_only"], precision


def test_weights_override_and_rrf(platform):
    """A request's weights override the profile's (0 switches a factor off); RRF scores by ranks."""
    off = _search(platform, text="zanzibar", top_k=5, ranking=search_pb2.RankingProfile(weights={"bm25": 0.0}))
    assert off.ranker == "profile:blended+override"
    assert all(f.contribution == 0.0 for h in off.hits for f in h.factors if f.name == "bm25")
    # RRF of the joint-space, image-space and BM25 lists: the only BM25 match ranks 1 there and has a joint
    # cosine too.
    rrf = _search(
        platform,
        text="zanzibar",
        top_k=5,
        ranking=search_pb2.RankingProfile(name="visual_only", weights={"bm25": 1.0}, fusion=search_pb2.FUSION_RRF),
    )
    assert rrf.hits[0].image_id == "zanzibar-mug" and rrf.ranker == "profile:visual_only+override"
    top = {f.name: f.contribution for f in rrf.hits[0].factors}
    assert top["bm25"] == pytest.approx(1 / 61) and 0 < top["text"] <= 1 / 61
    assert all(0 < h.score <= 3 / 61 for h in rrf.hits)  # at most rank 1 in each of the three lists
    with pytest.raises(InvalidEventError):
        _search(platform, text="x", ranking=search_pb2.RankingProfile(weights={"popularity": 1.0}))
    with pytest.raises(InvalidEventError):
        _search(platform, text="x", ranking=search_pb2.RankingProfile(name="no-such-profile"))


def test_query_understanding_reads_the_query_image_text(platform):
    """An image of the word "ZANZIBAR": its OCR text drives the BM25 route to the item with that title,
    which looks nothing like it; without query understanding it is not found."""
    image = common_pb2.Image(content=_text_image("ZANZIBAR"))
    understood = _search(platform, image=image, top_k=5)
    assert understood.hits[0].image_id == "zanzibar-mug"
    assert {f.name for f in understood.hits[0].factors} >= {"visual", "bm25"}
    plain = _search(platform, image=image, top_k=5, understand_query=False)
    assert "zanzibar-mug" not in [h.image_id for h in plain.hits]


def test_image_query_tags_and_taxonomy_factors(platform, photos):
    """A photo query's own tags and taxonomy path (classification) become factors of the hits."""
    dog = next(p for p in photos if p.image_id == "photo-dog")
    top = _search(platform, image=common_pb2.Image(content=dog.read_bytes()), top_k=3).hits[0]
    factors = {f.name: f.value for f in top.factors}
    assert top.image_id == "photo-dog"
    assert (
        factors["tags"] > 0.5 and factors["taxonomy"] == pytest.approx(1.0) and factors["phash"] == pytest.approx(1.0)
    )


def test_alternatives_are_in_stock_and_in_the_same_taxonomy_node(platform):
    """Out-of-stock items get in-stock alternatives from their own taxonomy node (or category when the
    classifier gave no path), visually closest first with visual weights only; never the item itself."""
    out_of_stock = [i for i in fashion_mnist("train", limit=FASHION) if not i.in_stock][:12]
    served = 0
    for item in out_of_stock:
        row = platform.store.get(TENANT, item.image_id)
        response = platform.search.Alternatives(
            search_pb2.AlternativesRequest(
                image_id=item.image_id,
                tenant=TENANT,
                top_k=10,
                ranking=search_pb2.RankingProfile(name="visual_only", weights={"text": 0.0}),
            ),
            None,
        )
        served += bool(response.hits)
        for hit in response.hits:
            assert hit.in_stock and hit.image_id != item.image_id
            if row["taxonomy"]:
                assert hit.taxonomy == row["taxonomy"]
            else:
                assert hit.category == row["category"]
        visual = [next(f.value for f in h.factors if f.name == "visual") for h in response.hits]
        assert visual == sorted(visual, reverse=True)
    assert served >= len(out_of_stock) - 2, served
    with pytest.raises(InvalidEventError):
        platform.search.Alternatives(search_pb2.AlternativesRequest(tenant=TENANT), None)


def test_impressions_and_feedback_reach_the_feedback_topic(platform):
    """Each served hit is logged as an impression with its factor values; Feedback publishes clicks keyed
    by query_id; a click without image_id is refused whole."""
    topic = feedback_topic()
    before = len(platform.transport.messages(topic))
    response = _search(platform, text="sneaker", top_k=4)
    logged = [events_pb2.FeedbackEvent.FromString(m.value) for m in platform.transport.messages(topic)[before:]]
    assert [e.image_id for e in logged] == [h.image_id for h in response.hits]
    assert all(
        e.query_id == response.query_id and e.action == events_pb2.FeedbackEvent.ACTION_IMPRESSION for e in logged
    )
    assert dict(logged[0].factors) == pytest.approx({f.name: f.value for f in response.hits[0].factors})
    assert logged[2].position == 2 and logged[0].query == "text:sneaker" and logged[0].ranker == "profile:blended"
    click = events_pb2.FeedbackEvent(
        query_id=response.query_id,
        image_id=response.hits[1].image_id,
        position=1,
        action=events_pb2.FeedbackEvent.ACTION_CLICK,
    )
    assert platform.search.Feedback(search_pb2.FeedbackRequest(events=[click]), None).accepted == 1
    message = platform.transport.messages(topic)[-1]
    stored = events_pb2.FeedbackEvent.FromString(message.value)
    assert message.key == response.query_id.encode() and stored.action == events_pb2.FeedbackEvent.ACTION_CLICK
    assert stored.tenant == TENANT and stored.event_time.seconds > 0
    count = len(platform.transport.messages(topic))
    bad = events_pb2.FeedbackEvent(query_id="q", action=events_pb2.FeedbackEvent.ACTION_CLICK)
    with pytest.raises(InvalidEventError):
        platform.search.Feedback(search_pb2.FeedbackRequest(events=[click, bad]), None)
    assert len(platform.transport.messages(topic)) == count
