"""The audit trail's row builder (pure-Python twin, the specification).

:func:`call_rows` turns the call batches an Emitter worker handed to an
:class:`~nova.observability.audit.AuditTrail` (``record_calls``) into the rows the
trail stores, for batches in which every call succeeded: one short row
``(event_id, event_type, listener_id, duration)`` per call, and the calls' start
times as wall-clock ns in one int64 array (they become the stored events'
timestamps; see :mod:`nova.observability.audit_rows`).

:func:`note_call` is the worker's side: it notes one call that ended now in the
three lists a call batch is made of (the compiled twin reads the clock in C: one call
instead of a clock call and three list appends).

The compiled twin (``audit.pyx``) builds the rows in one C loop per record, with no
intermediate Python float or int per record.

.. versionadded:: 0.3
"""

from __future__ import annotations

from operator import attrgetter
from time import perf_counter
from typing import Any

import numpy as np

__all__ = ("call_rows", "note_call")

_id_of = attrgetter("id")
_type_of = attrgetter("type")


def _tname(x: object) -> str:
    return type(x).__name__


def note_call(events: list[Any], listener_ids: list[Any], ends: list[float], event: Any, listener_id: Any) -> None:
    """Note a call of *listener_id* with *event* that ended now: append them to
    *events* and *listener_ids*, and ``time.perf_counter()`` to *ends* (the lists of a
    call batch, see :func:`call_rows`).

    Raises:
        TypeError: *events*, *listener_ids* or *ends* is not a list (nothing appended).
    """
    if type(events) is not list or type(listener_ids) is not list or type(ends) is not list:
        raise TypeError(
            f"Expected events, listener_ids and ends as lists, got "
            f"{_tname(events)}, {_tname(listener_ids)}, {_tname(ends)}"
        )
    ends.append(perf_counter())
    events.append(event)
    listener_ids.append(listener_id)


def check_run(run: Any, rows: Any) -> int:
    """Check :func:`call_rows`'s arguments; return the number of calls in *run*.

    Raises:
        TypeError: *run* or *rows* is not a list, an item is not a tuple of at least
            four, its start is not a float, or its events, listener ids or ends are
            not lists.
        ValueError: an item's three lists differ in length.
    """
    if not isinstance(run, list):
        raise TypeError(f"Expected run as a list of call batches, got {_tname(run)}")
    if not isinstance(rows, list):
        raise TypeError(f"Expected rows as a list, got {_tname(rows)}")
    total = 0
    for item in run:
        if not isinstance(item, tuple) or len(item) < 4:
            raise TypeError(f"Expected a call batch (start, events, listener_ids, ends, ...), got {_tname(item)}")
        if type(item[0]) is not float:
            raise TypeError(f"Expected start as a float (a perf_counter reading), got {_tname(item[0])}")
        for what, x in (("events", item[1]), ("listener_ids", item[2]), ("ends", item[3])):
            if not isinstance(x, list):
                raise TypeError(f"Expected {what} as a list, got {_tname(x)}")
        n = len(item[3])
        if len(item[1]) != n or len(item[2]) != n:
            raise ValueError(
                f"Expected events, listener_ids and ends of one length, got {len(item[1])}, {len(item[2])}, {n}"
            )
        total += n
    return total


def call_rows(run: list[Any], base_ns: int, base_pc: float, rows: list[Any]) -> np.ndarray:
    """Append to *rows* one ``(event_id, event_type, listener_id, duration)`` tuple per
    call of the call batches *run* (each ``(start, events, listener_ids, ends, ...)``:
    call *i* of a batch started where call *i - 1* ended, the first at *start*; times
    are ``perf_counter`` readings) and return the calls' start times as wall-clock ns
    (``base_ns + int((start - base_pc) * 1e9)``, an int64 array in the same order).
    ``duration`` is ``end - start`` in seconds.  Errors of the batches are not looked
    at: every call is taken as successful.

    Raises:
        TypeError / ValueError: see :func:`check_run` (nothing appended then).
    """
    check_run(run, rows)
    for item in run:
        for x in item[3]:
            if type(x) is not float:
                raise TypeError(f"Expected ends as floats (perf_counter readings), got {_tname(x)}")
    evs: list[Any] = []
    lids: list[Any] = []
    starts: list[float] = []
    ends: list[float] = []
    for item in run:
        c_ends = item[3]
        if not c_ends:
            continue
        evs += item[1]
        lids += item[2]
        starts.append(item[0])
        starts += c_ends[:-1]
        ends += c_ends
    t0 = np.array(starts, dtype=np.float64)
    durs = (np.array(ends, dtype=np.float64) - t0).tolist()
    ts = ((t0 - base_pc) * 1e9).astype(np.int64)
    ts += base_ns
    rows += list(zip(map(_id_of, evs), map(_type_of, evs), lids, durs))  # all or nothing
    return ts
