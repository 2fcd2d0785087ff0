"""SSRF-safe image fetching against real HTTP and HTTPS servers on 127.0.0.1.

The servers (http.server in threads) serve a real photo, redirect chains, redirects into the cloud
metadata range, private and loopback addresses, a slow endpoint, a drip-feed, an endless body, an
oversized declaration and an HTML page named .jpg. 127.0.0.1 is allowlisted only in the tests that
need to reach the server; without the allowlist the same URL is refused before any connection.
The last test goes through a real gRPC server: EmbeddingService answers FAILED_PRECONDITION naming
the reason.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
import time
import urllib.parse
from concurrent import futures

import grpc
import pytest

from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError, InvalidImageError
from visearch.shared.fetch import ImageFetcher, resolve_host
from visearch.shared.images import read_uri

LOOPBACK = "127.0.0.1/32"
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>please log in</body></html>\n"


class Server:
    """A threaded HTTP(S) server on 127.0.0.1 with the routes the tests need; records each request."""

    def __init__(self, photo: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.photo = photo
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.sni: list[str | None] = []
        self.stop = threading.Event()
        self.streamed = 0  # bytes the endless endpoint wrote before the client hung up
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                outer.requests.append((self.path, self.headers.get("Host", "")))
                path, _, query = self.path.partition("?")
                route = getattr(
                    outer, "route_" + path.strip("/").split("/")[0].replace("-", "_").replace(".", "_"), None
                )
                if route is None:
                    self.send_error(404)
                    return
                route(self, path, urllib.parse.parse_qs(query))

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    # --- routes --------------------------------------------------------------------------------------

    @staticmethod
    def _send(h, status: int, body: bytes, content_type: str, **headers) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)

    def route_photo_jpg(self, h, path, query):
        self._send(h, 200, self.photo, "image/jpeg")

    def route_octet(self, h, path, query):
        """The photo with a useless Content-Type: the bytes decide."""
        self._send(h, 200, self.photo, "application/octet-stream")

    def route_hop(self, h, path, query):
        """/hop/N redirects to /hop/N-1 (relative), /hop/0 to /photo.jpg: N + 1 redirects in all."""
        n = int(path.rsplit("/", 1)[1])
        self._send(h, 302, b"", "text/plain", Location=f"/hop/{n - 1}" if n > 0 else "/photo.jpg")

    def route_loop(self, h, path, query):
        self._send(h, 301, b"", "text/plain", Location="/loop")

    def route_redirect(self, h, path, query):
        """/redirect?to=URL: 302 to any URL (the open redirect an attacker would use)."""
        self._send(h, int(query.get("status", ["302"])[0]), b"", "text/plain", Location=query["to"][0])

    def route_slow(self, h, path, query):
        self.stop.wait(5)  # headers only after 5 s (or at teardown)
        self._send(h, 200, self.photo, "image/jpeg")

    def route_drip(self, h, path, query):
        """A JPEG start, then one byte every 0.1 s: every read succeeds, the total never ends."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        try:
            h.wfile.write(self.photo[:64])
            h.wfile.flush()
            for i in range(600):
                if self.stop.wait(0.1):
                    return
                h.wfile.write(self.photo[64 + i : 65 + i])
                h.wfile.flush()
        except OSError:
            pass

    def route_endless(self, h, path, query):
        """A JPEG start, then zeros without end and without Content-Length (bounded at 1 GiB)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Connection", "close")
        h.end_headers()
        chunk = bytes(64 * 1024)
        try:
            h.wfile.write(self.photo[:1024])
            while self.streamed < 1 << 30 and not self.stop.is_set():
                h.wfile.write(chunk)
                self.streamed += len(chunk)
        except OSError:
            pass

    def route_huge(self, h, path, query):
        """Declares 10 GB; sends only the JPEG start."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(10 * 1024**3))
        h.end_headers()
        try:
            h.wfile.write(self.photo[:1024])
        except OSError:
            pass

    def route_page_jpg(self, h, path, query):
        self._send(h, 200, HTML, "text/html; charset=utf-8")

    def route_lying_jpg(self, h, path, query):
        """HTML served as image/jpeg: the content type lies, the bytes do not."""
        self._send(h, 200, HTML, "image/jpeg")

    def route_empty_jpg(self, h, path, query):
        self._send(h, 200, b"", "image/jpeg")


@pytest.fixture(scope="module")
def photo(photos) -> bytes:
    """A real JPEG photo (Debian darknet's dog.jpg)."""
    data = next(p for p in photos if p.image_id == "photo-dog").read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    return data


@pytest.fixture()
def server(photo):
    srv = Server(photo)
    yield srv
    srv.close()


def fetch(url: str, **settings):
    return ImageFetcher(ImageSettings(**settings)).fetch(url)


def refused(url: str, reason: str, error=ImageFetchError, **settings):
    with pytest.raises(error) as info:
        fetch(url, **settings)
    assert info.value.reason == reason, str(info.value)
    return info.value


# ---------------------------------------------------------------------------------------- the basics


def test_loopback_is_refused_without_allowlist_and_fetched_with_it(server, photo):
    """127.0.0.1 is refused before any connection unless allowlisted; then the photo comes back intact."""
    url = f"http://127.0.0.1:{server.port}/photo.jpg"
    error = refused(url, "address_not_allowed")
    assert "loopback" in str(error)
    assert server.requests == []  # refused before connecting
    result = fetch(url, fetch_allow_cidrs=LOOPBACK)
    assert result.data == photo and result.image_type == "jpeg" and result.redirects == 0
    assert server.requests == [("/photo.jpg", f"127.0.0.1:{server.port}")]
    # read_uri, as the services call it.
    assert read_uri(url, ImageSettings(fetch_allow_cidrs=LOOPBACK)) == photo
    with pytest.raises(ImageFetchError):
        read_uri(url)


def test_bytes_decide_not_the_content_type(server, photo):
    """A JPEG served as application/octet-stream is accepted."""
    assert fetch(f"http://127.0.0.1:{server.port}/octet", fetch_allow_cidrs=LOOPBACK).data == photo


def test_http_errors_are_image_fetch_failed(server):
    """A 404 -> image_fetch_failed naming the status."""
    error = refused(
        f"http://127.0.0.1:{server.port}/nothing-here.jpg", "image_fetch_failed", fetch_allow_cidrs=LOOPBACK
    )
    assert "404" in str(error)


def test_connection_refused_is_image_fetch_failed():
    """A port nobody listens on -> image_fetch_failed (allowlisted, so the connect is really tried)."""
    from tests.integration.stack import free_port

    refused(f"http://127.0.0.1:{free_port()}/a.jpg", "image_fetch_failed", fetch_allow_cidrs=LOOPBACK)


# ------------------------------------------------------------------------------------------ redirects


def test_redirect_chain_within_limit(server, photo):
    """Three relative redirects with the default limit of 3 -> the photo; every hop was requested."""
    result = fetch(f"http://127.0.0.1:{server.port}/hop/2", fetch_allow_cidrs=LOOPBACK)
    assert result.data == photo and result.redirects == 3
    assert result.url == f"http://127.0.0.1:{server.port}/photo.jpg"
    assert server.paths() == ["/hop/2", "/hop/1", "/hop/0", "/photo.jpg"]


def test_too_many_redirects(server):
    """Four redirects over a limit of 3, a redirect loop, and any redirect with a limit of 0 are refused."""
    base = f"http://127.0.0.1:{server.port}"
    refused(f"{base}/hop/3", "too_many_redirects", fetch_allow_cidrs=LOOPBACK)
    assert "/photo.jpg" not in server.paths()
    refused(f"{base}/loop", "too_many_redirects", fetch_allow_cidrs=LOOPBACK)
    refused(f"{base}/hop/0", "too_many_redirects", fetch_allow_cidrs=LOOPBACK, fetch_max_redirects=0)


@pytest.mark.parametrize(
    ("target", "category"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "cloud_metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud_metadata"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "cloud_metadata"),
        ("http://10.0.0.1/admin", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "shared_cgnat"),
        ("http://[::1]:9091/metrics", "loopback"),
        ("http://0.0.0.0:19530/", "unspecified"),
    ],
)
def test_redirect_to_internal_address_is_refused(server, target, category):
    """The first hop is allowlisted, the redirect target is not: it is checked again and refused."""
    url = f"http://127.0.0.1:{server.port}/redirect?to={urllib.parse.quote(target, safe='')}"
    error = refused(url, "address_not_allowed", fetch_allow_cidrs=LOOPBACK)
    assert category in str(error)


def test_redirect_from_allowlisted_host_to_loopback_address_is_refused(server):
    """Only the name "localhost" is allowlisted: its first hop is fetched, a redirect to 127.0.0.1
    (not allowlisted as an address) is refused and never requested."""
    target = f"http://127.0.0.1:{server.port}/photo.jpg"
    url = f"http://localhost:{server.port}/redirect?to={urllib.parse.quote(target, safe='')}"
    refused(url, "address_not_allowed", fetch_allow_hosts="localhost")
    assert server.paths() == [f"/redirect?to={urllib.parse.quote(target, safe='')}"]
    assert server.requests[0][1] == f"localhost:{server.port}"


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://127.0.0.1:6379/_INFO"])
def test_redirect_to_other_scheme_is_refused(server, target):
    """A redirect to file:, ftp: or gopher: -> scheme_not_allowed."""
    url = f"http://127.0.0.1:{server.port}/redirect?to={urllib.parse.quote(target, safe='')}&status=307"
    refused(url, "scheme_not_allowed", fetch_allow_cidrs=LOOPBACK)


# ------------------------------------------------------------------------------ DNS: pinning, rebinding


class FlippingResolver:
    """DNS that answers 127.0.0.1 first, then 10.0.0.1 (a rebinding attacker's name server)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, host: str, port: int, timeout_s: float):
        self.calls += 1
        return [ipaddress.ip_address("127.0.0.1" if self.calls == 1 else "10.0.0.1")]


def test_connection_goes_to_the_checked_address_with_the_name_in_host(server, photo):
    """images.example is resolved once; the connection goes to that address and sends the name as Host."""
    resolver = FlippingResolver()
    result = ImageFetcher(ImageSettings(fetch_allow_cidrs=LOOPBACK), resolver).fetch(
        f"http://images.example:{server.port}/photo.jpg"
    )
    assert result.data == photo
    assert resolver.calls == 1
    assert server.requests == [("/photo.jpg", f"images.example:{server.port}")]


def test_rebinding_between_hops_is_caught(server):
    """The name's second answer (for the redirect) is private: the redirect hop is refused."""
    resolver = FlippingResolver()
    with pytest.raises(ImageFetchError) as info:
        ImageFetcher(ImageSettings(fetch_allow_cidrs=LOOPBACK), resolver).fetch(
            f"http://images.example:{server.port}/hop/0"
        )
    assert info.value.reason == "address_not_allowed" and "10.0.0.1 (private)" in str(info.value)
    assert resolver.calls == 2 and server.paths() == ["/hop/0"]


def test_real_resolver_answers_localhost_and_fails_cleanly():
    """The system resolver: localhost is loopback; a name under .invalid does not resolve."""
    assert ipaddress.ip_address("127.0.0.1") in resolve_host("localhost", 80, 5.0)
    with pytest.raises(ImageFetchError) as info:
        resolve_host("no-such-host.invalid", 80, 5.0)
    assert info.value.reason in ("image_fetch_failed", "fetch_timeout")


# ------------------------------------------------------------------------------------ time and size


def test_slow_server_hits_the_total_timeout(server):
    """No headers for 5 s with a 1 s limit -> fetch_timeout after about 1 s."""
    start = time.monotonic()
    refused(f"http://127.0.0.1:{server.port}/slow", "fetch_timeout", fetch_allow_cidrs=LOOPBACK, fetch_timeout_s=1.0)
    assert time.monotonic() - start < 2.0


def test_drip_feed_hits_the_total_timeout(server):
    """One byte every 0.1 s never trips a per-read timeout; the total deadline stops it at about 1 s."""
    start = time.monotonic()
    refused(f"http://127.0.0.1:{server.port}/drip", "fetch_timeout", fetch_allow_cidrs=LOOPBACK, fetch_timeout_s=1.0)
    assert time.monotonic() - start < 2.0


def test_endless_body_is_cut_at_max_bytes(server):
    """A body without end -> image_too_large once max_bytes (1 MiB) is passed, long before the server is done."""
    start = time.monotonic()
    refused(
        f"http://127.0.0.1:{server.port}/endless",
        "image_too_large",
        error=InvalidImageError,
        fetch_allow_cidrs=LOOPBACK,
        max_bytes=1024 * 1024,
    )
    assert time.monotonic() - start < 5.0
    assert server.streamed < 64 * 1024 * 1024


def test_declared_oversize_is_refused_before_reading(server):
    """Content-Length of 10 GB over a 20 MiB limit -> image_too_large at once."""
    error = refused(
        f"http://127.0.0.1:{server.port}/huge", "image_too_large", error=InvalidImageError, fetch_allow_cidrs=LOOPBACK
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(("path", "says"), [("page.jpg", "HTML"), ("lying.jpg", "HTML"), ("empty.jpg", "empty")])
def test_non_images_are_refused_by_their_bytes(server, path, says):
    """An HTML page named .jpg (served as text/html or as image/jpeg) and an empty body -> not_an_image."""
    error = refused(f"http://127.0.0.1:{server.port}/{path}", "not_an_image", fetch_allow_cidrs=LOOPBACK)
    assert says in str(error)


# ------------------------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for the name "localhost" only (no IP address in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture()
def tls_server(photo, tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    srv = Server(photo, tls=context)
    yield srv
    srv.close()


def test_https_pins_the_address_but_sends_and_verifies_the_name(tls_server, tls_files, photo):
    """https://localhost: connected to the checked address, SNI and Host are "localhost", the certificate
    is verified against that name (with the CA from fetch_ca_file)."""
    result = fetch(
        f"https://localhost:{tls_server.port}/photo.jpg", fetch_allow_hosts="localhost", fetch_ca_file=tls_files[0]
    )
    assert result.data == photo
    assert tls_server.sni and set(tls_server.sni) == {"localhost"}
    assert tls_server.requests == [("/photo.jpg", f"localhost:{tls_server.port}")]


def test_https_certificate_must_match_the_url_host(tls_server, tls_files):
    """The same server by IP address: the certificate does not name 127.0.0.1 -> refused (TLS)."""
    error = refused(
        f"https://127.0.0.1:{tls_server.port}/photo.jpg",
        "image_fetch_failed",
        fetch_allow_cidrs=LOOPBACK,
        fetch_ca_file=tls_files[0],
    )
    assert "TLS" in str(error)
    assert tls_server.requests == []


def test_https_untrusted_certificate_is_refused(tls_server):
    """Without the CA file the self-signed certificate is not trusted (system store)."""
    refused(f"https://localhost:{tls_server.port}/photo.jpg", "image_fetch_failed", fetch_allow_hosts="localhost")
    assert tls_server.requests == []


# ---------------------------------------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def embedding_grpc(built_models):
    """EmbeddingService on a real gRPC server on 127.0.0.1 (default image settings: nothing allowlisted)."""
    from visearch.services.embedding.service import EmbeddingService
    from visearch.shared.encoders import Embedder
    from visearch.v1 import embedding_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
        EmbeddingService(Embedder.from_cache(), ImageSettings()), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield embedding_pb2_grpc.EmbeddingServiceStub(channel)
    channel.close()
    server.stop(grace=None).wait()


@pytest.mark.models
@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://10.0.0.1/catalogue/a.jpg", "address_not_allowed"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "address_not_allowed"),
        ("http://[::ffff:127.0.0.1]:50051/", "address_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("/etc/passwd", "scheme_not_allowed"),
    ],
)
def test_embedding_service_refuses_internal_uris_with_failed_precondition(embedding_grpc, uri, reason):
    """EmbedImage with an image URI to a private address or a local file -> FAILED_PRECONDITION naming the reason."""
    from visearch.v1 import common_pb2, embedding_pb2

    with pytest.raises(grpc.RpcError) as info:
        embedding_grpc.EmbedImage(embedding_pb2.EmbedImageRequest(images=[common_pb2.Image(uri=uri)]), timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    assert reason in info.value.details()
    assert "image 0" in info.value.details()


@pytest.mark.models
def test_embedding_service_refuses_loopback_test_server(embedding_grpc, server):
    """Our own test server on 127.0.0.1 is refused by a service with default settings, and never contacted."""
    from visearch.v1 import common_pb2, embedding_pb2

    with pytest.raises(grpc.RpcError) as info:
        embedding_grpc.EmbedImage(
            embedding_pb2.EmbedImageRequest(images=[common_pb2.Image(uri=f"http://127.0.0.1:{server.port}/photo.jpg")]),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "address_not_allowed" in info.value.details() and "loopback" in info.value.details()
    assert server.requests == []
