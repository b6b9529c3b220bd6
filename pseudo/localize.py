"""Asking one video a question: a trained localizer when given a run, else zero-shot scoring of
self-similarity proposals by text-frame similarity."""

from __future__ import annotations

from pathlib import Path

from proposals import ProposalConfig, generate_proposals
from pseudo.backbones import Backbone, build_backbone
from pseudo.captions.queries import contrast_scores
from pseudo.errors import PseudoError
from pseudo.features import FeaturesConfig, VideoFeatures

Window = tuple[float, float, float]


def zero_shot(
    feats: VideoFeatures, query: str, encoder: Backbone, cfg: ProposalConfig | None = None, top_k: int = 5
) -> list[Window]:
    """Rank the video's proposals by how much more the query matches inside than outside."""
    props = generate_proposals(feats.features, feats.duration, cfg or ProposalConfig(), feats.timestamps).proposals
    text = encoder.encode_texts([query])
    scored = [(p.start, p.end, float(contrast_scores(text, feats, p.start, p.end, 1.0)[0])) for p in props]
    return sorted(scored, key=lambda w: -w[2])[:top_k]


def video_features(video: str | Path, cfg: FeaturesConfig, encoder: Backbone | None = None) -> VideoFeatures:
    from pseudo.video import sample_frames

    sampled = sample_frames(video, cfg.sampling)
    emb = (encoder or build_backbone(cfg.backbone)).encode_images(sampled.frames)
    return VideoFeatures(
        Path(video).stem,
        emb,
        sampled.timestamps,
        sampled.info.duration,
        truncated=sampled.truncated,
        decoded_end=sampled.decoded_end,
    )


def run_video_features(run_dir: str | Path) -> FeaturesConfig:
    """The frame-feature settings a run was trained with; an error when it was not trained on video
    frames (caption-track or foreign array features cannot be made from a video file)."""
    from trainers.run import run_features_settings

    recorded = run_features_settings(run_dir)
    if recorded.get("kind") != "video":
        what = {
            "captions": "caption-track features (captions embedded as text)",
            "arrays": "feature arrays made elsewhere",
        }
        raise PseudoError(
            f"{run_dir} was trained on {what.get(str(recorded.get('kind')), recorded.get('kind'))}, which cannot be "
            "computed from a video file; use `pseudo predict` with such features, or a run trained on video frames"
        )
    return FeaturesConfig.model_validate(recorded["settings"])


def localize(
    video: str | Path,
    query: str,
    run_dir: str | Path | None = None,
    features_cfg: FeaturesConfig | None = None,
    top_k: int = 5,
) -> list[Window]:
    """Top windows (start, end, score) in seconds for ``query`` in ``video``.

    With ``run_dir`` the run is checked first, and the frames are embedded with the backbone and
    sampling the run was trained with (``features_cfg`` is ignored); without it, ``features_cfg``
    (default: CLIP ViT-B/32) embeds the frames and the query for zero-shot scoring."""
    if run_dir is None:
        cfg = features_cfg or FeaturesConfig()
        backbone = build_backbone(cfg.backbone)
        return zero_shot(video_features(video, cfg, backbone), query, backbone, top_k=top_k)
    from pseudo.data.records import Query
    from pseudo.proposal_stage import event_boundaries
    from trainers.data import FeatureCache
    from trainers.infer import predict
    from trainers.run import load_run

    cfg = run_video_features(run_dir)
    model, recipe = load_run(run_dir)
    feats = video_features(video, cfg)

    class _One:
        def vids(self) -> list[str]:
            return [feats.vid]

        def get(self, vid: str) -> VideoFeatures:
            return feats

    q = Query("q", feats.vid, feats.duration, query, ())
    events = None
    if recipe.decode.event_snap_seconds:  # this video's own event boundaries
        found = generate_proposals(feats.features, feats.duration, ProposalConfig(), feats.timestamps)
        events = event_boundaries({feats.vid: found.to_records(feats.vid, feats.duration)})
    (pred,) = predict(
        model, [q], FeatureCache(_One()), recipe.data.max_len, top_k, decoding=recipe.decode, events=events
    )
    return list(pred.windows)
