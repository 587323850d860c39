"""Work units, their keys and their seeds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Unit:
    """One piece of a long job.

    Attributes
    ----------
    key : str
        Identity of the unit: a hash of everything that changes its output
        (:func:`unit_key`). Finished keys are skipped on resume.
    spec : dict
        JSON-able description, stored in the ledger beside the rows.
    args : tuple
        What the job's function receives for this unit (small: large inputs
        shared by every unit go to ``run_units(shared=...)``).
    """

    key: str
    spec: dict = field(default_factory=dict, hash=False, compare=False)
    args: tuple = field(default=(), hash=False, compare=False)


def unit_key(*parts, length: int = 20) -> str:
    """Hex digest of the canonical JSON of ``parts`` (dict keys sorted)."""
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def unit_seed(seed: int, key: str) -> int:
    """A unit's random seed: from the run's seed and the unit's key, nothing else."""
    return (int(seed) * 1_000_003 + int(key[:8], 16)) % (2**31)
