"""The Bus on Redis through a server restart (AOF on, ``appendfsync always``): the
server is stopped mid-stream and started again on the same port and directory.

* during the outage, ``publish`` raises :class:`~nova.errors.StoreUnavailable` (after
  the client's bounded retries) and says which server and topic;
* after it, publishing resumes, the group resumes from its position on the server and
  the fan-out subscriber from its read position;
* nothing acknowledged is redelivered and nothing unacknowledged is lost: every event
  whose publish returned is handled, and (exactly-once topic, so a publish retried by
  the client after a lost reply is not counted twice) each exactly once by the group.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from nova import Bus, Event, RedisTransport, TopicConfig
from nova.errors import StoreUnavailable

from valkey_server import ValkeyServer


def test_server_restart_mid_stream_with_aof(tmp_path: Path) -> None:
    server = ValkeyServer(aof=True, directory=str(tmp_path)).start()
    stop = threading.Event()
    t = RedisTransport(server.url, prefix="restart", retries=2, timeout=2.0, session_timeout=10.0, heartbeat=0.5)
    bus = Bus(transport=t)
    try:
        bus.create_topic("t", TopicConfig(partitions=4, delivery="exactly-once"))
        group: Counter[int] = Counter()
        fan: Counter[int] = Counter()
        lock = threading.Lock()

        def in_group(e: Event) -> None:
            with lock:
                group[e.data] += 1

        def fan_out(e: Event) -> None:
            with lock:
                fan[e.data] += 1

        bus.subscribe("t", in_group, group="G")
        bus.subscribe("t", fan_out)
        ok: list[int] = []
        failed: list[int] = []

        def publisher() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    bus.publish("t", Event("x", i, id=f"e{i}"), key=str(i % 16))
                    ok.append(i)
                except StoreUnavailable:
                    failed.append(i)
                    time.sleep(0.01)

        th = threading.Thread(target=publisher, daemon=True)
        th.start()
        deadline = time.monotonic() + 20
        while len(ok) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()  # SIGTERM: the server shuts down (AOF fsync always)
        with pytest.raises(StoreUnavailable, match=r"Expected the Redis server at redis://127\.0\.0\.1:\d+/0 to answer while publishing to topic 't'"):
            bus.publish("t", Event("x", -1, id="outage"))
        time.sleep(0.5)  # consumers and heartbeat see the outage too
        server.start()
        deadline = time.monotonic() + 20
        mark = len(ok)
        while len(ok) < mark + 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        th.join(30)
        assert len(ok) >= mark + 300, "publishing did not resume after the restart"
        assert failed, "the outage was not seen by the publisher"
        assert bus.flush(30)
        with lock:
            # every acknowledged publish was delivered, to the group exactly once
            assert set(ok) <= set(group) and set(ok) <= set(fan)
            assert set(group.values()) == {1}
            assert -1 not in group
            assert set(group) <= set(ok) | set(failed)  # a failed publish may have landed (lost reply)
        assert bus.shutdown(10)
    finally:
        stop.set()
        bus.shutdown(5)
        t.client.close()
        server.close()
