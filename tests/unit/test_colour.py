"""Unit tests for visearch.shared.colour on synthetic images: naming, k-means shares,
descriptor properties, palette parsing and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from visearch.shared.colour import (
    COLOUR_DIM,
    PALETTE,
    ColourTag,
    colour_descriptor,
    dominant_colours,
    palette_descriptor,
    parse_colour,
)
from visearch.shared.errors import InvalidEventError


def flat(colour: str | tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A single-colour RGB image."""
    return Image.new("RGB", size, colour)


def split(left: str, right: str, share: float, size: tuple[int, int] = (200, 100)) -> Image.Image:
    """``left`` colour over the first ``share`` of the width, ``right`` over the rest."""
    img = flat(right, size)
    ImageDraw.Draw(img).rectangle([0, 0, round(size[0] * share) - 1, size[1]], fill=left)
    return img


# --------------------------------------------------------------------------------------- dominant colours


@pytest.mark.parametrize("name", sorted(PALETTE))
def test_every_palette_colour_is_named_as_itself(name):
    tags = dominant_colours(flat(PALETTE[name]))
    assert [t.name for t in tags] == [name]
    assert tags[0].fraction == pytest.approx(1.0)


def test_two_colour_image_gives_both_names_with_their_shares():
    tags = dominant_colours(split(PALETTE["red"], "#ffffff", 0.7), k=5)
    names = [t.name for t in tags]
    assert names[:2] == ["red", "white"], tags
    assert all(t.fraction < 0.03 for t in tags[2:]), tags  # at most the pixels blended by downsampling
    assert tags[0].fraction == pytest.approx(0.7, abs=0.02)
    assert tags[1].fraction == pytest.approx(0.3, abs=0.02)
    assert sum(t.fraction for t in tags) == pytest.approx(1.0)
    red = tuple(int(tags[0].hex[i : i + 2], 16) for i in (1, 3, 5))
    assert np.abs(np.array(red) - np.array(parse_colour("red")[1])).max() <= 3  # centre of the red pixels


def test_clusters_with_the_same_name_are_merged():
    # two slightly different navies and a white: k=3 finds three clusters, two of them named navy
    # (60 px wide: no downsampling, so no blended pixels at the edges)
    img = split("#1b2a4e", "#f5f5f5", 0.6, size=(60, 40))
    ImageDraw.Draw(img).rectangle([0, 0, 19, 39], fill="#20305a")
    tags = dominant_colours(img, k=3)
    assert [t.name for t in tags] == ["navy", "white"]
    assert tags[0].fraction == pytest.approx(0.6, abs=0.02)


def test_dominant_colours_is_deterministic_and_sorted():
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    first, second = dominant_colours(img, k=6), dominant_colours(img, k=6)
    assert first == second
    assert all(isinstance(t, ColourTag) for t in first)
    assert [t.fraction for t in first] == sorted((t.fraction for t in first), reverse=True)
    assert 1 <= len(first) <= 6


def test_tiny_and_grey_images():
    assert [t.name for t in dominant_colours(flat("#000000", (1, 1)))] == ["black"]
    assert [t.name for t in dominant_colours(Image.new("L", (10, 10), 128))] == ["grey"]


@pytest.mark.parametrize("k", [0, 33])
def test_k_out_of_range(k):
    with pytest.raises(ValueError):
        dominant_colours(flat("red"), k=k)


# ------------------------------------------------------------------------------------------- descriptors


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_descriptor_shape_norm_and_range():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    for d in (colour_descriptor(img), palette_descriptor(["red", ("#00ff00", 0.5)])):
        assert d.shape == (COLOUR_DIM,) and d.dtype == np.float32
        assert 64 <= COLOUR_DIM <= 256
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
        assert d.min() >= 0


def test_flat_image_matches_its_own_colour():
    for spec in ("#cc0000", "#2a5db0", "#f4d03f", "#808080"):
        assert cos(colour_descriptor(flat(spec)), palette_descriptor([spec])) == pytest.approx(1.0, abs=1e-4)


def test_descriptor_does_not_depend_on_image_size():
    small = colour_descriptor(split("red", "white", 0.5, (64, 32)))
    assert cos(small, colour_descriptor(split("red", "white", 0.5, (640, 320)))) > 0.999  # no blended pixels
    assert cos(small, colour_descriptor(split("red", "white", 0.5, (1000, 370)))) > 0.97  # a blended column


def test_red_query_ranks_by_how_red_an_image_is():
    red_query = palette_descriptor(["red"])
    images = {
        "all red": flat(PALETTE["red"]),
        "mostly red": split(PALETTE["red"], "#f5f5f5", 0.7),
        "some red": split(PALETTE["red"], "#f5f5f5", 0.2),
        "orange": flat(PALETTE["orange"]),
        "blue": flat(PALETTE["blue"]),
        "grey": flat(PALETTE["grey"]),
    }
    scores = {name: cos(colour_descriptor(img), red_query) for name, img in images.items()}
    ranking = sorted(scores, key=scores.get, reverse=True)
    assert ranking[:4] == ["all red", "mostly red", "some red", "orange"], scores
    assert scores["blue"] < 0.01 and scores["grey"] < 0.01


def test_palette_weights_are_relative_and_mixes_match_mixed_images():
    assert np.allclose(palette_descriptor([("red", 2), ("white", 2)]), palette_descriptor(["red", "white"]))
    image = colour_descriptor(split(PALETTE["navy"], PALETTE["white"], 0.7))
    mix = palette_descriptor([("navy", 0.7), ("white", 0.3)])
    assert cos(image, mix) > 0.97
    assert cos(image, mix) > cos(image, palette_descriptor(["navy"])) > cos(image, palette_descriptor(["white"]))


# --------------------------------------------------------------------------------------- parsing, errors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("#cc0000", ("#cc0000", (204, 0, 0))),
        ("CC0000", ("#cc0000", (204, 0, 0))),
        ("#c00", ("#cc0000", (204, 0, 0))),
        ("Navy", ("navy", parse_colour("#1b2a4e")[1])),
        ("dark-red", ("dark red", parse_colour(PALETTE["dark red"])[1])),
        ("DarkRed", ("dark red", parse_colour(PALETTE["dark red"])[1])),
        ("gray", ("grey", parse_colour(PALETTE["grey"])[1])),
        ("burgundy", ("dark red", parse_colour(PALETTE["dark red"])[1])),
    ],
)
def test_parse_colour(spec, expected):
    assert parse_colour(spec) == expected


@pytest.mark.parametrize(
    "colours",
    [
        [],
        ["chartreuse-ish"],
        ["#12345"],
        ["#gggggg"],
        [("red", 0)],
        [("red", -1)],
        [("red", float("nan"))],
        [("red", "heavy")],
        [(123, 1.0)],
    ],
)
def test_bad_palettes_raise_bad_colour(colours):
    with pytest.raises(InvalidEventError) as info:
        palette_descriptor(colours)
    assert info.value.reason == "bad_colour"
