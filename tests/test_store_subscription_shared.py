"""The bookkeeping both live store subscriptions share (nova.store.consumer.Consumer:
the overflow policies, the range dropped while still in history, the end, close and
repr), run through the memory subscription (both kernel twins) and the Redis one
(a real valkey-server from tests/valkey_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nova.errors import BufferFull, StoreClosed
from nova.events import Event
from nova.store import Cursor, MemoryStore, RedisStore
from nova.store.consumer import Consumer

from valkey_server import ValkeyServer

T0 = 1_700_000_000 * 10**9


def ev(i: int) -> Event:
    return Event("t", i, timestamp=T0 + i)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, core: Any) -> Iterator[Any]:
    if request.param == "memory":
        s: Any = MemoryStore(kernel=core.ColumnLog)
    else:
        server: ValkeyServer = request.getfixturevalue("nova_valkey")
        s = RedisStore(server.url, prefix=request.getfixturevalue("redis_prefix"))
    try:
        yield s
    finally:
        s.close()


def test_drop_oldest_while_in_history_skips_the_dropped_live_range(store: Any) -> None:
    store.append("a", *[ev(i) for i in range(1, 6)])  # history: positions 1..5
    sub = store.subscribe("a", None, buffer=3, overflow="drop_oldest")
    assert isinstance(sub, Consumer)
    store.append("a", *[ev(i) for i in range(6, 16)])  # live: 6..15, 10 > buffer
    got = [sub.get(timeout=5).data for _ in range(8)]
    # the oldest live events 6..12 are dropped once; history is read whole first
    assert got == [1, 2, 3, 4, 5, 13, 14, 15]
    assert sub.get_many(10, timeout=0.05) == []
    st = sub.stats()
    assert (st.delivered, st.dropped, st.overflows, st.missed, st.backlog) == (8, 7, 1, 0, 0)
    assert sub.cursor.position == 15
    sub.close()


def test_drop_oldest_when_live_moves_the_next_position(store: Any) -> None:
    store.append("a", ev(1))
    sub = store.subscribe("a", Cursor("a", 1, None), buffer=2, overflow="drop_oldest")
    store.append("a", *[ev(i) for i in range(2, 7)])  # live 2..6: 5 > 2
    assert [sub.get(timeout=5).data for _ in range(2)] == [5, 6]
    st = sub.stats()
    assert (st.dropped, st.overflows, st.backlog) == (3, 1, 0)
    sub.close()


def test_overflow_error_ends_the_subscription_at_the_last_event_taken(store: Any) -> None:
    store.append("a", ev(1), ev(2))
    sub = store.subscribe("a", None, buffer=2, overflow="error")
    assert sub.get(timeout=5).data == 1  # the batch taken holds 1 and 2
    store.append("a", ev(3), ev(4), ev(5))
    assert sub.get(timeout=5).data == 2
    with pytest.raises(BufferFull, match=r"^Expected the subscriber to keep up within buffer=2 events, got 3 live events not taken$"):
        sub.get(timeout=5)
    assert sub.closed and sub.end_reason == "overflow"
    assert sub.cursor == Cursor("a", 2, T0 + 2)
    with pytest.raises(StoreClosed, match=r"\(overflow\)"):
        sub.get(timeout=0.05)
    assert list(sub) == []
    assert sub.stats().overflows == 1


def test_close_keeps_the_cursor_drops_what_was_not_taken_and_is_idempotent(store: Any) -> None:
    store.append("a", *[ev(i) for i in range(1, 5)])
    sub = store.subscribe("a", None)
    assert sub.get(timeout=5).data == 1
    name = type(sub).__name__
    assert repr(sub) == f"<{name} stream='a' overflow='block' open>"
    assert sub.stats().backlog == 0  # the whole history is behind live_from
    store.append("a", ev(5))
    assert sub.stats().backlog == 1
    sub.close()
    sub.close()
    assert sub.closed and sub.end_reason == "closed"
    assert sub.cursor == Cursor("a", 1, T0 + 1)
    assert repr(sub) == f"<{name} stream='a' overflow='block' closed>"
    assert list(sub) == []
    assert sub.stats().backlog == 0
    with sub:
        pass  # the context manager closes again: still idempotent
