"""The audit trail (issue 16): what recording every delivery attempt costs.

* ``EmitAsyncAudit``: emit_async through 4 workers with and without an AuditTrail on a
  MemoryStore, the records written before the clock stops (the
  ``ratio_observability`` row, tracked over time);
* ``AuditWrite``: the writer's part alone, turning one batch of worker calls into
  columns and appending them (``audit_rows.columns`` + ``append_columns``);
* ``AuditRecordSingle``: the ``begin``/``end`` path the Bus, a ListenerManager and an
  inline ``emit`` take, per record, written.

The facade runs on the active kernels (RingQueue, ColumnLog, Event); it is not
parametrized over implementations.
"""

import time

from nova import Emitter, Event, MemoryStore
from nova.observability import AuditTrail
from nova.observability.audit_rows import columns

N_ASYNC = 20_000
N_WRITE = 4096


def _noop(ev):
    return None


class EmitAsyncAudit:
    params = ([False, True],)
    param_names = ["audit"]
    timeout = 120

    def setup(self, audit):
        self.ev = Event("tick", 1)
        self.em = Emitter(workers=4, buffer_size=1000)
        self.em.subscribe("tick", _noop)
        self.store = self.trail = None
        if audit:
            self.store = MemoryStore()
            self.trail = AuditTrail(self.store, buffer_size=1 << 20)
            self.trail.attach(self.em)
        self.em.emit_async(self.ev)
        self.em.drain()

    def teardown(self, audit):
        self.em.shutdown()
        if self.trail is not None:
            self.trail.close()
            self.store.close()

    def time_emit_async_x20000(self, audit):
        emit_async, ev = self.em.emit_async, self.ev
        for _ in range(N_ASYNC):
            emit_async(ev)
        self.em.drain()
        if self.trail is not None:
            self.trail.flush()


class AuditWrite:
    def setup(self):
        evs = [Event("tick", i) for i in range(N_WRITE)]
        for ev in evs:
            ev.id  # noqa: B018 - made now, not in the timed writer
        t = time.perf_counter()
        ends = [t + i * 1e-7 for i in range(1, N_WRITE + 1)]
        self.items = [(t, evs, ["listener"] * N_WRITE, ends, None)]
        self.epoch = (time.time_ns(), time.perf_counter())
        self.store = MemoryStore()

    def teardown(self):
        self.store.close()

    def time_columns_4096(self):
        columns(self.items, *self.epoch)

    def time_columns_and_append_4096(self):
        types, stamps, rows = columns(self.items, *self.epoch)
        self.store.append_columns("nova.audit", types=types, timestamps=stamps, data=rows)


class AuditRecordSingle:
    timeout = 120

    def setup(self):
        self.ev = Event("tick", 1)
        self.store = MemoryStore()
        self.trail = AuditTrail(self.store, buffer_size=1 << 20)

    def teardown(self):
        self.trail.close()
        self.store.close()

    def time_begin_end_x10000(self):
        begin, end, ev = self.trail.begin, self.trail.end, self.ev
        for _ in range(10_000):
            end(begin(ev, "listener", "tick", 2, "group", 1), None)
        self.trail.flush()
