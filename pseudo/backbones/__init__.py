"""Encoders by name: ``build_backbone(BackboneConfig(name="hf_clip", model=...))``."""

from __future__ import annotations

from collections.abc import Callable

from pseudo.backbones.base import Backbone, BackboneConfig
from pseudo.registry import Registry

BackboneBuilder = Callable[[BackboneConfig], Backbone]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


@BACKBONES.register("hf_clip")
def _hf_clip(cfg: BackboneConfig) -> Backbone:
    from pseudo.backbones.hf_clip import HFClipBackbone

    return HFClipBackbone.from_config(cfg)


@BACKBONES.register("open_clip")
def _open_clip(cfg: BackboneConfig) -> Backbone:
    from pseudo.backbones.open_clip import OpenClipBackbone

    return OpenClipBackbone.from_config(cfg)


@BACKBONES.register("sentence")
def _sentence(cfg: BackboneConfig) -> Backbone:
    from pseudo.backbones.sentence import SentenceBackbone

    return SentenceBackbone.from_config(cfg)


def build_backbone(cfg: BackboneConfig) -> Backbone:
    return BACKBONES.get(cfg.name)(cfg)


__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "build_backbone"]
