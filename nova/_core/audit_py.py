"""The audit trail's row builder (pure-Python twin, the specification).

:func:`call_rows` turns the call batches an Emitter worker handed to an
:class:`~nova.observability.audit.AuditTrail` (``record_calls``) into the rows the
trail stores, for batches in which every call succeeded: one short row
``(event_id, event_type, listener_id, duration)`` per call, and the calls' start
times as wall-clock ns in one int64 array (they become the stored events'
timestamps; see :mod:`nova.observability.audit_rows`).

:func:`deliver_noted` is the worker's side: an Emitter worker's batch loop on plain
routes, making each call and noting it (its end time, event and listener id) in the
three sequences a call batch is made of, as :func:`note_call` notes one call: the
events and listener ids in lists, the ends in a list or an ``array('d')``.

The compiled twin (``audit.pyx``) builds the rows in one C loop per record, with no
intermediate Python float or int per record, and runs the worker's loop in C, each
end time stored as a C double.

.. versionadded:: 0.3
"""

from __future__ import annotations

from array import array
from operator import attrgetter
from time import perf_counter
from typing import Any

import numpy as np

__all__ = ("call_rows", "deliver_noted", "note_call")

_id_of = attrgetter("id")
_type_of = attrgetter("type")


def _tname(x: object) -> str:
    return type(x).__name__


def _is_doubles(x: object) -> bool:
    """True for an ``array('d')`` (what an Emitter worker notes its ends in)."""
    return type(x) is array and x.typecode == "d"


def _ends_name(ends: object) -> str:
    if type(ends) is array:
        return f"array({ends.typecode!r})"
    return _tname(ends)


def note_call(events: list[Any], listener_ids: list[Any], ends: list[float] | array[float], event: Any,
              listener_id: Any) -> None:
    """Note a call of *listener_id* with *event* that ended now: append them to
    *events* and *listener_ids*, and ``time.perf_counter()`` to *ends* (the lists of a
    call batch, see :func:`call_rows`).  *ends* is a list or an ``array('d')`` (an
    Emitter worker's: no float object per call in the compiled twin).

    Raises:
        TypeError: *events* or *listener_ids* is not a list, or *ends* neither a list
            nor an ``array('d')`` (nothing appended).
    """
    if type(events) is not list or type(listener_ids) is not list or not (type(ends) is list or _is_doubles(ends)):
        raise TypeError(
            f"Expected events and listener_ids as lists and ends as a list or an array('d'), got "
            f"{_tname(events)}, {_tname(listener_ids)}, {_ends_name(ends)}"
        )
    ends.append(perf_counter())
    events.append(event)
    listener_ids.append(listener_id)


def deliver_noted(batch: list[Any], routes: dict[str, Any], default: Any, events: list[Any], listener_ids: list[Any],
                  ends: list[float] | array[float]) -> tuple[int, Any, Any, tuple[Any, BaseException] | None]:
    """An Emitter worker's batch loop on plain routes, noting each call: take events
    from the end of *batch* (as ``batch.pop()``; other workers may take from it
    meanwhile) and deliver each on ``routes.get(event.type, default)`` while that
    route is plain (``all_sync`` and not ``checked``): ``route.wtick()`` (its calls
    are presumed processed), then the calls of ``route.entries`` made and noted as
    :func:`note_call` does.  Returns at the first event it does not finish:

    * ``(taken, None, None, None)``: *batch* is empty;
    * ``(taken, event, route, None)``: *event*'s route is not plain (taken, not
      delivered: the caller delivers it);
    * ``(taken, event, route, (entry, exc))``: a call raised (noted; the entries
      after it are not called);
    * ``(taken, event, None, (None, exc))``: finding or ticking the route raised.

    *taken* counts the events taken from *batch*, the one returned included.  The
    compiled twin runs the loop in C and reads a route's flags, ``wtick``, calls and
    listener ids once per route per call (a route is immutable; a batch's events
    mostly share a few routes): ~90 ns per event with one listener that does nothing,
    against ~205 for the Python loop it replaced (benchmark:
    ``asv_benchmarks/ratio_observability.py``, emit_async with an audit trail).

    Raises:
        TypeError: *batch* is not a list, *routes* not a dict, or a list argument as
            in :func:`note_call` (nothing taken).
    """
    if type(events) is not list or type(listener_ids) is not list or not (type(ends) is list or _is_doubles(ends)):
        raise TypeError(
            f"Expected events and listener_ids as lists and ends as a list or an array('d'), got "
            f"{_tname(events)}, {_tname(listener_ids)}, {_ends_name(ends)}"
        )
    if type(batch) is not list:
        raise TypeError(f"Expected batch as a list, got {_tname(batch)}")
    if type(routes) is not dict:
        raise TypeError(f"Expected routes as a dict, got {_tname(routes)}")
    pop = batch.pop
    taken = 0
    while True:
        try:
            event = pop()
        except IndexError:
            return taken, None, None, None
        taken += 1
        try:
            route = routes.get(event.type, default)
            if not route.all_sync or route.checked:
                return taken, event, route, None
            route.wtick()
            entries = route.entries
            if type(entries) is not tuple:
                raise TypeError(f"Expected route entries as a tuple, got {_tname(entries)}")
        except BaseException as exc:  # noqa: BLE001 - returned to the caller, which reports it
            return taken, event, None, (None, exc)
        for entry in entries:
            try:
                entry.call(event)
            except BaseException as exc:  # noqa: BLE001 - returned to the caller, which reports it
                ends.append(perf_counter())
                events.append(event)
                listener_ids.append(entry.lid)
                return taken, event, route, (entry, exc)
            ends.append(perf_counter())
            events.append(event)
            listener_ids.append(entry.lid)


def check_run(run: Any, rows: Any) -> int:
    """Check :func:`call_rows`'s arguments; return the number of calls in *run*.

    Raises:
        TypeError: *run* or *rows* is not a list, an item is not a tuple of at least
            four, its start is not a float, or its events, listener ids or ends are
            not lists (*ends*: a list or an ``array('d')``).
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
        for what, x in (("events", item[1]), ("listener_ids", item[2])):
            if not isinstance(x, list):
                raise TypeError(f"Expected {what} as a list, got {_tname(x)}")
        if not (type(item[3]) is list or _is_doubles(item[3])):
            raise TypeError(f"Expected ends as a list or an array('d'), got {_ends_name(item[3])}")
        n = len(item[3])
        if len(item[1]) != n or len(item[2]) != n:
            raise ValueError(
                f"Expected events, listener_ids and ends of one length, got {len(item[1])}, {len(item[2])}, {n}"
            )
        total += n
    return total


def call_rows(run: list[Any], base_ns: int, base_pc: float, rows: list[Any]) -> np.ndarray:
    """Append to *rows* one ``(event_id, event_type, listener_id, duration)`` tuple per
    call of the call batches *run* (each ``(start, events, listener_ids, ends, ...)``,
    *ends* a list of floats or an ``array('d')``:
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
        if type(item[3]) is not list:
            continue  # an array('d'): C doubles
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
