"""Unit tests for visearch.shared.duplicates on synthetic scenes: hash packing and distance, near-duplicate
flags for re-encoded copies, ORB + RANSAC verification."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from visearch.shared.duplicates import (
    EXACT_MATCH_MIN_INLIERS,
    NEAR_DUPLICATE_MAX_DISTANCE,
    LocalFeatures,
    MatchResult,
    hash_bytes,
    hash_distance,
    is_exact_match,
    is_near_duplicate,
    local_features,
    perceptual_hash,
    verify_match,
)


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A synthetic picture: random filled rectangles, ellipses and lines (corners and edges for ORB)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=3)
    return img


def reencoded(img: Image.Image, scale: float = 0.6, quality: int = 60, crop: float = 1.0) -> Image.Image:
    """Centre crop to ``crop`` of each side, rescale by ``scale``, JPEG at ``quality``."""
    w, h = img.size
    cw, ch = round(w * crop), round(h * crop)
    left, top = (w - cw) // 2, (h - ch) // 2
    out = img.crop((left, top, left + cw, top + ch)).resize((round(cw * scale), round(ch * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


# ------------------------------------------------------------------------------------------------ hashes


def test_hash_is_signed_int64_and_equals_imagehash_phash():
    for seed in range(5):
        img = scene(seed, (120, 90))  # < 256 px: hashed without the pre-reduction
        value = perceptual_hash(img)
        assert -(2**63) <= value < 2**63
        unsigned = int(str(imagehash.phash(img)), 16)
        assert value & (2**64 - 1) == unsigned


def test_hash_distance_and_bytes():
    assert hash_distance(0, 0) == 0
    assert hash_distance(0, -1) == 64  # -1 is all 64 bits set
    assert hash_distance(1, 0) == 1
    assert hash_distance(-(2**63), 0) == 1  # the sign bit alone
    assert hash_distance(2**64 - 1, -1) == 0  # the same hash, unsigned and signed
    for value in (0, 1, -1, 2**63 - 1, -(2**63), 0x0123456789ABCDEF):
        packed = hash_bytes(value)
        assert len(packed) == 8 and int.from_bytes(packed, "big", signed=True) == value
    assert hash_bytes(-(2**63))[0] == 0x80  # first hash bit = most significant bit of byte 0


def test_reencoded_copies_are_near_duplicates_and_other_scenes_are_not():
    originals = {seed: scene(seed, (640, 480)) for seed in range(6)}
    hashes = {seed: perceptual_hash(img) for seed, img in originals.items()}
    for seed, img in originals.items():
        copy = perceptual_hash(reencoded(img, crop=0.97))
        assert is_near_duplicate(hashes[seed], copy), hash_distance(hashes[seed], copy)
        for other in originals:
            if other != seed:
                assert not is_near_duplicate(hashes[other], copy), (seed, other, hash_distance(hashes[other], copy))
    assert is_near_duplicate(0, 0b1111, max_distance=4) and not is_near_duplicate(0, 0b1111, max_distance=3)
    assert NEAR_DUPLICATE_MAX_DISTANCE < 32  # below what unrelated (random) hashes give on average


# ---------------------------------------------------------------------------------------- local features


def test_verify_match_confirms_a_transformed_copy():
    original = scene(1, (640, 480))
    copy = reencoded(original.rotate(8, resample=Image.BICUBIC, fillcolor=(0, 0, 0)), scale=0.7, crop=0.85)
    same = verify_match(original, copy)
    assert same.inliers >= 3 * EXACT_MATCH_MIN_INLIERS, same
    assert same.inlier_ratio > 0.6 and same.matches >= same.inliers
    assert is_exact_match(same)
    different = verify_match(original, reencoded(scene(2, (640, 480))))
    assert not is_exact_match(different), different


def test_precomputed_features_give_the_same_result():
    a, b = scene(3), reencoded(scene(3))
    fa = local_features(a)
    assert isinstance(fa, LocalFeatures)
    assert fa.points.shape[1] == 2 and fa.points.dtype == np.float32
    assert fa.descriptors.shape == (len(fa.points), 32) and fa.descriptors.dtype == np.uint8
    assert verify_match(fa, b) == verify_match(a, b) == verify_match(a, local_features(b))


def test_images_without_texture_give_no_match():
    flat = Image.new("RGB", (200, 200), (120, 40, 40))
    assert verify_match(flat, flat) == MatchResult(0, 0.0, 0)
    assert local_features(flat).descriptors.shape == (0, 32)
    assert not is_exact_match(verify_match(flat, scene(0)))


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (MatchResult(30, 0.9, 33), True),
        (MatchResult(EXACT_MATCH_MIN_INLIERS - 1, 1.0, EXACT_MATCH_MIN_INLIERS - 1), False),  # too few inliers
        (MatchResult(100, 0.1, 1000), False),  # a homography fitted to a sliver of the matches
        (MatchResult(0, 0.0, 0), False),
    ],
)
def test_is_exact_match_thresholds(result, expected):
    assert is_exact_match(result) is expected


def features(points: np.ndarray, descriptors: np.ndarray) -> LocalFeatures:
    return LocalFeatures(np.asarray(points, np.float32), np.asarray(descriptors, np.uint8))


def test_geometry_of_hand_made_correspondences():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 500, (40, 2))
    descriptors = rng.integers(0, 256, (40, 32))  # random 256-bit strings: each is its own clear nearest
    a = features(points, descriptors)
    scaled = verify_match(a, features(points * 0.5 + 10, descriptors))
    assert scaled == MatchResult(40, 1.0, 40)
    mirrored = verify_match(a, features(np.c_[500 - points[:, 0], points[:, 1]], descriptors))
    assert mirrored.inliers == 0 and mirrored.matches == 40  # a mirror image is not the same picture
    # every keypoint of a matches one blob of b: one-to-one matching leaves a single correspondence
    blob = features([[100, 100], [300, 300]], [descriptors[0], 255 - descriptors[0]])
    assert verify_match(features(points, np.repeat(descriptors[:1], 40, axis=0)), blob) == MatchResult(0, 0.0, 1)
