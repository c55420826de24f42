"""Bus: publish (with and without keys), each delivery mode end to end, pattern routing,
end-to-end throughput against a bare queue.Queue handoff."""

import queue
import threading

from nova import Bus, DeliveryMode, Event, TopicConfig


def _noop(ev):
    return None


class Publish:
    """publish() cost with no subscriber: the bus's own overhead per call."""

    params = ([1, 8], [False, True])
    param_names = ["partitions", "keyed"]

    def setup(self, partitions, keyed):
        self.bus = Bus()
        self.bus.create_topic("quiet", TopicConfig(partitions=partitions))
        self.ev = Event("tick", 1)
        self.keys = [f"customer-{i}" for i in range(1000)]

    def teardown(self, partitions, keyed):
        self.bus.shutdown(5)

    def time_publish_x1000(self, partitions, keyed):
        publish, ev = self.bus.publish, self.ev
        if keyed:
            for k in self.keys:
                publish("quiet", ev, key=k)
        else:
            for _ in range(1000):
                publish("quiet", ev)


class DeliveryModes:
    """End to end: 20,000 keyed events over 8 partitions to one trivial subscriber,
    publish until flush() reports them all handled."""

    params = (["at-most-once", "at-least-once", "exactly-once"],)
    param_names = ["delivery"]
    number = 1
    repeat = 3
    timeout = 120

    def setup(self, delivery):
        self.n = 20_000
        # fresh ids for every call, so exactly-once never measures the duplicate path
        self.generations = [[Event("order", i) for i in range(self.n)] for _ in range(6)]
        self.keys = [f"customer-{i % 1000}" for i in range(self.n)]
        self.bus = Bus(buffer_size=1000)
        self.bus.create_topic("orders", TopicConfig(partitions=8, delivery=DeliveryMode(delivery)))
        self.bus.subscribe("orders", _noop)

    def teardown(self, delivery):
        self.bus.shutdown(10)

    def _events(self):
        return self.generations.pop() if len(self.generations) > 1 else [e.replace(id=None) for e in self.generations[0]]

    def time_publish_and_deliver_20k(self, delivery):
        publish = self.bus.publish
        for e, k in zip(self._events(), self.keys):
            publish("orders", e, key=k)
        if not self.bus.flush(60):
            raise RuntimeError("flush timed out")

    def track_events_per_second(self, delivery):
        import time

        events = self._events()
        publish = self.bus.publish
        t0 = time.perf_counter()
        for e, k in zip(events, self.keys):
            publish("orders", e, key=k)
        self.bus.flush(60)
        return self.n / (time.perf_counter() - t0)

    track_events_per_second.unit = "events/s"


class PatternRouting:
    """Publishing to topics that pattern subscriptions matched (10 patterns, 1 matches)."""

    number = 1
    repeat = 3

    def setup(self):
        self.bus = Bus(default_partitions=4)
        for i in range(10):
            self.bus.subscribe_pattern(rf"svc{i}\..+", _noop)
        self.topics = [f"svc3.t{i}" for i in range(20)]
        for t in self.topics:
            self.bus.create_topic(t)
        self.ev = Event("x", 1)

    def teardown(self):
        self.bus.shutdown(10)

    def time_publish_to_pattern_topics_10k(self):
        publish, ev, topics = self.bus.publish, self.ev, self.topics
        for i in range(10_000):
            publish(topics[i % 20], ev)
        self.bus.flush(60)

    def time_create_topic_matching_patterns(self):
        b = Bus()
        for i in range(10):
            b.subscribe_pattern(rf"svc{i}\..+", _noop)
        for i in range(50):
            b.create_topic(f"svc{i % 10}.new{i}")
        b.shutdown(10)


class Throughput:
    """The issue's headline comparison: keyed ALO bus vs queue.Queue(1024) handoff."""

    number = 1
    repeat = 3
    timeout = 120

    def setup(self):
        self.n = 50_000
        self.events = [Event("order", i) for i in range(self.n)]
        self.keys = [f"customer-{i % 1000}" for i in range(self.n)]

    def time_bus_keyed_8_partitions_50k(self):
        b = Bus(buffer_size=1000)
        b.create_topic("orders", TopicConfig(partitions=8))
        b.subscribe("orders", _noop)
        publish = b.publish
        for e, k in zip(self.events, self.keys):
            publish("orders", e, key=k)
        b.flush(60)
        b.shutdown(10)

    def time_queue_handoff_50k(self):
        q = queue.Queue(maxsize=1024)

        def consumer():
            while True:
                x = q.get()
                if x is None:
                    return
                _noop(x)

        t = threading.Thread(target=consumer)
        t.start()
        for e in self.events:
            q.put(e)
        q.put(None)
        t.join()

    def peakmem_bus_keyed_8_partitions_50k(self):
        self.time_bus_keyed_8_partitions_50k()
