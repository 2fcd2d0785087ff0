from visearch.v1 import common_pb2 as _common_pb2
from visearch.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Fusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_DEFAULT: _ClassVar[Fusion]
    FUSION_BLEND: _ClassVar[Fusion]
    FUSION_RRF: _ClassVar[Fusion]

class RegionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGION_MODE_AUTO: _ClassVar[RegionMode]
    REGION_MODE_GLOBAL_ONLY: _ClassVar[RegionMode]
    REGION_MODE_QUERY_OBJECTS: _ClassVar[RegionMode]
FUSION_DEFAULT: Fusion
FUSION_BLEND: Fusion
FUSION_RRF: Fusion
REGION_MODE_AUTO: RegionMode
REGION_MODE_GLOBAL_ONLY: RegionMode
REGION_MODE_QUERY_OBJECTS: RegionMode

class RankingProfile(_message.Message):
    __slots__ = ("weights", "fusion", "name")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, float]
    fusion: Fusion
    name: str
    def __init__(self, weights: _Optional[_Mapping[str, float]] = ..., fusion: _Optional[_Union[Fusion, str]] = ..., name: _Optional[str] = ...) -> None: ...

class WeightedColour(_message.Message):
    __slots__ = ("colour", "weight")
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    colour: str
    weight: float
    def __init__(self, colour: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class ColourQuery(_message.Message):
    __slots__ = ("palette", "image", "image_id")
    PALETTE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    palette: Palette
    image: _common_pb2.Image
    image_id: str
    def __init__(self, palette: _Optional[_Union[Palette, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., image_id: _Optional[str] = ...) -> None: ...

class Palette(_message.Message):
    __slots__ = ("colours",)
    COLOURS_FIELD_NUMBER: _ClassVar[int]
    colours: _containers.RepeatedCompositeFieldContainer[WeightedColour]
    def __init__(self, colours: _Optional[_Iterable[_Union[WeightedColour, _Mapping]]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("image", "text", "image_id", "colour", "region", "region_mode", "top_k", "offset", "filter", "tenant", "ranking", "understand_query", "user_id", "personalise")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REGION_MODE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    UNDERSTAND_QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PERSONALISE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    text: str
    image_id: str
    colour: ColourQuery
    region: _common_pb2.Box
    region_mode: RegionMode
    top_k: int
    offset: int
    filter: Filter
    tenant: str
    ranking: RankingProfile
    understand_query: bool
    user_id: str
    personalise: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., text: _Optional[str] = ..., image_id: _Optional[str] = ..., colour: _Optional[_Union[ColourQuery, _Mapping]] = ..., region: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., region_mode: _Optional[_Union[RegionMode, str]] = ..., top_k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., tenant: _Optional[str] = ..., ranking: _Optional[_Union[RankingProfile, _Mapping]] = ..., understand_query: bool = ..., user_id: _Optional[str] = ..., personalise: bool = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("categories", "brands", "in_stock", "price_min", "price_max", "safe")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BRANDS_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    PRICE_MIN_FIELD_NUMBER: _ClassVar[int]
    PRICE_MAX_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    brands: _containers.RepeatedScalarFieldContainer[str]
    in_stock: bool
    price_min: float
    price_max: float
    safe: bool
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., brands: _Optional[_Iterable[str]] = ..., in_stock: bool = ..., price_min: _Optional[float] = ..., price_max: _Optional[float] = ..., safe: bool = ...) -> None: ...

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
    __slots__ = ("image_id", "score", "title", "category", "brand", "price", "in_stock", "uri", "factors", "region", "duplicate_of", "safe", "tags", "taxonomy", "ocr_text")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    score: float
    title: str
    category: str
    brand: str
    price: float
    in_stock: bool
    uri: str
    factors: _containers.RepeatedCompositeFieldContainer[FactorScore]
    region: RegionMatch
    duplicate_of: str
    safe: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    taxonomy: str
    ocr_text: str
    def __init__(self, image_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: bool = ..., uri: _Optional[str] = ..., factors: _Optional[_Iterable[_Union[FactorScore, _Mapping]]] = ..., region: _Optional[_Union[RegionMatch, _Mapping]] = ..., duplicate_of: _Optional[str] = ..., safe: bool = ..., tags: _Optional[_Iterable[str]] = ..., taxonomy: _Optional[str] = ..., ocr_text: _Optional[str] = ...) -> None: ...

class RegionMatch(_message.Message):
    __slots__ = ("index", "label", "box", "query_box", "query_label")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    QUERY_BOX_FIELD_NUMBER: _ClassVar[int]
    QUERY_LABEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    box: _common_pb2.Box
    query_box: _common_pb2.Box
    query_label: str
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., query_box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., query_label: _Optional[str] = ...) -> None: ...

class SimilarToRequest(_message.Message):
    __slots__ = ("image_id", "image", "exact_only", "top_k", "offset", "filter", "tenant", "ranking", "user_id", "personalise")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EXACT_ONLY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PERSONALISE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image: _common_pb2.Image
    exact_only: bool
    top_k: int
    offset: int
    filter: Filter
    tenant: str
    ranking: RankingProfile
    user_id: str
    personalise: bool
    def __init__(self, image_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., exact_only: bool = ..., top_k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., tenant: _Optional[str] = ..., ranking: _Optional[_Union[RankingProfile, _Mapping]] = ..., user_id: _Optional[str] = ..., personalise: bool = ...) -> None: ...

class AlternativesRequest(_message.Message):
    __slots__ = ("image_id", "top_k", "offset", "filter", "tenant", "ranking", "user_id", "personalise")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PERSONALISE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    top_k: int
    offset: int
    filter: Filter
    tenant: str
    ranking: RankingProfile
    user_id: str
    personalise: bool
    def __init__(self, image_id: _Optional[str] = ..., top_k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., tenant: _Optional[str] = ..., ranking: _Optional[_Union[RankingProfile, _Mapping]] = ..., user_id: _Optional[str] = ..., personalise: bool = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.FeedbackEvent, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class UserProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class UserProfileResponse(_message.Message):
    __slots__ = ("user_id", "found", "applies", "profile", "concepts", "factor_multipliers")
    class FactorMultipliersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    APPLIES_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    FACTOR_MULTIPLIERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    found: bool
    applies: bool
    profile: _events_pb2.UserProfile
    concepts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    factor_multipliers: _containers.ScalarMap[str, float]
    def __init__(self, user_id: _Optional[str] = ..., found: bool = ..., applies: bool = ..., profile: _Optional[_Union[_events_pb2.UserProfile, _Mapping]] = ..., concepts: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., factor_multipliers: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: bool = ...) -> None: ...

class TagRequest(_message.Message):
    __slots__ = ("image_id", "image", "neighbours", "top_n", "tenant")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image: _common_pb2.Image
    neighbours: int
    top_n: int
    tenant: str
    def __init__(self, image_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., neighbours: _Optional[int] = ..., top_n: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class TagResponse(_message.Message):
    __slots__ = ("phrases", "model_tags", "neighbours_used")
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAGS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_USED_FIELD_NUMBER: _ClassVar[int]
    phrases: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    model_tags: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribute]
    neighbours_used: int
    def __init__(self, phrases: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., model_tags: _Optional[_Iterable[_Union[_common_pb2.Attribute, _Mapping]]] = ..., neighbours_used: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "took_ms", "query_id", "ranker", "signals", "main_region")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOOK_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    RANKER_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    MAIN_REGION_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    took_ms: float
    query_id: str
    ranker: str
    signals: _containers.RepeatedCompositeFieldContainer[QuerySignal]
    main_region: _common_pb2.Box
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., took_ms: _Optional[float] = ..., query_id: _Optional[str] = ..., ranker: _Optional[str] = ..., signals: _Optional[_Iterable[_Union[QuerySignal, _Mapping]]] = ..., main_region: _Optional[_Union[_common_pb2.Box, _Mapping]] = ...) -> None: ...

class QuerySignal(_message.Message):
    __slots__ = ("name", "used", "skipped", "took_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOOK_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    used: bool
    skipped: str
    took_ms: float
    def __init__(self, name: _Optional[str] = ..., used: bool = ..., skipped: _Optional[str] = ..., took_ms: _Optional[float] = ...) -> None: ...
