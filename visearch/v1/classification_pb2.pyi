from visearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyPart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLASSIFY_PART_UNSPECIFIED: _ClassVar[ClassifyPart]
    CLASSIFY_PART_TAXONOMY: _ClassVar[ClassifyPart]
    CLASSIFY_PART_CONCEPTS: _ClassVar[ClassifyPart]
    CLASSIFY_PART_COLOURS: _ClassVar[ClassifyPart]
    CLASSIFY_PART_QUALITY: _ClassVar[ClassifyPart]
    CLASSIFY_PART_MODERATION: _ClassVar[ClassifyPart]
    CLASSIFY_PART_OBJECTS: _ClassVar[ClassifyPart]
    CLASSIFY_PART_TEXT: _ClassVar[ClassifyPart]
    CLASSIFY_PART_PHASH: _ClassVar[ClassifyPart]
    CLASSIFY_PART_CATALOGUE_HEAD: _ClassVar[ClassifyPart]
    CLASSIFY_PART_CLASS_OBJECTS: _ClassVar[ClassifyPart]
CLASSIFY_PART_UNSPECIFIED: ClassifyPart
CLASSIFY_PART_TAXONOMY: ClassifyPart
CLASSIFY_PART_CONCEPTS: ClassifyPart
CLASSIFY_PART_COLOURS: ClassifyPart
CLASSIFY_PART_QUALITY: ClassifyPart
CLASSIFY_PART_MODERATION: ClassifyPart
CLASSIFY_PART_OBJECTS: ClassifyPart
CLASSIFY_PART_TEXT: ClassifyPart
CLASSIFY_PART_PHASH: ClassifyPart
CLASSIFY_PART_CATALOGUE_HEAD: ClassifyPart
CLASSIFY_PART_CLASS_OBJECTS: ClassifyPart

class ClassifyRequest(_message.Message):
    __slots__ = ("images", "precomputed", "parts")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PRECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    precomputed: _containers.RepeatedCompositeFieldContainer[PrecomputedSignals]
    parts: _containers.RepeatedScalarFieldContainer[ClassifyPart]
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., precomputed: _Optional[_Iterable[_Union[PrecomputedSignals, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[ClassifyPart, str]]] = ...) -> None: ...

class PrecomputedSignals(_message.Message):
    __slots__ = ("class_probs", "joint")
    CLASS_PROBS_FIELD_NUMBER: _ClassVar[int]
    JOINT_FIELD_NUMBER: _ClassVar[int]
    class_probs: _common_pb2.Vector
    joint: _common_pb2.Vector
    def __init__(self, class_probs: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., joint: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.Classification]
    def __init__(self, results: _Optional[_Iterable[_Union[_common_pb2.Classification, _Mapping]]] = ...) -> None: ...
