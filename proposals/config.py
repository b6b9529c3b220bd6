"""The settings of one proposal run, validated, frozen and hashable."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proposals.composite import COMPOSERS
from proposals.similarity import SIMILARITIES
from pseudo.registry import Registry, UnknownNameError

T = TypeVar("T")


def _known(registry: Registry[T], name: str) -> str:
    try:
        registry.get(name)
    except UnknownNameError as exc:  # a ValueError, so pydantic reports it under the field
        raise ValueError(str(exc)) from None
    return name.lower()


class ProposalConfig(BaseModel):
    """Self-similarity k-means event proposals (PSVL, ICCV 2021), every choice a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: rows after linear resampling along time; None keeps the native steps
    resample_steps: Annotated[int, Field(ge=2)] | None = 128
    #: a name in SIMILARITIES
    similarity: str = "cosine"
    #: softmax temperature of ``euclidean_softmax``
    temperature: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    #: k for k-means, or "auto": the best silhouette over k_min..k_max
    num_clusters: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    k_min: int = Field(default=2, ge=2)
    k_max: int = Field(default=12, ge=2)
    #: atomic events shorter than this many steps merge into their more similar neighbour
    min_event_steps: int = Field(default=2, ge=1)
    #: a name in COMPOSERS
    composer: str = "random"
    num_proposals: int = Field(default=50, ge=1)
    #: most atomic events in one composite; None = no limit
    max_atoms: Annotated[int, Field(ge=1)] | None = None
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @field_validator("similarity")
    @classmethod
    def _known_similarity(cls, v: str) -> str:
        return _known(SIMILARITIES, v)

    @field_validator("composer")
    @classmethod
    def _known_composer(cls, v: str) -> str:
        return _known(COMPOSERS, v)

    @model_validator(mode="after")
    def _k_range(self) -> ProposalConfig:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be >= k_min ({self.k_min})")
        return self

    def settings_hash(self) -> str:
        """First 12 hex digits of the sha256 of the settings as sorted JSON."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
