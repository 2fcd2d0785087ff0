"""SSRF-safe fetching of image URLs named by untrusted events and requests.

An image URI in an ImageEvent or a search request is attacker-controlled. Fetched naively it lets a
caller make our services call the cloud metadata endpoint (169.254.169.254), the Kubernetes API,
Milvus, Triton or anything else on the cluster network, and read the answer back through errors and
timings. :class:`ImageFetcher` closes that door:

- **Schemes**: only ``http`` and ``https``, on the first URL and on every redirect. URLs with user
  info (``http://user@host/``) are refused: they only serve to confuse readers of a URL.
- **Addresses**: the host is resolved once (``socket.getaddrinfo``) and refused when ANY of its
  addresses is loopback, private (RFC 1918, ULA), link-local (169.254/16, fe80::/10, where the cloud
  metadata endpoints live), CGNAT (100.64/10), multicast, unspecified, reserved, IETF-assigned
  (192.0.0/24), documentation/benchmarking or otherwise not global, including those addresses in
  IPv4-mapped (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``) form, unless
  the address is inside ``ImageSettings.fetch_allow_cidrs`` or the host name is in
  ``fetch_allow_hosts``.
- **No DNS rebinding**: the connection goes to the address that was checked, never to the name (no
  second lookup). The name still travels in the ``Host`` header and, for https, in TLS SNI, and the
  server certificate is verified against the name.
- **Redirects** are followed here, not by the client: at most ``fetch_max_redirects``, each hop's
  scheme and addresses checked again.
- **Limits**: a connect timeout per connection and one total deadline for DNS, connects, redirects,
  headers and body (a server that drips one byte per second cannot hold a worker); the body is
  streamed and cut at ``max_bytes`` (a declared Content-Length over the limit is refused before
  reading).
- **Content sniffing**: the first bytes must be a JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF signature
  whatever the Content-Type says; an HTML page named ``photo.jpg`` is refused after its first bytes.
- **No proxies**: ``HTTP(S)_PROXY`` variables are ignored on purpose, since a proxy would resolve
  and connect by itself and the address check would be meaningless.

Client: urllib3 2.x (``urllib3.connection.HTTP(S)Connection``), always installed here because
tritonclient requires it. It lets us open a connection to an IP address while sending the host
name as SNI and verifying the certificate against that name (``server_hostname`` /
``assert_hostname``, both public and documented), stream the body with ``read1`` (chunked or not)
without content decoding, and reach the socket to shrink its timeout to the remaining deadline.
urllib.request (what we used before) and requests cannot pin the address without patching the
resolver, and both follow redirects and honour proxy variables by default.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.response import BaseHTTPResponse
from urllib3.util.ssl_match_hostname import CertificateError

from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError, InvalidImageError
from visearch.shared.logging import get_logger

log = get_logger("fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int, float], list[IPAddress]]

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = "visearch-image-fetcher/1"
SNIFF_BYTES = 32  # enough for every signature below (BMP's DIB header size ends at byte 18)
READ_CHUNK = 64 * 1024

# Cloud metadata and similar instance endpoints: AWS/GCP/Azure/OpenStack (169.254.169.254), AWS ECS
# task metadata (169.254.170.2, .23), AWS IPv6 IMDS (fd00:ec2::254) and EKS Pod Identity
# (fd00:ec2::23), Alibaba (100.100.100.200), Oracle (192.0.0.192). All are also non-global; naming
# them only makes the refusal message say what was at stake.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "192.0.0.192",
    )
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# IETF protocol assignments: Python 3.11 counts most of it as global, but nothing public lives there.
IETF_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


# ------------------------------------------------------------------------------------------ addresses


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and may be routed to: IPv4-mapped (``::ffff:a.b.c.d``),
    NAT64 well-known prefix (``64:ff9b::a.b.c.d``) or 6to4 (``2002:AABB:CCDD::``); else None."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_category(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None for a public (global unicast) address.

    Returns one of ``cloud_metadata``, ``unspecified``, ``loopback``, ``link_local``,
    ``shared_cgnat`` (100.64/10), ``multicast``, ``reserved`` (240/4, broadcast, IPv6 reserved blocks),
    ``private`` (RFC 1918, ULA fc00::/7, documentation, benchmarking and the other special-purpose
    ranges Python marks private), ``site_local`` (fec0::/10), ``ietf_assigned`` (192.0.0/24) or
    ``not_global``. An IPv6 address that embeds an IPv4 one (see :func:`embedded_ipv4`) gets the
    category of the IPv4 address, None included.
    """
    inner = embedded_ipv4(ip)
    if inner is not None:
        # The IPv4 address is where packets go: NAT64 of a public address is how IPv6-only clusters
        # reach the IPv4 internet, NAT64 or IPv4-mapped forms of a private one are where they must not.
        return address_category(inner)
    if ip in METADATA_ADDRESSES:
        return "cloud_metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.version == 4 and ip in CGNAT:
        return "shared_cgnat"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if ip.version == 6 and ip.is_site_local:
        return "site_local"
    if ip.version == 4 and ip in IETF_ASSIGNMENTS:
        return "ietf_assigned"
    if not ip.is_global:
        return "not_global"
    return None


def host_allowed(host: str, allow_hosts: list[str]) -> bool:
    """Whether ``host`` (lower case, no trailing dot) matches an allowlist entry: the exact name, or
    ``*.example.com`` for any name below example.com (not example.com itself)."""
    for entry in allow_hosts:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry:
            return True
    return False


def address_allowed(ip: IPAddress, settings: ImageSettings) -> bool:
    """Whether ``ip`` is public or inside ``settings.fetch_allow_cidrs`` (an IPv4 address embedded in
    IPv6 form counts as that IPv4 address for the allowlist)."""
    networks = settings.allow_networks
    inner = embedded_ipv4(ip)
    if any(ip in net for net in networks) or (inner is not None and any(inner in net for net in networks)):
        return True
    return address_category(ip) is None


_dns_pool: ThreadPoolExecutor | None = None


def resolve_host(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is returned as is), in getaddrinfo's order, deduplicated.

    ``getaddrinfo`` cannot be given a timeout, so it runs in a small thread pool and the caller stops
    waiting after ``timeout_s`` seconds (> 0).

    Raises:
        ImageFetchError: ``fetch_timeout`` after ``timeout_s``; ``image_fetch_failed`` when the name
            does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    global _dns_pool
    if _dns_pool is None:
        _dns_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="visearch-dns")
    future = _dns_pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(timeout_s, 0.001))
    except FutureTimeout as exc:
        raise ImageFetchError(
            f"resolving {host} took more than {timeout_s:.1f} s (fetch_timeout)", reason="fetch_timeout"
        ) from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(
            f"cannot resolve host {host}: {exc} (image_fetch_failed)", reason="image_fetch_failed"
        ) from exc
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise ImageFetchError(
            f"host {host} has no IPv4 or IPv6 address (image_fetch_failed)", reason="image_fetch_failed"
        )
    return addresses


# ------------------------------------------------------------------------------------------- sniffing


def sniff_image_type(head: bytes) -> str | None:
    """The image format the first bytes of a body announce, or None.

    Args:
        head: the first bytes of the body; 32 are enough for every format, fewer may return None.

    Returns:
        ``jpeg``, ``png``, ``gif``, ``webp``, ``bmp``, ``tiff`` or ``avif`` (what Pillow decodes here);
        None for anything else (HTML, JSON, text, video, empty).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    # BMP: "BM" then, at byte 14, the DIB header size, one of the few the format defines.
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124)
    ):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "avif"
    return None


# -------------------------------------------------------------------------------------------- fetcher


@dataclass(frozen=True)
class FetchedImage:
    """The body of a successful fetch. ``url``: the final URL after redirects; ``image_type``: what
    :func:`sniff_image_type` found; ``content_type``: the server's header ("" if none)."""

    data: bytes
    url: str
    image_type: str
    content_type: str
    redirects: int


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower case, IDNA-encoded, no brackets, no trailing dot
    port: int
    host_header: str
    request_target: str  # path and query, percent-encoded


class ImageFetcher:
    """Fetches http(s) image URLs under the rules of ``settings`` (see the module docstring).

    Args:
        settings: limits, allowlists, timeouts (``ImageSettings``; default from the environment).
        resolver: ``(host, port, timeout_s) -> addresses``; default :func:`resolve_host` (tests
            substitute one to simulate DNS answers). It is called exactly once per hop.

    Thread-safe: every fetch opens its own connections.
    """

    def __init__(self, settings: ImageSettings | None = None, resolver: Resolver | None = None) -> None:
        self.settings = settings or ImageSettings()
        self.resolver = resolver or resolve_host
        self._ssl_context: ssl.SSLContext | None = None

    def fetch(self, url: str) -> FetchedImage:
        """Download the image at ``url``, following at most ``fetch_max_redirects`` checked redirects.

        Raises:
            ImageFetchError: reasons ``scheme_not_allowed`` (not http/https, first URL or a redirect),
                ``invalid_uri`` (no host, user info, bad port), ``address_not_allowed`` (a resolved
                address is not public and not allowlisted), ``too_many_redirects``, ``fetch_timeout``
                (total or connect time exceeded), ``not_an_image`` (empty body, HTML, or no known image
                signature), ``image_fetch_failed`` (DNS failure, refused connection, TLS or HTTP error).
            InvalidImageError: ``image_too_large``, the body (declared or streamed) exceeds ``max_bytes``.
        """
        settings = self.settings
        deadline = time.monotonic() + settings.fetch_timeout_s
        current = url
        for hop in range(settings.fetch_max_redirects + 1):
            target = _parse(current)
            addresses = self._checked_addresses(target, current, deadline)
            result = self._request(target, current, addresses, deadline)
            if isinstance(result, FetchedImage):
                return FetchedImage(result.data, current, result.image_type, result.content_type, hop)
            current = urllib.parse.urljoin(current, result)
        raise ImageFetchError(
            f"more than {settings.fetch_max_redirects} redirects fetching {url} (too_many_redirects)",
            reason="too_many_redirects",
        )

    # --- steps -------------------------------------------------------------------------------------

    def _checked_addresses(self, target: _Target, url: str, deadline: float) -> list[IPAddress]:
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(target.host)]
        except ValueError:
            addresses = self.resolver(target.host, target.port, _remaining(deadline, url))
        if host_allowed(target.host, self.settings.allow_host_list):
            return addresses
        refused = [(ip, address_category(ip)) for ip in addresses if not address_allowed(ip, self.settings)]
        if refused:
            what = ", ".join(f"{ip} ({category})" for ip, category in refused)
            log.info("image_fetch_refused", url=url, host=target.host, addresses=[str(ip) for ip, _ in refused])
            where = (
                f"{target.host} resolves to {what}" if str(refused[0][0]) != target.host else f"the address is {what}"
            )
            raise ImageFetchError(
                f"image URL refused (address_not_allowed): {where}; allowlist it with "
                "VISEARCH_IMAGE_FETCH_ALLOW_CIDRS or VISEARCH_IMAGE_FETCH_ALLOW_HOSTS if it is meant to be reached",
                reason="address_not_allowed",
            )
        return addresses

    def _request(self, target: _Target, url: str, addresses: list[IPAddress], deadline: float) -> FetchedImage | str:
        """GET ``target`` at the first verified address that accepts a connection: the image, or a
        redirect's Location."""
        conn = self._connect(target, url, addresses, deadline)
        # Our own reference: http.client drops conn.sock when the response will close the connection
        # (the response keeps reading from it), and the body loop shrinks its timeout to the deadline.
        sock = conn.sock
        try:
            conn.timeout = _remaining(deadline, url)
            conn.request(
                "GET",
                target.request_target,
                headers={
                    "Host": target.host_header,
                    "User-Agent": USER_AGENT,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
                preload_content=False,
                decode_content=False,
            )
            response = conn.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise ImageFetchError(
                        f"HTTP {response.status} without Location from {url} (image_fetch_failed)",
                        reason="image_fetch_failed",
                    )
                return location
            if not 200 <= response.status < 300:
                raise ImageFetchError(
                    f"HTTP {response.status} {response.reason} from {url} (image_fetch_failed)",
                    reason="image_fetch_failed",
                )
            return self._read_body(sock, response, url, deadline)
        except (TimeoutError, ReadTimeoutError) as exc:
            raise _timeout(url, self.settings.fetch_timeout_s) from exc
        except (Urllib3HTTPError, OSError) as exc:  # http.client's own errors are OSError or HTTPException
            raise ImageFetchError(
                f"fetch failed for {url}: {exc} (image_fetch_failed)", reason="image_fetch_failed"
            ) from exc
        except http.client.HTTPException as exc:
            raise ImageFetchError(
                f"fetch failed for {url}: bad HTTP response: {exc!r} (image_fetch_failed)", reason="image_fetch_failed"
            ) from exc
        finally:
            conn.close()

    def _connect(self, target: _Target, url: str, addresses: list[IPAddress], deadline: float) -> HTTPConnection:
        """A connection to the first of the checked ``addresses`` that accepts one (TLS handshake done)."""
        last: Exception | None = None
        for ip in addresses:
            timeout = min(self.settings.fetch_connect_timeout_s, _remaining(deadline, url))
            conn: HTTPConnection
            if target.scheme == "https":
                conn = HTTPSConnection(
                    str(ip),
                    target.port,
                    timeout=timeout,
                    server_hostname=target.host,
                    assert_hostname=target.host,
                    ssl_context=self._tls_context(),
                )
            else:
                conn = HTTPConnection(str(ip), target.port, timeout=timeout)
            try:
                conn.connect()
                return conn
            except NewConnectionError as exc:  # refused, unreachable: try the next verified address
                last = exc
            except (TimeoutError, ConnectTimeoutError) as exc:
                last = exc
                if _remaining_raw(deadline) <= 0:
                    break
            except (ssl.SSLError, ssl.CertificateError, Urllib3SSLError, CertificateError) as exc:
                conn.close()
                raise ImageFetchError(
                    f"TLS handshake with {target.host} ({ip}) failed for {url}: {exc} (image_fetch_failed)",
                    reason="image_fetch_failed",
                ) from exc
            conn.close()
        if isinstance(last, (TimeoutError, ConnectTimeoutError)) and not isinstance(last, NewConnectionError):
            raise ImageFetchError(
                f"connecting to {target.host} timed out for {url} (fetch_timeout)", reason="fetch_timeout"
            ) from last
        raise ImageFetchError(
            f"cannot connect to {target.host} ({', '.join(map(str, addresses))}) for {url}: {last} "
            "(image_fetch_failed)",
            reason="image_fetch_failed",
        ) from last

    def _read_body(self, sock: socket.socket, response: BaseHTTPResponse, url: str, deadline: float) -> FetchedImage:
        limit = self.settings.max_bytes
        content_type = response.headers.get("Content-Type", "")
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise InvalidImageError(
                f"{url} declares {int(declared)} bytes > limit {limit} (image_too_large)", reason="image_too_large"
            )
        body = bytearray()
        image_type: str | None = None
        while True:
            left = _remaining(deadline, url)
            if sock.fileno() != -1:  # -1: http.client closed it after the last byte of the body
                sock.settimeout(left)
            chunk = response.read1(READ_CHUNK)
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                raise InvalidImageError(f"more than {limit} bytes at {url} (image_too_large)", reason="image_too_large")
            if image_type is None and len(body) >= SNIFF_BYTES:
                image_type = self._sniff(bytes(body), content_type, url)
        if image_type is None:
            image_type = self._sniff(bytes(body), content_type, url)
        return FetchedImage(bytes(body), url, image_type, content_type, 0)

    @staticmethod
    def _sniff(body: bytes, content_type: str, url: str) -> str:
        image_type = sniff_image_type(body[:SNIFF_BYTES])
        if image_type is not None:
            return image_type
        if not body:
            what = "an empty body"
        elif "html" in content_type.lower() or body.lstrip()[:1] == b"<":
            what = f"an HTML/markup page (Content-Type {content_type or 'none'!r})"
        else:
            what = f"{content_type or 'no Content-Type'} whose first bytes {body[:8]!r} match no image format"
        raise ImageFetchError(
            f"{url} returned {what}, not a JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF image (not_an_image)",
            reason="not_an_image",
        )

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ca_file = self.settings.fetch_ca_file
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl_context = context
        return self._ssl_context


def fetch_image(url: str, settings: ImageSettings | None = None) -> bytes:
    """The bytes of the image at an http(s) ``url``, fetched by :class:`ImageFetcher` under ``settings``.

    Raises:
        ImageFetchError, InvalidImageError: see :meth:`ImageFetcher.fetch`.
    """
    return ImageFetcher(settings).fetch(url).data


# ------------------------------------------------------------------------------------------- helpers


def _parse(url: str) -> _Target:
    """Scheme, host, port and request target of ``url``, or the ImageFetchError that refuses it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImageFetchError(f"malformed URL {url!r}: {exc} (invalid_uri)", reason="invalid_uri") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ImageFetchError(
            f"scheme {parts.scheme or '(none)'!r} is not allowed for image URLs (only http, https): "
            f"{url} (scheme_not_allowed)",
            reason="scheme_not_allowed",
        )
    if parts.username is not None or parts.password is not None:
        raise ImageFetchError(f"image URLs must not carry user info: {url} (invalid_uri)", reason="invalid_uri")
    raw_host = (parts.hostname or "").rstrip(".")
    if not raw_host:
        raise ImageFetchError(f"image URL has no host: {url} (invalid_uri)", reason="invalid_uri")
    try:
        host = raw_host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ImageFetchError(
            f"image URL has an invalid host name {raw_host!r} (invalid_uri)", reason="invalid_uri"
        ) from exc
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?") if parts.query else ""
    return _Target(scheme, host, port, host_header, path + (f"?{query}" if query else ""))


def _remaining_raw(deadline: float) -> float:
    return deadline - time.monotonic()


def _remaining(deadline: float, url: str) -> float:
    """Seconds left before ``deadline``; ImageFetchError ``fetch_timeout`` when none are."""
    left = _remaining_raw(deadline)
    if left <= 0:
        raise ImageFetchError(
            f"fetching {url} took longer than the total time limit (fetch_timeout)", reason="fetch_timeout"
        )
    return left


def _timeout(url: str, total_s: float) -> ImageFetchError:
    return ImageFetchError(
        f"fetching {url} timed out (limit {total_s:.1f} s in all) (fetch_timeout)", reason="fetch_timeout"
    )
