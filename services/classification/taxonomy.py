"""A coarse-to-fine taxonomy over the ImageNet-1k classes, read from the YAML tree the model build writes.

ImageNet classes are WordNet noun synsets (Deng et al. 2009), so WordNet's hypernym ("is a kind of")
relation gives each class a path from broad to specific. ``visearch.offline.models.build_taxonomy`` turns
those paths into a small tree that is useful to people (``animal > vertebrate > mammal > carnivore > cat >
tabby``; its docstring gives the rules) and writes it as YAML; the :class:`Taxonomy` here scores every
node from the image model's softmax and returns the most specific confident path.

A deployment can replace the YAML (``ClassificationSettings.taxonomy_path``), e.g. with a retail tree
whose nodes list the ImageNet classes they own (see :meth:`Taxonomy.load`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visearch.shared.config import ClassificationSettings, ModelSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.models.registry import IMAGE_MODEL, TAXONOMY_DATA

TAXONOMY_FILE = "taxonomy.yaml"


@dataclass(frozen=True)
class TaxonomyNode:
    """One node of a predicted path.

    ``id``: the node id (a WordNet noun synset id such as ``n02121808`` in the built taxonomy);
    ``name``: readable name; ``depth``: 0 for a root; ``score``: the node's probability, in [0, 1]
    (the sum of the softmax probabilities of the classes under it).
    """

    id: str
    name: str
    depth: int
    score: float


class Taxonomy:
    """A tree of nodes over the image model's classes; scores nodes from class probabilities.

    Args:
        nodes: dicts with ``id``, ``name``, ``parent`` (an id or None for a root) and optionally
            ``classes`` (class ids the node owns besides its own id). A node's ``depth`` is derived.
        class_ids: the class id of each model output, in output order (ImageNet wnids).
        min_score: a path stops at the deepest node whose probability is at least this (0..1].

    A class belongs to the node whose id equals it or whose ``classes`` list it; a node's probability
    is the sum of the probabilities of the classes owned by it and its descendants. Classes no node
    owns add to no node.

    Raises:
        ValueError: unknown parents, a cycle, duplicate ids, or a class owned by two nodes.
    """

    def __init__(self, nodes: list[dict[str, Any]], class_ids: list[str], min_score: float = 0.5) -> None:
        ids = [str(n["id"]) for n in nodes]
        if len(set(ids)) != len(ids):
            dupes = sorted(k for k, v in Counter(ids).items() if v > 1)
            raise ValueError(f"duplicate taxonomy node ids: {dupes[:5]}")
        index = {node_id: i for i, node_id in enumerate(ids)}
        self._index = index
        self.ids = ids
        self.names = [str(n.get("name") or n["id"]) for n in nodes]
        self.parents = np.full(len(nodes), -1, dtype=np.int64)
        for i, node in enumerate(nodes):
            parent = node.get("parent")
            if parent is not None:
                if str(parent) not in index:
                    raise ValueError(f"taxonomy node {ids[i]} has unknown parent {parent}")
                self.parents[i] = index[str(parent)]
        self.depths = self._depths()
        self.children: list[list[int]] = [[] for _ in nodes]
        for i, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(i)
        self.roots = [i for i, p in enumerate(self.parents) if p < 0]
        self.class_ids = list(class_ids)
        self.min_score = min_score
        owner: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for cls_id in [ids[i], *map(str, node.get("classes") or [])]:
                if cls_id in owner and owner[cls_id] != i:
                    raise ValueError(f"class {cls_id} is owned by two taxonomy nodes")
                owner[cls_id] = i
        # Node probabilities: each class's probability goes to its owner, then every level adds
        # into its parents, deepest first (a few vectorised adds; no BLAS, which competes badly for
        # the cores with onnxruntime's threads).
        owned = [(c, owner[cls_id]) for c, cls_id in enumerate(self.class_ids) if cls_id in owner]
        self._owned_classes = np.array([c for c, _ in owned], dtype=np.int64)
        self._owners = np.array([n for _, n in owned], dtype=np.int64)
        self._levels = [
            (np.flatnonzero(self.depths == d), self.parents[self.depths == d])
            for d in range(int(self.depths.max()), 0, -1)
        ]
        self.covered_classes = len(owned)
        """How many of the model's classes some node owns."""

    def _depths(self) -> np.ndarray:
        depths = np.full(len(self.parents), -1, dtype=np.int64)
        for start in range(len(self.parents)):
            chain, node = [], start
            while node >= 0 and depths[node] < 0:
                if node in chain:
                    raise ValueError(f"taxonomy has a cycle through {self.ids[node]}")
                chain.append(node)
                node = int(self.parents[node])
            base = -1 if node < 0 else int(depths[node])
            for offset, n in enumerate(reversed(chain), start=1):
                depths[n] = base + offset
        return depths

    @classmethod
    def load(cls, path: Path, class_ids: list[str] | None = None, min_score: float = 0.5) -> Taxonomy:
        """Read a taxonomy YAML: ``{nodes: [{id, name, parent, depth?, classes?}], classes?: [ids]}``.

        ``classes`` (top level) is the model's class id per output index; ``class_ids`` overrides it
        and is required when the file has none. ``depth`` is informative (derived from the parents).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: malformed YAML (no nodes, no class list) or an inconsistent tree.
        """
        return cls._from_document(_read_yaml(path), str(path), class_ids, min_score)

    @classmethod
    def _from_document(cls, data: Any, source: str, class_ids: list[str] | None, min_score: float) -> Taxonomy:
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
            raise ValueError(f"{source}: a taxonomy YAML needs a non-empty 'nodes' list")
        classes = class_ids if class_ids is not None else data.get("classes")
        if not classes:
            raise ValueError(f"{source}: no class list (top-level 'classes'), and none given")
        return cls(data["nodes"], [str(c) for c in classes], min_score)

    @classmethod
    def from_cache(
        cls, models: ModelSettings | None = None, settings: ClassificationSettings | None = None
    ) -> Taxonomy:
        """The deployment's taxonomy (``settings.taxonomy_path``) or the one built from WordNet.

        The class order comes from the YAML, else from the built image model's ``classes.json``.

        Raises:
            ModelNotBuiltError: the built taxonomy (or, when needed, the image model) is missing.
            FileNotFoundError, ValueError: as :meth:`load`.
        """
        models = models or ModelSettings()
        settings = settings or ClassificationSettings()
        path = settings.taxonomy_path or TAXONOMY_DATA.locate(models.cache_dir) / TAXONOMY_FILE
        data = _read_yaml(path)
        has_classes = isinstance(data, dict) and bool(data.get("classes"))
        class_ids = None if has_classes else _image_model_class_ids(models.cache_dir)
        return cls._from_document(data, str(path), class_ids, settings.taxonomy_min_score)

    def node_scores(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities of every node: float32 ``[N, nodes]`` from class probabilities ``[N, classes]``.

        Raises:
            InvalidEventError: (reason ``probs_shape_mismatch``) ``probs`` is not [classes] or [N, classes].
        """
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim not in (1, 2) or probs.shape[-1] != len(self.class_ids):
            raise InvalidEventError(
                f"probs must be [{len(self.class_ids)}] or [N, {len(self.class_ids)}], got {probs.shape}",
                reason="probs_shape_mismatch",
            )
        probs = np.atleast_2d(probs)
        scores = np.zeros((len(self.ids), probs.shape[0]), dtype=np.float32)  # [nodes, N]
        np.add.at(scores, self._owners, probs[:, self._owned_classes].T)
        for level, parents in self._levels:
            np.add.at(scores, parents, scores[level])
        return scores.T

    def classify(self, probs: np.ndarray) -> list[TaxonomyNode]:
        """The path of one image, root first, from its softmax ``probs`` (float [classes], sums to 1).

        Descends greedily from the most probable root to the most probable child and stops at the
        deepest node whose probability is at least ``min_score``; empty when no root reaches it.
        """
        probs = np.asarray(probs)
        if probs.ndim != 1:
            raise InvalidEventError(
                f"classify takes one image's probabilities [classes], got {probs.shape}; use classify_batch",
                reason="probs_shape_mismatch",
            )
        return self.classify_batch(probs[None, :])[0]

    def classify_batch(self, probs: np.ndarray) -> list[list[TaxonomyNode]]:
        """:meth:`classify` for each row of ``probs`` (float [N, classes])."""
        scores = self.node_scores(probs)
        paths = []
        for row in scores:
            path, level = [], self.roots
            while level:
                best = max(level, key=lambda i: row[i])
                if row[best] < self.min_score:
                    break
                path.append(TaxonomyNode(self.ids[best], self.names[best], int(self.depths[best]), float(row[best])))
                level = self.children[best]
            paths.append(path)
        return paths

    def path_to(self, node_id: str) -> list[str]:
        """Ids from the root down to ``node_id`` (inclusive). Raises KeyError for an unknown id."""
        node = self._index[node_id]
        chain = []
        while node >= 0:
            chain.append(self.ids[node])
            node = int(self.parents[node])
        return chain[::-1]


def _read_yaml(path: Path) -> Any:
    """Parse a YAML file safely, with libyaml's C loader when PyYAML has it (~10x faster here)."""
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


def _image_model_class_ids(cache_dir: Path) -> list[str]:
    classes = json.loads((IMAGE_MODEL.locate(cache_dir) / "classes.json").read_text())
    return [c["wnid"] for c in classes]


# ---------------------------------------------------------------------------------------------------
# Build (needs the `build` extra: nltk)
