"""What a search compares candidates with: the :class:`Query`, and the :class:`Candidate` being assembled.

A Query holds the query's signals in the form the factors use them (see ``factor_registry.py``); the
understanding cascade (``understanding.py``) fills it for an image, the service for a text, an indexed
item or a palette. A Candidate is one image found by one or more retrieval routes (``routes.py``) with
its raw factor values so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from visearch.shared.store import StoredHit
from visearch.v1 import search_pb2


@dataclass
class Query:
    """What a request asks for, as the factors need it (each part optional).

    ``visual`` float32 [1280] and ``joint`` [384] are unit vectors; ``colour`` the colour descriptor
    (float32 [245], unit norm); ``text`` the query text (or the query image's OCR text), ``tags``
    tag -> score in [0, 1], ``taxonomy`` a path "a > b > c", ``phash`` a 64-bit perceptual hash (0: unknown).
    ``main_visual``: for a framed image query (a screenshot), the embedding of its main photo, searched
    alongside ``visual``.
    """

    kind: str
    visual: np.ndarray | None = None
    joint: np.ndarray | None = None
    colour: np.ndarray | None = None
    text: str = ""
    tags: dict[str, float] = field(default_factory=dict)
    taxonomy: str = ""
    phash: int = 0
    main_visual: np.ndarray | None = None

    def visual_vector(self) -> np.ndarray:
        """``visual``, which an image or indexed-item query always holds (its embedding)."""
        assert self.visual is not None, f"a {self.kind} query without its visual vector"
        return self.visual

    def summary(self) -> str:
        """What was asked, for the feedback log: "text:red dress", "image", "image_id"."""
        return f"text:{self.text}"[:200] if self.kind == "text" else self.kind

    def signals(self) -> set[str]:
        """The names of the signals this query holds (the attributes :meth:`has` is True for)."""
        return {
            name
            for name in ("visual", "joint", "colour", "text", "tags", "taxonomy", "phash", "main_visual")
            if self.has(name)
        }

    def has(self, signal: str | None) -> bool:
        """True when the query holds ``signal`` (an attribute name; None: nothing needed, always True).

        None, "", {} and a 0 pHash are "nothing to compare".
        """
        if signal is None:
            return True
        value = getattr(self, signal)
        return isinstance(value, np.ndarray) or bool(value)


@dataclass
class Candidate:
    """A hit being assembled from one or more routes: its stored fields, raw factor values and matched region."""

    stored: StoredHit
    factors: dict[str, float] = field(default_factory=dict)
    region: search_pb2.RegionMatch | None = None
    # The raw BM25 score (>= 0) of the query's text, when Milvus's BM25 route gave it (None: unknown).
    bm25: float | None = None
    # Vector factors the image has no stored vector for (an image without a colour): never searched for.
    absent: set[str] = field(default_factory=set)

    def offer(self, factor: str, value: float, region: search_pb2.RegionMatch | None = None) -> None:
        """Record a route's similarity; each factor keeps its best value (and "region" its best region)."""
        if value > self.factors.get(factor, -2.0):
            self.factors[factor] = value
            if region is not None:
                self.region = region
