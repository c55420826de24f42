"""examples/complete (issue 17 part 2): the example runs in a child interpreter within a
hard timeout, on both twins, and its final accounting balances, also when SIGINT or
SIGTERM arrives in the middle of the run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOUND = 30.0
if str(ROOT) not in sys.path:  # the example package lives at the repo root
    sys.path.insert(0, str(ROOT))
from nova.demo.workflows import Workload  # noqa: E402

FINAL = re.compile(r"^ACCOUNTING (OK|FAILED) users=(\d+) orders=(\d+) welcome_dead=(\d+) "
                   r"billing_dead=(\d+) interrupted=(yes|no)", re.M)


def _env(core) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("NOVA_NO_EXTENSIONS", None)
    env.pop("NOVA_REQUIRE_EXTENSIONS", None)
    env["NOVA_NO_EXTENSIONS" if core.pure else "NOVA_REQUIRE_EXTENSIONS"] = "1"
    return env


def _final(out: str) -> tuple[str, int, int, int, int, str]:
    m = FINAL.search(out)
    assert m, out
    return m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5]), m[6]


def test_complete_example_accounting_balances(core, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    cmd = [sys.executable, "-m", "examples.complete", "--db", str(db), "--seed", "17"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BOUND, env=_env(core), cwd=str(ROOT))
    except subprocess.TimeoutExpired as e:  # run() kills the child before raising
        pytest.fail(f"example did not finish within {BOUND} s: {e.stdout!r}")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    status, users, orders, welcome_dead, billing_dead, interrupted = _final(out)
    work = Workload.make(17, 200, 600)
    # the seeded "permanent" failures are exactly the dead letters, then all redriven
    assert (status, users, orders, interrupted) == ("OK", 200, 600, "no")
    assert welcome_dead == sum(u["fail"] == "permanent" for u in work.users) > 0
    assert billing_dead == sum(o["fail"] == "permanent" for o in work.orders) > 0
    assert f"redrive (bus): replayed {billing_dead}, succeeded {billing_dead}," in out
    assert f"redrive (listener manager): replayed {welcome_dead}, succeeded {welcome_dead}," in out
    assert "GET /healthz -> 200" in out and "GET /metrics -> 200" in out
    assert 'nova_bus_published_total{bus="shop",topic="orders"} 600.0' in out
    assert " BAD " not in out
    assert db.exists()  # --db keeps the durable file for `nova replay`


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_complete_example_signal_mid_run_loses_nothing(core, tmp_path: Path, sig: signal.Signals) -> None:
    cmd = [sys.executable, "-m", "examples.complete", "--db", str(tmp_path / "demo.db"),
           "--users", "400", "--orders", "1200", "--pace", "0.005"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(core), cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + BOUND
        for line in proc.stdout:                # the handlers are installed before READY
            lines.append(line)
            if line.startswith("READY"):
                break
            assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.5)                         # some events sent, most not yet (1600 x 5 ms)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=BOUND)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    out = "".join(lines) + out
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert f"{sig.name} received" in out
    status, users, orders, welcome_dead, billing_dead, interrupted = _final(out)
    assert (status, interrupted) == ("OK", "yes"), out
    assert 0 < users + orders < 1600, out      # stopped mid-run, and what was accepted balanced
    assert " BAD " not in out
