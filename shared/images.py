"""Reading untrusted images: fetch by URI, decode with limits, and preprocess for the models.

Decoding uses Pillow. Limits are checked on the header, before pixels are decoded, so a small file
that claims 20,000 x 20,000 pixels (a decompression bomb) is refused without allocating 1.2 GB.
"""

from __future__ import annotations

import io
import math
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError, InvalidImageError
from visearch.shared.fetch import fetch_image
from visearch.v1 import common_pb2

# We enforce our own pixel limit (ImageSettings.max_pixels) before decoding; Pillow's own check would
# raise its DecompressionBombError with a less useful message, or only warn.
Image.MAX_IMAGE_PIXELS = None

IMAGENET_SIZE = 224
RESIZE_SHORT_SIDE = 256  # 224 / 0.875: the usual ImageNet evaluation crop ratio


def read_uri(uri: str, settings: ImageSettings | None = None) -> bytes:
    """Read the bytes an image URI points to: ``http(s)://``, or ``file://`` and bare paths when enabled.

    http(s) URLs go through :class:`visearch.shared.fetch.ImageFetcher` (SSRF rules: address checks
    after DNS and on every redirect, allowlists, size/time/redirect limits, content sniffing). File URIs
    and bare paths are read only when ``settings.allow_file_uris`` is true (off by default: a service
    must not read local files named by an untrusted event; the CLI enables it for its own folders).

    Raises:
        ImageFetchError: reasons ``scheme_not_allowed`` (another scheme, or a file URI while disabled),
            ``image_not_found`` (missing file), and for http(s) ``address_not_allowed``,
            ``too_many_redirects``, ``fetch_timeout``, ``not_an_image``, ``invalid_uri``,
            ``image_fetch_failed``.
        InvalidImageError: (reason ``image_too_large``) the content exceeds ``max_bytes``.
    """
    settings = settings or ImageSettings()
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return fetch_image(uri, settings)
    if scheme in ("", "file"):
        if not settings.allow_file_uris:
            raise ImageFetchError(
                f"file URIs and paths are disabled (VISEARCH_IMAGE_ALLOW_FILE_URIS=false): {uri} (scheme_not_allowed)",
                reason="scheme_not_allowed",
            )
        path = Path(urllib.parse.unquote(parsed.path) if scheme == "file" else uri)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageFetchError(f"cannot read {path}: {exc.strerror}", reason="image_not_found") from exc
        if size > settings.max_bytes:
            raise InvalidImageError(f"{size} bytes > limit {settings.max_bytes}", reason="image_too_large")
        return path.read_bytes()
    raise ImageFetchError(
        f"unsupported URI scheme {parsed.scheme!r} in {uri} (only http, https) (scheme_not_allowed)",
        reason="scheme_not_allowed",
    )


# The formats decode_image accepts (Pillow format names; the JPEG opener also yields MPO, the
# multi-picture JPEG many cameras write). Pillow can read many more (EPS through Ghostscript, PSD,
# ICO, PCX, FITS...): those plugins are extra attack surface for untrusted bytes and no catalogue
# needs them, so they are refused.
DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def decode_image(data: bytes, settings: ImageSettings | None = None, min_side: int = 0) -> Image.Image:
    """Decode encoded image bytes to an RGB ``PIL.Image`` (EXIF orientation applied, alpha over white).

    With ``min_side`` > 0, a JPEG is decoded in draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8,
    Pillow's ``Image.draft``) to the smallest scale whose short side is still >= ``min_side`` pixels:
    for a 1411 x 1411 photo and ``min_side`` 256, 353 x 353, decoded about 10x faster. Other formats,
    and JPEGs already small, decode at full size. Only for callers that resize the whole image below
    ``min_side`` anyway (a global embedding), not for crops in the original's pixel coordinates.

    The result's ``format`` attribute keeps the encoded format (``JPEG``, ``PNG``, ``WEBP``...), and its
    ``info["original_size"]`` the full-size image's ``(width, height)`` as displayed (EXIF orientation
    applied), also after a draft-mode decode: the scale between the two pixel grids.

    Formats: JPEG (and MPO), PNG, WebP, GIF (first frame), BMP, TIFF (:data:`DECODABLE_FORMATS`).
    CMYK, palette, grey, 1-bit, 16-bit, 32-bit integer, float and alpha images are converted to 8-bit RGB.
    Whatever the bytes, the result is an RGB image of at most ``max_pixels`` pixels, or an
    InvalidImageError: no other exception escapes (Pillow's plugins raise many kinds on malformed input).
    Error messages end with the reason in parentheses, e.g. ``... (truncated_image)``.

    Raises:
        InvalidImageError: reasons ``empty_image`` (0 bytes), ``image_too_large`` (> max_bytes),
            ``decompression_bomb`` (width*height > max_pixels, or a PNG text/ICC chunk that inflates
            past Pillow's limit), ``undecodable_image`` (not an image, a format not in
            DECODABLE_FORMATS, or a corrupt header), ``truncated_image`` (header fine, pixel data cut
            short or corrupt; Pillow decodes WebP while opening it, so a truncated WebP reports
            ``undecodable_image``).
    """
    settings = settings or ImageSettings()
    if not data:
        raise _invalid("image is empty (0 bytes)", "empty_image")
    if len(data) > settings.max_bytes:
        raise _invalid(f"image is {len(data)} bytes > limit {settings.max_bytes}", "image_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data", "Truncated File Read": not fatal
            img: Image.Image = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
    except UnidentifiedImageError as exc:
        raise _invalid(
            f"bytes are not an image in a supported format ({', '.join(DECODABLE_FORMATS)})", "undecodable_image"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 (OSError, SyntaxError, struct.error, TypeError... from plugins)
        raise _corrupt(exc, "image header is corrupt", "undecodable_image") from exc
    encoded_format = img.format or ""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _invalid(f"image has no pixels ({width}x{height})", "undecodable_image")
    if width * height > settings.max_pixels:
        raise _invalid(
            f"image is {width}x{height} = {width * height} pixels > limit {settings.max_pixels}", "decompression_bomb"
        )
    if min_side > 0 and encoded_format == "JPEG" and min(width, height) >= 2 * min_side:
        scale = min_side / min(width, height)
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))  # libjpeg picks the scale >= this
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not fatal
            img.load()
            loaded_size = img.size
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except OSError as exc:
        raise _invalid(f"image data is truncated or corrupt: {exc}", "truncated_image") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 (ValueError, EOFError, TypeError, IndexError... from plugins)
        raise _corrupt(exc, "image data is corrupt", "undecodable_image") from exc
    if rgb.width * rgb.height > settings.max_pixels:  # a plugin whose decoded size differs from its header
        raise _invalid(
            f"decoded image is {rgb.width}x{rgb.height} pixels > limit {settings.max_pixels}", "decompression_bomb"
        )
    rgb.format = encoded_format
    rotated = rgb.size != loaded_size  # exif_transpose turned it by 90 or 270 degrees
    rgb.info["original_size"] = (height, width) if rotated else (width, height)
    return rgb


def _corrupt(exc: Exception, what: str, reason: str) -> InvalidImageError:
    """The InvalidImageError for an exception a Pillow plugin raised on malformed bytes."""
    if isinstance(exc, ValueError) and "Decompressed data too large" in str(exc):  # PNG zTXt/iCCP/iTXt bomb
        return _invalid(f"image metadata inflates too far: {exc}", "decompression_bomb")
    return _invalid(f"{what}: {type(exc).__name__}: {exc}", reason)


def _invalid(message: str, reason: str) -> InvalidImageError:
    """An InvalidImageError whose message ends with its reason, so a gRPC status message names it."""
    return InvalidImageError(f"{message} ({reason})", reason=reason)


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode: integer and float modes are scaled by their maximum (negative
    values and NaN become 0), alpha is composited over white."""
    if img.mode.startswith("I") or img.mode == "F":  # I;16*, I (32-bit signed), F (32-bit float)
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(arr, 0.0, None, out=arr)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255.0).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def preprocess_imagenet(img: Image.Image) -> np.ndarray:
    """EfficientNet-Lite0 input for one RGB image, exactly as the model was trained (TF EfficientNet-Lite):

    resize the short side to 256 px (bicubic), centre-crop 224 x 224, scale to ``(x / 255 - 0.5) / 0.5``.

    Only the source region under the crop is resampled (Pillow's ``resize(box=...)``): the same pixels
    (within one grey level) as resizing the whole image and cropping, without building the resized
    image, which for a 10,000 x 1 strip was 2,560,000 x 256 pixels (2 GB, 20 s).

    Returns:
        float32 array ``[3, 224, 224]``, channels RGB, values in [-1, 1].
    """
    width, height = img.size
    scale = RESIZE_SHORT_SIDE / min(width, height)
    out_w, out_h = max(IMAGENET_SIZE, round(width * scale)), max(IMAGENET_SIZE, round(height * scale))
    left, top = (out_w - IMAGENET_SIZE) // 2, (out_h - IMAGENET_SIZE) // 2
    sx, sy = width / out_w, height / out_h  # resized pixel -> source pixel
    box = (left * sx, top * sy, (left + IMAGENET_SIZE) * sx, (top + IMAGENET_SIZE) * sy)
    crop = img.resize((IMAGENET_SIZE, IMAGENET_SIZE), Image.Resampling.BICUBIC, box=box)
    arr = np.asarray(crop, dtype=np.float32) / 255.0
    return ((arr - 0.5) / 0.5).transpose(2, 0, 1).copy()


def image_bytes(image: common_pb2.Image, settings: ImageSettings | None = None) -> bytes:
    """Encoded bytes of a ``visearch.v1.Image`` message: its inline ``content`` or what its ``uri`` points to.

    Raises:
        InvalidEventError: (reason ``missing_image``) neither is set.
        ImageFetchError, InvalidImageError: see :func:`read_uri`.
    """
    from visearch.shared.errors import InvalidEventError

    source = image.WhichOneof("source")
    if source == "content":
        return image.content
    if source == "uri" and image.uri:
        return read_uri(image.uri, settings)
    raise InvalidEventError("no image given: set image.content or image.uri (missing_image)", reason="missing_image")


def decode_request_images(
    images: Sequence[common_pb2.Image], settings: ImageSettings | None = None, max_images: int = 64, min_side: int = 0
) -> list[Image.Image]:
    """Decode the ``visearch.v1.Image`` messages of a request, in order (``min_side``: see :func:`decode_image`).

    Raises:
        InvalidEventError: (``empty_request``) no image, or (``too_many_images``) more than ``max_images``.
        InvalidImageError, ImageFetchError: the first bad image, its message prefixed with its index
            and ending with its reason in parentheses.
    """
    from visearch.shared.errors import InvalidEventError, VisearchError

    if not images:
        raise InvalidEventError("the request needs at least one image", reason="empty_request")
    if len(images) > max_images:
        raise InvalidEventError(f"at most {max_images} images per request, got {len(images)}", reason="too_many_images")
    decoded = []
    for index, image in enumerate(images):
        try:
            decoded.append(decode_image(image_bytes(image, settings), settings, min_side))
        except VisearchError as exc:
            suffix = "" if f"({exc.reason})" in str(exc) else f" ({exc.reason})"
            raise type(exc)(f"image {index}: {exc}{suffix}", reason=exc.reason) from exc
    return decoded


def crop_box(img: Image.Image, box: tuple[float, float, float, float], min_side: int = 8) -> Image.Image:
    """The part of ``img`` inside ``box`` (x1, y1, x2, y2 in pixels), clipped to the image.

    Raises:
        InvalidEventError: (reason ``bad_box``) the clipped box is narrower or lower than ``min_side`` pixels.
    """
    from visearch.shared.errors import InvalidEventError

    x1, y1 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x2, y2 = min(img.width, int(round(box[2]))), min(img.height, int(round(box[3])))
    if x2 - x1 < min_side or y2 - y1 < min_side:
        raise InvalidEventError(
            f"box {tuple(box)} is smaller than {min_side} px inside a {img.width}x{img.height} image", reason="bad_box"
        )
    return img.crop((x1, y1, x2, y2))
