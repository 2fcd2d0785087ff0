"""WordPiece tokenisation for the text encoder, with the HuggingFace ``tokenizers`` library (Rust).

Reads the model's own ``tokenizer.json`` (BERT uncased WordPiece for all-MiniLM-L6-v2), so the ids
match the model exactly, and needs neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer


class Tokenizer:
    """Batch tokenizer: ``encode(texts) -> (input_ids, attention_mask)``, both int64 ``[N, S]``.

    Texts longer than ``max_length`` tokens (including [CLS]/[SEP]) are truncated; a batch is padded to
    its longest member.
    """

    def __init__(self, tokenizer_json: Path, max_length: int = 256) -> None:
        self._tok = HFTokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise ``texts`` (len N >= 1). Returns int64 ``input_ids`` and ``attention_mask`` of shape [N, S]."""
        encodings = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask
