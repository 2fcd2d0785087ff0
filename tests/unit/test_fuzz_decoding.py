"""Property-based fuzzing (hypothesis) of the two parsers that see untrusted bytes first.

* ``decode_image`` on arbitrary bytes, on bytes behind a real format's magic number, and on real
  photos mutated (bit flips, byte overwrites, truncations, header splices, inserted and deleted
  runs) only ever returns an 8-bit RGB image within the pixel limit, or raises InvalidImageError
  with a known reason named in its message; never another exception, never a hang (each example has a
  deadline, the whole test a timeout).
* ``decode_message`` on arbitrary payloads and headers, on mutated real events and documents, and on
  generated events with arbitrary field values only ever returns a document whose event passes every
  check (id, kind, field limits, price), or raises VisearchError with a known reason; a generated
  event whose values are all valid is always accepted.

Deterministic for CI: ``derandomize=True`` and no example database, so every run tries the same
examples. ``VISEARCH_FUZZ_EXAMPLES=<n>`` multiplies the example counts for a longer local run.
"""

from __future__ import annotations

import io
import math
import os
from datetime import timedelta
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.badinput.corpus import tiff_with_tag_type
from visearch.offline.datasets import photo_catalogue
from visearch.shared.config import ImageSettings
from visearch.shared.errors import InvalidImageError, VisearchError
from visearch.shared.images import decode_image
from visearch.shared.pipeline import (
    ID_FIELD_LIMITS,
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTES,
    MAX_PRICE,
    MAX_TAG_BYTES,
    MAX_TAGS,
    MAX_URI_BYTES,
    PRODUCT_FIELD_LIMITS,
    SCHEMA_DOCUMENT,
    SCHEMA_EVENT,
    decode_message,
)
from visearch.shared.transport import HEADER_SCHEMA, Message
from visearch.v1 import common_pb2, events_pb2

IMAGE_REASONS = {"empty_image", "image_too_large", "decompression_bomb", "undecodable_image", "truncated_image"}
EVENT_REASONS = {
    "malformed_payload",
    "unknown_schema",
    "missing_image_id",
    "missing_kind",
    "unknown_kind",
    "field_too_long",
    "too_many_values",
    "invalid_id",
    "invalid_price",
}
# A small pixel limit: a mutated header that claims a big image is refused at once instead of decoding
# megapixels of noise, which keeps every example in milliseconds.
LIMITS = ImageSettings(max_pixels=2_000_000, max_bytes=1_000_000)
SCALE = max(1, int(os.environ.get("VISEARCH_FUZZ_EXAMPLES", "1")))
CONTROL = {chr(c) for c in [*range(0x20), 0x7F]}


def fuzz(examples: int):
    """Hypothesis settings: deterministic, no database, a per-example deadline of 2 s."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------------------------- images


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


@cache
def seeds() -> tuple[bytes, ...]:
    """A real photo (scikit-image's chelsea, 64 x 43) in every accepted format and many modes."""
    (item,) = [p for p in photo_catalogue() if p.image_id == "photo-chelsea"]
    cat = Image.open(item.uri).convert("RGB").resize((64, 43))
    grey16 = Image.fromarray(np.asarray(cat.convert("L"), dtype=np.uint16) * 257)
    return (
        encode(cat, "JPEG", quality=85),
        encode(cat, "JPEG", progressive=True),
        encode(cat.convert("CMYK"), "JPEG"),
        encode(cat, "PNG"),
        encode(cat.convert("RGBA"), "PNG"),
        encode(cat.convert("P"), "PNG", transparency=0),
        encode(grey16, "PNG"),
        encode(cat.convert("1"), "PNG"),
        encode(cat, "WEBP", quality=70),
        encode(cat.convert("RGBA"), "WEBP", lossless=True),
        encode(cat.convert("P"), "GIF"),
        encode(cat, "BMP"),
        encode(cat, "TIFF"),
        encode(cat, "TIFF", compression="tiff_lzw"),
        encode(cat.convert("CMYK"), "TIFF"),
    )


MAGICS = (
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"GIF89a",
    b"GIF87a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)


def check_decode(data: bytes) -> None:
    """The property: an RGB image within the limits, or InvalidImageError with a known reason."""
    try:
        img = decode_image(data, LIMITS)
    except InvalidImageError as exc:
        assert exc.reason in IMAGE_REASONS, exc.reason
        assert str(exc).endswith(f"({exc.reason})"), str(exc)
        return
    assert img.mode == "RGB" and 0 < img.width * img.height <= LIMITS.max_pixels, (img.mode, img.size)
    assert np.asarray(img).shape == (img.height, img.width, 3)


@fuzz(300)
@given(st.binary(max_size=4096))
def test_decode_image_on_arbitrary_bytes(data):
    check_decode(data)


@fuzz(400)
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_decode_image_on_bytes_behind_a_magic_number(magic, rest):
    check_decode(magic + rest)


@st.composite
def mutated_images(draw) -> bytes:
    """A real encoded photo with 1-4 mutations."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite_header", "truncate", "splice", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite_header" and data:  # headers are where the parsers' decisions are
            at = draw(st.integers(0, min(len(data), 128) - 1))
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[:at]
        elif op == "splice":  # one format's header on another's body
            other = draw(st.sampled_from(seeds()))
            data = data[:at] + other[draw(st.integers(0, len(other) - 1)) :]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.mark.timeout(120)
@fuzz(2500)
@given(mutated_images())
def test_decode_image_on_mutated_real_images(data):
    check_decode(data)


def test_unmutated_seeds_decode():
    """The fuzzing seeds themselves are valid (so mutations start from real, decodable images)."""
    for data in seeds():
        assert decode_image(data, LIMITS).size == (64, 43)


def test_regression_tiff_with_rational_strip_offsets():
    """Found by fuzzing: a TIFF whose StripOffsets tag says RATIONAL made Pillow raise TypeError, which
    escaped decode_image (and stopped the stage worker). It is an InvalidImageError now."""
    tiff = next(d for d in seeds() if d.startswith(b"II*\x00"))
    with pytest.raises(InvalidImageError) as info:
        decode_image(tiff_with_tag_type(tiff, 273, 5), LIMITS)
    assert info.value.reason == "undecodable_image" and "TypeError" in str(info.value)


# --------------------------------------------------------------------------------------------- events


def check_message(value: bytes, headers: dict[str, str]) -> events_pb2.ImageDocument | None:
    """The property: a document whose event passes every check, or VisearchError with a known reason."""
    try:
        document = decode_message(Message("visearch.images.v1", b"key", value, headers))
    except VisearchError as exc:
        assert exc.reason in EVENT_REASONS, (exc.reason, str(exc))
        return None
    event = document.event
    assert event.image_id and event.kind in events_pb2.ImageEvent.Kind.values()
    for name, limit in ID_FIELD_LIMITS.items():
        assert len(getattr(event, name).encode()) <= limit and not CONTROL & set(getattr(event, name)), name
    product = event.product
    for name, limit in PRODUCT_FIELD_LIMITS.items():
        assert len(getattr(product, name).encode()) <= limit, name
    assert len(product.tags) <= MAX_TAGS and all(len(t.encode()) <= MAX_TAG_BYTES for t in product.tags)
    assert len(product.attributes) <= MAX_ATTRIBUTES
    assert all(len((k + v).encode()) <= MAX_ATTRIBUTE_BYTES for k, v in product.attributes.items())
    assert math.isfinite(product.price) and 0 <= product.price <= MAX_PRICE
    assert event.image.WhichOneof("source") != "uri" or len(event.image.uri.encode()) <= MAX_URI_BYTES
    return document


SCHEMAS = st.one_of(
    st.none(), st.sampled_from([SCHEMA_EVENT, SCHEMA_DOCUMENT, "visearch.v2.ImageEvent"]), st.text(max_size=40)
)


def headers_for(schema: str | None) -> dict[str, str]:
    return {} if schema is None else {HEADER_SCHEMA: schema}


@fuzz(500)
@given(st.binary(max_size=2048), SCHEMAS)
def test_decode_message_on_arbitrary_payloads(value, schema):
    check_message(value, headers_for(schema))


@cache
def real_messages() -> tuple[tuple[bytes, str], ...]:
    """A full upsert event and a document as the embedding stage writes it."""
    event = events_pb2.ImageEvent(
        image_id="photo-chelsea",
        kind=events_pb2.ImageEvent.KIND_UPSERT,
        tenant="shop",
        collection="cats",
        image=common_pb2.Image(content=seeds()[0]),
        trace_id="0" * 32,
        product=events_pb2.Product(
            title="Tabby",
            description="A cat",
            brand="b",
            category="animals",
            price=12.5,
            currency="EUR",
            in_stock=True,
            tags=["cat", "pet"],
            attributes={"colour": "brown"},
        ),
    )
    event.event_time.GetCurrentTime()
    document = events_pb2.ImageDocument(event=event, info=events_pb2.ImageInfo(width=64, height=43, format="JPEG"))
    document.embeddings.image.values[:] = np.linspace(-1, 1, 64)
    document.detections.add(label="cat", class_id=15, score=0.9, box=common_pb2.Box(x1=1, y1=2, x2=30, y2=40))
    return (event.SerializeToString(), SCHEMA_EVENT), (document.SerializeToString(), SCHEMA_DOCUMENT)


@st.composite
def mutated_messages(draw) -> tuple[bytes, str]:
    value, schema = draw(st.sampled_from(real_messages()))
    data = bytearray(value)
    for _ in range(draw(st.integers(1, 4))):
        op, at = draw(st.sampled_from(["flip", "byte", "truncate"])), draw(st.integers(0, len(data) - 1 if data else 0))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[:at]
    return bytes(data), schema


@fuzz(800)
@given(mutated_messages())
def test_decode_message_on_mutated_real_messages(message):
    value, schema = message
    check_message(value, headers_for(schema))


ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=0, max_size=700),
    st.sampled_from(["", "x" * 513, "字" * 171, "a\x00b", 'o\'neill "x" \\ y', "café-☕"]),
)
PRICES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e15, 1e16, -1.0]))


@st.composite
def arbitrary_events(draw) -> events_pb2.ImageEvent:
    """Events whose fields take any value the wire format allows (known or unknown kinds, any text, any double)."""
    product = events_pb2.Product(
        title=draw(ANY_TEXT),
        brand=draw(ANY_TEXT),
        category=draw(ANY_TEXT),
        currency=draw(ANY_TEXT),
        price=draw(PRICES),
        tags=draw(st.lists(ANY_TEXT, max_size=300)),
        attributes=draw(st.dictionaries(st.text(max_size=10), ANY_TEXT, max_size=5)),
    )
    image = draw(
        st.sampled_from(
            [
                common_pb2.Image(),
                common_pb2.Image(content=b"\xff\xd8"),
                common_pb2.Image(uri="https://example.com/" + "a" * draw(st.integers(0, 3000))),
            ]
        )
    )
    return events_pb2.ImageEvent(
        image_id=draw(ANY_TEXT),
        kind=draw(st.integers(-3, 8)),
        tenant=draw(ANY_TEXT),
        collection=draw(ANY_TEXT),
        trace_id=draw(ANY_TEXT),
        image=image,
        product=product,
    )


@fuzz(400)
@given(arbitrary_events())
def test_decode_message_on_arbitrary_field_values(event):
    check_message(event.SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT})


SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=20)


@st.composite
def valid_events(draw) -> events_pb2.ImageEvent:
    """Events whose values are all within the limits: they must be accepted."""
    product = events_pb2.Product(
        title=draw(SAFE_TEXT),
        category=draw(SAFE_TEXT),
        price=draw(st.floats(0, MAX_PRICE, allow_nan=False)),
        tags=draw(st.lists(SAFE_TEXT, max_size=MAX_TAGS)),
        attributes=draw(st.dictionaries(SAFE_TEXT, SAFE_TEXT, max_size=8)),
    )
    return events_pb2.ImageEvent(
        image_id=draw(SAFE_TEXT.filter(bool)),
        kind=draw(st.sampled_from([1, 2, 3])),
        tenant=draw(SAFE_TEXT),
        collection=draw(SAFE_TEXT),
        product=product,
        image=common_pb2.Image(content=b"\xff\xd8"),
    )


@fuzz(300)
@given(valid_events())
def test_valid_events_are_always_accepted(event):
    assert check_message(event.SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT}) is not None
