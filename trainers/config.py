"""The localizer's settings: which labels to learn from, the text tower, the model, the optimiser and
decoding. The recipe (:mod:`pseudo.recipe`) holds these sections beside the stages' own."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pseudo.backbones.base import BackboneConfig
from trainers.model import LocalizerConfig

NonNegative = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Which labels train the localizer, and how samples are cut."""

    max_len: Annotated[int, Field(ge=8)] = 128
    max_label_seconds: Annotated[float, Field(gt=0)] | None = None  # drop longer training moments
    min_label_seconds: Annotated[float, Field(ge=0)] | None = None  # drop shorter training moments
    labels_per_video: Annotated[int, Field(ge=1)] | None = None  # keep the best-scored labels of each video
    # query styles to alternate between in training (MPGN): each time a label is drawn, one of its
    # phrasings ``meta.query_<style>`` (the caption, its shortened skeleton, its nouns and verbs) is used,
    # chosen at random; empty: the label's own query
    query_styles: list[Literal["natural", "short", "simple"]] = []
    # hide the query's own caption in training: a step whose feature has cosine >= this with the query's
    # plain text embedding takes the feature of the nearest step below it. A pseudo-query is the caption
    # of one of its video's own clips, so it matches a step exactly; a real query never does. Needs
    # features in the text tower's space (captions embedded by the same sentence encoder). None: off
    hide_query_steps: Annotated[float, Field(gt=0, le=1)] | None = None


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


class LossConfig(_Strict):
    """The training objective: ActionFormer's focal + DIoU + L1 terms, the saliency head's BCE and,
    optionally, same-video hard negatives.

    ``query_contrast_weight`` > 0 batches the labels of one video together, ``query_contrast_group``
    at a time, and adds a softmax over them at every step: a step inside one label's window (and
    outside another's) must score higher for that label's pseudo-query than for the other pseudo-queries
    of its video, so saliency that any query of the video would get (a salient but generic shot) is
    not rewarded. Labels are compared where they show the same steps: a video longer than
    ``data.max_len`` is cropped per label, and its labels meet only when their crops coincide."""

    saliency_weight: Annotated[float, Field(ge=0)] = 1.0
    query_contrast_weight: Annotated[float, Field(ge=0)] = 0.0
    query_contrast_group: Annotated[int, Field(ge=2)] = 4
    query_contrast_temperature: Annotated[float, Field(gt=0)] = 1.0


class DecodeConfig(_Strict):
    """From per-step scores to ranked windows (inference only: changing it needs no retraining)."""

    snap_to_steps: bool = False  # round boundaries to the feature-step grid (benchmarks annotated on it)
    sigma: Annotated[float, Field(gt=0)] = 0.5  # Gaussian soft-NMS width
    pre_nms: Annotated[int, Field(ge=1)] = 200  # candidates per window kept before soft-NMS
    # move boundaries to the nearest self-similarity event boundary within this many seconds (0: off);
    # needs the videos' event boundaries (their proposals)
    event_snap_seconds: Annotated[float, Field(ge=0)] = 0.0
    # how a query's variants (other phrasings) are fused: average every point's logits and boundary
    # distances before decoding (steps), or pool each phrasing's decoded windows (windows)
    variant_fusion: Literal["steps", "windows"] = "steps"
    # re-rank the decoded windows by score + similarity_weight * (how much better the query matches the
    # step features inside the window than outside it); needs features in the text tower's space
    # (caption embeddings of the same sentence encoder, or CLIP frames with CLIP's text tower)
    similarity_weight: Annotated[float, Field(ge=0)] = 0.0
    similarity_outside: Annotated[float, Field(ge=0)] = 1.0
    # pseudo-relevance feedback: each query is also asked with the m distinct captions of its video that
    # match it best (mean cosine over its phrasings), as further phrasings. The localizer learnt from
    # pseudo-queries that are its videos' own captions word for word. Needs caption-track features and
    # their captions (``step_texts`` of Localizer.predict; the pipeline and `pseudo predict` pass them)
    caption_feedback: Annotated[int, Field(ge=0)] = 0
    # where windows come from: the regression head (each point's distances to the boundaries), spans of
    # the saliency curve (VTG-GPT's rule on the learned per-step saliency, see pseudo.curves; needs
    # model.saliency_head), or both (the spans ranked first, then the regressed windows)
    windows_from: Literal["regression", "saliency", "both"] = "regression"
    span_bins: Annotated[int, Field(ge=2)] = 10
    span_top_k: Annotated[int, Field(ge=1)] = 8
    span_gap_steps: Annotated[int, Field(ge=0)] = 2
    span_nms: Annotated[float, Field(gt=0, le=1)] = 0.95
    # fuse with the zero-shot method: the spans of each phrasing's plain query-caption similarity curve
    # (VTG-GPT's rule, gaps of up to similarity_span_gap steps merged) join the saliency spans, their
    # scores times this weight (0: off; needs model.plain_similarity). A list of gaps pools the spans cut
    # with each (e.g. [6, 2]: VTG-GPT's spans and finer ones, which can answer one of several short windows)
    similarity_span_weight: Annotated[float, Field(ge=0)] = 0.0
    similarity_span_gap: NonNegative | Annotated[tuple[NonNegative, ...], Field(min_length=1)] = 6

    @property
    def similarity_span_gaps(self) -> tuple[int, ...]:
        """``similarity_span_gap`` as a tuple of gaps."""
        g = self.similarity_span_gap
        return (g,) if isinstance(g, int) else g

    # the last step, over the final ranked windows: a window overlapping a better one by more than this
    # IoU has its score times (1 - IoU) (linear soft-NMS), so near-copies of a window rank behind the
    # other places; the best window stays first (R1 is unchanged), and ranked metrics (mAP) see more
    # distinct windows in their top 10. 1: off
    overlap_decay_iou: Annotated[float, Field(gt=0, le=1)] = 1.0


class TrainConfig(_Strict):
    """Everything that makes a trained localizer (saved in its checkpoint)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = DataConfig()
    text: BackboneConfig = BackboneConfig(name="sentence", model="minilm")
    model: LocalizerConfig = LocalizerConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    decode: DecodeConfig = DecodeConfig()


def loss_conflict(model: LocalizerConfig, loss: LossConfig) -> str | None:
    """Why ``loss`` cannot train ``model`` (a sentence naming the fix), or None."""
    if loss.query_contrast_weight > 0 and not model.saliency_head:
        return (
            "loss.query_contrast_weight works on the saliency head's per-step scores; set model.saliency_head: true "
            "or loss.query_contrast_weight: 0"
        )
    return None


def decode_conflict(model: LocalizerConfig, dc: DecodeConfig) -> str | None:
    """Why ``dc`` cannot decode a localizer built as ``model`` (a sentence naming the fix), or None."""
    spans_wanted = dc.windows_from != "regression"
    if spans_wanted and not model.saliency_head:
        return (
            f"decode.windows_from is {dc.windows_from!r} but this localizer has no saliency head "
            "(model.saliency_head); use windows_from: regression"
        )
    if dc.similarity_span_weight and not (spans_wanted and model.plain_similarity):
        return (
            f"decode.similarity_span_weight is {dc.similarity_span_weight:g}, which pools zero-shot spans of the "
            "plain query-caption similarity with the saliency spans: it needs decode.windows_from saliency or both "
            "and a localizer with model.plain_similarity; set decode.similarity_span_weight to 0"
        )
    return None
