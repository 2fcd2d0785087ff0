"""Which detected objects of an image become regions: shared by the embedding stage (region vectors at
ingest) and the search API (the query's objects in REGION_MODE_QUERY_OBJECTS), so both pick the same."""

from __future__ import annotations

from collections.abc import Sequence

from visearch.shared.config import DetectionSettings
from visearch.v1 import common_pb2


def select_regions(
    detections: Sequence[common_pb2.Detection], width: int, height: int, settings: DetectionSettings
) -> list[int]:
    """Indices of the detections that get a region embedding, highest score first.

    Args:
        detections: ``visearch.v1.Detection`` messages (``score`` in [0, 1], ``box`` in pixels).
        width, height: the image's size in pixels.
        settings: ``region_min_score`` (score >= it), ``region_min_area`` (box area / image area >= it,
            in [0, 1]) and ``max_regions`` (at most that many).
    """
    area = float(width * height) or 1.0
    keep = [
        i
        for i, d in enumerate(detections)
        if d.score >= settings.region_min_score
        and (d.box.x2 - d.box.x1) * (d.box.y2 - d.box.y1) / area >= settings.region_min_area
    ]
    keep.sort(key=lambda i: -detections[i].score)
    return keep[: settings.max_regions]
