"""``nova demo`` runs the complete example (nova.demo), and ``nova replay`` reads the
window it left in its SQLite file: the issue's first-contact path, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from nova import SQLiteStore

from test_cli import nova_cmd, run  # noqa: F401 (nova_cmd: a fixture)


def test_demo_then_replay(nova_cmd: list[str], tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    cp = run(nova_cmd, "demo", "--db", str(db), "--users", "20", "--orders", "40", timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "ACCOUNTING OK users=20 orders=40" in cp.stdout
    assert f"events kept in {db}: nova replay sqlite:///{db} --start now-5m --end now" in cp.stdout
    cp = run(nova_cmd, "replay", f"sqlite:///{db}", "--start", "now-1h", "--end", "now+1m", "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    got = [json.loads(x) for x in cp.stdout.splitlines()]
    with SQLiteStore(db) as store:
        want = [e.id for e in store.replay()]
    assert want and [g["id"] for g in got] == want
    cp = run(nova_cmd, "demo", "--users", "-1")  # the example's own argument check
    assert cp.returncode == 2 and "Expected --users >= 0" in cp.stderr and "Traceback" not in cp.stderr
    assert cp.stderr.startswith("usage: nova demo ")  # named as the user typed it
