"""OpenAPI (JSON Schema) of the protobuf messages, in the proto3 JSON mapping the gateway speaks.

The schemas are derived from the message descriptors, so /docs always matches ``protos/visearch/v1``: field
names in lowerCamelCase (parsers also accept the proto names), 64-bit integers as strings, bytes as base64,
enums by name, maps as objects, ``google.protobuf.Timestamp`` as an RFC 3339 string.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    **{
        t: {"type": "integer", "format": "int32"}
        for t in (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_FIXED32,
            FieldDescriptor.TYPE_SFIXED32,
        )
    },
    **{
        t: {"type": "string", "format": "int64"}
        for t in (
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_FIXED64,
            FieldDescriptor.TYPE_SFIXED64,
        )
    },
}
_WELL_KNOWN = {"google.protobuf.Timestamp": {"type": "string", "format": "date-time"}}


def message_ref(descriptor: Any, components: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to the schema of ``descriptor`` (a message Descriptor), adding it (and every message it uses) to ``components``
    (``{full message name: schema}``, the OpenAPI document's ``components.schemas``)."""
    if descriptor.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[descriptor.full_name])
    ref = {"$ref": f"#/components/schemas/{descriptor.full_name}"}
    if descriptor.full_name in components:
        return ref
    properties: dict[str, Any] = {}
    components[descriptor.full_name] = {"type": "object", "title": descriptor.name, "properties": properties}
    for field in descriptor.fields:
        properties[field.json_name] = _field_schema(field, components)
    return ref


def _field_schema(field: Any, components: dict[str, Any]) -> dict[str, Any]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        value = message.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, components)}
    item = _single(field, components)
    return {"type": "array", "items": item} if field.is_repeated else item


def _single(field: Any, components: dict[str, Any]) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_ref(field.message_type, components)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    return dict(_SCALARS[field.type])
