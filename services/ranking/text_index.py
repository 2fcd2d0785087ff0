"""BM25 over each image's linked text: title, description, tags and OCR text (the "bm25" route and factor).

BM25 (Robertson and Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009) with
the `bm25s` package (Lù 2024), English stop words and the Snowball English stemmer (PyStemmer).
The fallback of a Milvus 2.3 server, which has no full-text search: each ranking replica keeps one
in-memory index per tenant, built from the rows' text fields and rebuilt when older than ``refresh_s``.
With Milvus >= 2.5 or Milvus Lite 3.x the store's unified layout does BM25 inside Milvus
(``MilvusStore.bm25_search``) and this index is not built. Memory: about 100 bytes per distinct
(row, term) pair.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from visearch.shared.keywords import document_text
from visearch.shared.logging import get_logger

log = get_logger("text_index")

_STEMMER = Stemmer.Stemmer("english")


def _tokenizer() -> Tokenizer:
    # The terms of shared/keywords.py (the store's BM25 field), with bm25s's id vocabulary.
    return Tokenizer(stopwords="en", stemmer=_STEMMER)


@dataclass
class _TenantIndex:
    ids: list[str]
    position: dict[str, int]
    tokenizer: Tokenizer
    bm25: bm25s.BM25 | None
    built: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class TextIndex:
    """Per-tenant BM25 indexes over the store's text fields.

    Args:
        rows: callable ``rows(tenant) -> iterable of dicts`` with ``image_id`` and the text fields
            (``MilvusStore.text_rows``).
        refresh_s: rebuild a tenant's index when it is older than this, seconds (0: rebuild on every use).
    """

    def __init__(self, rows: Callable[[str], Iterable[dict[str, Any]]], refresh_s: float = 30.0) -> None:
        self._rows = rows
        self.refresh_s = refresh_s
        self._indexes: dict[str, _TenantIndex] = {}
        self._lock = threading.Lock()

    def invalidate(self, tenant: str | None = None) -> None:
        """Forget a tenant's index (all tenants when None): the next query rebuilds it."""
        with self._lock:
            if tenant is None:
                self._indexes.clear()
            else:
                self._indexes.pop(tenant, None)

    def _index(self, tenant: str) -> _TenantIndex:
        with self._lock:
            index = self._indexes.get(tenant)
            if index is not None and time.monotonic() - index.built < self.refresh_s:
                return index
            start = time.perf_counter()
            rows = list(self._rows(tenant))
            ids = [r["image_id"] for r in rows]
            tokenizer = _tokenizer()
            bm25 = None
            if rows:
                tokens = tokenizer.tokenize([document_text(r) for r in rows], return_as="ids", show_progress=False)
                bm25 = bm25s.BM25()
                bm25.index(tokens, show_progress=False)
            index = _TenantIndex(ids, {i: n for n, i in enumerate(ids)}, tokenizer, bm25, time.monotonic())
            self._indexes[tenant] = index
            log.info(
                "text_index_built", tenant=tenant, rows=len(ids), took_ms=round((time.perf_counter() - start) * 1000, 1)
            )
            return index

    def scores(self, tenant: str, query: str) -> tuple[list[str], np.ndarray]:
        """BM25 scores of ``query`` against every row of ``tenant``: (image ids, float32 scores >= 0).

        A query with no indexed term scores 0 everywhere.
        """
        index = self._index(tenant)
        if index.bm25 is None:
            return [], np.zeros(0, dtype=np.float32)
        with index.lock:  # the tokenizer caches word -> stem as it goes
            # update_vocab=False: a stem the corpus lacks is dropped (0 is the empty token of a query without one).
            ids = index.tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]
            ids = [t for t in ids if t != 0]
            if not ids:
                return index.ids, np.zeros(len(index.ids), dtype=np.float32)
            return index.ids, np.asarray(index.bm25.get_scores(ids), dtype=np.float32)

    def search(self, tenant: str, query: str, top_k: int) -> list[tuple[str, float]]:
        """The ``top_k`` rows with the highest positive BM25 score, best first: (image id, score)."""
        ids, scores = self.scores(tenant, query)
        if not len(scores):
            return []
        top = np.argsort(-scores, kind="stable")[:top_k]
        return [(ids[i], float(scores[i])) for i in top if scores[i] > 0]
