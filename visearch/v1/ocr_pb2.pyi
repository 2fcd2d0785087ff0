from visearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadRequest(_message.Message):
    __slots__ = ("images", "det_max_side")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DET_MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    det_max_side: int
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., det_max_side: _Optional[int] = ...) -> None: ...

class ImageText(_message.Message):
    __slots__ = ("lines", "text")
    LINES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.TextLine]
    text: str
    def __init__(self, lines: _Optional[_Iterable[_Union[_common_pb2.TextLine, _Mapping]]] = ..., text: _Optional[str] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageText]
    model: str
    def __init__(self, results: _Optional[_Iterable[_Union[ImageText, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...
