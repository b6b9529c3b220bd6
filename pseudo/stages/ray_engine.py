"""The Ray engine of the per-video stages: the same tasks, on a Ray Data pipeline.

The driver has already dropped the videos that are done (or failed before); the rest arrive here in
the very batches the local path would run, so embeddings batched across videos come out bitwise the
same. Each batch is one row of a Ray dataset. A stage with a CPU part (a task with ``prepare``:
decoding and sampling frames) runs it in Ray CPU tasks; then ``workers`` actors (``map_batches``
with a class, each with ``gpus_per_worker`` GPUs) run the stage's models and write each video's
files to the shared store, exactly as the local path does. Failures travel back as rows: a video
that raises one of the stage's errors is recorded as failed by the driver; a batch whose worker
raised anything else or died is retried once, one video per batch, and a video that fails that way
again is recorded as failed, so a poison video costs only itself. Each pass ends by killing every
actor that joined its pool (a :class:`_Roster` of their handles): Ray Data leaves an actor alive
after its pass when it was restarted during it, and the leaked actors' CPUs would starve the next pass,
which then waits for them forever.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pseudo.errors import PseudoError, StopStage
from pseudo.stages.per_video import Engine, Failed, Outcome, PerVideoTask, run_batch

SEPARATOR = "\n"
DONE, FAILED, STOP = "done", "failed", "stop"


def _prepare_row(row: dict[str, Any], task: Any) -> dict[str, Any]:
    """CPU task: ``task.prepare`` for each video of the row's batch (errors kept per video)."""
    payload: dict[str, tuple[str, Any]] = {}
    for vid in str(row["vids"]).split(SEPARATOR):
        try:
            payload[vid] = (DONE, task.prepare(vid))
        except task.errors as exc:
            payload[vid] = (FAILED, str(exc))
    return {"vids": row["vids"], "prepared": pickle.dumps(payload)}


class _Roster:
    """A Ray actor (no CPU) keeping the handles of one pass's workers, so the driver can end them all."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def add(self, handle: Any) -> None:
        self.handles.append(handle)

    def members(self) -> list[Any]:
        return self.handles


class _Worker:
    """A Ray actor holding one copy of the stage's task (its models load on first use, here)."""

    def __init__(self, task: PerVideoTask, roster: Any = None) -> None:
        self.task = task
        if roster is not None:  # a restart runs this again, with the same actor id: added once is enough
            import ray

            ray.get(roster.add.remote(ray.get_runtime_context().current_actor))

    def _finish(self, names: list[str], prepared: bytes) -> dict[str, Outcome | BaseException]:
        payload: dict[str, tuple[str, Any]] = pickle.loads(prepared)
        outcomes: dict[str, Outcome | BaseException] = {}
        for vid in names:
            status, value = payload[vid]
            if status == FAILED:
                outcomes[vid] = Failed(value)
                continue
            try:
                outcomes[vid] = self.task.finish(vid, value)  # type: ignore[attr-defined]
            except self.task.errors as exc:
                outcomes[vid] = exc
        return outcomes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        rows: dict[str, list[str]] = {"vid": [], "status": [], "message": []}

        def add(vid: str, status: str, message: str) -> None:
            rows["vid"].append(vid)
            rows["status"].append(status)
            rows["message"].append(message)

        for i, chunk in enumerate(batch["vids"]):
            names = str(chunk).split(SEPARATOR)
            try:
                if "prepared" in batch:
                    outcomes = self._finish(names, bytes(batch["prepared"][i]))
                else:
                    outcomes = run_batch(self.task, names)
            except StopStage as exc:  # stops the whole stage, in the driver
                for vid in names:
                    add(vid, STOP, str(exc))
                continue
            for vid in names:
                result = outcomes.get(vid, Failed("no result"))
                if isinstance(result, BaseException | Failed):
                    add(vid, FAILED, str(result))
                else:
                    add(vid, DONE, result or "")
        return rows


def init_ray(engine: Engine) -> Any:
    """Connect to ``engine.address`` (``auto`` or ``HOST:PORT``), or start a local Ray instance."""
    try:
        import ray
    except ImportError:
        raise PseudoError(
            "engine ray needs Ray: pip install 'pseudo[ray]' (ray[data]), or use --engine local"
        ) from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if engine.address:
            kwargs["address"] = engine.address
        elif engine.num_cpus:
            kwargs["num_cpus"] = engine.num_cpus
        ray.init(**kwargs)
    return ray


def _one_pass(
    ray: Any, task: PerVideoTask, batches: Sequence[Sequence[str]], engine: Engine, queue: int | None = None
) -> dict[str, tuple[str, str]]:
    """One Ray Data pass over ``batches``; ``queue``: batches waiting on one actor (None: Ray's
    default; 1 when retrying, so a worker that dies takes no other video down with it)."""
    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = -1  # a batch whose worker failed is dropped here and retried by the caller
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    items = [{"vids": SEPARATOR.join(b)} for b in batches]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    if _has_cpu_part(task):
        ds = ds.map(_prepare_row, fn_kwargs={"task": task}, num_cpus=engine.cpus_per_prepare)
    roster = ray.remote(num_cpus=0)(_Roster).remote()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the actors' restart settings (Ray 2.60's spelling)
        ds = ds.map_batches(
            _Worker,
            fn_constructor_kwargs={"task": task, "roster": roster},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=engine.workers, max_tasks_in_flight_per_actor=queue),
            num_cpus=engine.cpus_per_worker,
            num_gpus=engine.gpus_per_worker,
            max_restarts=-1,  # a dead actor is replaced ...
            max_task_retries=0,  # ... and its batch comes back as missing rows, retried once by the caller
        )
    try:
        return {str(r["vid"]): (str(r["status"]), str(r["message"])) for r in ds.iter_rows()}
    finally:
        for handle in ray.get(roster.members.remote()):
            ray.kill(handle, no_restart=True)
        ray.kill(roster)


def _has_cpu_part(task: PerVideoTask) -> bool:
    return hasattr(task, "prepare") and hasattr(task, "finish")


def check_resources(ray: Any, task: PerVideoTask, engine: Engine) -> None:
    """Refuse a pool that leaves no CPU for the decoding tasks (Ray would wait for one forever)."""
    cpus = float(ray.cluster_resources().get("CPU", 0))
    need = engine.workers * engine.cpus_per_worker + (engine.cpus_per_prepare if _has_cpu_part(task) else 0)
    if need > cpus:
        raise PseudoError(
            f"the Ray engine needs {need:g} CPUs ({engine.workers} workers x {engine.cpus_per_worker:g}"
            + (f" + {engine.cpus_per_prepare:g} for decoding" if _has_cpu_part(task) else "")
            + f") but the cluster has {cpus:g}; lower engine.workers or engine.cpus_per_worker"
        )


def run_on_ray(
    task: PerVideoTask,
    batches: Sequence[Sequence[str]],
    engine: Engine,
    record: Callable[[str, Outcome | BaseException], None],
) -> None:
    """Run ``batches`` on Ray and ``record`` each video's outcome, in the batches' order."""
    if not batches:
        return
    ray = init_ray(engine)
    check_resources(ray, task, engine)
    seen = _one_pass(ray, task, batches, engine)
    lost = [v for b in batches for v in b if v not in seen]
    if lost:  # their worker raised or died: once more, one video per batch
        seen.update(_one_pass(ray, task, [[v] for v in lost], engine, queue=1))
    stops = [msg for status, msg in seen.values() if status == STOP]
    for batch in batches:
        for vid in batch:
            status, message = seen.get(vid, ("", ""))
            if status == DONE:
                record(vid, message or None)
            elif status == FAILED:
                record(vid, Failed(message))
            elif status != STOP:
                record(vid, Failed("its Ray worker failed or died on it (twice); skipped, rerun to retry"))
    if stops:
        raise StopStage(stops[0])
