"""Module-level unit functions for tests/test_jobs.py (workers import them by name)."""

from __future__ import annotations

import os
import time

import torch


def noisy_sum(index: int, seed: int, *, scale: float) -> list[dict]:
    """A unit: seeded noise, summed; the same on any executor."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(1000, generator=generator, dtype=torch.float64) * scale
    return [{"id": f"row{index}", "index": index, "value": float(values.sum())}]


def fails_on(index: int, bad: int) -> list[dict]:
    if index == bad:
        raise RuntimeError(f"unit {index} cannot run")
    return [{"id": f"row{index}", "index": index}]


def slow(index: int, seconds: float) -> list[dict]:
    time.sleep(seconds)
    return [{"id": f"row{index}", "index": index, "pid": os.getpid()}]
