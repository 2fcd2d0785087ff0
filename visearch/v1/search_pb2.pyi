from visearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("image", "text", "image_id", "top_k", "offset", "filter", "tenant")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    text: str
    image_id: str
    top_k: int
    offset: int
    filter: Filter
    tenant: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., text: _Optional[str] = ..., image_id: _Optional[str] = ..., top_k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("categories", "brands", "in_stock", "price_min", "price_max")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BRANDS_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    PRICE_MIN_FIELD_NUMBER: _ClassVar[int]
    PRICE_MAX_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    brands: _containers.RepeatedScalarFieldContainer[str]
    in_stock: bool
    price_min: float
    price_max: float
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., brands: _Optional[_Iterable[str]] = ..., in_stock: bool = ..., price_min: _Optional[float] = ..., price_max: _Optional[float] = ...) -> None: ...

class FactorScore(_message.Message):
    __slots__ = ("name", "value", "contribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    contribution: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("image_id", "score", "title", "category", "brand", "price", "in_stock", "uri", "factors")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    score: float
    title: str
    category: str
    brand: str
    price: float
    in_stock: bool
    uri: str
    factors: _containers.RepeatedCompositeFieldContainer[FactorScore]
    def __init__(self, image_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: bool = ..., uri: _Optional[str] = ..., factors: _Optional[_Iterable[_Union[FactorScore, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "took_ms")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOOK_MS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    took_ms: float
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., took_ms: _Optional[float] = ...) -> None: ...
