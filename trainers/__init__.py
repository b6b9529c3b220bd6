"""The prompt-tuned CLIP moment localizer: text towers, prompts, model, losses and decoding."""

from trainers.decode import decode, snap_to_events, snap_to_steps, soft_nms
from trainers.losses import assign_targets, diou_loss, localizer_loss, sigmoid_focal_loss
from trainers.model import LocalizerConfig, LocalizerOutput, MomentLocalizer, default_regression_ranges
from trainers.prompt import PromptLearner, PromptMode
from trainers.text_towers import TEXT_TOWERS, HFClipTextTower, SentenceTextTower, TextTower, build_text_tower

__all__ = [
    "TEXT_TOWERS",
    "HFClipTextTower",
    "LocalizerConfig",
    "LocalizerOutput",
    "MomentLocalizer",
    "PromptLearner",
    "PromptMode",
    "SentenceTextTower",
    "TextTower",
    "assign_targets",
    "build_text_tower",
    "decode",
    "default_regression_ranges",
    "diou_loss",
    "localizer_loss",
    "sigmoid_focal_loss",
    "snap_to_events",
    "snap_to_steps",
    "soft_nms",
]
