import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageEvent(_message.Message):
    __slots__ = ("image_id", "kind", "image", "product", "tenant", "collection", "event_time", "trace_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ImageEvent.Kind]
        KIND_UPSERT: _ClassVar[ImageEvent.Kind]
        KIND_DELETE: _ClassVar[ImageEvent.Kind]
        KIND_ATTRIBUTE_UPDATE: _ClassVar[ImageEvent.Kind]
    KIND_UNSPECIFIED: ImageEvent.Kind
    KIND_UPSERT: ImageEvent.Kind
    KIND_DELETE: ImageEvent.Kind
    KIND_ATTRIBUTE_UPDATE: ImageEvent.Kind
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    kind: ImageEvent.Kind
    image: _common_pb2.Image
    product: Product
    tenant: str
    collection: str
    event_time: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, image_id: _Optional[str] = ..., kind: _Optional[_Union[ImageEvent.Kind, str]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., tenant: _Optional[str] = ..., collection: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("title", "description", "brand", "category", "price", "currency", "in_stock", "tags", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    title: str
    description: str
    brand: str
    category: str
    price: float
    currency: str
    in_stock: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, title: _Optional[str] = ..., description: _Optional[str] = ..., brand: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., currency: _Optional[str] = ..., in_stock: bool = ..., tags: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImageDocument(_message.Message):
    __slots__ = ("event", "info", "embeddings", "classes", "stages", "detections", "regions", "text_lines", "classification", "published_at", "thumbnail")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    TEXT_LINES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    event: ImageEvent
    info: ImageInfo
    embeddings: Embeddings
    classes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassScore]
    stages: _containers.RepeatedCompositeFieldContainer[StageRecord]
    detections: _containers.RepeatedCompositeFieldContainer[_common_pb2.Detection]
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    text_lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.TextLine]
    classification: _common_pb2.Classification
    published_at: _timestamp_pb2.Timestamp
    thumbnail: bytes
    def __init__(self, event: _Optional[_Union[ImageEvent, _Mapping]] = ..., info: _Optional[_Union[ImageInfo, _Mapping]] = ..., embeddings: _Optional[_Union[Embeddings, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[_common_pb2.ClassScore, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[StageRecord, _Mapping]]] = ..., detections: _Optional[_Iterable[_Union[_common_pb2.Detection, _Mapping]]] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., text_lines: _Optional[_Iterable[_Union[_common_pb2.TextLine, _Mapping]]] = ..., classification: _Optional[_Union[_common_pb2.Classification, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., thumbnail: _Optional[bytes] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("index", "detection", "embedding")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    index: int
    detection: _common_pb2.Detection
    embedding: _common_pb2.Vector
    def __init__(self, index: _Optional[int] = ..., detection: _Optional[_Union[_common_pb2.Detection, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class ImageInfo(_message.Message):
    __slots__ = ("width", "height", "format", "sha256", "size_bytes")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    format: str
    sha256: str
    size_bytes: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Embeddings(_message.Message):
    __slots__ = ("image", "joint", "image_model", "text_model", "class_probs")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    JOINT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_PROBS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Vector
    joint: _common_pb2.Vector
    image_model: str
    text_model: str
    class_probs: _common_pb2.Vector
    def __init__(self, image: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., joint: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., image_model: _Optional[str] = ..., text_model: _Optional[str] = ..., class_probs: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class StageRecord(_message.Message):
    __slots__ = ("stage", "duration_ms", "finished_at")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    duration_ms: float
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., duration_ms: _Optional[float] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("query_id", "tenant", "image_id", "action", "position", "event_time", "factors", "ranker", "query", "user_id", "concepts", "skipped_concepts", "factor_lift", "skipped_weight", "skipped_hits")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[FeedbackEvent.Action]
        ACTION_IMPRESSION: _ClassVar[FeedbackEvent.Action]
        ACTION_CLICK: _ClassVar[FeedbackEvent.Action]
        ACTION_PURCHASE: _ClassVar[FeedbackEvent.Action]
        ACTION_ADD_TO_CART: _ClassVar[FeedbackEvent.Action]
        ACTION_LIKE: _ClassVar[FeedbackEvent.Action]
    ACTION_UNSPECIFIED: FeedbackEvent.Action
    ACTION_IMPRESSION: FeedbackEvent.Action
    ACTION_CLICK: FeedbackEvent.Action
    ACTION_PURCHASE: FeedbackEvent.Action
    ACTION_ADD_TO_CART: FeedbackEvent.Action
    ACTION_LIKE: FeedbackEvent.Action
    class FactorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FactorLiftEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    RANKER_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    FACTOR_LIFT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_HITS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    tenant: str
    image_id: str
    action: FeedbackEvent.Action
    position: int
    event_time: _timestamp_pb2.Timestamp
    factors: _containers.ScalarMap[str, float]
    ranker: str
    query: str
    user_id: str
    concepts: _containers.RepeatedScalarFieldContainer[str]
    skipped_concepts: _containers.RepeatedScalarFieldContainer[str]
    factor_lift: _containers.ScalarMap[str, float]
    skipped_weight: float
    skipped_hits: int
    def __init__(self, query_id: _Optional[str] = ..., tenant: _Optional[str] = ..., image_id: _Optional[str] = ..., action: _Optional[_Union[FeedbackEvent.Action, str]] = ..., position: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., factors: _Optional[_Mapping[str, float]] = ..., ranker: _Optional[str] = ..., query: _Optional[str] = ..., user_id: _Optional[str] = ..., concepts: _Optional[_Iterable[str]] = ..., skipped_concepts: _Optional[_Iterable[str]] = ..., factor_lift: _Optional[_Mapping[str, float]] = ..., skipped_weight: _Optional[float] = ..., skipped_hits: _Optional[int] = ...) -> None: ...

class UserProfile(_message.Message):
    __slots__ = ("user_id", "version", "updated_ms", "evidence", "positive", "negative", "factor_lift", "lift_events", "recent_events", "events", "feedback_offsets")
    class PositiveEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class NegativeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FactorLiftEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FeedbackOffsetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    FACTOR_LIFT_FIELD_NUMBER: _ClassVar[int]
    LIFT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    version: int
    updated_ms: int
    evidence: float
    positive: _containers.ScalarMap[str, float]
    negative: _containers.ScalarMap[str, float]
    factor_lift: _containers.ScalarMap[str, float]
    lift_events: float
    recent_events: _containers.RepeatedScalarFieldContainer[str]
    events: int
    feedback_offsets: _containers.ScalarMap[int, int]
    def __init__(self, user_id: _Optional[str] = ..., version: _Optional[int] = ..., updated_ms: _Optional[int] = ..., evidence: _Optional[float] = ..., positive: _Optional[_Mapping[str, float]] = ..., negative: _Optional[_Mapping[str, float]] = ..., factor_lift: _Optional[_Mapping[str, float]] = ..., lift_events: _Optional[float] = ..., recent_events: _Optional[_Iterable[str]] = ..., events: _Optional[int] = ..., feedback_offsets: _Optional[_Mapping[int, int]] = ...) -> None: ...
