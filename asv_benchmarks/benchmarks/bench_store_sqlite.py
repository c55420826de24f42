"""SQLiteStore: append_many, single appends per durability (one thread and 8 threads,
group commit), window as columns, replay as Events, opening (index rebuild), file
size; on 100 k and 1 M events, both kernel implementations for the index."""

import os
import shutil
import tempfile
import threading

from nova.events import Event
from nova.store.sqlite import SQLiteStore

from .common import IMPLS, impl

SIZES = [100_000, 1_000_000]
T0 = 1_700_000_000_000_000_000


def _payload(i):
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}], "note": "standard delivery"}


def _events(n, first=0):
    return [Event("order.placed", _payload(i), timestamp=T0 + i * 1000) for i in range(first, first + n)]


class Filled:
    """A file of n events (built once per size), reopened by every benchmark."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "n"]
    timeout = 600

    def setup_cache(self):
        root = tempfile.mkdtemp(prefix="nova-asv-sqlite-")
        for n in SIZES:
            with SQLiteStore(os.path.join(root, f"{n}.db"), durability="off") as s:
                for first in range(0, n, 100_000):
                    s.append_many("orders", _events(min(100_000, n - first), first))
        return root

    def setup(self, root, name, n):
        self.path = os.path.join(root, f"{n}.db")
        self.kernel = impl(name).ColumnLog
        self.store = SQLiteStore(self.path, kernel=self.kernel)
        self.t0 = T0 + (n // 2) * 1000
        self.t1 = self.t0 + (n // 100) * 1000

    def teardown(self, root, name, n):
        self.store.close()

    def time_open_rebuild(self, root, name, n):
        SQLiteStore(self.path, kernel=self.kernel).close()

    def time_window_1pct_columns(self, root, name, n):
        self.store.window(self.t0, self.t1)

    def time_window_1pct_data(self, root, name, n):
        self.store.window(self.t0, self.t1).data

    def time_replay_1pct_events(self, root, name, n):
        for _ in self.store.replay(self.t0, self.t1):
            pass

    def peakmem_open(self, root, name, n):
        SQLiteStore(self.path, kernel=self.kernel).close()

    def track_file_bytes_per_event(self, root, name, n):
        return sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root) if f.startswith(f"{n}.db")) / n

    track_file_bytes_per_event.unit = "bytes"


class Appends:
    """append_many of 100 k Events; 1000 single appends per durability, from 1 and 8
    threads (group commit)."""

    params = (["full", "normal", "off"], [1, 8])
    param_names = ["durability", "threads"]
    timeout = 300

    def setup(self, durability, threads):
        self.dir = tempfile.mkdtemp(prefix="nova-asv-sqlite-")
        self.store = SQLiteStore(os.path.join(self.dir, "a.db"), durability=durability)
        self.batch = _events(100_000)
        self.single = _events(1000)

    def teardown(self, durability, threads):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_append_many_100k(self, durability, threads):
        self.store.append_many("bulk", self.batch)

    def time_single_appends_1000(self, durability, threads):
        per = len(self.single) // threads

        def run(k):
            ap = self.store.append
            for e in self.single[k * per:(k + 1) * per]:
                ap(f"s{k}", e)

        ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
