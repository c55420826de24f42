"""Timing helpers shared by the ``ratio_*.py`` reports (not an asv benchmark file)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ("Row", "per_call_ns", "rate_per_s", "best_seconds")


def best_seconds(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Best wall time of *repeat* calls of *fn* (gc disabled while timing)."""
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if dt < best:
                best = dt
    finally:
        if enabled:
            gc.enable()
    return best


def per_call_ns(stmt: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Nanoseconds per call of *stmt*, best of *repeat* loops of *number* calls."""
    def loop() -> None:
        for _ in range(number):
            stmt()

    return best_seconds(loop, repeat) / number * 1e9


def rate_per_s(fn: Callable[[], Any], items: int, repeat: int = 3) -> float:
    """Items per second when one call of *fn* processes *items* items (best run)."""
    return items / best_seconds(fn, repeat)


@dataclass
class Row:
    """One line of the ratio report.

    ``value`` and ``baseline`` are in ``unit``; ``ratio`` is what the target is about
    (e.g. speedup = baseline/value for times, value/baseline for rates); ``met`` is
    whether the target holds on this run (None when the row is informational).
    """

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    ratio: float
    target: str
    met: bool | None

    def format(self) -> str:
        flag = {True: "met", False: "MISSED", None: "info"}[self.met]
        return (
            f"{self.name:<52} {self.value:>12.4g} {self.unit:<8} vs {self.baseline_name:<34} "
            f"{self.baseline:>12.4g}  ratio {self.ratio:>8.3g}  target {self.target:<14} {flag}"
        )
