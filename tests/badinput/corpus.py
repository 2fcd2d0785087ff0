"""The bad-input corpus: every kind of malformed, hostile or merely unusual input the platform must
survive, each with the outcome it must get.

Nothing binary is committed: every case is made at test time from real photos (scikit-image's
``chelsea`` cat and ``rocket``, the same files the photo catalogue uses) or from small hand-made
byte strings. Two families:

* :data:`IMAGE_CASES`: a ``visearch.v1.Image`` (inline bytes, or a URI). Through a gRPC API (EmbedImage,
  Detect, Classify, Search, SimilarTo) a bad one fails the call with ``status`` and a message naming
  ``reason``; through the pipeline its upsert event lands in the DLQ of the first image stage with
  ``reason`` in the ``visearch-dlq-reason`` header. An ``ok`` case (valid but unusual: CMYK, 16-bit,
  alpha, EXIF-rotated, 10000x1...) is answered and indexed, as RGB of ``size`` pixels.
* :data:`EVENT_CASES`: raw Kafka messages (value bytes and headers) published to the images topic.
  ``stage`` says which check refuses them: ``decode`` (the first worker, before any model runs),
  ``image`` (the first image stage), ``indexer``, or ``publish`` (the publisher refuses to send it).

``python -m tests.badinput.corpus`` prints the Markdown tables of docs/reliability.md ("Bad input");
``python -m tests.badinput.corpus --write`` replaces them there (between the ``corpus-table`` markers).
"""

from __future__ import annotations

import io
import math
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from visearch.offline.datasets import photo_catalogue
from visearch.shared.config import ImageSettings
from visearch.shared.transport import HEADER_SCHEMA
from visearch.v1 import common_pb2, events_pb2, search_pb2

OK = "ok"
CAT_SIZE = (451, 300)  # scikit-image's chelsea.png, width x height
Kind = events_pb2.ImageEvent


# ------------------------------------------------------------------------------------------ sources


class Photos:
    """The real photos the corpus is made from, and a folder for cases delivered as files.

    Args:
        tmp_dir: where file-URI cases write their bytes (a test's ``tmp_path``).

    Raises:
        AssertionError: scikit-image's photos are not installed (``make setup`` installs the data extra).
    """

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = Path(tmp_dir)
        by_id = {item.image_id: item for item in photo_catalogue()}
        missing = {"photo-chelsea", "photo-rocket"} - set(by_id)
        assert not missing, f"photos missing (run make setup): {sorted(missing)}"
        self._cat_path, self._rocket_path = Path(by_id["photo-chelsea"].uri), Path(by_id["photo-rocket"].uri)

    @cached_property
    def cat(self) -> Image.Image:
        """The chelsea photo, RGB, 451 x 300."""
        return Image.open(self._cat_path).convert("RGB")

    @cached_property
    def rocket_jpeg(self) -> bytes:
        """A real JPEG file as its encoder wrote it (640 x 427)."""
        return self._rocket_path.read_bytes()

    def encode(self, fmt: str, img: Image.Image | None = None, **params) -> bytes:
        """``img`` (default: the cat) encoded as ``fmt`` with Pillow."""
        buf = io.BytesIO()
        (self.cat if img is None else img).save(buf, format=fmt, **params)
        return buf.getvalue()

    @cached_property
    def cat_jpeg(self) -> bytes:
        """The cat as a baseline JPEG (quality 90)."""
        return self.encode("JPEG", quality=90)

    @cached_property
    def cat_png(self) -> bytes:
        """The cat as an RGB PNG."""
        return self.encode("PNG")

    @cached_property
    def cat_gif(self) -> bytes:
        """The cat as a palette GIF."""
        return self.encode("GIF")

    @cached_property
    def cat_webp(self) -> bytes:
        """The cat as a lossy WebP (quality 80)."""
        return self.encode("WEBP", quality=80)

    def file(self, name: str, data: bytes) -> str:
        """Write ``data`` to the tmp folder; returns its ``file://`` URI."""
        path = self.tmp_dir / name
        path.write_bytes(data)
        return path.as_uri()


# ------------------------------------------------------------------------------------------ helpers


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height zeros: ~50 KB encoded, 400 Mpixel (1.2 GB as RGB) decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_ihdr(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR claiming ``width`` x ``height`` (CRC fixed, pixel data unchanged)."""
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def after_ihdr(png: bytes, chunk: bytes) -> bytes:
    """``png`` with ``chunk`` inserted right after its IHDR chunk."""
    return png[:33] + chunk + png[33:]


def garble(data: bytes, start: int, length: int, seed: int = 7) -> bytes:
    """``data`` with ``length`` bytes from ``start`` replaced by seeded random bytes."""
    noise = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + length :]


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` written at ``offset``."""
    return data[:offset] + new + data[offset + len(new) :]


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A baseline JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    sof = jpeg.index(b"\xff\xc0")
    return patch(jpeg, sof + 5, struct.pack(">HH", height, width))


def webp_lossless_with_size(webp: bytes, width: int, height: int) -> bytes:
    """A lossless (VP8L) WebP whose bitstream header claims ``width`` x ``height`` (each <= 16384)."""
    at = webp.index(b"VP8L") + 9  # chunk id, chunk size, signature byte 0x2f
    bits = struct.unpack("<I", webp[at : at + 4])[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return patch(webp, at, struct.pack("<I", bits))


def tiff_with_size(tiff: bytes, width: int, height: int) -> bytes:
    """A little-endian TIFF whose first IFD claims ``width`` x ``height`` (ImageWidth/ImageLength tags)."""
    ifd = struct.unpack("<I", tiff[4:8])[0]
    for entry in range(struct.unpack("<H", tiff[ifd : ifd + 2])[0]):
        at = ifd + 2 + entry * 12
        tag, typ = struct.unpack("<HH", tiff[at : at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            tiff = patch(tiff, at + 8, struct.pack("<H", min(value, 65535)) if typ == 3 else struct.pack("<I", value))
    return tiff


def tiff_with_tag_type(tiff: bytes, tag: int, typ: int) -> bytes:
    """A little-endian TIFF whose first IFD entry for ``tag`` says its values have type ``typ``."""
    ifd = struct.unpack("<I", tiff[4:8])[0]
    for entry in range(struct.unpack("<H", tiff[ifd : ifd + 2])[0]):
        at = ifd + 2 + entry * 12
        if struct.unpack("<H", tiff[at : at + 2])[0] == tag:
            return patch(tiff, at + 2, struct.pack("<H", typ))
    raise ValueError(f"no tag {tag} in the first IFD")


def exif(orientation: int) -> bytes:
    """An EXIF block with only the Orientation tag."""
    data = Image.Exif()
    data[0x0112] = orientation
    return data.tobytes()


def animated(photos: Photos, fmt: str) -> bytes:
    """Twelve frames of the cat, rotating (GIF palette frames, or WebP)."""
    frames = [photos.cat.rotate(angle) for angle in range(0, 360, 30)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buf.getvalue()


def zip_archive() -> bytes:
    """A small zip archive (what a mis-uploaded "image" often is)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "not an image\n" * 100)
    return buf.getvalue()


def executable() -> bytes:
    """The first 64 KiB of this Python interpreter's executable (an ELF binary on Linux)."""
    with open(Path(sys.executable).resolve(), "rb") as f:
        return f.read(65536)


def over_max_bytes(photos: Photos) -> bytes:
    """A real JPEG padded with trailing zeros to one byte over the default ``max_bytes``."""
    limit = ImageSettings.model_fields["max_bytes"].default
    return photos.cat_jpeg + bytes(limit + 1 - len(photos.cat_jpeg))


def sixteen_bit(photos: Photos) -> Image.Image:
    """The cat in 16-bit grey (Pillow mode I;16)."""
    grey = np.asarray(photos.cat.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey)


def float_image(photos: Photos) -> Image.Image:
    """The cat as 32-bit float grey (mode F) with a NaN and an infinity (as scientific TIFFs have)."""
    arr = np.asarray(photos.cat.convert("L"), dtype=np.float32) / 255.0
    arr[0, 0], arr[0, 1] = np.nan, np.inf
    return Image.fromarray(arr)


# ------------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class ImageCase:
    """One image input and its expected outcome.

    Attributes:
        kind: slug, also the image id of its event (``img-<kind>``).
        description: what the input is, for the docs table.
        reason: ``ok`` or the error's reason slug (DLQ header, and named in the gRPC status message).
        status: the gRPC status code name of an API call with it (``OK`` for an ok case).
        make: builds the ``visearch.v1.Image`` from the photos.
        size: for an ok case, the decoded RGB size (width, height); None when not checked.
    """

    kind: str
    description: str
    reason: str
    status: str
    make: Callable[[Photos], common_pb2.Image]
    size: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        """True when the input must be accepted."""
        return self.reason == OK


def _content(fn: Callable[[Photos], bytes]) -> Callable[[Photos], common_pb2.Image]:
    return lambda photos: common_pb2.Image(content=fn(photos))


def _bad(kind: str, description: str, reason: str, fn: Callable[[Photos], bytes]) -> ImageCase:
    return ImageCase(kind, description, reason, "INVALID_ARGUMENT", _content(fn))


def _good(
    kind: str, description: str, fn: Callable[[Photos], bytes], size: tuple[int, int] | None = CAT_SIZE
) -> ImageCase:
    return ImageCase(kind, description, OK, "OK", _content(fn), size)


IMAGE_CASES: list[ImageCase] = [
    # --- empty, too big, cut short, corrupt
    _bad("empty", "zero bytes", "empty_image", lambda p: b""),
    ImageCase(
        "over_max_bytes",
        "a JPEG padded to 1 byte over VISEARCH_IMAGE_MAX_BYTES (20 MiB), sent by file URI",
        "image_too_large",
        "INVALID_ARGUMENT",
        lambda p: common_pb2.Image(uri=p.file("big.jpg", over_max_bytes(p))),
    ),
    _bad("jpeg_truncated", "first half of a JPEG", "truncated_image", lambda p: p.cat_jpeg[: len(p.cat_jpeg) // 2]),
    _bad(
        "jpeg_no_scan_data",
        "a JPEG cut right after its start-of-scan header",
        "truncated_image",
        lambda p: p.cat_jpeg[: p.cat_jpeg.index(b"\xff\xda") + 14],
    ),
    _bad("png_truncated", "first half of a PNG", "truncated_image", lambda p: (d := p.cat_png)[: len(d) // 2]),
    _bad(
        "webp_truncated",
        "first half of a WebP (Pillow decodes WebP while opening it)",
        "undecodable_image",
        lambda p: (d := p.cat_webp)[: len(d) // 2],
    ),
    _bad("gif_truncated", "first half of a GIF", "truncated_image", lambda p: (d := p.cat_gif)[: len(d) // 2]),
    _bad(
        "jpeg_corrupt_header",
        "a JPEG whose frame header (SOF) is random bytes",
        "undecodable_image",
        lambda p: garble(p.cat_jpeg, p.cat_jpeg.index(b"\xff\xc0") + 2, 8),
    ),
    _bad(
        "jpeg_corrupt_scan_data",
        "a JPEG with 256 random bytes in its entropy-coded scan data",
        "truncated_image",
        lambda p: garble(p.cat_jpeg, len(p.cat_jpeg) // 2, 256),
    ),
    _bad(
        "png_corrupt_idat",
        "a PNG with 64 random bytes in its compressed pixel data",
        "truncated_image",
        lambda p: garble(d := p.cat_png, len(d) // 2, 64),
    ),
    _bad(
        "png_bad_crc",
        "a PNG whose IHDR checksum does not match",
        "undecodable_image",
        lambda p: patch(d := p.cat_png, 29, bytes([d[29] ^ 0xFF])),
    ),
    _bad(
        "webp_corrupt",
        "a WebP with 64 random bytes in its VP8 data",
        "truncated_image",
        lambda p: garble(d := p.cat_webp, len(d) // 2, 64),
    ),
    _bad(
        "gif_corrupt",
        "a GIF with 64 random bytes in its LZW data",
        "truncated_image",
        lambda p: garble(d := p.cat_gif, len(d) // 2, 64),
    ),
    _bad(
        "tiff_rational_strip_offsets",
        "a TIFF whose StripOffsets are RATIONALs (found by fuzzing: Pillow raised TypeError)",
        "undecodable_image",
        lambda p: tiff_with_tag_type(p.encode("TIFF"), 273, 5),
    ),
    _bad(
        "png_zero_width", "a PNG whose header says 0 x 300", "undecodable_image", lambda p: with_ihdr(p.cat_png, 0, 300)
    ),
    # --- not images, named like images
    _bad("text_as_jpg", "a text file", "undecodable_image", lambda p: b"this is a text file, not an image\n" * 20),
    _bad(
        "html_as_png",
        "an HTML error page",
        "undecodable_image",
        lambda p: b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n",
    ),
    _bad(
        "svg_as_png",
        "an SVG document (vector images are not decoded)",
        "undecodable_image",
        lambda p: b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><circle r="40"/></svg>',
    ),
    _bad(
        "executable_as_jpg",
        "an ELF executable (the Python interpreter's first 64 KiB)",
        "undecodable_image",
        lambda p: executable(),
    ),
    _bad("zip_as_png", "a zip archive", "undecodable_image", lambda p: zip_archive()),
    _bad("pdf_as_jpg", "a PDF document with the photo inside", "undecodable_image", lambda p: p.encode("PDF")),
    _bad(
        "eps_as_jpg",
        "an EPS file (Pillow would run Ghostscript on it: format refused)",
        "undecodable_image",
        lambda p: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n",
    ),
    _bad(
        "ico_format",
        "a Windows icon (a format Pillow reads but the platform does not accept)",
        "undecodable_image",
        lambda p: p.encode("ICO"),
    ),
    _bad(
        "random_bytes",
        "64 KiB of random bytes",
        "undecodable_image",
        lambda p: np.random.default_rng(3).integers(0, 256, 65536, dtype=np.uint8).tobytes(),
    ),
    # --- decompression bombs and absurd dimensions
    _bad(
        "png_bomb",
        "a valid 1-bit PNG of 20,000 x 20,000 zeros (50 KB encoded, 1.2 GB as RGB)",
        "decompression_bomb",
        lambda p: png_bomb(),
    ),
    _bad(
        "png_header_2g",
        "a PNG whose header claims 2,147,483,647 x 2,147,483,647",
        "decompression_bomb",
        lambda p: with_ihdr(p.cat_png, 2**31 - 1, 2**31 - 1),
    ),
    _bad(
        "png_text_bomb",
        "a PNG with a zTXt chunk that inflates to 16 MiB (Pillow allows 1 MiB)",
        "decompression_bomb",
        lambda p: after_ihdr(p.cat_png, png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(16 << 20), 9))),
    ),
    _bad(
        "gif_screen_bomb",
        "a GIF whose logical screen is 65,535 x 65,535",
        "decompression_bomb",
        lambda p: patch(p.cat_gif, 6, struct.pack("<HH", 65535, 65535)),
    ),
    _bad(
        "jpeg_dimension_bomb",
        "a JPEG whose frame header claims 65,500 x 65,500",
        "decompression_bomb",
        lambda p: jpeg_with_size(p.cat_jpeg, 65500, 65500),
    ),
    _bad(
        "webp_dimension_bomb",
        "a lossless WebP whose header claims 16,384 x 16,384",
        "decompression_bomb",
        lambda p: webp_lossless_with_size(p.encode("WEBP", lossless=True), 16384, 16384),
    ),
    _bad(
        "tiff_dimension_bomb",
        "a TIFF whose tags claim 65,000 x 65,000",
        "decompression_bomb",
        lambda p: tiff_with_size(p.encode("TIFF"), 65000, 65000),
    ),
    _bad(
        "bmp_dimension_bomb",
        "a BMP whose header claims 100,000 x 100,000",
        "decompression_bomb",
        lambda p: patch(p.encode("BMP"), 18, struct.pack("<ii", 100_000, 100_000)),
    ),
    # --- missing or unreachable images
    ImageCase(
        "no_image",
        "an Image message with neither content nor uri",
        "missing_image",
        "INVALID_ARGUMENT",
        lambda p: common_pb2.Image(),
    ),
    ImageCase(
        "uri_bad_scheme",
        "an ftp:// URI",
        "scheme_not_allowed",
        "FAILED_PRECONDITION",
        lambda p: common_pb2.Image(uri="ftp://images.example.com/cat.jpg"),
    ),
    ImageCase(
        "uri_missing_file",
        "a file URI to a file that does not exist",
        "image_not_found",
        "FAILED_PRECONDITION",
        lambda p: common_pb2.Image(uri=(p.tmp_dir / "no-such-image.jpg").as_uri()),
    ),
    # --- valid but unusual: accepted, as RGB
    _good(
        "jpeg_camera",
        "a real JPEG file as its encoder wrote it (rocket, 640 x 427)",
        lambda p: p.rocket_jpeg,
        (640, 427),
    ),
    _good("jpeg_progressive", "a progressive JPEG", lambda p: p.encode("JPEG", progressive=True, quality=85)),
    _good("jpeg_cmyk", "a CMYK JPEG (print workflows)", lambda p: p.encode("JPEG", img=p.cat.convert("CMYK"))),
    _good("jpeg_grey", "a greyscale JPEG", lambda p: p.encode("JPEG", img=p.cat.convert("L"))),
    _good(
        "jpeg_exif_rotated",
        "a JPEG with EXIF orientation 6 (decoded upright: 300 x 451)",
        lambda p: p.encode("JPEG", exif=exif(6)),
        (CAT_SIZE[1], CAT_SIZE[0]),
    ),
    _good(
        "jpeg_exif_bad_orientation",
        "a JPEG with EXIF orientation 99 (ignored)",
        lambda p: p.encode("JPEG", exif=exif(99)),
    ),
    _good(
        "jpeg_exif_garbage",
        "a JPEG whose EXIF block is 1 KiB of garbage",
        lambda p: p.encode("JPEG", exif=b"Exif\x00\x00" + bytes(range(256)) * 4),
    ),
    _good(
        "png_rgba",
        "a PNG with an alpha channel (composited over white)",
        lambda p: p.encode("PNG", img=p.cat.convert("RGBA")),
    ),
    _good("png_grey_alpha", "a grey + alpha PNG (LA)", lambda p: p.encode("PNG", img=p.cat.convert("LA"))),
    _good(
        "png_palette_transparency",
        "a palette PNG with a transparent colour",
        lambda p: p.encode("PNG", img=p.cat.convert("P"), transparency=0),
    ),
    _good("png_16bit", "a 16-bit greyscale PNG", lambda p: p.encode("PNG", img=sixteen_bit(p))),
    _good("png_1bit", "a 1-bit black-and-white PNG", lambda p: p.encode("PNG", img=p.cat.convert("1"))),
    _good("png_1x1", "a 1 x 1 PNG", lambda p: p.encode("PNG", img=p.cat.resize((1, 1))), (1, 1)),
    _good(
        "png_10000x1",
        "a 10,000 x 1 PNG (a very thin strip, within the pixel limit)",
        lambda p: p.encode("PNG", img=p.cat.resize((10000, 1))),
        (10000, 1),
    ),
    _good("png_1x10000", "a 1 x 10,000 PNG", lambda p: p.encode("PNG", img=p.cat.resize((1, 10000))), (1, 10000)),
    _good("gif_animated", "an animated GIF of 12 frames (the first frame is used)", lambda p: animated(p, "GIF")),
    _good("webp_animated", "an animated WebP of 12 frames", lambda p: animated(p, "WEBP")),
    _good(
        "webp_lossless_alpha",
        "a lossless WebP with alpha",
        lambda p: p.encode("WEBP", img=p.cat.convert("RGBA"), lossless=True),
    ),
    _good(
        "tiff_float",
        "a 32-bit float TIFF holding a NaN and an infinity",
        lambda p: p.encode("TIFF", img=float_image(p)),
    ),
    _good(
        "tiff_cmyk_lzw",
        "an LZW-compressed CMYK TIFF",
        lambda p: p.encode("TIFF", img=p.cat.convert("CMYK"), compression="tiff_lzw"),
    ),
    _good(
        "bmp_top_down",
        "a top-down BMP (negative height)",
        lambda p: patch(p.encode("BMP"), 22, struct.pack("<i", -CAT_SIZE[1])),
    ),
]


# ------------------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class RawEvent:
    """A message as published: ``value`` bytes and headers; ``image_id`` of the event when it has one;
    ``event``, the ImageEvent it was serialised from (None for hand-made bytes)."""

    value: bytes
    headers: dict[str, str]
    image_id: str = ""
    event: events_pb2.ImageEvent | None = None


@dataclass(frozen=True)
class EventCase:
    """One event message and its expected outcome.

    Attributes:
        kind: slug, also the message key, so its dead letter can be found.
        description: what the message is, for the docs table.
        reason: ``ok`` or the DLQ reason (for ``publish``, the publisher's InvalidEventError reason).
        stage: which check refuses it: ``decode``, ``image``, ``indexer``, ``publish``; "" for an ok case.
        make: builds the message from the photos.
    """

    kind: str
    description: str
    reason: str
    stage: str
    make: Callable[[Photos], RawEvent]

    @property
    def ok(self) -> bool:
        """True when the event must be applied (indexed, or deleted) without a dead letter."""
        return self.reason == OK


SCHEMA_EVENT_HEADERS = {HEADER_SCHEMA: "visearch.v1.ImageEvent"}


def upsert(photos: Photos, image_id: str = "evt-cat", **fields) -> events_pb2.ImageEvent:
    """A valid upsert of the cat photo; ``fields`` override event fields (``product`` a dict of Product fields)."""
    product = {
        "title": "Tabby cat",
        "category": "animals",
        "price": 12.5,
        "in_stock": True,
        **fields.pop("product", {}),
    }
    event = events_pb2.ImageEvent(
        image_id=image_id,
        kind=Kind.KIND_UPSERT,
        image=common_pb2.Image(content=photos.cat_jpeg),
        product=events_pb2.Product(**product),
    )
    for name, value in fields.items():
        if value is None:
            event.ClearField(name)
        elif name == "image":
            event.image.CopyFrom(value)
        else:
            setattr(event, name, value)
    return event


def _event(fn: Callable[[Photos], events_pb2.ImageEvent]) -> Callable[[Photos], RawEvent]:
    def make(photos: Photos) -> RawEvent:
        event = fn(photos)
        return RawEvent(event.SerializeToString(), dict(SCHEMA_EVENT_HEADERS), event.image_id, event)

    return make


def _raw(value: Callable[[Photos], bytes], headers: dict[str, str] | None = None) -> Callable[[Photos], RawEvent]:
    return lambda photos: RawEvent(value(photos), dict(SCHEMA_EVENT_HEADERS if headers is None else headers))


def _with_schema(schema: str) -> Callable[[Photos], RawEvent]:
    def make(photos: Photos) -> RawEvent:
        event = upsert(photos, "evt-schema")
        return RawEvent(event.SerializeToString(), {HEADER_SCHEMA: schema}, event.image_id, event)

    return make


OVERSIZED_IMAGE_BYTES = 11 * 1024 * 1024  # over the default VISEARCH_KAFKA_MAX_MESSAGE_BYTES (10 MiB)

EVENT_CASES: list[EventCase] = [
    # --- not a valid message
    EventCase(
        "protobuf_garbage",
        "bytes that are not a protobuf (a field length past the end)",
        "malformed_payload",
        "decode",
        _raw(lambda p: b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 16),
    ),
    EventCase(
        "protobuf_truncated",
        "a valid event cut in the middle of its image bytes",
        "malformed_payload",
        "decode",
        _raw(lambda p: (v := upsert(p).SerializeToString())[: len(v) // 2]),
    ),
    EventCase(
        "invalid_utf8_string",
        "an image_id field holding bytes that are not UTF-8",
        "malformed_payload",
        "decode",
        _raw(lambda p: b"\x0a\x02\xff\xfe\x10\x01"),
    ),
    EventCase(
        "json_payload",
        "a JSON event published by mistake",
        "malformed_payload",
        "decode",
        _raw(lambda p: b'{"image_id": "cat-1", "kind": "upsert"}'),
    ),
    EventCase(
        "other_message_type",
        "a SearchRequest protobuf sent as an ImageEvent (parses, but has no image_id)",
        "missing_image_id",
        "decode",
        _raw(lambda p: search_pb2.SearchRequest(text="red shoes", top_k=10).SerializeToString()),
    ),
    EventCase("tombstone", "an empty value (a Kafka tombstone)", "missing_image_id", "decode", _raw(lambda p: b"")),
    EventCase(
        "schema_wrong_version",
        "header visearch-schema: visearch.v2.ImageEvent",
        "unknown_schema",
        "decode",
        _with_schema("visearch.v2.ImageEvent"),
    ),
    EventCase(
        "schema_foreign",
        "header visearch-schema: com.example.OrderCreated",
        "unknown_schema",
        "decode",
        _with_schema("com.example.OrderCreated"),
    ),
    # --- missing fields, unknown values
    EventCase(
        "missing_image_id",
        "an upsert without image_id",
        "missing_image_id",
        "decode",
        _event(lambda p: upsert(p, image_id="")),
    ),
    EventCase(
        "missing_kind",
        "an event without kind",
        "missing_kind",
        "decode",
        _event(lambda p: upsert(p, "evt-no-kind", kind=Kind.KIND_UNSPECIFIED)),
    ),
    EventCase(
        "unknown_kind",
        "kind = 42 (an enum value this version does not know)",
        "unknown_kind",
        "decode",
        _event(lambda p: upsert(p, "evt-kind-42", kind=42)),
    ),
    EventCase(
        "upsert_without_image",
        "an upsert with no image",
        "missing_image",
        "image",
        _event(lambda p: upsert(p, "evt-no-image", image=None)),
    ),
    EventCase(
        "empty_inline_image",
        "an upsert whose inline image is 0 bytes",
        "empty_image",
        "image",
        _event(lambda p: upsert(p, "evt-empty-image", image=common_pb2.Image(content=b""))),
    ),
    EventCase(
        "attribute_update_not_indexed",
        "an attribute update for an image that was never indexed",
        "not_indexed",
        "indexer",
        _event(
            lambda p: events_pb2.ImageEvent(
                image_id="evt-never-indexed",
                kind=Kind.KIND_ATTRIBUTE_UPDATE,
                product=events_pb2.Product(price=5.0, in_stock=False),
            )
        ),
    ),
    # --- absurd values
    EventCase(
        "price_negative",
        "price -12.5",
        "invalid_price",
        "decode",
        _event(lambda p: upsert(p, "evt-price-neg", product={"price": -12.5})),
    ),
    EventCase(
        "price_nan",
        "price NaN",
        "invalid_price",
        "decode",
        _event(lambda p: upsert(p, "evt-price-nan", product={"price": math.nan})),
    ),
    EventCase(
        "price_infinite",
        "price +infinity",
        "invalid_price",
        "decode",
        _event(lambda p: upsert(p, "evt-price-inf", product={"price": math.inf})),
    ),
    EventCase(
        "tenant_huge",
        "a 10,000-character tenant",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "evt-tenant", tenant="t" * 10_000)),
    ),
    EventCase(
        "tenant_65_bytes",
        "a 65-byte tenant (the store's column holds 64: it would be cut to another tenant's name)",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "evt-tenant-65", tenant="t" * 65)),
    ),
    EventCase(
        "title_10mb",
        "a 10 MB title",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "evt-title", product={"title": "x" * 10_000_000})),
    ),
    EventCase(
        "image_id_too_long", "a 513-byte image_id", "field_too_long", "decode", _event(lambda p: upsert(p, "i" * 513))
    ),
    EventCase(
        "image_id_multibyte_too_long",
        "an image_id of 171 CJK characters (513 UTF-8 bytes)",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "字" * 171)),
    ),
    EventCase(
        "image_id_control_chars",
        "an image_id with a NUL and a newline",
        "invalid_id",
        "decode",
        _event(lambda p: upsert(p, "cat\x00\n1")),
    ),
    EventCase(
        "tags_too_many",
        "10,000 tags",
        "too_many_values",
        "decode",
        _event(lambda p: upsert(p, "evt-tags", product={"tags": [f"t{i}" for i in range(10_000)]})),
    ),
    EventCase(
        "attribute_value_huge",
        "a 1 MB attribute value",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "evt-attr", product={"attributes": {"material": "m" * 1_000_000}})),
    ),
    EventCase(
        "uri_too_long",
        "a 5,000-byte image URI",
        "field_too_long",
        "decode",
        _event(lambda p: upsert(p, "evt-uri", image=common_pb2.Image(uri="https://images.example.com/" + "a" * 5000))),
    ),
    EventCase(
        "oversized_message",
        "an upsert with an 11 MiB inline image (over VISEARCH_KAFKA_MAX_MESSAGE_BYTES)",
        "message_too_large",
        "publish",
        _event(lambda p: upsert(p, "evt-oversized", image=common_pb2.Image(content=bytes(OVERSIZED_IMAGE_BYTES)))),
    ),
    # --- unusual but valid
    EventCase("image_id_unicode", "image_id 'café-☕-1' (non-ASCII)", OK, "", _event(lambda p: upsert(p, "café-☕-1"))),
    EventCase(
        "image_id_quotes",
        'image_id with quotes and a backslash: o\'neill "x" \\ y',
        OK,
        "",
        _event(lambda p: upsert(p, 'o\'neill "x" \\ y')),
    ),
    EventCase(
        "delete_not_indexed",
        "a delete of an image that was never indexed (a no-op)",
        OK,
        "",
        _event(lambda p: events_pb2.ImageEvent(image_id="evt-delete-unknown", kind=Kind.KIND_DELETE)),
    ),
]


# ------------------------------------------------------------------------------------------ docs

STAGE_WORDS = {
    "decode": "DLQ of the first stage, before any model runs",
    "image": "DLQ of the first image stage",
    "indexer": "DLQ of the indexer",
    "publish": "refused by the publisher (encode_event / KafkaTransport)",
    "": "applied",
}


def markdown_table() -> str:
    """The Markdown tables of docs/reliability.md's "Bad input" section, generated from the corpus."""
    lines = [
        f"Images ({len(IMAGE_CASES)} kinds): a gRPC call (EmbedImage, Detect, Classify, Search, SimilarTo) "
        "answers with the status, its message naming the reason; the pipeline dead-letters the upsert "
        "with the reason (an `ok` image is answered and indexed).",
        "",
        "| kind | input | gRPC status | reason |",
        "|---|---|---|---|",
    ]
    for case in IMAGE_CASES:
        lines.append(f"| `{case.kind}` | {_cell(case.description)} | {case.status} | `{case.reason}` |")
    lines += [
        "",
        f"Events ({len(EVENT_CASES)} kinds), published to `visearch.images.v1`:",
        "",
        "| kind | message | outcome | reason |",
        "|---|---|---|---|",
    ]
    for case in EVENT_CASES:
        lines.append(f"| `{case.kind}` | {_cell(case.description)} | {STAGE_WORDS[case.stage]} | `{case.reason}` |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = (
    "<!-- corpus-table: generated by python -m tests.badinput.corpus --write -->\n",
    "<!-- end corpus-table -->\n",
)


def write_doc(path: Path = DOC) -> None:
    """Replace the generated tables between the markers in ``path``.

    Raises:
        ValueError: the markers are missing.
    """
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN.strip()} ... {END.strip()} markers")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + BEGIN + markdown_table() + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_doc()
    else:
        print(markdown_table(), end="")
