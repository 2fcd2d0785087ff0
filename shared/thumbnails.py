"""Thumbnails of indexed images: made once at ingest, kept in a small object store, served by the HTTP gateway.

Why a store of its own and not a Milvus field: Milvus keeps every scalar field of a loaded collection in the
query nodes' memory, and a 10-20 KB JPEG per row would more than double the memory a 1280-d vector row takes;
thumbnails are blobs read one at a time by id and cached by browsers, which a file (or object) store serves
best. The first stage that decodes an image makes the thumbnail (:func:`make_thumbnail`, into
``ImageDocument.thumbnail``), the indexer writes it here after the Milvus upsert and removes it on a delete,
and the gateway reads it. The backend is a folder (``VISEARCH_THUMBNAIL_DIR``): a local directory for
``make up`` and the embedded platform, a shared volume in Kubernetes (docs/architecture.md, "HTTP gateway").
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from visearch.shared.config import ThumbnailSettings

JPEG_MAGIC = b"\xff\xd8\xff"


def make_thumbnail(img: Image.Image, side: int = 192, quality: int = 80) -> bytes:
    """A JPEG of ``img`` scaled down to ``side`` pixels on its longest side (never up), RGB.

    Args:
        img: a decoded image (any mode, at least 1 x 1).
        side: longest side of the result, pixels (>= 1).
        quality: JPEG quality, 1..95.

    Returns:
        the encoded JPEG bytes (a few KB at the default size).
    """
    thumb = img.convert("RGB")
    if max(thumb.size) > side:
        thumb = thumb.copy()
        thumb.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ThumbnailStore:
    """Thumbnails in a folder: ``<root>/<sha256(tenant)[:16]>/<h[:2]>/<h>.jpg``, h = sha256(image id).

    Names are hashes, so no tenant or image id (untrusted strings) can name a path outside ``root``. Writes
    are atomic (a temporary file renamed into place): a reader sees the old or the new thumbnail, never half.

    Args:
        root: the store's folder (created on the first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: ThumbnailSettings | None = None) -> ThumbnailStore | None:
        """The store of ``settings`` (default: ``VISEARCH_THUMBNAIL_*``), or None when no folder is set."""
        settings = settings or ThumbnailSettings()
        return cls(settings.dir) if settings.dir is not None else None

    def path(self, tenant: str, image_id: str) -> Path:
        """Where the thumbnail of (``tenant``, ``image_id``) lives (whether or not it exists)."""
        digest = _digest(image_id)
        return self.root / _digest(tenant)[:16] / digest[:2] / f"{digest}.jpg"

    def put(self, tenant: str, image_id: str, data: bytes) -> None:
        """Store ``data`` (JPEG bytes) as the thumbnail of (``tenant``, ``image_id``), replacing any.

        Raises:
            ValueError: ``data`` is not a JPEG (the store serves everything as ``image/jpeg``).
            OSError: the folder cannot be written.
        """
        if not data.startswith(JPEG_MAGIC):
            raise ValueError(f"thumbnail of {image_id!r} is not a JPEG")
        target = self.path(tenant, image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, tenant: str, image_id: str) -> bytes | None:
        """The thumbnail's JPEG bytes, or None when there is none."""
        try:
            return self.path(tenant, image_id).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, tenant: str, image_id: str) -> None:
        """Remove the thumbnail of (``tenant``, ``image_id``), if any."""
        self.path(tenant, image_id).unlink(missing_ok=True)

    def count(self) -> int:
        """Thumbnails stored (all tenants); for tests and ``visearch store info``-style checks."""
        return sum(1 for _ in self.root.glob("*/*/*.jpg")) if self.root.is_dir() else 0
