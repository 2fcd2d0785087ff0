"""Colour search and near-duplicate detection on the real photos (scikit-image, scikit-learn, darknet).

Colour labels were given once by looking at the photos and at crops of them where one colour dominates.
Near-duplicate copies are centre crops, rescaled to 60 % and re-encoded as JPEG quality 60.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from visearch.shared.colour import colour_descriptor, dominant_colours, palette_descriptor
from visearch.shared.duplicates import (
    hash_distance,
    is_exact_match,
    is_near_duplicate,
    local_features,
    perceptual_hash,
    verify_match,
)

pytestmark = [pytest.mark.models]

# (photo, crop box in pixels of the original) -> the colour a person sees dominating it
CROPS = {
    ("photo-motorcycle", (340, 170, 470, 240)): "red",  # the tank
    ("photo-coffee", (85, 160, 195, 340)): "red",  # the saucer
    ("photo-retina", (300, 300, 1100, 1100)): "red",  # the fundus
    ("photo-astronaut", (30, 290, 130, 480)): "orange",  # the flight suit
    ("photo-scream", (0, 0, 352, 110)): "orange",  # the sky
    ("photo-person", (195, 130, 262, 235)): "blue",  # the jacket
    ("photo-rocket", (0, 0, 640, 150)): "navy",  # the night sky
    ("photo-giraffe", (0, 0, 150, 250)): "green",  # the foliage
    ("photo-china", (250, 0, 640, 110)): "light blue",  # the hazy sky
    ("photo-kite", (700, 700, 1352, 900)): "beige",  # the sand
    ("photo-flower", (0, 0, 160, 200)): "teal",  # the blurred background
    ("photo-dog", (0, 420, 768, 576)): "grey",  # the porch floor
}
# whole photos with one clear colour; the others are mixed and carry no label
WHOLE = {
    "photo-retina": "red",
    "photo-rocket": "navy",
    "photo-hubble": "black",
    "photo-brick": "grey",
    "photo-gravel": "grey",
    "photo-grass": "grey",
    "photo-giraffe": "green",
}


@pytest.fixture(scope="module")
def images(photos) -> dict[str, Image.Image]:
    return {p.image_id: Image.open(io.BytesIO(p.read_bytes())).convert("RGB") for p in photos}


@pytest.fixture(scope="module")
def labelled(images) -> dict[str, tuple[Image.Image, str | None]]:
    """Every photo (labelled when in WHOLE) and every crop in CROPS, by name."""
    out: dict[str, tuple[Image.Image, str | None]] = {name: (img, WHOLE.get(name)) for name, img in images.items()}
    for (name, box), colour in CROPS.items():
        out[f"{name}@{box}"] = (images[name].crop(box), colour)
    return out


def test_palette_search_ranks_the_labelled_colour_first(labelled):
    descriptors = {name: colour_descriptor(img) for name, (img, _) in labelled.items()}
    for query, label in [
        (["red"], "red"),
        (["#d02020"], "red"),
        (["navy"], "navy"),
        (["blue"], "blue"),
        (["green"], "green"),
        (["teal"], "teal"),
        (["beige"], "beige"),
    ]:
        wanted = {name for name, (_, colour) in labelled.items() if colour == label}
        q = palette_descriptor(query)
        scores = {name: float(d @ q) for name, d in descriptors.items()}
        ranking = sorted(scores, key=scores.get, reverse=True)
        top = ranking[: len(wanted)]
        assert set(top) == wanted, (query, [(n, round(scores[n], 3)) for n in ranking[: len(wanted) + 3]])
    # a mixed palette: the night-sky rocket photo (navy over black) beats the all-black Hubble field and both
    # beat everything else
    q = palette_descriptor([("navy", 0.6), ("black", 0.4)])
    ranking = sorted(descriptors, key=lambda n: -float(descriptors[n] @ q))
    assert ranking[:3] == ["photo-rocket@(0, 0, 640, 150)", "photo-rocket", "photo-hubble"], ranking[:5]


def test_dominant_colour_names_of_real_photos(images):
    names = {
        pid: [t.name for t in dominant_colours(images[pid])]
        for pid in ("photo-retina", "photo-rocket", "photo-astronaut", "photo-gravel", "photo-giraffe", "photo-person")
    }
    assert names["photo-retina"][:2] == ["red", "black"], names
    assert names["photo-rocket"][0] == "navy", names
    assert {"orange", "black", "light grey"} <= set(names["photo-astronaut"][:3]), names
    assert set(names["photo-gravel"]) <= {"grey", "light grey", "dark grey"}, names
    assert set(names["photo-giraffe"][:3]) <= {"green", "light green", "olive", "dark green"}, names
    assert "blue" in names["photo-person"] and "light blue" in names["photo-person"], names


def copy_of(img: Image.Image, crop: float) -> Image.Image:
    """Centre crop keeping ``crop`` of each side, rescale to 60 %, JPEG quality 60."""
    w, h = img.size
    cw, ch = round(w * crop), round(h * crop)
    left, top = (w - cw) // 2, (h - ch) // 2
    small = img.crop((left, top, left + cw, top + ch)).resize((round(cw * 0.6), round(ch * 0.6)), Image.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=60)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_perceptual_hash_flags_copies_and_not_distinct_photos(images):
    names = sorted(images)
    originals = {n: perceptual_hash(images[n]) for n in names}
    copies95 = {n: perceptual_hash(copy_of(images[n], 0.95)) for n in names}
    copies90 = {n: perceptual_hash(copy_of(images[n], 0.90)) for n in names}
    d95 = {n: hash_distance(originals[n], copies95[n]) for n in names}
    d90 = {n: hash_distance(originals[n], copies90[n]) for n in names}
    # 95 % crops: all flagged but the periodic brick wall, whose hash follows the phase of its pattern
    assert [n for n in names if not is_near_duplicate(originals[n], copies95[n])] == ["photo-brick"], d95
    # 90 % crops: most are flagged (measured 16 of 19); the rest are left to verify_match
    assert sum(is_near_duplicate(originals[n], copies90[n]) for n in names) >= 15, d90
    distinct = {
        (a, b): hash_distance(originals[a], h)
        for a in names
        for b in names
        if a != b
        for h in (originals[b], copies90[b], copies95[b])
    }
    flagged = [pair for pair, d in distinct.items() if d <= 16]
    assert not flagged, flagged
    assert min(distinct.values()) >= 18 and np.median(list(distinct.values())) >= 28, min(distinct.values())


def test_orb_ransac_confirms_copies_and_rejects_distinct_photos(images):
    names = sorted(images)
    features = {n: local_features(images[n]) for n in names}
    copies = {n: local_features(copy_of(images[n], 0.90)) for n in names}
    same = {n: verify_match(features[n], copies[n]) for n in names}
    missed = {n: r for n, r in same.items() if not is_exact_match(r)}
    assert not missed, missed
    assert np.median([r.inliers for r in same.values()]) >= 100, same
    different = {(a, b): verify_match(features[a], copies[b]) for a, b in itertools.permutations(names, 2)}
    wrong = {pair: r for pair, r in different.items() if is_exact_match(r)}
    assert not wrong, wrong
    assert max(r.inliers for r in different.values()) <= 10, max(different.items(), key=lambda kv: kv[1].inliers)
