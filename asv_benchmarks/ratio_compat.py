"""Issue 18 ratios: nova.compat's pyee and blinker facades against pyee and blinker
themselves, measured side by side in this process (the machine is shared and noisy:
only same-run ratios mean anything).

Targets: ``nova.compat.pyee.EventEmitter.emit`` and ``nova.compat.blinker.Signal.send``
>= 2x faster than the originals, with 1 and 10 listeners (distinct trivial functions,
connected the default way: blinker receivers weakly).  Informational rows: the cost of
nova's optional features (a SimpleMetricsCollector, a MemoryStore tap).
"""

from __future__ import annotations

import gc
import time

from _timing import Row

from nova import Event


def _listeners(k: int) -> list:
    out = []
    for _ in range(k):
        def fn(*args, **kwargs):
            return None
        out.append(fn)
    return out


def _best_ns(call, arg, number: int) -> float:
    """ns per ``call(arg)`` over *number* calls, in this thread's CPU time, gc off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.thread_time()
        for _ in range(number):
            call(arg)
        return (time.thread_time() - t0) / number * 1e9
    finally:
        if enabled:
            gc.enable()


def _paired(a, b, arg, number: int, reps: int) -> tuple[float, float]:
    """Best ns of *a* and *b*, measured alternately *reps* times (load hits both alike)."""
    a_best = b_best = float("inf")
    for _ in range(reps):
        a_best = min(a_best, _best_ns(a, arg, number))
        b_best = min(b_best, _best_ns(b, arg, number))
    return a_best, b_best


def _pyee_rows(reps: int, number: int) -> list[Row]:
    import pyee

    from nova.compat import pyee as npyee

    rows = []
    ev = Event("user.created", {"id": 1})
    for k in (1, 10):
        fns = _listeners(k)
        theirs, ours = pyee.EventEmitter(), npyee.EventEmitter()
        for fn in fns:
            theirs.on("user.created", fn)
            ours.on("user.created", fn)

        def t_emit(e, emit=theirs.emit):
            emit("user.created", e)

        def o_emit(e, emit=ours.emit):
            emit("user.created", e)

        o, t = _paired(o_emit, t_emit, ev, number, reps)
        rows.append(Row(f"compat pyee EventEmitter.emit, {k} listener{'s' if k > 1 else ''}", o, "ns",
                        "pyee.EventEmitter.emit", t, t / o, ">= 2x faster", t / o >= 2))
    return rows


def _blinker_rows(reps: int, number: int) -> list[Row]:
    import blinker

    from nova.compat import blinker as nblinker

    rows = []
    ev = Event("user.created", {"id": 1})
    for k in (1, 10):
        fns = _listeners(k)
        theirs, ours = blinker.Signal(), nblinker.Signal()
        for fn in fns:
            theirs.connect(fn)
            ours.connect(fn)
        o, t = _paired(ours.send, theirs.send, ev, number, reps)
        rows.append(Row(f"compat blinker Signal.send, {k} receiver{'s' if k > 1 else ''}", o, "ns",
                        "blinker.Signal.send", t, t / o, ">= 2x faster", t / o >= 2))
    return rows


def _feature_rows(reps: int, number: int) -> list[Row]:
    from nova.compat import blinker as nblinker
    from nova.compat import pyee as npyee
    from nova.observability.metrics import SimpleMetricsCollector
    from nova.store import MemoryStore

    rows = []
    ev = Event("user.created", {"id": 1})
    fn = _listeners(1)[0]
    plain = npyee.EventEmitter()
    measured = npyee.EventEmitter(metrics=SimpleMetricsCollector())
    for em in (plain, measured):
        em.on("user.created", fn)
    p, m = _paired(lambda e: plain.emit("user.created", e), lambda e: measured.emit("user.created", e),
                   ev, number, reps)
    rows.append(Row("compat pyee emit, 1 listener, metrics=Simple", m, "ns", "the same, no features", p, m / p,
                    "info", None))
    store = MemoryStore()
    plain_s, tapped = nblinker.Signal(), nblinker.Signal(store=store)
    for s in (plain_s, tapped):
        s.connect(fn)
    p, m = _paired(plain_s.send, tapped.send, ev, number // 4, reps)
    rows.append(Row("compat blinker send, 1 receiver, store tap", m, "ns", "the same, no features", p, m / p,
                    "info", None))
    store.close()
    return rows


def run(quick: bool) -> list[Row]:
    reps = 9 if quick else 41
    number = 5_000
    rows: list[Row] = []
    for part in (_pyee_rows, _blinker_rows):
        try:
            rows += part(reps, number)
        except ImportError as exc:  # the bench extra is missing: say so, measure nothing
            rows.append(Row(f"compat vs {exc.name}", float("nan"), "ns", f"{exc.name} missing", float("nan"),
                            float("nan"), ">= 2x faster", None))
    rows += _feature_rows(max(3, reps // 4), number)
    return rows
