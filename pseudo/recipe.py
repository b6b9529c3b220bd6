"""A recipe: one YAML file that describes a whole experiment, validated into typed settings.

Sections, in the order the method runs them::

    name: qvhighlights_captions_zs
    base: [base/qvhighlights.yaml]      # layered includes, merged deeply (this file wins)
    videos:                             # sets of videos, by name; `train` makes the pseudo-labels
      train: {captions: "{data}/qvhighlights/vtggpt_captions/val.zip", durations: {dataset: qvhighlights, split: val}}
      test:  {captions: "{data}/qvhighlights/vtggpt_captions/test", durations: {dataset: qvhighlights, split: test}}
    features: {...}                     # how a set becomes features (frames + backbone, or captions + encoder)
    proposals: {...}                    # self-similarity event proposals
    labels: {kind: pseudo, captioner: {...}, queries: {...}}   # or weak (real sentences), or files
    data / text / model / optim / loss / decode   # the localizer (trainers.config)
    eval: [{dataset: qvhighlights, split: val, videos: train}, {dataset: qvhighlights, split: test, videos: test}]

A video set is a folder of videos (``video_dir``), a caption track (``captions``), or features made
elsewhere (``features``: a feature store or a folder of ``.npy``/``.npz``). ``synthetic:`` makes the
synthetic task in the work directory instead (the smallest end-to-end run).

Paths are relative to the working directory when they exist there, else to the file that names
them; ``{data}`` stands for the benchmark data root (``$PSEUDO_DATA_ROOT`` or ``shared/data``).
Unknown keys and wrong values are errors that name the key and the file that set it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proposals import ProposalConfig
from pseudo.backbones import BackboneConfig
from pseudo.captions.queries import QueryConfig
from pseudo.captions.sources import CaptionerConfig
from pseudo.data.paths import find_data_root
from pseudo.errors import PseudoError
from pseudo.settings import ConfigError, Layered, deep_merge, load_layers, validate_layered
from pseudo.stages.features import DEFAULT_ENCODER, CaptionFeaturesConfig, FeaturesConfig
from pseudo.stages.per_video import Engine
from pseudo.video import SamplingConfig
from trainers.config import (
    DataConfig,
    DecodeConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
    decode_conflict,
    loss_conflict,
)
from trainers.model import LocalizerConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(_Strict):
    """A benchmark split by name (``files``: its annotation files instead of the defaults)."""

    dataset: str
    split: str
    files: list[str] | None = None


class VideoSet(_Strict):
    """Where a set of videos comes from: exactly one of ``video_dir``, ``captions`` or ``features``."""

    video_dir: str | None = None
    captions: str | None = None
    features: str | None = None
    #: video durations from a benchmark's annotations (caption tracks do not know where a video ends)
    durations: DatasetRef | None = None
    #: only the videos of this benchmark split (their ids; nothing else of the annotations is read),
    #: e.g. the Charades-STA train videos of a folder that holds every Charades video
    only: DatasetRef | None = None
    #: seconds per row of ``features`` arrays that carry no timestamps
    clip_seconds: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [k for k in ("video_dir", "captions", "features") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of video_dir, captions or features (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> Literal["video", "captions", "features"]:
        return "video" if self.video_dir else "captions" if self.captions else "features"


class FeaturesSection(_Strict):
    """How a video set becomes features: sampled frames through an image ``backbone`` (video
    folders), or captions through a text ``encoder`` (caption tracks)."""

    sampling: SamplingConfig = SamplingConfig()
    backbone: BackboneConfig = BackboneConfig()
    clip_seconds: Annotated[float, Field(gt=0)] = 2.0
    encoder: BackboneConfig = DEFAULT_ENCODER
    dtype: Literal["float16", "float32"] | None = None  # default: float16 for frames, float32 for captions

    def for_videos(self) -> FeaturesConfig:
        return FeaturesConfig(sampling=self.sampling, backbone=self.backbone, dtype=self.dtype or "float16")

    def for_captions(self, captions: str) -> CaptionFeaturesConfig:
        from pseudo.stages.features import caption_features_config

        return caption_features_config(captions, self.clip_seconds, self.encoder, self.dtype or "float32")


class LabelsSection(_Strict):
    """What the localizer learns from.

    ``pseudo``: pseudo-queries made from the train videos' captions (``captioner``, ``queries``);
    ``weak``: the real sentences of ``sentences`` (a benchmark split; their timestamps are never
    read) each assigned to its best proposal; ``files``: label JSONL made elsewhere."""

    kind: Literal["pseudo", "weak", "files"] = "pseudo"
    captioner: CaptionerConfig = CaptionerConfig()
    queries: QueryConfig = QueryConfig()
    sentences: DatasetRef | None = None
    outside_weight: Annotated[float, Field(ge=0)] = 1.0
    files: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == "weak" and self.sentences is None:
            raise ValueError("weak labels need sentences: {dataset: ..., split: ...}")
        if self.kind == "files" and not self.files:
            raise ValueError("labels of kind files need files: [label JSONL, ...]")
        return self


class EvalTarget(_Strict):
    """A benchmark split to predict and score, on the videos of ``videos`` (a key of the recipe's
    ``videos``); ``gt`` replaces the dataset's annotation files; ``protocol`` the dataset's own metric
    protocol (``qvhighlights`` for QVHighlights-style files scored the official way); ``limit`` scores
    the first N queries."""

    dataset: str
    split: str
    videos: str = "train"
    gt: list[str] | None = None
    protocol: str | None = None
    limit: Annotated[int, Field(ge=1)] | None = None
    #: other phrasings of the split's queries (JSONL ``{qid, variants}``), fused into the predictions
    variants: str | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.split}"


class SelfTraining(_Strict):
    """Rounds of self-training: the localizer of the last round relabels its own training labels (each
    pseudo-query gets the windows the localizer finds for it on its video, decoded as ``decode`` says,
    no query variants), and a new localizer trains on them. ``max_windows``: windows kept per label,
    the best first and the others while their score is at least ``ratio`` times the best's."""

    rounds: Annotated[int, Field(ge=0)] = 0
    max_windows: Annotated[int, Field(ge=1)] = 1
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.9


class Ensemble(_Strict):
    """``members`` localizers trained alike but for their seed (``optim.seed``, then ``optim.seed +
    seed_stride``, ``+ 2 * seed_stride``, ...), asked together: their per-step outputs are averaged
    before decoding. Member 0 is the run the recipe trains without an ensemble, so raising ``members``
    trains only the others; the stride keeps the members of recipes whose seeds differ by less than
    it apart (seeds 0, 1 and 2 with 3 members: runs 0/100/200, 1/101/201 and 2/102/202)."""

    members: Annotated[int, Field(ge=1)] = 1
    seed_stride: Annotated[int, Field(ge=1)] = 100

    def seeds(self, seed: int) -> list[int]:
        """The members' seeds for a recipe whose ``optim.seed`` is ``seed`` (member 0's first)."""
        return [seed + m * self.seed_stride for m in range(self.members)]


class SyntheticData(_Strict):
    """The synthetic task of :mod:`pseudo.data.synthetic`, made in the work directory."""

    n_train: Annotated[int, Field(ge=1)] = 160
    n_eval: Annotated[int, Field(ge=1)] = 40
    dim: Annotated[int, Field(ge=2)] = 32
    noise: Annotated[float, Field(ge=0)] = 0.6
    seed: int = 0


class Recipe(_Strict):
    name: str
    work_dir: str | None = None  # default: runs/<name>
    device: Literal["auto", "cpu", "cuda"] = "auto"
    videos: dict[str, VideoSet] = {}
    synthetic: SyntheticData | None = None
    features: FeaturesSection = FeaturesSection()
    proposals: ProposalConfig = ProposalConfig()
    labels: LabelsSection = LabelsSection()
    data: DataConfig = DataConfig()
    text: BackboneConfig = BackboneConfig(name="sentence", model="minilm")
    model: LocalizerConfig = LocalizerConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    decode: DecodeConfig = DecodeConfig()
    self_training: SelfTraining = SelfTraining()
    ensemble: Ensemble = Ensemble()
    #: where the per-video stages run (local, or a Ray cluster); never changes their outputs
    engine: Engine = Engine()
    eval: list[EvalTarget] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # settings that cannot work together fail here, before any stage runs (not hours later in train/predict)
        for conflict in (loss_conflict(self.model, self.loss), decode_conflict(self.model, self.decode)):
            if conflict:
                raise ValueError(conflict)
        if self.synthetic is not None:
            return self
        if "train" not in self.videos:
            raise ValueError("videos needs a `train` set (the videos the labels are made from), or give synthetic")
        for target in self.eval:
            if target.videos not in self.videos:
                raise ValueError(f"eval {target.name}: videos {target.videos!r} is not a key of videos")
        if self.labels.kind == "pseudo" and self.videos["train"].kind == "features":
            cap = self.labels.captioner
            if not (cap.captions or cap.video_dir):
                raise ValueError(
                    "pseudo-labels from features made elsewhere need the captioner's source "
                    "(labels.captioner.captions or .video_dir)"
                )
        return self

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            device=self.device,
            data=self.data,
            text=self.text,
            model=self.model,
            optim=self.optim,
            loss=self.loss,
            decode=self.decode,
        )

    def work(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("runs") / self.name


# --- loading ------------------------------------------------------------------------------------------------

#: settings that hold paths, as dotted patterns (``*`` matches any key or list index)
PATH_KEYS = (
    "videos.*.video_dir",
    "videos.*.captions",
    "videos.*.features",
    "labels.files.*",
    "labels.captioner.captions",
    "labels.captioner.video_dir",
    "labels.captioner.cache",
    "eval.*.gt.*",
    "eval.*.variants",
    "videos.*.durations.files.*",
    "videos.*.only.files.*",
    "labels.sentences.files.*",
)

DATA_ROOT = "{data}"


def resolve_path(value: str, base: Path) -> str:
    """``{data}/x`` under the benchmark data root; a relative path as it is when it exists from the
    working directory, else relative to ``base`` (the folder of the file that names it)."""
    if value.startswith(DATA_ROOT):
        return str(find_data_root() / value[len(DATA_ROOT) :].lstrip("/"))
    p = Path(value)
    if p.is_absolute() or p.exists() or not (base / p).exists():
        return value
    return str(base / p)


def _resolve(node: Any, pattern: list[str], base: Path) -> Any:
    if not pattern:
        return resolve_path(node, base) if isinstance(node, str) else node
    head, rest = pattern[0], pattern[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        return {**node, **{k: _resolve(node[k], rest, base) for k in keys}}
    if isinstance(node, list) and head == "*":
        return [_resolve(v, rest, base) for v in node]
    return node


def _prepare(layer: dict[str, Any], path: Path) -> dict[str, Any]:
    for pattern in PATH_KEYS:
        layer = _resolve(layer, pattern.split("."), path.parent)
    return layer


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``data`` with ``a.b.c`` set to ``value`` (missing mappings are created)."""
    node: dict[str, Any] = {}
    cur = node
    *parents, leaf = key.split(".")
    for p in parents:
        cur[p] = {}
        cur = cur[p]
    cur[leaf] = value
    return deep_merge(data, node)


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as YAML (``epochs=4``, ``model.prompt=hand``, ``x=[1,2]``)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set needs key=value (e.g. optim.epochs=4), got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip(), value


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe and its bases; ``overrides`` are dotted keys (``{"optim.epochs": 4}``) on top."""
    p = Path(path)
    if not p.is_file():
        raise PseudoError(f"recipe {p} does not exist")
    layered = load_layers(p, _prepare)
    data = layered.data
    for key, value in (overrides or {}).items():
        data = set_dotted(data, key, value)
    return validate_layered(Recipe, Layered(data, layered.origins, layered.files))
