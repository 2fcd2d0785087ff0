"""Typed settings, read from environment variables (prefix ``VISEARCH_``) by pydantic-settings.

One settings object per concern; services take the ones they need. Every field has a default so the
embedded mode (one process, Milvus Lite, in-process onnxruntime) runs with no configuration at all.
docs/configuration.md lists every variable; tests/unit/test_config.py keeps that list in step.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "visearch"


class ModelSettings(BaseSettings):
    """Where built models live and how in-process inference runs."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_MODEL_", extra="ignore")

    cache_dir: Path = Field(
        default_factory=lambda: _default_cache() / "models",
        description="Directory of built ONNX models, one sub-folder per model and recipe key (outside the repo).",
    )
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime choose.")
    image_batch_size: int = Field(16, ge=1, le=256, description="Images per inference call of the image model.")
    text_batch_size: int = Field(64, ge=1, le=1024, description="Texts per inference call of the text encoder.")
    triton_url: str = Field("", description="Triton gRPC address (host:port); empty runs the models in-process with onnxruntime.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Deadline of each Triton inference call, seconds.")


class ImageSettings(BaseSettings):
    """Limits applied when decoding untrusted images."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_IMAGE_", extra="ignore")

    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest encoded image accepted, in bytes.")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest decoded image accepted, width x height pixels.")
    allow_file_uris: bool = Field(True, description="Accept file:// URIs and bare paths (the CLI ingests folders).")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Timeout for http(s) image fetches, seconds.")


class StoreSettings(BaseSettings):
    """Milvus connection and collection names."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_MILVUS_", extra="ignore")

    uri: str = Field(
        default_factory=lambda: str(_default_cache() / "milvus.db"),
        description="Milvus URI: a local *.db path selects Milvus Lite; http://host:19530 a Milvus server.",
    )
    token: str = Field("", description="Milvus auth token (user:password), empty for none.")
    collection_prefix: str = Field("visearch", description="Prefix of the collection names (<prefix>_image, <prefix>_joint).")
    search_consistency: str = Field(
        "Bounded", pattern="^(Strong|Bounded|Session|Eventually)$",
        description="Milvus consistency level of searches (Bounded: may miss writes of the last seconds, faster); "
                    "reads by id and counts are always Strong.")


class ConseSettings(BaseSettings):
    """The joint image-text space (ConSE, Norouzi et al. 2014)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_CONSE_", extra="ignore")

    top_t: int = Field(10, ge=1, le=1000, description="Number of top ImageNet classes averaged into the joint vector.")
    object_weight: float = Field(0.5, ge=0, le=10, description="Weight of the detected objects' label embeddings added to an indexed image's joint vector (0: classes only).")
    ocr_weight: float = Field(0.5, ge=0, le=10, description="Weight of the embedding of the image's OCR text added to its joint vector (0: ignore OCR).")


class DetectionSettings(BaseSettings):
    """The object detector (CenterNet-MobileNetV3, COCO-80) and which detections become regions."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_DETECTION_", extra="ignore")

    score_threshold: float = Field(0.3, ge=0, le=1, description="Smallest detection score kept.")
    nms_iou: float = Field(0.5, gt=0, le=1, description="IoU above which NMS (OpenCV NMSBoxes, per class) drops the lower-scored box.")
    max_detections: int = Field(50, ge=1, le=100, description="Most detections kept per image after NMS.")
    region_min_score: float = Field(0.3, ge=0, le=1, description="Smallest score of a detection that gets a region embedding.")
    region_min_area: float = Field(0.01, ge=0, le=1, description="Smallest box area, as a share of the image, that gets a region embedding.")
    max_regions: int = Field(8, ge=0, le=64, description="Most regions embedded and indexed per image (highest scores first).")
    batch_size: int = Field(8, ge=1, le=64, description="Images per inference call of the detector (each a 512 x 512 input).")


class OcrSettings(BaseSettings):
    """Text reading (PP-OCR det/cls/rec)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_OCR_", extra="ignore")

    det_max_side: int = Field(960, ge=32, le=4096, description="Longest side the text detector sees, pixels (speed vs small text).")
    min_score: float = Field(0.5, ge=0, le=1, description="Smallest recognition confidence of a line that is kept.")
    use_angle_classifier: bool = Field(True, description="Run the 0/180 degree direction classifier on each line crop.")
    det_threshold: float = Field(0.3, gt=0, lt=1, description="Text-probability above which a detector map pixel is text (DB binarisation).")
    det_box_threshold: float = Field(0.5, ge=0, le=1, description="Smallest mean text-probability inside a detected box that is kept.")
    det_unclip_ratio: float = Field(1.6, gt=0, le=5, description="How far detected text kernels are grown back (offset = area * ratio / perimeter); larger gives looser boxes.")
    cls_threshold: float = Field(0.9, ge=0, le=1, description="A line is turned 180 degrees only when the direction classifier is at least this sure.")
    rec_batch_size: int = Field(6, ge=1, le=64, description="Line crops per classifier / recogniser call (crops of similar aspect ratio are batched together).")


class ClassificationSettings(BaseSettings):
    """Taxonomy, tags, colours and moderation."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_CLASSIFICATION_", extra="ignore")

    taxonomy_path: Path | None = Field(None, description="Taxonomy YAML; empty uses the one built from WordNet by `visearch models build`.")
    taxonomy_min_score: float = Field(0.5, ge=0, le=1, description="A taxonomy path stops at the deepest node whose probability is at least this.")
    concept_vocabulary_path: Path | None = Field(None, description="YAML list of zero-shot concept tags; empty uses the built-in vocabulary.")
    concept_min_score: float = Field(
        0.18, ge=-1, le=1,
        description="Smallest score of a zero-shot concept tag that is kept: its cosine with the image's joint vector "
                    "minus the image's mean cosine over the vocabulary (calibrated on the demo photos).")
    max_concepts: int = Field(5, ge=0, le=100, description="Most zero-shot concept tags per image.")
    colours: int = Field(5, ge=1, le=16, description="Dominant colours found per image (k of the k-means in Lab).")
    moderation_unsafe_threshold: float = Field(0.6, ge=0, le=1, description="An image is unsafe when P(porn) + P(hentai) + P(sexy) is at least this.")


class KafkaSettings(BaseSettings):
    """Kafka connection, topics and consumer behaviour (the asynchronous pipeline)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_KAFKA_", extra="ignore")

    bootstrap: str = Field("", description="Kafka bootstrap servers (host:port,...); empty runs stage workers in-process only.")
    topic_prefix: str = Field("visearch", description="Topic names are <prefix>.<name>.v1 (images, detected, embedded, ocr, classified).")
    partitions: int = Field(6, ge=1, le=1024, description="Partitions of each topic created by `visearch topics create`.")
    replication_factor: int = Field(1, ge=1, le=16, description="Replication factor of created topics.")
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1, description="retention.ms of pipeline topics (-1: forever).")
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1, description="retention.ms of <topic>.dlq topics.")
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest message (max.message.bytes / max_request_size), bytes.")
    max_poll_records: int = Field(32, ge=1, le=10000, description="Records per poll, and so per model batch.")
    poll_timeout_s: float = Field(1.0, gt=0, description="How long a poll waits for records, seconds.")
    session_timeout_ms: int = Field(10000, ge=1000, description="Consumer group session timeout, ms.")
    max_poll_interval_ms: int = Field(300000, ge=1000, description="Max time between polls before the consumer leaves the group, ms.")
    retry_initial_s: float = Field(0.5, gt=0, description="First backoff after a transient failure, seconds (exponential, with jitter).")
    retry_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries, seconds.")
    dlq_max_consecutive: int = Field(100, ge=1, description="Stop the worker after this many consecutive dead letters (a bad deploy, not bad data).")
    dlq_max_ratio: float = Field(0.5, gt=0, le=1, description="Stop the worker when this share of the last dlq_window items went to the DLQ.")
    dlq_window: int = Field(200, ge=10, description="Items in the sliding window of the DLQ ratio policy.")


class PipelineSettings(BaseSettings):
    """Which stages make up the ingest chain."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_PIPELINE_", extra="ignore")

    stages: str = Field(
        "detection,embedding,ocr,classification,indexer",
        description="Comma-separated stages in the chain (detection, embedding, ocr, classification, indexer); "
                    "stages left out are passed through: the next one consumes the previous one's output.",
    )

    @property
    def stage_list(self) -> list[str]:
        """``stages`` as a list of names."""
        return [s.strip() for s in self.stages.split(",") if s.strip()]


class ServiceSettings(BaseSettings):
    """Process-level settings of a long-running service."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_", extra="ignore")

    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds to.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 disables it.")
    grpc_max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Max gRPC message size, bytes.")
    log_level: str = Field("info", description="structlog level: debug, info, warning, error.")
    tenant: str = Field("default", description="Tenant used when a request or event names none.")
    embedding_addr: str = Field(
        "", description="host:port of the embedding service for the search API; empty loads the models in-process.")
    detection_addr: str = Field(
        "", description="host:port of the detection service (search by the query's objects, Classify's objects); "
                        "empty: in-process in embedded mode, unused by a standalone server.")
    ocr_addr: str = Field("", description="host:port of the OCR service (Classify's has_text); empty as detection_addr.")
    classification_addr: str = Field(
        "", description="host:port of the classification service (Tag on a query image); empty as detection_addr.")


ALL_SETTINGS = (ServiceSettings, ModelSettings, ImageSettings, StoreSettings, ConseSettings, DetectionSettings,
                OcrSettings, ClassificationSettings, KafkaSettings, PipelineSettings)


def settings_markdown() -> str:
    """A markdown table of every environment variable, its default and meaning (docs/configuration.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in ALL_SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            default = "(per user: ~/.cache/visearch/...)" if field.default_factory else repr(field.default)
            lines.append(f"| `{(prefix + name).upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
