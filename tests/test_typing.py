"""Typing reaches users: after README's install, mypy --strict sees nova's real classes.

A small user script, outside the checkout, is checked by ``mypy --strict``: a misspelt
method must be an error (it would pass if the public names were ``Any``), and mypy must
find the installed package (no "Cannot find implementation or library stub").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


USER_SCRIPT = '''
from nova import Bus, Emitter, Event, ListenerManager, MemoryStore, RetryPolicy, WorkerPool

store = MemoryStore()
store.append("s", Event("t"))
store.apend("s", Event("t"))            # misspelt: line 6
em = Emitter()
em.emitt(Event("t"))                   # misspelt: line 8
bus = Bus()
bus.publsh("orders", Event("t"))       # misspelt: line 10
lm = ListenerManager()
lm.registr(print)                      # misspelt: line 12
n: int = RetryPolicy().max_attempts
pool: WorkerPool = WorkerPool(1, 1)
'''


def _mypy() -> list[str]:
    exe = shutil.which("mypy")
    if exe is not None:
        return [exe]
    return [sys.executable, "-m", "mypy"]


def test_mypy_strict_sees_real_classes(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    proc = subprocess.run(
        [*_mypy(), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "Cannot find implementation or library stub" not in out, out
    assert proc.returncode == 1, out
    for line, name in ((6, "apend"), (8, "emitt"), (10, "publsh"), (12, "registr")):
        assert f"user_script.py:{line}: error: " in out and f'attribute "{name}"' in out, out
    assert out.count(": error: ") == 4, out
