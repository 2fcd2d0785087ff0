"""Unit tests for visearch.shared.fetch: address classification, allowlists, URL and scheme rules,
content sniffing, and the image fetch settings. No network: refused URLs never reach a connect, and
a substitute resolver plays DNS (tests/integration/test_fetch.py runs real HTTP(S) servers)."""

from __future__ import annotations

import io
import ipaddress

import grpc
import pytest
from PIL import Image
from pydantic import ValidationError

from visearch.shared.config import ImageSettings
from visearch.shared.errors import ImageFetchError
from visearch.shared.fetch import (
    ImageFetcher,
    address_allowed,
    address_category,
    embedded_ipv4,
    host_allowed,
    sniff_image_type,
)
from visearch.shared.images import read_uri

ip = ipaddress.ip_address


# ------------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.169.254", "cloud_metadata"),  # AWS / GCP / Azure / OpenStack metadata
        ("169.254.170.2", "cloud_metadata"),  # AWS ECS task metadata
        ("fd00:ec2::254", "cloud_metadata"),  # AWS IMDS over IPv6
        ("100.100.100.200", "cloud_metadata"),  # Alibaba
        ("192.0.0.192", "cloud_metadata"),  # Oracle (Python counts 192.0.0.192 as global)
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),  # ULA
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("100.64.0.1", "shared_cgnat"),
        ("100.127.255.254", "shared_cgnat"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fec0::1", "site_local"),
        ("192.0.0.8", "ietf_assigned"),
        ("192.0.2.1", "private"),  # documentation (TEST-NET-1)
        ("198.18.0.1", "private"),  # benchmarking
        ("2001:db8::1", "private"),  # documentation
        # IPv6 forms that carry an IPv4 address: classified as that address.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "cloud_metadata"),
        ("64:ff9b::a9fe:a9fe", "cloud_metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("::7f00:1", "reserved"),  # deprecated IPv4-compatible form
    ],
)
def test_non_public_addresses_are_classified(address, category):
    """Every special-purpose range gets the category the refusal message names."""
    assert address_category(ip(address)) == category


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "151.101.1.69",
        "2606:4700::1111",
        "2a00:1450:4001:82a::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_pass(address):
    """Global unicast addresses (also in IPv4-mapped and NAT64 form) are fetchable."""
    assert address_category(ip(address)) is None
    assert address_allowed(ip(address), ImageSettings())


def test_embedded_ipv4_forms():
    """IPv4-mapped, NAT64 well-known prefix and 6to4 reveal their IPv4 address; plain IPv6/IPv4 give None."""
    assert embedded_ipv4(ip("::ffff:1.2.3.4")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("64:ff9b::102:304")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2002:102:304::1")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2606:4700::1111")) is None
    assert embedded_ipv4(ip("1.2.3.4")) is None


def test_cidr_allowlist_admits_only_its_addresses():
    """An allowlisted CIDR admits its own non-public addresses (also IPv4-mapped), and nothing else."""
    settings = ImageSettings(fetch_allow_cidrs="10.20.0.0/16, 127.0.0.1/32, fd12::/16")
    assert address_allowed(ip("10.20.3.4"), settings)
    assert address_allowed(ip("127.0.0.1"), settings)
    assert address_allowed(ip("::ffff:127.0.0.1"), settings)
    assert address_allowed(ip("fd12::5"), settings)
    assert address_allowed(ip("8.8.8.8"), settings)
    for other in ("10.21.0.1", "127.0.0.2", "::1", "169.254.169.254", "fd13::5", "192.168.0.1"):
        assert not address_allowed(ip(other), settings), other
    assert not address_allowed(ip("127.0.0.1"), ImageSettings())


def test_host_allowlist_exact_and_wildcard():
    """Exact names match themselves; *.example.com matches subdomains only, never a look-alike suffix."""
    allow = ImageSettings(fetch_allow_hosts="Images.Internal., *.cdn.example.com").allow_host_list
    assert allow == ["images.internal", "*.cdn.example.com"]
    assert host_allowed("images.internal", allow)
    assert host_allowed("a.cdn.example.com", allow)
    assert host_allowed("x.y.cdn.example.com", allow)
    assert not host_allowed("cdn.example.com", allow)
    assert not host_allowed("evilcdn.example.com", allow)
    assert not host_allowed("images.internal.evil.com", allow)
    assert not host_allowed("other.internal", allow)


# ------------------------------------------------------------------------------------- URL and scheme rules


class RecordingResolver:
    """Plays DNS from a table, counting lookups; an unknown name is a test failure."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, timeout_s: float):
        assert timeout_s > 0
        self.calls.append(host)
        return [ip(a) for a in self.table[host]]


def refused(url: str, settings: ImageSettings | None = None, resolver=None) -> ImageFetchError:
    with pytest.raises(ImageFetchError) as info:
        ImageFetcher(settings or ImageSettings(), resolver or RecordingResolver({})).fetch(url)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and info.value.permanent
    assert f"({info.value.reason})" in str(info.value)  # the reason reaches gRPC details and logs
    return info.value


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/",
        "//example.com/a.jpg",
        "example.com/a.jpg",
    ],
)
def test_only_http_and_https_schemes(url):
    """Any scheme but http/https is refused before DNS."""
    resolver = RecordingResolver({})
    assert refused(url, resolver=resolver).reason == "scheme_not_allowed"
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@example.com/a.jpg",
        "http://example.com@10.0.0.1/a.jpg",
        "http:///a.jpg",
        "http://example.com:99999/a.jpg",
        "http://example.com:x/a.jpg",
    ],
)
def test_malformed_urls_are_invalid_uri(url):
    """User info (a classic way to disguise the real host), no host, or a bad port -> invalid_uri."""
    resolver = RecordingResolver({})
    assert refused(url, resolver=resolver).reason == "invalid_uri"
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "table"),
    [
        ("http://169.254.169.254/latest/meta-data/", {}),
        ("http://[fd00:ec2::254]/latest/meta-data/", {}),
        ("http://10.0.0.1/a.jpg", {}),
        ("http://[::ffff:7f00:1]/a.jpg", {}),
        ("http://2130706433/a.jpg", {"2130706433": ["127.0.0.1"]}),  # what inet_aton makes of it
        ("http://metadata.google.internal/", {"metadata.google.internal": ["169.254.169.254"]}),
        ("http://mixed.example.com/a.jpg", {"mixed.example.com": ["93.184.216.34", "10.0.0.7"]}),
        ("https://kube.example.com/api", {"kube.example.com": ["2606:4700::1111", "fd00::1"]}),
    ],
)
def test_any_non_public_address_is_refused(url, table):
    """A host is refused when ANY of its addresses is not public; the message names the address."""
    error = refused(url, resolver=RecordingResolver(table))
    assert error.reason == "address_not_allowed"
    assert "VISEARCH_IMAGE_FETCH_ALLOW_CIDRS" in str(error)


def test_resolution_happens_once_per_hop_and_message_names_category():
    """The refusal reports the offending address and its category; one lookup per hop."""
    resolver = RecordingResolver({"evil.example.com": ["8.8.8.8", "169.254.169.254"]})
    error = refused("http://evil.example.com/x.jpg", resolver=resolver)
    assert "169.254.169.254 (cloud_metadata)" in str(error) and "8.8.8.8" not in str(error)
    assert resolver.calls == ["evil.example.com"]


def test_host_names_are_normalised_before_checks():
    """Upper case, a trailing dot and IDN names are looked up in canonical form."""
    resolver = RecordingResolver({"images.example.com": ["10.0.0.1"], "xn--bcher-kva.example": ["10.0.0.2"]})
    refused("http://IMAGES.Example.COM./a.jpg", resolver=resolver)
    refused("http://bücher.example/a.jpg", resolver=resolver)
    assert resolver.calls == ["images.example.com", "xn--bcher-kva.example"]


def test_read_uri_uses_the_safe_fetcher():
    """read_uri sends http(s) through the fetcher: a private address is refused with its reason."""
    for url in ("http://10.0.0.1/a.jpg", "HTTPS://169.254.169.254/latest"):
        with pytest.raises(ImageFetchError) as info:
            read_uri(url)
        assert info.value.reason == "address_not_allowed"


# ------------------------------------------------------------------------------------------- sniffing


def encode(fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 40)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
        ("AVIF", "avif"),
    ],
)
def test_sniff_recognises_real_encodings(fmt, expected):
    """Files Pillow writes are recognised from their first 32 bytes."""
    assert sniff_image_type(encode(fmt)[:32]) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>Not found</title>",
        b"<html>",
        b'{"error": "not found"}',
        b"BMW 3 series brochure, plain text, more than 18 bytes",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\x7fELF\x02\x01\x01\x00" + bytes(24),
        b"%PDF-1.7\n",
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00",
        b"\xff\xd8",  # too short to be sure
    ],
)
def test_sniff_refuses_non_images(head):
    """HTML, JSON, text starting with BM, WAV, ELF, PDF, MP4, empty -> None."""
    assert sniff_image_type(head) is None


# ------------------------------------------------------------------------------------------- settings


def test_fetch_settings_defaults_and_env(monkeypatch):
    """File URIs are off by default; fetch limits and allowlists come from VISEARCH_IMAGE_* variables."""
    settings = ImageSettings()
    assert settings.allow_file_uris is False
    assert (
        settings.fetch_max_redirects == 3
        and settings.fetch_timeout_s == 10.0
        and settings.fetch_connect_timeout_s == 3.0
    )
    assert settings.allow_networks == [] and settings.allow_host_list == []
    monkeypatch.setenv("VISEARCH_IMAGE_FETCH_ALLOW_CIDRS", "10.0.0.0/8, fd00::/8")
    monkeypatch.setenv("VISEARCH_IMAGE_FETCH_ALLOW_HOSTS", "minio.storage.svc")
    monkeypatch.setenv("VISEARCH_IMAGE_FETCH_MAX_REDIRECTS", "0")
    settings = ImageSettings()
    assert settings.allow_networks == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert settings.allow_host_list == ["minio.storage.svc"]
    assert settings.fetch_max_redirects == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fetch_allow_cidrs", "10.0.0.0/33"),
        ("fetch_allow_cidrs", "intranet"),
        ("fetch_max_redirects", -1),
        ("fetch_timeout_s", 0),
        ("fetch_connect_timeout_s", -1),
    ],
)
def test_bad_fetch_settings_fail_at_start(field, value):
    """A typo in an allowlist or a nonsensical limit fails when the settings load, not at the first fetch."""
    with pytest.raises(ValidationError):
        ImageSettings(**{field: value})
