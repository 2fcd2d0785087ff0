"""Exact-match verification for SimilarTo(exact_only): near-duplicates by perceptual hash, exact copies by
ORB keypoints matched and verified with RANSAC (``visearch.shared.duplicates``)."""

from __future__ import annotations

from PIL import Image

from visearch.services.ranking.query import Candidate
from visearch.shared.config import ImageSettings
from visearch.shared.duplicates import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    hash_distance,
    is_exact_match,
    local_features,
    verify_match,
)
from visearch.shared.errors import VisearchError
from visearch.shared.images import decode_image, read_uri
from visearch.shared.logging import get_logger

log = get_logger("ranking")

EXACT_CANDIDATES = 50  # visual neighbours verified for an exact-match request


class ExactMatchVerifier:
    """Keeps the candidates that are near-duplicates or verified exact matches of a query image."""

    def __init__(self, image_settings: ImageSettings) -> None:
        self.image_settings = image_settings

    def verify(
        self, candidates: dict[str, Candidate], query_image: Image.Image | None, phash: int
    ) -> dict[str, Candidate]:
        """The candidates within the near-duplicate pHash distance (<= 16 of 64 bits) or verified by ORB + RANSAC.

        Each kept candidate's "exact" factor is the RANSAC inlier ratio in [0, 1] (when both images' pixels
        are at hand) or ``1 - pHash distance / 64``. Candidates need ``phash`` and ``uri`` in their fields.
        """
        verified = {}
        query_features = local_features(query_image) if query_image is not None else None  # once, not per pair
        for image_id, c in candidates.items():
            distance = hash_distance(phash, int(c.stored.fields.get("phash") or 0)) if phash else 64
            near = distance <= NEAR_DUPLICATE_MAX_DISTANCE
            exact, ratio = False, 0.0
            other = self.load(c.stored.fields.get("uri", "")) if query_image is not None else None
            if other is not None and query_features is not None:  # (query_features is set with query_image)
                match = verify_match(query_features, other)
                exact, ratio = is_exact_match(match), match.inlier_ratio
            if near or exact:
                c.factors["exact"] = ratio if other is not None else 1.0 - distance / 64.0
                verified[image_id] = c
        return verified

    def load(self, uri: str) -> Image.Image | None:
        """The image at ``uri`` for verification, or None when there is none or it cannot be read."""
        if not uri:
            return None
        try:
            return decode_image(read_uri(uri, self.image_settings), self.image_settings)
        except VisearchError as exc:
            log.info("exact_match_unreadable", uri=uri, reason=exc.reason)
            return None
