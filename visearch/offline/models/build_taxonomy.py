"""A coarse-to-fine taxonomy over the ImageNet-1k classes, from WordNet 3.0 hypernyms.

ImageNet classes are WordNet noun synsets (Deng et al. 2009), so WordNet's hypernym ("is a kind of")
relation gives each class a path from broad to specific: entity > physical entity > object > whole >
living thing > organism > animal > chordate > vertebrate > mammal > placental > carnivore > feline >
cat > domestic cat > tabby. :func:`build_taxonomy` turns those paths into a small tree that is useful
to people (``animal > vertebrate > mammal > carnivore > cat > tabby``) and writes it as YAML; the
:class:`visearch.services.classification.taxonomy.Taxonomy` scores every node from the image model's softmax and returns the most specific
confident path.

The build reads WordNet 3.0 from Debian's ``wordnet-base`` files (/usr/share/wordnet) with nltk's
``WordNetCorpusReader`` (build extra; no corpus download; see ``visearch.offline.models.wordnet``) and
the class list from the built image model's ``classes.json``. Rules, in order (``max_levels`` and
``near_chain`` are in ``TAXONOMY_DATA.recipe``):

1. One parent per synset, so the result is a tree (WordNet gives 304 of the 1000 classes several
   paths). Among a synset's hypernyms and instance hypernyms prefer, in order: a physical one (under
   ``physical_entity``; WordNet also files substances under ``abstraction > relation > part``); one
   from the same lexicographer file or from ``noun.Tops`` (keeps beverages under food, not liquid);
   the deepest, i.e. most specific, one (``cat`` rather than ``domestic animal`` for ``domestic
   cat``); the one with more classes below it; the name. ``PARENT_OVERRIDES`` fixes one case.
2. Drop WordNet's abstract upper levels (``UPPER_LEVELS``: entity, physical entity, object, whole,
   living thing, organism, artifact, instrumentality, commodity, ...): they group unrelated things.
3. Near-chains: where a node holds at least ``near_chain`` of its parent's classes (a single child
   is the extreme case), drop the less familiar of the two, by WordNet's SemCor sense counts
   (``mammal`` over ``placental``, ``dog`` over ``canine``); a class is never dropped, so a parent
   with a single class below it goes (``coffee > espresso`` becomes ``espresso``).
4. Depth cap: while some class is deeper than ``max_levels`` levels, drop an inner node on such a
   path, smallest and least familiar group first (leaves x (1 + SemCor count): ``sled dog``, ``toy
   spaniel`` go, ``mammal``, ``carnivore``, ``dog`` stay). Roots are never dropped here.

Roots are what is left at the top: ~34 of them (animal, clothing, container, device, food,
vehicle, ...), a few of them single classes whose whole chain was dropped (pillow, teddy).

A deployment can replace the YAML (``ClassificationSettings.taxonomy_path``), e.g. with a retail tree
whose nodes list the ImageNet classes they own (see :meth:`Taxonomy.load`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import yaml

from visearch.offline.models.build import build_atomically
from visearch.offline.models.wordnet import UPPER_LEVELS, check_wordnet_version, wordnet_reader
from visearch.offline.models.wordnet import wnid as _wnid
from visearch.services.classification.taxonomy import TAXONOMY_FILE, Taxonomy
from visearch.shared.models.registry import IMAGE_MODEL, TAXONOMY_DATA

# Where WordNet's own parent is no use (child synset -> parent synset): "solid food" hangs under
# "matter > solid", away from "food, nutrient" and its beverages.
PARENT_OVERRIDES = {"food.n.02": "food.n.01"}


def prune_tree(
    parent: dict[str, str | None],
    leaves: list[str],
    drop: set[str],
    max_levels: int,
    near_chain: float,
    familiarity: dict[str, int] | None = None,
) -> dict[str, str | None]:
    """Rules 2-4 of the module docstring on a tree given as child -> parent (None for a root).

    Args:
        parent: child id -> parent id (None for a root); every leaf's ancestors must be keys.
        leaves: the class ids; never dropped. A dropped node's children move to its parent.
        drop: ids removed first (rule 2).
        max_levels: most levels on any path (a root is level 1); 1 <= max_levels.
        near_chain: in (0, 1]; an inner node holding at least this share of its parent's leaves
            makes a near-chain with it, and the less familiar of the two is dropped (rule 3).
        familiarity: id -> how familiar the name is (WordNet's SemCor sense counts); default 0.

    Returns the pruned child -> parent map (only the nodes on some leaf's path).
    """
    parent = {k: v for k, v in parent.items()}
    familiarity = familiarity or {}
    fam = lambda n: familiarity.get(n, 0)  # noqa: E731
    leaf_set = set(leaves)

    def remove(node: str) -> None:
        up = parent.pop(node)
        for child, p in list(parent.items()):
            if p == node:
                parent[child] = up

    def leaves_below() -> dict[str, int]:
        below: dict[str, int] = defaultdict(int)
        for leaf in leaves:
            node: str | None = leaf
            while node is not None:
                below[node] += 1
                node = parent[node]
        return below

    for node in [n for n in parent if n in drop and n not in leaf_set]:
        remove(node)
    below = leaves_below()
    for node in [n for n in parent if n not in leaf_set and not below.get(n)]:
        remove(node)  # not on any leaf's path
    while True:  # rule 3: near-chains (a single child is the extreme case), until none is left
        below = leaves_below()
        doomed = set()
        for node, up in parent.items():
            if up is not None and below[node] >= near_chain * below[up]:
                # keep the more familiar name of the two (mammal over placental, dog over canine);
                # a class is never dropped, so a parent with one class below it goes
                doomed.add(up if node in leaf_set or fam(up) < fam(node) else node)
        if not doomed:
            break
        remove(max(doomed, key=lambda n: (below[n], n)))
    while True:  # rule 4: cap the depth
        below = leaves_below()
        depth: dict[str, int] = {}
        for node in parent:
            d, up = 0, parent[node]
            while up is not None:
                d, up = d + 1, parent[up]
            depth[node] = d
        too_deep = [leaf for leaf in leaves if depth[leaf] >= max_levels]
        if not too_deep:
            break
        candidates = set()
        for leaf in too_deep:
            up = parent[leaf]
            while up is not None and parent[up] is not None:
                candidates.add(up)
                up = parent[up]
        # drop small, unfamiliar groups first (sled dog, toy spaniel) and keep the broad, well-known
        # levels (mammal, carnivore, dog); ties: the least informative split
        remove(min(candidates, key=lambda n: (below[n] * (1 + fam(n)), -below[n] / below[parent[n]], n)))
    return parent


def build_taxonomy(cache_dir: Path, force: bool = False) -> Path:
    """Build ``taxonomy.yaml`` from WordNet 3.0 and the image model's classes; returns its folder.

    The folder's ``meta.json`` records the node count per level. Checks before the folder is moved
    into place: every class is a leaf of the tree, no path is deeper than ``max_levels``, and the
    written file loads and maps each class's one-hot probability vector to the path of that class.

    Raises:
        ModelNotBuiltError: the image model (its ``classes.json``) is not built.
        FileNotFoundError: Debian's WordNet files are missing.
        RuntimeError: the installed WordNet is not the pinned version, or a check fails.
    """
    recipe = TAXONOMY_DATA.recipe
    class_dir = IMAGE_MODEL.locate(Path(cache_dir))

    def export(out: Path) -> dict:
        check_wordnet_version(TAXONOMY_DATA.source_version)
        classes = json.loads((class_dir / "classes.json").read_text())
        leaves = [c["wnid"] for c in classes]
        with wordnet_reader() as wn:
            if wn.get_version() != "3.0":
                raise RuntimeError(f"expected WordNet 3.0, found {wn.get_version()}")
            parent_of, lemmas, upper, familiarity = _hypernym_tree(wn, leaves)
        lemmas.update({c["wnid"]: [c["name"]] for c in classes})  # the class names serving shows elsewhere
        pruned = prune_tree(parent_of, leaves, upper, recipe["max_levels"], recipe["near_chain"], familiarity)
        nodes = _ordered_nodes(pruned, lemmas)
        document = {
            "source": f"WordNet 3.0 hypernyms (Debian wordnet-base {TAXONOMY_DATA.source_version}) of the "
            f"{len(leaves)} classes of {IMAGE_MODEL.name}@{IMAGE_MODEL.key}",
            "rules": "visearch.services.classification.taxonomy (module docstring)",
            "classes": leaves,
            "nodes": nodes,
        }
        path = out / TAXONOMY_FILE
        path.write_text(yaml.safe_dump(document, sort_keys=False, width=200, allow_unicode=True))
        levels = _check(path, leaves, recipe["max_levels"])
        return {
            "nodes": len(nodes),
            "classes": len(leaves),
            "nodes_per_level": levels,
            # what the check verified (`models build` prints a build's "parity")
            "parity": {"classes_on_own_path": len(leaves), "levels": len(levels)},
        }

    return build_atomically(TAXONOMY_DATA, Path(cache_dir), force, export)


def _hypernym_tree(
    wn, wnids: list[str]
) -> tuple[dict[str, str | None], dict[str, list[str]], set[str], dict[str, int]]:
    """Rule 1 over every synset on the classes' hypernym paths.

    Returns (child wnid -> parent wnid or None, wnid -> lemma names, wnids of the UPPER_LEVELS met,
    wnid -> familiarity: the summed SemCor counts of its lemmas, from WordNet's cntlist).
    """
    physical = wn.synset("physical_entity.n.01")
    up = lambda s: s.hypernyms() + s.instance_hypernyms()  # noqa: E731
    overrides = {wn.synset(child): wn.synset(p) for child, p in PARENT_OVERRIDES.items()}
    synsets = [wn.synset_from_pos_and_offset("n", int(w[1:])) for w in wnids]
    below: Counter = Counter()
    for s in synsets:
        for ancestor in {s, *s.closure(up)}:
            below[ancestor] += 1
    parent_of: dict[str, str | None] = {}
    lemmas: dict[str, list[str]] = {}
    familiarity: dict[str, int] = {}
    upper: set[str] = set()
    for s in synsets:
        node = s
        while _wnid(node) not in parent_of:
            lemmas[_wnid(node)] = [lemma.name().replace("_", " ") for lemma in node.lemmas()]
            familiarity[_wnid(node)] = sum(lemma.count() for lemma in node.lemmas())
            if node.name() in UPPER_LEVELS:
                upper.add(_wnid(node))
            hypernyms = [overrides[node]] if node in overrides else up(node)
            if not hypernyms:
                parent_of[_wnid(node)] = None
                break
            best = max(
                hypernyms,
                key=lambda h: (
                    h == physical or physical in set(h.closure(up)),
                    h.lexname() in (node.lexname(), "noun.Tops"),
                    h.max_depth(),
                    below[h],
                    h.name(),
                ),
            )
            parent_of[_wnid(node)] = _wnid(best)
            node = best
    return parent_of, lemmas, upper, familiarity


def _ordered_nodes(parent: dict[str, str | None], lemmas: dict[str, list[str]]) -> list[dict]:
    """Nodes depth-first from the roots (children by name), each with id, name, parent, depth.

    A node's name is its first lemma, or the next one where the first repeats its parent's name
    (WordNet's "solid food" is also lemma "food").
    """
    children: dict[str | None, list[str]] = defaultdict(list)
    for child, p in parent.items():
        children[p].append(child)
    nodes: list[dict] = []
    names: dict[str, str] = {}

    def visit(node: str, depth: int) -> None:
        above = names.get(parent[node] or "")
        names[node] = next((n for n in lemmas[node] if n != above), lemmas[node][0])
        nodes.append({"id": node, "name": names[node], "parent": parent[node], "depth": depth})
        for child in sorted(children[node], key=lambda c: (lemmas[c][0].lower(), c)):
            visit(child, depth + 1)

    for root in sorted(children[None], key=lambda c: (lemmas[c][0].lower(), c)):
        visit(root, 0)
    return nodes


def _check(path: Path, leaves: list[str], max_levels: int) -> dict[str, int]:
    """Load the written YAML and check it; returns the node count per depth ("0" = roots)."""
    taxonomy = Taxonomy.load(path, min_score=0.5)
    data = yaml.safe_load(path.read_text())
    has_children = {n["parent"] for n in data["nodes"]}
    inner_classes = [w for w in leaves if w in has_children]
    if inner_classes or set(leaves) - set(taxonomy.ids):
        raise RuntimeError(f"taxonomy check: classes missing or not leaves: {inner_classes[:5]}")
    if any(n["depth"] != int(taxonomy.depths[i]) for i, n in enumerate(data["nodes"])):
        raise RuntimeError("taxonomy check: written depths disagree with the parents")
    if int(taxonomy.depths.max()) >= max_levels:
        raise RuntimeError(f"taxonomy check: a path has {int(taxonomy.depths.max()) + 1} levels > {max_levels}")
    paths = taxonomy.classify_batch(np.eye(len(leaves), dtype=np.float32))
    for wnid, path in zip(leaves, paths):
        if [n.id for n in path] != taxonomy.path_to(wnid):
            raise RuntimeError(f"taxonomy check: one-hot {wnid} does not give its own path")
    return {str(d): int(c) for d, c in sorted(Counter(taxonomy.depths.tolist()).items())}
