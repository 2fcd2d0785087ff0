"""Typed settings, read from environment variables (prefix ``VISEARCH_``) by pydantic-settings.

One settings object per concern; services take the ones they need. Every field has a default so the
embedded mode (one process, Milvus Lite, in-process onnxruntime) runs with no configuration at all.
docs/configuration.md lists every variable; tests/unit/test_config.py keeps that list in step.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal, TypedDict

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from visearch.shared.errors import ConfigError


def _default_cache() -> Path:
    return Path.home() / ".cache" / "visearch"


class ModelSettings(BaseSettings):
    """Where built models live and how in-process inference runs."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_MODEL_", extra="ignore")

    cache_dir: Path = Field(
        default_factory=lambda: _default_cache() / "models",
        description="Directory of built ONNX models, one sub-folder per model and recipe key (outside the repo).",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="onnxruntime intra-op threads; 0: the container's CPU limit (cgroup quota, rounded up) when it has one, else onnxruntime's default (one per physical core).",
    )
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
    query_prompt_words: int = Field(
        3,
        ge=0,
        le=32,
        description="Text queries of at most this many words (a label such as 'galaxy' or 'hot drink') are embedded as the mean of the query as typed and in the class prompt template, 'a photo of a <query>', the form of the joint space's class vectors and of the text-to-visual map's training texts; longer queries as typed (0: never). docs/quality.md has the measured gain.",
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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaClientOptions(TypedDict):
    """The connection keyword arguments of every kafka-python client (KafkaProducer, KafkaConsumer,
    KafkaAdminClient): the bootstrap list, TLS and SASL. It holds passwords in clear: never log it."""

    bootstrap_servers: str
    security_protocol: SecurityProtocol
    ssl_check_hostname: bool
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_password: str | None
    sasl_mechanism: SaslMechanism | None
    sasl_plain_username: str | None
    sasl_plain_password: str | None


class KafkaSettings(BaseSettings):
    """Kafka connection, topics and consumer behaviour (the asynchronous pipeline).

    Security: TLS (a CA bundle, an optional client certificate) and SASL (PLAIN, SCRAM-SHA-256/512). Every
    Kafka client of the project is built from :meth:`client_options`. Security settings that cannot work
    raise :class:`~visearch.shared.errors.ConfigError` when the object is built (at start-up), naming the
    variables; a ValueError of a single field stays a pydantic ValidationError.
    """

    # Validation errors never echo the input: it holds the SASL and key passwords.
    model_config = SettingsConfigDict(env_prefix="VISEARCH_KAFKA_", extra="ignore", hide_input_in_errors=True)

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
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (SASL without TLS: a "
        "PLAIN password crosses the network in clear) or SASL_SSL (SASL over TLS).",
    )
    ssl_cafile: Path | None = Field(
        None,
        description="CA bundle (PEM) the brokers' certificates are verified with (SSL, SASL_SSL); empty: the "
        "system's root CAs.",
    )
    ssl_certfile: Path | None = Field(
        None,
        description="Client certificate chain (PEM) presented to brokers that ask for one (mutual TLS); needs "
        "ssl_keyfile.",
    )
    ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of ssl_certfile.")
    ssl_password: SecretStr = Field(
        SecretStr(""),
        description="Password of an encrypted ssl_keyfile; empty: the key is not encrypted (a secret: never logged).",
    )
    ssl_check_hostname: bool = Field(
        True,
        description="Check that a broker's certificate names the host it is reached at (its advertised listener); "
        "off, the certificate is still verified against ssl_cafile.",
    )
    sasl_mechanism: SaslMechanism | Literal[""] = Field(
        "",
        description="SASL mechanism of SASL_PLAINTEXT / SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty "
        "with the other protocols.",
    )
    sasl_username: str = Field("", description="SASL user name (SASL_PLAINTEXT, SASL_SSL).")
    sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password (a secret: never logged); or sasl_password_file."
    )
    sasl_password_file: Path | None = Field(
        None,
        description="File holding the SASL password instead of sasl_password (e.g. a mounted Secret; a trailing "
        "newline is ignored), read again for each new client, so a rotated Secret is picked up.",
    )
    probe_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="With TLS or SASL, a Kafka client is created only after one connection of its own to the "
        "bootstrap servers (TLS handshake, SASL authentication), so a refused password or an untrusted "
        "certificate stops the process with that reason (kafka-python alone retries for 30 s, then reports "
        "no reason): the time limit of that check, seconds.",
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        # ConfigError, not ValueError: it leaves pydantic as it is and stops the process with this message.
        problems = [*self._sasl_problems(), *self._tls_problems()]
        if problems:
            raise ConfigError("Kafka security settings: " + "; ".join(problems))
        return self

    def _sasl_problems(self) -> list[str]:
        password_set = bool(self.sasl_password.get_secret_value()) or self.sasl_password_file is not None
        if not self.sasl:
            given = [
                name
                for name, value in (
                    ("SASL_MECHANISM", self.sasl_mechanism),
                    ("SASL_USERNAME", self.sasl_username),
                    ("SASL_PASSWORD", self.sasl_password.get_secret_value()),
                    ("SASL_PASSWORD_FILE", self.sasl_password_file),
                )
                if value
            ]
            return [
                f"{_kafka_vars(given)} set but VISEARCH_KAFKA_SECURITY_PROTOCOL={self.security_protocol}: "
                "SASL is used only with SASL_PLAINTEXT or SASL_SSL"
            ] * bool(given)
        missing = [
            name
            for name, ok in (
                ("SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", bool(self.sasl_mechanism)),
                ("SASL_USERNAME", bool(self.sasl_username)),
                ("SASL_PASSWORD (or _FILE)", password_set),
            )
            if not ok
        ]
        problems = []
        if missing:
            problems.append(f"VISEARCH_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {_kafka_vars(missing)}")
        if self.sasl_password.get_secret_value() and self.sasl_password_file is not None:
            problems.append("set VISEARCH_KAFKA_SASL_PASSWORD or VISEARCH_KAFKA_SASL_PASSWORD_FILE, not both")
        if self.sasl_password_file is not None:
            problems += _unreadable("SASL_PASSWORD_FILE", self.sasl_password_file)
        return problems

    def _tls_problems(self) -> list[str]:
        files = {"SSL_CAFILE": self.ssl_cafile, "SSL_CERTFILE": self.ssl_certfile, "SSL_KEYFILE": self.ssl_keyfile}
        if not self.tls:
            given = [name for name, path in files.items() if path is not None]
            given += ["SSL_PASSWORD"] * bool(self.ssl_password.get_secret_value())
            return [
                f"{_kafka_vars(given)} set but VISEARCH_KAFKA_SECURITY_PROTOCOL={self.security_protocol}: "
                "TLS is used only with SSL or SASL_SSL"
            ] * bool(given)
        problems = [problem for name, path in files.items() if path is not None for problem in _unreadable(name, path)]
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            problems.append(
                "a client certificate needs both VISEARCH_KAFKA_SSL_CERTFILE and VISEARCH_KAFKA_SSL_KEYFILE (its key)"
            )
        if self.ssl_password.get_secret_value() and self.ssl_keyfile is None:
            problems.append("VISEARCH_KAFKA_SSL_PASSWORD is set without VISEARCH_KAFKA_SSL_KEYFILE")
        if problems:
            return problems
        # The files load as kafka-python will load them: a wrong key password or a mismatched key shows now.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ssl_cafile is not None:
            try:
                context.load_verify_locations(cafile=str(self.ssl_cafile))
            except ssl.SSLError as exc:
                problems.append(f"VISEARCH_KAFKA_SSL_CAFILE={self.ssl_cafile} holds no PEM certificate ({exc})")
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            try:
                # A password (even empty) always: with None, OpenSSL would prompt on a terminal for one.
                context.load_cert_chain(
                    str(self.ssl_certfile), str(self.ssl_keyfile), self.ssl_password.get_secret_value()
                )
            except ssl.SSLError as exc:
                problems.append(
                    f"the client certificate {self.ssl_certfile} and key {self.ssl_keyfile} do not load together "
                    f"({exc}): not a PEM certificate and its key, or a wrong or missing VISEARCH_KAFKA_SSL_PASSWORD"
                )
        return problems

    @property
    def tls(self) -> bool:
        """Whether clients use TLS (SSL, SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """Whether clients authenticate with SASL (SASL_PLAINTEXT, SASL_SSL)."""
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def sasl_password_value(self) -> str:
        """The SASL password: sasl_password, or sasl_password_file read now (less one trailing newline).

        Raises:
            ConfigError: the file cannot be read.
        """
        if self.sasl_password_file is None:
            return self.sasl_password.get_secret_value()
        try:
            text = self.sasl_password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"VISEARCH_KAFKA_SASL_PASSWORD_FILE={self.sasl_password_file} cannot be read: {exc}"
            ) from exc
        return text.removesuffix("\n").removesuffix("\r")

    def client_options(self) -> KafkaClientOptions:
        """The kafka-python connection keyword arguments (bootstrap, TLS, SASL) of every Kafka client.

        The result holds passwords in clear: pass it to the client, never log it.

        Raises:
            ConfigError: sasl_password_file cannot be read.
        """
        return KafkaClientOptions(
            bootstrap_servers=self.bootstrap,
            security_protocol=self.security_protocol,
            ssl_check_hostname=self.ssl_check_hostname,
            ssl_cafile=str(self.ssl_cafile) if self.tls and self.ssl_cafile else None,
            ssl_certfile=str(self.ssl_certfile) if self.tls and self.ssl_certfile else None,
            ssl_keyfile=str(self.ssl_keyfile) if self.tls and self.ssl_keyfile else None,
            ssl_password=(self.ssl_password.get_secret_value() or None) if self.tls else None,
            sasl_mechanism=(self.sasl_mechanism or None) if self.sasl else None,
            sasl_plain_username=self.sasl_username if self.sasl else None,
            sasl_plain_password=self.sasl_password_value() if self.sasl else None,
        )

    def describe(self, address: str | None = None) -> str:
        """Where and how clients connect, for messages and logs (no secret): ``<address or bootstrap>
        (<protocol>[, <mechanism>, user <name>])``."""
        how = [self.security_protocol, *([self.sasl_mechanism, f"user {self.sasl_username}"] if self.sasl else [])]
        return f"{address or self.bootstrap or '(no bootstrap)'} ({', '.join(how)})"


def _kafka_vars(names: list[str]) -> str:
    return " and ".join(f"VISEARCH_KAFKA_{name}" for name in names)


def _unreadable(name: str, path: Path) -> list[str]:
    """A problem when ``path`` (the value of VISEARCH_KAFKA_<name>) is not a readable file."""
    if not path.is_file():
        return [f"VISEARCH_KAFKA_{name}={path} does not exist or is not a file"]
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return [f"VISEARCH_KAFKA_{name}={path} cannot be read ({exc.strerror})"]
    return []


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


class LagExporterSettings(BaseSettings):
    """``visearch serve lag-exporter``: the pipeline groups' consumer lag, read from the broker at scrape time
    (its Kafka connection is VISEARCH_KAFKA_*, its port VISEARCH_METRICS_PORT)."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_LAG_EXPORTER_", extra="ignore")

    cache_s: float = Field(
        10.0, ge=0, le=300, description="A scrape within this many seconds of the last broker read reuses it."
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Time limit of one broker read (offsets, oldest waiting records); past it the scrape reports "
        "visearch_kafka_lag_scrape_success 0 and no lag series.",
    )
    oldest_record: bool = Field(
        True,
        description="Also read the first uncommitted record of each lagging partition, for "
        "visearch_kafka_consumer_lag_seconds (one small fetch per lagging partition per read).",
    )


# Servers accept keepalive pings this often (and on idle connections); clients may not ping more often.
GRPC_MIN_PING_INTERVAL_S = 5.0
# Load-balancing policies of a client channel (gRPC's names) and the roles of a model service's process.
GrpcLbPolicy = Literal["round_robin", "pick_first"]
ServiceRole = Literal["all", "grpc", "worker"]


class ServiceSettings(BaseSettings):
    """Process-level settings of a long-running service."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_", extra="ignore")

    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds to.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the Prometheus /metrics and /livez endpoints; 0 disables them."
    )
    grpc_drain_s: float = Field(
        10.0, ge=0, le=600, description="On SIGTERM, time the gRPC calls in flight get to finish, seconds."
    )
    worker_drain_s: float = Field(
        40.0,
        ge=0,
        le=3600,
        description="On SIGTERM, time the stage workers get to finish their batch in flight and commit, seconds "
        "(the chart's terminationGracePeriodSeconds covers preStop + this + grpc_drain_s).",
    )
    grpc_max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Max gRPC message size, bytes.")
    service_role: ServiceRole = Field(
        "all",
        description="What `visearch serve <model service>` runs: `all` its gRPC API and (with Kafka, when in the "
        "chain) its stage worker; `grpc` the API only (query serving, never starved by the ingest backlog); "
        "`worker` the stage worker only (its gRPC server answers health checks only).",
    )
    grpc_lb_policy: GrpcLbPolicy = Field(
        "round_robin",
        description="Load balancing of calls to other services: `round_robin` spreads calls over every address the "
        "target resolves to (a `dns:///` headless Service: every ready pod); `pick_first` sticks to one.",
    )
    grpc_keepalive_s: float = Field(
        30.0,
        ge=0,
        description="Client keepalive ping interval on connections to other services, seconds (a peer gone "
        "without closing is dropped and re-resolved after this + 20 s); 0: off. Servers accept pings every 5 s.",
    )
    grpc_dns_min_reresolve_s: float = Field(
        5.0,
        ge=0,
        description="Shortest time between two DNS resolutions of a client target, seconds (a target is "
        "re-resolved when a connection closes, e.g. at max connection age).",
    )
    grpc_max_connection_age_s: float = Field(
        300.0,
        ge=0,
        description="Servers close each connection after this age, seconds (+-10 % jitter), so clients re-resolve "
        "and spread their calls over pods added since; 0: never.",
    )
    grpc_max_connection_age_grace_s: float = Field(
        30.0, ge=0, description="Time calls in flight get to finish on a connection closed for its age, seconds."
    )
    log_level: str = Field("info", description="structlog level: debug, info, warning, error.")
    tenant: str = Field("default", description="Tenant used when a request or event names none.")
    embedding_addr: str = Field(
        "",
        description="Target of the embedding service for the search API: `host:port`, `dns:///host:port` (every "
        "address of the name, e.g. a headless Service) or `ipv4:h1:p1,h2:p2`; calls are balanced per "
        "grpc_lb_policy. Empty loads the models in-process.",
    )
    detection_addr: str = Field(
        "",
        description="Target of the detection service (search by the query's objects, Classify's objects), as "
        "embedding_addr; empty: in-process in embedded mode, unused by a standalone server.",
    )
    ocr_addr: str = Field(
        "", description="Target of the OCR service (Classify's has_text); as embedding_addr, empty as detection_addr."
    )
    classification_addr: str = Field(
        "",
        description="Target of the classification service (Tag on a query image); as embedding_addr, empty as "
        "detection_addr.",
    )

    @field_validator("grpc_keepalive_s")
    @classmethod
    def _keepalive_within_server_policy(cls, value: float) -> float:
        if 0 < value < GRPC_MIN_PING_INTERVAL_S:
            # Servers answer pings more frequent than this with GOAWAY (too_many_pings).
            raise ValueError(f"grpc_keepalive_s must be 0 (off) or at least {GRPC_MIN_PING_INTERVAL_S:g} s")
        return value


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


class ThumbnailSettings(BaseSettings):
    """The thumbnail store: a small JPEG of every indexed image, written by the indexer and served by the HTTP
    gateway (``GET /v1/thumbnails?image_id=...``) so that a result can be shown without fetching the original."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_THUMBNAIL_", extra="ignore")

    dir: Path | None = Field(
        None,
        description="Folder of the thumbnail store (one JPEG file per tenant and image id; in Kubernetes a volume "
        "the indexer writes and the gateway reads). Empty: no thumbnails are stored (the gateway answers 404).",
    )
    side: int = Field(
        192, ge=16, le=1024, description="Longest side of a thumbnail, pixels (smaller images are kept as they are)."
    )
    quality: int = Field(80, ge=30, le=95, description="JPEG quality of a thumbnail.")


class GatewaySettings(BaseSettings):
    """The HTTP/JSON gateway (``visearch serve gateway``): a FastAPI app over the gRPC services, with the web
    playground. TLS, bearer tokens and rate limits come from ``VISEARCH_SECURITY_*`` (as on the gRPC servers),
    image URL fetches from ``VISEARCH_IMAGE_*``, the recognition services' targets from ``VISEARCH_*_ADDR``."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_GATEWAY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="HTTP port (API, /docs, /playground, /healthz, /readyz, and /metrics unless metrics_port is "
        "set); 0 picks a free port.",
    )
    search_addr: str = Field(
        "",
        description="Target of the ranking service (SearchService), as VISEARCH_EMBEDDING_ADDR; required by "
        "`visearch serve gateway`.",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Deadline of each gRPC call the gateway makes, seconds.")
    max_json_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest JSON request body without an inline image, bytes; a body with an inline image "
        "(base64, or a multipart upload) may be as large as VISEARCH_IMAGE_MAX_BYTES allows (4/3 of it for base64).",
    )
    playground: bool = Field(True, description="Serve the web playground at /playground (static files).")
    threads: int = Field(
        16, ge=1, le=256, description="Threads that run blocking gRPC calls (requests served at once by one process)."
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Plain-HTTP port of /metrics, /healthz, /readyz and /livez on threads of their own (the "
        "Kubernetes probes and scrapes, also under mutual TLS); /metrics then leaves the API port. 0: none.",
    )


class PersonalisationSettings(BaseSettings):
    """Per-user personalisation (docs/personalisation.md): profiles learned from each shopper's feedback, kept on
    the compacted topic ``<prefix>.user-profiles`` (``visearch serve profiles`` folds the feedback topic into it)
    and applied by the ranking service as the ``preference`` factor and per-user factor weight multipliers."""

    model_config = SettingsConfigDict(env_prefix="VISEARCH_PERSONALISATION_", extra="ignore")

    enabled: bool = Field(
        True,
        description="The ranking service reads the profiles (with a feedback topic) and personalises requests "
        "that carry a user_id; off: every request ranks as without a user.",
    )
    weight: float = Field(
        0.6, ge=0, le=10, description="Weight of the preference factor for a profile with full evidence."
    )
    max_weight: float = Field(
        0.6,
        ge=0,
        le=10,
        description="Cap of the preference factor's weight (a guard rail: it reorders within relevance, it does not "
        "replace it), whatever the configuration or a request's override asks.",
    )
    min_evidence: float = Field(
        3.0,
        ge=0,
        description="Decayed weighted actions a profile needs before it applies (cold start: below, "
        "the user ranks as without history).",
    )
    full_evidence: float = Field(
        10.0,
        gt=0,
        description="Decayed weighted actions at which the preference weight reaches `weight` "
        "(it grows linearly from min_evidence).",
    )
    half_life_days: float = Field(
        30.0, gt=0, description="Half-life of a profile's counts, days of event time: old taste fades."
    )
    factor_gain: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Per-user factor multipliers: 1 + gain x the user's mean factor lift "
        "(clicked hit minus skipped hits above it), clipped to 1 +- factor_cap.",
    )
    factor_cap: float = Field(
        0.5, ge=0, le=1, description="Largest change of a factor's weight for one user (0.5: x0.5..x1.5)."
    )
    max_concepts: int = Field(
        256, ge=8, le=100_000, description="Concept keys kept per profile (the strongest; bounds a profile's size)."
    )
    recent_events: int = Field(
        512, ge=0, le=100_000, description="Event ids kept per profile so that a redelivered event is not folded twice."
    )
    page_cache: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="Served personalised pages remembered by a ranking process, so that a "
        "click's skipped hits and factor lifts can be attached to its feedback event.",
    )
    group: str = Field("visearch-profiles", description="Consumer group of the profile folder on the feedback topic.")


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
    LagExporterSettings,
    RankingSettings,
    SecuritySettings,
    PersonalisationSettings,
    ThumbnailSettings,
    GatewaySettings,
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
