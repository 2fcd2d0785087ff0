"""WordNet query understanding (shared/query_concepts.py) and its lexicon build (visearch/offline/models/build_lexicon.py).

The first part builds a lexicon from a tiny hand-made WordNet (a fake of the nltk reader's API), so the build
and the expansion run without nltk's files or any model. The second part (marker ``models``) checks the
queries of issue 16 against the lexicon built into the model cache by ``visearch models build``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from visearch.offline.models.build_lexicon import COCO_SYNSETS, check_lexicon, lexicon_arrays
from visearch.shared.config import ModelSettings
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.models.registry import IMAGE_MODEL, WORDNET_LEXICON
from visearch.shared.query_concepts import QueryLexicon, base_forms, find_phrases, is_content_word, tokenize

# ------------------------------------------------------------------------------------------ a tiny WordNet


class FakeLemma:
    def __init__(self, name: str, count: int) -> None:
        self._name, self._count = name, count

    def name(self) -> str:
        return self._name

    def count(self) -> int:
        return self._count


class FakeSynset:
    def __init__(
        self, name: str, offset: int, definition: str, lemmas: list[tuple[str, int]], hypernyms: list[FakeSynset]
    ) -> None:
        self._name, self._offset, self._definition = name, offset, definition
        self._lemmas = [FakeLemma(n, c) for n, c in lemmas]
        self._hypernyms = hypernyms

    def name(self) -> str:
        return self._name

    def offset(self) -> int:
        return self._offset

    def definition(self) -> str:
        return self._definition

    def lemmas(self) -> list[FakeLemma]:
        return self._lemmas

    def hypernyms(self) -> list[FakeSynset]:
        return self._hypernyms

    def instance_hypernyms(self) -> list[FakeSynset]:
        return []


class FakeWordNet:
    """The part of nltk's WordNetCorpusReader that the lexicon build uses, over a few synsets."""

    def __init__(self) -> None:
        self._synsets: list[FakeSynset] = []
        self._lemma_pos_offset_map: dict[str, dict[str, list[int]]] = {}

    def add(self, name: str, parents: list[str], lemmas: list[tuple[str, int]], definition: str = "") -> None:
        synset = FakeSynset(name, 1000 + len(self._synsets), definition, lemmas, [self.synset(p) for p in parents])
        self._synsets.append(synset)
        for lemma, _ in lemmas:  # sense order: the order synsets are added
            self._lemma_pos_offset_map.setdefault(lemma.lower(), {}).setdefault("n", []).append(synset.offset())

    def all_synsets(self, pos: str):
        assert pos == "n"
        return iter(self._synsets)

    def synset(self, name: str) -> FakeSynset:
        return next(s for s in self._synsets if s.name() == name)

    def synset_from_pos_and_offset(self, pos: str, offset: int) -> FakeSynset:
        return next(s for s in self._synsets if s.offset() == offset)

    def open(self, filename: str):
        assert filename == "noun.exc"
        return io.StringIO("geese goose\nmice mouse\n")


def tiny_wordnet() -> FakeWordNet:
    wn = FakeWordNet()
    wn.add("entity.n.01", [], [("entity", 0)])
    wn.add("object.n.01", ["entity.n.01"], [("object", 5)])  # an abstract top: no class group
    wn.add("animal.n.01", ["object.n.01"], [("animal", 20)])
    wn.add("bird.n.01", ["animal.n.01"], [("bird", 10)])
    wn.add("passerine.n.01", ["bird.n.01"], [("passerine", 0)])
    wn.add("finch.n.01", ["passerine.n.01"], [("finch", 0)])
    wn.add("goldfinch.n.01", ["finch.n.01"], [("goldfinch", 1)], "small finch with yellow wings")
    wn.add("junco.n.01", ["finch.n.01"], [("junco", 0)], "small North American finch")
    wn.add("sparrow.n.01", ["passerine.n.01"], [("sparrow", 1)], "small dull bird")
    wn.add("ostrich.n.01", ["bird.n.01"], [("ostrich", 0)], "fast flightless bird")
    wn.add("hen.n.01", ["bird.n.01"], [("hen", 2)], "adult female chicken")
    wn.add("goose.n.01", ["bird.n.01"], [("goose", 3)], "web-footed bird")
    wn.add("dog.n.01", ["animal.n.01"], [("dog", 40)])
    wn.add("beagle.n.01", ["dog.n.01"], [("beagle", 0)], "small short-legged smooth-coated hound")
    wn.add("person.n.01", ["object.n.01"], [("person", 30)])
    wn.add("frump.n.01", ["person.n.01"], [("frump", 0), ("dog", 0)], "a dull unattractive woman")
    wn.add("diver.n.01", ["person.n.01"], [("diver", 0), ("scuba diver", 0)], "someone who swims under water")
    wn.add("plant.n.01", ["object.n.01"], [("plant", 5)])
    wn.add("flower.n.01", ["plant.n.01"], [("flower", 4)])
    wn.add("daisy.n.01", ["flower.n.01"], [("daisy", 0)], "flower with white rays")
    wn.add("bulbous_plant.n.01", ["plant.n.01"], [("bulbous_plant", 0)])
    wn.add("tulip.n.01", ["bulbous_plant.n.01"], [("tulip", 1)])
    wn.add("shore.n.01", ["object.n.01"], [("shore", 5)])
    wn.add("lakeside.n.01", ["shore.n.01"], [("lakeside", 0), ("lakeshore", 0)], "the shore of a lake")
    wn.add("seashore.n.01", ["shore.n.01"], [("seashore", 0), ("coast", 2)], "the shore of a sea or ocean")
    wn.add("lake.n.01", ["object.n.01"], [("lake", 3)])
    wn.add("vehicle.n.01", ["object.n.01"], [("vehicle", 4)])
    wn.add("car.n.01", ["vehicle.n.01"], [("car", 9)])
    wn.add("sports_car.n.01", ["car.n.01"], [("sports_car", 0)], "a fast car")
    wn.add("cab.n.01", ["car.n.01"], [("cab", 1), ("taxi", 1)], "a car driven by a hired driver")
    wn.add("photograph.n.01", ["object.n.01"], [("photograph", 3), ("photo", 2)])
    return wn


CLASSES = [
    ("goldfinch.n.01", "goldfinch"),
    ("junco.n.01", "junco"),
    ("ostrich.n.01", "ostrich"),
    ("hen.n.01", "hen"),
    ("goose.n.01", "goose"),
    ("beagle.n.01", "beagle"),
    ("diver.n.01", "scuba diver"),
    ("daisy.n.01", "daisy"),
    ("lakeside.n.01", "lakeside"),
    ("seashore.n.01", "seashore"),
    ("sports_car.n.01", "sports car"),
    ("cab.n.01", "cab"),
]
RECIPE = {
    "max_up": 5,
    "max_down": 10,
    "max_up_group": 5,
    "max_senses": 3,
    "max_phrase_words": 4,
    "coco_max_down": 4,
    "gloss_max_classes": 3,
}
TINY_COCO = {"person": ("person.n.01",), "bird": ("bird.n.01",), "dog": ("dog.n.01",), "car": ("car.n.01",)}


@pytest.fixture(scope="module")
def tiny() -> QueryLexicon:
    wn = tiny_wordnet()
    classes = [{"wnid": f"n{wn.synset(s).offset():08d}", "name": name} for s, name in CLASSES]
    arrays = lexicon_arrays(wn, classes, list(TINY_COCO), RECIPE, TINY_COCO)
    return QueryLexicon.from_arrays(arrays)


def share(lexicon: QueryLexicon, weights: np.ndarray, names: set[str]) -> float:
    return float(sum(w for n, w in zip(lexicon.class_names, weights) if n in names))


def test_words_and_forms():
    assert tokenize("Lady’s slipper, T-shirts & 3 dogs!") == ["lady's", "slipper", "t", "shirts", "3", "dogs"]
    assert base_forms("geese", {"geese": "goose"})[:2] == ["geese", "goose"]
    assert "sparrow" in base_forms("sparrows", {}) and "berry" in base_forms("berries", {})
    assert "box" in base_forms("boxes", {}) and "dog" in base_forms("dog's", {})
    assert not any(map(is_content_word, ["a", "of", "photo", "picture", "image", "thing", "red", "white", "7", "x"]))
    assert is_content_word("sparrow") and is_content_word("orange")  # a fruit and a COCO label, not a colour word
    known = {"hot dog", "dog", "stone wall", "picture frame"}
    lookup = lambda words: " ".join(words) if " ".join(words) in known else None  # noqa: E731
    assert find_phrases(tokenize("a hot dog by a stone wall"), lookup, 3) == [(1, 2, "hot dog"), (5, 2, "stone wall")]
    assert find_phrases(tokenize("picture frame"), lookup, 3) == [(0, 2, "picture frame")]  # generic word inside
    assert find_phrases(tokenize("of dog"), lambda w: "of dog" if w == ["of", "dog"] else lookup(w), 3) == [
        (1, 1, "dog")
    ]  # a phrase never starts with a stop word


def test_build_keeps_what_links(tiny):
    names = set(tiny.synset_names)
    assert {"sparrow.n.01", "tulip.n.01", "goldfinch.n.01", "frump.n.01"} <= names
    assert "lake.n.01" not in names  # below the abstract top only: no class group, no COCO label
    assert "lake" in tiny._gloss_words  # but "lake" is in lakeside's gloss
    assert tiny.params["max_up"] == 5 and tiny.n_classes == len(CLASSES)


def test_narrow_groups_dominate_and_plurals_resolve(tiny):
    sparrow = tiny.expand("sparrow")
    assert share(tiny, sparrow.class_weights, {"goldfinch", "junco"}) > 0.6  # passerines, not ostrich or hen
    assert sparrow.class_weights.sum() == pytest.approx(1.0)
    assert sparrow.coco == {"bird": 1.0}
    assert sparrow.coverage == 1.0 and sparrow.strength == pytest.approx(np.exp(-0.7))  # passerine is 1 step up
    assert np.array_equal(tiny.expand("sparrows").class_weights, sparrow.class_weights)
    assert tiny.expand("geese").matches[0].lemma == "goose"  # noun.exc
    assert tiny.expand("geese").top_classes(1)[0][0] == "goose"


def test_a_class_ancestor_spreads_over_its_classes_and_coco_above(tiny):
    bird = tiny.expand("birds").class_weights
    birds = {"goldfinch", "junco", "ostrich", "hen", "goose"}
    # animal, one step up, has 6 classes: more than max_up_group (5), too broad to stand for "bird"
    assert share(tiny, bird, birds) == pytest.approx(1.0)
    assert max(bird[:5]) / min(bird[:5]) < 3  # roughly even over the five bird classes
    animal = tiny.expand("animal")  # but the query "animal" itself spreads over all its classes
    assert share(tiny, animal.class_weights, birds | {"beagle"}) == pytest.approx(1.0)
    assert animal.coco == {
        "bird": pytest.approx(np.exp(-0.35), abs=1e-3),
        "dog": pytest.approx(np.exp(-0.35), abs=1e-3),
    }


def test_far_groups_gloss_links_and_compounds(tiny):
    tulip = tiny.expand("tulip")  # up 2 to plant, whose only class is daisy
    assert tulip.top_classes(1)[0][0] == "daisy" and tulip.strength == pytest.approx(np.exp(-1.4))
    lake = tiny.expand("lake")  # gloss only
    assert lake.top_classes(1) == [("lakeside", pytest.approx(1.0))] and lake.strength == pytest.approx(np.exp(-2.1))
    shore = tiny.expand("lake shore")
    assert shore.matches[0].lemma == "lakeshore" and shore.top_classes(1)[0][0] == "lakeside"
    assert share(tiny, tiny.expand("coast").class_weights, {"seashore"}) > 0.8  # the rest: lakeside, via shore


def test_generic_words_rare_senses_and_unknown_words(tiny):
    car = tiny.expand("a photo of a car")
    assert [m.phrase for m in car.matches] == ["car"]  # "photo" is not searched by
    assert share(tiny, car.class_weights, {"sports car", "cab"}) == pytest.approx(1.0)
    assert car.coco == {"car": 1.0} and car.coverage == 1.0
    dog = tiny.expand("dog")  # the "frump" sense (untagged, 1 in 42) reaches scuba diver and person: left out
    assert dog.top_classes(1)[0][0] == "beagle" and share(tiny, dog.class_weights, {"scuba diver"}) < 0.01
    assert dog.coco == {"dog": pytest.approx(41 / 42, abs=1e-3)}
    assert [s for s, _ in dog.matches[0].senses] == ["dog.n.01"]
    nothing = tiny.expand("asdfgh qwerty")
    assert not nothing.class_weights.any() and nothing.coco == {} and nothing.matches == []
    assert nothing.coverage == 0.0 and nothing.strength == 0.0 and not nothing.recognised
    assert tiny.expand("").coverage == 0.0 and not tiny.expand("the of a").class_weights.any()
    half = tiny.expand("sparrow asdfgh")
    assert half.coverage == 0.5 and half.recognised


def test_phrases_mix_by_strength(tiny):
    mixed = tiny.expand("tulip and cab")  # cab: the class itself (1.0); tulip: plant 2 steps up (0.25)
    assert share(tiny, mixed.class_weights, {"cab"}) > share(tiny, mixed.class_weights, {"daisy"}) > 0.1
    assert mixed.class_weights.sum() == pytest.approx(1.0)
    assert [m.phrase for m in mixed.matches] == ["tulip", "cab"]


def test_check_and_coco_mapping(tiny):
    figures = check_lexicon(tiny, max_ambiguous=1, min_coco_names=4)
    assert figures["class_names_to_own_class"] >= len(CLASSES) - 1
    with pytest.raises(RuntimeError):
        check_lexicon(tiny, max_ambiguous=-1)
    assert len(COCO_SYNSETS) == 80 and all(COCO_SYNSETS.values())


# ------------------------------------------------------------------------------------ the built lexicon


@pytest.fixture(scope="module")
def lexicon() -> QueryLexicon:
    try:
        return QueryLexicon.from_cache()
    except ModelNotBuiltError as exc:  # a failure, not a skip: `models build` makes it (as for the other models)
        pytest.fail(str(exc))


PASSERINES = {
    "brambling",
    "goldfinch",
    "house finch",
    "junco",
    "indigo bunting",
    "robin",
    "bulbul",
    "jay",
    "magpie",
    "chickadee",
    "water ouzel",
}


@pytest.mark.models
def test_built_lexicon_matches_the_image_model(lexicon):
    classes = json.loads((IMAGE_MODEL.locate(ModelSettings().cache_dir) / "classes.json").read_text())
    assert lexicon.class_wnids == [c["wnid"] for c in classes]
    folder = WORDNET_LEXICON.locate(ModelSettings().cache_dir)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 3_000_000


@pytest.mark.models
def test_sparrow_and_tulip(lexicon):
    sparrow = lexicon.expand("sparrow")
    assert share(lexicon, sparrow.class_weights, PASSERINES) > 0.6
    assert sparrow.coco == {"bird": 1.0}
    assert np.array_equal(lexicon.expand("sparrows").class_weights, sparrow.class_weights)
    tulip = lexicon.expand("tulip")
    assert share(lexicon, tulip.class_weights, {"daisy", "yellow lady's slipper"}) > 0.9
    assert set(tulip.coco) <= {"potted plant"}


@pytest.mark.models
def test_pet_dog_and_seagull(lexicon):
    pet_dog = lexicon.expand("pet dog")
    dogs = set(lexicon.class_names[151:269])  # ImageNet-1k's dog breeds
    assert share(lexicon, pet_dog.class_weights, dogs) > 0.7
    assert pet_dog.coco.get("dog", 0) > 0.9 and pet_dog.coverage == 1.0
    seagull = lexicon.expand("seagull")
    assert seagull.top_classes(1)[0][0] in {"albatross", "pelican", "king penguin"}
    assert seagull.coco == {"bird": 1.0}


@pytest.mark.models
def test_lake_shore_nonsense_and_generic_words(lexicon):
    shore = lexicon.expand("lake shore")
    assert share(lexicon, shore.class_weights, {"lakeside", "seashore"}) > 0.8
    nonsense = lexicon.expand("asdfgh")
    assert not nonsense.class_weights.any() and nonsense.coverage == 0.0 and nonsense.coco == {}
    car = lexicon.expand("a photo of a car")
    assert [m.phrase for m in car.matches] == ["car"]
    cars = {"sports car", "convertible", "cab", "beach wagon", "jeep", "limousine", "minivan", "racer", "Model T"}
    assert share(lexicon, car.class_weights, cars) > 0.5
    assert car.coco.get("car", 0) > 0.9 and car.coverage == 1.0
