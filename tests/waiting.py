"""Waiting in tests for a state another thread reaches: poll a predicate, bounded in
time (a hang fails the test, it never waits for ever)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Return once *cond()* is true; AssertionError ("timed out waiting for *what*")
    after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)
