"""Loading a trained run, and predicting a benchmark split with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pseudo.data import load_dataset
from pseudo.data.records import Prediction
from pseudo.errors import PseudoError
from pseudo.features import FeatureSource, open_features
from pseudo.io import check_writable
from pseudo.predictions import save_predictions
from pseudo.settings import validate
from trainers.config import DecodeConfig, RecipeConfig
from trainers.data import FeatureCache
from trainers.infer import load_events, predict
from trainers.loop import build_model, load_trainable_state, resolve_device
from trainers.model import MomentLocalizer


def run_checkpoint(run_dir: str | Path) -> Path:
    """The run's last checkpoint, or an error that says how to make one."""
    run = Path(run_dir)
    if not run.is_dir():
        raise PseudoError(f"run directory {run} does not exist; train one with `pseudo train RECIPE`")
    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise PseudoError(f"{run} has no checkpoint (expected {ckpt}); train it with `pseudo train RECIPE`")
    return ckpt


def run_features_settings(run_dir: str | Path) -> dict[str, Any]:
    """What the run's training features were (``{"kind": "video"|"captions"|"arrays", ...}``), read
    from its checkpoint without building any model."""
    state = torch.load(run_checkpoint(run_dir), map_location="cpu", weights_only=False)
    recorded = state.get("features")
    if not isinstance(recorded, dict):
        raise PseudoError(f"{run_dir} was trained by an older version that did not record its feature settings")
    return recorded


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[MomentLocalizer, RecipeConfig]:
    """The model of ``run_dir/checkpoints/last.pt`` (frozen towers rebuilt from the saved recipe)."""
    ckpt = run_checkpoint(run_dir)
    dev = resolve_device(device)
    state = torch.load(ckpt, map_location=dev, weights_only=False)
    recipe = RecipeConfig.model_validate(state["recipe"])
    model = build_model(recipe, int(state["video_dim"])).to(dev)
    load_trainable_state(model, state["model"])
    model.eval()
    return model, recipe


def predict_split(
    run_dir: str | Path,
    dataset: str,
    split: str,
    out: str | Path,
    features: str | Path | None = None,
    gt_files: Sequence[str | Path] | None = None,
    clip_seconds: float | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    proposals: str | Path | None = None,
    decode_overrides: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """Predictions for every query of a split whose video has features, written as JSONL.

    ``decode_overrides`` (``{"snap_to_steps": False}``) replace keys of the run's decode settings (they
    need no retraining); ``proposals`` (the split's proposals JSONL) gives the event boundaries that
    ``event_snap_seconds`` snaps to."""
    out = check_writable(out, "file")
    model, recipe = load_run(run_dir, device)
    dc = validate(DecodeConfig, {**recipe.decode.model_dump(), **(decode_overrides or {})}, "decode overrides")
    events = load_events(dc, proposals, f"{dataset} {split}")
    source: FeatureSource = open_features(
        features or recipe.data.eval_features or recipe.data.features, clip_seconds or recipe.data.clip_seconds
    )
    queries = load_dataset(dataset, split, files=gt_files, data_root=data_root)
    have = set(source.vids())
    kept = [q for q in queries if q.vid in have]
    if not kept:
        raise PseudoError(f"none of the {len(queries)} {dataset} {split} videos has features in the feature source")
    preds = predict(
        model, kept, FeatureCache(source), recipe.data.max_len, recipe.optim.top_k, decoding=dc, events=events
    )
    save_predictions(out, preds)
    return preds
