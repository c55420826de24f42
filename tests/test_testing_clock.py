"""nova.testing: the manual clock and duration parsing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from nova.testing import SYSTEM_CLOCK, ManualClock, to_seconds


def test_to_seconds():
    assert to_seconds(1) == 1.0
    assert to_seconds(0.25) == 0.25
    assert to_seconds(timedelta(milliseconds=1500)) == 1.5
    with pytest.raises(TypeError, match="float seconds or a timedelta, got str"):
        to_seconds("1")
    with pytest.raises(TypeError, match="got bool"):
        to_seconds(True)
    with pytest.raises(ValueError, match=">= 0"):
        to_seconds(-1)
    with pytest.raises(ValueError, match=">= 0"):
        to_seconds(float("nan"))


def test_manual_clock_auto_advance():
    c = ManualClock(10.0, auto_advance=True)
    c.sleep(2.5)
    assert c.monotonic() == 12.5
    assert c.advance(timedelta(seconds=1)) == 13.5
    with pytest.raises(ValueError):
        c.advance(-1)


def test_manual_clock_sleep_blocks_until_advanced():
    c = ManualClock()
    woke = threading.Event()

    def sleeper():
        c.sleep(5)
        woke.set()

    t = threading.Thread(target=sleeper)
    t.start()
    assert c.wait_for_sleepers(1, timeout=10)
    assert c.sleepers == 1
    c.advance(4)
    assert not woke.wait(0.05)
    c.advance(1)
    assert woke.wait(10)
    t.join(10)
    assert c.sleepers == 0
    assert "ManualClock" in repr(c)


def test_system_clock_monotonic():
    a = SYSTEM_CLOCK.monotonic()
    SYSTEM_CLOCK.sleep(0)
    assert SYSTEM_CLOCK.monotonic() >= a
