"""The keyword analyzer of BM25: an image's linked text and a query become the same English terms.

Lower case, words of two or more word characters (``(?u)\\b\\w\\w+\\b``), English stop words removed
(bm25s's list), each word reduced by the Snowball English stemmer (PyStemmer): the tokenisation of the
in-process BM25 index (``bm25s``, Lù 2024), so both BM25 paths see the same terms.

Milvus's own English analyzer would do the same inside the engine, but Milvus Lite 3.2 only has the
``standard`` and ``jieba`` tokenizers and no stemmer filter (measured: "dog" did not match "dogs"); so the
store indexes these terms, space separated, under Milvus's ``standard`` analyzer on every server version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

TEXT_FIELDS = ("title", "description", "tags", "ocr_text")
_WORD = re.compile(r"(?u)\b\w\w+\b")
_STOP = frozenset(STOPWORDS_EN)
_STEMMER = Stemmer.Stemmer("english")


def document_text(fields: Mapping[str, Any]) -> str:
    """The text BM25 indexes for one row: its title, description, tags (";" separated) and OCR text."""
    return " ".join(str(fields.get(f) or "").replace(";", " ") for f in TEXT_FIELDS)


def terms(text: str) -> list[str]:
    """The BM25 terms of ``text`` in order (repeats kept: BM25 counts them), e.g. "The dogs ran" ->
    ["dog", "ran"]."""
    stems: list[str] = _STEMMER.stemWords([w for w in _WORD.findall(text.lower()) if w not in _STOP])
    return stems


def analysed(text: str) -> str:
    """``text``'s terms joined by spaces: what the store's BM25 field holds and what a BM25 query sends."""
    return " ".join(terms(text))
