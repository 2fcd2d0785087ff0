"""Object labels of an image from its ImageNet class probabilities, without running a detector.

An indexed image carries the detector's objects (COCO-80 labels) among its tags, so the tags factor of a
search wants the query's objects too; running the detector on every query costs more than the rest of the
query's understanding together on a CPU (docs/performance.md). Most COCO labels sit above ImageNet classes in
WordNet (golden retriever -> dog, Granny Smith -> apple, sorrel -> horse): the probability mass of the
classes below a label's synsets is the probability that the image shows that label's kind of thing, as far as
the classifier can tell. The mapping comes from the ``WORDNET_LEXICON`` build (``visearch/offline/models/build_lexicon.py``:
each COCO label's hand-mapped synsets and, for each synset, the ImageNet classes at most ``max_down`` steps
below it); 55 of the 80 labels have classes below them ("person", "cup", "book", "potted plant" have none:
their objects come only from a detector or from visual neighbours).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from visearch.shared.config import ModelSettings
from visearch.shared.query_concepts import lexicon_path, lexicon_strings

# Below this a label is not reported: a class mixture spreads a few per cent over many look-alike classes.
MIN_OBJECT_SCORE = 0.1


class ClassObjects:
    """COCO labels from ImageNet class probabilities: a label's score is the summed probability of the classes
    below its WordNet synsets.

    Args:
        labels: the COCO labels, in the order of ``members``' columns.
        members: bool ``[n_classes, n_labels]``: class ``c`` lies below label ``l``'s synsets.
        min_score: labels scoring below this are left out, in [0, 1].

    Raises:
        ValueError: ``members`` does not have one column per label.
    """

    def __init__(self, labels: list[str], members: np.ndarray, min_score: float = MIN_OBJECT_SCORE) -> None:
        if members.ndim != 2 or members.shape[1] != len(labels):
            raise ValueError(f"members must be [classes, {len(labels)}], got {members.shape}")
        keep = np.asarray(members.any(axis=0))  # labels with no class below them can never score
        self.labels = [label for label, k in zip(labels, keep) if k]
        self.members = members[:, keep].astype(np.float32)
        self.min_score = min_score

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], min_score: float = MIN_OBJECT_SCORE) -> ClassObjects:
        """From the ``lexicon.npz`` arrays: ``coco_labels``, ``coco_indptr``/``coco_synset`` (each label's
        synsets) and ``group_indptr``/``group_class`` (the classes below each synset), ``class_names``."""
        labels = lexicon_strings(arrays, "coco_labels")
        n_classes = len(lexicon_strings(arrays, "class_names"))
        coco_indptr, coco_synset = arrays["coco_indptr"], arrays["coco_synset"]
        group_indptr, group_class = arrays["group_indptr"], arrays["group_class"]
        members = np.zeros((n_classes, len(labels)), dtype=bool)
        for label in range(len(labels)):
            for synset in coco_synset[coco_indptr[label] : coco_indptr[label + 1]]:
                members[group_class[group_indptr[synset] : group_indptr[synset + 1]], label] = True
        return cls(labels, members, min_score)

    @classmethod
    def load(cls, path: Path, min_score: float = MIN_OBJECT_SCORE) -> ClassObjects:
        """Read the arrays it needs from a ``lexicon.npz``."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays(
                {
                    key: data[key]
                    for key in (
                        "coco_labels",
                        "coco_indptr",
                        "coco_synset",
                        "group_indptr",
                        "group_class",
                        "class_names",
                    )
                },
                min_score,
            )

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None) -> ClassObjects:
        """From the lexicon built into the model cache by ``visearch models build``.

        Raises:
            ModelNotBuiltError: the lexicon is not built.
        """
        return cls.load(lexicon_path(models))

    def tags(self, probs: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per image, ``(label, score)`` with score >= ``min_score``, highest first.

        Args:
            probs: float32 ``[N, n_classes]`` class probabilities (softmax outputs, rows summing to ~1).

        Returns:
            N lists of (COCO label, score in [0, 1]).
        """
        scores = np.clip(np.asarray(probs, dtype=np.float32) @ self.members, 0.0, 1.0)
        out = []
        for row in scores:
            found = np.flatnonzero(row >= self.min_score)
            out.append(sorted(((self.labels[i], float(row[i])) for i in found), key=lambda t: (-t[1], t[0])))
        return out
