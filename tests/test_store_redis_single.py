"""RedisStore's lean single-event append (APPEND_ONE, sent packed by hiredis on a
pool connection): what it stores is what the full script stores, its token slot is
the full script's (a retry after a lost reply runs the full script and is applied
once), a new stream, a per-stream limit and a server that lost its scripts take the
right path.  Against a real valkey-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from nova.events import Event
from nova.store import RedisStore

from store_conformance import T0
from valkey_server import ValkeyServer


@pytest.fixture
def store(nova_valkey: ValkeyServer, redis_prefix: str) -> Any:
    s = RedisStore(nova_valkey.url, prefix=redis_prefix)
    yield s
    s.close()


def _calls(url: str) -> dict[str, int]:
    r = redis.Redis.from_url(url)
    try:
        stats = r.info("commandstats")
        return {k: v["calls"] for k, v in stats.items()}
    finally:
        r.close()


def test_single_appends_take_the_lean_script_and_store_every_field(store: RedisStore, nova_valkey: ValkeyServer) -> None:
    first = Event("t", {"a": 1}, timestamp=T0 + 5)
    assert store.append("s", first) == 1  # a new stream: the full script
    sha = store._s_append_one.sha
    before = _calls(nova_valkey.url)
    evs = [
        Event("t", {"a": 2}, timestamp=T0 + 3, metadata={"k": "v", "é": "ü"}),
        Event("u", None, timestamp=T0 + 1),  # no payload: no "d" field
        Event("t", [1, 2], timestamp=T0 + 9, id="my-id"),
    ]
    assert [store.append("s", e) for e in evs] == [2, 3, 4]
    after = _calls(nova_valkey.url)
    assert after.get("cmdstat_evalsha", 0) - before.get("cmdstat_evalsha", 0) == 3
    assert sha
    # every field back, in (timestamp, sequence) order for windows, by position for reads
    want = [first, *evs]
    got = store.read("s")[0]
    assert [(e.id, e.type, e.timestamp, e.data, e.metadata) for e in got] == [
        (e.id, e.type, e.timestamp, e.data, e.metadata) for e in want
    ]
    win = store.window(T0, T0 + 10)
    assert win.positions.tolist() == [3, 2, 1, 4]
    assert win.sequences.tolist() == [3, 2, 1, 4]
    assert [e.id for e in store.replay(T0 + 2, T0 + 6)] == [evs[0].id, first.id]
    assert store.stream_info("s").last_position == 4
    with store.subscribe(None) as sub:  # the append log (global order) has them too
        assert [e.id for e in sub.get_many(10, timeout=5)] == [e.id for e in want]


def test_a_retry_runs_the_full_script_with_the_same_token(store: RedisStore) -> None:
    """What a retry after a lost reply does: the lean call was applied, its reply lost;
    the full script with the same token finds the slot and returns the same result
    without storing again.  And a lean call whose token slot holds an older call of
    the same slot is applied (the ring is written, not read, by the lean script)."""
    from nova.store.redis_appends import _TTL
    from nova.store.redis_rows import msgpack_array, ts_bytes

    store.append("a", Event("t", 0, timestamp=T0))
    counter = 10**6
    slot = b"%d" % (counter % 1024)
    keys = [*store._one_keys, store._k_stream_b + b"a", store._k_tok_b]
    args = [b"a", ts_bytes(T0 + 1), b"t", b"id1", b"", b"1", b"1", b"%d" % counter, slot, b"0", _TTL]
    assert store._evalsha_direct(store._append_client, keys, args) == 2
    full_keys = [*store._append_keys, store._k_stream_b + b"a", store._k_tok_b]
    head = [b"a", *store._cfg, _TTL, b"1", b"1", b"%d" % counter, slot, b"0"]
    full_args = [msgpack_array([*head, ts_bytes(T0 + 1), b"t", b"id1", b"", b"1"])]
    assert store._s_append(keys=full_keys, args=full_args) == [1, b"2 2"]  # the lean call's result
    assert store.stream_info("a").last_position == 2 and store.stats().events == 2
    args2 = [*args[:7], b"%d" % (counter + 1024), slot, b"0", _TTL]  # same slot, a new call
    assert store._evalsha_direct(store._append_client, keys, args2) == 3
    assert store.stats().events == 3


def test_a_limited_store_and_a_new_stream_use_the_full_script(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    with RedisStore(nova_valkey.url, prefix=redis_prefix, max_events_per_stream=2) as s:
        for i in range(5):
            assert s.append("x", Event("t", i, timestamp=T0 + i)) == i + 1
        assert [e.data for e in s.read("x")[0]] == [3, 4]  # evicted by the script, exactly
        assert s.stream_info("x").evicted == 3
        assert s.append("y", Event("t", "y", timestamp=T0)) == 1


def test_scripts_flushed_on_the_server_are_loaded_again(store: RedisStore, nova_valkey: ValkeyServer) -> None:
    store.append("s", Event("t", 1, timestamp=T0))
    r = redis.Redis.from_url(nova_valkey.url)
    try:
        r.script_flush()  # what a restarted server without persistence of scripts has
    finally:
        r.close()
    assert store.append("s", Event("t", 2, timestamp=T0 + 1)) == 2
    assert store.append("s", Event("t", 3, timestamp=T0 + 2)) == 3
    assert [e.data for e in store.read("s")[0]] == [1, 2, 3]


def test_bad_events_are_refused_before_the_server(store: RedisStore) -> None:
    store.append("s", Event("t", 1, timestamp=T0))
    with pytest.raises(TypeError, match="Expected an Event at index 0, got str"):
        store.append("s", "nope")
    with pytest.raises(TypeError):
        store.append("s", Event("t", object(), timestamp=T0))  # the json codec refuses it
    assert store.stream_info("s").last_position == 1


@pytest.mark.stress
def test_threads_appending_single_events_use_their_own_connections(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    import threading

    s = RedisStore(nova_valkey.url, prefix=redis_prefix)
    s.append("s0", Event("t", 0, timestamp=T0))
    s.append("s1", Event("t", 0, timestamp=T0))
    errors: list[BaseException] = []
    got: dict[int, list[int]] = {}
    done, leave = threading.Barrier(7), threading.Barrier(7)

    def run(k: int) -> None:
        try:
            got[k] = [s.append(f"s{k % 2}", Event("t", [k, i], timestamp=T0 + i)) for i in range(200)]
        except BaseException as exc:  # reported below
            errors.append(exc)
        try:
            done.wait(30)
            leave.wait(30)
        except threading.BrokenBarrierError:  # the main thread failed an assertion
            pass

    ts = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    done.wait(60)
    try:
        conns = list(s._one_conns)
        assert len(conns) == 7  # one per thread that appended single events (this one too)
        assert all(c._sock is not None for c in conns)
    finally:
        leave.wait(30)
    for t in ts:
        t.join(60)
    assert not errors
    assert s.stats().events == 2 + 6 * 200
    for name in ("s0", "s1"):
        evs = s.read(name)[0]
        assert len(evs) == 1 + 3 * 200
        assert s.stream_info(name).last_position == len(evs)
    for k, positions in got.items():
        assert positions == sorted(positions)  # each thread's order kept
    s.close()
    assert all(c._sock is None for c in conns)  # closed with the store (or with their thread)


_FORK_CHILD = r"""
import os, sys
from nova.events import Event
from nova.store import RedisStore
s = RedisStore(sys.argv[1], prefix=sys.argv[2])
s.append("f", Event("t", "first", timestamp=1))
s.append("f", Event("t", "parent-1", timestamp=2))
pid = os.fork()
if pid == 0:
    try:
        positions = [s.append("f", Event("t", f"child-{i}", timestamp=3)) for i in range(50)]
        os._exit(0 if len(set(positions)) == 50 else 3)
    except BaseException:
        os._exit(4)
positions = [s.append("f", Event("t", f"parent-{i}", timestamp=3)) for i in range(2, 52)]
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, status
evs = s.read("f")[0]
assert len(evs) == 102, len(evs)
assert sorted(e.data for e in evs if e.data.startswith("child")) == sorted(f"child-{i}" for i in range(50))
assert s.stream_info("f").last_position == 102
s.close()
print("ok")
"""


def test_a_forked_child_appends_on_a_connection_of_its_own(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run([sys.executable, "-c", _FORK_CHILD, nova_valkey.url, redis_prefix],
                       capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"
