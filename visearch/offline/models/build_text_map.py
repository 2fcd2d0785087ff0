"""Build the DeViSE-style text-to-visual map: text queries into the image encoder's space.

DeViSE (Frome et al., "DeViSE: A Deep Visual-Semantic Embedding Model", NeurIPS 2013) learns a map
between a text space and an image model's space from labelled classes. Here the labelled classes are
EfficientNet-Lite0's 1,000 ImageNet classes: their image-side targets are the classifier's own class weight
vectors (the rows of its final ``_fc`` layer, L2-normalised; a class's logit is the dot product of that row
with the pooled 1280-d feature, so a row is the direction in which images of the class lie), and their
text-side inputs are all-MiniLM-L6-v2 embeddings of several descriptions of each class, read from WordNet
3.0 (Debian's wordnet-base): the class prompt the joint space uses, up to four lemmas, "lemma, a kind of
<hypernym>" and "lemma: <gloss>" (3.8k texts in all). The map is a ridge regression
``M = argmin ||T M - Y||^2 + ridge ||M||^2`` (closed form; ``T`` [n, 384], ``Y`` [n, 1280]), so a text
vector ``t`` [384] maps to ``normalise(t @ M)`` [1280], comparable by cosine with the global image
embeddings. Words that are not class names land near the classes whose descriptions they resemble
("sparrow" near the finches and buntings, "lake" near lakeside), which is what open-vocabulary text
search needs.

The build also embeds a query bank, the 4,000 most frequent one-word WordNet noun lemmas, and stores its
mean in both spaces (``joint_bank_mean`` [384], ``visual_bank_mean`` [1280]): the centroid that hubness
reduction subtracts from a query (see ``shared/text_map.py``).

Files: ``text_to_visual.npy`` float32 [384, 1280], ``class_weights.npy`` float32 [1000, 1280] (the targets:
a query's WordNet classes reach the image space through them), ``joint_bank_mean.npy`` float32 [384],
``visual_bank_mean.npy`` float32 [1280], ``meta.json`` (training-fit figures under ``parity``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from visearch.shared.models.registry import IMAGE_MODEL, TEXT_MODEL, TEXT_TO_VISUAL

BANK_SIZE = 4000
BANK_MIN_COUNT = 3  # SemCor tagged count: lemmas people actually use
LEMMAS_PER_CLASS = 4
# The fitted map must send each class's own prompt closest to its own class weight vector for most classes.
MIN_PROMPT_TOP5 = 0.8


def class_weight_vectors(model_path: Path) -> np.ndarray:
    """The image model's final-layer class weights, float32 [1000, 1280], rows L2-normalised.

    Raises:
        RuntimeError: the ONNX graph has no [1000, 1280] initializer.
    """
    import onnx
    from onnx import numpy_helper

    for init in onnx.load(str(model_path)).graph.initializer:
        if tuple(init.dims) == (1000, 1280):
            weights = numpy_helper.to_array(init).astype(np.float32)
            return weights / np.linalg.norm(weights, axis=1, keepdims=True)
    raise RuntimeError(f"{model_path}: no [1000, 1280] class weight matrix")


def class_texts(wn, classes: list[dict], prompts: list[str]) -> tuple[list[str], np.ndarray]:
    """The descriptions each class is fitted on and their class index: ``(texts, int64 [len(texts)])``."""
    texts, index = [], []
    for i, (c, prompt) in enumerate(zip(classes, prompts)):
        synset = wn.synset_from_pos_and_offset("n", int(c["wnid"][1:]))
        names = [name.replace("_", " ") for name in synset.lemma_names()]
        parents = synset.hypernyms() or synset.instance_hypernyms()
        own = [prompt, *names[:LEMMAS_PER_CLASS], f"{names[0]}: {synset.definition()}"]
        if parents:
            own.append(f"{names[0]}, a kind of {parents[0].lemma_names()[0].replace('_', ' ')}")
        texts += own
        index += [i] * len(own)
    return texts, np.asarray(index, dtype=np.int64)


def query_bank(wn, size: int = BANK_SIZE, min_count: int = BANK_MIN_COUNT) -> list[str]:
    """The ``size`` most frequent one-word, lower-case WordNet noun lemmas (ties by name)."""
    counts: dict[str, int] = {}
    for synset in wn.all_synsets("n"):
        for lemma in synset.lemmas():
            name = lemma.name()
            if "_" not in name and name.islower() and name.isalpha():
                counts[name] = max(counts.get(name, 0), lemma.count())
    return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))[:size]


def fit_ridge(texts: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """``argmin_M ||texts @ M - targets||^2 + ridge ||M||^2``: float32 [texts.shape[1], targets.shape[1]]."""
    gram = texts.T @ texts + ridge * np.eye(texts.shape[1], dtype=np.float64)
    return np.linalg.solve(gram, texts.T.astype(np.float64) @ targets).astype(np.float32)


def build_text_to_visual(cache_dir: Path, force: bool = False) -> Path:
    """Fit and write the text-to-visual map (module doc); returns its folder.

    Raises:
        ModelNotBuiltError: the image or text model is not built.
        FileNotFoundError: Debian's WordNet files are missing.
        ParityError: the fitted map sends fewer than ``MIN_PROMPT_TOP5`` of the class prompts within the top 5
            classes of their own.
    """
    from visearch.offline.models.build import ParityError, build_atomically
    from visearch.offline.models.wordnet import check_wordnet_version, wordnet_reader
    from visearch.shared.config import ModelSettings
    from visearch.shared.inference import runner_for
    from visearch.shared.text import TextEncoder, Tokenizer, class_prompt

    image_dir = IMAGE_MODEL.locate(Path(cache_dir))
    text_dir = TEXT_MODEL.locate(Path(cache_dir))
    recipe = TEXT_TO_VISUAL.recipe

    def export(out: Path) -> dict:
        check_wordnet_version(TEXT_TO_VISUAL.source_version)
        classes = json.loads((image_dir / "classes.json").read_text())
        prompts = [class_prompt(c["lemmas"]) for c in classes]
        models = ModelSettings(cache_dir=Path(cache_dir), triton_url="")
        encoder = TextEncoder(
            runner_for(models, TEXT_MODEL, text_dir),
            Tokenizer(text_dir / "tokenizer.json", TEXT_MODEL.recipe["max_seq_length"]),
        )
        with wordnet_reader() as wn:
            texts, index = class_texts(wn, classes, prompts)
            bank = query_bank(wn)
        targets = class_weight_vectors(image_dir / "model.onnx")
        text_vectors = encoder.encode(texts)
        mapping = fit_ridge(text_vectors, targets[index], recipe["ridge"])
        first = np.searchsorted(index, np.arange(len(classes)))
        mapped = text_vectors[first] @ mapping
        ranks = np.argsort(-(mapped @ targets.T), axis=1)[:, :5]
        top5 = float(np.mean([i in row for i, row in enumerate(ranks)]))
        if top5 < MIN_PROMPT_TOP5:
            raise ParityError(f"text-to-visual map: class prompt top-5 {top5:.3f} < {MIN_PROMPT_TOP5}")
        bank_vectors = encoder.encode(bank)
        bank_visual = bank_vectors @ mapping
        bank_visual /= np.linalg.norm(bank_visual, axis=1, keepdims=True)
        np.save(out / "text_to_visual.npy", mapping)
        np.save(out / "class_weights.npy", targets)
        np.save(out / "joint_bank_mean.npy", bank_vectors.mean(0).astype(np.float32))
        np.save(out / "visual_bank_mean.npy", bank_visual.mean(0).astype(np.float32))
        return {
            "texts": len(texts),
            "bank": len(bank),
            "dims": list(mapping.shape),
            "parity": {
                "class_prompt_top1": float(np.mean(ranks[:, 0] == np.arange(len(classes)))),
                "class_prompt_top5": top5,
            },
        }

    return build_atomically(TEXT_TO_VISUAL, Path(cache_dir), force, export)
