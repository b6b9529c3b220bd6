"""The training loop: AdamW, warm-up + cosine, AMP (bf16 on GPU), gradient clipping, seeded batch
order, atomic checkpoints, exact resume, evaluation on the recipe's benchmark, DDP via torchrun.

A run directory holds ``config.yaml`` (the resolved recipe and code version), ``log.jsonl`` (one
line per logged step), ``checkpoints/last.pt`` (+ ``step_<N>.pt`` every ``checkpoint_every``)
and ``metrics.json``. Checkpoints hold only what trains (the frozen text tower is rebuilt from the
recipe). The batch order of epoch ``e`` is a permutation seeded by ``(seed, e)``, crops are seeded
by ``(seed, e, batch)``, and the torch RNG state is saved, so a resumed run reproduces an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.errors import PseudoError
from pseudo.features import open_features
from pseudo.io import atomic_write_json, atomic_write_text
from pseudo.settings import code_version, dump_yaml
from trainers.config import RecipeConfig
from trainers.data import FeatureCache, collate, make_sample, select_labels, usable
from trainers.losses import localizer_loss
from trainers.model import MomentLocalizer
from trainers.text_towers import build_text_tower


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


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise PseudoError("the recipe asks for device: cuda but no CUDA GPU is available; set device: auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def build_model(recipe: RecipeConfig, video_dim: int) -> MomentLocalizer:
    return MomentLocalizer(build_text_tower(recipe.text), video_dim, recipe.model)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    bad = [k for k in missing if k not in frozen]
    if bad or unexpected:
        raise PseudoError(f"checkpoint does not match the model: missing {bad[:5]}, unexpected {unexpected[:5]}")


def _save(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(
    recipe: RecipeConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``recipe``; ``stop_after_steps`` ends early (as a killed run would) after a checkpoint."""
    device = resolve_device(recipe.device)
    dist_info = _init_distributed(device)
    run = Path(run_dir) if run_dir is not None else Path(recipe.out_dir) / recipe.name
    ckpt_path = run / "checkpoints" / "last.pt"
    if ckpt_path.exists() and not resume:
        raise PseudoError(f"{run} already has a checkpoint; pass --resume to continue it, or choose another run name")
    if resume and not ckpt_path.exists():
        raise PseudoError(f"--resume: {ckpt_path} does not exist")
    recipe = materialise_synthetic(recipe, run)
    opt_cfg = recipe.optim
    seed_everything(opt_cfg.seed)

    source = open_features(recipe.data.features, clip_seconds=recipe.data.clip_seconds)
    labels = load_qvh_jsonl([Path(p) for p in recipe.data.train])
    labels = select_labels(
        labels, recipe.data.max_label_seconds, recipe.data.labels_per_video, recipe.data.min_label_seconds
    )
    queries, skipped = usable(labels, source)
    cache = FeatureCache(source)
    video_dim = cache.get(queries[0].vid)[0].shape[1]
    model = build_model(recipe, video_dim).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    per_rank = math.ceil(len(queries) / dist_info.world)
    steps_per_epoch = math.ceil(per_rank / opt_cfg.batch_size)
    total = steps_per_epoch * opt_cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt_cfg.warmup_steps, total))
    ddp_model: torch.nn.Module = model
    if dist_info.world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )

    step, start_epoch, start_batch = 0, 0, 0
    losses: list[float] = []
    if resume:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        load_trainable_state(model, ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        step, start_epoch, start_batch = ck["step"], ck["epoch"], ck["batch"]
        losses = list(ck["losses"])
        torch.set_rng_state(ck["torch_rng"])
    if dist_info.main:
        meta = {"code_version": code_version(), "recipe": recipe.model_dump(mode="json")}
        atomic_write_text(run / "config.yaml", dump_yaml(meta))

    amp = opt_cfg.amp and device.type == "cuda"
    log_path = run / "log.jsonl"

    def checkpoint(epoch: int, batch: int, name: str = "last.pt") -> None:
        if not dist_info.main:
            return
        state = {
            "model": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch": batch,
            "losses": losses,
            "torch_rng": torch.get_rng_state(),
            "video_dim": video_dim,
            "recipe": recipe.model_dump(mode="json"),
        }
        _save(run / "checkpoints" / name, state)
        if name != "last.pt":
            _save(ckpt_path, state)

    metrics: dict[str, float] | None = None
    t_start, samples_seen, step0 = time.perf_counter(), 0, step
    ddp_model.train()
    for epoch in range(start_epoch, opt_cfg.epochs):
        order = np.random.default_rng([opt_cfg.seed, epoch]).permutation(len(queries))
        order = order[dist_info.rank :: dist_info.world]
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, steps_per_epoch):
            idx = order[b * opt_cfg.batch_size : (b + 1) * opt_cfg.batch_size]
            if len(idx) == 0:
                continue
            rng = np.random.default_rng([opt_cfg.seed, epoch, b])
            batch = collate([make_sample(queries[i], cache, recipe.data.max_len, rng) for i in idx]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = ddp_model(batch.video, batch.mask, batch.texts)
                loss, parts = localizer_loss(out, batch.windows)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            if opt_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, opt_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            samples_seen += len(idx)
            losses.append(float(loss.detach()))
            if dist_info.main and (step % opt_cfg.log_every == 0 or step == total):
                dt = time.perf_counter() - t_start
                rec = {
                    "step": step,
                    "epoch": epoch + 1,
                    "loss": round(losses[-1], 5),
                    **{k: round(float(v), 5) for k, v in parts.items()},
                    "lr": scheduler.get_last_lr()[0],
                    "steps_per_s": round((step - step0) / dt, 3) if dt else 0.0,
                    "samples_per_s": round(samples_seen / dt, 2) if dt else 0.0,
                }
                with log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
                if on_log is not None:
                    on_log(rec)
            if opt_cfg.checkpoint_every and step % opt_cfg.checkpoint_every == 0:
                checkpoint(epoch, b + 1, f"step_{step}.pt")
            if stop_after_steps is not None and step >= stop_after_steps:
                checkpoint(epoch, b + 1)
                return TrainResult(str(run), step, epoch, losses, None, skipped_queries=skipped)
        if dist_info.main and (epoch + 1) in opt_cfg.eval_epochs and recipe.data.eval_dataset:
            metrics = evaluate_model(model, recipe, device)
            _append_eval(run, epoch + 1, metrics)
    elapsed = time.perf_counter() - t_start
    checkpoint(opt_cfg.epochs, 0)
    if dist_info.main and recipe.data.eval_dataset:
        metrics = evaluate_model(model, recipe, device)
        _append_eval(run, opt_cfg.epochs, metrics)
    new_steps = step - step0
    result = TrainResult(
        str(run),
        step,
        opt_cfg.epochs,
        losses,
        metrics,
        steps_per_s=new_steps / elapsed if elapsed else 0.0,
        samples_per_s=samples_seen / elapsed if elapsed else 0.0,
        skipped_queries=skipped,
    )
    if dist_info.main:
        atomic_write_json(run / "metrics.json", {k: v for k, v in asdict(result).items() if k != "losses"})
    return result


def materialise_synthetic(recipe: RecipeConfig, run: Path) -> RecipeConfig:
    """For ``data.synthetic``: write the synthetic task into the run and point the recipe at it."""
    syn = recipe.data.synthetic
    if syn is None:
        return recipe
    from pseudo.synthetic import make_synthetic_dataset

    paths = make_synthetic_dataset(run / "synthetic", syn.n_train, syn.n_eval, syn.dim, syn.seed, syn.noise)
    data = recipe.data.model_copy(
        update={
            "features": str(paths.features),
            "train": [str(paths.train)],
            "eval_dataset": "jsonl",
            "eval_split": "custom",
            "eval_gt": [str(paths.eval)],
        }
    )
    return recipe.model_copy(update={"data": data})


def _append_eval(run: Path, epoch: int, metrics: dict[str, float]) -> None:
    with (run / "eval.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"epoch": epoch, **metrics}) + "\n")


def eval_queries(recipe: RecipeConfig) -> list[Any]:
    from pseudo.data import load_dataset

    assert recipe.data.eval_dataset is not None
    gts = load_dataset(recipe.data.eval_dataset, recipe.data.eval_split, files=recipe.data.eval_gt)
    return gts[: recipe.data.eval_limit] if recipe.data.eval_limit else gts


def evaluate_model(model: MomentLocalizer, recipe: RecipeConfig, device: torch.device) -> dict[str, float]:
    """Predict the recipe's eval split and score it with the dataset's own protocol."""
    from pseudo.evaluate import DEFAULT_PROTOCOL, score
    from trainers.infer import load_events, predict

    gts = eval_queries(recipe)
    source = open_features(recipe.data.eval_features or recipe.data.features, clip_seconds=recipe.data.clip_seconds)
    have = set(source.vids())
    gts = [q for q in gts if q.vid in have and q.windows]
    if not gts:
        raise PseudoError("no eval query has features; check data.eval_features")
    events = load_events(recipe.decode, recipe.data.eval_proposals, "eval")
    preds = predict(
        model,
        gts,
        FeatureCache(source),
        recipe.data.max_len,
        recipe.optim.top_k,
        device=device,
        decoding=recipe.decode,
        events=events,
    )
    assert recipe.data.eval_dataset is not None
    protocol = DEFAULT_PROTOCOL.get(recipe.data.eval_dataset, "recall")
    report, _ = score(gts, preds, protocol)
    return report.headline
