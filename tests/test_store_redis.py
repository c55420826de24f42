"""RedisStore: the conformance suite against a real valkey-server (one per session,
a fresh key prefix per store), plus what is specific to the Redis backend: the
event-time index with shuffled timestamps, layout and codec checks, errors for a
wrong URL, a refused connection, bad credentials and a key of the wrong type."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import redis

from nova.errors import StoreAuthError, StoreLayoutError, StoreUnavailable, ValidationError
from nova.events import Event
from nova.store import Cursor, RedisStore

from store_conformance import T0, StoreConformance, stateful_test_case
from valkey_server import ValkeyServer, free_port


class TestRedisStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, nova_valkey: ValkeyServer, redis_prefix: str) -> None:
        self.url = nova_valkey.url
        self.prefix = redis_prefix
        self.n = 0

    def make_store(self, **options: Any) -> RedisStore:
        self.n += 1
        # pickle: the suite stores tuples and arbitrary objects, as MemoryStore keeps them
        return RedisStore(self.url, prefix=f"{self.prefix}.{self.n}", codec="pickle", **options)


def _stateful_factory() -> Any:
    from valkey_server import fresh_prefix, session_server

    def make(**options: Any) -> RedisStore:
        return RedisStore(session_server().url, prefix=fresh_prefix(), **options)

    return make


TestRedisModel = stateful_test_case(_stateful_factory(), max_examples=10)


# ---------------------------------------------------------------------- event time
@pytest.fixture
def store(nova_valkey: ValkeyServer, redis_prefix: str) -> Any:
    s = RedisStore(nova_valkey.url, prefix=redis_prefix)
    yield s
    s.close()


def test_windows_are_exact_with_shuffled_timestamps(store: RedisStore) -> None:
    """Timestamps arrive in random order, many within one millisecond and many equal;
    every window is exactly the events of [start, end) in (timestamp, sequence) order."""
    rng = random.Random(14)
    # spread over ~3 ms with ns resolution, duplicates included, some far in the past/future
    stamps = [T0 + rng.randrange(0, 3_000_000) for _ in range(1500)]
    stamps += [T0 + 1_000_000] * 20 + [-(2**63) + 5, 2**63 - 5, 0, -1]
    rng.shuffle(stamps)
    rows = []
    i = 0
    while i < len(stamps):
        k = rng.randrange(1, 50)
        part = stamps[i : i + k]
        stream = rng.choice(["a", "b", "c"])
        if rng.random() < 0.5:
            store.append_many(stream, [Event("t", i + j, timestamp=ts) for j, ts in enumerate(part)])
        else:
            store.append_columns(stream, types="t", timestamps=part, data=list(range(i, i + len(part))))
        rows += [(ts, i + j) for j, ts in enumerate(part)]  # data == global sequence - 1
        i += k
    rows.sort()
    for _ in range(60):
        a = T0 + rng.randrange(-10, 3_000_010)
        b = a + rng.choice([0, 1, 2, 999, 1000, 1001, rng.randrange(0, 3_000_000)])
        want = [d for ts, d in rows if a <= ts < b]
        assert [e.data for e in store.replay(a, b)] == want
        batch = store.window(a, b)
        assert batch.data == want
        assert batch.timestamps.tolist() == [ts for ts, _ in rows if a <= ts < b]
    assert [e.data for e in store.replay()] == [d for _, d in rows]
    assert store.window(None, 0).timestamps.tolist() == [-(2**63) + 5, -1]
    assert store.window(2**63 - 5).data == [d for ts, d in rows if ts == 2**63 - 5]


def test_window_pages_past_one_script_call(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import nova.store.redis as mod
    import nova.store.redis_windows as windows

    monkeypatch.setattr(mod, "_PAGE", 7)
    monkeypatch.setattr(windows, "_PAGE", 7)
    store.append_columns("a", types="t", timestamps=[T0 + (i * 7919) % 100 for i in range(100)], data=list(range(100)))
    store.append("b", Event("u", "late", timestamp=T0 + 50))
    got = store.window(T0 + 10, T0 + 90)
    want = sorted((T0 + (i * 7919) % 100, i) for i in range(100) if 10 <= (i * 7919) % 100 < 90)
    assert got.timestamps.tolist()[: len(want) + 1].count(T0 + 50) == 2
    assert [d for d in got.data if d != "late"] == [d for _, d in want]
    assert [e.data for e in store.replay(streams="b", types="u")] == ["late"]
    assert len(store.read("a", limit=None)[0]) == 100
    assert [e.data for e in store.read("a", Cursor("a", 90, None), limit=8)[0]] == list(range(90, 98))


def test_two_store_objects_share_the_server_state(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    a = RedisStore(nova_valkey.url, prefix=redis_prefix)
    b = RedisStore(nova_valkey.url, prefix=redis_prefix)
    try:
        sub = b.subscribe("s")
        assert a.append("s", Event("t", 1, timestamp=T0)) == 1
        assert b.append("s", Event("t", 2, timestamp=T0 - 5)) == 2
        assert [e.data for e in sub.get_many(10, timeout=5)] in ([1, 2], [1])
        assert [e.data for e in a.replay()] == [2, 1]
        assert a.streams() == b.streams() == ["s"]
        assert b.stream_info("s").last_position == 2
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------- errors
def test_wrong_url_is_a_validation_error() -> None:
    for url in ("http://localhost:6379", "localhost:6379", "sqlite:///x.db"):
        with pytest.raises(ValidationError, match="Expected a redis://, rediss:// or unix:// URL"):
            RedisStore(url)
    with pytest.raises(TypeError, match="Expected url as a str, got int"):
        RedisStore(6379)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Expected prefix as a non-empty str without braces"):
        RedisStore("redis://127.0.0.1:1/0", prefix="a{b}")


def test_refused_connection_is_store_unavailable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StoreUnavailable, match=f"Expected the Redis server at redis://127.0.0.1:{port}/0 to answer"):
        RedisStore(f"redis://127.0.0.1:{port}/0", retries=1, timeout=1.0)
    assert issubclass(StoreUnavailable, ConnectionError)


def test_auth_failure_is_store_auth_error() -> None:
    with ValkeyServer(password="s3cret") as server:
        for url in (f"redis://127.0.0.1:{server.port}/0", f"redis://:wrong@127.0.0.1:{server.port}/0"):
            with pytest.raises(StoreAuthError, match="accept the credentials"):
                RedisStore(url, retries=0)
        with pytest.raises(StoreAuthError) as info:
            RedisStore(f"redis://:wrong@127.0.0.1:{server.port}/0", retries=0)
        assert "wrong" not in str(info.value).split("got")[0]  # the password is never echoed
        with RedisStore(server.url, prefix="ok") as s:
            assert s.append("a", Event("t", 1)) == 1


def test_key_of_the_wrong_type(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    r = redis.Redis.from_url(nova_valkey.url)
    try:
        r.set("{" + redis_prefix + "}:meta", "not a hash")
        with pytest.raises(StoreLayoutError, match="to be a nova store's hash, got a key of type string"):
            RedisStore(nova_valkey.url, prefix=redis_prefix)
        other = redis_prefix + "b"
        with RedisStore(nova_valkey.url, prefix=other) as s:
            r.set("{" + other + "}:s:x", "oops")
            with pytest.raises(StoreLayoutError, match="of type string while appending to .x."):
                s.append("x", Event("t", 1))
            assert s.stats().events == 0 and s.streams() == []  # the failed script wrote nothing
        r.hset("{" + redis_prefix + "c}:meta", "format", "something-else")
        with pytest.raises(StoreLayoutError, match="got one with format"):
            RedisStore(nova_valkey.url, prefix=redis_prefix + "c")
    finally:
        r.close()


def test_codec_is_recorded_and_checked(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    with RedisStore(nova_valkey.url, prefix=redis_prefix, codec="msgpack") as s:
        s.append("a", Event("t", {"b": b"\x00bytes"}, timestamp=T0))
    with pytest.raises(StoreLayoutError, match="Expected codec 'msgpack'"):
        RedisStore(nova_valkey.url, prefix=redis_prefix, codec="json")
    with RedisStore(nova_valkey.url, prefix=redis_prefix) as s:
        assert s.codec.name == "msgpack"
        assert [e.data for e in s.replay()] == [{"b": b"\x00bytes"}]
    with RedisStore(nova_valkey.url, prefix=redis_prefix + "p", codec="pickle"):
        pass
    with pytest.raises(StoreLayoutError, match="got None for a store written with codec 'pickle'"):
        RedisStore(nova_valkey.url, prefix=redis_prefix + "p")


def test_client_argument(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    r = redis.Redis.from_url(nova_valkey.url)
    with RedisStore(client=r, prefix=redis_prefix) as s:
        assert s.append("a", Event("t", 1)) == 1
    assert r.ping()  # a caller's client stays open
    r.close()
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(client=redis.Redis.from_url(nova_valkey.url, decode_responses=True))
    with pytest.raises(TypeError, match="Expected client as a redis.Redis, got str"):
        RedisStore(client="nope")


def test_append_retried_after_a_lost_reply_is_applied_once(store: RedisStore) -> None:
    """The token makes the append script idempotent: running the same call twice (what
    a retry after a lost reply does) stores the events once and returns the same
    position; another call in the same ring slot is applied."""
    from nova.store.redis_rows import msgpack_array, ts_bytes

    keys = [*store._append_keys, store._k_stream_b + b"a", store._k_tok_b]

    def call(counter: int, ts: int) -> Any:
        head = [b"a", *store._cfg, b"600", b"1", b"1", b"%d" % counter, b"%d" % (counter % 1024), b"1"]
        return store._s_append(keys=keys, args=[msgpack_array([*head, ts_bytes(ts), b"t", b"id", b"", b"1"])])

    first = call(10**6, T0)
    assert call(10**6, T0) == first == [1, b"1 1"]
    assert call(10**6 + 1024, T0) == [1, b"2 2"]  # same slot, another call
    assert store.stats().events == 2 and store.stream_info("a").last_position == 2


def test_numpy_bytes_types_and_ids(store: RedisStore) -> None:
    store.append_columns("a", types=np.array([b"x", b"y"]), timestamps=np.array([T0, T0 + 1]), ids=["i1", "i2"])
    assert [(e.type, e.id) for e in store.replay()] == [("x", "i1"), ("y", "i2")]


def test_open_store_urls(nova_valkey: ValkeyServer, redis_prefix: str, tmp_path: Any) -> None:
    import nova
    from nova.store import MemoryStore, SQLiteStore

    with nova.open_store("memory://") as m:
        assert isinstance(m, MemoryStore)
    with nova.open_store(f"sqlite:///{tmp_path}/x.db") as q:
        assert isinstance(q, SQLiteStore) and q.path == f"{tmp_path}/x.db"
    with nova.open_store(f"{nova_valkey.url}?prefix={redis_prefix}", codec="msgpack") as r:
        assert isinstance(r, RedisStore) and r.prefix == redis_prefix and r.codec.name == "msgpack"
        r.append("a", Event("t", 1))
    with nova.open_store(f"{nova_valkey.url}?prefix={redis_prefix}") as again:
        assert again.stream_info("a").length == 1
    for bad in ("mysql://x", "memory://x", "sqlite:///"):
        with pytest.raises(ValidationError, match="Expected"):
            nova.open_store(bad)
    with pytest.raises(TypeError, match="Expected url as a str"):
        nova.open_store(None)  # type: ignore[arg-type]


def test_blocking_reads_end_before_the_socket_timeout(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    """A subscription waits in XREAD BLOCK slices shorter than the connection's socket
    timeout: a wait longer than the timeout is a Timeout, not a lost connection."""
    from nova.errors import Timeout

    for store in (RedisStore(nova_valkey.url, prefix=redis_prefix + "a", timeout=0.3),
                  RedisStore(client=redis.Redis.from_url(nova_valkey.url, socket_timeout=0.3), prefix=redis_prefix + "b")):
        with store, store.subscribe("quiet") as sub:
            with pytest.raises(Timeout):
                sub.get(timeout=0.8)
            store.append("quiet", Event("t", 1))
            assert sub.get(timeout=5).data == 1


def test_memory_bytes_counts_the_streams(store: RedisStore) -> None:
    # memory_bytes summed the hashes, index and log only: the streams, which hold the
    # payloads, were left out.
    before = store.stats().memory_bytes
    store.append_many("big", [Event("t", "x" * 2000, timestamp=T0 + i) for i in range(200)])
    grown = store.stats().memory_bytes - before
    assert grown >= 200 * 2000
