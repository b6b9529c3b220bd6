"""The whole method from one recipe: features -> proposals -> labels -> train -> predict -> eval.

:class:`Pipeline` turns a :class:`~pseudo.recipe.Recipe` into steps, each keyed by the hash of
everything that makes its output (its settings and its inputs' hashes). Outputs live in the work
directory under names that carry that hash, so a step whose output exists and is complete is
skipped, a step whose settings or inputs changed is built anew beside the old output (which is kept:
changing a setting back costs nothing), and the log says which, naming the settings that changed::

    <work>/features/<set>-<hash>/           feature stores
    <work>/proposals/<set>-<hash>.jsonl     proposals
    <work>/labels/<kind>-<hash>.jsonl       pseudo (or weak) labels
    <work>/runs/<hash>/                     the trained localizer (checkpoints, log, config.yaml)
    <work>/predictions/<dataset>_<split>-<hash>.jsonl
    <work>/metrics/<dataset>_<split>-<hash>.json
    <work>/stages.json                      the recipe's finished steps: output, hash and settings
    <work>/recipe.yaml                      the resolved recipe and the code version

A step is complete when its marker ``<output>.stage.json`` exists (written last). The CLI, the
demo, the benchmarks and the Makefile all run experiments through this module.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pseudo.backbones.base import Device
from pseudo.console import stderr_console
from pseudo.data import load_dataset
from pseudo.data.predictions import load_predictions
from pseudo.data.store import FeatureSource, open_features
from pseudo.data.synthetic import make_synthetic_dataset
from pseudo.data.variants import load_variants
from pseudo.errors import PseudoError
from pseudo.evaluate import DEFAULT_PROTOCOL, score
from pseudo.io import atomic_write_json, atomic_write_text, read_json
from pseudo.progress import progress_bar
from pseudo.recipe import DatasetRef, Ensemble, EvalTarget, Recipe, VideoSet
from pseudo.settings import M, code_version, diff_settings, dump_yaml, load_yaml_dict, settings_hash, validate
from pseudo.stages.features import build_caption_features, build_features, caption_texts, video_set_fingerprint
from pseudo.stages.labels import LabelsConfig, label_stats, run_captions, run_weak
from pseudo.stages.localize import load_events, predict_split, relabel, split_queries, train_localizer
from pseudo.stages.per_video import RunSummary
from pseudo.stages.proposals import run_proposals
from trainers.config import DataConfig, DecodeConfig
from trainers.localizer import Localizer, run_checkpoint
from trainers.text_towers import TowerPool

STAGES = ("features", "proposals", "labels", "train", "predict", "eval")
SHORT_HASH = 10
#: ``data`` settings added after runs were cached: left out of a run's identity at their defaults
ADDED_DATA_SETTINGS = ("hide_query_steps",)
#: ``decode`` settings added after predictions were cached: left out of a prediction's identity at their defaults
ADDED_DECODE_SETTINGS = ("caption_feedback",)


def without_added_defaults(dumped: dict[str, Any], model: type[BaseModel], added: Sequence[str]) -> dict[str, Any]:
    """``dumped`` (a ``model`` dumped to JSON) less the settings of ``added`` that hold their default: settings
    added after artefacts were cached count in an identity only when set, so those artefacts stay current."""
    fields = model.model_fields
    return {k: v for k, v in dumped.items() if not (k in added and v == fields[k].default)}


def file_digest(paths: Sequence[str | Path]) -> str:
    """The contents of files (not their names: the same file found through another path is the same)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()[:16]


def folder_digest(folder: str | Path) -> str:
    """Names, sizes and modification times of a folder's files (for features made elsewhere)."""
    h = hashlib.sha256()
    root = Path(folder)
    if not root.exists():
        raise PseudoError(f"features folder {root} does not exist")
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            h.update(f"{p.relative_to(root)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _ref_key(ref: DatasetRef | None) -> dict[str, Any] | None:
    """A benchmark split named in a recipe, as it enters a hash (its files by content)."""
    if ref is None:
        return None
    return {"dataset": ref.dataset, "split": ref.split, "files": file_digest(ref.files) if ref.files else None}


def marker(out: Path) -> Path:
    return out.with_name(out.name + ".stage.json")


@dataclass
class Step:
    """One piece of work: its stage, a key unique in the plan, the hash of what makes it, where its
    output goes, the settings the hash covers (to say what changed), and how to do it."""

    stage: str
    key: str
    hash: str
    out: Path
    settings: dict[str, Any]
    run: Callable[[], dict[str, Any]]
    label: str = ""
    #: an input made elsewhere (features, label files): never built, never marked
    given: bool = False

    @property
    def done(self) -> bool:
        if self.given:
            return self.out.exists()
        m = marker(self.out)
        if not m.is_file():
            return False
        try:
            return bool(read_json(m).get("hash") == self.hash)
        except PseudoError:
            return False


@dataclass
class StepReport:
    key: str
    stage: str
    status: str  # "current" (skipped), "built", "planned" (dry run / not reached)
    out: str
    hash: str
    seconds: float = 0.0
    why: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    work: Path
    steps: list[StepReport]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path | None:
        return self.outputs.get("train")

    def to_json(self) -> dict[str, Any]:
        return {
            "work": str(self.work),
            "steps": [s.__dict__ for s in self.steps],
            "metrics": self.metrics,
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }


def _short(h: str) -> str:
    return h[:SHORT_HASH]


class Pipeline:
    """Plans and runs a recipe's steps in its work directory."""

    def __init__(
        self,
        recipe: Recipe,
        work: str | Path | None = None,
        log: Callable[[str], None] | None = None,
        on_train_log: Callable[[dict[str, Any]], None] | None = None,
        data_root: str | Path | None = None,
        towers: TowerPool | None = None,
    ) -> None:
        self.recipe = recipe
        #: frozen text towers shared with other pipelines of this process (the seeds of a bench): a
        #: text one of them encoded is not encoded again
        self.towers = towers
        self.work = Path(work) if work is not None else recipe.work()
        self.log = log or (lambda msg: stderr_console().print(msg))
        self.on_train_log = on_train_log
        self.data_root = data_root
        self.outputs: dict[str, Path] = {}
        self.hashes: dict[str, str] = {}
        self.label_files: list[str] = []
        self._localizer: Localizer | None = None
        self.steps = self._plan()

    # --- the plan --------------------------------------------------------------------------------------

    def _add(self, steps: list[Step], step: Step) -> Step:
        steps.append(step)
        self.outputs[step.key] = step.out
        self.hashes[step.key] = step.hash
        return step

    def _video_sets(self) -> dict[str, VideoSet]:
        r = self.recipe
        if r.synthetic is not None:
            return {"train": VideoSet(features=str(self.work / "synthetic" / "features"))}
        return dict(r.videos)

    def _targets(self) -> list[EvalTarget]:
        r = self.recipe
        if r.synthetic is not None and not r.eval:
            return [
                EvalTarget(
                    dataset="jsonl", split="custom", videos="train", gt=[str(self._synthetic_dir() / "eval.jsonl")]
                )
            ]
        return list(r.eval)

    def _synthetic_dir(self) -> Path:
        return self.work / "synthetic"

    def _plan(self) -> list[Step]:
        r = self.recipe
        steps: list[Step] = []
        sets = self._video_sets()
        targets = self._targets()
        needs_proposals = {"train"} if r.labels.kind in ("pseudo", "weak") and r.synthetic is None else set()
        if r.decode.event_snap_seconds:
            needs_proposals |= {t.videos for t in targets}
        used = {"train"} | {t.videos for t in targets}
        if r.synthetic is not None:
            self._add(steps, self._synthetic_step())
        for name in sorted(used, key=lambda n: (n != "train", n)):
            self._add(steps, self._features_step(name, sets[name]))
        for name in sorted(needs_proposals, key=lambda n: (n != "train", n)):
            self._add(steps, self._proposals_step(name, sets[name]))
        self._add(steps, self._labels_step(sets["train"]))
        for round_ in range(self.recipe.self_training.rounds):
            self._add(steps, self._train_step(targets, round_=round_))
            self._add(steps, self._relabel_step(round_ + 1))
        self._add(steps, self._train_step(targets, round_=self.recipe.self_training.rounds))
        for member in range(1, self.recipe.ensemble.members):
            self._add(steps, self._train_step(targets, round_=self.recipe.self_training.rounds, member=member))
        for target in targets:
            self._add(steps, self._predict_step(target))
            self._add(steps, self._eval_step(target))
        return steps

    def _synthetic_step(self) -> Step:
        syn = self.recipe.synthetic
        assert syn is not None
        settings = syn.model_dump(mode="json")
        h = settings_hash(settings)
        out = self._synthetic_dir()

        def run() -> dict[str, Any]:
            make_synthetic_dataset(out, syn.n_train, syn.n_eval, syn.dim, syn.seed, syn.noise)
            return {"train": syn.n_train, "eval": syn.n_eval}

        return Step("features", "features:synthetic", h, out, {"synthetic": settings}, run, "synthetic task")

    def _features_step(self, name: str, vs: VideoSet) -> Step:
        r = self.recipe
        key = f"features:{name}"
        if vs.kind == "features":
            assert vs.features is not None
            given = Path(vs.features)
            if r.synthetic is not None:  # made by the synthetic step: its settings are the content
                h = settings_hash(self.hashes["features:synthetic"], "features")
            else:
                h = settings_hash("given", str(given.resolve()), folder_digest(given))
            return Step(
                "features", key, h, given, {"features": str(given)}, lambda: {}, f"features ({name}, given)", given=True
            )
        only, durations = _ref_key(vs.only), _ref_key(vs.durations)
        if vs.kind == "captions":
            assert vs.captions is not None
            cfg = r.features.for_captions(vs.captions)
            h = settings_hash(cfg.identity(), durations, only)
            out = self.work / "features" / f"{name}-{_short(h)}"

            def run_captions_features() -> dict[str, Any]:
                dur = None
                if vs.durations is not None:
                    ref = vs.durations
                    queries = load_dataset(ref.dataset, ref.split, files=ref.files, data_root=self.data_root)
                    dur = {q.vid: q.duration for q in queries}
                with progress_bar(f"caption features ({name})") as bar:
                    summary = build_caption_features(
                        cfg,
                        out,
                        vids=self._only(vs),
                        durations=dur,
                        on_start=bar.start,
                        on_video=bar.advance,
                        engine=self.recipe.engine,
                    )
                return _summary(summary, f"features ({name})")

            settings = {"features": cfg.identity(), "durations": durations, "only": only}
            return Step("features", key, h, out, settings, run_captions_features, f"features ({name})")
        assert vs.video_dir is not None
        vcfg = r.features.for_videos()
        h = settings_hash(vcfg.identity(), video_set_fingerprint(vs.video_dir), only)
        out = self.work / "features" / f"{name}-{_short(h)}"

        def run_video_features() -> dict[str, Any]:
            with progress_bar(f"features ({name})") as bar:
                summary = build_features(
                    vs.video_dir or "",
                    out,
                    vcfg,
                    vids=self._only(vs),
                    on_start=bar.start,
                    on_video=bar.advance,
                    engine=self.recipe.engine,
                )
            return _summary(summary, f"features ({name})")

        vsettings: dict[str, Any] = {"features": vcfg.identity(), "videos": vs.video_dir, "only": only}
        return Step("features", key, h, out, vsettings, run_video_features, f"features ({name})")

    def _only(self, vs: VideoSet) -> list[str] | None:
        if vs.only is None:
            return None
        ref = vs.only
        return sorted({q.vid for q in load_dataset(ref.dataset, ref.split, files=ref.files, data_root=self.data_root)})

    def features_source(self, name: str) -> FeatureSource:
        vs = self._video_sets()[name]
        return open_features(self.outputs[f"features:{name}"], clip_seconds=vs.clip_seconds)

    def _proposals_step(self, name: str, vs: VideoSet) -> Step:
        cfg = self.recipe.proposals
        fh = self.hashes[f"features:{name}"]
        h = settings_hash(cfg, fh)
        out = self.work / "proposals" / f"{name}-{_short(h)}.jsonl"

        def run() -> dict[str, Any]:
            source = self.features_source(name)
            provenance = {"features_dir": str(self.outputs[f"features:{name}"])}
            with progress_bar(f"proposals ({name})") as bar:
                summary = run_proposals(
                    source,
                    cfg,
                    out,
                    provenance=provenance,
                    on_start=bar.start,
                    on_video=bar.advance,
                    engine=self.recipe.engine,
                )
            return _summary(summary, f"proposals ({name})")

        return Step(
            "proposals",
            f"proposals:{name}",
            h,
            out,
            {"proposals": cfg.model_dump(mode="json")},
            run,
            f"proposals ({name})",
        )

    def _labels_cfg(self, vs: VideoSet) -> LabelsConfig:
        """The captioner defaults to the train videos themselves (their caption track, or their files)."""
        lab = self.recipe.labels
        cap = lab.captioner
        fill: dict[str, Any] = {}
        if cap.name == "external" and not cap.captions and vs.captions:
            fill = {"captions": vs.captions, "clip_seconds": self.recipe.features.clip_seconds}
        if cap.name == "blip" and not cap.video_dir and vs.video_dir:
            fill = {"video_dir": vs.video_dir}
            if not cap.cache:
                fill["cache"] = str(self.work / "caption_cache")
        return LabelsConfig(captioner=cap.model_copy(update=fill), queries=lab.queries)

    def _labels_step(self, vs: VideoSet) -> Step:
        lab = self.recipe.labels
        if self.recipe.synthetic is not None or lab.kind == "files":
            files = (
                [str(self._synthetic_dir() / "train.jsonl")] if self.recipe.synthetic is not None else list(lab.files)
            )
            if self.recipe.synthetic is not None:
                h = settings_hash(self.hashes["features:synthetic"], "labels")
            else:
                h = settings_hash("files", file_digest(files))
            self.label_files = files
            out = Path(files[0])
            return Step("labels", "labels", h, out, {"files": files}, lambda: {}, "labels (given)", given=True)
        features_h = self.hashes["features:train"]
        proposals_h = self.hashes["proposals:train"]
        props_path = self.outputs["proposals:train"]
        if lab.kind == "weak":
            assert lab.sentences is not None
            ref = lab.sentences
            settings = {"kind": "weak", "sentences": ref.model_dump(), "outside_weight": lab.outside_weight}
            h = settings_hash(settings, proposals_h, features_h)
            out = self.work / "labels" / f"weak-{_short(h)}.jsonl"

            def run_weak_labels() -> dict[str, Any]:
                sents = load_dataset(ref.dataset, ref.split, files=ref.files, data_root=self.data_root)
                summary, labels = run_weak(sents, props_path, self.features_source("train"), out, lab.outside_weight)
                return {**_summary(summary, "labels"), "labels": len(labels)}

            self.label_files = [str(out)]
            return Step("labels", "labels", h, out, settings, run_weak_labels, "labels (weak)")
        cfg = self._labels_cfg(vs)
        settings = {"kind": "pseudo", **cfg.model_dump(mode="json")}
        h = settings_hash(settings, proposals_h, features_h)
        out = self.work / "labels" / f"pseudo-{_short(h)}.jsonl"

        def run_pseudo_labels() -> dict[str, Any]:
            with progress_bar("pseudo-labels") as bar:
                summary, labels = run_captions(
                    props_path,
                    out,
                    cfg,
                    self.features_source("train"),
                    on_start=bar.start,
                    on_video=bar.advance,
                    engine=self.recipe.engine,
                )
            stats = label_stats(labels)
            return {
                **_summary(summary, "labels"),
                "labels": stats["queries"],
                "mean_query_words": stats["mean_query_words"],
            }

        self.label_files = [str(out)]
        return Step("labels", "labels", h, out, settings, run_pseudo_labels, "labels (pseudo)")

    def member_keys(self) -> list[str]:
        """The plan keys of the final training step of each member of the recipe's ensemble (``train``
        first: one key without an ensemble)."""
        return ["train", *(f"train:member{m}" for m in range(1, self.recipe.ensemble.members))]

    def _member_recipe(self, member: int) -> Recipe:
        """The recipe as member ``member`` of its ensemble trains: its seed moved on by the stride."""
        if not member:
            return self.recipe
        seed = self.recipe.ensemble.seeds(self.recipe.optim.seed)[member]
        return self.recipe.model_copy(update={"optim": self.recipe.optim.model_copy(update={"seed": seed})})

    def train_identity(self, member: int = 0) -> dict[str, Any]:
        """What makes the trained weights (decoding and logging settings do not)."""
        cfg = self._member_recipe(member).train_config().model_dump(mode="json")
        cfg.pop("decode")
        cfg.pop("device")
        for k in ("log_every", "checkpoint_every", "eval_epochs", "top_k"):
            cfg["optim"].pop(k)
        cfg["data"] = without_added_defaults(cfg["data"], DataConfig, ADDED_DATA_SETTINGS)
        return cfg

    def _relabel_step(self, round_: int) -> Step:
        """Round ``round_`` of self-training: the previous round's localizer relabels its labels."""
        st = self.recipe.self_training
        settings = {
            "round": round_,
            "max_windows": st.max_windows,
            "ratio": st.ratio,
            "decode": self.recipe.decode.model_dump(mode="json"),
        }
        h = settings_hash(settings, self.hashes[f"train:round{round_ - 1}"])
        out = self.work / "labels" / f"self-{_short(h)}.jsonl"
        previous_files = list(self.label_files)
        run_dir = self.outputs[f"train:round{round_ - 1}"]

        def run() -> dict[str, Any]:
            localizer = Localizer.from_run(run_dir, self.recipe.device, self.towers).with_decode(self.recipe.decode)
            with progress_bar(f"self-training labels (round {round_})") as bar:
                labels = relabel(
                    localizer,
                    previous_files,
                    self.outputs["features:train"],
                    out,
                    events=self._events("train"),
                    max_windows=st.max_windows,
                    ratio=st.ratio,
                    clip_seconds=self._video_sets()["train"].clip_seconds,
                    select=round_ == 1,
                    on_start=bar.start,
                    on_query=bar.advance,
                    log=self.log,
                )
            return {
                "labels": len(labels),
                "windows_per_label": round(sum(len(q.windows) for q in labels) / max(1, len(labels)), 3),
            }

        self.label_files = [str(out)]
        self.hashes["labels"] = h
        return Step("train", f"labels:round{round_}", h, out, settings, run, f"self-training labels (round {round_})")

    def _train_step(self, targets: Sequence[EvalTarget], round_: int = 0, member: int = 0) -> Step:
        ident = self.train_identity(member)
        h = settings_hash(ident, self.hashes["labels"], self.hashes["features:train"])
        out = self.work / "runs" / _short(h)
        final = round_ == self.recipe.self_training.rounds
        label_files = list(self.label_files)
        train_config = self._member_recipe(member).train_config()

        def run() -> dict[str, Any]:
            resume = (out / "checkpoints" / "last.pt").is_file()
            if resume:
                self.log(f"train: resuming the unfinished run in {out}")
            evaluate_cb = self._eval_callback(targets[0]) if targets and self.recipe.optim.eval_epochs else None
            result = train_localizer(
                train_config,
                label_files,
                self.outputs["features:train"],
                out,
                resume=resume,
                clip_seconds=self._video_sets()["train"].clip_seconds,
                evaluate=evaluate_cb if final else None,
                on_log=self.on_train_log,
                select=round_ == 0,
                towers=self.towers,
            )
            return {
                "steps": result.steps,
                "steps_per_s": round(result.steps_per_s, 3),
                "skipped_labels": result.skipped_queries,
            }

        if not final:
            key = f"train:round{round_}"
            self.outputs[key], self.hashes[key] = out, h
            return Step("train", key, h, out, {"train": ident, "round": round_}, run, f"train (round {round_})")
        if member:
            label = f"train (ensemble member {member}, seed {train_config.optim.seed})"
            return Step("train", f"train:member{member}", h, out, {"train": ident}, run, label)
        return Step("train", "train", h, out, {"train": ident}, run, "train")

    def localizer(self) -> Localizer:
        if self._localizer is None:
            # the recipe's decoding, not the checkpoint's (a decode-only change needs no retraining)
            members = [Localizer.from_run(self.outputs[k], self.recipe.device, self.towers) for k in self.member_keys()]
            self._localizer = Localizer.ensemble(members).with_decode(self.recipe.decode)
        return self._localizer

    def _events(self, videos: str) -> Any:
        """The event boundaries of a video set, when the recipe's decoding snaps to them."""
        key = f"proposals:{videos}"
        return load_events(self.outputs[key]) if self.recipe.decode.event_snap_seconds and key in self.outputs else None

    def _eval_callback(self, target: EvalTarget) -> Callable[[Localizer], dict[str, float]]:
        def score_now(localizer: Localizer) -> dict[str, float]:
            source = self.features_source(target.videos)
            gts = [
                q
                for q in split_queries(target.dataset, target.split, source, target.gt, self.data_root, target.limit)
                if q.windows
            ]
            extra = load_variants(target.variants, gts) if target.variants else None
            preds = localizer.predict(
                source, gts, events=self._events(target.videos), variants=extra, step_texts=caption_texts(source)
            )
            report, _ = score(gts, preds, target.protocol or DEFAULT_PROTOCOL.get(target.dataset, "recall"))
            return report.headline

        return score_now

    def _predict_step(self, target: EvalTarget) -> Step:
        r = self.recipe
        decode = without_added_defaults(r.decode.model_dump(mode="json"), DecodeConfig, ADDED_DECODE_SETTINGS)
        settings = {
            "target": target.model_dump(mode="json"),
            "decode": decode,
            "decode_from": "recipe",  # predictions made before the recipe's decode was applied are stale
            "top_k": r.optim.top_k,
        }
        inputs = [*(self.hashes[k] for k in self.member_keys()), self.hashes[f"features:{target.videos}"]]
        if r.decode.event_snap_seconds:
            inputs.append(self.hashes[f"proposals:{target.videos}"])
        if r.synthetic is not None:
            inputs.append(self.hashes["features:synthetic"])  # the eval files are made by the pipeline
        elif target.gt:
            inputs.append(file_digest(target.gt))
        if target.variants:
            inputs.append(file_digest([target.variants]))
        h = settings_hash(settings, inputs)
        out = self.work / "predictions" / f"{target.name}-{_short(h)}.jsonl"

        def run() -> dict[str, Any]:
            with progress_bar(f"predict ({target.dataset} {target.split})") as bar:
                preds = predict_split(
                    self.localizer(),
                    target.dataset,
                    target.split,
                    self.features_source(target.videos),
                    out,
                    events=self._events(target.videos),
                    gt_files=target.gt,
                    data_root=self.data_root,
                    limit=target.limit,
                    variants=target.variants,
                    on_start=bar.start,
                    on_query=bar.advance,
                    log=self.log,
                )
            return {"predictions": len(preds)}

        return Step(
            "predict", f"predict:{target.name}", h, out, settings, run, f"predict ({target.dataset} {target.split})"
        )

    def _eval_step(self, target: EvalTarget) -> Step:
        h = settings_hash(self.hashes[f"predict:{target.name}"], "eval")
        out = self.work / "metrics" / f"{target.name}-{_short(h)}.json"
        preds = self.outputs[f"predict:{target.name}"]

        def run() -> dict[str, Any]:
            gts = load_dataset(target.dataset, target.split, files=target.gt, data_root=self.data_root)
            predictions = load_predictions(preds)
            predicted = {str(p.qid) for p in predictions}
            kept = [q for q in gts if str(q.qid) in predicted]
            protocol = target.protocol or DEFAULT_PROTOCOL.get(target.dataset, "recall")
            report, warnings = score(kept, predictions, protocol)
            missing = len(gts) - len(kept)
            if missing and not target.limit:
                self.log(
                    f"warning: {target.dataset} {target.split}: {missing} of {len(gts)} queries have no prediction "
                    "(their videos have no features) and are not scored"
                )
            result = {"metrics": report.headline, "scored": len(kept), "total": len(gts), "protocol": protocol,
                      "warnings": warnings, "details": report.details}  # fmt: skip
            atomic_write_json(out, result)
            return {k: v for k, v in result.items() if k != "details"}

        return Step(
            "eval",
            f"eval:{target.name}",
            h,
            out,
            {"target": target.model_dump(mode="json")},
            run,
            f"eval ({target.dataset} {target.split})",
        )

    # --- running -----------------------------------------------------------------------------------------

    def _previous(self) -> dict[str, Any]:
        """Every step the index knows, current or from earlier plans (to say what changed)."""
        index = self.work / "stages.json"
        try:
            data = read_json(index) if index.is_file() else {}
        except PseudoError:
            return {}
        return {**data.get("earlier", {}), **data.get("steps", {})}

    def why(self, step: Step, previous: dict[str, Any]) -> str:
        """Why a step will be built: new, or which of its settings or inputs changed."""
        old = previous.get(step.key)
        if old is None:
            return "new"
        if old.get("hash") == step.hash:
            return "its output is missing or unfinished"
        changed = diff_settings(old.get("settings", {}), step.settings)
        if changed.startswith("(no difference"):
            return "its inputs changed"
        return f"settings changed: {changed}"

    def plan(self, until: str | None = None) -> list[tuple[Step, str]]:
        """Each step to run (up to stage ``until``) with what will happen to it."""
        last = STAGES.index(until) if until else len(STAGES) - 1
        previous = self._previous()
        out = []
        for step in self.steps:
            if STAGES.index(step.stage) > last:
                continue
            out.append((step, "current" if step.done else f"build ({self.why(step, previous)})"))
        return out

    def run(self, until: str | None = None, dry_run: bool = False) -> PipelineResult:
        if until is not None and until not in STAGES:
            raise PseudoError(f"--until must be one of {', '.join(STAGES)}, got {until!r}")
        planned = self.plan(until)
        reports: list[StepReport] = []
        if dry_run:
            for step, what in planned:
                self.log(f"{step.label or step.key}: {what} -> {step.out}")
                reports.append(StepReport(step.key, step.stage, "planned", str(step.out), step.hash, why=what))
            return PipelineResult(self.work, reports, outputs=dict(self.outputs))
        self._check_distributed(planned)
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.work / "recipe.yaml",
            dump_yaml({"code_version": code_version(), "recipe": self.recipe.model_dump(mode="json")}),
        )
        previous = self._previous()
        self._write_index(previous)
        metrics: dict[str, dict[str, float]] = {}
        for step, what in planned:
            name = step.label or step.key
            if step.done:
                self.log(f"{name}: current, skipped ({step.out})")
                summary = {} if step.given else read_json(marker(step.out)).get("summary", {})
                reports.append(StepReport(step.key, step.stage, "current", str(step.out), step.hash, summary=summary))
            elif step.given:
                raise PseudoError(f"{name}: {step.out} does not exist")
            elif not self._is_main() and step.stage in ("predict", "eval"):
                continue
            else:
                self.log(f"{name}: building ({self.why(step, previous)}) -> {step.out}")
                t0 = time.perf_counter()
                summary = step.run()
                seconds = time.perf_counter() - t0
                if self._is_main():
                    atomic_write_json(
                        marker(step.out),
                        {"stage": step.stage, "key": step.key, "hash": step.hash, "settings": step.settings,
                         "summary": summary, "seconds": round(seconds, 2), "code_version": code_version()},
                    )  # fmt: skip
                    self._write_index(previous)
                reports.append(
                    StepReport(step.key, step.stage, "built", str(step.out), step.hash, seconds, what, summary)
                )
            if step.stage == "eval":
                metrics[step.key.split(":", 1)[1]] = dict(summary.get("metrics", {}))
        return PipelineResult(self.work, reports, metrics, dict(self.outputs))

    def _write_index(self, previous: dict[str, Any]) -> None:
        """``stages.json``: under ``steps`` exactly this recipe's finished steps (what `pseudo eval --work`
        and `--run WORK` read: a run that goes back to an earlier setting, with every step current, points
        them back at that setting's outputs); under ``earlier`` the other entries it knew, only to say what
        changed when they are rebuilt."""
        if not self._is_main():
            return
        steps = {
            s.key: {"hash": s.hash, "out": str(s.out), "settings": s.settings, "stage": s.stage}
            for s in self.steps
            if s.done
        }
        earlier = {k: v for k, v in previous.items() if k not in steps}
        atomic_write_json(self.work / "stages.json", {"recipe": self.recipe.name, "steps": steps, "earlier": earlier})

    @staticmethod
    def _is_main() -> bool:
        return int(os.environ.get("RANK", "0")) == 0

    def _check_distributed(self, planned: list[tuple[Step, str]]) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        missing = [s.key for s, _ in planned if STAGES.index(s.stage) < STAGES.index("train") and not s.done]
        if missing:
            raise PseudoError(
                f"under torchrun every stage before training must already be built (missing: {', '.join(missing)}); "
                "run `pseudo train RECIPE --until labels` once in one process first"
            )


def _summary(summary: RunSummary, title: str) -> dict[str, Any]:
    """A stage summary as JSON; producing nothing although there was work is an error."""
    out = summary.to_json()
    if summary.failed and not summary.done and not summary.skipped:
        first = "; ".join(f"{v}: {e}" for v, e in list(summary.failed.items())[:3])
        raise PseudoError(f"{title}: every one of the {len(summary.failed)} videos failed ({first})")
    return out


def current_output(work: str | Path, key: str) -> tuple[Path | None, bool]:
    """The output of step ``key`` (``train``, ``predict:D_S``) that the work directory's recipe finished
    for its current settings, else None; and whether the index knows the step only for other settings
    (an earlier run's, not the recipe's current ones)."""
    index = Path(work) / "stages.json"
    if not index.is_file():
        raise PseudoError(f"{work} is not a `pseudo train` work directory (no stages.json)")
    data = read_json(index)
    step = data.get("steps", {}).get(key)
    if step and Path(step["out"]).exists():
        return Path(step["out"]), False
    return None, key in data.get("earlier", {})


def current_predictions(work: str | Path, dataset: str, split: str) -> Path:
    """The predictions of ``dataset``/``split`` that the work directory's latest run made."""
    out, stale = current_output(work, f"predict:{dataset}_{split}")
    if out is not None:
        return out
    if stale:
        raise PseudoError(
            f"{work} has no predictions of {dataset} {split} for its recipe's current settings (its last run "
            "stopped before predicting, or they were removed); run `pseudo train RECIPE` to make them"
        )
    raise PseudoError(f"{work} has no predictions of {dataset} {split}; is it one of the recipe's eval targets?")


def load_run(path: str | Path, device: Device = "auto", log: Callable[[str], None] | None = None) -> Localizer:
    """The localizer that ``--run PATH`` names, decoding as the pipeline would.

    A work directory of ``pseudo train`` gives its current trained run, decoding with the work
    directory's recipe (``recipe.yaml``): the pipeline's own predictions and this one agree even after a
    decode-only change of the recipe, which needs no retraining. A run directory decodes with the settings
    it was trained with; when its work directory's recipe now decodes otherwise, ``log`` says which
    settings differ and how to use the recipe's."""
    p = Path(path)
    run_dir = resolve_run(p)
    localizer = Localizer.from_run(run_dir, device)
    say = log or (lambda _msg: None)
    decode = work_decode(p)
    if decode is not None:
        members = ensemble_runs(p)
        if members:  # the recipe asks an ensemble: its other members join the run
            say(f"an ensemble of {1 + len(members)} runs: {run_dir}, {', '.join(map(str, members))}")
            localizer = Localizer.ensemble([localizer, *(Localizer.from_run(m, device) for m in members)])
        say(f"decoding with the settings of {p / 'recipe.yaml'}")
        return localizer.with_decode(decode)
    say(f"decoding with the settings {run_dir} was trained with")
    work = run_dir.parent.parent  # a pipeline's runs are <work>/runs/<hash>
    decode = work_decode(work)
    trained = localizer.config.decode
    if decode is not None and decode != trained:
        say(
            f"note: the recipe of {work} now decodes with "
            f"{diff_settings(trained.model_dump(mode='json'), decode.model_dump(mode='json'))}; "
            f"pass --run {work} to decode as it does"
        )
    return localizer


def ensemble_runs(work: Path) -> list[Path]:
    """The runs of the other members of a work directory's ensemble (none without one), each the one its
    recipe's current settings trained, or an error that says how to train it."""
    ensemble = work_section(work, "ensemble", Ensemble)
    runs = []
    for member in range(1, ensemble.members):
        out, _ = current_output(work, f"train:member{member}")
        if out is None:
            raise PseudoError(
                f"{work}: ensemble member {member} of {ensemble.members} has no trained run for the recipe's "
                "current settings; run `pseudo train RECIPE` to train it"
            )
        runs.append(out)
    return runs


def work_decode(work: Path) -> DecodeConfig | None:
    """The decoding of a work directory's resolved recipe; None where ``work`` is not a work directory of
    `pseudo train` (no stages.json) or has no recipe.yaml."""
    if not (work / "stages.json").is_file() or not (work / "recipe.yaml").is_file():
        return None
    return work_section(work, "decode", DecodeConfig)


def work_section(work: Path, key: str, model: type[M]) -> M:
    """Section ``key`` of a work directory's resolved recipe (``recipe.yaml``), checked as ``model``."""
    path = work / "recipe.yaml"
    recipe = load_yaml_dict(path).get("recipe")
    section = recipe.get(key, {}) if isinstance(recipe, dict) else {}
    return validate(model, section, f"{path}: recipe.{key}")


def resolve_run(path: str | Path) -> Path:
    """A run directory, or the current trained run of a pipeline work directory."""
    p = Path(path)
    if (p / "checkpoints" / "last.pt").is_file():
        return p
    if (p / "stages.json").is_file():
        out, stale = current_output(p, "train")
        if out is not None:
            return out
        if stale:
            raise PseudoError(
                f"{p} has no trained run for its recipe's current settings (its last run stopped before "
                "training); run `pseudo train RECIPE` to train it"
            )
    run_checkpoint(p)  # raises the error that says how to make one
    return p
