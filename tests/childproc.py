"""Running test code in a child interpreter: bounded in time, on one kernel twin.

Crash, fork and interpreter-exit behaviour is tested in a fresh interpreter that runs
this checkout's nova (``PYTHONPATH``) with the chosen twin forced
(``NOVA_NO_EXTENSIONS`` or ``NOVA_REQUIRE_EXTENSIONS``), and is killed when it does not
finish within its timeout (the test then fails: a hang is a failure, never a wait).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 30.0


def child_env(core: SimpleNamespace | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: this checkout first on ``PYTHONPATH``, no
    ``NOVA_EXIT_TIMEOUT`` inherited, *core*'s twin forced (when given), then *extra*."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOVA_EXIT_TIMEOUT", None)
    if core is not None:
        env.pop("NOVA_NO_EXTENSIONS", None)
        env.pop("NOVA_REQUIRE_EXTENSIONS", None)
        env["NOVA_NO_EXTENSIONS" if core.pure else "NOVA_REQUIRE_EXTENSIONS"] = "1"
    if extra:
        env.update(extra)
    return env


def _communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the child interpreter hung: not done within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")


def run_code(core: SimpleNamespace | None, code: str, timeout: float = CHILD_TIMEOUT,
             args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run *code* (dedented) with ``python -c`` and *args*, in the checkout root, on
    *core*'s twin (None: the twin this environment chooses)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=child_env(core),
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = _communicate(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_script(script: str, tmp_path: Path, core: SimpleNamespace | None = None,
               env_extra: dict[str, str] | None = None,
               timeout: float = CHILD_TIMEOUT) -> tuple[int, str, float]:
    """Write *script* (dedented) to ``tmp_path/child.py`` and run it there (so that
    ``sys.argv[0]`` names a file the test can put results beside).  Returns (exit code,
    stderr, seconds it ran)."""
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(script))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(path)], env=child_env(core, env_extra), cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = _communicate(proc, timeout)
    return proc.returncode, err, time.monotonic() - t0
