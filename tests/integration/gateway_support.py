"""A gateway over an embedded platform, served in a thread on a free loopback port (one per test module)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from PIL import Image, ImageDraw, ImageFont

from visearch.services.gateway.app import Gateway
from visearch.services.gateway.backend import Backend
from visearch.services.gateway.server import GatewayThread


@contextlib.contextmanager
def serve_gateway(platform, **gateway_kwargs) -> Iterator[GatewayThread]:
    """Serve ``platform``'s services over HTTP on 127.0.0.1 (a port picked at run time); stopped on exit."""
    backend = Backend.in_process(platform.search, platform.detection, platform.ocr, platform.classification)
    gateway = Gateway(backend, thumbnails=platform.thumbnails, default_tenant=platform.tenant, **gateway_kwargs)
    server = GatewayThread(gateway).start()
    try:
        yield server
    finally:
        server.stop()


def near_duplicate(data: bytes) -> bytes:
    """A cropped, resized, slightly rotated JPEG q70 copy of an image (the demo's near-duplicate query)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    variant = img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w // 2, h // 2)).rotate(5)
    buf = io.BytesIO()
    variant.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def with_text(data: bytes, text: str = "ESPRESSO 2.50 EUR") -> bytes:
    """The image with a line of dark text on a white band (OCR reads it)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 36)
    draw.rectangle((20, 20, 420, 80), fill=(255, 255, 255))
    draw.text((30, 28), text, font=font, fill=(10, 10, 10))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()
