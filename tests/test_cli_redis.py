"""The ``nova`` command against a real Redis-protocol server (the session's
valkey-server from tests/valkey_server.py): the same URLs nova.open_store takes."""

from __future__ import annotations

import json
from typing import Any

from nova import Event
from nova.store import RedisStore

from test_cli import MIN, T0, child_env, nova_cmd, one_error_line, run  # noqa: F401 (nova_cmd: a fixture)


def test_replay_streams_stats_on_redis(nova_cmd: list[str], nova_valkey: Any, redis_prefix: str) -> None:
    with RedisStore(nova_valkey.url, prefix=redis_prefix) as store:
        ids = []
        for i in range(6):
            ev = Event("order.placed", {"i": i}, timestamp=T0 + i * MIN)
            store.append("orders" if i % 2 else "users", ev)
            ids.append(ev.id)
    url = f"{nova_valkey.url}?prefix={redis_prefix}"
    cp = run(nova_cmd, "replay", url, "--start", str(T0 + MIN), "--end", "2024-01-01T09:05:00Z", "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    got = [json.loads(x) for x in cp.stdout.splitlines()]
    assert [g["id"] for g in got] == ids[1:5]
    assert [g["stream"] for g in got] == ["orders", "users", "orders", "users"]
    cp = run(nova_cmd, "streams", url, "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    assert {r["stream"]: r["events"] for r in map(json.loads, cp.stdout.splitlines())} == {"users": 3, "orders": 3}
    cp = run(nova_cmd, "stats", url)
    assert cp.returncode == 0 and "RedisStore" in cp.stdout, cp.stderr


def test_unreachable_redis_is_one_line(nova_cmd: list[str]) -> None:
    from valkey_server import free_port

    cp = run(nova_cmd, "stats", f"redis://127.0.0.1:{free_port()}/0?prefix=t", env=child_env())
    line = one_error_line(cp, 1)
    assert line.startswith("nova: error: Expected the Redis server at"), line
