"""Unsupervised event proposals: self-similarity k-means atomic events and their composites (PSVL)."""

from proposals.composite import COMPOSERS
from proposals.config import ProposalConfig
from proposals.events import AtomicEvent
from proposals.generate import ProposalSet, generate_proposals
from proposals.similarity import SIMILARITIES

__all__ = [
    "COMPOSERS",
    "SIMILARITIES",
    "AtomicEvent",
    "ProposalConfig",
    "ProposalSet",
    "generate_proposals",
]
