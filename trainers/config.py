"""Recipe schema: one YAML per experiment, validated into typed settings with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pseudo.backbones.base import BackboneConfig
from pseudo.settings import load_yaml_dict, validate
from trainers.model import LocalizerConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """Generate the synthetic task of :mod:`pseudo.synthetic` into the run directory."""

    n_train: Annotated[int, Field(ge=1)] = 160
    n_eval: Annotated[int, Field(ge=1)] = 40
    dim: Annotated[int, Field(ge=2)] = 32
    noise: Annotated[float, Field(ge=0)] = 0.6
    seed: int = 0


class DataConfig(_Strict):
    """Training labels (pseudo/weak JSONL, never GT windows of the eval split) and features."""

    train: list[str] = []
    features: str = ""
    synthetic: SyntheticData | None = None
    clip_seconds: Annotated[float, Field(gt=0)] = 1.0  # for folders of foreign .npy/.npz arrays
    max_len: Annotated[int, Field(ge=8)] = 128
    max_label_seconds: Annotated[float, Field(gt=0)] | None = None  # drop longer training moments
    min_label_seconds: Annotated[float, Field(ge=0)] | None = None  # drop shorter training moments
    labels_per_video: Annotated[int, Field(ge=1)] | None = None  # keep the best-scored labels of each video
    eval_dataset: str | None = None
    eval_split: str = "test"
    eval_gt: list[str] | None = None
    eval_features: str | None = None  # defaults to `features`
    eval_proposals: str | None = None  # proposals JSONL of the eval videos (for decode.event_snap_seconds)
    eval_limit: int | None = None  # score only the first N eval queries (quick runs)

    @model_validator(mode="after")
    def _needs_data(self) -> DataConfig:
        if self.synthetic is None and (not self.train or not self.features):
            raise ValueError("give data.train (label JSONL files) and data.features, or data.synthetic")
        return self


class OptimConfig(_Strict):
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    warmup_steps: Annotated[int, Field(ge=0)] = 50
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    seed: int = 0
    amp: bool = True  # bf16 autocast on a GPU; ignored on CPU
    checkpoint_every: Annotated[int, Field(ge=1)] | None = None  # steps; a checkpoint is also written at the end
    eval_epochs: list[int] = []  # evaluate after these epochs too (1-based)
    log_every: Annotated[int, Field(ge=1)] = 10
    top_k: Annotated[int, Field(ge=1)] = 10


class DecodeConfig(_Strict):
    """From per-step scores to ranked windows (inference only: changing it needs no retraining)."""

    snap_to_steps: bool = False  # round boundaries to the feature-step grid (benchmarks annotated on it)
    sigma: Annotated[float, Field(gt=0)] = 0.5  # Gaussian soft-NMS width
    pre_nms: Annotated[int, Field(ge=1)] = 200  # candidates per window kept before soft-NMS
    # move boundaries to the nearest self-similarity event boundary within this many seconds (0: off);
    # needs the split's proposals (data.eval_proposals, `pseudo predict --proposals`)
    event_snap_seconds: Annotated[float, Field(ge=0)] = 0.0


class RecipeConfig(_Strict):
    name: str
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    text: BackboneConfig = BackboneConfig(name="sentence", model="minilm")
    model: LocalizerConfig = LocalizerConfig()
    optim: OptimConfig = OptimConfig()
    decode: DecodeConfig = DecodeConfig()
    out_dir: str = "runs"


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> RecipeConfig:
    """Read a recipe; ``overrides`` are dotted keys (``{"data.features": "..."}``) applied on top."""
    data = load_yaml_dict(path)
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    recipe = validate(RecipeConfig, data, str(path))
    base = Path(path).parent
    return recipe.model_copy(update={"data": _resolve_paths(recipe.data, base)})


def _resolve_paths(data: DataConfig, base: Path) -> DataConfig:
    """Relative paths in a recipe are relative to the working directory when they exist there,
    else to the recipe's folder."""

    def fix(p: str) -> str:
        return p if Path(p).is_absolute() or Path(p).exists() or not (base / p).exists() else str(base / p)

    return data.model_copy(
        update={
            "train": [fix(p) for p in data.train],
            "features": fix(data.features) if data.features else "",
            "eval_gt": [fix(p) for p in data.eval_gt] if data.eval_gt else None,
            "eval_features": fix(data.eval_features) if data.eval_features else None,
            "eval_proposals": fix(data.eval_proposals) if data.eval_proposals else None,
        }
    )
