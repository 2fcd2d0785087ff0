"""Unit tests for visearch.services.ranking.open_tags: phrase extraction and similarity-weighted aggregation
of the linked texts of an image's neighbours."""

from __future__ import annotations

import pytest

from visearch.services.ranking.open_tags import (
    BOILERPLATE,
    aggregate_phrases,
    boilerplate_pattern,
    document_frequencies,
    extract_phrases,
)

# ------------------------------------------------------------------------------------------------ phrases


def test_phrases_do_not_start_or_end_with_stop_words():
    assert extract_phrases("A cup of coffee") == {"cup", "coffee", "cup of coffee"}
    assert extract_phrases("the and of") == set()


def test_phrases_do_not_cross_punctuation_or_boilerplate():
    phrases = extract_phrases("Red dress, summer sale. Free shipping today!")
    assert "red dress" in phrases and "summer" in phrases and "today" in phrases
    assert "dress summer" not in phrases  # across a comma
    assert not {"free", "shipping", "free shipping", "summer sale", "sale"} & phrases


def test_phrases_lowercase_numbers_hyphens_and_unicode():
    phrases = extract_phrases("Women's T-Shirt 100% Cotton; Café Crème 2024")
    assert {"women's t-shirt", "t-shirt", "cotton", "café crème"} <= phrases
    assert not any(p.split()[0].isdigit() or p.split()[-1].isdigit() for p in phrases)


def test_max_words_and_custom_boilerplate():
    assert "big red barn" not in extract_phrases("big red barn", max_words=2)
    assert extract_phrases("big red barn", boilerplate=boilerplate_pattern(["red"])) == {"big", "barn"}
    assert extract_phrases("free shipping", boilerplate=None) == {"free", "shipping", "free shipping"}
    assert boilerplate_pattern([]) is None


# ------------------------------------------------------------------------------------------ aggregation

NEIGHBOURS = [
    (0.92, ["Red leather handbag with gold chain", "Free shipping! Buy now"]),
    (0.88, ["Women's red leather handbag", "New arrival. Red leather handbag, red leather handbag"]),
    (0.81, ["Red leather handbag - click here", "Genuine leather, gold chain strap"]),
    (0.40, ["Blue denim jacket", "Free shipping"]),
]


def test_the_shared_phrase_wins_and_boilerplate_is_gone():
    tags = aggregate_phrases(NEIGHBOURS, top_n=5)
    phrases = [p for p, _ in tags]
    assert phrases[0] == "red leather handbag"
    assert "gold chain" in phrases
    joined = " ".join(phrases)
    for word in ("free", "shipping", "buy", "click", "arrival", "with", "the"):
        assert word not in joined.split(), tags


def test_scores_are_similarity_weighted_shares():
    tags = dict(aggregate_phrases(NEIGHBOURS, top_n=10))
    total = 0.92 + 0.88 + 0.81 + 0.40
    # counted once per neighbour even when a listing repeats it
    assert tags["red leather handbag"] == pytest.approx((0.92 + 0.88 + 0.81) / total)
    assert tags["gold chain"] == pytest.approx((0.92 + 0.81) / total)
    assert all(0 < s <= 1 for s in tags.values())
    assert list(tags.values()) == sorted(tags.values(), reverse=True)


def test_longer_phrase_subsumes_equally_supported_parts():
    phrases = [p for p, _ in aggregate_phrases(NEIGHBOURS, top_n=20)]
    # "red leather handbag" is on the same three neighbours as each of its parts
    for part in ("red", "red leather", "leather handbag", "handbag"):
        assert part not in phrases
    # "leather" also stands alone ("Genuine leather") but on the same three neighbours: subsumed too
    assert "leather" not in phrases
    # with subsume_ratio=1 and an extra neighbour for "handbag", the shorter phrase survives
    extra = NEIGHBOURS + [(0.9, ["Black handbag"])]
    phrases = [p for p, _ in aggregate_phrases(extra, top_n=20, subsume_ratio=1.0)]
    assert "handbag" in phrases and "red leather handbag" in phrases


def test_similarity_decides_between_phrases_with_equal_counts():
    neighbours = [(0.9, ["vintage camera"]), (0.8, ["vintage camera"]), (0.3, ["film roll"]), (0.2, ["film roll"])]
    tags = aggregate_phrases(neighbours)
    assert [p for p, _ in tags] == ["vintage camera", "film roll"]
    assert tags[0][1] == pytest.approx(1.7 / 2.2) and tags[1][1] == pytest.approx(0.5 / 2.2)


def test_catalogue_document_frequency_filters_house_phrases():
    catalogue = [
        ["Acme Store cotton shirt"],
        ["Acme Store wool scarf"],
        ["Acme Store leather belt"],
        ["Acme Store cotton shirt blue"],
        ["Acme Store linen dress"],
    ]
    df = document_frequencies(catalogue)
    assert df["acme store"] == 1.0 and df["cotton shirt"] == pytest.approx(0.4)
    neighbours = [(0.9, catalogue[0]), (0.85, catalogue[3])]
    # without catalogue statistics the house name rides along ("acme store cotton", "store cotton shirt")
    assert any("acme" in p or "store" in p.split() for p, _ in aggregate_phrases(neighbours))
    tags = aggregate_phrases(neighbours, document_frequency=df, max_document_share=0.5)
    assert tags == [("cotton shirt", 1.0)]
    assert document_frequencies([]) == {}


def test_min_neighbours_and_edge_cases():
    neighbours = [(0.9, ["striped scarf"]), (0.8, ["wool hat"])]
    assert aggregate_phrases(neighbours) == []  # no phrase on two neighbours
    assert [p for p, _ in aggregate_phrases(neighbours, min_neighbours=1)] == ["striped scarf", "wool hat"]
    assert aggregate_phrases([(0.7, ["striped scarf"])]) == [("striped scarf", 1.0)]  # one neighbour still tags
    assert aggregate_phrases([(0.0, ["striped scarf"]), (-0.2, ["striped scarf"])]) == []  # no votes
    assert aggregate_phrases([]) == []
    assert aggregate_phrases(NEIGHBOURS, top_n=0) == []
    assert len(aggregate_phrases(NEIGHBOURS, top_n=2)) == 2
    assert "free shipping" in BOILERPLATE


@pytest.mark.parametrize(
    "kwargs", [{"top_n": -1}, {"min_neighbours": 0}, {"subsume_ratio": 1.5}, {"max_document_share": -0.1}]
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        aggregate_phrases(NEIGHBOURS, **kwargs)
