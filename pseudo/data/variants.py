"""Query variants: other phrasings of a benchmark's queries (e.g. an LLM's rephrasings), one JSON
Lines record per query::

    {"qid": 2579, "variants": ["The girl was on a video call with her mom ...", ...]}

VTG-GPT's files (``rephrased_query`` instead of ``variants``) are read as they are. Only ``qid`` and
the variants are read: every other field of a record (VTG-GPT's carry the ground truth,
``relevant_windows``, ``saliency_scores``, ...) is ignored, so no timestamp can reach a prediction
through this file. Users can make such a file with any LLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pseudo.errors import DataFormatError
from pseudo.io import iter_jsonl
from pseudo.records import Query

#: the keys a record may hold its variants under, in order of preference
VARIANT_KEYS = ("variants", "rephrased_query")

Variants = dict[str, list[str]]


def load_variants(path: str | Path, queries: Sequence[Query] | None = None) -> Variants:
    """``{str(qid): [variant, ...]}``. With ``queries``, a qid that none of them has is an error (the
    file belongs to another split); queries without a record simply have no variants."""
    p = Path(path)
    known = {str(q.qid) for q in queries} if queries is not None else None
    out: Variants = {}
    for lineno, rec in iter_jsonl(p):
        if "qid" not in rec:
            raise DataFormatError(p, "missing 'qid'", lineno)
        qid = str(rec["qid"])
        key = next((k for k in VARIANT_KEYS if k in rec), None)
        if key is None:
            raise DataFormatError(p, f"qid {qid}: no 'variants' (a list of texts)", lineno)
        texts = rec[key]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataFormatError(p, f"qid {qid}: {key} must be a list of texts", lineno)
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            raise DataFormatError(
                p, f"qid {qid}: {key} is empty; give at least one variant or leave the qid out", lineno
            )
        if known is not None and qid not in known:
            raise DataFormatError(
                p,
                f"qid {qid} is not a query of the split being predicted (is this the variants file of another split?)",
                lineno,
            )
        if qid in out:
            raise DataFormatError(p, f"qid {qid} appears twice", lineno)
        out[qid] = texts
    return out


def phrasings(q: Query, variants: Mapping[str, Sequence[str]]) -> list[str]:
    """The texts ``q`` is asked with: its own query, then its variants (``variants[str(q.qid)]``), if any."""
    return [q.query, *variants.get(str(q.qid), ())]
