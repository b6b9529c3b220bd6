"""``pseudo proposals``: event proposals for every video of a feature source, cached and resumable.

The output is JSON Lines, one proposal per line (``video, duration, start, end, score, method,
atoms, settings_hash``). ``settings_hash`` covers the proposal settings and the features they were
made from, so a rerun keeps the videos whose proposals are current, recomputes stale ones, and
rewrites the file atomically. The resolved settings and code version go to ``<out>.config.yaml``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from proposals import ProposalConfig, ProposalSet, generate_proposals
from pseudo.errors import DataFormatError, DataNotFoundError, PseudoError
from pseudo.features import FeaturesConfig, FeatureSource, RunSummary, VideoFeatures
from pseudo.io import atomic_write_jsonl, atomic_write_text, check_writable, iter_jsonl
from pseudo.settings import code_version, dump_yaml, settings_hash

#: rewrite the output after this many new videos, so a killed run keeps most of its work
FLUSH_EVERY = 50


def proposal_hash(cfg: ProposalConfig, feats: VideoFeatures) -> str:
    return settings_hash(cfg, feats.content_hash)


def proposals_for(feats: VideoFeatures, cfg: ProposalConfig) -> tuple[ProposalSet, list[dict[str, Any]]]:
    result = generate_proposals(feats.features, feats.duration, cfg, feats.timestamps)
    records = result.to_records(feats.vid, feats.duration)
    h = proposal_hash(cfg, feats)
    for r in records:
        r["settings_hash"] = h
        r["features_hash"] = feats.content_hash
    return result, records


class MismatchError(PseudoError):
    """Two stage inputs that come from different runs (e.g. proposals made from other features)."""


def check_same_features(
    recorded: str | None, feats: VideoFeatures, made: str | Path, features_dir: str | Path | None, what: str
) -> None:
    """Refuse ``what`` (in file ``made``) when it records features other than those in ``features_dir``.

    Records without a ``features_hash`` (made by an older version) are not checked."""
    if recorded and recorded != feats.content_hash:
        raise MismatchError(
            f"{made} was made from other features than {features_dir or 'the given features'} "
            f"(video {feats.vid!r}: {what} from features {recorded}, these are {feats.content_hash}); "
            f"pass the feature store the {what} were made from (it is named in {made}.config.yaml)"
        )


def read_proposals(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Proposal records grouped by video, in file order."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"proposals file {p} does not exist; make it with `pseudo proposals --out {p}`")
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lineno, rec in iter_jsonl(p):
        missing = [k for k in ("video", "start", "end") if k not in rec]
        if missing:
            raise DataFormatError(p, f"not a proposal record (missing {', '.join(missing)})", lineno)
        out[str(rec["video"])].append(rec)
    return dict(out)


def event_boundaries(by_video: dict[str, list[dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Per video, the sorted start and end times (seconds) of its proposals: the boundaries of the
    atomic events that any proposal uses."""
    return {
        vid: np.unique(np.array([t for r in recs for t in (float(r["start"]), float(r["end"]))], dtype=np.float64))
        for vid, recs in by_video.items()
    }


def run_proposals(
    source: FeatureSource,
    cfg: ProposalConfig,
    out: str | Path,
    on_video: Callable[[str], None] | None = None,
    provenance: dict[str, Any] | None = None,
    vids: Sequence[str] | None = None,
) -> RunSummary:
    """Proposals for every video of ``source`` (or just ``vids``); the output keeps only these videos."""
    t0 = time.perf_counter()
    out = check_writable(out, "file")
    existing = read_proposals(out) if out.is_file() else {}
    summary = RunSummary()
    results: dict[str, list[dict[str, Any]]] = {}

    def flush() -> None:
        atomic_write_jsonl(out, (r for recs in results.values() for r in recs))

    for vid in vids if vids is not None else source.vids():
        try:
            feats = source.get(vid)
            h = proposal_hash(cfg, feats)
            old = existing.get(vid)
            if old and all(r.get("settings_hash") == h for r in old):
                results[vid] = old
                summary.skipped.append(vid)
            else:
                results[vid] = proposals_for(feats, cfg)[1]
                summary.done.append(vid)
                if len(summary.done) % FLUSH_EVERY == 0:
                    flush()
        except (ValueError, OSError) as exc:
            summary.failed[vid] = str(exc)
        if on_video is not None:
            on_video(vid)
    flush()
    meta = {"stage": "proposals", "code_version": code_version(), "proposals": cfg.model_dump(mode="json")}
    meta.update(provenance or {})
    atomic_write_text(out.with_name(out.name + ".config.yaml"), dump_yaml(meta))
    summary.seconds = time.perf_counter() - t0
    return summary


class ProposalRunConfig(BaseModel):
    """The YAML for ``pseudo proposals --config``: how to make features, and how to propose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: FeaturesConfig = FeaturesConfig()
    proposals: ProposalConfig = ProposalConfig()
