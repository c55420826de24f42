"""RedisTransport in one process: what only a shared server adds to the Bus (topic
settings recorded on the server, buses sharing topics, group leases and rebalancing
between buses, dead letters in Redis and their redrive, acknowledgements, bad
arguments).  The in-process delivery/ordering/mode tests also run on Redis through
the ``bus_transport`` fixture (tests/bus_transports.py); processes, kills and server
restarts are in test_bus_redis_procs.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
import redis as redis_py

from nova import Bus, DeliveryMode, Event, RedisTransport, RetryPolicy, TopicConfig, errors
from nova.listener import DeadLetterConfig

from valkey_server import ValkeyServer, fresh_prefix


def _transport(server: ValkeyServer, prefix: str, **kw: Any) -> RedisTransport:
    kw.setdefault("session_timeout", 1.0)
    kw.setdefault("heartbeat", 0.1)
    return RedisTransport(server.url, prefix=prefix, **kw)


@pytest.fixture
def pair(nova_valkey: ValkeyServer, redis_prefix: str) -> Any:
    """Two buses on one prefix: two "processes" sharing topics."""
    ta, tb = _transport(nova_valkey, redis_prefix), _transport(nova_valkey, redis_prefix)
    a, b = Bus(transport=ta, name="a"), Bus(transport=tb, name="b")
    yield a, b, ta, tb
    a.shutdown(10)
    b.shutdown(10)
    ta.client.close()
    tb.client.close()


def _until(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_topic_settings_first_creator_wins(pair: Any) -> None:
    a, b, ta, _ = pair
    a.create_topic("orders", TopicConfig(partitions=8, delivery=DeliveryMode.EXACTLY_ONCE))
    b.create_topic("orders", TopicConfig(partitions=8, delivery="exactly-once"))  # same: fine
    c0 = Bus(transport=RedisTransport(client=ta.client, prefix=ta.prefix))
    try:
        with pytest.raises(errors.TopicExists, match=r"Expected topic 'orders' with the settings recorded .*partitions=8.*got .*partitions=4"):
            c0.create_topic("orders", TopicConfig(partitions=4))
    finally:
        c0.shutdown(5)
    # a topic made by publish/subscribe takes the recorded settings
    c = Bus(transport=RedisTransport(client=ta.client, prefix=ta.prefix), default_partitions=2)
    try:
        c.subscribe("orders", lambda e: None)
        assert c.topic_config("orders").partitions == 8
        assert c.topic_config("orders").delivery is DeliveryMode.EXACTLY_ONCE
        r = c.publish("orders", Event("x", 1), key="k")
        assert r.partition == c.partition_for("orders", "k") == a.partition_for("orders", "k")
    finally:
        c.shutdown(10)


def test_offsets_are_partition_offsets_across_buses(pair: Any) -> None:
    a, b, _, _ = pair
    a.create_topic("t", TopicConfig(partitions=2))
    got: list[int] = []
    for i in range(10):
        bus = a if i % 2 else b
        got.append(bus.publish("t", Event("x", i), key="same").offset)
    assert got == list(range(10))
    receipts = a.publish_many("t", [Event("x", i) for i in range(2500)], key="same")  # 3 pipelined batches
    assert [r.offset for r in receipts] == list(range(10, 2510))
    assert a.stats().published == b.stats().published == 2510


def test_fan_out_across_buses_and_groups_split_by_leases(pair: Any) -> None:
    a, b, ta, tb = pair
    a.create_topic("g", TopicConfig(partitions=8))
    fan: list[int] = []
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    b.subscribe("g", lambda e: fan.append(e.data))
    a.subscribe("g", lambda e: seen["a"].append(e.data), group="G")
    assert len(ta.group_owners("g", "G")) == 8  # the first member owns every partition at once
    b.subscribe("g", lambda e: seen["b"].append(e.data), group="G")
    # the second member gets half once the first gave them up (leases, heartbeats)
    assert _until(lambda: sorted(set(ta.group_owners("g", "G").values())) == sorted(
        {s.member for s in ta.slots + tb.slots if s.group == "G"}) and len(ta.group_owners("g", "G")) == 8)
    owners = ta.group_owners("g", "G")
    assert sorted(owners) == list(range(8)) and len(set(owners.values())) == 2
    receipts = a.publish_many("g", [Event("x", i) for i in range(1000)], key=None)
    assert a.flush(10) and b.flush(10)
    assert sorted(fan) == list(range(1000))
    assert sorted(v for vs in seen.values() for v in vs) == list(range(1000))
    part = {r.offset * 100 + r.partition: r.partition for r in receipts}
    assert len(part) == 1000
    by_value = {i: r.partition for i, r in enumerate(receipts)}
    a_parts = set(a.assignment("g", "G").popitem()[1])
    b_parts = set(b.assignment("g", "G").popitem()[1])
    assert a_parts | b_parts == set(range(8)) and not a_parts & b_parts
    assert {by_value[v] for v in seen["a"]} <= a_parts and {by_value[v] for v in seen["b"]} <= b_parts


def test_shutdown_releases_leases_for_the_others(pair: Any) -> None:
    a, b, ta, tb = pair
    a.create_topic("s", TopicConfig(partitions=4))
    got: list[int] = []
    a.subscribe("s", lambda e: None, group="G")
    b.subscribe("s", lambda e: got.append(e.data), group="G")
    assert _until(lambda: len(set(ta.group_owners("s", "G").values())) == 2)
    assert a.shutdown(10)
    bm = next(s.member for s in tb.slots if s.group == "G")
    assert _until(lambda: set(ta.group_owners("s", "G").values()) == {bm} and len(ta.group_owners("s", "G")) == 4, 2.0)
    for i in range(40):
        b.publish("s", Event("x", i), key=str(i))
    assert b.flush(10)
    assert sorted(got) == list(range(40))


def test_acks_after_the_outcome_and_noack_for_at_most_once(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    t = _transport(nova_valkey, redis_prefix)
    r = redis_py.Redis.from_url(nova_valkey.url)
    gate = threading.Event()
    try:
        with Bus(transport=t) as bus:
            bus.create_topic("alo", TopicConfig(partitions=1))
            bus.create_topic("amo", TopicConfig(partitions=1, delivery="at-most-once"))
            bus.subscribe("alo", lambda e: gate.wait(10), group="G")
            bus.subscribe("amo", lambda e: gate.wait(10), group="G")
            bus.publish("alo", Event("x", 1))
            bus.publish("amo", Event("x", 1))
            key = f"{{{redis_prefix}}}:bus:t:%s:0"
            # in flight: at-least-once is pending on the server, at-most-once was acked when read
            assert _until(lambda: r.xpending(key % "alo", "g:G")["pending"] == 1)
            assert _until(lambda: r.xinfo_groups(key % "amo")[0]["entries-read"] == 1)
            assert r.xpending(key % "amo", "g:G")["pending"] == 0
            gate.set()
            assert bus.flush(10)
            assert r.xpending(key % "alo", "g:G")["pending"] == 0
    finally:
        gate.set()
        r.close()
        t.client.close()


def test_dead_letters_go_to_a_redis_stream_and_redrive(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    t = _transport(nova_valkey, redis_prefix)
    broken = {"on": True}
    got: list[int] = []

    def h(e: Event) -> None:
        if broken["on"] and e.data % 5 == 0:
            raise ConnectionError(f"down for {e.data}")
        got.append(e.data)

    try:
        with Bus(transport=t) as bus:
            bus.create_topic("pay", TopicConfig(partitions=2, retry=RetryPolicy(max_attempts=2, initial_delay=0.001)))
            sub = bus.subscribe("pay", h, group="G")
            for i in range(20):
                bus.publish("pay", Event("payment", i), key=str(i))
            assert bus.flush(10)
            store = t.dead_letter_store("pay")
            assert bus.topic_config("pay").dead_letter.store is store
            letters = list(store.replay(streams=["nova.deadletter"]))
            assert sorted(e.data for e in letters) == [0, 5, 10, 15]
            md = letters[0].metadata
            assert md["nova.topic"] == "pay" and md["nova.listener"] == sub.listener.id
            assert md["nova.attempts"] == "2" and md["nova.error.type"].endswith("ConnectionError")
            broken["on"] = False
            report = bus.redrive(store, topic="pay")
            assert (report.replayed, report.succeeded, report.failed_again) == (4, 4, 0)
            assert sorted(got) == list(range(20))
            again = bus.redrive(store, topic="pay")  # idempotent: acked entries are skipped
            assert (again.replayed, again.skipped) == (0, 4)
    finally:
        t.client.close()


def test_exactly_once_group_dedup_across_buses(pair: Any) -> None:
    # a publisher retry (same event id) reaching another member of the group is
    # still handled once: the mark is on the server, per group
    a, b, ta, _ = pair
    a.create_topic("eo", TopicConfig(partitions=4, delivery="exactly-once"))
    calls: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def h(e: Event) -> None:
        with lock:
            calls[e.id] += 1

    a.subscribe("eo", h, group="W")
    b.subscribe("eo", h, group="W")
    assert _until(lambda: len(set(ta.group_owners("eo", "W").values())) == 2)
    events = [Event("o", i) for i in range(300)]
    for e in events:
        a.publish("eo", e, key=str(e.data))
    assert a.flush(10)
    for e in events[::3]:  # the same ids again, on another partition (the other member's)
        b.publish("eo", e, key=str(e.data + 1))
    assert a.flush(10) and b.flush(10)
    assert len(calls) == 300 and set(calls.values()) == {1}
    assert a.stats().duplicates + b.stats().duplicates == 100


def test_apublish_and_bad_arguments(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    with pytest.raises(errors.ValidationError, match="Expected prefix as a non-empty str without braces"):
        RedisTransport(nova_valkey.url, prefix="{x}")
    with pytest.raises(errors.ValidationError, match="Expected a redis://"):
        RedisTransport("http://localhost", prefix="p")
    with pytest.raises(TypeError, match="Expected session_timeout as a number of seconds, got str"):
        RedisTransport(nova_valkey.url, session_timeout="1")
    with pytest.raises(ValueError, match="Expected heartbeat as seconds in"):
        RedisTransport(nova_valkey.url, session_timeout=1.0, heartbeat=2.0)
    with pytest.raises(ValueError, match="Expected batch as an int >= 1, got 0"):
        RedisTransport(nova_valkey.url, batch=0)
    t = _transport(nova_valkey, redis_prefix)
    try:
        with Bus(transport=t) as bus:
            got: list[int] = []
            bus.subscribe("t", lambda e: got.append(e.data))

            async def main() -> list[Any]:
                return await asyncio.gather(*[bus.apublish("t", Event("x", i)) for i in range(5)])

            receipts = asyncio.run(main())
            assert sorted(r.offset for r in receipts) == list(range(5))
            assert bus.flush(10) and sorted(got) == list(range(5))
            with pytest.raises(TypeError, match="Expected an Event"):
                bus.publish("t", "nope")  # type: ignore[arg-type]
    finally:
        t.client.close()


def test_publish_to_a_server_that_is_gone_is_store_unavailable() -> None:
    server = ValkeyServer().start()
    t = RedisTransport(server.url, prefix=fresh_prefix(), retries=1, timeout=1.0)
    bus = Bus(transport=t)
    try:
        bus.create_topic("t")
        server.stop()
        with pytest.raises(errors.StoreUnavailable, match="Expected the Redis server at .* to answer while publishing to topic 't'"):
            bus.publish("t", Event("x"))
    finally:
        bus.shutdown(2)
        server.close()
        t.client.close()


def test_a_dead_member_loses_its_partitions_and_its_pending_entries_are_claimed(
        nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    # "ghost" joins the group, reads entries of both partitions without acknowledging
    # them, then stops heartbeating (a process that died): after the session timeout
    # the live member owns every partition and delivers the ghost's pending entries
    # first, in order, then the new ones.
    from nova.transport.redis_groups import STEP, GroupLease

    t = _transport(nova_valkey, redis_prefix, session_timeout=0.5, heartbeat=0.05)
    r = redis_py.Redis.from_url(nova_valkey.url)
    got: list[tuple[int, int]] = []
    try:
        with Bus(transport=t) as bus:
            bus.create_topic("d", TopicConfig(partitions=2))
            base = f"{t.kp}:g:d:G"
            for p in range(2):
                r.xgroup_create(f"{t.kp}:t:d:{p}", "g:G", id="$", mkstream=True)
            ghost = GroupLease(r, r.register_script(STEP), base, "ghost", 2, 60_000)
            assert ghost.step() == ({0, 1}, set(), 1)  # the ghost joined first: owns both
            for i in range(10):
                bus.publish("d", Event("x", i), key="a")  # one key: one partition, in order
            p = bus.partition_for("d", "a")
            key = f"{t.kp}:t:d:{p}"
            taken = r.xreadgroup("g:G", "ghost", {key: ">"}, count=4)  # 4 in flight at the ghost
            assert len(taken[0][1]) == 4
            ghost.session_ms = 1000  # its last renewal: expires in 1 s, never renewed
            ghost.step()
            bus.subscribe("d", lambda e: got.append((p, e.data)), group="G")
            assert t.group_owners("d", "G") == {0: "ghost", 1: "ghost"}
            assert _until(lambda: len(got) == 10, 10)
            assert [v for _, v in got] == list(range(10))  # the ghost's 4 first, then the rest
            member = next(s.member for s in t.slots if s.group == "G")
            assert t.group_owners("d", "G") == {0: member, 1: member}
            assert "ghost" not in t.group_members("d", "G")
            assert bus.flush(10)
            assert r.xpending(key, "g:G")["pending"] == 0
    finally:
        r.close()
        t.client.close()


def test_delete_topic_removes_it_from_the_server(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    t = _transport(nova_valkey, redis_prefix)
    r = redis_py.Redis.from_url(nova_valkey.url)
    try:
        with Bus(transport=t) as bus:
            bus.create_topic("gone", TopicConfig(partitions=3))
            bus.subscribe("gone", lambda e: None, group="G")
            bus.publish("gone", Event("x"))
            assert bus.flush(10)
            assert r.keys(f"{{{redis_prefix}}}:bus:*gone*")
            bus.delete_topic("gone")
            assert r.keys(f"{{{redis_prefix}}}:bus:*gone*") == []
            bus.create_topic("gone", TopicConfig(partitions=5))  # a new topic: its own settings
            assert bus.publish("gone", Event("x"), key="k").offset == 0
    finally:
        r.close()
        t.client.close()


def test_exactly_once_marks_live_between_one_and_two_ttls(pair: Any) -> None:
    # the group's marks take the topic's DedupWindow.max_age as TTL (server time)
    from nova import DedupWindow

    a, b, _, _ = pair
    a.create_topic("ttl", TopicConfig(partitions=1, delivery="exactly-once",
                                      dedup_window=DedupWindow(max_ids=None, max_age=0.4)))
    calls: list[str] = []
    a.subscribe("ttl", lambda e: calls.append(e.id), group="W")
    e = Event("x", 1)
    a.publish("ttl", e)
    assert a.flush(10)
    b.publish("ttl", e)  # within the TTL: skipped
    assert a.flush(10)
    assert calls == [e.id] and a.stats().duplicates == 1
    time.sleep(0.9)  # more than two TTLs: forgotten
    b.publish("ttl", e)
    assert a.flush(10)
    assert calls == [e.id, e.id]


def test_exactly_once_batch_claims_are_released_when_the_lane_moves(bus_transport: Any) -> None:
    # A group member claims the ids of a whole batch in the shared dedup window at
    # once; when its partition moves to a new member mid-batch (a join), the ids it
    # did not reach must be released, or the new owner skips them as duplicates and
    # they are never handled.
    started, gate = threading.Event(), threading.Event()
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def make(name: str) -> Any:
        def h(e: Event) -> None:
            if name == "a" and e.data == 0:
                started.set()
                gate.wait(10)
            with lock:
                calls.append((name, e.data))
        return h

    with Bus(transport=bus_transport()) as bus:
        bus.create_topic("eo", TopicConfig(partitions=2, delivery="exactly-once"))
        bus.subscribe("eo", make("a"), group="W")
        key = next(k for k in (f"k{i}" for i in range(100)) if bus.partition_for("eo", k) == 1)
        for i in range(5):
            bus.publish("eo", Event("x", i), key=key)
        assert started.wait(10)  # a is inside the batch of partition 1
        bus.subscribe("eo", make("b"), group="W")  # partition 1 moves to b
        gate.set()
        assert bus.flush(10)
        assert sorted(d for _, d in calls) == [0, 1, 2, 3, 4]
        assert calls[0] == ("a", 0) and {n for n, d in calls[1:]} == {"b"}
        assert bus.stats().duplicates == 0


def test_a_step_after_leaving_does_not_join_again(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    # A heartbeat racing with an unsubscribe ran its step after the leave: the member
    # joined again and owned partitions nobody served until its lease expired.
    t = _transport(nova_valkey, redis_prefix)
    try:
        with Bus(transport=t) as bus:
            sub = bus.subscribe("t", lambda e: None, group="G")
            slot = next(s for s in t.slots if s.group == "G")
            assert t.group_members("t", "G") == [slot.member]
            sub.unsubscribe()
            assert t.group_members("t", "G") == [] and t.group_owners("t", "G") == {}
            t.group_step(slot)  # the heartbeat thread's late step
            assert t.group_members("t", "G") == [] and t.group_owners("t", "G") == {}
    finally:
        t.client.close()


def test_a_client_that_decodes_responses_is_refused(nova_valkey: ValkeyServer) -> None:
    c = redis_py.Redis.from_url(nova_valkey.url, decode_responses=True)
    try:
        with pytest.raises(errors.ValidationError, match="Expected a redis.Redis client made with decode_responses=False"):
            RedisTransport(client=c)
        with pytest.raises(TypeError, match="Expected client as a redis.Redis, got str"):
            RedisTransport(client="redis://x")
    finally:
        c.close()
