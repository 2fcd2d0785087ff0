"""The gateway's fast proto -> JSON mapping (services/gateway/jsonmap.py) writes what json_format.MessageToDict does."""

from __future__ import annotations

import math
import random

import pytest
from google.protobuf import descriptor, json_format, timestamp_pb2
from google.protobuf.message import Message

from visearch.services.gateway.jsonmap import message_to_dict
from visearch.v1 import classification_pb2, common_pb2, detection_pb2, ocr_pb2, search_pb2

FD = descriptor.FieldDescriptor
# Every message the gateway answers with, and a few that carry maps, enums, bytes and 64-bit integers.
MESSAGES = [
    search_pb2.SearchResponse,
    search_pb2.TagResponse,
    search_pb2.FeedbackResponse,
    search_pb2.SearchRequest,
    detection_pb2.ImageDetections,
    ocr_pb2.ImageText,
    common_pb2.Classification,
    common_pb2.Image,
    classification_pb2.ClassifyResponse,
]
SPECIAL_FLOATS = (math.inf, -math.inf, math.nan, 0.1, 1e-7, 3.4e38, -0.0)


def _scalar(field: FD, rng: random.Random) -> object:
    t = field.type
    if t == FD.TYPE_ENUM:
        return rng.choice(field.enum_type.values).number
    if t == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if t == FD.TYPE_STRING:
        return rng.choice(["dog", "a > b", "Ünïcode ✓", ""]) + str(rng.randint(0, 9))
    if t == FD.TYPE_BYTES:
        return rng.randbytes(rng.randint(1, 12))
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return rng.choice(SPECIAL_FLOATS) if rng.random() < 0.2 else rng.uniform(-2, 2)
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rng.randint(0, 2**32 - 1)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return rng.randint(0, 2**64 - 1)
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.randint(-(2**63), 2**63 - 1)
    return rng.randint(-(2**31), 2**31 - 1)


def _fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    """Set a random share of ``message``'s fields (recursively, 3 levels) to random values."""
    seen_oneofs: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if rng.random() < 0.3 or (oneof is not None and oneof.name in seen_oneofs):
            continue
        if oneof is not None:
            seen_oneofs.add(oneof.name)
        target = field.message_type
        if target is not None and target.GetOptions().map_entry:
            value_field = target.fields_by_name["value"]
            container = getattr(message, field.name)
            for _ in range(rng.randint(1, 3)):
                key = str(_scalar(target.fields_by_name["key"], rng))
                if value_field.message_type is None:
                    container[key] = _scalar(value_field, rng)
            continue
        if target is not None:
            if depth >= 3:
                continue
            if field.is_repeated:
                for _ in range(rng.randint(1, 3)):
                    _fill(getattr(message, field.name).add(), rng, depth + 1)
            else:
                _fill(getattr(message, field.name), rng, depth + 1)
                getattr(message, field.name).SetInParent()
        elif field.is_repeated:
            getattr(message, field.name).extend(_scalar(field, rng) for _ in range(rng.randint(1, 4)))
        else:
            setattr(message, field.name, _scalar(field, rng))
    return message


def _same(a: object, b: object) -> bool:
    """Equal, NaN included (json_format writes it as the string "NaN", so only a float NaN needs this)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.DESCRIPTOR.full_name)
def test_matches_json_format(cls: type[Message]) -> None:
    rng = random.Random(cls.DESCRIPTOR.full_name)
    for _ in range(200):
        message = _fill(cls(), rng)
        expected = json_format.MessageToDict(message)
        assert _same(message_to_dict(message), expected), message


def test_empty_and_well_known() -> None:
    assert message_to_dict(search_pb2.SearchResponse()) == {}
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)
    assert message_to_dict(stamp) == json_format.MessageToDict(stamp)  # a string, from json_format


def test_float_shortened_as_json_format() -> None:
    hit = search_pb2.Hit(score=0.1, price=0.1)  # score: float (shortened), price: double (as is)
    assert message_to_dict(hit) == json_format.MessageToDict(hit) == {"score": 0.1, "price": 0.1}
