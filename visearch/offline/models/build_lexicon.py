"""Build the query lexicon (``WORDNET_LEXICON``): what query understanding needs from WordNet 3.0, without nltk.

Reads Debian's WordNet dict files with nltk (``visearch/offline/models/wordnet.py``; the ``build`` extra) and the
image model's ``classes.json``, and writes ``lexicon.npz`` (numpy arrays, strings as UTF-8 bytes joined by
newlines) that ``shared/query_concepts.py`` reads at serving time:

- ``synset_names``: the kept noun synsets (names like ``sparrow.n.01``), and ``parent_*`` (CSR): each one's
  hypernyms and instance hypernyms among the kept synsets;
- ``group_*`` (CSR over synsets): the ImageNet classes (indices in the image model's order) at most
  ``max_down`` steps below each synset, itself included; empty for WordNet's abstract tops
  (:data:`~visearch.offline.models.wordnet.UPPER_LEVELS`);
- ``lemmas`` and ``lemma_indptr``/``sense_synset``/``sense_count``: noun lemmas (lower case, ``_`` and ``-`` as
  spaces) with their first ``max_senses`` senses in WordNet order and SemCor tagged counts; a sense that is
  not kept is -1 (it still takes its share of the weight);
- ``gloss_words`` and ``gloss_word_*``: single nouns that occur in the definitions, or end the names, of at
  most ``gloss_max_classes`` classes, with those classes ("lake" -> lakeside: "the shore of a lake");
- ``exceptions``: noun.exc lines ("geese goose") whose base form is in the lexicon;
- ``coco_labels`` and ``coco_*``: the detector's 80 labels with their synsets (:data:`COCO_SYNSETS`);
- ``class_names``, ``class_wnids``; ``params``: the recipe's limits as JSON.

A synset is kept when it links to something: a class group at most ``max_up`` steps above it (a group
above it with more than ``max_up_group`` classes only counts for the synset itself), a COCO label's synset
above it, or a COCO label's synset at most ``coco_max_down`` steps below it. Every synset on such a path is
kept too, so query-time walks over the kept graph find the same shortest paths as over all of WordNet. A
lemma is kept when one of its senses is. Links from a synset's own definition to the classes it names were
tried and left out: most were noise (24k synsets, the commonest targets person, flower, surface, system:
"copyist" -> person -> scuba diver).

Checks before the folder is moved into place: the written file loads; at most
:data:`MAX_AMBIGUOUS_CLASS_NAMES` class names do not expand to their own class as the heaviest one (names
shared with a more frequent sense or another class: crane, maillot); at least :data:`MIN_COCO_NAMES` COCO
label names give their label. The figures land in ``meta.json`` (``parity``).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from visearch.offline.models.wordnet import UPPER_LEVELS, check_wordnet_version, wordnet_reader
from visearch.shared.models.registry import DETECTOR_MODEL, IMAGE_MODEL, WORDNET_LEXICON
from visearch.shared.query_concepts import LEXICON_FILE, QueryLexicon, base_forms, is_content_word, tokenize

# The detector's COCO-80 labels (centernet labels.json, in class order) -> WordNet 3.0 noun synsets, by
# hand. A label lists several synsets where COCO's category is wider than one synset (boat: boats and
# ships; dining table: any table; book: the object and the written work people mean by it) or where the
# everyday word sits elsewhere in WordNet (cow: cattle; cat: the domestic cat under "domestic animal").
COCO_SYNSETS: dict[str, tuple[str, ...]] = {
    "person": ("person.n.01",),
    "bicycle": ("bicycle.n.01",),
    "car": ("car.n.01",),
    "motorcycle": ("motorcycle.n.01",),
    "airplane": ("airplane.n.01",),
    "bus": ("bus.n.01",),
    "train": ("train.n.01",),
    "truck": ("truck.n.01",),
    "boat": ("boat.n.01", "ship.n.01"),
    "traffic light": ("traffic_light.n.01",),
    "fire hydrant": ("fireplug.n.01",),
    "stop sign": ("street_sign.n.01",),  # WordNet has no stop sign; a street sign is its nearest synset
    "parking meter": ("parking_meter.n.01",),
    "bench": ("bench.n.01",),
    "bird": ("bird.n.01",),
    "cat": ("cat.n.01", "domestic_cat.n.01"),
    "dog": ("dog.n.01",),
    "horse": ("horse.n.01",),
    "sheep": ("sheep.n.01",),
    "cow": ("cattle.n.01",),
    "elephant": ("elephant.n.01",),
    "bear": ("bear.n.01",),
    "zebra": ("zebra.n.01",),
    "giraffe": ("giraffe.n.01",),
    "backpack": ("backpack.n.01",),
    "umbrella": ("umbrella.n.01",),
    "handbag": ("bag.n.04",),
    "tie": ("necktie.n.01",),
    "suitcase": ("bag.n.06",),
    "frisbee": ("frisbee.n.01",),
    "skis": ("ski.n.01",),
    "snowboard": ("snowboard.n.01",),
    "sports ball": ("ball.n.01",),
    "kite": ("kite.n.03",),
    "baseball bat": ("baseball_bat.n.01",),
    "baseball glove": ("baseball_glove.n.01",),
    "skateboard": ("skateboard.n.01",),
    "surfboard": ("surfboard.n.01",),
    "tennis racket": ("tennis_racket.n.01",),
    "bottle": ("bottle.n.01",),
    "wine glass": ("wineglass.n.01",),
    "cup": ("cup.n.01",),
    "fork": ("fork.n.01",),
    "knife": ("knife.n.01",),
    "spoon": ("spoon.n.01",),
    "bowl": ("bowl.n.03", "bowl.n.01"),
    "banana": ("banana.n.02",),
    "apple": ("apple.n.01",),
    "sandwich": ("sandwich.n.01",),
    "orange": ("orange.n.01",),
    "broccoli": ("broccoli.n.02",),
    "carrot": ("carrot.n.03", "carrot.n.01"),
    "hot dog": ("hotdog.n.02",),
    "pizza": ("pizza.n.01",),
    "donut": ("doughnut.n.02",),
    "cake": ("cake.n.03",),
    "chair": ("chair.n.01",),
    "couch": ("sofa.n.01",),
    "potted plant": ("pot_plant.n.01", "houseplant.n.01"),
    "bed": ("bed.n.01",),
    "dining table": ("dining_table.n.01", "table.n.02"),
    "toilet": ("toilet.n.02",),
    "tv": ("television_receiver.n.01", "television.n.01"),  # "tv" is mostly tagged as the broadcasting sense
    "laptop": ("laptop.n.01",),
    "mouse": ("mouse.n.04",),
    "remote": ("remote_control.n.01",),
    "keyboard": ("computer_keyboard.n.01",),
    "cell phone": ("cellular_telephone.n.01",),
    "microwave": ("microwave.n.02",),
    "oven": ("oven.n.01",),
    "toaster": ("toaster.n.02",),
    "sink": ("sink.n.01",),
    "refrigerator": ("refrigerator.n.01",),
    "book": ("book.n.02", "book.n.01"),
    "clock": ("clock.n.01",),
    "vase": ("vase.n.01",),
    "scissors": ("scissors.n.01",),
    "teddy bear": ("teddy.n.01",),
    "hair drier": ("hand_blower.n.01",),
    "toothbrush": ("toothbrush.n.01",),
}

# Class names that are also the name of a more frequent sense or of another class, so that the name alone
# does not pick the class (crane the bird and crane the machine; maillot twice). The check allows
# this many such classes (28 of 1000 when written; a jump means the expansion broke).
MAX_AMBIGUOUS_CLASS_NAMES = 60
# COCO label names that must give their label (weight >= MIN_COCO_WEIGHT). 77 of 80 when written: "stop sign" is
# not in WordNet, "cake" and "mouse" mostly mean a block of soap and the rodent (the computer mouse is the
# word's 4th sense, beyond max_senses).
MIN_COCO_NAMES = 75


def _key(name: str) -> str:
    """A lemma as the lexicon stores it: lower case, ``_`` and ``-`` as spaces."""
    return name.lower().replace("_", " ").replace("-", " ")


def _bfs(start: Iterable[int], edges: list[list[int]], limit: int | None = None) -> dict[int, int]:
    """Nodes reachable from ``start`` along ``edges`` with their fewest steps, at most ``limit`` steps."""
    seen = {s: 0 for s in start}
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        if limit is not None and seen[node] >= limit:
            continue
        for nxt in edges[node]:
            if nxt not in seen:
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
    return seen


def _csr(rows: list[list[int]], dtype) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(rows) + 1, dtype=np.int32)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    flat = np.fromiter((v for r in rows for v in r), dtype=dtype, count=int(indptr[-1]))
    return indptr, flat


def _text(lines: Iterable[str]) -> np.ndarray:
    return np.frombuffer("\n".join(lines).encode("utf-8"), dtype=np.uint8)


def lexicon_arrays(
    wn,
    classes: list[dict],
    coco_labels: list[str],
    recipe: dict,
    coco_synsets: dict[str, tuple[str, ...]] = COCO_SYNSETS,
) -> dict[str, np.ndarray]:
    """The arrays of ``lexicon.npz`` from an nltk WordNet reader ``wn`` (see the module docstring).

    Args:
        wn: nltk ``WordNetCorpusReader`` (Debian's WordNet 3.0, or a small test WordNet).
        classes: the image model's classes in output order, each with ``wnid`` and ``name``.
        coco_labels: the detector's labels in class order; each must be a key of ``coco_synsets``.
        recipe: ``WORDNET_LEXICON.recipe`` (the limits).

    Raises:
        KeyError: a COCO label without synsets, or a synset name that WordNet does not have.
    """
    max_up, max_down, max_up_group = recipe["max_up"], recipe["max_down"], recipe["max_up_group"]
    max_senses, gloss_max = recipe["max_senses"], recipe["gloss_max_classes"]

    synsets = list(wn.all_synsets("n"))
    index = {s: i for i, s in enumerate(synsets)}
    parents = [[index[p] for p in s.hypernyms() + s.instance_hypernyms()] for s in synsets]
    children: list[list[int]] = [[] for _ in synsets]
    for child, ps in enumerate(parents):
        for p in ps:
            children[p].append(child)
    tops = {index[s] for s in synsets if s.name() in UPPER_LEVELS}

    # class groups: the classes below each synset (tops excluded), at most max_down steps
    class_synsets = [index[wn.synset_from_pos_and_offset("n", int(c["wnid"][1:]))] for c in classes]
    group: dict[int, set[int]] = defaultdict(set)
    for c, s in enumerate(class_synsets):
        for ancestor in _bfs([s], parents, max_down):
            if ancestor not in tops:
                group[ancestor].add(c)

    # full lemma index: key -> [(synset, count)] in sense order, first max_senses senses. nltk's parsed
    # index.noun (lemma -> pos -> offsets in sense order); its public `lemmas()` re-derives the same list
    # through morphy, ~40 s slower over 118k lemmas.
    senses: dict[str, list[tuple[int, int]]] = {}
    for name, by_pos in wn._lemma_pos_offset_map.items():  # noqa: SLF001
        if "n" not in by_pos:
            continue
        row = senses.setdefault(_key(name), [])
        for offset in by_pos["n"]:
            s = wn.synset_from_pos_and_offset("n", offset)
            if len(row) < max_senses and all(index[s] != known for known, _ in row):
                row.append((index[s], sum(lemma.count() for lemma in s.lemmas() if lemma.name().lower() == name)))
    exceptions: dict[str, str] = {}
    for line in wn.open("noun.exc"):
        parts = line.split()
        if len(parts) >= 2:
            exceptions.setdefault(_key(parts[0]), _key(parts[1]))

    def known_lemma(words: list[str]) -> str | None:
        head, last = words[:-1], words[-1]
        for form in base_forms(last, exceptions):
            key = " ".join([*head, form])
            if key in senses:
                return key
        return None

    # gloss words: nouns in the definitions of few classes, and the last words of their names (wall for
    # "stone wall"; not beach for "beach wagon")
    word_classes: dict[str, set[int]] = defaultdict(set)
    for c, s in enumerate(class_synsets):
        heads = [tokenize(lemma.name().replace("_", " "))[-1:] for lemma in synsets[s].lemmas()]
        for token in tokenize(synsets[s].definition()) + [w for head in heads for w in head]:
            if len(token) < 3 or not is_content_word(token):
                continue
            key = known_lemma([token])
            if key is not None:
                word_classes[key].add(c)
    gloss_words = {w: sorted(cs) for w, cs in word_classes.items() if len(cs) <= gloss_max}

    # which synsets link to something
    linked: set[int] = set()
    for a, members in group.items():  # a's group reaches its hyponyms up to max_up steps below it
        limit = max_up if len(members) <= max_up_group else 0
        linked.update(_bfs([a], children, limit))
    coco_rows: list[list[int]] = []
    for label in coco_labels:
        rows = [index[wn.synset(name)] for name in coco_synsets[label]]
        coco_rows.append(rows)
        linked.update(_bfs(rows, children))  # every kind of the label
        linked.update(_bfs(rows, parents, recipe["coco_max_down"]))  # a few steps above it

    kept = sorted(linked)
    new = {old: i for i, old in enumerate(kept)}
    lemma_rows: list[tuple[str, list[tuple[int, int]]]] = []
    for key in sorted(senses):
        row = [(new.get(s, -1), count) for s, count in senses[key]]
        if any(s >= 0 for s, _ in row):
            lemma_rows.append((key, row))
    known = {key for key, _ in lemma_rows} | set(gloss_words)
    exception_lines = [
        f"{w} {b}" for w, b in sorted(exceptions.items()) if b in known and w not in known and " " not in w
    ]

    parent_indptr, parent_index = _csr([[new[p] for p in parents[s] if p in new] for s in kept], np.int32)
    group_indptr, group_class = _csr([sorted(group.get(s, ())) for s in kept], np.int16)
    lemma_indptr, sense_synset = _csr([[s for s, _ in row] for _, row in lemma_rows], np.int32)
    _, sense_count = _csr([[c for _, c in row] for _, row in lemma_rows], np.int32)
    word_indptr, word_class = _csr([gloss_words[w] for w in sorted(gloss_words)], np.int16)
    coco_indptr, coco_synset = _csr([[new[s] for s in rows] for rows in coco_rows], np.int32)
    params = {
        k: recipe[k]
        for k in (
            "max_up",
            "max_down",
            "max_up_group",
            "max_senses",
            "max_phrase_words",
            "coco_max_down",
            "gloss_max_classes",
        )
    }
    return {
        "params": _text([json.dumps(params, sort_keys=True)]),
        "synset_names": _text(synsets[s].name() for s in kept),
        "parent_indptr": parent_indptr,
        "parent_index": parent_index,
        "group_indptr": group_indptr,
        "group_class": group_class,
        "lemmas": _text(key for key, _ in lemma_rows),
        "lemma_indptr": lemma_indptr,
        "sense_synset": sense_synset,
        "sense_count": sense_count,
        "gloss_words": _text(sorted(gloss_words)),
        "gloss_word_indptr": word_indptr,
        "gloss_word_class": word_class,
        "exceptions": _text(exception_lines),
        "coco_labels": _text(coco_labels),
        "coco_indptr": coco_indptr,
        "coco_synset": coco_synset,
        "class_names": _text(c["name"] for c in classes),
        "class_wnids": _text(c["wnid"] for c in classes),
    }


def check_lexicon(
    lexicon: QueryLexicon, max_ambiguous: int = MAX_AMBIGUOUS_CLASS_NAMES, min_coco_names: int = MIN_COCO_NAMES
) -> dict:
    """Check a written lexicon; returns the figures for ``meta.json``.

    Raises:
        RuntimeError: more than ``max_ambiguous`` class names do not expand to their own class first, or fewer
            than ``min_coco_names`` COCO labels' names give that label.
    """
    missed = []
    for c, name in enumerate(lexicon.class_names):
        weights = lexicon.expand(name).class_weights
        if not weights.any() or int(np.argmax(weights)) != c:
            missed.append(name)
    if len(missed) > max_ambiguous:
        raise RuntimeError(f"lexicon check: {len(missed)} class names do not expand to their class, e.g. {missed[:10]}")
    no_label = [label for label in lexicon.coco_labels if label not in lexicon.expand(label).coco]
    if len(lexicon.coco_labels) - len(no_label) < min_coco_names:
        raise RuntimeError(f"lexicon check: {len(no_label)} COCO label names do not give their label: {no_label}")
    return {
        "class_names_to_own_class": len(lexicon.class_names) - len(missed),
        "coco_names_to_own_label": len(lexicon.coco_labels) - len(no_label),
        "coco_names_without_label": no_label,
    }


def _coco_labels(cache_dir: Path) -> list[str]:
    """The detector's labels when it is built (checked against :data:`COCO_SYNSETS`), else the mapping's order."""
    labels_file = DETECTOR_MODEL.directory(cache_dir) / "labels.json"
    if not labels_file.is_file():
        return list(COCO_SYNSETS)
    labels = json.loads(labels_file.read_text())
    if set(labels) != set(COCO_SYNSETS):
        raise RuntimeError(f"detector labels differ from COCO_SYNSETS: {sorted(set(labels) ^ set(COCO_SYNSETS))}")
    return labels


def build_lexicon(cache_dir: Path, force: bool = False, wordnet_dir: Path | None = None) -> Path:
    """Build ``lexicon.npz`` from WordNet 3.0 and the image model's classes; returns its folder.

    Raises:
        ModelNotBuiltError: the image model (its ``classes.json``) is not built.
        FileNotFoundError: Debian's WordNet files are missing.
        RuntimeError: the installed WordNet is not the pinned version, or a check fails.
    """
    from visearch.offline.models.build import build_atomically  # build.py imports this module lazily

    recipe = WORDNET_LEXICON.recipe
    class_dir = IMAGE_MODEL.locate(Path(cache_dir))

    def export(out: Path) -> dict:
        if wordnet_dir is None:
            check_wordnet_version(WORDNET_LEXICON.source_version)
        classes = json.loads((class_dir / "classes.json").read_text())
        with wordnet_reader(wordnet_dir) as wn:
            if wordnet_dir is None and wn.get_version() != "3.0":
                raise RuntimeError(f"expected WordNet 3.0, found {wn.get_version()}")
            arrays = lexicon_arrays(wn, classes, _coco_labels(Path(cache_dir)), recipe)
        path = out / LEXICON_FILE
        np.savez_compressed(path, **arrays)
        lexicon = QueryLexicon.load(path)
        checks = check_lexicon(lexicon) if wordnet_dir is None else {}
        return {
            "synsets": len(lexicon.synset_names),
            "lemmas": int(len(arrays["lemma_indptr"]) - 1),
            "gloss_words": int(len(arrays["gloss_word_indptr"]) - 1),
            "bytes": path.stat().st_size,
            "parity": checks,
        }

    return build_atomically(WORDNET_LEXICON, Path(cache_dir), force, export)
