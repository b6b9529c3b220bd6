"""Composite events: runs of consecutive atomic events, chosen by a registered composer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proposals.events import AtomicEvent
from pseudo.metrics.iou import iou_cross
from pseudo.records import Proposal
from pseudo.registry import Registry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: an SSM value range below this counts as constant: every run then scores 1.0
FLAT_RANGE = 1e-9


@dataclass(frozen=True, eq=False)
class RunTable:
    """Every run of consecutive atoms (``first..last`` inclusive) a composer may pick from."""

    first: IntArray
    last: IntArray
    start_step: IntArray
    end_step: IntArray  # exclusive
    score: FloatArray  # compactness, in [0, 1]

    def __len__(self) -> int:
        return int(self.first.shape[0])

    def iou_with(self, i: int) -> FloatArray:
        """Temporal IoU (over steps) of every run with run ``i``."""
        spans = np.stack([self.start_step, self.end_step], axis=1).astype(np.float64)
        return iou_cross(spans, spans[i : i + 1])[:, 0]


def enumerate_runs(num_atoms: int, max_atoms: int | None = None) -> tuple[IntArray, IntArray]:
    """(first, last) of every run of 1..max_atoms consecutive atoms, ordered by first then length."""
    width = num_atoms if max_atoms is None else min(max_atoms, num_atoms)
    first, last = [], []
    for i in range(num_atoms):
        for j in range(i, min(i + width, num_atoms)):
            first.append(i)
            last.append(j)
    return np.asarray(first, dtype=np.intp), np.asarray(last, dtype=np.intp)


def compactness_scores(ssm: npt.ArrayLike, start_step: IntArray, end_step: IntArray) -> FloatArray:
    """Mean intra-span similarity minus mean similarity to the rest, mapped to [0, 1].

    Intra excludes the diagonal (for spans of more than one step); the cross term averages
    both directions, so it also suits row-normalised (asymmetric) matrices. A span covering
    everything has no rest and is compared to the lowest similarity instead. The difference is
    divided by the matrix's value range and shifted so that 0.5 means "no contrast".
    """
    s = np.asarray(ssm, dtype=np.float64)
    t = s.shape[0]
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= FLAT_RANGE:
        return np.ones(start_step.shape[0], dtype=np.float64)
    p = np.zeros((t + 1, t + 1))
    p[1:, 1:] = s.cumsum(axis=0).cumsum(axis=1)
    rows = np.concatenate([[0.0], s.sum(axis=1).cumsum()])
    cols = np.concatenate([[0.0], s.sum(axis=0).cumsum()])
    diag = np.concatenate([[0.0], np.diag(s).cumsum()])
    a, b = start_step, end_step
    n = (b - a).astype(np.float64)
    block = p[b, b] - p[a, b] - p[b, a] + p[a, a]
    d = diag[b] - diag[a]
    intra = np.where(n > 1, (block - d) / np.maximum(n * (n - 1), 1.0), d)
    rest = t - n
    cross = (rows[b] - rows[a] - block) + (cols[b] - cols[a] - block)
    inter = np.where(rest > 0, cross / np.maximum(2.0 * n * rest, 1.0), lo)
    out: FloatArray = np.clip(0.5 + (intra - inter) / (2.0 * (hi - lo)), 0.0, 1.0)
    return out


def run_table(atoms: Sequence[AtomicEvent], ssm: npt.ArrayLike, max_atoms: int | None = None) -> RunTable:
    first, last = enumerate_runs(len(atoms), max_atoms)
    starts = np.asarray([a.start_step for a in atoms], dtype=np.intp)
    ends = np.asarray([a.end_step for a in atoms], dtype=np.intp)
    start_step, end_step = starts[first], ends[last]
    return RunTable(first, last, start_step, end_step, compactness_scores(ssm, start_step, end_step))


#: ``fn(table, num, rng) -> indices into the table`` (distinct, at most ``num``)
Composer = Callable[[RunTable, int, np.random.Generator], list[int]]

COMPOSERS: Registry[Composer] = Registry("composer")


@COMPOSERS.register("random")
def random_runs(table: RunTable, num: int, rng: np.random.Generator) -> list[int]:
    """PSVL's best: runs drawn uniformly at random, without replacement."""
    picks = rng.choice(len(table), size=min(num, len(table)), replace=False)
    return [int(i) for i in picks]


@COMPOSERS.register("compactness")
def most_compact(table: RunTable, num: int, rng: np.random.Generator) -> list[int]:
    """The ``num`` runs of highest compactness (earlier, shorter runs first on ties)."""
    order = np.lexsort((np.arange(len(table)), -table.score))
    return [int(i) for i in order[:num]]


@COMPOSERS.register("diversity")
def least_overlapping(table: RunTable, num: int, rng: np.random.Generator) -> list[int]:
    """Greedy: start from the most compact run, then repeatedly take the run whose largest IoU
    with the runs taken so far is smallest (higher compactness first on ties)."""
    n = len(table)
    max_iou = np.zeros(n, dtype=np.float64)
    index = np.arange(n)
    picks: list[int] = []
    for _ in range(min(num, n)):
        i = int(np.lexsort((index, -table.score, max_iou))[0])
        picks.append(i)
        max_iou = np.maximum(max_iou, table.iou_with(i))
        max_iou[i] = np.inf
    return picks


def compose(
    atoms: Sequence[AtomicEvent],
    ssm: npt.ArrayLike,
    method: str = "random",
    num_proposals: int = 50,
    max_atoms: int | None = None,
    seed: int = 0,
) -> list[Proposal]:
    """Composite proposals from atomic events, best score first (then earliest)."""
    if not atoms:
        return []
    composer = COMPOSERS.get(method)
    table = run_table(atoms, ssm, max_atoms)
    picks = dict.fromkeys(composer(table, num_proposals, np.random.default_rng(seed)))
    out = [
        Proposal(
            start=atoms[int(table.first[i])].start,
            end=atoms[int(table.last[i])].end,
            score=float(table.score[i]),
            atoms=tuple(range(int(table.first[i]), int(table.last[i]) + 1)),
            method=method.lower(),
        )
        for i in list(picks)[:num_proposals]
    ]
    out.sort(key=lambda p: (-p.score, p.start, p.end))
    return out
