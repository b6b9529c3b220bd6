"""``pseudo demo``: the whole method on the bundled slice of real data, in a few minutes on a CPU.

1. The official QVHighlights metrics on Moment-DETR's sample predictions (150 val queries): the
   evaluator reproduces the official numbers.
2. The bundled recipe (``assets/demo/demo.yaml``) through the pipeline: caption features of 200 real
   QVHighlights val videos -> self-similarity proposals -> pseudo-queries -> a CoOp localizer
   trained on those pseudo-labels only -> scored on the videos' 209 real queries, beside the methods
   that never train, measured in the same run on the same features and proposals: a length/position
   prior fitted on the pseudo-labels, and zero-shot proposal ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pseudo.backbones import build_backbone
from pseudo.baselines.prior import LengthPositionPrior
from pseudo.baselines.zero_shot import rank_proposals
from pseudo.data import load_dataset
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.evaluate import EvalResult, evaluate, score
from pseudo.pipeline import Pipeline, PipelineResult
from pseudo.recipe import Recipe, load_recipe
from pseudo.stages.features import text_encoder_of
from pseudo.stages.proposals import read_proposals

DEMO_COLUMNS = ["R1@0.5", "R1@0.7", "mAP@0.5", "mAP", "mIoU"]
TRAINED = "CoOp localizer trained on pseudo-labels"
ZERO_SHOT = "zero-shot proposal ranking (no training)"


def demo_dir() -> Path:
    with resources.as_file(resources.files("pseudo") / "assets" / "demo") as d:
        return Path(d)


def demo_recipe(work: str | Path) -> Recipe:
    return load_recipe(demo_dir() / "demo.yaml", {"work_dir": str(work)})


def official_check() -> EvalResult:
    d = demo_dir()
    return evaluate(
        d / "momentdetr_val_slice_preds.jsonl",
        "jsonl",
        "demo",
        gt_files=[d / "qvhighlights_val_slice.jsonl"],
        protocol="qvhighlights",
    )


@dataclass
class DemoResult:
    rows: dict[str, dict[str, float]]
    queries: int
    videos: int
    pipeline: PipelineResult

    @property
    def verdict(self) -> str:
        trained, zs = self.rows[TRAINED], self.rows[ZERO_SHOT]
        gap = trained["R1@0.5"] - zs["R1@0.5"]
        word = "beats" if gap > 0 else "loses to" if gap < 0 else "ties"
        return (
            f"On {self.queries} real queries of {self.videos} videos, the localizer trained on pseudo-labels {word} "
            f"zero-shot ranking by {abs(gap):.2f} R1@0.5 ({trained['R1@0.5']:.2f} vs {zs['R1@0.5']:.2f}; "
            f"mAP {trained['mAP']:.2f} vs {zs['mAP']:.2f})."
        )


def caption_pipeline(work: str | Path, log: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo recipe and the baselines on its features and proposals."""
    recipe = demo_recipe(work)
    pipeline = Pipeline(recipe, log=log)
    result = pipeline.run()
    target = recipe.eval[0]
    gts = [q for q in load_dataset(target.dataset, target.split, files=target.gt) if q.windows]
    labels = load_qvh_jsonl([Path(f) for f in pipeline.label_files])
    rows: dict[str, dict[str, float]] = {}
    prior = LengthPositionPrior().fit(labels)
    rows["length/position prior fitted on the pseudo-labels"] = score(gts, prior.predict(gts), "qvhighlights")[
        0
    ].headline
    source = pipeline.features_source("train")
    enc = text_encoder_of(source)
    assert enc is not None
    props = read_proposals(result.outputs["proposals:train"])
    zs = rank_proposals(gts, props, source, build_backbone(enc), outside_weight=0.0)
    rows[ZERO_SHOT] = score(gts, zs, "qvhighlights")[0].headline
    rows[TRAINED] = result.metrics[target.name]
    return DemoResult(rows, len(gts), len({q.vid for q in gts}), result)


def run_demo(work: str | Path) -> dict[str, Any]:
    official = official_check()
    demo = caption_pipeline(work)
    return {"official_check": official.to_json(), "caption_pipeline": demo.rows, "verdict": demo.verdict}
