"""Image quality and layout attributes: blur, resolution, text, aspect, collage, mosaic, model, detail.

Cheap, model-free measurements (OpenCV and NumPy on the decoded image) that a catalogue uses to
filter or flag images: a blurry or low-resolution product photo, a picture with text on it, a
panorama, a collage of several photos, a mosaic (a grid of tiles), a product worn by a person (``model``), a
close-up (``detail``). ``model`` and ``detail`` also read the detector's boxes. Each attribute is ``(value, score)``; the score is the
attribute's measurement normalised to [0, 1] as documented in :func:`quality_attributes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from visearch.shared.errors import InvalidEventError, InvalidImageError
from visearch.v1 import common_pb2

# Blur: variance of the Laplacian (Pech-Pacheco et al. 2000, "Diatom autofocusing in brightfield
# microscopy"), measured on the grey image scaled to this longest side so that the figure does not
# depend on the resolution. At that size real photos measure ~180-12,000, the same photos after a
# Gaussian blur of sigma 2 px measure 3-20; 100 is the usual "blurry below" rule of thumb.
BLUR_SIDE = 512
BLUR_THRESHOLD = 100.0

# Resolution by pixel count (width x height): below VGA (640 x 480) is low, from 2 MP (about
# 1920 x 1080) is high. The score is log10 of the pixel count, 0 at 100 x 100 and 1 at 10 MP.
LOW_PIXELS = 640 * 480
HIGH_PIXELS = 2_000_000
_LOG_PIXELS = (math.log10(100 * 100), math.log10(10_000_000))

# Aspect ratio (width / height): square within 10 %, panorama from 2:1 wide.
SQUARE_TOLERANCE = 0.1
PANORAMA_RATIO = 2.0

# Collage: see collage_score.
COLLAGE_SIDE = 512
COLLAGE_STRIP = 3  # rows averaged either side of a boundary
COLLAGE_STEP = 25.0  # change of a colour channel's mean across a seam, on 0..255
COLLAGE_COVERAGE = 0.8  # share of a row or column that must step for a seam
COLLAGE_MARGIN = 0.1  # seams within this share of a border are ignored (frames, scanner edges)
COLLAGE_HIST_DISTANCE = 0.3  # Bhattacharyya distance between the sides' colour histograms
COLLAGE_MIN_SIDE = 64  # smaller images are not checked (score 0): a thumbnail's object outline is
# often a straight edge across it (Fashion-MNIST's 28 x 28 garments on black would all "split")

TEXT_LINES_FULL = 5  # has_text score: OCR lines / this, capped at 1

# Mosaic: seams (as for collage) that cut the image into at least this many tiles.
MOSAIC_TILES = 4
# Model (a person wearing the item): a detected person at least this confident, covering at least this share
# of the image (a passer-by in a street scene is smaller; a catalogue's model shot fills the frame).
MODEL_MIN_SCORE = 0.35
MODEL_MIN_AREA = 0.15
# Detail (a close-up): an object the frame cuts on at least 3 sides (a box within 2 % of the border) and that
# fills at least 60 % of the image; or, with no object at all, texture everywhere (see texture_uniformity).
DETAIL_MIN_SCORE = 0.3
DETAIL_MIN_FILL = 0.6
DETAIL_BORDER = 0.02
DETAIL_GRID = 4  # texture_uniformity: cells per side
DETAIL_UNIFORMITY = 0.6


def quality_attributes(
    img: Image.Image, text_lines: int = 0, detections: Sequence[common_pb2.Detection] = ()
) -> dict[str, tuple[str, float]]:
    """Quality and layout attributes of one decoded image.

    Args:
        img: a decoded ``PIL.Image`` (any mode; converted to grey where needed), at least 1 x 1.
        text_lines: number of text lines the OCR stage read on the image (>= 0).
        detections: the detector's objects on the image (boxes in its pixels); none: ``model`` is ``no`` and
            ``detail`` rests on texture alone.

    Returns:
        attribute -> (value, score), scores in [0, 1]:

        - ``blur``: ``sharp`` / ``blurry``; score = sharpness v / (v + 100), v the variance of the
          Laplacian (OpenCV) on the grey image scaled to 512 px on its longest side; 0.5 is the
          threshold; the catalogue's photos score 0.64-0.99 (its soft retina fundus photo 0.41).
        - ``resolution``: ``low`` (< 640 x 480 pixels) / ``medium`` / ``high`` (>= 2 MP); score =
          log10 of the pixel count, 0 at 100 x 100 px and 1 at 10 MP.
        - ``has_text``: ``yes`` when ``text_lines`` >= 1; score = min(1, text_lines / 5).
        - ``aspect``: ``portrait`` / ``square`` (width/height within 10 % of 1) / ``landscape`` /
          ``panorama`` (>= 2:1 wide); score = width / (width + height), 0.5 for a square.
        - ``collage``: ``yes`` when a straight, axis-aligned seam crosses at least 80 % of the
          image, away from its borders, between regions of different colours (see
          :func:`collage_score`); score = that seam's coverage, 0 when there is none.
        - ``mosaic``: ``yes`` when such seams cut the image into >= 4 tiles (a grid, or a strip, of pictures;
          :func:`mosaic_tiles`); score = min(1, (tiles - 1) / 3).
        - ``model``: ``yes`` when a ``person`` detection scores >= 0.35 and covers >= 15 % of the image (a product
          worn by a person); score = the best person's detector score x min(1, its area share / 0.15).
        - ``detail``: ``yes`` for a close-up: an object (score >= 0.3) cut by the frame on >= 3 sides and
          covering >= 60 % of the image, or no object and texture in every part of the image
          (:func:`texture_uniformity` >= 0.6); score = that area share, or the uniformity.

    Raises:
        InvalidEventError: (reason ``invalid_text_lines``) ``text_lines`` < 0.
        InvalidImageError: (reason ``empty_image``) an image with no pixels.
    """
    if text_lines < 0:
        raise InvalidEventError(f"text_lines must be >= 0, got {text_lines}", reason="invalid_text_lines")
    width, height = img.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"empty image {width}x{height}", reason="empty_image")
    rgb = np.asarray(img.convert("RGB"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    sharpness = laplacian_variance(grey)
    blur_score = sharpness / (sharpness + BLUR_THRESHOLD)

    pixels = width * height
    resolution = "low" if pixels < LOW_PIXELS else "high" if pixels >= HIGH_PIXELS else "medium"
    lo, hi = _LOG_PIXELS
    resolution_score = min(1.0, max(0.0, (math.log10(pixels) - lo) / (hi - lo)))

    ratio = width / height
    if ratio >= PANORAMA_RATIO:
        aspect = "panorama"
    elif abs(ratio - 1.0) <= SQUARE_TOLERANCE:
        aspect = "square"
    else:
        aspect = "landscape" if ratio > 1.0 else "portrait"

    collage = collage_score(rgb)
    tiles = mosaic_tiles(rgb)
    model = model_score(detections, width, height)
    detail = detail_score(grey, detections, width, height)
    return {
        "blur": ("sharp" if sharpness >= BLUR_THRESHOLD else "blurry", round(float(blur_score), 4)),
        "resolution": (resolution, round(resolution_score, 4)),
        "has_text": ("yes" if text_lines > 0 else "no", min(1.0, text_lines / TEXT_LINES_FULL)),
        "aspect": (aspect, round(width / (width + height), 4)),
        "collage": ("yes" if collage >= COLLAGE_COVERAGE else "no", round(collage, 4)),
        "mosaic": ("yes" if tiles >= MOSAIC_TILES else "no", round(min(1.0, (tiles - 1) / 3), 4)),
        "model": ("yes" if model[0] else "no", round(model[1], 4)),
        "detail": ("yes" if detail[0] else "no", round(detail[1], 4)),
    }


def _scaled(pixels: np.ndarray, side: int) -> np.ndarray:
    """``pixels`` ([H, W] or [H, W, C]) scaled down (area averaging) to ``side`` on its longest side."""
    scale = side / max(pixels.shape[:2])
    if scale >= 1.0:
        return pixels
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the Laplacian (OpenCV, 3 x 3 aperture) of a grey uint8 image [H, W] scaled to
    512 px on its longest side (smaller images as they are). Higher is sharper; >= 0."""
    return float(cv2.Laplacian(_scaled(grey, BLUR_SIDE), cv2.CV_64F).var())


def collage_score(rgb: np.ndarray) -> float:
    """How clearly a straight seam splits the image into two different pictures, in [0, 1].

    A simple collage heuristic. A collage (photos tiled side by side or in a grid, with or without
    a gutter) has at least one seam: a row or column where the picture changes abruptly along
    (nearly) its whole length, between regions that look different. On the image scaled to 512 px
    on its longest side:

    1. For every internal row boundary (and likewise columns), ignoring the outer 10 % of the side,
       the coverage is the share of columns where some colour channel's mean over the 3 rows above
       differs from its mean over the 3 rows below by more than 25 (of 255).
    2. Each run of rows with coverage >= 0.8 is a candidate seam (its best row). A candidate is a
       seam when the colour histograms (8 x 8 x 8 RGB bins) of the strips either side of it (as
       wide as the distance to the border, at most a quarter of the side) differ: Bhattacharyya
       distance >= 0.3. This keeps a straight line *inside* one picture (a paving joint, a shelf
       edge, a window frame: the same texture both sides) from counting.

    Returns the best seam's coverage (>= 0.8: a collage), 0 when there is none or the image is
    smaller than 64 px on a side.

    The thresholds were chosen on the 19 real photos of ``photo_catalogue()`` (none scores) and 60
    random grids of them (1x2 to 3x3, gutters of 0-10 px; all found): calibration data, not an
    independent test. Honest limits: it misses free-form
    collages (tilted, overlapping or round photos) and grids of look-alike pictures (product shots
    on the same white background); a level horizon between differently coloured sky and sea, and
    screenshots of user interfaces, can score as collages.

    Args:
        rgb: uint8 [H, W, 3].
    """
    seams = _seams(rgb, first_only=True)
    return max((coverage for axis in seams for _, coverage in axis), default=0.0)


def mosaic_tiles(rgb: np.ndarray) -> int:
    """Tiles the image's seams cut it into: (horizontal seams + 1) x (vertical seams + 1), 1 with no seam.

    The seams are :func:`collage_score`'s (every run of rows or columns that steps along >= 80 % of the image and
    separates different colour histograms, away from the borders). A 2 x 2 grid of photos has 4 tiles, a single
    photo 1; look-alike tiles (product shots on one white background) are not separated, as for collages.

    Args:
        rgb: uint8 [H, W, 3].
    """
    rows, columns = _seams(rgb, first_only=False)
    return (len(rows) + 1) * (len(columns) + 1)


def _seams(rgb: np.ndarray, first_only: bool) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The seams (position, coverage) between rows, then between columns, of ``rgb`` scaled to 512 px (see
    :func:`collage_score`). ``first_only``: stop checking once a seam beats the best so far (the collage score
    needs only the best one); else every run of stepping rows is checked."""
    if min(rgb.shape[:2]) < COLLAGE_MIN_SIDE:
        return [], []
    small = _scaled(rgb, COLLAGE_SIDE)
    found: list[list[tuple[int, float]]] = [[], []]
    best = 0.0
    w = COLLAGE_STRIP
    for axis, image in enumerate((small, np.ascontiguousarray(small.transpose(1, 0, 2)))):  # rows, then columns
        n = image.shape[0]
        lo, hi = max(w, int(n * COLLAGE_MARGIN)), min(n - w, int(math.ceil(n * (1 - COLLAGE_MARGIN))))
        if hi <= lo or image.shape[1] < 8:
            continue
        # mean of each w rows (anchored at their first row): means[r] covers rows r .. r + w - 1
        means = cv2.boxFilter(image, cv2.CV_32F, (1, w), anchor=(0, 0), normalize=True, borderType=cv2.BORDER_REPLICATE)
        rows = np.arange(lo, hi + 1)
        diff = np.abs(means[rows - w] - means[rows])  # the w rows above each boundary vs the w below
        # a column steps when any colour channel's mean changes by more than COLLAGE_STEP
        steps = (diff[..., 0] > COLLAGE_STEP) | (diff[..., 1] > COLLAGE_STEP) | (diff[..., 2] > COLLAGE_STEP)
        coverage = steps.mean(axis=1)
        hot = coverage >= COLLAGE_COVERAGE
        starts = np.flatnonzero(hot & ~np.concatenate([[False], hot[:-1]]))
        for start in starts:
            end = start
            while end + 1 < len(hot) and hot[end + 1]:
                end += 1
            i = start + int(coverage[start : end + 1].argmax())
            if first_only and coverage[i] <= best:
                continue
            y = int(rows[i])
            half = max(4, min(y, n - y, n // 4))
            if _histogram_distance(image[y - half : y], image[y : y + half]) >= COLLAGE_HIST_DISTANCE:
                best = max(best, float(coverage[i]))
                found[axis].append((y, float(coverage[i])))
    return found[0], found[1]


def _area_share(box: common_pb2.Box, width: int, height: int) -> float:
    """The share of a ``width`` x ``height`` image a box covers, clipped to the image, in [0, 1]."""
    w = min(box.x2, width) - max(box.x1, 0.0)
    h = min(box.y2, height) - max(box.y1, 0.0)
    return max(0.0, w) * max(0.0, h) / float(width * height)


def model_score(detections: Sequence[common_pb2.Detection], width: int, height: int) -> tuple[bool, float]:
    """Whether a person wears the item (``model``): a ``person`` detection scoring >= 0.35 that covers >= 15 % of
    the image. Returns (yes, the best person's score x min(1, area share / 0.15)), (False, 0.0) without one."""
    best, yes = 0.0, False
    for d in detections:
        if d.label != "person":
            continue
        share = _area_share(d.box, width, height)
        best = max(best, float(d.score) * min(1.0, share / MODEL_MIN_AREA))
        yes = yes or (d.score >= MODEL_MIN_SCORE and share >= MODEL_MIN_AREA)
    return yes, best


def detail_score(
    grey: np.ndarray, detections: Sequence[common_pb2.Detection], width: int, height: int
) -> tuple[bool, float]:
    """Whether the image is a close-up (``detail``), and its score (see :func:`quality_attributes`).

    With objects: the largest object (score >= 0.3) whose box the frame cuts on at least three sides (within
    2 % of the border) is a close-up when it covers >= 60 % of the image; score = its area share. Without any
    object: texture in every part of the image (:func:`texture_uniformity` >= 0.6), as in a close-up of a
    fabric or a surface; score = the uniformity. Honest limits: a wide shot of one texture (a lawn, a gravel
    path) reads as a close-up, and a close-up of an object the detector does not know falls to the texture test.
    """
    confident = [d for d in detections if d.score >= DETAIL_MIN_SCORE]
    if confident:
        best = 0.0
        mx, my = DETAIL_BORDER * width, DETAIL_BORDER * height
        for d in confident:
            b = d.box
            cut = (b.x1 <= mx) + (b.y1 <= my) + (b.x2 >= width - mx) + (b.y2 >= height - my)
            if cut >= 3:
                best = max(best, _area_share(b, width, height))
        return best >= DETAIL_MIN_FILL, best
    uniformity = texture_uniformity(grey)
    return uniformity >= DETAIL_UNIFORMITY, uniformity


def texture_uniformity(grey: np.ndarray) -> float:
    """How evenly texture covers the image, in [0, 1]: on the grey image scaled to 512 px, the variance of the
    Laplacian of each cell of a 4 x 4 grid, then (weakest cell / median cell) / (1 + 100 / median), so a close-up
    of a textured surface (every cell sharp and alike) scores high, and a scene with sky, flat backgrounds or
    out-of-focus parts, or a blurry image, scores low. 0 for an image under 64 px on a side."""
    if min(grey.shape[:2]) < COLLAGE_MIN_SIDE:
        return 0.0
    small = _scaled(grey, BLUR_SIDE)
    lap = cv2.Laplacian(small, cv2.CV_64F)
    rows = np.array_split(np.arange(small.shape[0]), DETAIL_GRID)
    cols = np.array_split(np.arange(small.shape[1]), DETAIL_GRID)
    cells = np.array([lap[r[0] : r[-1] + 1, c[0] : c[-1] + 1].var() for r in rows for c in cols])
    median = float(np.median(cells))
    if median <= 0:
        return 0.0
    return float(cells.min() / median) / (1.0 + BLUR_THRESHOLD / median)


def _histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (OpenCV) between the 8 x 8 x 8-bin RGB histograms of two pixel blocks."""
    hists = [
        cv2.normalize(cv2.calcHist([np.ascontiguousarray(x)], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3), None)
        for x in (a, b)
    ]
    return float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA))
