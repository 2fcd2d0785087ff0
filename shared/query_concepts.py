"""Text-query understanding: a query's nouns as WordNet concepts, mapped to ImageNet classes and COCO labels.

Text search compares a MiniLM embedding of the query with ConSE image vectors (mixtures of the text
embeddings of each image's top ImageNet classes, ``shared/encoders.py``). A word that is not
an ImageNet class name ("sparrow", "tulip", "seagull") lands wherever MiniLM puts it. WordNet 3.0 knows
where such words sit: a sparrow is a passerine bird, a tulip a vascular plant like a daisy. This module
reads that from the ``WORDNET_LEXICON`` build (``visearch/offline/models/build_lexicon.py``; numpy only, no nltk)
and turns a query into weights over the 1000 ImageNet classes and the 80 COCO labels of the detector.

Method (:meth:`QueryLexicon.expand`):

1. **Words.** Lower-case, split into words (hyphens split; "lady's" keeps its apostrophe). Stop words,
   words about the medium rather than the content (:data:`GENERIC_WORDS`: photo, picture, image, thing,
   ...) and colour words (:data:`ATTRIBUTE_WORDS`; colour is searched by the colour factor) are not
   content words: none of them is a phrase on its own, and no phrase starts or ends with a stop word.
2. **Phrases.** Left to right, the longest run of up to ``max_phrase_words`` (4: "West Highland white
   terrier") words that is a linked WordNet noun lemma, after singularising its last word (noun.exc
   exceptions such as geese -> goose, then WordNet's regular plural rules); a pair of words also matches
   as one compound ("lake shore" -> lakeshore, "wine glasses" -> wineglass).
3. **Senses.** A lemma's first ``max_senses`` (3) WordNet senses, weighted by their SemCor tagged counts
   plus :data:`SENSE_SMOOTHING` (WordNet orders senses by those counts; most lemmas have few or no tagged
   uses, so the smoothing keeps the rarer senses in play without letting them dominate).
4. **Classes.** From each sense, walk up the hypernym graph (hypernyms and instance hypernyms) at most
   ``max_up`` (5) steps. Every synset met at ``u`` steps that has ImageNet classes below it (at most
   ``max_down`` steps) is a *group*: it adds ``exp(-DECAY * u)`` spread evenly over its classes. The sense
   itself counts at ``u = 0``, so "bird" spreads over all 59 bird classes and "goldfinch" is mostly the
   goldfinch class. Abstract tops (entity, object, whole, artifact, organism, ...: ``UPPER_LEVELS``) have no
   groups, and above the sense a group of more than ``max_up_group`` (250) classes (animal, vertebrate,
   instrumentality) is too broad to stand for it. As a group's weight is shared by its classes, narrow groups
   dominate: "sparrow" reaches the 11 passerine classes through passerine (u = 1) and all 59 birds through
   bird (u = 2), and three quarters of the weight goes to the passerines. This is the tree distance of the
   issue (up to a common ancestor, down to the class) with the "down" part replaced by an even share of
   the ancestor's classes: plain path lengths put hen and cock (up 2 to bird, down 1) as close to sparrow
   as the passerines (up 1, down 2-3), and the tulip's nearest classes (daisy, lady's slipper: up 3 to
   vascular plant, down 4-6) beyond any useful maximum distance.
   A sense whose ``weight * exp(-DECAY * u_nearest)`` is below :data:`MIN_SENSE_LINK` is left out.
   **Gloss links** fill in what the tree leaves out: classes whose definition contains the word, or whose
   name ends with it ("lake" -> lakeside, "the shore of a lake"), share ``exp(-DECAY * GLOSS_COST) * (1 -
   s)`` where ``s`` is the phrase's tree strength (below). A phrase's vector is normalised to sum 1.
5. **Mixing.** The query's class weights are the phrases' vectors, each weighted by its strength, summed
   and normalised: "man riding a horse" is mostly horse classes (strength 0.98), a little person (man:
   0.26, via three person classes) and gloss neighbours of "riding" (0.12). Phrases below
   :data:`MIN_PHRASE_STRENGTH` are left out of the class weights.
6. **COCO labels.** Each detector label maps to one or more synsets (hand-written data in the build). A
   sense *is* a label when the label's synset is the sense or one of its ancestors (sparrow -> bird, doctor
   -> person): the sense's weight; a sense a few steps above a label's synset (animal above dog) gives its
   weight times ``exp(-COCO_DOWN_DECAY * steps)``, up to ``coco_max_down`` (4) steps. A phrase's label
   weight is the sum over its senses (at most 1); the query's is the largest over its phrases; weights below
   :data:`MIN_COCO_WEIGHT` are dropped.

A phrase's **strength** is the sense-weighted ``exp(-DECAY * u)`` of its nearest group (1: it names a class
or a group of classes; 0.5: the parent names one; 0.12: three steps up or a gloss link only). The query's
``strength`` is the mean of its phrases' strengths weighted by their share of the class weights, and its
``coverage`` the share of its content words that are in a linked phrase. Callers decide from these two how
much the class mixture should count against the query's own embedding.

The structural limits (``max_up``, ``max_down``, ``max_up_group``, ``max_senses``, ``max_phrase_words``,
``coco_max_down``, ``gloss_max_classes``) are in ``WORDNET_LEXICON.recipe``: they decide what the build
keeps. The weights below only shape the scores and are read here, so changing them needs no rebuild.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visearch.shared.config import ModelSettings
from visearch.shared.models.registry import WORDNET_LEXICON

LEXICON_FILE = "lexicon.npz"

# Each step up the hypernym tree halves a group's weight (exp(-0.7) = 0.50): the parent group of the query
# (sparrow -> passerine) counts half of an exact class, the grandparent (-> bird) a quarter. Share of the
# expected classes on the unit-test queries: 0.5: sparrow -> passerines 0.74, pet dog -> dogs 0.69; 0.7: 0.76,
# 0.81; 1.0: 0.78, 0.94, but then a group three steps up has strength exp(-3) = 0.05 < MIN_PHRASE_STRENGTH and
# tulip (-> daisy, lady's slipper) and seagull (-> seabirds) map to nothing.
DECAY = 0.7
# A gloss link counts like a group three steps up (weight exp(-2.1) = 0.12): a definition that mentions a
# word is weaker evidence than the hypernym tree, but it is the only link for words WordNet files away
# from every class (lake, ocean), where it then carries the whole phrase.
GLOSS_COST = 3.0
# Added to each sense's SemCor count before weighting: a lemma whose senses were never tagged (sunset: 0,
# 0, 0) weighs them equally; one with counts (car: 71, 2, 0) keeps the first sense at ~95 %.
SENSE_SMOOTHING = 1.0
# A sense above a COCO label's synset gives that label exp(-0.35 * steps): vehicle (4 steps above car)
# 0.25, animal (2 above dog through domestic animal) 0.50. Half the class decay: a label is broad already.
COCO_DOWN_DECAY = 0.35
# A sense whose weight times its link strength is below this adds nothing to the classes: a rare sense with a far
# link (lake: its two pigment senses, 1 in 6 each, reach toilet tissue through "material" three steps up: 0.02)
# or an untagged person sense of an animal word (dog -> frump -> person: 0.01).
MIN_SENSE_LINK = 0.05
# A phrase whose strength (see the module docstring) is below this does not enter the class weights: about a
# group four steps up, or a rare sense's link (galaxy: only its 1-in-5 plant sense "galax" reaches a class, at
# strength 0.05, and would map the word to daisies). Gloss-only and three-steps-up links (0.12) pass.
MIN_PHRASE_STRENGTH = 0.1
# COCO label weights below this are dropped: an untagged sense's faint link (geese -> goose.n.03, "a man who is
# a stupid incompetent fool" -> person: 1 in 7 of the sense weight; pet -> darling -> person: 1 in 5).
MIN_COCO_WEIGHT = 0.25
# Words of a query that are read: a longer text is a document, not a query (the cost is linear in words).
MAX_QUERY_WORDS = 64
# Phrase results are cached per lemma (queries repeat words); entries, least recently used dropped first.
CACHE_SIZE = 4096

# Function words: never content, never the first or last word of a phrase (WordNet has nouns for many of
# them: "a" (angstrom), "in" (inch), "it" (information technology), "be" (beryllium), "on", "do").
STOP_WORDS = frozenset(
    """
a an the this that these those some any each every all both no not none other another such what which who
whom whose where when why how i me my mine we us our ours you your yours he him his she her hers it its they
them their theirs myself yourself himself herself itself ourselves themselves one ones
am is are was were be been being have has had having do does did doing will would shall should can could may
might must ought
and or but nor so yet if then than as of at by for with without within from to into onto in on off over under
above below up down out about around across along among between through during before after behind beside
besides near next against toward towards upon via per like unlike inside outside beneath beyond
very too more most less least much many few several lots lot just only also even still again ever never here
there now then please show find me give get looking look see
""".split()
)
# Words about the medium or too generic to search by: they name no content of an image.
GENERIC_WORDS = frozenset(
    """
photo photograph photography picture pic pics image images img snapshot shot shots view scene thing things
object objects something anything everything stuff item items kind kinds type types sort style background
foreground closeup colour color colours colors shape wallpaper illustration
""".split()
)
# Colour words: searched by the colour factor (shared/colour.py). As nouns they mostly name the colour, and
# their other senses mislead (white: a white person; red: a communist). Compounds ("black swan", "red
# wine", "golden retriever") are still matched as phrases. Not "orange" (a fruit and a COCO label).
ATTRIBUTE_WORDS = frozenset(
    """
red yellow green blue purple pink brown black white grey gray beige navy teal turquoise magenta cyan maroon
crimson scarlet khaki colourful colorful multicoloured multicolored dark light bright pale
""".split()
)
# WordNet's regular noun endings (morphy's detachment rules, in its order).
PLURAL_RULES = (
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``: letters and digits, hyphens split, an apostrophe ending kept (lady's)."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def is_content_word(word: str) -> bool:
    """A word that can name content: not a stop, generic or colour word, not a number or a single letter."""
    return (
        len(word) > 1
        and not word.isdigit()
        and word not in STOP_WORDS
        and word not in GENERIC_WORDS
        and word not in ATTRIBUTE_WORDS
    )


def base_forms(word: str, exceptions: dict[str, str]) -> list[str]:
    """Candidate lemmas for a (possibly plural or possessive) noun, the word itself first.

    Order: the word; its noun.exc base (geese -> goose); each regular rule's result (sparrows -> sparrow,
    boxes -> box, berries -> berry); without a possessive "'s". The caller takes the first one it knows.
    """
    forms = [word]
    if word in exceptions:
        forms.append(exceptions[word])
    for suffix, ending in PLURAL_RULES:
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            forms.append(word[: -len(suffix)] + ending)
    if word.endswith("'s"):
        forms.append(word[:-2])
    return forms


def find_phrases(
    tokens: list[str], lookup: Callable[[list[str]], str | None], max_words: int
) -> list[tuple[int, int, str]]:
    """The longest known phrases of ``tokens``, left to right, as (start, word count, lemma).

    ``lookup(words)`` returns the lemma a run of words reads as, or None. A phrase neither starts nor ends
    with a stop word; a one-word phrase must be a content word (:func:`is_content_word`), while a longer one
    may start with a generic word ("picture frame").
    """
    found = []
    i = 0
    while i < len(tokens):
        step = 1
        if tokens[i] not in STOP_WORDS:
            for n in range(min(max_words, len(tokens) - i), 0, -1):
                words = tokens[i : i + n]
                if (n == 1 and not is_content_word(words[0])) or (n > 1 and words[-1] in STOP_WORDS):
                    continue
                lemma = lookup(words)
                if lemma is not None:
                    found.append((i, n, lemma))
                    step = n
                    break
        i += step
    return found


@dataclass(frozen=True)
class ConceptMatch:
    """One phrase of the query and what it linked to.

    ``phrase``: the query's words it covers (lower case); ``lemma``: the WordNet lemma they were read as
    ("sparrow" for "sparrows"); ``senses``: (synset name, weight) of the senses that link to its classes or
    labels, the weight being the sense's share of the lemma (over all its first ``max_senses`` senses);
    ``strength``: how directly it reaches classes (1 = a class or group of classes, ``exp(-DECAY * u)`` for
    the nearest group ``u`` steps up, 0 = no class: a COCO-only link); ``classes``: its top classes as
    (class name, weight), at most 5; ``coco``: its COCO labels with weights in [MIN_COCO_WEIGHT, 1].
    """

    phrase: str
    lemma: str
    senses: tuple[tuple[str, float], ...]
    strength: float
    classes: tuple[tuple[str, float], ...]
    coco: dict[str, float] = field(default_factory=dict)


@dataclass
class QueryConcepts:
    """What :meth:`QueryLexicon.expand` understood of a query.

    ``class_weights``: float32 [1000] over the image model's ImageNet classes (its output order), summing to
    1, or all zero when no phrase links to a class. ``coco``: COCO label -> weight in [MIN_COCO_WEIGHT, 1],
    heaviest first. ``matches``: the linked phrases, in query order. ``coverage``: linked content words /
    content words, in [0, 1] (0 with none). ``strength``: in [0, 1], the phrases' strengths weighted by their
    share of the class weights (0 when no phrase reaches a class). ``class_names``: the lexicon's class
    names, for :meth:`top_classes`.
    """

    class_weights: np.ndarray
    coco: dict[str, float]
    matches: list[ConceptMatch]
    coverage: float
    strength: float
    class_names: tuple[str, ...] = ()

    @property
    def recognised(self) -> bool:
        """True when some phrase linked to a class or a COCO label."""
        return bool(self.matches)

    def top_classes(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` heaviest classes as (name, weight), heaviest first (empty when nothing linked)."""
        order = np.argsort(-self.class_weights, kind="stable")[:k]
        return [(self.class_names[i], float(self.class_weights[i])) for i in order if self.class_weights[i] > 0]


@dataclass
class _Phrase:
    vector: np.ndarray | None  # float32 [classes], sums to 1; None when no class is reached
    strength: float
    coco: dict[int, float]
    senses: tuple[tuple[str, float], ...]


def lexicon_strings(arrays: Mapping[str, np.ndarray], key: str) -> list[str]:
    """A string list of the lexicon arrays (UTF-8 bytes joined by newlines, as the build writes them)."""
    text = bytes(arrays[key]).decode("utf-8")
    return text.split("\n") if text else []


def lexicon_path(models: ModelSettings | None = None) -> Path:
    """``lexicon.npz`` of the ``WORDNET_LEXICON`` build in the model cache.

    Raises:
        ModelNotBuiltError: the lexicon is not built (run ``visearch models build``).
    """
    return WORDNET_LEXICON.locate((models or ModelSettings()).cache_dir) / LEXICON_FILE


class QueryLexicon:
    """The WordNet lexicon of the ``WORDNET_LEXICON`` build, and query expansion over it.

    Build with :meth:`from_cache` (or :meth:`from_arrays` over the arrays the build writes). Thread-safe:
    the phrase cache is behind a lock; everything else is read-only after construction.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        def strings(key: str) -> list[str]:
            return lexicon_strings(arrays, key)

        params = json.loads(bytes(arrays["params"]).decode("utf-8"))
        self.params = params
        self.max_up = int(params["max_up"])
        self.max_up_group = int(params["max_up_group"])
        self.max_phrase_words = int(params["max_phrase_words"])
        self.coco_max_down = int(params["coco_max_down"])
        self.synset_names = strings("synset_names")
        self.class_names = tuple(strings("class_names"))
        self.class_wnids = strings("class_wnids")
        self.coco_labels = strings("coco_labels")
        n_classes = len(self.class_names)
        self.n_classes = n_classes

        indptr, index = arrays["parent_indptr"], arrays["parent_index"]
        self._parents = [tuple(index[indptr[i] : indptr[i + 1]].tolist()) for i in range(len(self.synset_names))]
        self._group_indptr = arrays["group_indptr"].astype(np.int64)
        self._group_class = arrays["group_class"].astype(np.intp)

        lemmas = strings("lemmas")
        li = arrays["lemma_indptr"]
        self._lemma_index = {lemma: i for i, lemma in enumerate(lemmas)}
        self._lemma_senses = (li, arrays["sense_synset"], arrays["sense_count"])
        words = strings("gloss_words")
        wi, wc = arrays["gloss_word_indptr"], arrays["gloss_word_class"]
        self._gloss_words = {w: wc[wi[i] : wi[i + 1]].astype(np.intp) for i, w in enumerate(words)}
        self._exceptions = dict(line.split(" ", 1) for line in strings("exceptions"))

        ci, cs = arrays["coco_indptr"], arrays["coco_synset"]
        self._coco_is: dict[int, list[int]] = {}  # synset -> labels it is (a label's synsets)
        for label in range(len(self.coco_labels)):
            for s in cs[ci[label] : ci[label + 1]].tolist():
                self._coco_is.setdefault(s, []).append(label)
        self._coco_above: dict[int, dict[int, int]] = {}  # synset -> {label: steps above the label's synset}
        for s, labels in self._coco_is.items():
            for ancestor, steps in self._ancestors(s, self.coco_max_down).items():
                for label in labels:
                    known = self._coco_above.setdefault(ancestor, {})
                    known[label] = min(known.get(label, steps), steps)
        self._cache: OrderedDict[str, _Phrase] = OrderedDict()
        self._cache_lock = threading.Lock()
        if len(self._group_indptr) != len(self.synset_names) + 1 or n_classes == 0:
            raise ValueError("lexicon arrays are inconsistent")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> QueryLexicon:
        """A lexicon over the arrays of a build (``lexicon.npz``'s contents)."""
        return cls(arrays)

    @classmethod
    def load(cls, path: Path) -> QueryLexicon:
        """Read a ``lexicon.npz``."""
        with np.load(path, allow_pickle=False) as data:
            return cls({key: data[key] for key in data.files})

    @classmethod
    def from_cache(cls, models: ModelSettings | None = None) -> QueryLexicon:
        """The lexicon built into the model cache by ``visearch models build``.

        Raises:
            ModelNotBuiltError: the lexicon is not built.
        """
        return cls.load(lexicon_path(models))

    # ------------------------------------------------------------------------------------------- lookup

    def lemma(self, words: list[str]) -> str | None:
        """The lexicon lemma a run of words reads as, or None: the first candidate that links to a class or a COCO
        label. Candidates: the words with the last one singularised (:func:`base_forms`), then for a pair the
        compound (sea gull -> seagull, lake shore -> lakeshore)."""
        head, last = words[:-1], words[-1]
        candidates = [" ".join([*head, form]) for form in base_forms(last, self._exceptions)]
        if len(words) == 2:
            candidates += base_forms(words[0] + last, self._exceptions)
        for key in candidates:
            if key in self._lemma_index or (" " not in key and key in self._gloss_words):
                phrase = self._phrase(key)
                if phrase.vector is not None or phrase.coco:
                    return key
        return None

    def _ancestors(self, synset: int, limit: int | None = None) -> dict[int, int]:
        """Ancestors of ``synset`` (itself at 0) with their fewest steps up, to at most ``limit`` steps."""
        seen = {synset: 0}
        frontier = [synset]
        steps = 0
        while frontier and (limit is None or steps < limit):
            steps += 1
            nxt = []
            for node in frontier:
                for parent in self._parents[node]:
                    if parent not in seen:
                        seen[parent] = steps
                        nxt.append(parent)
            frontier = nxt
        return seen

    def _phrase(self, lemma: str) -> _Phrase:
        with self._cache_lock:
            cached = self._cache.get(lemma)
            if cached is not None:
                self._cache.move_to_end(lemma)
                return cached
        vector = np.zeros(self.n_classes, dtype=np.float64)
        strength = 0.0  # expected over the senses: exp(-DECAY * steps up to the nearest class group)
        coco: dict[int, float] = {}
        sense_labels: list[tuple[int, float, bool, set[int]]] = []  # synset, weight, used for classes, COCO labels
        index = self._lemma_index.get(lemma)
        if index is not None:
            indptr, synsets, counts = self._lemma_senses
            lo, hi = int(indptr[index]), int(indptr[index + 1])
            weights = counts[lo:hi].astype(np.float64) + SENSE_SMOOTHING
            weights /= weights.sum()
            for synset, weight in zip(synsets[lo:hi].tolist(), weights.tolist()):
                if synset < 0:  # a sense that links to nothing: it keeps its share, which goes nowhere
                    continue
                best = 0.0
                is_labels: set[int] = set()
                sense_vector = np.zeros(self.n_classes, dtype=np.float64)
                for node, up in self._ancestors(synset).items():
                    if up <= self.max_up:
                        lo_g, hi_g = self._group_indptr[node], self._group_indptr[node + 1]
                        size = hi_g - lo_g
                        if size and (up == 0 or size <= self.max_up_group):
                            gain = math.exp(-DECAY * up)
                            sense_vector[self._group_class[lo_g:hi_g]] += gain / size
                            best = max(best, gain)
                    is_labels.update(self._coco_is.get(node, ()))
                used = weight * best >= MIN_SENSE_LINK
                if used:
                    vector += weight * sense_vector
                    strength += weight * best
                for label in is_labels:  # the sense is the label's synset or a kind of it
                    coco[label] = coco.get(label, 0.0) + weight
                for label, steps in self._coco_above.get(synset, {}).items():
                    if label not in is_labels:  # the sense is a few steps above the label's synset
                        coco[label] = coco.get(label, 0.0) + weight * math.exp(-COCO_DOWN_DECAY * steps)
                sense_labels.append((synset, weight, used, is_labels | set(self._coco_above.get(synset, ()))))
        if " " not in lemma and lemma in self._gloss_words:
            # gloss links fill in what the tree leaves out: full weight for a word the tree does not place
            # (lake), none for one it names exactly (animal: its gloss links would crowd out its 398 classes);
            # the tree part and the gloss part of the vector each weigh by their strength
            classes = self._gloss_words[lemma]
            gain = math.exp(-DECAY * GLOSS_COST) * (1.0 - strength)
            if gain > 0:
                total = vector.sum()
                if total > 0:
                    vector *= strength / total
                vector[classes] += gain / len(classes)
                strength += gain
        total = vector.sum()
        keep = total > 0 and strength >= MIN_PHRASE_STRENGTH
        coco = {k: min(v, 1.0) for k, v in coco.items() if v >= MIN_COCO_WEIGHT}
        senses = tuple(
            (self.synset_names[synset], round(weight, 4))
            for synset, weight, used, labels in sense_labels
            if (used and keep) or labels & coco.keys()
        )
        result = _Phrase((vector / total).astype(np.float32) if keep else None, strength, coco, senses)
        with self._cache_lock:
            self._cache[lemma] = result
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    # ------------------------------------------------------------------------------------------ expand

    def expand(self, text: str) -> QueryConcepts:
        """Map a query text to ImageNet class weights and COCO labels (see the module docstring)."""
        tokens = tokenize(text)[:MAX_QUERY_WORDS]
        content = [is_content_word(t) for t in tokens]
        n_content = sum(content)
        weights = np.zeros(self.n_classes, dtype=np.float32)
        coco: dict[int, float] = {}
        matches: list[ConceptMatch] = []
        strengths: list[float] = []
        covered = 0
        for i, n, lemma in find_phrases(tokens, self.lemma, self.max_phrase_words):
            phrase = self._phrase(lemma)  # cached by lemma(): linked
            covered += sum(content[i : i + n])
            if phrase.vector is not None:  # each phrase's share of the mixture is its strength
                weights += phrase.strength * phrase.vector
                strengths.append(phrase.strength)
            for label, w in phrase.coco.items():
                coco[label] = max(coco.get(label, 0.0), w)
            vector = phrase.vector
            classes: tuple[tuple[str, float], ...] = ()
            if vector is not None:
                top = np.argsort(-vector, kind="stable")[:5]
                classes = tuple((self.class_names[j], round(float(vector[j]), 4)) for j in top)
            matches.append(
                ConceptMatch(
                    phrase=" ".join(tokens[i : i + n]),
                    lemma=lemma,
                    senses=phrase.senses,
                    strength=round(phrase.strength if phrase.vector is not None else 0.0, 4),
                    classes=classes,
                    coco=self._labels(phrase.coco),
                )
            )
        total = float(weights.sum())
        if total > 0:
            weights /= total
        return QueryConcepts(
            class_weights=weights,
            coco=self._labels(coco),
            matches=matches,
            coverage=covered / n_content if n_content else 0.0,
            # the mixture's strength: each phrase's strength weighted by its share of the class weights
            strength=sum(x * x for x in strengths) / sum(strengths) if strengths else 0.0,
            class_names=self.class_names,
        )

    def _labels(self, weights: dict[int, float]) -> dict[str, float]:
        return {self.coco_labels[k]: round(v, 4) for k, v in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))}
