"""``Localizer``: a trained moment localizer as one object (lighthouse's predictor is the model).

    loc = Localizer.from_run("runs/qvh/runs/3fa2...")       # the checkpoint is read once
    preds = loc.predict(features, queries, events=events)   # ranked windows per query

``features`` is a feature source (a store, a folder of arrays) or one video's :class:`VideoFeatures`;
``queries`` are :class:`Query` records, or plain strings about that one video. ``events`` are event
boundaries in seconds (per video, or one array for one video) that ``decode.event_snap_seconds``
snaps boundaries to; nothing here reads a stage's files.

Videos longer than ``max_len`` steps are scanned with windows of ``max_len`` steps overlapping by
half; the candidates of all windows are merged with soft-NMS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.backbones.base import Device, resolve_device
from pseudo.curves import SpanSettings, nms, normalise, spans
from pseudo.data.store import FeatureSource, SingleVideo, VideoFeatures
from pseudo.data.variants import phrasings
from pseudo.errors import PseudoError
from pseudo.metrics.iou import iou_cross
from pseudo.records import Prediction, Query
from pseudo.similarity import step_similarity, window_contrast
from trainers.config import DecodeConfig, TrainConfig, decode_conflict
from trainers.data import Batch, FeatureCache, Sample, StepFeatures, collate
from trainers.decode import decode, snap_to_events, soft_nms
from trainers.model import LocalizerOutput, MomentLocalizer
from trainers.text_towers import TowerPool, build_text_tower

Events = Mapping[str, NDArray[np.float64]] | NDArray[np.float64]


def chunks(t: int, max_len: int) -> list[int]:
    """Start steps of the windows that cover ``t`` steps (half overlap; the last one ends at ``t``)."""
    if t <= max_len:
        return [0]
    stride = max(1, max_len // 2)
    starts = list(range(0, t - max_len + 1, stride))
    if starts[-1] != t - max_len:
        starts.append(t - max_len)
    return starts


def build_model(cfg: TrainConfig, video_dim: int, towers: TowerPool | None = None) -> MomentLocalizer:
    """A fresh localizer for ``cfg``; its frozen text tower comes from ``towers`` when given (shared, with
    the encodings it keeps, by every model built through the pool), else is built for this model."""
    tower = towers.get(cfg.text) if towers is not None else build_text_tower(cfg.text)
    return MomentLocalizer(tower, video_dim, cfg.model)


def frozen_names(model: torch.nn.Module) -> set[str]:
    """The parameters that do not train (the frozen towers' weights): a checkpoint leaves them out."""
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def trainable_state(model: torch.nn.Module, clone: bool = True) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps: the state without the frozen towers' weights (their settings name them);
    ``clone=False`` gives views of the live tensors (for reading them, not for keeping)."""
    frozen = frozen_names(model)
    return {k: v.detach().clone() if clone else v.detach() for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = frozen_names(model)
    bad = [k for k in missing if k not in frozen]
    if bad or unexpected:
        raise PseudoError(f"checkpoint does not match the model: missing {bad[:5]}, unexpected {unexpected[:5]}")


def mean_output(outs: Sequence[LocalizerOutput]) -> LocalizerOutput:
    """The members' relevance logits and boundary distances averaged per point (one model: its output)."""
    if len(outs) == 1:
        return outs[0]
    logits = torch.stack([o.logits.float() for o in outs]).mean(dim=0)
    offsets = torch.stack([o.offsets.float() for o in outs]).mean(dim=0)
    return replace(outs[0], logits=logits, offsets=offsets)


def run_checkpoint(run_dir: str | Path) -> Path:
    """The run's last checkpoint, or an error that says how to make one."""
    run = Path(run_dir)
    if not run.is_dir():
        raise PseudoError(f"run directory {run} does not exist; train one with `pseudo train RECIPE`")
    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise PseudoError(f"{run} has no checkpoint (expected {ckpt}); train it with `pseudo train RECIPE`")
    return ckpt


class Localizer:
    """A trained localizer and the settings it was trained with; or an ensemble of several trained with
    the same settings but their seeds (:meth:`ensemble`), whose per-step outputs are averaged."""

    def __init__(
        self,
        model: MomentLocalizer,
        config: TrainConfig,
        features: dict[str, Any] | None = None,
        run_dir: Path | None = None,
        others: Sequence[MomentLocalizer] = (),
    ) -> None:
        self.model = model
        self.config = config
        #: what the training features were (``{"kind": "video"|"captions"|"arrays", "settings": ...}``)
        self.features = features or {}
        self.run_dir = run_dir
        #: every model asked: ``model`` first, then the other members of an ensemble
        self.members: tuple[MomentLocalizer, ...] = (model, *others)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: Device = "auto", towers: TowerPool | None = None) -> Localizer:
        """The model of ``run_dir/checkpoints/last.pt`` (frozen towers rebuilt from its settings, or taken
        from ``towers``: several runs of one recipe then share them and what they have encoded)."""
        ckpt = run_checkpoint(run_dir)
        dev = resolve_device(device)
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if "config" not in state:
            raise PseudoError(f"{ckpt} was written by an older version of pseudo; retrain the run")
        config = TrainConfig.model_validate(state["config"])
        model = build_model(config, int(state["video_dim"]), towers).to(dev)
        load_trainable_state(model, state["model"])
        model.eval()
        return cls(model, config, state.get("features"), Path(run_dir))

    @classmethod
    def ensemble(cls, members: Sequence[Localizer]) -> Localizer:
        """One localizer that asks every member and averages what they say per step (the saliency
        curves, and every point's relevance logits and boundary distances) before one decode. The
        members must differ in their seed only (the first member's settings, decoding and run directory
        are the ensemble's); an ensemble of one answers as that member does."""
        if not members:
            raise PseudoError("an ensemble needs at least one trained localizer")

        def seedless(config: TrainConfig) -> TrainConfig:
            return config.model_copy(update={"optim": config.optim.model_copy(update={"seed": 0})})

        first = members[0]
        for other in members[1:]:
            if seedless(other.config) != seedless(first.config) or other.video_dim != first.video_dim:
                raise PseudoError(
                    f"the runs {first.run_dir} and {other.run_dir} were trained with different settings (not only "
                    "optim.seed): an ensemble averages models of one recipe"
                )
        models = [m for loc in members for m in loc.members]
        return cls(models[0], first.config, first.features, first.run_dir, models[1:])

    def with_decode(self, decode: DecodeConfig) -> Localizer:
        """The same model decoding with ``decode`` (decoding needs no retraining: a recipe may change it
        after the run was trained)."""
        config = self.config.model_copy(update={"decode": decode})
        return Localizer(self.model, config, self.features, self.run_dir, self.members[1:])

    @property
    def video_dim(self) -> int:
        return self.model.video_dim

    def digest(self) -> str:
        """What identifies this localizer's answers: its settings and the state a checkpoint keeps, as 16
        hex digits."""
        h = hashlib.sha256(json.dumps(self.config.model_dump(mode="json"), sort_keys=True).encode())
        for member in self.members:
            for name, value in sorted(trainable_state(member, clone=False).items()):
                h.update(name.encode())
                h.update(value.float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def device(self) -> torch.device:
        return next(p for p in self.model.parameters()).device

    @torch.inference_mode()
    def predict(
        self,
        features: FeatureSource | VideoFeatures,
        queries: Sequence[Query | str],
        events: Events | None = None,
        top_k: int | None = None,
        decode_cfg: DecodeConfig | None = None,
        batch_size: int = 64,
        variants: Mapping[str, Sequence[str]] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_query: Callable[[str], None] | None = None,
        step_texts: Callable[[str], Sequence[str]] | None = None,
    ) -> list[Prediction]:
        """Up to ``top_k`` ranked windows (seconds) per query, best first.

        ``on_start(n)`` is called with the number of queries, and ``on_query(qid)`` as each is
        decoded (for a progress bar: :func:`pseudo.progress.progress_bar`'s ``start``/``advance``).

        ``variants`` (``{str(qid): [other phrasings]}``) are asked too, and fused as
        ``decode.variant_fusion`` says: ``steps`` averages every point's relevance logit and boundary
        distances over the query and its variants before decoding; ``windows`` pools the windows
        decoded for each phrasing and re-ranks them with soft-NMS.

        ``step_texts(vid)`` gives the caption behind each feature row of a video (caption-track
        features), for ``decode.caption_feedback``."""
        dc = decode_cfg or self.config.decode
        k = top_k or self.config.optim.top_k
        if isinstance(features, VideoFeatures):
            one = features
            source: FeatureSource = SingleVideo(one)
            qs = [
                q if isinstance(q, Query) else Query(f"q{i}", one.vid, one.duration, q, ())
                for i, q in enumerate(queries)
            ]
            per_video = {one.vid: events} if isinstance(events, np.ndarray) else events
        else:
            source = features
            if any(isinstance(q, str) for q in queries):
                raise PseudoError("plain-text queries need one video's features (VideoFeatures), not a feature source")
            qs = [q for q in queries if isinstance(q, Query)]
            if isinstance(events, np.ndarray):
                raise PseudoError("give events per video ({vid: boundaries}) when predicting several videos")
            per_video = events
        if dc.event_snap_seconds and per_video is None:
            raise PseudoError(
                f"decode.event_snap_seconds is {dc.event_snap_seconds:g} but no event boundaries were given: "
                "pass the videos' proposals (their starts and ends), or set decode.event_snap_seconds to 0"
            )
        if dc.caption_feedback and step_texts is None:
            raise PseudoError(
                f"decode.caption_feedback is {dc.caption_feedback}: each query is asked again with its video's "
                "best-matching captions, which needs caption-track features and their captions (step_texts); "
                "set decode.caption_feedback to 0 for other features"
            )
        if on_start is not None:
            on_start(len(qs))
        cache = FeatureCache(source)
        asked: Mapping[str, Sequence[str]] = variants or {}
        # every phrasing through the frozen tower ahead, in batches of one token count (TextTower.warm);
        # the plain embeddings too where decoding compares them with the steps
        plain = bool(dc.caption_feedback or dc.similarity_weight)
        self.model.warm_texts([t for q in qs for t in phrasings(q, asked)], plain=plain)
        if dc.caption_feedback and step_texts is not None:
            asked = self.caption_feedback(qs, cache, asked, step_texts, dc.caption_feedback)
            self.model.warm_texts([t for q in qs for t in phrasings(q, asked)], plain=plain)  # captions added
        return self._predict(qs, cache, k, dc, per_video, batch_size, asked, on_query)

    def caption_feedback(
        self,
        queries: Sequence[Query],
        cache: FeatureCache,
        variants: Mapping[str, Sequence[str]],
        step_texts: Callable[[str], Sequence[str]],
        m: int,
    ) -> dict[str, list[str]]:
        """Each query's variants followed by the ``m`` distinct captions of its video that match it best
        (mean cosine of its phrasings' plain embeddings with the caption rows; ties to the earlier row),
        leaving out captions that are already among its phrasings."""
        out = {k: list(v) for k, v in variants.items()}
        for q in queries:
            texts = phrasings(q, variants)
            grid = cache.get(q.vid)
            captions = list(step_texts(q.vid))
            if len(captions) != len(grid.features):
                raise PseudoError(
                    f"video {q.vid!r} has {len(grid.features)} feature rows but {len(captions)} captions: "
                    "decode.caption_feedback needs the captions the features were made from"
                )
            emb = self.model.plain_embeddings(texts).numpy()  # kept by the tower
            sims = step_similarity(emb, grid.features).mean(axis=0)
            picked: list[str] = []
            for i in np.argsort(-sims, kind="stable"):
                if len(picked) == m:
                    break
                text = captions[i]
                if text.strip() and text not in picked and text not in texts:
                    picked.append(text)
            out[str(q.qid)] = [*variants.get(str(q.qid), ()), *picked]
        return out

    def _predict(
        self,
        queries: Sequence[Query],
        cache: FeatureCache,
        top_k: int,
        dc: DecodeConfig,
        events: Mapping[str, NDArray[np.float64]] | None,
        batch_size: int,
        variants: Mapping[str, Sequence[str]],
        on_query: Callable[[str], None] | None = None,
    ) -> list[Prediction]:
        model, max_len = self.model, self.config.data.max_len
        was_training = [m.training for m in self.members]
        for m in self.members:
            m.eval()
        # a group: one query's phrasings on one chunk of its video; a batch holds whole groups
        groups: list[tuple[int, list[Sample]]] = []
        for i, q in enumerate(queries):
            grid = cache.get(q.vid)
            feats, sps = grid.features, grid.step
            if feats.shape[1] != model.video_dim:
                raise PseudoError(
                    f"the features of video {q.vid!r} have {feats.shape[1]} dimensions, but this localizer was trained "
                    f"on {model.video_dim}-dimensional features; give features made with the same settings as its "
                    "training features (the run's config.yaml names them)"
                )
            texts = phrasings(q, variants)
            for start in chunks(len(feats), max_len):
                part = feats[start : start + max_len]
                offset = grid.start + start * sps
                groups.append((i, [Sample(str(q.qid), q.vid, t, part, np.zeros((0, 2)), sps, offset) for t in texts]))
        found: list[list[tuple[float, float, float]]] = [[] for _ in queries]
        n_chunks = [0] * len(queries)
        device = self.device
        spans_wanted = dc.windows_from != "regression"
        if conflict := decode_conflict(self.config.model, dc):
            raise PseudoError(conflict)
        curves = [self._empty_curves(cache.get(q.vid), 1 + len(variants.get(str(q.qid), ()))) for q in queries]
        per_batch = max(1, batch_size // max(len(g) for _, g in groups)) if groups else 1
        preds: list[Prediction] = []

        def finish_up_to(last: int) -> None:
            """Decode every query whose groups are all among the first ``last`` (groups are in query order)."""
            while len(preds) < len(queries) and last_group[len(preds)] < last:
                i = len(preds)
                q = queries[i]
                preds.append(
                    self._decode_query(q, found[i], n_chunks[i], curves[i], cache, top_k, dc, events, variants)
                )
                if on_query is not None:
                    on_query(str(q.qid))

        last_group = [-1] * len(queries)
        for g_index, (i, _) in enumerate(groups):
            last_group[i] = g_index
        for lo in range(0, len(groups), per_batch):
            part_groups = groups[lo : lo + per_batch]
            batch: Batch = collate([s for _, g in part_groups for s in g]).to(device)
            sizes = [len(g) for _, g in part_groups]
            outs = [member(batch.video, batch.mask, batch.texts) for member in self.members]
            if spans_wanted:  # an ensemble's curves are averaged: each member counts once per step
                for one in outs:
                    if one.saliency is not None:
                        self._add_curves(one, dc, part_groups, curves, cache, queries)
            out = mean_output(outs)
            for (i, g), wins in zip(part_groups, self._decode_groups(out, sizes, top_k, dc), strict=True):
                n_chunks[i] += 1
                s = g[0]
                found[i].extend(
                    (s.offset_seconds + a * s.seconds_per_step, s.offset_seconds + b * s.seconds_per_step, c)
                    for a, b, c in wins
                )
            finish_up_to(lo + per_batch)
        finish_up_to(len(groups))
        for m, training in zip(self.members, was_training, strict=True):
            m.train(training)
        return preds

    @staticmethod
    def _add_curves(
        out: LocalizerOutput,
        dc: DecodeConfig,
        part_groups: Sequence[tuple[int, list[Sample]]],
        curves: list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]],
        cache: FeatureCache,
        queries: Sequence[Query],
    ) -> None:
        """Add one model's saliency (and plain similarity) of a batch's groups to their queries' curves."""
        assert out.saliency is not None
        sal = torch.sigmoid(out.saliency.float()).cpu().numpy()
        sim = out.similarity.float().cpu().numpy() if dc.similarity_span_weight and out.similarity is not None else None
        row = 0
        for i, g in part_groups:
            start_step = round((g[0].offset_seconds - cache.get(queries[i].vid).start) / g[0].seconds_per_step)
            n = len(g[0].features)
            curves[i][0][:, start_step : start_step + n] += sal[row : row + len(g), :n]
            curves[i][1][start_step : start_step + n] += 1
            if sim is not None:
                curves[i][2][:, start_step : start_step + n] += sim[row : row + len(g), :n]
            row += len(g)

    def _decode_query(
        self,
        q: Query,
        wins: list[tuple[float, float, float]],
        n: int,
        curves: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
        cache: FeatureCache,
        top_k: int,
        dc: DecodeConfig,
        events: Mapping[str, NDArray[np.float64]] | None,
        variants: Mapping[str, Sequence[str]],
    ) -> Prediction:
        """One query's ranked windows from what its chunks gave: regressed windows and summed curves."""
        total, count, sim_total = curves
        arr = np.array(wins, dtype=np.float64).reshape(-1, 3)
        if n > 1 and len(arr):
            arr = soft_nms(arr, dc.sigma)
        arr = arr[np.argsort(-arr[:, 2], kind="stable")]
        if dc.event_snap_seconds and events is not None and q.vid in events:
            arr = snap_to_events(arr, events[q.vid], dc.event_snap_seconds)
        if dc.windows_from != "regression":
            arr = self._with_spans(
                arr,
                total / np.maximum(count, 1),
                sim_total / np.maximum(count, 1),
                cache.get(q.vid),
                q.duration,
                dc,
            )
        if dc.similarity_weight and len(arr):
            texts = phrasings(q, variants)
            arr = self._rescore(arr, texts, cache.get(q.vid), dc)
        if dc.overlap_decay_iou < 1 and len(arr):
            arr = soft_nms(arr, iou_threshold_linear=dc.overlap_decay_iou)
        arr = arr[:top_k]
        windows = tuple((float(a), float(min(b, q.duration)), float(c)) for a, b, c in arr)
        return Prediction(q.qid, q.vid, windows, q.query)

    @staticmethod
    def _empty_curves(
        grid: StepFeatures, phrasings: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per phrasing, running sums over the video's steps of the saliency and of the plain
        query-step similarity, and how many chunks added to each step."""
        n = len(grid.features)
        return np.zeros((phrasings, n)), np.zeros(n), np.zeros((phrasings, n))

    @staticmethod
    def _with_spans(
        regressed: NDArray[np.float64],
        curves: NDArray[np.float64],
        similarity: NDArray[np.float64],
        grid: StepFeatures,
        duration: float,
        dc: DecodeConfig,
    ) -> NDArray[np.float64]:
        """Spans of each phrasing's saliency curve (pooled, best first, near-duplicates dropped), alone
        or ranked above the regressed windows; a span scores 1 + its VTG score, a regressed window its
        probability, so the order is spans first. With ``similarity_span_weight`` (w), the zero-shot
        spans of each phrasing's plain similarity curve (VTG-GPT's rule, cut with each of
        ``similarity_span_gaps``) join the pool, scoring 1 + w * their VTG score."""
        cfg = SpanSettings(dc.span_bins, dc.span_top_k, dc.span_gap_steps, dc.span_nms)
        pool = [s for c in curves for s in spans(normalise(c), cfg)]
        if dc.similarity_span_weight:
            w = dc.similarity_span_weight
            normed = [normalise(c) for c in similarity]
            for gap in dc.similarity_span_gaps:
                zs = replace(cfg, gap=gap)
                pool += [(a, b, w * sc) for c in normed for a, b, sc in spans(c, zs)]
        found = nms(pool, cfg.nms_threshold)
        rows = [
            (grid.start + a * grid.step, min(grid.start + (b + 1) * grid.step, duration), 1.0 + sc)
            for a, b, sc in found
        ]
        span_arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        if dc.windows_from == "saliency":
            return span_arr
        both = np.concatenate([span_arr, regressed])
        kept: list[int] = []
        for i in range(len(both)):
            if not kept or iou_cross(both[kept, :2], both[i : i + 1, :2]).max() < dc.span_nms:
                kept.append(i)
        return both[kept]

    def _rescore(
        self, windows: NDArray[np.float64], texts: Sequence[str], grid: StepFeatures, dc: DecodeConfig
    ) -> NDArray[np.float64]:
        """Windows re-ranked by score + w * inside-minus-outside similarity of the texts (mean over
        phrasings) with the step features."""
        tower = self.model.tower
        if tower.dim != grid.features.shape[1]:
            raise PseudoError(
                f"decode.similarity_weight needs features in the text tower's space ({tower.dim} dimensions), but "
                f"these have {grid.features.shape[1]}; set decode.similarity_weight to 0"
            )
        emb = self.model.plain_embeddings(list(texts)).numpy()  # kept by the tower: each text embedded once
        centres = (grid.start + (np.arange(len(grid.features)) + 0.5) * grid.step).astype(np.float64)
        contrast = window_contrast(step_similarity(emb, grid.features), centres, windows[:, :2], dc.similarity_outside)
        out = windows.copy()
        out[:, 2] = windows[:, 2] + dc.similarity_weight * contrast.mean(axis=0)
        return out[np.argsort(-out[:, 2], kind="stable")]

    @staticmethod
    def _decode_groups(
        out: LocalizerOutput, sizes: Sequence[int], top_k: int, dc: DecodeConfig
    ) -> list[list[tuple[float, float, float]]]:
        """Windows (in steps) of each group of consecutive rows, its phrasings fused."""
        k = max(top_k, 20)
        if all(n == 1 for n in sizes):
            return decode(out, top_k=k, pre_nms=dc.pre_nms, sigma=dc.sigma, snap=dc.snap_to_steps)
        firsts = np.cumsum([0, *sizes[:-1]]).tolist()
        if dc.variant_fusion == "windows":
            rows = decode(out, top_k=k, pre_nms=dc.pre_nms, sigma=dc.sigma, snap=dc.snap_to_steps)
            fused = []
            for f, n in zip(firsts, sizes, strict=True):
                pooled = np.array([w for r in rows[f : f + n] for w in r], dtype=np.float64).reshape(-1, 3)
                fused.append([(float(a), float(b), float(c)) for a, b, c in soft_nms(pooled, dc.sigma)[:k]])
            return fused
        index = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)], device=out.logits.device)
        weight = torch.tensor(sizes, device=out.logits.device, dtype=torch.float32)

        def mean(x: torch.Tensor) -> torch.Tensor:
            total = torch.zeros((len(sizes), *x.shape[1:]), device=x.device, dtype=torch.float32)
            total.index_add_(0, index, x.float())
            return total / weight.view(-1, *([1] * (x.dim() - 1)))

        first = torch.tensor(firsts, device=out.logits.device)
        fused_out = LocalizerOutput(
            logits=mean(out.logits),
            offsets=mean(out.offsets),
            points=out.points,
            strides=out.strides,
            ranges=out.ranges,
            mask=out.mask[first],
            lengths=out.lengths[first],
        )
        return decode(fused_out, top_k=k, pre_nms=dc.pre_nms, sigma=dc.sigma, snap=dc.snap_to_steps)
