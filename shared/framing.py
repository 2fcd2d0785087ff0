"""Find the photo inside a framed image: a screenshot of a shop page, a product photo pasted into a page.

"Search with a screenshot" queries show the product photo small, surrounded by a page: a near-uniform
background, a header bar, a title, a price, buttons. Embedding the whole page mostly embeds the page.
:func:`main_region` finds the photo-like rectangle so a caller can crop to it; it answers None for an
ordinary photo (nothing to trim), so it can run on every image query.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from visearch.shared.images import _to_rgb

MIN_SIDE = 96  # px: an image with a shorter side (a 28 x 28 thumbnail) holds no page to trim
WORK_SIDE = 256  # px: the working copy's longest side, at most
TOLERANCE = 16  # 0-255 per channel: the most a pixel may differ from a page colour and still be page
MIN_TOLERANCE = 3  # 0-255 per channel: the least tight tolerance (a flat page: rendered, PNG)
NOISE_FACTOR = 3.0  # the tight tolerance: this times the median deviation of the colour's border pixels
LOOSE_TOLERANCE = 8  # 0-255 per channel: the least loose tolerance (the page the regions are cut from)
MIN_BORDER_SHARE = 0.50  # of the border pixels: the page colours together match at least this much of it
SECOND_SHARE = 0.10  # of the border pixels: each page colour (the page, a header bar, a sidebar) matches this
MIN_AREA, MAX_AREA = 0.04, 0.88  # the region's box, as a fraction of the image area
MAX_ASPECT = 4.0  # the box's width / height lies within [1 / MAX_ASPECT, MAX_ASPECT]
SPAN_FILL = 0.5  # the largest region fills this much of a box over MAX_AREA: an ordinary photo, None
MIN_FILL = 0.6  # the region's pixels / its box's area
MIN_SIDE_COVER = 0.6  # three sides of the box are each covered this much by the region (see _side_cover)
TRIM_COVER = 0.9  # the box is peeled until each of its sides is covered this much by the region
GROW_COVER = 0.9  # a row/column next to the box joins it when this much of it differs from the tight page
GROW_LIMIT = 0.25  # by at most this fraction of the region's height/width per side
MIN_TEXTURE = 8.0  # luminance standard deviation (0-255) inside the box: a flat bar or button is no photo


def main_region(
    image: Image.Image,
    *,
    min_side: int = MIN_SIDE,
    work_side: int = WORK_SIDE,
    tolerance: float = TOLERANCE,
    min_area: float = MIN_AREA,
    max_area: float = MAX_AREA,
    max_aspect: float = MAX_ASPECT,
    min_fill: float = MIN_FILL,
    min_side_cover: float = MIN_SIDE_COVER,
    min_texture: float = MIN_TEXTURE,
) -> tuple[int, int, int, int] | None:
    """The box of the dominant photo-like region of a framed image (a screenshot, a page), or None.

    A heuristic (border background estimate + morphology + connected components), not a learned detector:

    1. Downscale: an integer box filter (``Image.reduce``) brings the longest side to at most ``work_side``
       px (a 400 x 300 image: 200 x 150; a 1500 x 950 screenshot: 250 x 159).
    2. Page colours from the 1 px border of that copy: the most common colour (4-level bins, then the
       median of its bin), then again among the border pixels it does not match, up to three colours (the
       page, light or dark; a header bar; a sidebar), each matching >= 10 % of the border and together
       >= 50 % of it (else the border is no page: an ordinary photo, None). Each colour gets a tight
       tolerance, 3 x the median deviation of its border pixels clamped to [3, ``tolerance``] (3 on a flat
       rendered page, more on a noisy JPEG), and a loose one, at least 8.
    3. Background = pixels within a page colour's loose tolerance that connect to the image border through
       such pixels (a dark sky inside the photo is not taken for the dark header, a white shirt inside it
       not for the white page). Foreground = the rest, opened with a 3 x 3 square: text strokes, rules and
       anti-aliased edges (1-2 px wide at this scale) vanish.
    4. Connected components of the foreground, largest first. If the largest one fills (>= 50 %) a box
       covering more than ``max_area`` of the image: the image's own content fills it, None. Else the first
       component whose box covers ``min_area``-``max_area`` of the image, has an aspect ratio within
       [1/``max_aspect``, ``max_aspect``], is filled (pixels / box area >= ``min_fill``) with three of the
       box's four sides covered >= ``min_side_cover`` (a pasted photo fills its rectangle edge to edge,
       except where its own edge matches the page; a product cut out on white touches each side of its box
       at one point), touches at most one side of the image (the lower half of a photo under a uniform sky
       touches three) and is textured (luminance standard deviation inside >= ``min_texture``: a flat
       banner or button is not a photo) is the region.
    5. Its box is peeled, least-covered outer row or column first, until every side is >= 90 % covered (a
       price line or button joined below the photo goes), then settled against the page at the tight
       tolerance: a side peeled into rows that are still photo goes back, and each side grows over rows or
       columns that differ from the tight page on >= 90 % of their span (a light-grey sky at the photo's
       edge that the loose tolerance took for a light-grey page).

    Args:
        image: a PIL image of any mode and size (read, not modified; other modes than RGB and L are
            converted as the services decode images: alpha over white).
        min_side: an image with a side shorter than this (px) gives None (too small to hold a page).
        work_side: longest side (px) of the working copy at most; the box is exact to about one working
            pixel, ``ceil(max(image.size) / work_side)`` px of ``image`` (6 px on a 1500 x 950 screenshot).
        tolerance: largest per-channel distance (0-255) at which a pixel matches a page colour.
        min_area, max_area: bounds (0-1) of the region's box area as a fraction of the image area.
        max_aspect: bound (>= 1) of the box's width/height ratio and of its inverse.
        min_fill: least fraction (0-1) of the box covered by the region's pixels.
        min_side_cover: least fraction (0-1) of each of three sides of the box the region reaches.
        min_texture: least luminance standard deviation (0-255) inside the box.

    Returns:
        ``(x1, y1, x2, y2)``: integer pixel coordinates of ``image``, ``0 <= x1 < x2 <= width`` and
        ``0 <= y1 < y2 <= height`` (x2, y2 exclusive), when the image is framed. None when a side is
        shorter than ``min_side`` (a 28 x 28 Fashion-MNIST item); when the border has no dominant
        near-uniform colours (an ordinary photo); when the largest foreground region fills more than
        ``max_area`` of the image (nothing to trim, e.g. a product on a white studio background that fills
        the frame); or when no region passes the tests (a page without a photo, a cut-out product). Known
        limits: a photo whose edges are the page's exact colour (a product on white pasted into a white
        page, a black-sky photo on a black page) has no visible rectangle, so it gives None or a box
        short of that edge; a rectangular object on a plain background with wide margins (a board, a
        framed print) comes back as a region, which is harmless for search.

    Cost, measured with timeit (best of 5 x 50 calls, one OpenCV thread, on a busy shared 2-core machine):
    0.3-0.8 ms for a 400 x 300 photo (None after step 2), 1.4-1.8 ms for a 400 x 300 shop page,
    2.5-3.1 ms for a 1280-1600 x 900-1000 screenshot (most of it the downscale and the up to
    seven connected-component passes over the working copy).
    """
    width, height = image.size
    if min(width, height) < min_side:
        return None
    factor = -(-max(width, height) // work_side)  # ceil: one integer box filter, no further resampling
    if image.mode not in ("RGB", "L"):
        image = _to_rgb(image)  # as the services decode (alpha over white, 16-bit and float scaled)
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    sh, sw = pixels.shape[:2]

    colours = _page_colours(pixels, tolerance)
    if not colours:
        return None
    background = np.zeros((sh, sw), dtype=bool)
    for colour, _, loose in colours:
        background |= _border_connected(_near(pixels, colour, loose))
    mask = cv2.morphologyEx((~background).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    total = float(sh * sw)
    grey = None
    for rank, label in enumerate(1 + np.argsort(-stats[1:count, cv2.CC_STAT_AREA], kind="stable")):
        x, y, w, h, area = (int(v) for v in stats[label])
        box_area = w * h
        if box_area > max_area * total:
            if rank == 0 and area >= SPAN_FILL * box_area:
                return None  # the largest foreground region fills the image: an ordinary photo
            continue
        if area < min_fill * min_area * total:
            break  # sorted by pixel count: no later component can be large and filled enough
        if box_area < min_area * total or not 1 / max_aspect <= w / h <= max_aspect or area < min_fill * box_area:
            continue
        region = labels[y : y + h, x : x + w] == label
        if sorted(_side_cover(region))[1] < min_side_cover:
            continue
        if (x <= 0) + (y <= 0) + (x + w >= sw) + (y + h >= sh) > 1:
            continue
        if grey is None:
            grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        if float(grey[y : y + h, x : x + w].std()) < min_texture:
            continue
        page = np.zeros((sh, sw), dtype=bool)  # the page at the tight tolerances
        for colour, tight, _ in colours:
            page |= _border_connected(_near(pixels, colour, tight))
        tx1, ty1, tx2, ty2 = _trim(region)
        x1, y1, x2, y2 = _settle((x + tx1, y + ty1, x + tx2, y + ty2), (x, y, x + w, y + h), ~page)
        return x1 * factor, y1 * factor, min(width, x2 * factor), min(height, y2 * factor)
    return None


def _page_colours(pixels: np.ndarray, tolerance: float) -> list[tuple[np.ndarray, float, float]]:
    """The page colours of an (H, W, 3) uint8 image from its 1 px border, each with its tight and loose
    tolerance (see :func:`main_region`, step 2); [] when they cover < MIN_BORDER_SHARE of the border."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]]).astype(np.int16)
    total = len(border)
    colours: list[tuple[np.ndarray, float, float]] = []
    remaining = border
    while len(colours) < 3 and len(remaining) >= SECOND_SHARE * total:
        q = (remaining >> 2).astype(np.int32)
        keys = (q[:, 0] << 12) | (q[:, 1] << 6) | q[:, 2]
        values, counts = np.unique(keys, return_counts=True)
        colour = np.median(remaining[keys == values[counts.argmax()]], axis=0)
        distance = np.abs(remaining - colour).max(axis=1)
        noise = float(np.median(distance[distance <= tolerance / 2]))  # not a neighbouring header's offset
        tight = min(float(tolerance), max(MIN_TOLERANCE, NOISE_FACTOR * noise))
        loose = min(float(tolerance), max(tight, LOOSE_TOLERANCE))
        near = distance <= loose
        if near.sum() < SECOND_SHARE * total:
            break
        colours.append((colour, tight, loose))
        remaining = remaining[~near]
    return colours if total - len(remaining) >= MIN_BORDER_SHARE * total else []


def _near(pixels: np.ndarray, colour: np.ndarray, tolerance: float) -> np.ndarray:
    """(H, W) uint8, 255 where every channel of ``pixels`` lies within ``tolerance`` of ``colour``."""
    low = np.clip(np.ceil(colour - tolerance), 0, 255).astype(np.uint8)
    high = np.clip(np.floor(colour + tolerance), 0, 255).astype(np.uint8)
    return cv2.inRange(pixels, low, high)


def _border_connected(near: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of the uint8 mask ``near`` connected (4-connectivity) to the image border."""
    count, labels = cv2.connectedComponents(near, connectivity=4)
    touches = np.zeros(count, dtype=bool)
    touches[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    touches[0] = False
    return touches[labels]


def _trim(region: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x1, y1, x2, y2, exclusive) of the bool ``region`` peeled greedily, its least-covered outer row
    or column first, until each of its four sides is covered >= TRIM_COVER: drops a price line or button
    joined to the photo below it, and a partly eaten edge (which :func:`_settle` takes back if it is photo)."""
    counts = region.astype(np.int32)
    rows = np.pad(counts.cumsum(axis=1), ((0, 0), (1, 0)))  # rows[r, x] = region pixels of row r left of x
    cols = np.pad(counts.cumsum(axis=0), ((1, 0), (0, 0)))  # cols[y, c] = region pixels of column c above y
    x1, y1, x2, y2 = 0, 0, region.shape[1], region.shape[0]
    while x2 - x1 > 2 and y2 - y1 > 2:
        w, h = x2 - x1, y2 - y1
        sides = (
            (rows[y1, x2] - rows[y1, x1]) / w,
            (rows[y2 - 1, x2] - rows[y2 - 1, x1]) / w,
            (cols[y2, x1] - cols[y1, x1]) / h,
            (cols[y2, x2 - 1] - cols[y1, x2 - 1]) / h,
        )
        worst = int(np.argmin(sides))
        if sides[worst] >= TRIM_COVER:
            break
        if worst == 0:
            y1 += 1
        elif worst == 1:
            y2 -= 1
        elif worst == 2:
            x1 += 1
        else:
            x2 -= 1
    return x1, y1, x2, y2


def _settle(
    box: tuple[int, int, int, int], component: tuple[int, int, int, int], differs: np.ndarray
) -> tuple[int, int, int, int]:
    """The final box from ``box`` (x1, y1, x2, y2, exclusive), trimmed out of the region's box ``component``.

    Each side goes back to the component's edge when the row/column just outside it is still mostly
    (>= half) photo (``differs``, (H, W) bool: not page at the tight tolerance): a partly eaten edge, not a
    price line beyond a gap of page. Then each side grows over the rows/columns just outside it that differ
    on >= GROW_COVER of their span, by at most GROW_LIMIT of the component's size: the strip of a photo
    edge that the loose tolerance took for page (a light sky on a light-grey page)."""
    x1, y1, x2, y2 = box
    cx1, cy1, cx2, cy2 = component
    sh, sw = differs.shape
    if y1 > 0 and differs[y1 - 1, x1:x2].mean() >= 0.5:
        y1 = cy1
    if y2 < sh and differs[y2, x1:x2].mean() >= 0.5:
        y2 = cy2
    if x1 > 0 and differs[y1:y2, x1 - 1].mean() >= 0.5:
        x1 = cx1
    if x2 < sw and differs[y1:y2, x2].mean() >= 0.5:
        x2 = cx2
    dy, dx = int(GROW_LIMIT * (cy2 - cy1)), int(GROW_LIMIT * (cx2 - cx1))
    top, bottom, left, right = max(0, cy1 - dy), min(sh, cy2 + dy), max(0, cx1 - dx), min(sw, cx2 + dx)
    while y1 > top and differs[y1 - 1, x1:x2].mean() >= GROW_COVER:
        y1 -= 1
    while y2 < bottom and differs[y2, x1:x2].mean() >= GROW_COVER:
        y2 += 1
    while x1 > left and differs[y1:y2, x1 - 1].mean() >= GROW_COVER:
        x1 -= 1
    while x2 < right and differs[y1:y2, x2].mean() >= GROW_COVER:
        x2 += 1
    return x1, y1, x2, y2


def _side_cover(region: np.ndarray, band: int = 2) -> tuple[float, float, float, float]:
    """For each side of ``region``'s box (top, bottom, left, right): the fraction of its length along which
    the region has a pixel within ``band`` px of that side."""
    return (
        float(region[:band].any(axis=0).mean()),
        float(region[-band:].any(axis=0).mean()),
        float(region[:, :band].any(axis=1).mean()),
        float(region[:, -band:].any(axis=1).mean()),
    )
