"""Read Debian's WordNet 3.0 dict files with nltk at build time (the ``build`` extra; no corpus download).

Shared by the builds that derive data from WordNet: the classification taxonomy
(``services/classification/taxonomy.py``) and the query lexicon (``visearch/offline/models/build_lexicon.py``).
Serving code never imports this module.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
"""Debian ``wordnet-base``: data.noun, index.noun, noun.exc, cntlist.rev, ..."""

# WordNet's abstract upper levels (synset names): they sit above nearly every class of a branch
# and mean nothing to a user ("whole", "instrumentality"). The taxonomy drops them
# (services/classification/taxonomy.py, rule 2); the query lexicon forms no class groups at them.
UPPER_LEVELS = frozenset(
    {
        "entity.n.01",
        "physical_entity.n.01",
        "abstraction.n.06",
        "object.n.01",
        "whole.n.02",
        "living_thing.n.01",
        "organism.n.01",
        "causal_agent.n.01",
        "matter.n.03",
        "substance.n.01",
        "substance.n.07",
        "part.n.01",
        "relation.n.01",
        "artifact.n.01",
        "instrumentality.n.03",
        "psychological_feature.n.01",
        "attribute.n.02",
        "thing.n.12",
        "commodity.n.01",
        "consumer_goods.n.01",
    }
)

# WordNet 3.0's lexicographer files in file-number order, as listed in lexnames(5WN). nltk's reader
# needs them as a ``lexnames`` file, which Debian ships only inside that man page.
_LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_POS_CODE = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def installed_debian_version(package: str) -> str | None:
    """The installed version of a Debian package (``dpkg-query``), or None (not installed, or not Debian)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:  # not a Debian system
        return None
    return out.stdout.strip() or None


def check_wordnet_version(pinned: str) -> None:
    """Raise RuntimeError when Debian's ``wordnet-base`` is installed at another version than ``pinned``."""
    installed = installed_debian_version("wordnet-base")
    if installed is not None and installed != pinned:
        raise RuntimeError(f"wordnet-base {installed} is installed but the recipe pins {pinned}")


@contextlib.contextmanager
def wordnet_reader(directory: Path | None = None) -> Iterator:
    """nltk's WordNet reader over a staged copy of Debian's dict files plus the ``lexnames`` file it needs.

    ``directory`` defaults to :data:`WORDNET_DIR` (tests pass a tiny hand-written WordNet).
    nltk 3.9+ only opens corpus files under its data path (and not under a shared /tmp), so the
    staging folder is on ``nltk.data.path`` while the reader is in use. The reader's WordNet-version
    mapping (used only for the multilingual OMW data) would look for nltk's downloaded corpus: skipped.

    Raises:
        FileNotFoundError: no ``data.noun`` in the folder (Debian's wordnet-base is not installed).
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # noqa: ARG002 - no OMW mapping needed
            return None

    source = Path(directory) if directory is not None else WORDNET_DIR
    if not (source / "data.noun").is_file():
        raise FileNotFoundError(f"{source}/data.noun missing: install Debian's wordnet-base (make setup)")
    with tempfile.TemporaryDirectory(prefix="wordnet-") as tmp:
        staging = str(Path(tmp).resolve())
        for item in source.iterdir():
            if item.is_file():
                shutil.copyfile(item, Path(staging) / item.name)
        (Path(staging) / "lexnames").write_text(
            "".join(f"{i:02d}\t{name}\t{_POS_CODE[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))
        )
        nltk.data.path.append(staging)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "multilingual functions are not available"
                yield _Reader(staging, None)
        finally:
            nltk.data.path.remove(staging)


def wnid(synset) -> str:
    """ImageNet's id of a noun synset: ``n`` + its 8-digit data.noun offset (``n01530575``)."""
    return f"n{synset.offset():08d}"
