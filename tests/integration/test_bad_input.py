"""Bad images get a precise error and the rest of the batch still ingests; the gRPC API answers
INVALID_ARGUMENT for them."""

from __future__ import annotations

import shutil
import struct
import zlib

import pytest

from tests.integration.conftest import LOCAL_FILES
from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import folder_catalogue
from visearch.shared.config import ServiceSettings, StoreSettings
from visearch.shared.errors import InvalidImageError
from visearch.v1 import common_pb2, embedding_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height zeros: ~50 KB on disk, 400 Mpixel when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture()
def bad_folder(tmp_path, photos):
    """Two real photos plus four bad files, each named like an image."""
    folder = tmp_path / "catalogue"
    folder.mkdir()
    by_id = {p.image_id: p for p in photos}
    shutil.copy(by_id["photo-dog"].uri, folder / "good-dog.jpg")
    shutil.copy(by_id["photo-coffee"].uri, folder / "good-coffee.png")
    dog = (folder / "good-dog.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(dog[: len(dog) // 2])
    (folder / "zero-bytes.jpg").write_bytes(b"")
    (folder / "text-file.jpg").write_text("this is a text file, not an image\n")
    (folder / "bomb-20000x20000.png").write_bytes(png_bomb())
    return folder


EXPECTED_REASONS = {
    "truncated": "truncated_image",
    "zero-bytes": "empty_image",
    "text-file": "undecodable_image",
    "bomb-20000x20000": "decompression_bomb",
}


def test_bad_files_fail_with_reason_and_good_ones_are_indexed(built_models, bad_folder, tmp_path):
    """Each bad file lands in the DLQ with its precise reason; both good photos are searchable."""
    with EmbeddedPlatform(
        StoreSettings(uri=str(tmp_path / "bad.db")),
        service_settings=ServiceSettings(tenant="t"),
        image_settings=LOCAL_FILES,
    ) as platform:
        report = platform.ingest(folder_catalogue(bad_folder), progress=False, chunk=3)
        assert {image_id: reason for image_id, reason, _ in report.failed} == EXPECTED_REASONS
        assert all(message for _, _, message in report.failed)
        assert report.indexed == 2
        assert platform.store.count(tenant="t") == 2
        assert platform.store.get("t", "good-dog") is not None


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_embed_image_rejects_bad_bytes_with_invalid_argument(photo_platform, bad_folder, name):
    """EmbedImage raises INVALID_ARGUMENT naming the reason for each bad file."""
    suffix = ".png" if name.startswith("bomb") else ".jpg"
    data = (bad_folder / f"{name}{suffix}").read_bytes()
    request = embedding_pb2.EmbedImageRequest(images=[common_pb2.Image(content=data)])
    with pytest.raises(InvalidImageError) as info:
        photo_platform.embedding.EmbedImage(request, None)
    assert info.value.reason == EXPECTED_REASONS[name]
    assert info.value.code.name == "INVALID_ARGUMENT"
