"""nova.compat's pyee and blinker facades beside pyee and blinker themselves (issue 18).

The facades are plain Python over nova (not kernels), so they are not parametrized over
implementations.  ``asv_benchmarks/ratio_compat.py`` reports the same-run ratios.
"""

from nova import Event

N_SYNC = 1000


def _listeners(k):
    out = []
    for _ in range(k):
        def fn(*args, **kwargs):
            return None
        out.append(fn)
    return out


class PyeeEmit:
    params = ([1, 10],)
    param_names = ["listeners"]

    def setup(self, k):
        import pyee

        from nova.compat import pyee as npyee

        self.ev = Event("user.created", {"id": 1})
        self.fns = _listeners(k)
        self.ours = npyee.EventEmitter()
        self.theirs = pyee.EventEmitter()
        for fn in self.fns:
            self.ours.on("user.created", fn)
            self.theirs.on("user.created", fn)

    def time_compat_emit_x1000(self, k):
        emit, ev = self.ours.emit, self.ev
        for _ in range(N_SYNC):
            emit("user.created", ev)

    def time_pyee_emit_x1000(self, k):
        emit, ev = self.theirs.emit, self.ev
        for _ in range(N_SYNC):
            emit("user.created", ev)


class BlinkerSend:
    params = ([1, 10],)
    param_names = ["receivers"]

    def setup(self, k):
        import blinker

        from nova.compat import blinker as nblinker

        self.ev = Event("user.created", {"id": 1})
        self.fns = _listeners(k)
        self.ours = nblinker.Signal()
        self.theirs = blinker.Signal()
        for fn in self.fns:
            self.ours.connect(fn)
            self.theirs.connect(fn)

    def time_compat_send_x1000(self, k):
        send, ev = self.ours.send, self.ev
        for _ in range(N_SYNC):
            send(ev)

    def time_blinker_send_x1000(self, k):
        send, ev = self.theirs.send, self.ev
        for _ in range(N_SYNC):
            send(ev)


class CompatFeatures:
    """The cost of nova's optional features on the facades."""

    def setup(self):
        from nova.compat import pyee as npyee
        from nova.observability.metrics import SimpleMetricsCollector
        from nova.store import MemoryStore

        self.ev = Event("user.created", {"id": 1})
        fn = _listeners(1)[0]
        self.store = MemoryStore()
        self.measured = npyee.EventEmitter(metrics=SimpleMetricsCollector())
        self.tapped = npyee.EventEmitter(store=self.store)
        self.measured.on("user.created", fn)
        self.tapped.on("user.created", fn)

    def teardown(self):
        self.store.close()

    def time_emit_metrics_x1000(self):
        emit, ev = self.measured.emit, self.ev
        for _ in range(N_SYNC):
            emit("user.created", ev)

    def time_emit_store_tap_x1000(self):
        emit, ev = self.tapped.emit, self.ev
        for _ in range(N_SYNC):
            emit("user.created", ev)
