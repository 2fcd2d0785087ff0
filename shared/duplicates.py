"""Near-duplicate detection: a perceptual hash for candidates, local features to confirm an exact match.

Two stages, as in Yandex's visual search (global signature to find candidates, local descriptors to
confirm "the same picture"):

- :func:`perceptual_hash`: the 64-bit DCT perceptual hash (pHash; Zauner 2010, "Implementation and
  Benchmarking of Perceptual Image Hash Functions") from the ``imagehash`` package, as a signed 64-bit
  int that fits a Milvus INT64 field. Copies that were rescaled, re-encoded or slightly cropped stay
  within a few bits (:func:`hash_distance`, Hamming); :func:`is_near_duplicate` thresholds it.
- :func:`verify_match`: ORB keypoints (Rublee et al. 2011, OpenCV ``cv2.ORB_create``), brute-force
  Hamming matching with Lowe's ratio test (Lowe 2004), and a RANSAC homography (``cv2.findHomography``);
  the number of geometrically consistent matches (inliers) says whether two images show the same scene
  from the same picture. :func:`is_exact_match` thresholds it.

Thresholds were measured on the 19 real photos shipped by scikit-image, scikit-learn and Debian darknet
(see tests/integration/test_colour_duplicates.py): copies cropped to the centre 90-95 %, scaled to 60 %
and re-encoded as JPEG quality 60, against the pairs of distinct photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
from PIL import Image

_MASK64 = (1 << 64) - 1

# Measured on the 19 real photos (copy = centre crop, 60 % scale, JPEG q60; hashes of copies against
# originals, and of each copy against the 18 other originals):
#   crop 95 %: copies 0..12 bits apart, except a periodic brick texture (24); distinct >= 20
#   crop 90 %: copies 4..18 (16 of 19 within 16; brick 24);                  distinct >= 22
#   distinct originals: 20..40, median 32 (what random bits give).
# 16 is the widest threshold that flagged no distinct pair; for uniformly random hashes it would still
# pass 4e-5 of unrelated pairs, so on a large catalogue treat a hit as a candidate for verify_match.
NEAR_DUPLICATE_MAX_DISTANCE = 16

# Measured on the same photos and 90 % copies with ORB (500 keypoints at 512 px): copies kept 21..246
# RANSAC inliers (the smooth retina photo 21; the periodic brick wall 32 at inlier ratio 0.44, all others
# >= 0.92); a copy against each of the 18 other photos (342 pairs) kept at most 5 inliers. 1000 keypoints
# gave the same extremes (21 and 5) at 2.5x the matching time.
EXACT_MATCH_MIN_INLIERS = 15
EXACT_MATCH_MIN_RATIO = 0.25


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash of an image (``imagehash.phash``, hash_size 8) as a signed int.

    pHash reduces the image to 32 x 32 grey, takes its DCT, and compares the 8 x 8 lowest frequencies
    with their median: one bit each, row-major, first bit most significant. Large images are first
    box-reduced by an integer factor to a longest side of 128..255 px: 20x faster on a 1411 px photo,
    and within 4 bits of the hash of the full image on the test photos.

    Returns:
        int in [-2**63, 2**63 - 1] (the unsigned 64-bit hash read as two's complement, so it fits a Milvus
        INT64 field); compare hashes with :func:`hash_distance`, or store :func:`hash_bytes` in a Milvus
        BINARY_VECTOR(dim=64) field to search by Hamming distance.
    """
    factor = max(img.size) // 128
    if factor > 1:
        img = img.reduce(factor)
    bits = imagehash.phash(img, hash_size=8).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def hash_bytes(value: int) -> bytes:
    """The 8 bytes (big-endian, first hash bit = most significant bit of byte 0) of a 64-bit hash given
    signed or unsigned: the value of a Milvus BINARY_VECTOR(dim=64) field (HAMMING metric)."""
    return (value & _MASK64).to_bytes(8, "big")


def hash_distance(a: int, b: int) -> int:
    """Hamming distance (0..64) between two 64-bit hashes, given signed or unsigned."""
    return ((a ^ b) & _MASK64).bit_count()


def is_near_duplicate(a: int, b: int, max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE) -> bool:
    """Whether two perceptual hashes are near-duplicates: Hamming distance <= ``max_distance``.

    The default, 16 bits of 64, was measured on real photos (see :data:`NEAR_DUPLICATE_MAX_DISTANCE`):
    copies cropped to 95 %, rescaled and re-encoded as JPEG stay within 12 bits (periodic textures aside),
    90 % crops within 18; distinct photos were 20 or more apart. Heavier edits (crops below ~90 %,
    rotations, mirroring) move the hash further: confirm candidates with :func:`verify_match`.
    """
    return hash_distance(a, b) <= max_distance


@dataclass(frozen=True)
class MatchResult:
    """Local-feature match between two images.

    ``matches``: ORB matches that passed Lowe's ratio test; ``inliers``: those consistent with the RANSAC
    homography (0 when fewer than 4 matches); ``inlier_ratio``: inliers / matches, 0..1 (0 with no matches).
    """

    inliers: int
    inlier_ratio: float
    matches: int


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints of one image, computed once by :func:`local_features` and reusable across pairs.

    ``points``: float32 ``[N, 2]`` keypoint (x, y) in pixels of the downsampled grey image; ``descriptors``:
    uint8 ``[N, 32]`` (256-bit binary ORB descriptors); N = 0 for an image without texture.
    """

    points: np.ndarray
    descriptors: np.ndarray


def _grey(img: Image.Image, max_side: int) -> np.ndarray:
    """uint8 grey array of ``img`` with its longest side at most ``max_side`` (area averaging)."""
    factor = max(img.size) // max_side
    if factor > 1:
        img = img.reduce(factor)  # box average by an integer factor first: cheaper on large photos
    arr = np.asarray(img.convert("L"))
    h, w = arr.shape
    scale = max_side / max(h, w)
    if scale < 1:
        arr = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def local_features(img: Image.Image, *, max_side: int = 512, max_features: int = 500) -> LocalFeatures:
    """ORB keypoints and descriptors (``cv2.ORB_create``) of ``img`` converted to grey and downsampled to at
    most ``max_side`` px (area averaging): at most ``max_features`` keypoints, the strongest by FAST/Harris."""
    keypoints, descriptors = cv2.ORB.create(nfeatures=max_features).detectAndCompute(_grey(img, max_side), None)
    if descriptors is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return LocalFeatures(np.array([kp.pt for kp in keypoints], dtype=np.float32), descriptors)


def verify_match(
    a: Image.Image | LocalFeatures,
    b: Image.Image | LocalFeatures,
    *,
    max_side: int = 512,
    max_features: int = 500,
    ratio: float = 0.75,
    ransac_reproj_threshold: float = 5.0,
) -> MatchResult:
    """Geometrically verified local-feature matches between two images.

    Each image (or its precomputed :func:`local_features`, to verify one query against many candidates
    without recomputing it) gives at most ``max_features`` ORB keypoints at most ``max_side`` px (speed,
    and it makes scales comparable). Each descriptor of ``a`` takes its two nearest of ``b`` by Hamming
    distance and is kept when the nearest is closer than ``ratio`` times the second (Lowe's ratio test),
    keeping one match per keypoint of ``b`` (the closest); a homography is fitted to the kept matches by
    RANSAC (reprojection threshold ``ransac_reproj_threshold`` px in the downsampled images). A homography
    that mirrors, collapses, or scales area by more than 100x either way counts as no match (0 inliers).

    Args:
        a, b: PIL images of any size and mode, or :class:`LocalFeatures`.

    Returns:
        :class:`MatchResult`. An image without texture (no keypoints) gives ``MatchResult(0, 0.0, 0)``.
    """
    fa = a if isinstance(a, LocalFeatures) else local_features(a, max_side=max_side, max_features=max_features)
    fb = b if isinstance(b, LocalFeatures) else local_features(b, max_side=max_side, max_features=max_features)
    if len(fa.descriptors) < 2 or len(fb.descriptors) < 2:  # the ratio test needs two neighbours
        return MatchResult(0, 0.0, 0)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(fa.descriptors, fb.descriptors, k=2)
    best: dict[int, cv2.DMatch] = {}
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
            m = pair[0]
            # One-to-one: keep the closest match per keypoint of b. Many keypoints of a matched to one
            # blob of b (a bright light) would otherwise "agree" with a homography that collapses a to a point.
            if m.trainIdx not in best or m.distance < best[m.trainIdx].distance:
                best[m.trainIdx] = m
    good = list(best.values())
    if len(good) < 4:  # a homography needs 4 correspondences
        return MatchResult(0, 0.0, len(good))
    src = fa.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = fb.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransac_reproj_threshold)
    if homography is None or not _plausible(homography):
        return MatchResult(0, 0.0, len(good))
    inliers = int(mask.sum())
    return MatchResult(inliers, inliers / len(good), len(good))


def _plausible(homography: np.ndarray) -> bool:
    """Whether a homography could relate a picture to an edited copy: it keeps orientation (no mirror,
    no collapse) and changes area by at most 100x either way (a copy at 10 % of the size is still one)."""
    det = float(np.linalg.det(homography[:2, :2]))
    return 0.01 <= det <= 100.0


def is_exact_match(
    result: MatchResult, min_inliers: int = EXACT_MATCH_MIN_INLIERS, min_ratio: float = EXACT_MATCH_MIN_RATIO
) -> bool:
    """Whether a :func:`verify_match` result shows the same picture: at least ``min_inliers`` RANSAC
    inliers making up at least ``min_ratio`` of the ratio-test matches.

    Defaults measured on real photos (see :data:`EXACT_MATCH_MIN_INLIERS`): cropped, rescaled, re-encoded
    copies kept 21 or more inliers at ratio >= 0.44; distinct photos at most 5. The ratio guards against
    a homography fitted to a few of very many matches (repetitive patterns).
    """
    return result.inliers >= min_inliers and result.inlier_ratio >= min_ratio
