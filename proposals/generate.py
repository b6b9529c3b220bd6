"""Features -> self-similarity -> k-means -> atomic events -> composite proposals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proposals.clustering import cluster_steps, distinct_rows
from proposals.composite import compose
from proposals.config import ProposalConfig
from proposals.events import AtomicEvent, atomic_events
from proposals.similarity import l2_normalize, self_similarity
from pseudo.records import Proposal
from pseudo.timeline import resample_linear, step_boundaries, uniform_boundaries

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class ProposalSet:
    """Everything one video's proposals came from, and the proposals (best score first)."""

    ssm: FloatArray  # (T', T')
    boundaries: FloatArray  # (T' + 1,) seconds of the step grid
    atoms: list[AtomicEvent]
    proposals: list[Proposal]
    settings_hash: str


def check_features(features: npt.ArrayLike) -> FloatArray:
    """``features`` as a finite float (T, D) array with T, D >= 1, or a ValueError saying why not."""
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"features must be a numeric (T, D) array: {exc}") from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D (T, D) array, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"features contain {int(bad.sum())} NaN/inf values in {rows.shape[0]} of {x.shape[0]} rows "
            f"(first bad row {int(rows[0])})"
        )
    return x


def generate_proposals(
    features: npt.ArrayLike,
    duration: float,
    config: ProposalConfig | None = None,
    timestamps: npt.ArrayLike | None = None,
) -> ProposalSet:
    """Event proposals for one video from its (T, D) ``features``.

    ``timestamps`` (T,) are the seconds each row was taken at (the frames' times): proposals then lie
    where the rows are, also when they cover only part of the video (a truncated file, a sampling
    window). Without them the rows are taken to cover ``[0, duration]`` in equal steps. Resampling
    to ``resample_steps`` keeps the span the rows cover."""
    cfg = config if config is not None else ProposalConfig()
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    x = check_features(features)
    if timestamps is None:
        native = uniform_boundaries(x.shape[0], seconds)
    else:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if ts.shape[0] != x.shape[0]:
            raise ValueError(f"{ts.shape[0]} timestamps for {x.shape[0]} feature rows")
        native = step_boundaries(ts, seconds)
    if cfg.resample_steps is not None:
        x = resample_linear(x, cfg.resample_steps)
    unit = l2_normalize(x)
    t = unit.shape[0]
    boundaries = native if t + 1 == native.shape[0] else np.linspace(native[0], native[-1], t + 1)
    ssm = self_similarity(unit, cfg.similarity, cfg.temperature)
    labels = cluster_steps(
        ssm, cfg.num_clusters, k_min=cfg.k_min, k_max=cfg.k_max, seed=cfg.seed, max_clusters=distinct_rows(unit)
    )
    atoms = atomic_events(labels, unit, boundaries, cfg.min_event_steps)
    proposals = compose(atoms, ssm, cfg.composer, cfg.num_proposals, cfg.max_atoms, cfg.seed)
    return ProposalSet(ssm, boundaries, atoms, proposals, cfg.settings_hash())
