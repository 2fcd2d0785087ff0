"""Kafka client security against a real Apache Kafka 4.3.1 broker with a TLS + SASL listener.

The broker is this module's own, started by ``deploy/kafka/kafka.sh`` with a SASL_SSL listener
(``VISEARCH_KAFKA_SASL_SSL_PORT``, PEM files made here by ``tests/pki.py``): its own
``VISEARCH_VAR_DIR`` (a tmp folder; the Kafka jars linked from ``var/kafka/lib`` when resolved there) and
free ports (never 9092/9093, which other tests and helpers use), always stopped at the end. SCRAM-SHA-512
credentials are set after start through the PLAINTEXT listener, PLAIN users come from the listener's JAAS
config; the listener also verifies client certificates that are presented (``ssl.client.auth=requested``).

The ingest chain runs as the Kafka pipeline test runs it: the five stages as ``visearch serve`` processes
configured by environment only (SASL_SSL, SCRAM-SHA-512, the password from a file), indexing into a
Milvus Lite file that is read once they stopped. Timings are printed (``-s`` shows them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.stack import ROOT, ServiceProcess, free_port, wait_until
from tests.pki import issue, make_ca, write_ca
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist, photo_catalogue
from visearch.offline.rank.learning import feedback_values
from visearch.shared.config import KafkaSettings, StoreSettings
from visearch.shared.dlq import read_dead_letters
from visearch.shared.errors import ConfigError
from visearch.shared.kafka import KafkaTransport, create_topics, group_lag, images_topic
from visearch.shared.pipeline import encode_event
from visearch.shared.store import MilvusStore
from visearch.shared.transport import HEADER_DLQ_REASON, stage_topics

pytestmark = [pytest.mark.kafka]

STAGES = ["detection", "embedding", "ocr", "classification", "indexer"]
PREFIX = f"sec{uuid.uuid4().hex[:6]}"
SCRAM_USER, SCRAM_PASSWORD = "ingest", "scram-Pw-5Kd8Lq2Vx"
PLAIN_USER, PLAIN_PASSWORD = "reader", "plain-Pw-9Tb3Mw6Ry"
KEY_PASSWORD = "key-Pw-2Hc7Jn4Qs"
WRONG_PASSWORD = "wrong-Pw-8Zf1Gk5Ud"
SECRETS = (SCRAM_PASSWORD, PLAIN_PASSWORD, KEY_PASSWORD, WRONG_PASSWORD)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """The broker's CA, key and certificate (kafka.sh reads broker.pem, broker.key, ca.pem from this folder),
    a client certificate of that CA with an encrypted key, another CA, and a client certificate of it."""
    folder = tmp_path_factory.mktemp("kafka-tls")
    ca, other = make_ca("visearch kafka test CA"), make_ca("another CA")
    write_ca(ca, folder / "ca.pem")
    issue(ca, "kafka-broker", True, folder, "broker")
    client_cert, client_key = issue(ca, "visearch-client", False, folder, "client", key_password=KEY_PASSWORD.encode())
    rogue_cert, rogue_key = issue(other, "visearch-client", False, folder, "rogue")
    password_file = folder / "scram-password"
    password_file.write_text(SCRAM_PASSWORD + "\n")
    password_file.chmod(0o600)
    return {
        "dir": str(folder),
        "ca": str(folder / "ca.pem"),
        "other_ca": write_ca(other, folder / "other-ca.pem"),
        "client_cert": client_cert,
        "client_key": client_key,
        "rogue_cert": rogue_cert,
        "rogue_key": rogue_key,
        "password_file": str(password_file),
    }


class SecuredBroker:
    """kafka.sh with a SASL_SSL listener, in its own state folder on its own ports."""

    def __init__(self, root: Path, tls_dir: str) -> None:
        self.root = root
        self.port, self.controller_port, self.sasl_ssl_port = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "VISEARCH_VAR_DIR": str(root),
            "VISEARCH_KAFKA_PORT": str(self.port),
            "VISEARCH_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "VISEARCH_KAFKA_SASL_SSL_PORT": str(self.sasl_ssl_port),
            "VISEARCH_KAFKA_TLS_DIR": tls_dir,
            "VISEARCH_KAFKA_SSL_CLIENT_AUTH": "requested",
            "VISEARCH_KAFKA_SCRAM_USERS": f"{SCRAM_USER}:{SCRAM_PASSWORD}",
            "VISEARCH_KAFKA_PLAIN_USERS": f"{PLAIN_USER}:{PLAIN_PASSWORD}",
        }
        # The jars are read-only once resolved: link them instead of resolving with Maven again. The script
        # resolves into this folder (replacing the link) only when deploy/kafka/pom.xml changed.
        shared_lib = ROOT / "var" / "kafka" / "lib"
        if shared_lib.is_dir():
            (root / "kafka").mkdir(parents=True, exist_ok=True)
            (root / "kafka" / "lib").symlink_to(shared_lib.resolve(), target_is_directory=True)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(ROOT / "deploy" / "kafka" / "kafka.sh"), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env,
        )

    @property
    def sasl_ssl(self) -> str:
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def plaintext(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def broker(pki, tmp_path_factory):
    broker = SecuredBroker(tmp_path_factory.mktemp("kafka-var"), pki["dir"])
    start = time.perf_counter()
    try:
        result = broker.run("up")
        assert result.returncode == 0, f"kafka.sh up failed:\n{result.stdout}\n{result.stderr}"
        print(f"\nsecured broker up in {time.perf_counter() - start:.1f} s: {result.stdout.strip().splitlines()[-1]}")
        assert f"SASL_SSL 127.0.0.1:{broker.sasl_ssl_port}" in result.stdout
        assert f"SCRAM-SHA-512 credentials of {SCRAM_USER} set" in result.stdout
        assert not any(secret in result.stdout + result.stderr for secret in SECRETS)
        yield broker
    finally:
        down = broker.run("down", "--purge")
        assert down.returncode == 0, down.stderr


def scram(broker: SecuredBroker, pki: dict[str, str], **overrides: object) -> KafkaSettings:
    """SASL_SSL with SCRAM-SHA-512, trusting the test CA."""
    values: dict[str, object] = {
        "bootstrap": broker.sasl_ssl,
        "topic_prefix": PREFIX,
        "partitions": 2,
        "security_protocol": "SASL_SSL",
        "ssl_cafile": pki["ca"],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": SCRAM_USER,
        "sasl_password": SCRAM_PASSWORD,
        "poll_timeout_s": 0.5,
    }
    values.update(overrides)
    return KafkaSettings(**values)  # type: ignore[arg-type]


def security_env(broker: SecuredBroker, pki: dict[str, str], password_file: str) -> dict[str, str]:
    return {
        "VISEARCH_KAFKA_BOOTSTRAP": broker.sasl_ssl,
        "VISEARCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VISEARCH_KAFKA_SSL_CAFILE": pki["ca"],
        "VISEARCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "VISEARCH_KAFKA_SASL_USERNAME": SCRAM_USER,
        "VISEARCH_KAFKA_SASL_PASSWORD_FILE": password_file,
    }


def total_lag(settings: KafkaSettings) -> int:
    topics = stage_topics(STAGES, settings.topic_prefix)
    return sum(sum(group_lag(settings, t.input, f"visearch-{stage}").values()) for stage, t in topics.items())


# --------------------------------------------------------------------------------------------- the chain


@pytest.mark.models
@pytest.mark.milvus_lite
def test_five_stage_chain_ingests_over_sasl_ssl_with_scram(built_models, broker, pki, tmp_path):
    """Topics created, events published, the five stage processes (each configured by environment only:
    SASL_SSL, SCRAM-SHA-512, the password from a file) consume and produce, and every image is indexed."""
    settings = scram(broker, pki)
    created = create_topics(settings, STAGES)  # the admin client over SASL_SSL
    assert set(created.values()) == {"created"}

    db = tmp_path / "secure.db"
    env = {
        **security_env(broker, pki, pki["password_file"]),
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
        "VISEARCH_KAFKA_PARTITIONS": "2",
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
        "VISEARCH_KAFKA_RETRY_MAX_S": "4",
        "VISEARCH_MILVUS_URI": str(db),
        "VISEARCH_PIPELINE_STAGES": ",".join(STAGES),
        "VISEARCH_LOG_LEVEL": "info",
        "VISEARCH_MODEL_INTRA_OP_THREADS": "1",  # five processes on a small machine
    }
    procs = {stage: ServiceProcess(stage, env, tmp_path) for stage in STAGES}
    start = time.perf_counter()
    try:
        for proc in procs.values():
            proc.start(wait=False)
        for proc in procs.values():
            proc.wait_serving(180)
        print(f"five stages serving in {time.perf_counter() - start:.1f} s")

        photos = [p for p in photo_catalogue() if p.image_id in ("photo-dog", "photo-coffee")]
        items = [*photos, *fashion_mnist("train", limit=6)]
        for item in items:
            item.content, item.uri = item.read_bytes(), None  # inline bytes, as `visearch publish` sends them
        publisher = KafkaTransport(settings, "test-secure-publisher")
        start = time.perf_counter()
        try:
            for item in items:
                publisher.produce(images_topic(settings), *encode_event(item_to_event(item, "secure")))
            publisher.flush()
        finally:
            publisher.close()
        # The indexer commits after its Milvus write: every group at the end of its input means all indexed.
        time.sleep(1.0)
        wait_until(lambda: total_lag(settings) == 0, 150, interval_s=1.0, what="every stage's lag 0")
        print(f"{len(items)} events through the five stages over SASL_SSL in {time.perf_counter() - start:.1f} s")
    finally:
        codes = {stage: proc.stop() for stage, proc in procs.items()}
    assert codes == dict.fromkeys(STAGES, 0), {stage: proc.log_tail() for stage, proc in procs.items()}
    for stage, proc in procs.items():
        log = proc.log_path.read_text(errors="replace")
        assert '"event": "worker_started"' in log, stage
        assert not any(secret in log for secret in SECRETS), f"a secret in the {stage} log"

    store = MilvusStore(StoreSettings(uri=str(db)))  # the indexer is stopped: the Milvus Lite file is free
    try:
        assert store.count(tenant="secure") == len(items)
        for item in items:
            row = store.get("secure", item.image_id)
            assert row is not None and row["phash"], item.image_id  # classified (pHash, colours, taxonomy)
            assert len(row["vector"]) == 1280  # embedded
        assert store.get("secure", "photo-dog")["taxonomy"]  # type: ignore[index]
        assert "dog" in {region["label"] for region in store.regions("secure", "photo-dog")}  # detected
    finally:
        store.close()


# --------------------------------------------------------------------------------------------- PLAIN, mTLS


def roundtrip(settings: KafkaSettings, topic: str, client: str) -> list[bytes]:
    """Produce three messages to a new topic and consume them back in a group (committed: lag 0)."""
    created = create_topics(settings.model_copy(update={"topic_prefix": topic}), ["indexer"])
    assert "created" in created.values()
    name = f"{topic}.images.v1"
    transport = KafkaTransport(settings, client)
    try:
        for i in range(3):
            transport.produce(name, f"k{i}".encode(), f"v{i}".encode(), {"n": str(i)})
        transport.flush()
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < 3 and time.monotonic() < deadline:
            values += [m.value for m in transport.poll(name, f"{client}-group", 10, 1.0)]
        transport.commit(name, f"{client}-group")
    finally:
        transport.close()
    assert group_lag(settings, name, f"{client}-group") == {0: 0, 1: 0}
    return sorted(values)


def test_plain_over_sasl_ssl_produces_and_consumes(broker, pki):
    """PLAIN: the transport, the lag reader, the DLQ reader and the feedback reader (rank fit) all connect."""
    settings = scram(broker, pki, sasl_mechanism="PLAIN", sasl_username=PLAIN_USER, sasl_password=PLAIN_PASSWORD)
    prefix = f"plain{uuid.uuid4().hex[:6]}"
    assert roundtrip(settings, prefix, "plain-client") == [b"v0", b"v1", b"v2"]
    assert sorted(feedback_values(settings, f"{prefix}.images.v1", timeout_s=20)) == [b"v0", b"v1", b"v2"]
    transport = KafkaTransport(settings, "plain-dlq")
    try:
        transport.produce(f"{prefix}.images.v1.dlq", b"bad", b"x", {HEADER_DLQ_REASON: "invalid_event"})
        transport.flush()
    finally:
        transport.close()
    letters = read_dead_letters(settings, f"{prefix}.images.v1.dlq", timeout_s=5)
    assert [(letter.key, letter.reason) for letter in letters] == [("bad", "invalid_event")]


def test_client_certificate_with_an_encrypted_key(broker, pki):
    """Mutual TLS: the broker verifies the presented certificate; one of another CA is refused with the TLS message."""
    settings = scram(
        broker, pki, ssl_certfile=pki["client_cert"], ssl_keyfile=pki["client_key"], ssl_password=KEY_PASSWORD
    )
    assert roundtrip(settings, f"mtls{uuid.uuid4().hex[:6]}", "mtls-client") == [b"v0", b"v1", b"v2"]
    rogue = scram(broker, pki, ssl_certfile=pki["rogue_cert"], ssl_keyfile=pki["rogue_key"])
    with pytest.raises(ConfigError, match=f"Kafka TLS handshake failed at {broker.sasl_ssl} .*certificate"):
        KafkaTransport(rogue, "rogue-client")


# --------------------------------------------------------------------------------------------- failures


def test_wrong_password_stops_a_service_at_start_with_the_reason(broker, pki, tmp_path):
    """kafka-python alone would retry for 30 s, then time out without a reason, and the worker would retry
    that forever (its health SERVING). Now: the indexer exits 1 within seconds, saying why."""
    wrong = tmp_path / "wrong-password"
    wrong.write_text(WRONG_PASSWORD)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        KafkaTransport(scram(broker, pki, sasl_password=WRONG_PASSWORD), "wrong-client")
    in_process = time.monotonic() - start
    assert str(info.value) == (
        f"Kafka authentication failed at {broker.sasl_ssl} (SASL_SSL, SCRAM-SHA-512, user {SCRAM_USER}): "
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    )
    assert in_process < 3, in_process

    env = {**security_env(broker, pki, str(wrong)), "VISEARCH_MILVUS_URI": str(tmp_path / "wrong.db")}
    proc = ServiceProcess("indexer", env, tmp_path)
    start = time.monotonic()
    proc.start(wait=False)
    assert proc.process is not None
    try:
        code = proc.process.wait(timeout=30)
    finally:
        proc.stop()
    elapsed = time.monotonic() - start
    log = proc.log_path.read_text(errors="replace")
    print(f"wrong password: ConfigError in {in_process:.2f} s in process; the indexer exited {code} in {elapsed:.1f} s")
    assert code == 1, log[-3000:]
    assert '"event": "worker_failed"' in log and f"Kafka authentication failed at {broker.sasl_ssl}" in log
    assert WRONG_PASSWORD not in log
    assert elapsed < 15, elapsed  # process start, imports and Milvus Lite included


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ssl_cafile": "OTHER_CA"}, "Kafka TLS handshake failed at {sasl_ssl} .*not trusted.*other-ca.pem"),
        ({"sasl_mechanism": "SCRAM-SHA-256"}, "authentication failed at {sasl_ssl} .*it offers SCRAM-SHA-512, PLAIN"),
        ({"sasl_username": "nobody"}, "Kafka authentication failed at {sasl_ssl} .*user nobody.*invalid credentials"),
        ({"bootstrap": "PLAINTEXT"}, "Kafka TLS handshake failed at {plaintext}"),
        ({"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": None}, "the listener answered with TLS"),
    ],
)
def test_misconfigured_clients_fail_fast_with_the_reason(broker, pki, overrides, message):
    names = {"OTHER_CA": pki["other_ca"], "PLAINTEXT": broker.plaintext}
    settings = scram(broker, pki, **{k: names.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()})
    start = time.monotonic()
    with pytest.raises(ConfigError, match=message.format(sasl_ssl=broker.sasl_ssl, plaintext=broker.plaintext)):
        KafkaTransport(settings, "misconfigured")
    assert time.monotonic() - start < 3


def test_cli_trusting_another_ca_says_tls_handshake_failed(broker, pki):
    env = {
        **os.environ,
        **security_env(broker, pki, pki["password_file"]),
        "VISEARCH_KAFKA_SSL_CAFILE": pki["other_ca"],
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
    }
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "visearch", "topics", "create"], capture_output=True, text=True, env=env, timeout=60
    )
    out = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert result.returncode == 2, out
    assert f"Kafka: Kafka TLS handshake failed at {broker.sasl_ssl} (SASL_SSL, SCRAM-SHA-512, user {SCRAM_USER})" in out
    assert "Traceback" not in out and SCRAM_PASSWORD not in out
    print(f"CLI with another CA: exit 2 in {time.monotonic() - start:.1f} s")


def test_settings_that_cannot_work_stop_the_cli_before_connecting(pki):
    env = {
        **os.environ,
        "VISEARCH_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "VISEARCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VISEARCH_KAFKA_SASL_USERNAME": SCRAM_USER,
        "VISEARCH_KAFKA_SASL_PASSWORD": SCRAM_PASSWORD,
    }
    result = subprocess.run(
        [sys.executable, "-m", "visearch", "topics", "lag"], capture_output=True, text=True, env=env, timeout=60
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, out
    assert "SECURITY_PROTOCOL=SASL_SSL needs VISEARCH_KAFKA_SASL_MECHANISM" in out
    assert SCRAM_PASSWORD not in out
