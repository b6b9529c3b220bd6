"""``pseudo demo``: the whole method on the bundled slice of real data, in about a minute on a CPU.

1. The official QVHighlights metrics on Moment-DETR's sample predictions (150 val queries).
2. Zero-shot moment retrieval on 8 real QVHighlights val videos known through their clip captions:
   caption features (MiniLM) -> self-similarity proposals -> pseudo-queries -> a CoOp localizer
   trained on the pseudo-labels only -> scored on the real queries, beside zero-shot proposal
   scoring and a length/position prior fitted on the pseudo-labels.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from proposals import ProposalConfig
from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.baselines import LengthPositionPrior
from pseudo.caption_baselines import score_proposals
from pseudo.caption_stage import CaptionsRunConfig, run_captions
from pseudo.captions.features import build_caption_features, caption_features_config
from pseudo.captions.sources import CaptionerConfig
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.evaluate import EvalResult, evaluate, score
from pseudo.features import FeatureStore
from pseudo.proposal_stage import event_boundaries, read_proposals, run_proposals

DEMO_COLUMNS = ["R1@0.5", "R1@0.7", "mAP@0.5", "mAP", "mIoU"]


def demo_dir() -> Path:
    with resources.as_file(resources.files("pseudo") / "assets" / "demo") as d:
        return Path(d)


def official_check() -> EvalResult:
    d = demo_dir()
    return evaluate(
        d / "momentdetr_val_slice_preds.jsonl",
        "jsonl",
        "demo",
        gt_files=[d / "qvhighlights_val_slice.jsonl"],
        protocol="qvhighlights",
    )


def caption_pipeline(work: str | Path, epochs: int = 15) -> dict[str, dict[str, float]]:
    """Rows of official metrics for the prior, zero-shot scoring and the trained localizer."""
    from trainers.config import DataConfig, DecodeConfig, OptimConfig, RecipeConfig
    from trainers.data import FeatureCache
    from trainers.infer import predict
    from trainers.loop import train
    from trainers.model import LocalizerConfig
    from trainers.run import load_run

    work = Path(work)
    sl = demo_dir() / "qvhighlights_val_slice"
    gts = load_qvh_jsonl([sl / "gt.jsonl"])
    durations = {q.vid: q.duration for q in gts}
    build_caption_features(caption_features_config(sl / "captions"), work / "store", durations=durations)
    store = FeatureStore.load(work / "store")
    run_proposals(store, ProposalConfig(resample_steps=None), work / "proposals.jsonl")
    ccfg = CaptionsRunConfig(captioner=CaptionerConfig(name="external", captions=str(sl / "captions")))
    _, labels = run_captions(work / "proposals.jsonl", work / "pseudo_train.jsonl", ccfg, store)
    rows: dict[str, dict[str, float]] = {}
    prior = LengthPositionPrior().fit(labels)
    rows["prior fitted on the pseudo-labels"] = score(gts, prior.predict(gts), "qvhighlights")[0].headline
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm"))
    zs = score_proposals(gts, read_proposals(work / "proposals.jsonl"), store, enc, outside_weight=0.0)
    rows["zero-shot proposal scoring"] = score(gts, zs, "qvhighlights")[0].headline
    recipe = RecipeConfig(
        name="demo",
        device="cpu",
        data=DataConfig(
            train=[str(work / "pseudo_train.jsonl")],
            features=str(work / "store"),
            max_len=80,
            max_label_seconds=40,
            min_label_seconds=10,
        ),
        model=LocalizerConfig(d_model=64, n_heads=4, n_layers=1, levels=3, max_query_tokens=24),
        optim=OptimConfig(epochs=epochs, batch_size=32, lr=1e-3, warmup_steps=5, log_every=1000),
        decode=DecodeConfig(snap_to_steps=True, event_snap_seconds=6),
    )
    run = work / "run"
    if not (run / "checkpoints" / "last.pt").is_file():
        train(recipe, run)
    model, _ = load_run(run, "cpu")
    events = event_boundaries(read_proposals(work / "proposals.jsonl"))
    preds = predict(model, gts, FeatureCache(store), recipe.data.max_len, decoding=recipe.decode, events=events)
    rows["CoOp localizer trained on pseudo-labels"] = score(gts, preds, "qvhighlights")[0].headline
    return rows


def run_demo(work: str | Path) -> dict[str, Any]:
    official = official_check()
    rows = caption_pipeline(work)
    return {"official_check": official.to_json(), "caption_pipeline": rows}
