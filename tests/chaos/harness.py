"""A private local stack for fault and load tests: real Kafka, Milvus standalone and Triton started by
the project's deploy scripts in a run directory of their own, on free loopback ports, plus the visearch
services as processes, and the probes the tests measure with (consumer lag, committed offsets, DLQ
sizes, stored ids, RSS).

Why a private stack: these tests restart the broker, stop Triton and SIGSTOP Milvus. Doing that to the
shared instances on the default ports (``make up``, other test modules) would break whatever else uses
them, and the PIDs we signal must be ones we started. Each :class:`IsolatedStack` sets
``VISEARCH_VAR_DIR`` to its own directory (``var/faults/<run>``, removed on close unless
``VISEARCH_FAULTS_KEEP=1``), so its pid files, data and logs are its own. The heavy, read-only artefacts
the scripts would otherwise install again (Kafka jars, the Milvus and Triton venvs, Milvus' extracted
binary) are symlinked from ``var/`` when they are there already.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.stack import ROOT, ServiceProcess, free_port, wait_until
from visearch.shared.config import KafkaSettings, ModelSettings
from visearch.shared.transport import dlq_topic, stage_topics

COMPONENTS = ("kafka", "milvus", "triton")
ALL_STAGES = ["detection", "embedding", "ocr", "classification", "indexer"]
REPORTS = ROOT / "reports"


def env_float(name: str, default: float) -> float:
    """A float from the environment (``default`` when unset or empty).

    Raises:
        ValueError: the variable is set but not a number.
    """
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def scaled(base: float, scale: float, minimum: int = 1) -> int:
    """``round(base * scale)``, at least ``minimum``."""
    return max(minimum, round(base * scale))


# --------------------------------------------------------------------------------------------------
# Infrastructure


class IsolatedStack:
    """Kafka, Milvus standalone and (optionally) Triton in ``root``, on free 127.0.0.1 ports.

    Args:
        root: the run directory (``VISEARCH_VAR_DIR`` of the scripts); created; removed by :meth:`close`.
        components: which of ``kafka``, ``milvus``, ``triton`` this stack runs.
        triton_repository: model repository for Triton (required when ``triton`` is in components).

    Every component is started by ``deploy/<c>/<c>.sh up`` with this stack's environment and stopped by
    ``down`` (also by :meth:`close`). PIDs read by :meth:`pid` come from the scripts' pid files in
    ``root``: processes this stack started, never found by name.
    """

    def __init__(
        self, root: Path, components: Iterable[str] = COMPONENTS, triton_repository: Path | None = None
    ) -> None:
        self.root = Path(root)
        self.components = tuple(components)
        unknown = set(self.components) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}")
        if "triton" in self.components and triton_repository is None:
            raise ValueError("triton needs a model repository")
        self.triton_repository = triton_repository
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = {
            "kafka": free_port(),
            "kafka_controller": free_port(),
            "milvus": free_port(),
            "milvus_health": free_port(),
            "triton_http": free_port(),
            "triton_grpc": free_port(),
            "triton_metrics": free_port(),
        }
        self.env = {
            **os.environ,
            "VISEARCH_VAR_DIR": str(self.root),
            "VISEARCH_KAFKA_PORT": str(self.ports["kafka"]),
            "VISEARCH_KAFKA_CONTROLLER_PORT": str(self.ports["kafka_controller"]),
            "VISEARCH_MILVUS_PORT": str(self.ports["milvus"]),
            "VISEARCH_MILVUS_HEALTH_PORT": str(self.ports["milvus_health"]),
            "VISEARCH_TRITON_HTTP_PORT": str(self.ports["triton_http"]),
            "VISEARCH_TRITON_GRPC_PORT": str(self.ports["triton_grpc"]),
            "VISEARCH_TRITON_METRICS_PORT": str(self.ports["triton_metrics"]),
        }
        self.started: set[str] = set()
        self._seed_from_shared_var()

    # The artefacts the scripts install once and only read afterwards. Kafka's lib is replaced only
    # when its pom changes (then the script resolves into our folder, not the link's target).
    _SHARED = (("kafka", "lib"), ("milvus", "venv"), ("milvus", "bin"), ("triton", "venv"))

    def _seed_from_shared_var(self) -> None:
        shared = ROOT / "var"
        for component, name in self._SHARED:
            source, target = shared / component / name, self.root / component / name
            if source.is_dir() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source.resolve(), target_is_directory=True)

    @property
    def kafka_bootstrap(self) -> str:
        """``127.0.0.1:<port>`` of this stack's broker."""
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def milvus_uri(self) -> str:
        """``http://127.0.0.1:<port>`` of this stack's Milvus."""
        return f"http://127.0.0.1:{self.ports['milvus']}"

    @property
    def triton_url(self) -> str:
        """``127.0.0.1:<port>`` (gRPC) of this stack's Triton."""
        return f"127.0.0.1:{self.ports['triton_grpc']}"

    def script(self, component: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``deploy/<component>/<component>.sh args`` with this stack's environment."""
        return subprocess.run(
            ["bash", str(ROOT / "deploy" / component / f"{component}.sh"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def up(self, component: str) -> float:
        """Start ``component`` and wait until it is ready. Returns the seconds ``up`` took.

        Raises:
            AssertionError: the script failed (its output is in the message).
        """
        args = (str(self.triton_repository),) if component == "triton" else ()
        start = time.perf_counter()
        result = self.script(component, "up", *args)
        assert result.returncode == 0, f"{component} up failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        self.started.add(component)
        return time.perf_counter() - start

    def down(self, component: str, *args: str) -> float:
        """Stop ``component`` (``down`` of its script). Returns the seconds it took.

        Raises:
            AssertionError: the script failed.
        """
        start = time.perf_counter()
        result = self.script(component, "down", *args)
        assert result.returncode == 0, f"{component} down failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return time.perf_counter() - start

    def up_all(self) -> dict[str, float]:
        """Start every component in parallel. Returns seconds per component."""
        with ThreadPoolExecutor(len(self.components)) as pool:
            futures = {c: pool.submit(self.up, c) for c in self.components}
            return {c: round(f.result(), 1) for c, f in futures.items()}

    def pid(self, component: str) -> int:
        """The server PID of ``component`` from its script's records (the JVM, the milvus binary, or
        tritonserver), checked to be alive.

        Raises:
            RuntimeError: no running server recorded.
        """
        home = self.root / component
        if component == "kafka":
            pid = int((home / "kafka.pid").read_text().strip())
        elif component == "milvus":
            pid = int(json.loads((home / "milvus.run.json").read_text())["milvus_pid"])
        elif component == "triton":
            pid = int((home / "triton.pid").read_text().strip())
        else:
            raise ValueError(component)
        if not Path(f"/proc/{pid}").exists():
            raise RuntimeError(f"{component} pid {pid} is not running")
        return pid

    def close(self) -> None:
        """Stop every component this stack started (data purged), then remove the run directory
        unless ``VISEARCH_FAULTS_KEEP=1`` (to read the logs)."""
        for component in reversed(self.components):
            if component in self.started:
                args = ("--purge",) if component in ("kafka", "milvus") else ()
                try:
                    self.script(component, "down", *args)
                except subprocess.TimeoutExpired:
                    pass
        if os.environ.get("VISEARCH_FAULTS_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


def run_dir(kind: str) -> Path:
    """A new run directory ``var/faults/<kind>-<random>`` (short: Kafka and Milvus paths live in it)."""
    return ROOT / "var" / "faults" / f"{kind}-{uuid.uuid4().hex[:6]}"


def write_triton_repository(target: Path) -> Path:
    """The local-flavour Triton repository of the built models in ``target``."""
    from visearch.offline.models.triton_repository import write_repository

    write_repository(ModelSettings().cache_dir, target, "local")
    return target


# --------------------------------------------------------------------------------------------------
# Services


class Services:
    """The visearch services as processes against an :class:`IsolatedStack`.

    Args:
        stack: the infrastructure. prefix: Kafka topic and Milvus collection prefix of this run.
        stages: the chain (VISEARCH_PIPELINE_STAGES); one process per stage.
        log_dir: where each service's log goes. triton: run the models on the stack's Triton.
        extra_env: more VISEARCH_* settings for every service.
    """

    def __init__(
        self,
        stack: IsolatedStack,
        prefix: str,
        stages: list[str],
        log_dir: Path,
        triton: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.stack, self.prefix, self.stages = stack, prefix, list(stages)
        self.log_dir = log_dir
        self.env = {
            "VISEARCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "VISEARCH_KAFKA_TOPIC_PREFIX": prefix,
            "VISEARCH_KAFKA_PARTITIONS": "3",
            "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
            "VISEARCH_KAFKA_RETRY_INITIAL_S": "0.5",
            "VISEARCH_KAFKA_RETRY_MAX_S": "4",
            "VISEARCH_MILVUS_URI": stack.milvus_uri,
            "VISEARCH_MILVUS_COLLECTION_PREFIX": prefix,
            "VISEARCH_PIPELINE_STAGES": ",".join(self.stages),
            "VISEARCH_LOG_LEVEL": "info",
            # Two cores shared by every process here: one inference thread each.
            "VISEARCH_MODEL_INTRA_OP_THREADS": "1",
            **({"VISEARCH_MODEL_TRITON_URL": stack.triton_url} if triton else {}),
            **(extra_env or {}),
        }
        self.procs: dict[str, ServiceProcess] = {}

    @property
    def kafka(self) -> KafkaSettings:
        """KafkaSettings of this run's topics."""
        return KafkaSettings(bootstrap=self.stack.kafka_bootstrap, topic_prefix=self.prefix, partitions=3)

    def add(self, name: str, env: dict[str, str] | None = None) -> ServiceProcess:
        """Create (not start) the process of service ``name`` with this run's environment plus ``env``."""
        proc = ServiceProcess(name, {**self.env, **(env or {})}, self.log_dir)
        self.procs[name] = proc
        return proc

    def start_all(self, names: Iterable[str] | None = None) -> float:
        """Start the named services (default: every stage) in parallel; return once all are SERVING.
        Returns the seconds it took."""
        names = list(names) if names is not None else self.stages
        start = time.perf_counter()
        for name in names:
            (self.procs.get(name) or self.add(name)).start(wait=False)
        for name in names:
            self.procs[name].wait_serving(240)
        return time.perf_counter() - start

    def restart(self, name: str) -> float:
        """Start ``name`` again (after a kill) and wait until SERVING. Returns the seconds it took."""
        start = time.perf_counter()
        self.procs[name].start()
        return time.perf_counter() - start

    def alive(self) -> dict[str, bool]:
        """Whether each process is running."""
        return {n: p.process is not None and p.process.poll() is None for n, p in self.procs.items()}

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every process (drain and commit) and return the exit codes."""
        return {name: proc.stop() for name, proc in self.procs.items()}

    def logs(self, lines: int = 15) -> str:
        """The last log lines of every service (for assertion messages)."""
        return "\n".join(f"--- {n}\n{p.log_tail(lines)}" for n, p in self.procs.items())


def rss_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MiB, from /proc/<pid>/status; (0, 0) if it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


# --------------------------------------------------------------------------------------------------
# Probes


class KafkaProbe:
    """End offsets and committed offsets of this run's topics, for lag and progress.

    Long-lived consumers (one per stage group, never subscribed, never committing) are reused; a
    failed call (the broker down) returns None and the clients are rebuilt on the next call.
    """

    def __init__(self, settings: KafkaSettings, stages: list[str]) -> None:
        self.settings = settings
        self.topics = stage_topics(stages, settings.topic_prefix)
        self._consumers: dict[str | None, object] = {}

    def _consumer(self, group: str | None = None):
        from kafka import KafkaConsumer

        consumer = self._consumers.get(group)
        if consumer is None:
            consumer = KafkaConsumer(
                **self.settings.client_options(),
                group_id=group,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            self._consumers[group] = consumer
        return consumer

    def _reset(self) -> None:
        for consumer in self._consumers.values():
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 (closing a client of a dead broker)
                pass
        self._consumers.clear()

    def end_offsets(self, topics: Iterable[str]) -> dict[str, int] | None:
        """Sum of end offsets per topic (messages ever written), or None if the broker does not answer."""
        from kafka import TopicPartition

        try:
            consumer = self._consumer()
            result = {}
            for topic in topics:
                parts = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in parts]
                result[topic] = sum(consumer.end_offsets(tps).values()) if tps else 0
            return result
        except Exception:  # noqa: BLE001 (broker restarting)
            self._reset()
            return None

    def _committed(self, stage: str) -> dict:
        """{TopicPartition: committed offset (0 if none)} of the stage's group on its input topic."""
        from kafka import TopicPartition

        consumer = self._consumer(f"visearch-{stage}")
        topic = self.topics[stage].input
        return {
            tp: consumer.committed(tp) or 0
            for tp in (TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or []))
        }

    def committed(self, stage: str) -> int | None:
        """Sum over partitions of the committed offsets of stage ``stage``'s group on its input topic,
        or None if the broker does not answer."""
        try:
            return sum(self._committed(stage).values())
        except Exception:  # noqa: BLE001 (broker restarting)
            self._reset()
            return None

    def lags(self) -> dict[str, int] | None:
        """Lag (end offset minus committed offset, summed over partitions) per stage, or None."""
        try:
            result = {}
            for stage in self.topics:
                committed = self._committed(stage)
                ends = self._consumer().end_offsets(list(committed))
                result[stage] = sum(max(ends[tp] - offset, 0) for tp, offset in committed.items())
            return result
        except Exception:  # noqa: BLE001 (broker restarting)
            self._reset()
            return None

    def total_lag(self) -> int | None:
        """Sum of :meth:`lags`, or None."""
        lags = self.lags()
        return None if lags is None else sum(lags.values())

    def dlq_sizes(self) -> dict[str, int] | None:
        """Messages in each stage's DLQ topic, or None."""
        return self.end_offsets([dlq_topic(t.input) for t in self.topics.values()])

    def output_sizes(self) -> dict[str, int] | None:
        """Messages in each stage's output topic (the indexer has none), or None."""
        return self.end_offsets([t.output for t in self.topics.values() if t.output])

    def close(self) -> None:
        """Close the clients."""
        self._reset()


class StoreProbe:
    """Reads of the run's Milvus collections: counts and the stored ids of one tenant (Strong)."""

    def __init__(self, uri: str, prefix: str) -> None:
        from visearch.shared.config import StoreSettings
        from visearch.shared.store import MilvusStore

        self.store = MilvusStore(StoreSettings(uri=uri, collection_prefix=prefix, search_consistency="Strong"))

    def count(self, tenant: str) -> int | None:
        """Rows of ``tenant`` in the image collection, or None when Milvus does not answer within 10 s."""
        try:
            rows = self.store._client.query(
                collection_name=self.store.collections["image"],
                filter=f"tenant == {json.dumps(tenant)}",
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=10,
            )
            return int(rows[0]["count(*)"])
        except Exception:  # noqa: BLE001 (Milvus restarting or paused)
            return None

    def ids(self, tenant: str, space: str = "image") -> list[str]:
        """Every stored ``image_id`` of ``tenant`` in ``space`` (one per stored row, duplicates kept)."""
        rows = self.store._client.query(
            collection_name=self.store.collections[space],
            filter=f"tenant == {json.dumps(tenant)}",
            output_fields=["image_id"],
            limit=16384,
            consistency_level="Strong",
            timeout=30,
        )
        return [r["image_id"] for r in rows]

    def close(self) -> None:
        """Release the connection."""
        self.store.close()


# --------------------------------------------------------------------------------------------------
# Faults


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``127.0.0.1:upstream_port`` and, while ``delay_s`` > 0,
    holds every chunk (both directions) that long before forwarding it: a slow network or dependency.

    Runs an asyncio loop in a daemon thread. ``delay_s`` can be changed at any time.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server = None
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pump(client_reader, up_writer), self._pump(up_reader, client_writer))

    def close(self) -> None:
        """Stop listening and stop the loop."""

        def stop():
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)


def pause_process(pid: int, seconds: float) -> None:
    """SIGSTOP ``pid`` (a process this run started) for ``seconds``, then SIGCONT (also on error)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


# --------------------------------------------------------------------------------------------------
# Content checks


class Reference:
    """The rows the chain should store, computed in this process: the same stage classes the services
    run (detection, embedding, OCR, classification; in-process onnxruntime), then the indexer's row
    builder. Models load on first use."""

    def __init__(self) -> None:
        self._stages = None

    def _load(self):
        from visearch.services.classification.classifier import Classifier
        from visearch.services.classification.service import ClassificationStage
        from visearch.services.detection.detector import Detector
        from visearch.services.detection.service import DetectionStage
        from visearch.services.embedding.service import EmbeddingStage
        from visearch.services.ocr.reader import TextReader
        from visearch.services.ocr.service import OcrStage
        from visearch.shared.config import (
            ClassificationSettings,
            ConseSettings,
            DetectionSettings,
            ImageSettings,
            OcrSettings,
        )
        from visearch.shared.encoders import Embedder

        models, images, detection = ModelSettings(), ImageSettings(), DetectionSettings()
        embedder = Embedder.from_cache(models, ConseSettings())
        return {
            "detection": DetectionStage(Detector.from_cache(models, detection), images),
            "embedding": EmbeddingStage(embedder, images, detection_settings=detection),
            "ocr": OcrStage(TextReader.from_cache(models, OcrSettings()), images),
            "classification": ClassificationStage(
                Classifier.from_cache(models, ClassificationSettings(), embedder), images
            ),
        }

    def rows(self, events, stages: list[str]) -> dict:
        """``{image_id: IndexRow}`` for upsert ``events`` through the model stages of ``stages``.

        Raises:
            AssertionError: a stage failed an event (the sample must be valid images).
        """
        from visearch.services.indexer.stage import IndexerStage
        from visearch.shared.pipeline import StageFailure
        from visearch.v1 import events_pb2

        if self._stages is None:
            self._stages = self._load()
        documents = []
        for event in events:
            doc = events_pb2.ImageDocument()
            doc.event.CopyFrom(event)
            documents.append(doc)
        for name in stages:
            if name in self._stages:
                documents = self._stages[name].process(documents)
                failed = [d for d in documents if isinstance(d, StageFailure)]
                assert not failed, f"reference {name} failed: {failed}"
        return {d.event.image_id: IndexerStage._row(d, d.event.tenant) for d in documents}


def cosine(a, b) -> float:
    """Cosine similarity of two vectors."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


def content_mismatches(
    store, tenant: str, expected: dict, min_cosine: float = 0.999, min_joint_cosine: float = 0.99
) -> list[str]:
    """How each stored row of ``tenant`` differs from its expected IndexRow (empty list: all equal).

    Compared: catalogue fields, perceptual hash, moderation flag, OCR text, the number of regions, the
    image vector (cosine >= ``min_cosine``) and the joint vector (>= ``min_joint_cosine``: it also
    carries detected labels and OCR text). ``duplicate_of`` is left out: it depends on indexing order.
    """
    problems = []
    for image_id, row in expected.items():
        stored = store.get(tenant, image_id)
        if stored is None:
            problems.append(f"{image_id}: not stored")
            continue
        want = row.fields()
        for name in ("title", "category", "brand", "price", "in_stock", "phash", "safe", "ocr_text"):
            if stored[name] != want[name]:
                problems.append(f"{image_id}: {name} {stored[name]!r} != {want[name]!r}")
        if (c := cosine(stored["vector"], row.image_vector)) < min_cosine:
            problems.append(f"{image_id}: image vector cosine {c:.5f}")
        joint = store.get(tenant, image_id, "joint")
        if joint is None or (c := cosine(joint["vector"], row.joint_vector)) < min_joint_cosine:
            problems.append(f"{image_id}: joint vector {'missing' if joint is None else f'cosine {c:.5f}'}")
        if (n := len(store.regions(tenant, image_id))) != len(row.regions):
            problems.append(f"{image_id}: {n} regions stored, {len(row.regions)} expected")
    return problems


# --------------------------------------------------------------------------------------------------
# Publishing and measuring


def publish(
    settings: KafkaSettings, events, rate_per_s: float | None = None, stop: threading.Event | None = None
) -> int:
    """Publish ImageEvents to the run's images topic; at ``rate_per_s`` if given (else as fast as
    possible). Returns how many were published (fewer if ``stop`` was set)."""
    from visearch.shared.kafka import KafkaTransport, images_topic
    from visearch.shared.pipeline import encode_event

    transport = KafkaTransport(settings, "faults-publisher")
    topic = images_topic(settings)
    count, start = 0, time.perf_counter()
    try:
        for event in events:
            if stop is not None and stop.is_set():
                break
            if rate_per_s:
                delay = start + count / rate_per_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            transport.produce(topic, *encode_event(event))
            count += 1
            if rate_per_s:
                transport.flush()
        transport.flush()
    finally:
        transport.close()
    return count


@dataclass
class Sampler:
    """Calls ``sample()`` every ``interval_s`` in a thread and keeps the (time, value) pairs."""

    sample: Callable[[], object]
    interval_s: float = 1.0
    values: list[tuple[float, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.sample()
            self.values.append((time.perf_counter() - self._t0, value))
            self._stop.wait(self.interval_s)

    def start(self) -> Sampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, object]]:
        """Stop sampling and return the samples."""
        self._stop.set()
        self._thread.join(30)
        return self.values


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; 0.0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def write_report(name: str, data: dict) -> Path:
    """Write ``data`` as ``reports/<name>.json`` (indented, keys sorted). Returns the path."""
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


__all__ = [
    "ALL_STAGES",
    "DelayProxy",
    "Reference",
    "content_mismatches",
    "cosine",
    "IsolatedStack",
    "KafkaProbe",
    "Sampler",
    "Services",
    "StoreProbe",
    "env_float",
    "pause_process",
    "percentile",
    "publish",
    "rss_mb",
    "run_dir",
    "scaled",
    "wait_until",
    "write_report",
    "write_triton_repository",
]
