"""pyee's and blinker's own test suites pass against nova.compat (issue 18).

Runs tests/compat/run_upstream.py's pipeline: the pinned sdists (downloaded with pip
into a cache folder when missing), their test files with the imports rewritten, pytest
in a child interpreter.  Never skipped: without the sdists and without PyPI it fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_upstream  # noqa: E402

# What the upstream files hold (counted by running them against pyee 13.0.1 and
# blinker 1.9.0 themselves: `python tests/compat/run_upstream.py --original`).
EXPECTED = {"pyee": 25, "blinker": 23}


def test_rewrite_points_imports_at_nova() -> None:
    src = "from pyee import EventEmitter\nfrom pyee.cls import on\nimport blinker\nfrom blinker import Signal\n"
    out = run_upstream.rewrite(src)
    assert out == ("from nova.compat.pyee import EventEmitter\nfrom nova.compat.pyee.cls import on\n"
                   "import nova.compat.blinker as blinker\nfrom nova.compat.blinker import Signal\n")


def test_rewrite_refuses_what_it_cannot_rewrite() -> None:
    import pytest

    with pytest.raises(ValueError, match="Expected only rewritable"):
        run_upstream.rewrite("import pyee.asyncio\n")


def test_upstream_suites_pass_against_nova_compat() -> None:
    outcomes = run_upstream.run(timeout=240)
    by_name = {o.project: o for o in outcomes}
    assert set(by_name) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        o = by_name[name]
        assert o.upstream_modules == [], f"{name}: the real package was imported: {o.upstream_modules}"
        assert o.failed == {} and o.skipped == {}, f"{name}: {o.failed or o.skipped}\n{o.output[-3000:]}"
        assert len(o.passed) == expected, f"{name}: {len(o.passed)} passed, expected {expected}"
        assert o.returncode == 0
