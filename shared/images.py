"""Reading untrusted images: fetch by URI, decode with limits, and preprocess for the models.

Decoding uses Pillow. Limits are checked on the header, before pixels are decoded, so a small file
that claims 20,000 x 20,000 pixels (a decompression bomb) is refused without allocating 1.2 GB.
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError, InvalidImageError

# We enforce our own pixel limit (ImageSettings.max_pixels) before decoding; Pillow's own check would
# raise its DecompressionBombError with a less useful message, or only warn.
Image.MAX_IMAGE_PIXELS = None

IMAGENET_SIZE = 224
RESIZE_SHORT_SIDE = 256  # 224 / 0.875: the usual ImageNet evaluation crop ratio


def read_uri(uri: str, settings: ImageSettings | None = None) -> bytes:
    """Read the bytes an image URI points to: a bare path, ``file://`` or ``http(s)://``.

    Raises:
        ImageFetchError: the scheme is not allowed, the file is missing, or the fetch failed.
        InvalidImageError: (reason ``image_too_large``) the content exceeds ``max_bytes``.
    """
    settings = settings or ImageSettings()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        if not settings.allow_file_uris:
            raise ImageFetchError(f"file URIs are disabled: {uri}", reason="scheme_not_allowed")
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageFetchError(f"cannot read {path}: {exc.strerror}", reason="image_not_found") from exc
        if size > settings.max_bytes:
            raise InvalidImageError(f"{size} bytes > limit {settings.max_bytes}", reason="image_too_large")
        return path.read_bytes()
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri, timeout=settings.fetch_timeout_s) as resp:  # noqa: S310 (scheme checked)
                data = resp.read(settings.max_bytes + 1)
        except OSError as exc:
            raise ImageFetchError(f"fetch failed for {uri}: {exc}", reason="image_fetch_failed") from exc
        if len(data) > settings.max_bytes:
            raise InvalidImageError(f"more than {settings.max_bytes} bytes at {uri}", reason="image_too_large")
        return data
    raise ImageFetchError(f"unsupported URI scheme {parsed.scheme!r} in {uri}", reason="scheme_not_allowed")


def decode_image(data: bytes, settings: ImageSettings | None = None) -> Image.Image:
    """Decode encoded image bytes to an RGB ``PIL.Image`` (EXIF orientation applied, alpha over white).

    The result's ``format`` attribute keeps the encoded format (``JPEG``, ``PNG``, ``WEBP``...).

    Any format Pillow reads (JPEG, PNG, WebP, GIF first frame, BMP, TIFF...). CMYK, palette, grey,
    16-bit and alpha images are converted to 8-bit RGB.

    Raises:
        InvalidImageError: reasons ``empty_image`` (0 bytes), ``image_too_large`` (> max_bytes),
            ``decompression_bomb`` (width*height > max_pixels), ``undecodable_image`` (not an image),
            ``truncated_image`` (header fine, pixel data cut short or corrupt; Pillow decodes WebP while
            opening it, so a truncated WebP reports ``undecodable_image``).
    """
    settings = settings or ImageSettings()
    if not data:
        raise InvalidImageError("image is empty (0 bytes)", reason="empty_image")
    if len(data) > settings.max_bytes:
        raise InvalidImageError(f"image is {len(data)} bytes > limit {settings.max_bytes}", reason="image_too_large")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise InvalidImageError("bytes are not a recognised image format", reason="undecodable_image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"image header is corrupt: {exc}", reason="undecodable_image") from exc
    encoded_format = img.format or ""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image has no pixels ({width}x{height})", reason="undecodable_image")
    if width * height > settings.max_pixels:
        raise InvalidImageError(
            f"image is {width}x{height} = {width * height} pixels > limit {settings.max_pixels} (decompression bomb)",
            reason="decompression_bomb",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not fatal
            img.load()
            img = ImageOps.exif_transpose(img)
    except OSError as exc:
        raise InvalidImageError(f"image data is truncated or corrupt: {exc}", reason="truncated_image") from exc
    except (ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"image data is corrupt: {exc}", reason="undecodable_image") from exc
    rgb = _to_rgb(img)
    rgb.format = encoded_format
    return rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255.0).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def preprocess_imagenet(img: Image.Image) -> np.ndarray:
    """EfficientNet-Lite0 input for one RGB image, exactly as the model was trained (TF EfficientNet-Lite):

    resize the short side to 256 px (bicubic), centre-crop 224 x 224, scale to ``(x / 255 - 0.5) / 0.5``.

    Returns:
        float32 array ``[3, 224, 224]``, channels RGB, values in [-1, 1].
    """
    width, height = img.size
    scale = RESIZE_SHORT_SIDE / min(width, height)
    resized = img.resize((max(IMAGENET_SIZE, round(width * scale)), max(IMAGENET_SIZE, round(height * scale))), Image.BICUBIC)
    left = (resized.width - IMAGENET_SIZE) // 2
    top = (resized.height - IMAGENET_SIZE) // 2
    crop = resized.crop((left, top, left + IMAGENET_SIZE, top + IMAGENET_SIZE))
    arr = np.asarray(crop, dtype=np.float32) / 255.0
    return ((arr - 0.5) / 0.5).transpose(2, 0, 1).copy()


def image_bytes(image, settings: ImageSettings | None = None) -> bytes:
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
    raise InvalidEventError("no image given (set image.content or image.uri)", reason="missing_image")


def decode_request_images(images, settings: ImageSettings | None = None, max_images: int = 64) -> list[Image.Image]:
    """Decode the ``visearch.v1.Image`` messages of a request, in order.

    Raises:
        InvalidEventError: (``empty_request``) no image, or (``too_many_images``) more than ``max_images``.
        InvalidImageError, ImageFetchError: the first bad image, its message prefixed with its index.
    """
    from visearch.shared.errors import InvalidEventError, VisearchError

    if not images:
        raise InvalidEventError("the request needs at least one image", reason="empty_request")
    if len(images) > max_images:
        raise InvalidEventError(f"at most {max_images} images per request, got {len(images)}", reason="too_many_images")
    decoded = []
    for index, image in enumerate(images):
        try:
            decoded.append(decode_image(image_bytes(image, settings), settings))
        except VisearchError as exc:
            raise type(exc)(f"image {index}: {exc}", reason=exc.reason) from exc
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
        raise InvalidEventError(f"box {tuple(box)} is smaller than {min_side} px inside a {img.width}x{img.height} image",
                                reason="bad_box")
    return img.crop((x1, y1, x2, y2))
