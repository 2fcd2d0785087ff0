from visearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRegionsRequest(_message.Message):
    __slots__ = ("image", "boxes")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ...) -> None: ...

class EmbedRegionsResponse(_message.Message):
    __slots__ = ("vectors", "image_model")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    image_model: str
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., image_model: _Optional[str] = ...) -> None: ...

class EmbedImageRequest(_message.Message):
    __slots__ = ("images", "top_classes", "class_probs", "crops")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_PROBS_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    top_classes: int
    class_probs: bool
    crops: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., top_classes: _Optional[int] = ..., class_probs: bool = ..., crops: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ...) -> None: ...

class ImageEmbedding(_message.Message):
    __slots__ = ("image", "joint", "classes", "class_probs")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    JOINT_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_PROBS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Vector
    joint: _common_pb2.Vector
    classes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassScore]
    class_probs: _common_pb2.Vector
    def __init__(self, image: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., joint: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[_common_pb2.ClassScore, _Mapping]]] = ..., class_probs: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class EmbedImageResponse(_message.Message):
    __slots__ = ("embeddings", "image_model", "text_model")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_MODEL_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[ImageEmbedding]
    image_model: str
    text_model: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[ImageEmbedding, _Mapping]]] = ..., image_model: _Optional[str] = ..., text_model: _Optional[str] = ...) -> None: ...

class EmbedTextRequest(_message.Message):
    __slots__ = ("texts", "as_query")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    AS_QUERY_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    as_query: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., as_query: bool = ...) -> None: ...

class QueryConcepts(_message.Message):
    __slots__ = ("tags", "phrases", "coverage")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, float]
    phrases: _containers.RepeatedScalarFieldContainer[str]
    coverage: float
    def __init__(self, tags: _Optional[_Mapping[str, float]] = ..., phrases: _Optional[_Iterable[str]] = ..., coverage: _Optional[float] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("vectors", "text_model", "visual_vectors", "visual_model", "concepts")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TEXT_MODEL_FIELD_NUMBER: _ClassVar[int]
    VISUAL_VECTORS_FIELD_NUMBER: _ClassVar[int]
    VISUAL_MODEL_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    text_model: str
    visual_vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    visual_model: str
    concepts: _containers.RepeatedCompositeFieldContainer[QueryConcepts]
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., text_model: _Optional[str] = ..., visual_vectors: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., visual_model: _Optional[str] = ..., concepts: _Optional[_Iterable[_Union[QueryConcepts, _Mapping]]] = ...) -> None: ...
