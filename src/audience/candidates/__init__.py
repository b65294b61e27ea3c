"""Candidate generators behind one interface (see base.py) and a registry to build them by name."""

from audience.arrays import TopK
from audience.candidates.base import CandidateSource, ClipQueries
from audience.candidates.registry import make_source

__all__ = ["CandidateSource", "ClipQueries", "TopK", "make_source"]
