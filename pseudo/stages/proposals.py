"""The proposals stage: self-similarity event proposals for every video of a feature source.

The output is JSON Lines, one :class:`~pseudo.records.Proposal` per line (``video, duration, start,
end, score, method, atoms, settings_hash, features_hash``). ``settings_hash`` covers the proposal
settings and the features they were made from, so a rerun keeps current videos and recomputes stale
ones; ``features_hash`` lets later stages check that they read the same features. Per-video parts
make the stage resumable and shardable (see :mod:`pseudo.stages.partfiles`). The resolved settings
and code version go to ``<out>.config.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from proposals import ProposalConfig, ProposalSet, generate_proposals
from pseudo.data.store import FeatureSource, VideoFeatures
from pseudo.errors import DataFormatError, DataNotFoundError, PseudoError, StopStage
from pseudo.io import check_writable
from pseudo.records import Proposal
from pseudo.settings import code_version, dump_yaml, settings_hash
from pseudo.stages.partfiles import PartFiles, PartsTask, read_records
from pseudo.stages.per_video import Engine, Outcome, RunSummary, run_per_video


class MismatchError(StopStage):
    """Two stage inputs that come from different runs (e.g. proposals made from other features)."""


def proposal_hash(cfg: ProposalConfig, features_hash: str) -> str:
    return settings_hash(cfg, features_hash)


def proposals_for(feats: VideoFeatures, cfg: ProposalConfig) -> tuple[ProposalSet, list[Proposal]]:
    """One video's proposals, as records that carry the video, its duration and the hashes."""
    result = generate_proposals(feats.features, feats.duration, cfg, feats.timestamps)
    h = proposal_hash(cfg, feats.content_hash)
    records = [
        dataclasses.replace(
            p, vid=feats.vid, duration=float(feats.duration), settings_hash=h, features_hash=feats.content_hash
        )
        for p in result.proposals
    ]
    return result, records


def read_proposals(path: str | Path) -> dict[str, list[Proposal]]:
    """Proposals grouped by video, in file order."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"proposals file {p} does not exist; make it with `pseudo proposals --out {p}`")
    out: dict[str, list[Proposal]] = defaultdict(list)
    for lineno, rec in read_records(p, ("video", "start", "end"), "proposal"):
        try:
            prop = Proposal.from_json(rec)
        except (TypeError, ValueError) as exc:
            raise DataFormatError(p, f"not a proposal record ({exc})", lineno) from None
        out[prop.vid].append(prop)
    return dict(out)


def event_boundaries(by_video: Mapping[str, Sequence[Proposal]]) -> dict[str, NDArray[np.float64]]:
    """Per video, the sorted start and end times (seconds) of its proposals: the boundaries of the
    atomic events that any proposal uses."""
    return {
        vid: np.unique(np.array([t for p in props for t in (p.start, p.end)], dtype=np.float64))
        for vid, props in by_video.items()
    }


def check_same_features(
    recorded: str | None, feats_hash: str, vid: str, made: str | Path, features_dir: str | Path | None, what: str
) -> None:
    """Refuse ``what`` (in file ``made``) when it records features other than those in ``features_dir``.

    Records without a ``features_hash`` (hand-made files) are not checked."""
    if recorded and recorded != feats_hash:
        raise MismatchError(
            f"{made} was made from other features than {features_dir or 'the given features'} "
            f"(video {vid!r}: {what} from features {recorded}, these are {feats_hash}); "
            f"pass the feature store the {what} were made from (it is named in {made}.config.yaml)"
        )


class ProposalsTask(PartsTask):
    errors: tuple[type[BaseException], ...] = (PseudoError, ValueError)

    def __init__(self, source: FeatureSource, cfg: ProposalConfig, parts: PartFiles) -> None:
        super().__init__(parts)
        self.source = source
        self.cfg = cfg

    def key(self, vid: str) -> str:
        return proposal_hash(self.cfg, self.source.content_hash(vid))

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        from threadpoolctl import threadpool_limits

        out: dict[str, Outcome | BaseException] = {}
        # one video's matrices are small: BLAS/OpenMP threads cost more than they give (3.5x slower
        # with 2 on 2 cores, bench/results/scale.md); videos run in parallel across Ray workers or
        # shards instead. The outputs are the same.
        with threadpool_limits(limits=1):
            for vid in vids:
                try:
                    feats = self.source.get(vid)
                    _, records = proposals_for(feats, self.cfg)
                except (PseudoError, ValueError) as exc:
                    out[vid] = exc
                    continue
                self.parts.write(vid, self.key(vid), [r.to_json() for r in records])
                out[vid] = None
        return out


def run_proposals(
    source: FeatureSource,
    cfg: ProposalConfig,
    out: str | Path,
    on_video: Callable[[str], None] | None = None,
    provenance: dict[str, Any] | None = None,
    vids: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    engine: Engine | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunSummary:
    """Proposals for every video of ``source`` (or just ``vids``); the output holds exactly these
    videos once all of them are done (with ``shard``, by whichever shard finishes last)."""
    out = check_writable(out, "file")
    parts = PartFiles(out)
    task = ProposalsTask(source, cfg, parts)
    todo = list(vids) if vids is not None else source.vids()
    summary = run_per_video(
        task, todo, shard=shard, retry_failed=shard is None, on_start=on_start, on_video=on_video, engine=engine
    )
    keys = {v: task.key(v) for v in todo}
    if not parts.missing(todo, keys):
        meta = {"stage": "proposals", "code_version": code_version(), "proposals": cfg.model_dump(mode="json")}
        meta.update(provenance or {})
        parts.merge([v for v in todo if parts.failure(v, keys[v]) is None], dump_yaml(meta))
    return summary
