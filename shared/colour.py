"""Colour analysis: named dominant colours, and colour descriptors for search by colour or palette.

- :func:`dominant_colours`: k-means (OpenCV ``cv2.kmeans``, k-means++ seeding) on the pixels of a
  downsampled image in CIE L*a*b* (D65, OpenCV's sRGB conversion), where Euclidean distance roughly
  follows perceived difference; each cluster centre is named by its nearest entry of :data:`PALETTE`
  (Euclidean L*a*b* distance), clusters with the same name are merged.
- :func:`colour_descriptor`: a soft-binned (trilinear) joint L*a*b* histogram of the image, mapped by
  square root (Hellinger). Its L2 norm is then exactly 1, and the cosine of two descriptors is the
  Bhattacharyya coefficient of the two colour distributions (1 = same palette, 0 = no colour in common).
- :func:`palette_descriptor`: the same descriptor for a given palette (hex values or names with weights),
  so "find images in red" or "in #d02020 and white" is a cosine search against image descriptors. For a
  single query colour, the cosine is close to the square root of the share of the image's pixels in
  that colour's bins, so images rank by how much of the colour they hold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from visearch.shared.errors import InvalidEventError

# --------------------------------------------------------------------------------------- named palette

# Common retail colour names (the facet values shops use) with a typical sRGB value each. Values are
# picked as what a product photo of that colour looks like, not the saturated CSS colour: a red shirt in
# a photo is about #c62828, never #ff0000.
PALETTE: dict[str, str] = {
    "black": "#141414",
    "dark grey": "#474747",
    "grey": "#808080",
    "light grey": "#c0c0c0",
    "white": "#f5f5f5",
    "red": "#c62828",
    "dark red": "#7f1d1d",
    "pink": "#f4a3bb",
    "hot pink": "#e0457b",
    "magenta": "#b5267f",
    "coral": "#f07b67",
    "orange": "#de6929",
    "peach": "#f6c09a",
    "yellow": "#f4d03f",
    "mustard": "#c9a227",
    "cream": "#f3ead2",
    "beige": "#d8c6a4",
    "khaki": "#b2a077",
    "tan": "#c19466",
    "taupe": "#816f61",
    "brown": "#7b4a2a",
    "dark brown": "#43281a",
    "olive": "#6b6b2e",
    "light green": "#9ccc65",
    "green": "#2e8b3e",
    "dark green": "#1e4d2b",
    "mint": "#a8e3c6",
    "teal": "#0f6a70",
    "turquoise": "#3fc1c9",
    "light blue": "#9cc3e6",
    "blue": "#2a5db0",
    "navy": "#1b2a4e",
    "purple": "#6a2c8e",
    "lavender": "#b9a6d9",
}
# Other spellings and names accepted by palette_descriptor.
ALIASES: dict[str, str] = {
    "gray": "grey",
    "dark gray": "dark grey",
    "light gray": "light grey",
    "charcoal": "dark grey",
    "silver": "light grey",
    "navy blue": "navy",
    "sky blue": "light blue",
    "maroon": "dark red",
    "burgundy": "dark red",
    "fuchsia": "magenta",
    "violet": "purple",
    "gold": "mustard",
    "camel": "tan",
    "ivory": "cream",
    "aqua": "turquoise",
    "cyan": "turquoise",
    "lime": "light green",
    "salmon": "coral",
}

_HEX = re.compile(r"^#?([0-9a-f]{6}|[0-9a-f]{3})$")


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[..., 3]`` -> float32 L*a*b* ``[..., 3]`` (L 0..100, a/b about -110..+110; D65)."""
    flat = (np.asarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0).astype(np.float32)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb))


def _lab_to_hex(lab: np.ndarray) -> str:
    rgb = cv2.cvtColor(np.asarray(lab, dtype=np.float32).reshape(1, 1, 3), cv2.COLOR_LAB2RGB).reshape(3)
    r, g, b = (int(round(float(np.clip(c, 0.0, 1.0)) * 255)) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def parse_colour(spec: str) -> tuple[str, tuple[int, int, int]]:
    """A colour given as a hex value (``"#cc0000"``, ``"cc0000"``, ``"#c00"``) or a palette name
    (case-insensitive; ``"dark-red"``, ``"Dark Red"`` and aliases such as ``"gray"``, ``"burgundy"`` work).

    Returns:
        ``(canonical, (r, g, b))``: the palette name or the lower-case ``#rrggbb``, and 0..255 sRGB.

    Raises:
        InvalidEventError: reason ``bad_colour``: neither a known name nor a valid hex value.
    """
    if not isinstance(spec, str):
        raise InvalidEventError(f"colour must be a string, got {type(spec).__name__}", reason="bad_colour")
    text = spec.strip().lower()
    match = _HEX.match(text)
    if match:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        rgb = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
        return f"#{digits}", rgb  # type: ignore[return-value]
    name = " ".join(re.split(r"[\s_\-]+", text)).strip()
    name = ALIASES.get(name, ALIASES.get(name.replace(" ", ""), name))
    if name not in PALETTE:
        squashed = {k.replace(" ", ""): k for k in PALETTE}  # "darkred" -> "dark red"
        name = squashed.get(name.replace(" ", ""), name)
    if name not in PALETTE:
        raise InvalidEventError(
            f"unknown colour {spec!r}: give #rrggbb or one of {', '.join(sorted(PALETTE))}", reason="bad_colour"
        )
    digits = PALETTE[name][1:]
    return name, (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


_PALETTE_NAMES = list(PALETTE)
_PALETTE_LAB = _srgb_to_lab(np.array([parse_colour(n)[1] for n in _PALETTE_NAMES], dtype=np.uint8))


def nearest_colour_name(lab: np.ndarray) -> str:
    """The :data:`PALETTE` name nearest to one L*a*b* colour ``[3]`` (Euclidean distance in L*a*b*, CIE76).

    CIE76 rather than CIEDE2000: CIEDE2000's chroma compression pulls muted browns and khakis of
    photos onto the greys; with this palette plain L*a*b* distance names them as a person would.
    """
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE_LAB - np.asarray(lab, dtype=np.float32), axis=1)))]


# ------------------------------------------------------------------------------------ dominant colours


@dataclass(frozen=True)
class ColourTag:
    """A named colour of an image.

    ``name``: a :data:`PALETTE` name; ``hex``: ``#rrggbb`` of the (pixel-weighted) mean colour of the
    merged clusters; ``fraction``: share of the image's pixels, 0..1 (the fractions of one image sum to 1).
    """

    name: str
    hex: str
    fraction: float


_DOMINANT_SIDE = 64  # longest side for k-means: ~3,000 pixels; enough for the palette of a photo (5 ms)
_KMEANS_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.5)


def _downsample(img: Image.Image, side: int) -> np.ndarray:
    """uint8 RGB array of ``img`` with its longest side at most ``side`` (area averaging, no aliasing)."""
    factor = max(img.size) // side
    if factor > 1:
        img = img.reduce(factor)  # box average by an integer factor first: 20x cheaper on large photos
    arr = np.asarray(img.convert("RGB"))
    h, w = arr.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        arr = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return arr


def dominant_colours(img: Image.Image, k: int = 5) -> list[ColourTag]:
    """The named dominant colours of an image, largest share first.

    Pixels of the image downsampled to at most 64 px (area averaging) are clustered into ``k`` clusters
    in CIE L*a*b* (OpenCV ``cv2.kmeans``, k-means++ seeding, fixed RNG seed: the result is deterministic);
    each centre is named by its nearest :data:`PALETTE` colour (L*a*b* distance) and clusters with the same
    name are merged.

    Args:
        img: RGB (or any mode Pillow converts to RGB) image of any size.
        k: number of k-means clusters, 1..32; at most ``k`` tags come back (fewer after merging, or when
            the image has fewer distinct colours).

    Returns:
        ``ColourTag`` list sorted by ``fraction`` descending; fractions sum to 1.

    Raises:
        ValueError: ``k`` outside 1..32.
    """
    if not 1 <= k <= 32:
        raise ValueError(f"k must be in 1..32, got {k}")
    rgb = _downsample(img, _DOMINANT_SIDE).reshape(-1, 3)
    # a flat image has one colour: k-means needs >= k distinct points (counted on packed RGB: 20x cheaper than
    # np.unique over L*a*b* rows, the same count as the conversion is one-to-one on 8-bit colours)
    k = min(k, len(np.unique(rgb.astype(np.int32) @ np.array([65536, 256, 1], dtype=np.int32))))
    lab = _srgb_to_lab(rgb)
    cv2.setRNGSeed(0)  # k-means++ seeding draws from OpenCV's RNG: same image, same tags
    _, labels, centres = cv2.kmeans(lab, k, None, _KMEANS_CRITERIA, 2, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    merged: dict[str, list[Any]] = {}  # name -> [pixel count, count-weighted L*a*b* sum]
    for centre, count in zip(centres, counts):
        if count == 0:
            continue
        name = nearest_colour_name(centre)
        entry = merged.setdefault(name, [0.0, np.zeros(3)])
        entry[0] += count
        entry[1] += count * centre
    total = counts.sum()
    tags = [ColourTag(name, _lab_to_hex(lab_sum / n), float(n / total)) for name, (n, lab_sum) in merged.items()]
    return sorted(tags, key=lambda t: (-t.fraction, t.name))


# ------------------------------------------------------------------------------------------ descriptors

# Joint L*a*b* histogram, 5 (L*) x 7 (a*) x 7 (b*) bins, all 20 units wide: centres L* 10..90, a*/b*
# -60..60. Beyond +-60 (only very saturated colours) values fall into the outermost bins. Odd a*/b* bin
# counts put the neutral axis (black, greys, white) on bin centres, so neutrals do not smear into four
# hues. 20-unit bins measured better than 30-unit ones at telling the red photos here from the orange ones.
_L_BINS, _AB_BINS = 5, 7
_L_CENTRES = np.linspace(10.0, 90.0, _L_BINS)  # bin width 20
_AB_CENTRES = np.linspace(-60.0, 60.0, _AB_BINS)  # bin width 20, like L*: isotropic bins
COLOUR_DIM = _L_BINS * _AB_BINS * _AB_BINS  # 245
_DESCRIPTOR_SIDE = 64


def _axis_weights(values: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear (tent) interpolation onto 1-D bin centres: lower index, upper index, upper weight."""
    pos = np.clip((values - centres[0]) / (centres[1] - centres[0]), 0.0, len(centres) - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(centres) - 2)
    return lo, lo + 1, pos - lo


def _soft_histogram(lab: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Trilinear soft-binned histogram ``[COLOUR_DIM]`` of L*a*b* points ``[N, 3]`` with weights ``[N]``."""
    axes = [
        _axis_weights(lab[:, 0], _L_CENTRES),
        _axis_weights(lab[:, 1], _AB_CENTRES),
        _axis_weights(lab[:, 2], _AB_CENTRES),
    ]
    hist = np.zeros(COLOUR_DIM, dtype=np.float64)
    for corner in range(8):
        index = np.zeros(len(lab), dtype=np.int64)
        weight = weights.astype(np.float64).copy()
        for axis, (lo, hi, frac) in enumerate(axes):
            upper = (corner >> axis) & 1
            index = index * (_L_BINS if axis == 0 else _AB_BINS) + (hi if upper else lo)
            weight *= frac if upper else 1.0 - frac
        hist += np.bincount(index, weights=weight, minlength=COLOUR_DIM)
    return hist


def _hellinger(hist: np.ndarray) -> np.ndarray:
    total = hist.sum()
    if total <= 0:
        raise ValueError("empty colour histogram")
    return np.sqrt(hist / total).astype(np.float32)


def colour_descriptor(img: Image.Image) -> np.ndarray:
    """Colour descriptor of an image for search by colour: float32 ``[COLOUR_DIM]`` (245), unit L2 norm.

    The image is downsampled to at most 64 px (area averaging), its pixels converted to CIE L*a*b* and
    soft-binned (trilinear) into a 5 (L*) x 7 (a*) x 7 (b*) histogram of 20-unit bins, normalised to sum 1 and mapped by
    square root. All values are >= 0; the cosine (dot product) of two descriptors is the Bhattacharyya
    coefficient of the two colour distributions, in 0..1.
    """
    lab = _srgb_to_lab(_downsample(img, _DESCRIPTOR_SIDE)).reshape(-1, 3)
    return _hellinger(_soft_histogram(lab, np.ones(len(lab))))


def palette_descriptor(colours: Sequence[tuple[str, float] | str]) -> np.ndarray:
    """Descriptor of a wanted palette, comparable by cosine with :func:`colour_descriptor` of images.

    Args:
        colours: entries ``(colour, weight)`` or a bare ``colour`` (weight 1); a colour is a hex value
            (``"#d02020"``) or a palette name (see :func:`parse_colour`); weights > 0, relative (they are
            normalised to sum 1), e.g. ``[("navy", 0.7), ("white", 0.3)]``.

    Returns:
        float32 ``[COLOUR_DIM]``, unit L2 norm, values >= 0.

    Raises:
        InvalidEventError: reason ``bad_colour``: empty list, unknown name, bad hex, or a weight that is
            not a finite number > 0.
    """
    if not colours:
        raise InvalidEventError("no colours given", reason="bad_colour")
    rgbs, weights = [], []
    for entry in colours:
        spec, weight = (entry, 1.0) if isinstance(entry, str) else entry
        try:
            weight = float(weight)
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(f"weight of {spec!r} is not a number: {weight!r}", reason="bad_colour") from exc
        if not np.isfinite(weight) or weight <= 0:
            raise InvalidEventError(f"weight of {spec!r} must be > 0, got {weight}", reason="bad_colour")
        rgbs.append(parse_colour(spec)[1])
        weights.append(weight)
    lab = _srgb_to_lab(np.array(rgbs, dtype=np.uint8))
    return _hellinger(_soft_histogram(lab, np.array(weights)))
