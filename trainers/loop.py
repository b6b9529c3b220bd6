"""The training loop: AdamW, warm-up + cosine, AMP (bf16 on GPU), gradient clipping, seeded batch
order, atomic checkpoints, exact resume, evaluation through a callback, DDP via torchrun.

A run directory holds ``config.yaml`` (the resolved recipe and code version), ``log.jsonl`` (one
line per logged step), ``checkpoints/last.pt`` (+ ``step_<N>.pt`` every ``checkpoint_every``)
and ``metrics.json``. Checkpoints hold only what trains (the frozen text tower is rebuilt from the
recipe). The batch order of epoch ``e`` is a permutation seeded by ``(seed, e)``, crops are seeded
by ``(seed, e, batch)``, and the torch RNG state is saved, so a resumed run reproduces an
uninterrupted one. Ctrl-C finishes the step under way, writes a checkpoint and says how to resume
(a second Ctrl-C stops at once).

The pieces: :func:`build_optimizer`, :func:`build_scheduler`, :class:`Checkpointer` (save, load,
trim the logs to the checkpoint on resume) and :func:`train_epoch`; :func:`train` wires them
together. Labels and features come in as objects and evaluation as a callback: the loop reads no
stage's files.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.backbones.base import resolve_device
from pseudo.data.store import FeatureSource, FeatureStore
from pseudo.errors import PseudoError
from pseudo.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, check_writable, iter_jsonl
from pseudo.records import Query
from pseudo.settings import code_version, dump_yaml
from trainers.config import OptimConfig, TrainConfig, loss_conflict
from trainers.data import (
    FeatureCache,
    Sample,
    check_label_features,
    check_query_styles,
    collate,
    hide_query_steps,
    make_sample,
    select_labels,
    training_texts,
    usable,
)
from trainers.localizer import Localizer, build_model, trainable_state
from trainers.losses import localizer_loss
from trainers.model import MomentLocalizer
from trainers.text_towers import TextTower, TowerPool


@dataclass
class TrainResult:
    run_dir: str
    steps: int
    epochs_done: int
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] | None = None
    steps_per_s: float = 0.0
    samples_per_s: float = 0.0
    skipped_queries: int = 0
    #: text encodings made ahead of the first step (:meth:`MomentLocalizer.warm_texts`), and the seconds they took
    #: (not counted in ``steps_per_s``)
    texts_encoded_ahead: int = 0
    text_seconds: float = 0.0


class TrainingInterrupted(PseudoError):
    """Ctrl-C during training: a checkpoint was written; the message says how to resume."""


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Progress:
    """Where training stands: ``batch`` is the next batch of ``epoch`` to run."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    losses: list[float] = field(default_factory=list)


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def build_optimizer(params: Sequence[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> Any:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total_steps))


def features_record(source: FeatureSource) -> dict[str, Any]:
    """What the training features are, so inference can make the same ones (``pseudo localize``)."""
    if isinstance(source, FeatureStore):
        return {"kind": source.kind, "settings": source.cfg.model_dump(mode="json"), "hash": source.hash}
    return {"kind": "arrays", "path": str(getattr(source, "root", ""))}


def _save(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class Checkpointer:
    """Writes ``checkpoints/last.pt`` (and ``step_<N>.pt``) atomically, and reads it back on resume."""

    run: Path
    model: MomentLocalizer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    extra: dict[str, Any]
    enabled: bool = True

    @property
    def last(self) -> Path:
        return self.run / "checkpoints" / "last.pt"

    def save(self, at: Progress, name: str = "last.pt") -> None:
        if not self.enabled:
            return
        state = {
            "model": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": at.step,
            "epoch": at.epoch,
            "batch": at.batch,
            "losses": at.losses,
            "torch_rng": torch.get_rng_state(),
            **self.extra,
        }
        _save(self.run / "checkpoints" / name, state)
        if name != "last.pt":
            _save(self.last, state)

    def load(self, device: torch.device) -> Progress:
        from trainers.localizer import load_trainable_state

        ck = torch.load(self.last, map_location=device, weights_only=False)
        load_trainable_state(self.model, ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        at = Progress(ck["step"], ck["epoch"], ck["batch"], list(ck["losses"]))
        self.trim_logs(at)
        return at

    def trim_logs(self, at: Progress) -> None:
        """Drop log rows written after the checkpoint (a run killed between checkpoints logged steps
        that the resumed run will log again)."""
        log = self.run / "log.jsonl"
        if log.is_file():
            atomic_write_jsonl(log, (r for _, r in iter_jsonl(log) if int(r.get("step", 0)) <= at.step))
        evals = self.run / "eval.jsonl"
        if evals.is_file():
            atomic_write_jsonl(evals, (r for _, r in iter_jsonl(evals) if int(r.get("epoch", 0)) <= at.epoch))


@contextmanager
def stop_on_sigint() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the returned event (the loop stops after the step under way); a second
    one interrupts at once. Outside the main thread nothing is installed."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class EpochContext:
    """What one epoch of training needs."""

    model: torch.nn.Module  # the DDP wrapper when distributed
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    queries: list[Query]
    cache: FeatureCache
    cfg: TrainConfig
    device: torch.device
    dist: _Dist
    steps_per_epoch: int
    total_steps: int
    log_path: Path
    on_log: Callable[[dict[str, Any]], None] | None = None
    clock: float = field(default_factory=time.perf_counter)
    first_step: int = 0
    samples_seen: int = 0
    # ``data.hide_query_steps``: the frozen tower whose plain embeddings are compared with the steps,
    # and the steps hidden and seen since the last log line
    tower: TextTower | None = None
    hidden_steps: int = 0
    seen_steps: int = 0


def train_epoch(
    ctx: EpochContext,
    at: Progress,
    checkpoints: Checkpointer,
    should_stop: Callable[[Progress], bool],
) -> bool:
    """Run the rest of epoch ``at.epoch`` from batch ``at.batch``; ``at`` advances with every step.
    Returns False when ``should_stop`` asked to stop after a step (a checkpoint is then written)."""
    cfg = ctx.cfg.optim
    amp = cfg.amp and ctx.device.type == "cuda"
    loss_cfg = ctx.cfg.loss
    contrast = loss_cfg.query_contrast_weight > 0
    group = loss_cfg.query_contrast_group if contrast else 1
    order = epoch_order(ctx.queries, cfg.seed, at.epoch, group)
    order = order[ctx.dist.rank :: ctx.dist.world]
    for b in range(at.batch, ctx.steps_per_epoch):
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        if len(idx) == 0:
            continue
        rng = np.random.default_rng([cfg.seed, at.epoch, b])
        styles = ctx.cfg.data.query_styles
        samples = [make_sample(ctx.queries[i], ctx.cache, ctx.cfg.data.max_len, rng, styles) for i in idx]
        if ctx.tower is not None and ctx.cfg.data.hide_query_steps is not None:
            samples = _hide_query_steps(ctx, samples, ctx.tower, ctx.cfg.data.hide_query_steps)
        batch = collate(samples).to(ctx.device)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            out = ctx.model(batch.video, batch.mask, batch.texts)
            loss, parts = localizer_loss(
                out,
                batch.windows,
                saliency_weight=loss_cfg.saliency_weight,
                groups=same_view_groups(samples, ctx.device) if contrast else None,
                contrast_weight=loss_cfg.query_contrast_weight,
                contrast_tau=loss_cfg.query_contrast_temperature,
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(ctx.params, cfg.grad_clip)
        ctx.optimizer.step()
        ctx.scheduler.step()
        at.step += 1
        at.batch = b + 1
        ctx.samples_seen += len(idx)
        at.losses.append(float(loss.detach()))
        if ctx.dist.main and (at.step % cfg.log_every == 0 or at.step == ctx.total_steps):
            _log_step(ctx, at, parts)
        if cfg.checkpoint_every and at.step % cfg.checkpoint_every == 0:
            checkpoints.save(at, f"step_{at.step}.pt")
        if should_stop(at):
            checkpoints.save(at)
            return False
    at.epoch += 1
    at.batch = 0
    return True


def epoch_order(queries: Sequence[Query], seed: int, epoch: int, group: int = 1) -> NDArray[np.int64]:
    """The order labels are drawn in during ``epoch``: a permutation seeded by ``(seed, epoch)``; with
    ``group`` > 1, labels of one video come in runs of up to ``group`` (so a batch holds same-video
    negatives), the runs themselves shuffled."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(queries))
    if group <= 1:
        return perm
    by_vid: dict[str, list[int]] = {}
    for i in perm:
        by_vid.setdefault(queries[int(i)].vid, []).append(int(i))
    runs = [idx[k : k + group] for idx in by_vid.values() for k in range(0, len(idx), group)]
    return np.array([i for r in rng.permutation(len(runs)) for i in runs[int(r)]], dtype=np.int64)


def same_view_groups(samples: Sequence[Sample], device: torch.device) -> torch.Tensor:
    """A group id per sample: samples that show the same steps of the same video share one."""
    ids: dict[tuple[str, float, int], int] = {}
    out = [ids.setdefault((s.vid, round(s.offset_seconds, 6), len(s.features)), len(ids)) for s in samples]
    return torch.tensor(out, device=device)


def _hide_query_steps(ctx: EpochContext, samples: list[Sample], tower: TextTower, threshold: float) -> list[Sample]:
    """The samples with their query's own caption steps hidden (:func:`trainers.data.hide_query_steps`),
    counted in ``ctx`` for the log."""
    embeddings = tower.plain_embeddings([s.text for s in samples]).float().numpy()
    out = []
    for s, e in zip(samples, embeddings, strict=True):
        hidden, n = hide_query_steps(s, e, threshold)
        ctx.hidden_steps += n
        ctx.seen_steps += len(s.features)
        out.append(hidden)
    return out


def _log_step(ctx: EpochContext, at: Progress, parts: dict[str, float]) -> None:
    dt = time.perf_counter() - ctx.clock
    rec = {
        "step": at.step,
        "epoch": at.epoch + 1,
        "loss": round(at.losses[-1], 5),
        **{k: round(float(v), 5) for k, v in parts.items()},
        "lr": ctx.scheduler.get_last_lr()[0],
        "steps_per_s": round((at.step - ctx.first_step) / dt, 3) if dt else 0.0,
        "samples_per_s": round(ctx.samples_seen / dt, 2) if dt else 0.0,
    }
    if ctx.seen_steps:
        rec["hidden_steps"] = round(ctx.hidden_steps / ctx.seen_steps, 4)  # share since the last line
        ctx.hidden_steps = ctx.seen_steps = 0
    with ctx.log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    if ctx.on_log is not None:
        ctx.on_log(rec)


def train(
    cfg: TrainConfig,
    labels: Sequence[Query],
    features: FeatureSource,
    run_dir: str | Path,
    resume: bool = False,
    stop_after_steps: int | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    evaluate: Callable[[Localizer], dict[str, float]] | None = None,
    labels_name: str = "the labels",
    features_name: str = "the features",
    select: bool = True,
    towers: TowerPool | None = None,
) -> TrainResult:
    """Train a localizer on ``labels`` (selected here by ``cfg.data``) over ``features`` into ``run_dir``.

    ``evaluate`` scores the model (after ``optim.eval_epochs`` and at the end); ``stop_after_steps``
    ends early, after a checkpoint, as a killed run would; ``select=False`` trains on the labels as
    given (already selected, e.g. relabelled by self-training); ``towers`` shares the frozen text tower
    (and what it has encoded) with other models built through the pool. The names are for error messages."""
    device = resolve_device(cfg.device)
    dist_info = _init_distributed(device)
    run = Path(run_dir)
    last = run / "checkpoints" / "last.pt"
    if last.exists() and not resume:
        raise PseudoError(f"{run} already has a checkpoint; resume it, or choose another run directory")
    if resume and not last.exists():
        raise PseudoError(f"cannot resume: {last} does not exist")
    check_writable(run, "dir", "--run-dir")
    opt_cfg = cfg.optim
    seed_everything(opt_cfg.seed)

    selected = (
        select_labels(labels, cfg.data.max_label_seconds, cfg.data.labels_per_video, cfg.data.min_label_seconds)
        if select
        else list(labels)
    )
    queries, skipped = usable(selected, features)
    cache = FeatureCache(features)
    check_label_features(queries, cache, labels_name, features_name)
    check_query_styles(queries, cfg.data.query_styles, labels_name)
    if conflict := loss_conflict(cfg.model, cfg.loss):
        raise PseudoError(conflict)
    video_dim = cache.get(queries[0].vid).features.shape[1]
    model = build_model(cfg, video_dim, towers).to(device)
    hide_tower = model.tower if cfg.data.hide_query_steps is not None else None
    if hide_tower is not None and hide_tower.dim != video_dim:
        raise PseudoError(
            f"data.hide_query_steps compares each query's text embedding with the step features, so it needs "
            f"features in the text tower's space ({hide_tower.dim} dimensions: captions embedded by the same "
            f"sentence encoder), not {video_dim} as in {features_name}; remove data.hide_query_steps"
        )
    # every training text through the frozen tower before the first step, in batches of one token count,
    # not in the first epoch's random batches padded to their longest text; encodings a shared TowerPool
    # already keeps (another seed's) are not made again
    t_texts = time.perf_counter()
    encoded_ahead = model.warm_texts(training_texts(queries, cfg.data.query_styles), plain=hide_tower is not None)
    text_seconds = time.perf_counter() - t_texts
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, opt_cfg)
    steps_per_epoch = math.ceil(math.ceil(len(queries) / dist_info.world) / opt_cfg.batch_size)
    total = steps_per_epoch * opt_cfg.epochs
    scheduler = build_scheduler(optimizer, opt_cfg, total)
    ddp_model: torch.nn.Module = model
    if dist_info.world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    record = features_record(features)
    extra = {"video_dim": video_dim, "features": record, "config": cfg.model_dump(mode="json")}
    checkpoints = Checkpointer(run, model, optimizer, scheduler, extra, enabled=dist_info.main)
    at = checkpoints.load(device) if resume else Progress()
    if dist_info.main:
        meta = {"code_version": code_version(), "config": cfg.model_dump(mode="json"), "labels": labels_name,
                "features": record, "training_labels": len(queries)}  # fmt: skip
        atomic_write_text(run / "config.yaml", dump_yaml(meta))

    ctx = EpochContext(
        ddp_model, params, optimizer, scheduler, queries, cache, cfg, device, dist_info,
        steps_per_epoch, total, run / "log.jsonl", on_log, first_step=at.step, tower=hide_tower,
    )  # fmt: skip
    localizer = Localizer(model, cfg, record, run)
    metrics: dict[str, float] | None = None
    ddp_model.train()
    with stop_on_sigint() as interrupted:

        def should_stop(p: Progress) -> bool:
            return interrupted.is_set() or (stop_after_steps is not None and p.step >= stop_after_steps)

        while at.epoch < opt_cfg.epochs:
            if not train_epoch(ctx, at, checkpoints, should_stop):
                if interrupted.is_set():
                    raise TrainingInterrupted(
                        f"interrupted at step {at.step} (epoch {at.epoch + 1}); checkpoint saved to "
                        f"{checkpoints.last}; run the same command again to continue from it"
                    )
                return TrainResult(
                    str(run), at.step, at.epoch, at.losses, None, skipped_queries=skipped,
                    texts_encoded_ahead=encoded_ahead, text_seconds=text_seconds,
                )  # fmt: skip
            if dist_info.main and at.epoch in opt_cfg.eval_epochs and evaluate is not None:
                metrics = evaluate(localizer)
                _append_eval(run, at.epoch, metrics)
                ddp_model.train()
    elapsed = time.perf_counter() - ctx.clock
    checkpoints.save(at)
    if dist_info.main and evaluate is not None:
        metrics = evaluate(localizer)
        _append_eval(run, opt_cfg.epochs, metrics)
    new_steps = at.step - ctx.first_step
    result = TrainResult(
        str(run),
        at.step,
        opt_cfg.epochs,
        at.losses,
        metrics,
        steps_per_s=new_steps / elapsed if elapsed else 0.0,
        samples_per_s=ctx.samples_seen / elapsed if elapsed else 0.0,
        skipped_queries=skipped,
        texts_encoded_ahead=encoded_ahead,
        text_seconds=text_seconds,
    )
    if dist_info.main:
        atomic_write_json(run / "metrics.json", {k: v for k, v in asdict(result).items() if k != "losses"})
    return result


def _append_eval(run: Path, epoch: int, metrics: dict[str, float]) -> None:
    with (run / "eval.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"epoch": epoch, **metrics}) + "\n")
