"""Kafka client security without a broker: the settings' validation (ConfigError naming the variables),
``client_options`` (the kafka-python keyword arguments every client is built with), no secret in any
rendering of the settings, the SCRAM client against RFC 7677's example, and the connection check against
a local TLS server and a closed port (tests/integration/test_kafka_security.py runs it against Kafka)."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
from pydantic import ValidationError

from tests.pki import issue, make_ca, write_ca
from visearch.shared.config import KafkaSettings, settings_markdown
from visearch.shared.errors import ConfigError, DependencyUnavailableError
from visearch.shared.kafka_probe import ScramClient, bootstrap_addresses, check_connection

SASL_PASSWORD = "sasl-Secret-7Hq2Zp"
KEY_PASSWORD = "key-Secret-4Wn8Xc"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("kafka-pki")
    ca, other = make_ca("kafka unit CA"), make_ca("another CA")
    server_cert, server_key = issue(ca, "broker", True, folder, "broker")
    client_cert, client_key = issue(ca, "client", False, folder, "client", key_password=KEY_PASSWORD.encode())
    other_cert, other_key = issue(other, "other", False, folder, "other")
    elsewhere_cert, elsewhere_key = issue(ca, "elsewhere", True, folder, "elsewhere", names=("broker.example",))
    password_file = folder / "sasl-password"
    password_file.write_text(SASL_PASSWORD + "\n")
    return {
        "ca": write_ca(ca, folder / "ca.pem"),
        "other_ca": write_ca(other, folder / "other-ca.pem"),
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
        "other_cert": other_cert,
        "other_key": other_key,
        "elsewhere_cert": elsewhere_cert,
        "elsewhere_key": elsewhere_key,
        "password_file": str(password_file),
    }


def sasl_ssl(pki: dict[str, str], **overrides: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap": "127.0.0.1:9094",
        "security_protocol": "SASL_SSL",
        "ssl_cafile": pki["ca"],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "ingest",
        "sasl_password": SASL_PASSWORD,
    }
    values.update(overrides)
    return KafkaSettings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ client_options


def test_plaintext_default_passes_only_the_bootstrap():
    options = KafkaSettings(bootstrap="127.0.0.1:9092").client_options()
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
        "ssl_check_hostname": True,
        "ssl_cafile": None,
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_password": None,
        "sasl_mechanism": None,
        "sasl_plain_username": None,
        "sasl_plain_password": None,
    }


def test_sasl_ssl_options_with_client_certificate(pki):
    settings = sasl_ssl(
        pki,
        ssl_certfile=pki["client_cert"],
        ssl_keyfile=pki["client_key"],
        ssl_password=KEY_PASSWORD,
        ssl_check_hostname=False,
    )
    assert settings.client_options() == {
        "bootstrap_servers": "127.0.0.1:9094",
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": pki["ca"],
        "ssl_certfile": pki["client_cert"],
        "ssl_keyfile": pki["client_key"],
        "ssl_password": KEY_PASSWORD,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": SASL_PASSWORD,
    }


def test_ssl_alone_and_sasl_plaintext(pki):
    ssl_only = KafkaSettings(bootstrap="b:9093", security_protocol="SSL", ssl_cafile=pki["ca"]).client_options()
    assert ssl_only["ssl_cafile"] == pki["ca"] and ssl_only["sasl_mechanism"] is None
    assert ssl_only["sasl_plain_password"] is None
    plain = KafkaSettings(
        bootstrap="b:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SASL_PASSWORD,
    ).client_options()
    assert (plain["sasl_mechanism"], plain["sasl_plain_username"], plain["sasl_plain_password"]) == (
        "PLAIN",
        "u",
        SASL_PASSWORD,
    )
    assert plain["ssl_cafile"] is None


def test_password_file_is_read_for_each_client(pki, tmp_path):
    path = tmp_path / "password"
    path.write_text("first-Secret-1\n")
    settings = sasl_ssl(pki, sasl_password="", sasl_password_file=path)
    assert settings.client_options()["sasl_plain_password"] == "first-Secret-1"  # the newline is not part of it
    path.write_text("rotated-Secret-2")  # a rotated Secret: the next client uses it
    assert settings.client_options()["sasl_plain_password"] == "rotated-Secret-2"
    path.unlink()
    with pytest.raises(ConfigError, match="VISEARCH_KAFKA_SASL_PASSWORD_FILE=.* cannot be read"):
        settings.client_options()


def test_settings_come_from_the_environment(pki, monkeypatch):
    monkeypatch.setenv("VISEARCH_KAFKA_BOOTSTRAP", "k1:9094,k2:9094")
    monkeypatch.setenv("VISEARCH_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")  # case does not matter
    monkeypatch.setenv("VISEARCH_KAFKA_SSL_CAFILE", pki["ca"])
    monkeypatch.setenv("VISEARCH_KAFKA_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("VISEARCH_KAFKA_SASL_USERNAME", "ingest")
    monkeypatch.setenv("VISEARCH_KAFKA_SASL_PASSWORD_FILE", pki["password_file"])
    monkeypatch.setenv("VISEARCH_KAFKA_SSL_CHECK_HOSTNAME", "false")
    options = KafkaSettings().client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == SASL_PASSWORD and options["ssl_check_hostname"] is False


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"sasl_mechanism": "", "sasl_username": "", "sasl_password": ""},
            "SECURITY_PROTOCOL=SASL_SSL needs VISEARCH_KAFKA_SASL_MECHANISM .* and VISEARCH_KAFKA_SASL_USERNAME and "
            r"VISEARCH_KAFKA_SASL_PASSWORD \(or _FILE\)",
        ),
        ({"sasl_password": ""}, r"needs VISEARCH_KAFKA_SASL_PASSWORD \(or _FILE\)$"),
        ({"sasl_username": ""}, "needs VISEARCH_KAFKA_SASL_USERNAME$"),
        ({"sasl_password_file": "PASSWORD_FILE"}, "SASL_PASSWORD or VISEARCH_KAFKA_SASL_PASSWORD_FILE, not both"),
        ({"sasl_password": "", "sasl_password_file": "/nonexistent/pw"}, "SASL_PASSWORD_FILE=/nonexistent/pw does not"),
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "VISEARCH_KAFKA_SSL_CAFILE=/nonexistent/ca.pem does not exist"),
        ({"ssl_certfile": "CLIENT_CERT"}, "client certificate needs both .*SSL_CERTFILE and .*SSL_KEYFILE"),
        ({"ssl_keyfile": "CLIENT_KEY", "ssl_password": KEY_PASSWORD}, "needs both"),
        ({"ssl_password": KEY_PASSWORD}, "VISEARCH_KAFKA_SSL_PASSWORD is set without VISEARCH_KAFKA_SSL_KEYFILE"),
        ({"ssl_certfile": "CLIENT_CERT", "ssl_keyfile": "CLIENT_KEY"}, "do not load together.*SSL_PASSWORD"),
        (
            {"ssl_certfile": "CLIENT_CERT", "ssl_keyfile": "CLIENT_KEY", "ssl_password": "wrong"},
            "do not load together",
        ),
        ({"ssl_certfile": "CLIENT_CERT", "ssl_keyfile": "OTHER_KEY"}, "do not load together"),
        ({"ssl_cafile": "CLIENT_KEY"}, "SSL_CAFILE=.* holds no PEM certificate"),
    ],
)
def test_security_settings_that_cannot_work_are_a_config_error(pki, overrides, message):
    names = {
        "PASSWORD_FILE": pki["password_file"],
        "CLIENT_CERT": pki["client_cert"],
        "CLIENT_KEY": pki["client_key"],
        "OTHER_KEY": pki["other_key"],
    }
    values = {key: names.get(value, value) if isinstance(value, str) else value for key, value in overrides.items()}
    with pytest.raises(ConfigError, match=message) as info:
        sasl_ssl(pki, **values)
    assert info.value.reason == "bad_config" and info.value.permanent
    assert SASL_PASSWORD not in str(info.value) and KEY_PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"sasl_username": "u", "sasl_password": SASL_PASSWORD},
            "SASL_USERNAME and VISEARCH_KAFKA_SASL_PASSWORD set but VISEARCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: "
            "SASL is used only with SASL_PLAINTEXT or SASL_SSL",
        ),
        (
            {"security_protocol": "SSL", "sasl_mechanism": "PLAIN"},
            "SASL_MECHANISM set but VISEARCH_KAFKA_SECURITY_PROTOCOL=SSL",
        ),
        ({"ssl_cafile": "CA"}, "SSL_CAFILE set but VISEARCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: TLS is used only"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
             "sasl_password": "p", "ssl_cafile": "CA"},
            "SECURITY_PROTOCOL=SASL_PLAINTEXT: TLS is used only with SSL or SASL_SSL",
        ),
    ],
)  # fmt: skip
def test_settings_of_another_protocol_are_refused(pki, values, message):
    """Credentials or certificates set while the protocol stays PLAINTEXT would be silently unused."""
    values = {key: pki["ca"] if value == "CA" else value for key, value in values.items()}
    with pytest.raises(ConfigError, match=message):
        KafkaSettings(**values)


def test_unknown_protocol_or_mechanism_is_a_validation_error():
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings(security_protocol="TLS")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sasl_mechanism"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="GSSAPI")  # type: ignore[arg-type]


def test_no_secret_in_any_rendering(pki):
    settings = sasl_ssl(pki, ssl_certfile=pki["client_cert"], ssl_keyfile=pki["client_key"], ssl_password=KEY_PASSWORD)
    renderings = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        settings.describe(),
        settings_markdown(),
    ]
    for text in renderings:
        assert SASL_PASSWORD not in text and KEY_PASSWORD not in text, text
    assert settings.describe() == "127.0.0.1:9094 (SASL_SSL, SCRAM-SHA-512, user ingest)"
    with pytest.raises(ConfigError) as info:  # an error message names the variables, never the values
        sasl_ssl(pki, ssl_password=KEY_PASSWORD)
    assert KEY_PASSWORD not in str(info.value)


# ------------------------------------------------------------------------------------------ SCRAM, addresses


def test_scram_sha256_matches_rfc_7677():
    """RFC 7677 section 3: user "user", password "pencil", the client nonce given."""
    client = ScramClient("sha256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first_message() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    assert client.final_message(server_first) == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    client.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(ValueError, match="signature does not match"):
        client.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(ValueError, match="malformed"):  # a server nonce that does not extend ours
        ScramClient("sha256", "user", "pencil", nonce="abc").final_message("r=xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert ScramClient("sha512", "a=b,c", "p", nonce="n").first_message() == "n,,n=a=3Db=2Cc,r=n"


def test_bootstrap_addresses():
    assert bootstrap_addresses("k1:9094, k2 ,[::1]:9095,SASL_SSL://k3:19094") == [
        ("k1", 9094),
        ("k2", 9092),
        ("::1", 9095),
        ("k3", 19094),
    ]


# ------------------------------------------------------------------------------------------ connection check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plaintext_needs_no_check():
    check_connection(KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"))  # nothing listens: not even tried


def test_nothing_listening_is_transient(pki):
    start = time.monotonic()
    with pytest.raises(DependencyUnavailableError, match=r"unreachable: 127\.0\.0\.1:\d+: .*refused"):
        check_connection(sasl_ssl(pki, bootstrap=f"127.0.0.1:{free_port()}"))
    assert time.monotonic() - start < 2


class TlsServer:
    """A TLS listener on 127.0.0.1 with the given certificate that completes handshakes and then closes."""

    def __init__(self, cert: str, key: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.sock.close()


def test_untrusted_certificate_is_a_tls_handshake_config_error(pki):
    server = TlsServer(pki["server_cert"], pki["server_key"])
    try:
        settings = sasl_ssl(pki, bootstrap=f"127.0.0.1:{server.port}", ssl_cafile=pki["other_ca"])
        start = time.monotonic()
        with pytest.raises(ConfigError) as info:
            check_connection(settings)
        assert time.monotonic() - start < 2
        message = str(info.value)
        assert message.startswith(f"Kafka TLS handshake failed at 127.0.0.1:{server.port} (SASL_SSL, SCRAM-SHA-512")
        assert "not trusted" in message and "other-ca.pem" in message
    finally:
        server.close()


def test_certificate_of_another_name_fails_the_host_name_check(pki):
    server = TlsServer(pki["elsewhere_cert"], pki["elsewhere_key"])  # names broker.example only
    try:
        with pytest.raises(ConfigError, match="TLS handshake failed.*not valid for '127.0.0.1'.*host name check on"):
            check_connection(sasl_ssl(pki, bootstrap=f"127.0.0.1:{server.port}"))
        # Without the name check the handshake passes; this server then closes: no SASL listener.
        with pytest.raises(ConfigError, match="authentication failed.*closed the connection at the SASL handshake"):
            check_connection(sasl_ssl(pki, bootstrap=f"127.0.0.1:{server.port}", ssl_check_hostname=False))
    finally:
        server.close()


def test_config_error_stops_the_worker_and_an_outage_is_retried(monkeypatch, pki):
    """stage_worker_loop retries an unreachable broker but not a TLS/SASL failure (the process stops)."""
    from visearch.shared import kafka

    calls: list[str] = []

    class Stage:
        name = "indexer"

    def refused(settings: KafkaSettings, client_id: str) -> None:
        calls.append(client_id)
        raise ConfigError("Kafka authentication failed at ...")

    monkeypatch.setattr(kafka, "KafkaTransport", refused)
    settings = sasl_ssl(pki, retry_initial_s=0.01, retry_max_s=0.02)
    with pytest.raises(ConfigError, match="authentication failed"):
        kafka.stage_worker_loop(Stage(), settings, ["indexer"])(threading.Event())  # type: ignore[arg-type]
    assert calls == ["visearch-indexer"]  # once: not retried

    stop = threading.Event()

    def unreachable(settings: KafkaSettings, client_id: str) -> None:
        calls.append(client_id)
        if len(calls) >= 4:
            stop.set()
        raise DependencyUnavailableError("Kafka unreachable")

    calls.clear()
    monkeypatch.setattr(kafka, "KafkaTransport", unreachable)
    with pytest.raises(DependencyUnavailableError):
        kafka.stage_worker_loop(Stage(), settings, ["indexer"])(stop)
    assert len(calls) == 4  # retried until stopped
