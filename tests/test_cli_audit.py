"""``nova audit URL EVENT_ID``: the AuditTrail's history of one event, from a real
SQLite file, through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

from nova import AuditTrail, Event, ListenerConfig, ListenerManager, RetryPolicy, SQLiteStore

from test_cli import T0, nova_cmd, one_error_line, run  # noqa: F401 (nova_cmd: a fixture)


def _audited(path: Path) -> tuple[Event, Event]:
    """One event that fails once then succeeds, another handled at once."""
    calls: list[int] = []

    def flaky(ev: Event) -> None:
        calls.append(1)
        if ev.data["n"] == 1 and len(calls) < 2:
            raise RuntimeError("first try fails")

    first, second = Event("order.placed", {"n": 1}, timestamp=T0), Event("order.placed", {"n": 2}, timestamp=T0 + 1)
    with SQLiteStore(path) as store:
        trail = AuditTrail(store)
        with ListenerManager() as lm:
            trail.attach(lm)
            lm.register(flaky, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0.001)), id="billing")
            assert lm.process("billing", first) and lm.process("billing", second)
        assert trail.close(10)
    return first, second


def test_audit_history_of_one_event(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    first, second = _audited(path)
    url = f"sqlite:///{path}"
    cp = run(nova_cmd, "audit", url, first.id, "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    got = [json.loads(x) for x in cp.stdout.splitlines()]
    assert [(g["event_id"], g["listener"], g["attempt"], g["outcome"], g["error_type"]) for g in got] == [
        (first.id, "billing", 1, "retry_scheduled", "RuntimeError"),
        (first.id, "billing", 2, "ok", None),
    ]
    assert got[0]["error_message"] == "first try fails" and got[0]["event_type"] == "order.placed"
    cp = run(nova_cmd, "audit", url, second.id)
    assert cp.returncode == 0, cp.stderr
    assert f"1 delivery attempts of {second.id} (order.placed)" in cp.stdout and "billing" in cp.stdout


def test_audit_errors(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _audited(path)
    line = one_error_line(run(nova_cmd, "audit", f"sqlite:///{path}", "no-such-id"), 1)
    assert line == "nova: error: Expected audit records of event 'no-such-id' in stream 'nova.audit', got none"
    line = one_error_line(run(nova_cmd, "audit", f"sqlite:///{path}", "x", "--stream", "nova.other"), 1)
    assert "Expected an audit trail in stream 'nova.other', got no such stream" in line
    line = one_error_line(run(nova_cmd, "audit", f"sqlite:///{path}"), 2)
    assert "Missing argument 'EVENT_ID'" in line
