"""A check of Kafka's TLS and SASL settings, made on one connection of its own before a client is created.

kafka-python handles a refused password and an untrusted broker certificate like an unreachable broker: it
retries until ``bootstrap_timeout_ms`` (30 s) and then raises ``KafkaTimeoutError("Unable to bootstrap
from ...")``, the reason only in its log (kafka-python 3.0.12 against Kafka 4.3.1: with a wrong SCRAM or
PLAIN password the broker closes the connection after the credentials, which kafka-python takes for a lost
connection; a certificate of an unknown CA fails every TLS handshake, each retried). A stage worker takes
that timeout for a broker outage and retries it forever.

:func:`check_connection` connects to the bootstrap servers itself, within ``probe_timeout_s``: TCP, the TLS
handshake with the context kafka-python builds from the same settings, then the SASL exchange of the Kafka
protocol (SaslHandshake v1, SaslAuthenticate v0: PLAIN, or SCRAM per RFC 5802 / RFC 7677), or one
ApiVersions round trip for TLS alone. What fails becomes a :class:`ConfigError` that says "TLS handshake
failed" or "authentication failed", with the address, protocol, mechanism and user (never the password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
import time

from visearch.shared.config import KafkaSettings
from visearch.shared.errors import ConfigError, DependencyUnavailableError

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
CLIENT_ID = b"visearch-probe"
MAX_RESPONSE_BYTES = 1 << 20  # a larger frame is no answer of a Kafka broker to these requests
ERROR_NAMES = {33: "UNSUPPORTED_SASL_MECHANISM", 34: "ILLEGAL_SASL_STATE", 35: "UNSUPPORTED_VERSION"}
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class _Closed(Exception):
    """The broker closed the connection."""


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The TLS context kafka-python's ``KafkaSSLTransport`` builds from the same settings (TLS 1.2+, the
    certificate always verified, the host name per ``ssl_check_hostname``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_cafile is not None:
        context.load_verify_locations(cafile=str(settings.ssl_cafile))
    else:
        context.load_default_certs()
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        context.load_cert_chain(
            str(settings.ssl_certfile), str(settings.ssl_keyfile), settings.ssl_password.get_secret_value()
        )
    return context


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port,[v6]:port,...`` as (host, port) pairs (port 9092 when none is given)."""
    addresses = []
    for item in (part.strip() for part in bootstrap.split(",")):
        if not item:
            continue
        item = item.split("://", 1)[-1]
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, ""
        addresses.append((host, int(port) if port else 9092))
    return addresses


def check_connection(settings: KafkaSettings) -> None:
    """Check TLS and SASL against the first bootstrap server that answers; nothing to do for PLAINTEXT.

    Raises:
        ConfigError: the TLS handshake or the SASL authentication failed: an untrusted or misnamed broker
            certificate, a refused client certificate, a wrong user, password or mechanism, a listener of
            another protocol. Retrying cannot help: fix the settings (or the broker) and restart.
        DependencyUnavailableError: no bootstrap server answered within ``probe_timeout_s`` (transient).
    """
    if settings.security_protocol == "PLAINTEXT":
        return
    deadline = time.monotonic() + settings.probe_timeout_s
    failures = []
    for host, port in bootstrap_addresses(settings.bootstrap):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(f"{host}:{port}: not tried within {settings.probe_timeout_s:g} s")
            continue
        try:
            sock = socket.create_connection((host, port), timeout=remaining)
        except OSError as exc:
            failures.append(f"{host}:{port}: {exc}")
            continue
        try:
            _check(sock, host, port, settings, deadline)
            return
        except (OSError, _Closed) as exc:  # transient (timeout, reset; TLS errors are ConfigErrors by now)
            failures.append(f"{host}:{port}: {exc or type(exc).__name__}")
        finally:
            sock.close()
    raise DependencyUnavailableError(f"Kafka at {settings.describe()} unreachable: {'; '.join(failures)}")


def _check(sock: socket.socket, host: str, port: int, settings: KafkaSettings, deadline: float) -> None:
    where = settings.describe(f"{host}:{port}")
    conn: socket.socket = sock
    if settings.tls:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            conn = ssl_context(settings).wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            trusted = f"VISEARCH_KAFKA_SSL_CAFILE={settings.ssl_cafile}" if settings.ssl_cafile else "the system CAs"
            raise ConfigError(
                f"Kafka TLS handshake failed at {where}: the broker's certificate is not trusted "
                f"({exc.verify_message}; verified with {trusted}, host name check "
                f"{'on' if settings.ssl_check_hostname else 'off'})"
            ) from exc
        except (ssl.SSLError, ConnectionResetError) as exc:
            raise ConfigError(
                f"Kafka TLS handshake failed at {where}: {exc} (is this a TLS listener, and does it accept this "
                "client's certificate?)"
            ) from exc
    exchange = _Exchange(conn, deadline, where)
    try:
        if settings.sasl:
            _authenticate(exchange, settings)
        else:
            exchange.call(API_VERSIONS, 0, b"")  # a TLS 1.3 server refuses a client certificate only now
    except ssl.SSLError as exc:
        raise ConfigError(f"Kafka TLS handshake failed at {where}: {exc} (a client certificate refused?)") from exc
    finally:
        if conn is not sock:  # the TLS socket took the connection over from ``sock``
            conn.close()


class _Exchange:
    """Kafka requests (header v1) and responses (header v0) on one blocking connection, within a deadline."""

    def __init__(self, conn: socket.socket, deadline: float, where: str) -> None:
        self.conn, self.deadline, self.where = conn, deadline, where
        self.correlation_id = 0

    def call(self, api_key: int, version: int, body: bytes) -> bytes:
        """Send one request; return the response body (after the correlation id)."""
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self.correlation_id, len(CLIENT_ID)) + CLIENT_ID
        self._settimeout()
        self.conn.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        head = self._read(4)
        if head[0] in (0x15, 0x16) and head[1] == 0x03:  # a TLS record (alert, handshake): a TLS listener
            raise ConfigError(
                f"Kafka connection check failed at {self.where}: the listener answered with TLS; use "
                "VISEARCH_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        (size,) = struct.unpack(">i", head)
        if not 4 <= size <= MAX_RESPONSE_BYTES:
            raise ConfigError(
                f"Kafka connection check failed at {self.where}: a {size}-byte answer is no Kafka response"
            )
        data = self._read(size)
        (correlation_id,) = struct.unpack_from(">i", data)
        if correlation_id != self.correlation_id:
            raise ConfigError(f"Kafka connection check failed at {self.where}: an answer to another request")
        return data[4:]

    def _settimeout(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer within the time limit")
        self.conn.settimeout(remaining)

    def _read(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            self._settimeout()
            chunk = self.conn.recv(n - got)
            if not chunk:
                raise _Closed("the broker closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _authenticate(exchange: _Exchange, settings: KafkaSettings) -> None:
    mechanism = settings.sasl_mechanism
    failed = f"Kafka authentication failed at {exchange.where}"
    try:
        response = exchange.call(SASL_HANDSHAKE, 1, _string(mechanism))
    except _Closed as exc:
        raise ConfigError(
            f"{failed}: the broker closed the connection at the SASL handshake (is this a "
            f"{settings.security_protocol} listener?)"
        ) from exc
    (error,) = struct.unpack_from(">h", response)
    if error == 34:  # ILLEGAL_SASL_STATE: a listener without SASL
        raise ConfigError(f"{failed}: the listener takes no SASL (ILLEGAL_SASL_STATE): a PLAINTEXT or SSL listener?")
    if error:
        offered = _strings(response[2:])
        raise ConfigError(
            f"{failed}: the broker refused the SASL handshake ({ERROR_NAMES.get(error, error)}; it offers "
            f"{', '.join(offered) or 'no mechanism'})"
        )
    password = settings.sasl_password_value()
    try:
        if mechanism == "PLAIN":
            _sasl_round(exchange, f"\0{settings.sasl_username}\0{password}".encode(), failed)
        else:
            scram = ScramClient(SCRAM_HASHES[mechanism], settings.sasl_username, password)
            server_first = _sasl_round(exchange, scram.first_message().encode(), failed)
            server_final = _sasl_round(exchange, scram.final_message(server_first.decode()).encode(), failed)
            scram.verify(server_final.decode())
    except _Closed as exc:
        raise ConfigError(f"{failed}: the broker closed the connection after the credentials were sent") from exc
    except ValueError as exc:
        raise ConfigError(f"{failed}: {exc}") from exc


def _sasl_round(exchange: _Exchange, auth_bytes: bytes, failed: str) -> bytes:
    """One SaslAuthenticate v0 exchange; the server's bytes, or ConfigError with the broker's message."""
    response = exchange.call(SASL_AUTHENTICATE, 0, struct.pack(">i", len(auth_bytes)) + auth_bytes)
    error, message_size = struct.unpack_from(">hh", response)
    offset = 4 + max(message_size, 0)
    message = response[4:offset].decode("utf-8", "replace") if message_size > 0 else ""
    if error:
        raise ConfigError(f"{failed}: {message or ERROR_NAMES.get(error, f'error {error}')}")
    (size,) = struct.unpack_from(">i", response, offset)
    return response[offset + 4 : offset + 4 + max(size, 0)]


def _strings(data: bytes) -> list[str]:
    """A Kafka ARRAY of STRING."""
    try:
        (count,) = struct.unpack_from(">i", data)
        offset, items = 4, []
        for _ in range(max(count, 0)):
            (size,) = struct.unpack_from(">h", data, offset)
            items.append(data[offset + 2 : offset + 2 + size].decode("utf-8", "replace"))
            offset += 2 + size
        return items
    except struct.error:
        return []


class ScramClient:
    """The client side of SCRAM (RFC 5802) with SHA-256 or SHA-512, as Kafka's SCRAM mechanisms use it (no
    channel binding). Raises ValueError on a server message that does not follow the protocol."""

    def __init__(self, hash_name: str, username: str, password: str, nonce: str | None = None) -> None:
        self.hash_name = hash_name
        self.password = password
        self.nonce = nonce or secrets.token_urlsafe(24)
        name = username.replace("=", "=3D").replace(",", "=2C")
        self.first_bare = f"n={name},r={self.nonce}"
        self._server_signature = b""

    def first_message(self) -> str:  # noqa: D102
        return "n,," + self.first_bare

    def final_message(self, server_first: str) -> str:
        """The client's proof for the server's first message (``r=<nonce>,s=<salt>,i=<iterations>``)."""
        fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
        if "e" in fields:
            raise ValueError(f"the server refused the SCRAM exchange: {fields['e']}")
        nonce, salt, iterations = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self.nonce) or salt is None or not iterations.isdigit():
            raise ValueError("the server's first SCRAM message is malformed")
        salted = hashlib.pbkdf2_hmac(self.hash_name, self.password.encode(), base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.hash_name).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
        self._server_signature = hmac.new(server_key, auth_message, self.hash_name).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final: str) -> None:
        """Check the server's signature (``v=...``): it proves the server knows the credentials too."""
        if server_final.startswith("e="):
            raise ValueError(f"the server refused the SCRAM exchange: {server_final[2:]}")
        expected = "v=" + base64.b64encode(self._server_signature).decode()
        if not hmac.compare_digest(server_final.split(",")[0], expected):
            raise ValueError(
                "the server's SCRAM signature does not match (not the broker that holds these credentials?)"
            )
