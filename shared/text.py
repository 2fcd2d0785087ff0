"""The text encoder's input side and runner: WordPiece tokenisation with the HuggingFace ``tokenizers``
library (Rust), the sentence encoder over any inference runner, and the class prompt template of the
joint space.

Reads the model's own ``tokenizer.json`` (BERT uncased WordPiece for all-MiniLM-L6-v2), so the ids
match the model exactly, and needs neither torch nor transformers. Shared by the embedding service and
the model builds that embed texts (``visearch/offline/models/build_text_map.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from visearch.shared.config import ModelSettings
from visearch.shared.inference import InferenceRunner
from visearch.shared.model_base import Batch, InferenceModel
from visearch.shared.models.registry import TEXT_MODEL, ModelSpec

# The sentence each ImageNet class is embedded as. A short caption-like template; the class's
# first two WordNet lemmas give the encoder both the common and the specific name.
CLASS_PROMPT = "a photo of a {name}"


def class_prompt(lemmas: list[str]) -> str:
    """The sentence an ImageNet class (its WordNet lemmas, most common first) is embedded as."""
    return CLASS_PROMPT.format(name=", ".join(lemmas[:2]))


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


class TextEncoder(InferenceModel[str, np.ndarray]):
    """all-MiniLM-L6-v2 → L2-normalised 384-d sentence embeddings, in batches of ``batch_size``.

    ``runner`` None: loaded from ``models`` (see :class:`~visearch.shared.model_base.InferenceModel`);
    ``spec``: the fp32 model (default) or its int8 build.
    """

    spec = TEXT_MODEL
    outputs = ("sentence_embedding",)

    def __init__(
        self,
        runner: InferenceRunner | None,
        tokenizer: Tokenizer,
        batch_size: int = 64,
        *,
        spec: ModelSpec | None = None,
        models: ModelSettings | None = None,
    ) -> None:
        super().__init__(runner, models=models, spec=spec, batch_size=batch_size)
        self.tokenizer = tokenizer

    def encode(self, texts: list[str]) -> np.ndarray:
        """Returns float32 ``[N, 384]``, unit norm; N = len(texts) >= 1 (empty strings are allowed)."""
        vectors = np.concatenate(self.predict_batches(texts))
        return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def preprocess(self, items: Sequence[str], **options: Any) -> Batch:
        """int64 ``input_ids`` and ``attention_mask`` ``[N, S]`` (see :class:`Tokenizer`)."""
        ids, mask = self.tokenizer.encode(list(items))
        return Batch({"input_ids": ids, "attention_mask": mask})

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> np.ndarray:
        """The model's sentence embeddings ``[N, 384]`` (normalised by :meth:`encode`)."""
        return outputs["sentence_embedding"]
