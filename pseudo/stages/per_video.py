"""The resumable per-video loop every per-video stage runs (features, proposals, pseudo-labels).

A stage describes its work as a :class:`PerVideoTask`: which videos are already done, which failed
before under the same settings, and how to process a batch of videos. :func:`run_per_video` skips
what is done, records what fails (one bad video never stops the others), reports progress, and
returns a :class:`RunSummary`. ``shard=(i, n)`` takes every video whose id hashes to ``i`` of ``n``,
so ``n`` independent processes (a SLURM array) cover a corpus exactly once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pseudo.errors import PseudoError, StopStage


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: inputs that were used but are suspect (e.g. truncated videos), with what is wrong
    warnings: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failures": self.failed,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


#: the outcome of one video: None (done), or a warning to report with a done video
Outcome = str | None


class PerVideoTask(Protocol):
    """One stage's work on videos."""

    #: errors that fail one video (recorded, the loop goes on); anything else stops the run
    errors: tuple[type[BaseException], ...]

    def is_done(self, vid: str) -> bool: ...

    def known_failure(self, vid: str) -> str | None: ...

    def record_failure(self, vid: str, error: str) -> None: ...

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        """Process a batch; each video maps to its outcome or to the error that failed it."""
        ...


def in_shard(vid: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``vid`` belongs to shard ``i`` of ``n`` (a stable hash of the id, not its position)."""
    if shard is None:
        return True
    i, n = shard
    return int(hashlib.sha1(vid.encode("utf-8")).hexdigest(), 16) % n == i


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)`` (0-based); None stays None."""
    if text is None:
        return None
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise PseudoError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return i, n


class Failed(str):
    """A video's failure that travelled as text (from a Ray worker)."""

    __slots__ = ()


class Engine(BaseModel):
    """Where the per-video work runs: ``local`` (this process, the default; needs no Ray) or ``ray``
    (a Ray Data pipeline: videos as a dataset, CPU tasks of ``cpus_per_prepare`` CPUs for decoding
    where the stage has a CPU part, ``workers`` actors of ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs for the models; the outputs are the same files as the local path's).
    ``address``: ``auto`` or ``HOST:PORT`` of a running cluster, else a local Ray instance
    is started with ``num_cpus`` CPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["local", "ray"] = "local"
    address: str | None = None
    num_cpus: Annotated[int, Field(ge=1)] | None = None
    workers: Annotated[int, Field(ge=1)] = 1
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0
    cpus_per_prepare: Annotated[float, Field(gt=0)] = 1.0


def run_batch(task: PerVideoTask, batch: Sequence[str]) -> dict[str, Outcome | BaseException]:
    """``task.run(batch)``; when the batch as a whole fails, its videos one by one, so one bad video
    costs only itself."""
    try:
        return task.run(batch)
    except StopStage:
        raise
    except task.errors as exc:
        if len(batch) == 1:
            return {batch[0]: exc}
    outcomes: dict[str, Outcome | BaseException] = {}
    for vid in batch:
        try:
            outcomes.update(task.run([vid]))
        except StopStage:
            raise
        except task.errors as one:
            outcomes[vid] = one
    return outcomes


def run_per_video(
    task: PerVideoTask,
    vids: Sequence[str],
    batch_size: int = 1,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
    engine: Engine | None = None,
) -> RunSummary:
    """Run ``task`` on every video of ``vids`` (in this shard) that is not done yet, here or on Ray."""
    t0 = time.perf_counter()
    summary = RunSummary()
    mine = [v for v in vids if in_shard(v, shard)]
    if on_start is not None:
        on_start(len(mine))
    todo: list[str] = []
    for vid in mine:
        known = None if retry_failed else task.known_failure(vid)
        if task.is_done(vid):
            summary.skipped.append(vid)
        elif known is not None:
            summary.failed[vid] = known
        else:
            todo.append(vid)
            continue
        if on_video is not None:
            on_video(vid)
    batches = [todo[lo : lo + batch_size] for lo in range(0, len(todo), batch_size)]

    def record(vid: str, result: Outcome | BaseException) -> None:
        if isinstance(result, BaseException | Failed):
            summary.failed[vid] = str(result)
            task.record_failure(vid, str(result))
        else:
            summary.done.append(vid)
            if result:
                summary.warnings[vid] = result
        if on_video is not None:
            on_video(vid)

    if engine is not None and engine.name == "ray":
        from pseudo.stages.ray_engine import run_on_ray

        run_on_ray(task, batches, engine, record)
    else:
        for batch in batches:
            outcomes = run_batch(task, batch)
            for vid in batch:
                record(vid, outcomes.get(vid, Failed("no result")))
    summary.seconds = time.perf_counter() - t0
    return summary
