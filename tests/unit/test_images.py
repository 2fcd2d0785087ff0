"""Unit tests for visearch.shared.images (decoding untrusted images) and visearch.shared.errors."""

from __future__ import annotations

import http.server
import io
import struct
import threading
import zlib

import grpc
import numpy as np
import pytest
from PIL import Image

from visearch.shared import errors
from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError, InvalidEventError, InvalidImageError
from visearch.shared.images import decode_image, image_bytes, preprocess_imagenet, read_uri
from visearch.v1 import common_pb2

# --------------------------------------------------------------------------------------------- helpers

LOCAL_FILES = ImageSettings(allow_file_uris=True)  # file URIs are off by default


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    """``img`` encoded as ``fmt`` bytes."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise_rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A random RGB image (noise compresses badly, so truncation always cuts pixel data)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit grey PNG of ``width`` x ``height`` zeros: ~50 KB on disk, 400 M pixels decoded."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    comp = zlib.compressobj(9)
    chunk_rows = 1000
    idat = b"".join(comp.compress(row * chunk_rows) for _ in range(height // chunk_rows))
    idat += comp.compress(row * (height % chunk_rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def assert_invalid(data: bytes, reason: str, settings: ImageSettings | None = None) -> InvalidImageError:
    """decode_image(data) raises InvalidImageError with ``reason`` and gRPC INVALID_ARGUMENT."""
    with pytest.raises(InvalidImageError) as info:
        decode_image(data, settings)
    assert info.value.reason == reason, str(info.value)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.permanent is True
    return info.value


# ----------------------------------------------------------------------------------- bad-input corpus


def test_empty_bytes_are_rejected_as_empty_image():
    """Zero bytes -> empty_image."""
    assert_invalid(b"", "empty_image")


def test_text_bytes_are_undecodable():
    """A text file's bytes are not an image -> undecodable_image."""
    assert_invalid(b"name,price\nshirt,12.5\n" * 20, "undecodable_image")


def test_elf_header_named_jpg_is_undecodable(tmp_path):
    """An executable (ELF header) saved as .jpg, read through its path -> undecodable_image."""
    jpeg = encode(noise_rgb(), "JPEG")
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(8) + jpeg)
    assert_invalid(read_uri(str(path), LOCAL_FILES), "undecodable_image")


def test_truncated_jpeg_is_truncated_image():
    """A valid JPEG cut in half -> truncated_image."""
    data = encode(noise_rgb(), "JPEG", quality=90)
    assert_invalid(data[: len(data) // 2], "truncated_image")


def test_truncated_png_is_truncated_image():
    """A valid PNG cut in half -> truncated_image."""
    data = encode(noise_rgb(), "PNG")
    assert_invalid(data[: len(data) // 2], "truncated_image")


def test_corrupt_png_idat_is_truncated_image():
    """A PNG whose compressed pixel data (IDAT) has flipped bytes -> truncated_image (header fine, data corrupt)."""
    data = bytearray(encode(noise_rgb(), "PNG"))
    start = data.index(b"IDAT") + 4
    for i in range(start + 16, start + 64):
        data[i] ^= 0xFF
    assert_invalid(bytes(data), "truncated_image")


def test_truncated_gif_is_truncated_image():
    """A palette GIF cut in half -> truncated_image."""
    data = encode(noise_rgb().convert("P"), "GIF")
    assert_invalid(data[: len(data) // 2], "truncated_image")


def test_truncated_webp_is_rejected():
    """A WebP cut in half is refused as an invalid image (INVALID_ARGUMENT)."""
    data = encode(noise_rgb(), "WEBP", quality=90)
    with pytest.raises(InvalidImageError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_decompression_bomb_is_refused_before_decoding():
    """A small valid PNG claiming 20000x20000 pixels -> decompression_bomb (with default limits)."""
    data = bomb_png()
    assert len(data) < 200_000
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (20_000, 20_000)
    error = assert_invalid(data, "decompression_bomb")
    assert "20000x20000" in str(error)


def test_pixel_limit_comes_from_settings():
    """An ordinary 20x20 image breaks max_pixels=100 -> decompression_bomb; at the limit it decodes."""
    data = encode(noise_rgb(20, 20), "PNG")
    assert_invalid(data, "decompression_bomb", ImageSettings(max_pixels=399))
    assert decode_image(data, ImageSettings(max_pixels=400)).size == (20, 20)


def test_oversized_bytes_are_image_too_large():
    """Bytes over ImageSettings.max_bytes -> image_too_large, checked before decoding."""
    data = encode(noise_rgb(), "PNG")
    assert len(data) > 100
    assert_invalid(data, "image_too_large", ImageSettings(max_bytes=100))


# ------------------------------------------------------------------------------------ good conversions


def test_rgb_png_round_trips_exactly():
    """A lossless RGB PNG decodes to the same pixels, mode RGB."""
    src = noise_rgb(33, 17)
    img = decode_image(encode(src, "PNG"))
    assert img.mode == "RGB" and img.size == (33, 17)
    assert np.array_equal(np.asarray(img), np.asarray(src))


def test_cmyk_jpeg_becomes_rgb():
    """A CMYK JPEG decodes to RGB with the right colour (0,255,255,0 CMYK is red)."""
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode_image(data)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15


def test_rgba_png_transparent_pixels_are_composited_on_white():
    """Fully transparent pixels become white, opaque ones keep their colour, half-alpha blends."""
    arr = np.zeros((4, 3, 4), dtype=np.uint8)
    arr[0] = (10, 20, 30, 0)  # transparent: colour must not leak through
    arr[1] = (10, 20, 30, 255)  # opaque
    arr[2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    arr[3] = (200, 0, 0, 255)
    img = decode_image(encode(Image.fromarray(arr, mode="RGBA"), "PNG"))
    assert img.mode == "RGB"
    out = np.asarray(img)
    assert (out[0] == 255).all()
    assert tuple(out[1, 0]) == (10, 20, 30)
    assert all(abs(int(v) - 127) <= 2 for v in out[2, 0])
    assert tuple(out[3, 0]) == (200, 0, 0)


def test_palette_gif_becomes_rgb():
    """A palette (P mode) GIF decodes to RGB with its palette colours."""
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[:, :4] = (255, 0, 0)
    arr[:, 4:] = (0, 0, 255)
    src = Image.fromarray(arr, mode="RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = encode(src, "GIF")
    assert Image.open(io.BytesIO(data)).mode == "P"
    img = decode_image(data)
    assert img.mode == "RGB" and img.size == (8, 8)
    assert img.getpixel((0, 0)) == (255, 0, 0)
    assert img.getpixel((7, 7)) == (0, 0, 255)


def test_sixteen_bit_grey_png_becomes_rgb_uint8():
    """A 16-bit grey PNG (I;16) becomes 8-bit RGB scaled by its maximum (max -> 255, 0 -> 0)."""
    arr = np.zeros((4, 8), dtype=np.uint16)
    arr[:, 4:] = 60_000
    arr[:, 2:4] = 30_000
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = np.asarray(decode_image(data))
    assert out.dtype == np.uint8 and out.shape == (4, 8, 3)
    assert (out[:, :2] == 0).all()
    assert (out[:, 4:] == 255).all()
    assert (np.abs(out[:, 2:4].astype(int) - 127) <= 1).all()


def test_exif_orientation_6_is_applied():
    """A JPEG stored 40x20 with EXIF orientation 6 (rotate 90 CW) decodes as 20x40, rotated clockwise."""
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:10, :10] = (255, 255, 255)  # white block at the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr, mode="RGB"), "JPEG", quality=95, exif=exif.tobytes())
    img = decode_image(data)
    assert img.size == (20, 40)
    out = np.asarray(img).mean(axis=2)
    assert out[2:8, 12:18].mean() > 200  # the block is now at the top-right
    assert out[2:8, 2:8].mean() < 50


def test_grey_and_bmp_are_accepted():
    """Other formats Pillow reads (grey BMP) decode to RGB."""
    img = decode_image(encode(Image.new("L", (5, 7), 100), "BMP"))
    assert img.mode == "RGB" and img.size == (5, 7) and img.getpixel((0, 0)) == (100, 100, 100)


# ------------------------------------------------------------------------------------------- preprocess


@pytest.mark.parametrize("size", [(400, 100), (100, 400), (28, 28), (224, 224), (300, 257)])
def test_preprocess_imagenet_shape_dtype_and_range(size):
    """Any aspect ratio or size (wide, tall, tiny) gives float32 [3,224,224] in [-1, 1]."""
    arr = preprocess_imagenet(noise_rgb(*size))
    assert arr.shape == (3, 224, 224)
    assert arr.dtype == np.float32
    assert arr.min() >= -1.0 and arr.max() <= 1.0
    assert arr.flags["C_CONTIGUOUS"]


def test_preprocess_imagenet_scales_channels():
    """A solid colour maps to (x/255 - 0.5)/0.5 per RGB channel, in channel-first order."""
    arr = preprocess_imagenet(Image.new("RGB", (300, 200), (255, 0, 128)))
    assert np.allclose(arr[0], 1.0, atol=1e-2)
    assert np.allclose(arr[1], -1.0, atol=1e-2)
    assert np.allclose(arr[2], (128 / 255 - 0.5) / 0.5, atol=1e-2)


def test_preprocess_imagenet_centre_crops_wide_images():
    """A wide image is centre-cropped: red left/right bands outside the crop do not appear."""
    arr = np.zeros((100, 400, 3), dtype=np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 300:] = (255, 0, 0)
    out = preprocess_imagenet(Image.fromarray(arr, mode="RGB"))
    assert np.allclose(out, -1.0, atol=1e-2)


# ---------------------------------------------------------------------------------------------- read_uri


def test_read_uri_bare_path_and_file_uri(tmp_path):
    """A bare path and a file:// URI (even with a space, percent-encoded) both return the file's bytes."""
    path = tmp_path / "my photo.png"
    data = encode(noise_rgb(), "PNG")
    path.write_bytes(data)
    assert read_uri(str(path), LOCAL_FILES) == data
    uri = path.as_uri()
    assert uri.startswith("file://") and "%20" in uri
    assert read_uri(uri, LOCAL_FILES) == data


def test_read_uri_missing_file_is_image_not_found(tmp_path):
    """A path that does not exist -> ImageFetchError image_not_found (FAILED_PRECONDITION)."""
    with pytest.raises(ImageFetchError) as info:
        read_uri(str(tmp_path / "nope.jpg"), LOCAL_FILES)
    assert info.value.reason == "image_not_found"
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ImageFetchError) as info:
        read_uri((tmp_path / "nope.jpg").as_uri(), LOCAL_FILES)
    assert info.value.reason == "image_not_found"


def test_read_uri_unsupported_scheme():
    """ftp:// (or any non file/http scheme) -> ImageFetchError scheme_not_allowed."""
    for uri in ("ftp://example.com/a.jpg", "gopher://x/y", "data:image/png;base64,AAAA"):
        with pytest.raises(ImageFetchError) as info:
            read_uri(uri)
        assert info.value.reason == "scheme_not_allowed", uri


def test_read_uri_file_uris_can_be_disabled(tmp_path):
    """With allow_file_uris=False (the default), file:// URIs and bare paths -> scheme_not_allowed (even if present)."""
    path = tmp_path / "a.png"
    path.write_bytes(encode(noise_rgb(), "PNG"))
    for settings in (ImageSettings(allow_file_uris=False), None):
        for uri in (str(path), path.as_uri()):
            with pytest.raises(ImageFetchError) as info:
                read_uri(uri, settings)
            assert info.value.reason == "scheme_not_allowed"


def test_read_uri_file_over_max_bytes_is_image_too_large(tmp_path):
    """A file larger than max_bytes -> InvalidImageError image_too_large, without reading it."""
    path = tmp_path / "big.png"
    path.write_bytes(encode(noise_rgb(), "PNG"))
    with pytest.raises(InvalidImageError) as info:
        read_uri(str(path), ImageSettings(max_bytes=100, allow_file_uris=True))
    assert info.value.reason == "image_too_large"


@pytest.fixture
def local_http(monkeypatch):
    """A throwaway HTTP server on 127.0.0.1 serving ``payload['body']`` for every GET; yields its base URL."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    payload = {"body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/missing"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload["body"])))
            self.end_headers()
            self.wfile.write(payload["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", payload
    finally:
        server.shutdown()
        server.server_close()


def test_read_uri_http(local_http):
    """http:// returns the body; over max_bytes -> image_too_large; a 404 -> image_fetch_failed (127.0.0.1
    allowlisted: without it the loopback address is refused, see tests/unit/test_fetch.py)."""
    base, payload = local_http
    loopback = ImageSettings(fetch_allow_cidrs="127.0.0.1/32")
    payload["body"] = encode(noise_rgb(), "PNG")
    assert read_uri(f"{base}/a.png", loopback) == payload["body"]
    with pytest.raises(InvalidImageError) as info:
        read_uri(f"{base}/a.png", ImageSettings(max_bytes=100, fetch_allow_cidrs="127.0.0.1/32"))
    assert info.value.reason == "image_too_large"
    with pytest.raises(ImageFetchError) as info:
        read_uri(f"{base}/missing.png", loopback)
    assert info.value.reason == "image_fetch_failed"
    with pytest.raises(ImageFetchError) as info:
        read_uri(f"{base}/a.png")
    assert info.value.reason == "address_not_allowed"


# ------------------------------------------------------------------------------------------- image_bytes


def test_image_bytes_empty_image_message_is_missing_image():
    """An Image message with neither content nor uri -> InvalidEventError missing_image."""
    with pytest.raises(InvalidEventError) as info:
        image_bytes(common_pb2.Image())
    assert info.value.reason == "missing_image"
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidEventError):
        image_bytes(common_pb2.Image(uri=""))


def test_image_bytes_content_and_uri(tmp_path):
    """Inline content is returned as is; a uri is read from disk."""
    data = encode(noise_rgb(), "PNG")
    assert image_bytes(common_pb2.Image(content=data)) == data
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert image_bytes(common_pb2.Image(uri=str(path)), LOCAL_FILES) == data
    with pytest.raises(ImageFetchError):
        image_bytes(common_pb2.Image(uri=str(tmp_path / "gone.png")), LOCAL_FILES)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("cls", "reason", "code", "permanent"),
    [
        (errors.VisearchError, "internal", grpc.StatusCode.INTERNAL, False),
        (errors.InvalidImageError, "undecodable_image", grpc.StatusCode.INVALID_ARGUMENT, True),
        (errors.InvalidEventError, "invalid_event", grpc.StatusCode.INVALID_ARGUMENT, True),
        (errors.ImageFetchError, "image_fetch_failed", grpc.StatusCode.FAILED_PRECONDITION, True),
        (errors.NotFoundError, "not_found", grpc.StatusCode.NOT_FOUND, True),
        (errors.ModelNotBuiltError, "model_not_built", grpc.StatusCode.FAILED_PRECONDITION, False),
        (errors.DependencyUnavailableError, "dependency_unavailable", grpc.StatusCode.UNAVAILABLE, False),
    ],
)
def test_error_defaults(cls, reason, code, permanent):
    """Each error class has its default reason, gRPC code and permanence."""
    err = cls("boom")
    assert isinstance(err, errors.VisearchError)
    assert (err.reason, err.code, err.permanent, str(err)) == (reason, code, permanent, "boom")


def test_error_reason_override_is_per_instance():
    """A reason given to one instance does not change the class default."""
    err = InvalidImageError("x", reason="empty_image")
    assert err.reason == "empty_image"
    assert InvalidImageError("y").reason == "undecodable_image"


def _encoded(size: tuple[int, int], fmt: str, exif_orientation: int = 0) -> bytes:
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, format=fmt, exif=exif)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "fmt", "min_side", "expected"),
    [
        ((1200, 800), "JPEG", 256, (600, 400)),  # 1/2: 1/4 would leave a 200 px short side
        ((2400, 1600), "JPEG", 256, (600, 400)),  # 1/4: 1/8 would leave 200 px
        ((600, 400), "JPEG", 256, (600, 400)),  # short side < 2 x 256: nothing to gain
        ((1200, 800), "PNG", 256, (1200, 800)),  # draft is a JPEG (DCT) feature
        ((1200, 800), "JPEG", 0, (1200, 800)),  # off
    ],
)
def test_draft_decode_keeps_the_short_side_at_least_min_side(size, fmt, min_side, expected):
    img = decode_image(_encoded(size, fmt), min_side=min_side)
    assert min(img.size) >= min(min_side, min(size))
    assert img.mode == "RGB" and img.format == fmt and img.size == expected
    assert img.info["original_size"] == size  # the full-size grid, whatever scale was decoded


def test_draft_decode_applies_exif_orientation():
    """A portrait photo stored landscape with EXIF orientation 6 comes out portrait at the reduced scale."""
    img = decode_image(_encoded((1200, 800), "JPEG", exif_orientation=6), min_side=256)
    assert img.size == (400, 600) and img.info["original_size"] == (800, 1200)
