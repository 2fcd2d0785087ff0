"""Wiring of the recognition services that needs no model: region selection, route merging, the five-stage
chain, store schema constants, indexer tags."""

from __future__ import annotations

import numpy as np

from visearch.services.indexer.stage import model_tags
from visearch.services.ranking.engine import to_hit as _hit
from visearch.services.ranking.query import Candidate
from visearch.services.ranking.ranker import Ranker
from visearch.shared.colour import COLOUR_DIM as DESCRIPTOR_DIM
from visearch.shared.config import DetectionSettings, PipelineSettings
from visearch.shared.regions import select_regions
from visearch.shared.store import COLOUR_DIM, SPACES, IndexRow, StoredHit, _attributes_json, region_key
from visearch.shared.transport import stage_topics
from visearch.v1 import common_pb2, events_pb2, search_pb2


def _det(label, score, box):
    return common_pb2.Detection(
        label=label, score=score, box=common_pb2.Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])
    )


def test_colour_collection_matches_descriptor():
    """The colour collection's dimension is the classifier's descriptor size."""
    assert COLOUR_DIM == DESCRIPTOR_DIM == SPACES["colour"]


def test_select_regions_thresholds_and_order():
    """Regions: score >= region_min_score, area >= region_min_area of the image, highest score first, capped."""
    settings = DetectionSettings(region_min_score=0.4, region_min_area=0.01, max_regions=2)
    detections = [
        _det("cup", 0.35, (0, 0, 50, 50)),  # score too low
        _det("dog", 0.9, (0, 0, 50, 50)),
        _det("ant", 0.95, (0, 0, 5, 5)),  # 25 px of 100x100 = 0.25% < 1%
        _det("car", 0.6, (10, 10, 90, 90)),
        _det("bus", 0.5, (10, 10, 90, 90)),  # beyond max_regions
    ]
    assert select_regions(detections, 100, 100, settings) == [1, 3]


def test_default_chain_has_five_stages():
    """The default ingest chain runs every stage, in the design's order, ending at the indexer."""
    stages = PipelineSettings().stage_list
    assert stages == ["detection", "embedding", "ocr", "classification", "indexer"]
    topics = stage_topics(stages)
    assert topics["detection"].input == "visearch.images.v1"
    assert topics["embedding"].input == "visearch.detected.v1"
    assert topics["classification"].output == "visearch.classified.v1"
    assert topics["indexer"].input == "visearch.classified.v1" and topics["indexer"].output is None


def test_candidate_keeps_the_best_route_and_its_region():
    """A hit found by several routes keeps each factor's best value and the best region; the ranker's
    contributions (weight * value) make the hit's score, factors listed in FACTORS order."""
    c = Candidate(StoredHit("a", 0.5, {"title": "t", "tags": "dog;red"}))
    region = search_pb2.RegionMatch(index=2, label="dog")
    c.offer("region", 0.80, region)
    c.offer("visual", 0.50)
    c.offer("region", 0.70, search_pb2.RegionMatch(index=3))
    assert c.region.index == 2
    assert c.factors == {"visual": 0.50, "region": 0.80}
    ranked = Ranker("test", {"visual": 1.0, "region": 0.5}).rank({"a": c.factors})[0]
    hit = _hit(c, ranked)
    assert hit.region.label == "dog" and list(hit.tags) == ["dog", "red"]
    assert [f.name for f in hit.factors] == ["visual", "region"]
    contributions = {f.name: f.contribution for f in hit.factors}
    assert contributions == {"visual": np.float32(0.50), "region": np.float32(0.40)}
    assert hit.score == np.float32(0.90)


def test_region_keys_and_attribute_json_fit():
    """Region primary keys extend the image key; the attribute JSON drops the weakest entries to fit."""
    assert region_key("t", "img", 3) == "t/img#3"
    many = [("concept", "x" * 100, i / 1000) for i in range(1000)]
    text = _attributes_json(many)
    assert len(text.encode()) <= 8192 and '"x' in text
    assert f"{0.999}" in text  # the strongest are kept


def test_model_tags_merge_catalogue_and_model_values():
    doc = events_pb2.ImageDocument()
    doc.event.product.tags.extend(["summer"])
    doc.classification.attributes.add(name="object", value="dog", score=0.9)
    doc.classification.attributes.add(name="colour", value="red", score=0.4)
    doc.classification.attributes.add(name="blur", value="sharp", score=0.9)
    doc.classification.attributes.add(name="object", value="summer", score=0.3)
    assert model_tags(doc) == ["summer", "dog", "red"]


def test_index_row_fields_carry_recognition_results():
    row = IndexRow(
        "i",
        "t",
        np.zeros(1280, np.float32),
        np.zeros(384, np.float32),
        tags=["a", "b"],
        safe=False,
        phash=-5,
        ocr_text="é" * 5000,
        attributes=[("object", "dog", 0.5)],
    )
    fields = row.fields()
    assert fields["tags"] == "a;b" and fields["safe"] is False and fields["phash"] == -5
    assert len(fields["ocr_text"].encode()) <= 4096  # cut on UTF-8 bytes, not characters
