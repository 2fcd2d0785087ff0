"""A cheap signal that an image shows lines of text, so the search API runs OCR on a query only when it may
find some (PP-OCR's detector costs ~30-60 ms per query image on a CPU core; this check ~1-2 ms).

Method (a classic morphological text-line detector, as in OpenCV's text-region recipes): on a grey copy of
at most ``WORK_SIDE`` px, the morphological gradient marks strokes; Otsu's threshold binarises it; a wide,
flat closing joins the characters of a line; a connected component counts as a text line when it is
flat (width >= 2.5 x height), of a plausible glyph height, and partly but not wholly filled with stroke
pixels. It is a gate, not a reader: textures (brick, foliage) can pass it (OCR then runs and finds
nothing, at OCR's cost), very small or stylised text can slip through it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 320  # px: the check's working copy; text smaller than ~6 px there is below what the query OCR reads
MIN_LINE_HEIGHT = 5  # px at WORK_SIDE
MAX_LINE_HEIGHT_SHARE = 0.5  # of the working height: taller "lines" are objects, not text (a headline word may be 1/3)
MIN_LINE_ASPECT = 2.5
MIN_FILL, MAX_FILL = (
    0.3,
    0.95,
)  # stroke pixels in a line's box (known miss: very large bold letters, whose outlines fill less)


def text_lines(image: Image.Image) -> int:
    """How many text-line-like regions ``image`` (any mode and size) shows: an estimate for gating OCR.

    Returns:
        The count of components that look like lines of text (0: most likely no readable text).
    """
    grey = image.convert("L")
    scale = WORK_SIDE / max(grey.size)
    if scale < 1:
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.Resampling.BILINEAR
        )
    pixels = np.asarray(grey)
    if min(pixels.shape) < 2 * MIN_LINE_HEIGHT:
        return 0
    gradient = cv2.morphologyEx(pixels, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    _, strokes = cv2.threshold(gradient, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    lines = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    height_limit = MAX_LINE_HEIGHT_SHARE * pixels.shape[0]
    found = 0
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        if not MIN_LINE_HEIGHT <= h <= height_limit or w < MIN_LINE_ASPECT * h or w < 4 * MIN_LINE_HEIGHT:
            continue
        box = labels[y : y + h, x : x + w] == label
        fill = np.count_nonzero(strokes[y : y + h, x : x + w][box]) / float(w * h)
        if MIN_FILL <= fill <= MAX_FILL:
            found += 1
    return found


def likely_text(image: Image.Image, min_lines: int = 1) -> bool:
    """True when :func:`text_lines` finds at least ``min_lines`` line-like regions."""
    return text_lines(image) >= min_lines
