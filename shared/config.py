"""Typed settings, read from environment variables (prefix ``VISEARCH_``) by pydantic-settings.

One settings object per concern; services take the ones they need. Every field has a default so the
embedded mode (one process, Milvus Lite, in-process onnxruntime) runs with no configuration at all.
docs/configuration.md lists every variable; tests/unit/test_config.py keeps that list in step.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
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
    thread_spinning: bool = Field(
        False,
        description="Let onnxruntime's intra-op threads spin-wait for work between operators (its default). Off: "
        "they sleep, so models that run at once in one process (a search's concurrent query signals) "
        "share the cores instead of burning them; measured on 2 cores, blended image search p50 "
        "-10 to -30 % (docs/performance.md).",
    )
    image_batch_size: int = Field(16, ge=1, le=256, description="Images per inference call of the image model.")
    text_batch_size: int = Field(64, ge=1, le=1024, description="Texts per inference call of the text encoder.")
    text_int8: bool = Field(
        False,
        description="Run the text encoder with int8 weights (MiniLM quantised by onnxruntime's dynamic "
        "quantisation, built by `visearch models build`), in-process only. Measured: query encode "
        "x2.0 faster; embedding cosine to fp32 median 0.97; text-to-image nDCG@10 within +-0.02 of fp32 "
        "(docs/performance.md). "
        "Every text vector changes space (ConSE class vectors too): re-index after changing it.",
    )
    triton_url: str = Field(
        "", description="Triton gRPC address (host:port); empty runs the models in-process with onnxruntime."
    )
    triton_timeout_s: float = Field(30.0, gt=0, description="Deadline of each Triton inference call, seconds.")
    # Trained catalogue models (`visearch train`, shared/models/trained.py): "" off, "latest", or a version number.
    catalogue: str = Field(
        "fashion-mnist",
        min_length=1,
        max_length=64,
        description="Catalogue whose trained models (`visearch train`) projection and catalogue_head select: "
        "<cache_dir>/<kind>_<catalogue>/<version>/.",
    )
    projection: str = Field(
        "",
        pattern=r"^(|latest|[1-9][0-9]*)$",
        description="Metric-learning projection applied to every image embedding (empty: off; latest; or a version "
        "number). The image model name gets +projection_<catalogue>@<version>; re-index after changing it.",
    )
    catalogue_head: str = Field(
        "",
        pattern=r"^(|latest|[1-9][0-9]*)$",
        description="Multi-task head whose category and tags the classification service adds (empty: off; latest; "
        "or a version number).",
    )

    @model_validator(mode="after")
    def _int8_in_process(self) -> ModelSettings:
        if self.text_int8 and self.triton_url:
            raise ValueError(
                "text_int8 runs the text encoder in-process; Triton serves the fp32 model "
                "(on a GPU, TensorRT's fp16/int8 is the fast path: docs/performance.md)"
            )
        return self


class ImageSettings(BaseSettings):
    """Limits applied when reading and decoding untrusted images, and the rules of http(s) image fetches.

    An image URI in an event or request is untrusted input. http(s) fetches (``shared/fetch.py``) refuse
    hosts that resolve to loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved or
    otherwise non-global addresses unless allowlisted; file URIs are refused unless enabled.
    """

    model_config = SettingsConfigDict(env_prefix="VISEARCH_IMAGE_", extra="ignore")

    max_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1,
        description="Largest encoded image accepted, in bytes (also the cap of an http(s) download).",
    )
    max_pixels: int = Field(40_000_000, ge=1, description="Largest decoded image accepted, width x height pixels.")
    allow_file_uris: bool = Field(
        False,
        description="Accept file:// URIs and bare paths. Off for services: an untrusted event must not make them "
        "read local files. The CLI turns it on for the folders it ingests.",
    )
    draft_decode: bool = Field(
        False,
        description="Decode a large JPEG query image at a reduced scale (libjpeg DCT scaling, 1/2 to 1/8) when only "
        "its global embedding is needed (EmbedImage): its short side stays >= 256 px, the model's resize "
        "target. Ingest, regions, detection and OCR always decode at full size. Measured: decode x1.15-1.8 "
        "on real photos >= 768 px, x2.85 on a 3000x2000 q90 JPEG (46 -> 16 ms), query embedding cosine "
        ">= 0.995 to the full decode, near-duplicate nDCG@10 -0.002 (docs/performance.md); off by default.",
    )
    fetch_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Total time limit of one http(s) image fetch (DNS, connects, redirects and body), seconds.",
    )
    fetch_connect_timeout_s: float = Field(
        3.0, gt=0, le=600, description="Time limit of each TCP (+TLS) connect of an http(s) image fetch, seconds."
    )
    fetch_max_redirects: int = Field(
        3,
        ge=0,
        le=20,
        description="Most redirects followed by an http(s) image fetch; each hop's address is checked again.",
    )
    fetch_allow_cidrs: str = Field(
        "",
        description="Comma-separated CIDRs (e.g. 10.20.0.0/16,fd12::/16) whose addresses image fetches may reach "
        "although they are private, loopback, link-local or otherwise not global.",
    )
    fetch_allow_hosts: str = Field(
        "",
        description="Comma-separated host names image fetches may reach whatever addresses they resolve to "
        "(exact names, or *.example.com for its subdomains).",
    )
    fetch_ca_file: Path | None = Field(
        None,
        description="PEM file of CA certificates trusted for https image fetches instead of the system store; empty uses the system store.",
    )

    @field_validator("fetch_allow_cidrs")
    @classmethod
    def _check_cidrs(cls, value: str) -> str:
        for item in _comma_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"fetch_allow_cidrs: {item!r} is not a CIDR or address") from exc
        return value

    @property
    def allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``fetch_allow_cidrs`` parsed (host bits ignored: ``10.0.0.1/8`` means ``10.0.0.0/8``)."""
        return [ipaddress.ip_network(item, strict=False) for item in _comma_list(self.fetch_allow_cidrs)]

    @property
    def allow_host_list(self) -> list[str]:
        """``fetch_allow_hosts`` as lower-case names without a trailing dot."""
        return [item.lower().rstrip(".") for item in _comma_list(self.fetch_allow_hosts)]


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class StoreSettings(BaseSettings):
    """Milvus connection and collection names."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_MILVUS_", extra="ignore", hide_input_in_errors=True)

    uri: str = Field(
        default_factory=lambda: str(_default_cache() / "milvus.db"),
        description="Milvus URI: a local *.db path selects Milvus Lite; http://host:19530 a Milvus server.",
    )
    token: SecretStr = Field(
        SecretStr(""), description="Milvus auth token (user:password), empty for none (a secret: never logged)."
    )
    collection_prefix: str = Field(
        "visearch",
        description="Prefix of the collection names (<prefix>_items, <prefix>_region; per_space: <prefix>_image, <prefix>_joint, <prefix>_colour).",
    )
    layout: str = Field(
        "auto",
        pattern="^(auto|unified|per_space)$",
        description="Store layout. unified: one collection with the image, joint and colour vectors and a BM25 "
        "field (keyword search inside Milvus; needs Milvus >= 2.5 or Milvus Lite >= 3); per_space: one "
        "collection per vector (Milvus 2.3; keyword search in each ranking process). auto: unified where "
        "the server has it, unless only a per_space catalogue exists (`visearch store migrate` moves it).",
    )
    search_consistency: str = Field(
        "Bounded",
        pattern="^(Strong|Bounded|Session|Eventually)$",
        description="Milvus consistency level of searches (Bounded: may miss writes of the last seconds, faster); "
        "reads by id and counts are always Strong.",
    )
    index_type: str = Field(
        "HNSW",
        pattern="^(HNSW|IVF_FLAT|FLAT|AUTOINDEX)$",
        description="Vector index of new collections on a Milvus server (an existing collection keeps the index it "
        "was built with; Milvus Lite always searches FLAT). HNSW: graph (Malkov & Yashunin 2018), "
        "recall set per query by search_ef; IVF_FLAT: k-means lists probed by search_nprobe; FLAT: exact.",
    )
    hnsw_m: int = Field(
        16, ge=4, le=64, description="HNSW: graph neighbours per node (memory and recall grow with it)."
    )
    hnsw_ef_construction: int = Field(
        200, ge=8, le=1024, description="HNSW: candidate list size while building the graph."
    )
    ivf_nlist: int = Field(
        1024, ge=1, le=65536, description="IVF_FLAT: number of k-means lists (about 4 x sqrt(rows))."
    )
    search_ef: int = Field(
        256,
        ge=1,
        le=32768,
        description="HNSW: candidate list size per search, raised to offset + top_k when smaller; higher = better "
        "recall, slower (docs/performance.md has recall@10 per value).",
    )
    search_nprobe: int = Field(32, ge=1, le=65536, description="IVF_FLAT: lists probed per search.")


class ConseSettings(BaseSettings):
    """The joint image-text space (ConSE, Norouzi et al. 2014)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_CONSE_", extra="ignore")

    top_t: int = Field(10, ge=1, le=1000, description="Number of top ImageNet classes averaged into the joint vector.")
    object_weight: float = Field(
        0.5,
        ge=0,
        le=10,
        description="Weight of the detected objects' label embeddings added to an indexed image's joint vector (0: classes only).",
    )
    ocr_weight: float = Field(
        0.5,
        ge=0,
        le=10,
        description="Weight of the embedding of the image's OCR text added to its joint vector (0: ignore OCR).",
    )
    query_visual: bool = Field(
        True,
        description="Also map text queries into the image encoder's space (the DeViSE-style text-to-visual map of `models build`) and search the image embeddings with them.",
    )
    query_concepts: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Weight of the ImageNet classes a text query's words name through WordNet (the lexicon of `models build`), mixed into its joint and image-space vectors in proportion to how directly they are named (0: off).",
    )
    query_centering: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Hubness reduction of text queries: the share of the query bank's mean subtracted from a text query before search (a CSLS approximation; 0: off).",
    )


class DetectionSettings(BaseSettings):
    """The object detector (CenterNet-MobileNetV3, COCO-80) and which detections become regions."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_DETECTION_", extra="ignore")

    score_threshold: float = Field(0.3, ge=0, le=1, description="Smallest detection score kept.")
    nms_iou: float = Field(
        0.5, gt=0, le=1, description="IoU above which NMS (OpenCV NMSBoxes, per class) drops the lower-scored box."
    )
    max_detections: int = Field(50, ge=1, le=100, description="Most detections kept per image after NMS.")
    region_min_score: float = Field(
        0.3, ge=0, le=1, description="Smallest score of a detection that gets a region embedding."
    )
    region_min_area: float = Field(
        0.01, ge=0, le=1, description="Smallest box area, as a share of the image, that gets a region embedding."
    )
    max_regions: int = Field(
        8, ge=0, le=64, description="Most regions embedded and indexed per image (highest scores first)."
    )
    batch_size: int = Field(
        8, ge=1, le=64, description="Images per inference call of the detector (each a 512 x 512 input)."
    )


class OcrSettings(BaseSettings):
    """Text reading (PP-OCR det/cls/rec)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_OCR_", extra="ignore")

    det_max_side: int = Field(
        960, ge=32, le=4096, description="Longest side the text detector sees, pixels (speed vs small text)."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Smallest recognition confidence of a line that is kept.")
    use_angle_classifier: bool = Field(True, description="Run the 0/180 degree direction classifier on each line crop.")
    det_threshold: float = Field(
        0.3, gt=0, lt=1, description="Text-probability above which a detector map pixel is text (DB binarisation)."
    )
    det_box_threshold: float = Field(
        0.5, ge=0, le=1, description="Smallest mean text-probability inside a detected box that is kept."
    )
    det_unclip_ratio: float = Field(
        1.6,
        gt=0,
        le=5,
        description="How far detected text kernels are grown back (offset = area * ratio / perimeter); larger gives looser boxes.",
    )
    cls_threshold: float = Field(
        0.9,
        ge=0,
        le=1,
        description="A line is turned 180 degrees only when the direction classifier is at least this sure.",
    )
    rec_batch_size: int = Field(
        6,
        ge=1,
        le=64,
        description="Line crops per classifier / recogniser call (crops of similar aspect ratio are batched together).",
    )


class ClassificationSettings(BaseSettings):
    """Taxonomy, tags, colours and moderation."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_CLASSIFICATION_", extra="ignore")

    taxonomy_path: Path | None = Field(
        None, description="Taxonomy YAML; empty uses the one built from WordNet by `visearch models build`."
    )
    taxonomy_min_score: float = Field(
        0.5, ge=0, le=1, description="A taxonomy path stops at the deepest node whose probability is at least this."
    )
    concept_vocabulary_path: Path | None = Field(
        None, description="YAML list of zero-shot concept tags; empty uses the built-in vocabulary."
    )
    concept_min_score: float = Field(
        0.18,
        ge=-1,
        le=1,
        description="Smallest score of a zero-shot concept tag that is kept: its cosine with the image's joint vector "
        "minus the image's mean cosine over the vocabulary (calibrated on the demo photos).",
    )
    max_concepts: int = Field(5, ge=0, le=100, description="Most zero-shot concept tags per image.")
    colours: int = Field(5, ge=1, le=16, description="Dominant colours found per image (k of the k-means in Lab).")
    moderation_unsafe_threshold: float = Field(
        0.6, ge=0, le=1, description="An image is unsafe when P(porn) + P(hentai) + P(sexy) is at least this."
    )
    head_tag_min_score: float = Field(
        0.5,
        ge=0,
        le=1,
        description='Smallest sigmoid probability of a catalogue head\'s tag that becomes a "tag" attribute.',
    )


class KafkaSettings(BaseSettings):
    """Kafka connection, topics and consumer behaviour (the asynchronous pipeline)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_KAFKA_", extra="ignore")

    bootstrap: str = Field(
        "", description="Kafka bootstrap servers (host:port,...); empty runs stage workers in-process only."
    )
    topic_prefix: str = Field(
        "visearch", description="Topic names are <prefix>.<name>.v1 (images, detected, embedded, ocr, classified)."
    )
    partitions: int = Field(
        6, ge=1, le=1024, description="Partitions of each topic created by `visearch topics create`."
    )
    replication_factor: int = Field(1, ge=1, le=16, description="Replication factor of created topics.")
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1, description="retention.ms of pipeline topics (-1: forever).")
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1, description="retention.ms of <topic>.dlq topics.")
    max_message_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest message (max.message.bytes / max_request_size), bytes."
    )
    max_poll_records: int = Field(32, ge=1, le=10000, description="Records per poll, and so per model batch.")
    poll_timeout_s: float = Field(1.0, gt=0, description="How long a poll waits for records, seconds.")
    session_timeout_ms: int = Field(10000, ge=1000, description="Consumer group session timeout, ms.")
    max_poll_interval_ms: int = Field(
        300000, ge=1000, description="Max time between polls before the consumer leaves the group, ms."
    )
    retry_initial_s: float = Field(
        0.5, gt=0, description="First backoff after a transient failure, seconds (exponential, with jitter)."
    )
    retry_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries, seconds.")
    dlq_max_consecutive: int = Field(
        100, ge=1, description="Stop the worker after this many consecutive dead letters (a bad deploy, not bad data)."
    )
    dlq_max_ratio: float = Field(
        0.5, gt=0, le=1, description="Stop the worker when this share of the last dlq_window items went to the DLQ."
    )
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
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 disables it."
    )
    grpc_max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Max gRPC message size, bytes.")
    log_level: str = Field("info", description="structlog level: debug, info, warning, error.")
    tenant: str = Field("default", description="Tenant used when a request or event names none.")
    embedding_addr: str = Field(
        "", description="host:port of the embedding service for the search API; empty loads the models in-process."
    )
    detection_addr: str = Field(
        "",
        description="host:port of the detection service (search by the query's objects, Classify's objects); "
        "empty: in-process in embedded mode, unused by a standalone server.",
    )
    ocr_addr: str = Field(
        "", description="host:port of the OCR service (Classify's has_text); empty as detection_addr."
    )
    classification_addr: str = Field(
        "", description="host:port of the classification service (Tag on a query image); empty as detection_addr."
    )


class RankingSettings(BaseSettings):
    """The ranking service's ranker: profiles, the learned ranker's folder, candidate depth, query understanding."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_RANKING_", extra="ignore")

    profile: str = Field("blended", description="Default ranking profile (built in: blended, visual_only, colour).")
    profiles: dict[str, dict[str, float]] = Field(
        default_factory=dict, description='Extra named profiles as JSON: {"name": {"factor": weight, ...}}.'
    )
    tenant_profiles: dict[str, str] = Field(
        default_factory=dict, description='Per-tenant profile as JSON: {"tenant": "profile"}.'
    )
    learned_dir: Path | None = Field(
        None,
        description="Folder of learned rankers (ranker-v<N>.json, written by `visearch rank fit`); the newest "
        "replaces the default profile and is hot-reloaded. Unset: profiles only.",
    )
    reload_interval_s: float = Field(
        5.0, ge=0.1, le=3600, description="How often the learned-ranker folder is checked, seconds."
    )
    rrf_k: int = Field(60, ge=1, le=10_000, description="Reciprocal rank fusion constant k.")
    rerank_depth: int = Field(
        100,
        ge=1,
        le=16_384,
        description="Candidates fetched per route and re-scored by every factor (at least the requested window; only the window when the ranker weighs nothing but the one route's similarity, e.g. visual_only).",
    )
    rerank_depth_embedded: int = Field(
        30,
        ge=1,
        le=16_384,
        description="The rerank window on Milvus Lite (embedded mode), whose cost per search grows with the rows it "
        "returns (top-30 ~8 ms, top-100 ~19 ms); the eval suites rank the same at 30 as at 100 "
        "(docs/performance.md). At most rerank_depth.",
    )
    understand_query: bool = Field(
        True,
        description="Query understanding of image queries, cheapest first and only what the ranker weighs: "
        "colours, pHash and the main photo of a framed query (in this process), taxonomy and "
        "concept tags (Classify over the embedding's class probabilities), text (OCR, for BM25).",
    )
    signal_budgets_ms: dict[str, float] = Field(
        default_factory=lambda: {
            "pixels": 100.0,
            "main_region_embedding": 200.0,
            "classes": 150.0,
            "text": 150.0,
            "objects": 1000.0,
        },
        description="Time budget of each query-understanding signal, milliseconds from the start of the request, as "
        'JSON {"signal": ms}: a signal not ready by then is skipped (SearchResponse.signals says so), '
        "never an error. Signals: pixels, main_region_embedding, classes, text, objects.",
    )
    query_object_tags: bool = Field(
        False,
        description="Run the detector on a query image for the tags factor (its objects' labels join the query's "
        "tags, as the detected objects of every indexed image are among its tags). Off (default): "
        "the query's objects come from its class probabilities (COCO labels above its ImageNet "
        "classes in WordNet) and from its nearest visual neighbours' objects: near-duplicates "
        "(small suite) 0.897 either way, default-size suite -0.004 (two queries showing people, whom "
        "no ImageNet class names; docs/quality.md), and a CPU saves the detector's 30-80 ms per query.",
    )
    framed_queries: bool = Field(
        True,
        description="Find the main photo of a framed image query (a screenshot or web page) and search with it "
        "alongside the whole image, each candidate keeping the better visual evidence.",
    )
    query_ocr_max_side: int = Field(
        480,
        ge=64,
        le=4096,
        description="Longest side of a query image's OCR pass (text detector input), pixels: "
        "larger text only, fast enough for a search.",
    )
    freshness_half_life_days: float = Field(30.0, gt=0, description="Age at which the freshness factor halves, days.")
    text_index_refresh_s: float = Field(
        30.0,
        ge=0,
        description="per_space store layout (Milvus 2.3) only: age after which a ranking process's in-memory BM25 index of a tenant is rebuilt from Milvus, seconds (0: every query). The unified layout's BM25 runs in Milvus.",
    )
    feedback_impressions: bool = Field(True, description="Log every served hit as an impression on the feedback topic.")


class SecuritySettings(BaseSettings):
    """TLS / mutual TLS of gRPC servers and clients, bearer-token auth and per-client rate limits.

    Everything is off by default (plaintext on the loopback address, no token, no limit). The server side
    (tls_cert_file, tls_key_file, tls_client_ca_file, auth_*, rate_limit_*) applies to every gRPC server
    of the process; the client side (tls_ca_file, client_tls, tls_client_*, client_token,
    client_timeout_s) to every call it makes to another service (and the CLI's ``--server``).
    """

    # Validation errors never echo the input: it holds the tokens.
    model_config = SettingsConfigDict(env_prefix="VISEARCH_SECURITY_", extra="ignore", hide_input_in_errors=True)

    tls_cert_file: Path | None = Field(
        None,
        description="Server certificate chain (PEM). With tls_key_file, every gRPC server of the process "
        "serves TLS only; empty: plaintext (keep the loopback default). Re-read when the file changes.",
    )
    tls_key_file: Path | None = Field(
        None, description="Private key (PEM) of tls_cert_file; its contents are never logged."
    )
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA bundle (PEM) for client certificates; set: mutual TLS, servers require a client "
        "certificate that chains to it and refuse the handshake otherwise.",
    )
    tls_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) that clients verify servers with; set: the process's gRPC calls use TLS."
    )
    client_tls: bool = Field(
        False, description="Calls use TLS even without tls_ca_file (servers verified with the system's root CAs)."
    )
    tls_client_cert_file: Path | None = Field(
        None,
        description="Client certificate chain (PEM) presented on the process's gRPC calls (for mutual TLS servers).",
    )
    tls_client_key_file: Path | None = Field(None, description="Private key (PEM) of tls_client_cert_file.")
    tls_server_name: str = Field(
        "",
        description="Name a client expects in server certificates instead of the address's host (e.g. one "
        "cluster-wide certificate name); empty: the host of the address.",
    )
    auth_tokens: SecretStr = Field(
        SecretStr(""),
        description="Bearer tokens the servers accept, comma-separated `id:token` (several at once for rotation; the "
        "id names the client in logs, metrics and rate limits; a token without `id:` is named "
        "token-<sha256 prefix>); each token at least 16 characters. Empty (and no auth_tokens_file): no auth.",
    )
    auth_tokens_file: Path | None = Field(
        None,
        description="File of further `id:token` entries, one per line or comma-separated (e.g. a mounted "
        "Secret); re-read when it changes, so tokens rotate without a restart.",
    )
    auth_services: str = Field(
        "visearch.v1.SearchService",
        description="Comma-separated full gRPC service names that require a token when tokens are configured "
        "(`*`: all); grpc.health.v1 and reflection always stay open.",
    )
    client_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token sent as `authorization` metadata on the process's gRPC calls "
        "(service-to-service, CLI --server); empty: none.",
    )
    client_timeout_s: float = Field(30.0, gt=0, description="Deadline of a client call that sets none itself, seconds.")
    rate_limit_per_s: float = Field(
        0.0,
        ge=0,
        description="Requests per second each client may make to the rate-limited services (token-bucket "
        "refill); a client is its token id, else its certificate's common name, else its IP. 0: no limit.",
    )
    rate_limit_burst: int = Field(
        20, ge=1, le=1_000_000, description="Requests a client may make at once after being idle (bucket size)."
    )
    rate_limit_services: str = Field(
        "visearch.v1.SearchService",
        description="Comma-separated full gRPC service names that are rate-limited (`*`: all but health and reflection).",
    )
    rate_limit_max_clients: int = Field(
        10_000, ge=1, description="Most clients tracked by the rate limiter (the least recently seen are forgotten)."
    )

    @model_validator(mode="after")
    def _check_pairs(self) -> SecuritySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        if (self.tls_client_cert_file is None) != (self.tls_client_key_file is None):
            raise ValueError("set both tls_client_cert_file and tls_client_key_file, or neither")
        from visearch.shared.security import parse_tokens  # noqa: PLC0415 (security imports this module)

        parse_tokens(self.auth_tokens.get_secret_value())  # raises ValueError on a malformed or short token
        return self

    @property
    def tls_enabled(self) -> bool:
        """Whether servers serve TLS (a certificate and key are set)."""
        return self.tls_cert_file is not None

    @property
    def mtls_enabled(self) -> bool:
        """Whether servers require and verify client certificates."""
        return self.tls_client_ca_file is not None

    @property
    def client_tls_enabled(self) -> bool:
        """Whether this process's gRPC calls use TLS."""
        return self.client_tls or self.tls_ca_file is not None


ALL_SETTINGS = (
    ServiceSettings,
    ModelSettings,
    ImageSettings,
    StoreSettings,
    ConseSettings,
    DetectionSettings,
    OcrSettings,
    ClassificationSettings,
    KafkaSettings,
    PipelineSettings,
    RankingSettings,
    SecuritySettings,
)


def settings_markdown() -> str:
    """A markdown table of every environment variable, its default and meaning (docs/configuration.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in ALL_SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            if field.default_factory:
                value = field.get_default(call_default_factory=True)
                # Paths under the user's cache differ per machine: the table names them generically.
                default = "(per user: ~/.cache/visearch/...)" if isinstance(value, (Path, str)) else repr(value)
            elif isinstance(field.default, SecretStr):
                default = repr(field.default.get_secret_value())
            else:
                default = repr(field.default)
            lines.append(f"| `{(prefix + name).upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
