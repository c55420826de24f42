"""The audit trail's storage layout: what one delivery attempt is stored as, and back.

A record is one event of type ``nova.audit.<outcome>`` in the trail's stream, its
timestamp the time the attempt started; its ``data`` is a *row* (a tuple in a
``MemoryStore``, a list after a JSON or msgpack round trip), one of two forms:

* a *full row*: the values of :data:`FIELDS`, in that order (every record but the
  ones below);
* a *short row* ``(event_id, event_type, listener, duration)``: a successful call
  made by an Emitter worker (the bulk of a busy trail).  Its other fields are
  implied: ``destination`` is the event type, ``partition`` and ``group`` None,
  ``attempt`` 1, ``outcome`` ``ok``, no error, ``timestamp`` the stored event's,
  ``component`` ``"emitter"``.  It holds a third of a full row's memory (the ids and
  types are the delivered event's own strings) and the writer builds it in one C
  loop (:func:`nova._core.call_rows`).

:func:`as_record` and :func:`as_dict` turn both forms (and the dicts older versions
stored) back into :class:`AuditRecord` / dicts keyed by :data:`FIELDS` when the trail
is queried.

:func:`columns` turns what the delivering threads buffered into ``append_columns``
arguments.  Two kinds of buffered items:

* a *call batch* (a 5-tuple), from an Emitter worker (see
  :meth:`AuditTrail.record_calls <nova.observability.audit.AuditTrail.record_calls>`):
  ``(start, events, listener_ids, ends, errors)``: call *i* called ``listener_ids[i]``
  with ``events[i]`` and ended at ``ends[i]`` (a ``perf_counter`` reading); it started
  where the call before it ended, the first one at *start*; *errors* is None or the
  ``(i, exc)`` of the calls that raised (outcome ``error``; the others are ``ok``).
  Converted by the ``call_rows`` kernel into short rows when every call succeeded
  (no Python bytecode per record), column-wise into full rows otherwise.
* a *record* (a 4-tuple), from the ``begin``/``end``/``settle`` observer calls (Bus,
  ListenerManager, inline ``emit``) and :meth:`AuditTrail.record`: ``(token, duration,
  exc, outcome)`` with ``token = [start, event, listener_id, destination, partition,
  group, attempt, component, ...]``.

.. versionadded:: 0.3
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np

from nova._core import call_rows
from nova.observability.observers import OUTCOMES
from nova.resilience.deadletter import qualified_name

__all__ = ("FIELDS", "AuditRecord", "TYPES", "columns", "as_record", "as_dict", "read_history", "read_window")

#: The fields of a record, in the order of a stored row.
FIELDS = ("event_id", "event_type", "destination", "partition", "listener", "group", "attempt",
          "outcome", "duration", "error_type", "error_message", "timestamp", "component")
#: The event type a record of each outcome is stored as.
TYPES = {o: f"nova.audit.{o}" for o in OUTCOMES}
_OK = TYPES["ok"]
_MAX_MESSAGE = 1000  # characters of an error message kept
_NFIELDS = len(FIELDS)
_NSHORT = 4  # a short row: (event_id, event_type, listener, duration)
_id_of = attrgetter("id")
_type_of = attrgetter("type")
_errors_of = itemgetter(4)


class AuditRecord(NamedTuple):
    """One delivery attempt, as :meth:`AuditTrail.history` returns it.

    ``timestamp``: when the attempt started (ns since the epoch); ``duration`` in
    seconds; ``partition`` and ``group`` are ``None`` outside a Bus; ``error_type``
    (qualified class name) and ``error_message`` are ``None`` for a successful attempt.
    """

    event_id: str
    event_type: str
    destination: str
    partition: int | None
    listener: str
    group: str | None
    attempt: int
    outcome: str
    duration: float
    error_type: str | None
    error_message: str | None
    timestamp: int
    component: str


def _error(exc: BaseException | None) -> tuple[str | None, str | None]:
    if exc is None:
        return None, None
    return qualified_name(exc), str(exc)[:_MAX_MESSAGE]


def columns(items: list[Any], base_ns: int, base_pc: float) -> tuple[Any, np.ndarray, list[tuple[Any, ...]]]:
    """``(types, timestamps, rows)`` for ``append_columns`` from buffered *items* (see
    the module), in their order.  *types* is one str when every record is ``ok``.
    ``(base_ns, base_pc)``: one wall-clock ns reading and the perf_counter reading taken
    with it (a record's timestamp is its start mapped through them)."""
    rows: list[tuple[Any, ...]] = []
    types: list[str] = []  # empty while every record is ok (not mixed), then one per row
    stamps: list[np.ndarray] = []
    singles: list[int] = []  # timestamps of the records since the last call batch
    mixed = False
    run: list[Any] = []  # consecutive call batches, converted together
    for item in items:
        if len(item) == 5:
            if singles:  # their timestamps go first, in order
                stamps.append(np.array(singles, dtype=np.int64))
                singles = []
            run.append(item)
            continue
        if run:
            mixed = _calls(run, base_ns, base_pc, rows, types, stamps, mixed)
            run = []
        tok, dur, exc, outcome = item
        pc, ev, lid, dest, part, group, attempt, comp = tok[:8]
        ts = base_ns + int((pc - base_pc) * 1e9)
        et, em = _error(exc)
        rows.append((ev.id, ev.type, dest, part, lid, group, attempt, outcome, dur, et, em, ts,
                     comp or ("bus" if part is not None else "emitter")))
        if mixed or outcome != "ok":
            if not mixed:  # the first record that is not ok: the ones before are
                types += repeat(_OK, len(rows) - 1)
                mixed = True
            types.append(TYPES.get(outcome) or f"nova.audit.{outcome}")
        singles.append(ts)
    if run:
        mixed = _calls(run, base_ns, base_pc, rows, types, stamps, mixed)
    if singles:
        stamps.append(np.array(singles, dtype=np.int64))
    ts_all = stamps[0] if len(stamps) == 1 else np.concatenate(stamps)
    return (types if mixed else _OK), ts_all, rows


def _calls(run: list[Any], base_ns: int, base_pc: float, rows: list[Any], types: list[str],
           stamps: list[np.ndarray], mixed: bool) -> bool:
    """Append the rows of the call batches *run* (and their types once *mixed*: a record
    before was not ok); return whether the records so far are mixed.  Successful calls
    get short rows (the ``call_rows`` kernel); a run with a failed call, full rows."""
    if not any(map(_errors_of, run)):
        ts = call_rows(run, base_ns, base_pc, rows)
        stamps.append(ts)
        if mixed:
            types += repeat(_OK, len(ts))
        return mixed
    if not mixed:  # every record before was ok
        types += repeat(_OK, len(rows))
    n = sum(len(item[3]) for item in run)
    evs: list[Any] = []
    lids: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    errors: list[tuple[int, BaseException]] = []
    for start, c_evs, c_lids, c_ends, c_errors in run:
        if c_errors is not None:
            errors += [(i + len(ends), e) for i, e in c_errors]
        evs += c_evs
        lids += c_lids
        starts.append(start)
        starts += c_ends[:-1]
        ends += c_ends
    t0 = np.array(starts)
    durs = (np.array(ends) - t0).tolist()
    ts = ((t0 - base_pc) * 1e9).astype(np.int64)
    ts += base_ns
    stamps.append(ts)
    etypes = list(map(_type_of, evs))
    outcomes = ["ok"] * n
    ets: list[str | None] = [None] * n
    ems: list[str | None] = [None] * n
    for i, exc in errors:
        outcomes[i] = "error"
        ets[i], ems[i] = _error(exc)
    rows += zip(map(_id_of, evs), etypes, etypes, repeat(None, n), lids, repeat(None, n), repeat(1, n), outcomes,
                durs, ets, ems, ts.tolist(), repeat("emitter", n))
    types += [TYPES[o] for o in outcomes]
    return True


def _expand(data: Any, timestamp: int | None) -> Any:
    """The 13 values of a stored row (full or short); None when *data* is not a row."""
    if isinstance(data, (tuple, list)):
        if len(data) == _NFIELDS:
            return data
        if len(data) == _NSHORT:
            eid, etype, lid, dur = data
            return (eid, etype, etype, None, lid, None, 1, "ok", dur, None, None, timestamp, "emitter")
    return None


def as_record(data: Any, timestamp: int | None = None) -> AuditRecord | None:
    """The :class:`AuditRecord` of a stored record's data (a full row, a short row, or
    the dict older versions stored); None when *data* is none of these.  *timestamp*:
    the stored event's timestamp (a short row's ``timestamp``)."""
    row = _expand(data, timestamp)
    if row is not None:
        return AuditRecord._make(row)
    if isinstance(data, dict):
        return AuditRecord._make([data.get(k) for k in FIELDS])
    return None


def as_dict(data: Any, timestamp: int | None = None) -> Any:
    """A stored record's data as a dict keyed by :data:`FIELDS` (anything else as is);
    *timestamp* as in :func:`as_record`."""
    row = _expand(data, timestamp)
    return data if row is None else dict(zip(FIELDS, row))


def read_history(store: Any, stream: str, event_id: str) -> list[AuditRecord]:
    """Every record of *event_id* in *stream* of *store*, in the order the attempts
    started (by timestamp, then attempt number)."""
    try:
        store.stream_info(stream)
    except KeyError:
        return []
    out = []
    cursor = None
    while True:
        events, cursor = store.read(stream, cursor, 4096)
        if not events:
            break
        for ev in events:
            rec = as_record(ev.data, ev.timestamp)
            if rec is not None and rec.event_id == event_id:
                out.append(rec)
    out.sort(key=lambda r: (r.timestamp, r.attempt))
    return out


def read_window(store: Any, stream: str, start: Any, end: Any) -> Any:
    """*store*'s ``window(start, end)`` over *stream*, each row's data as a dict keyed
    by :data:`FIELDS` (an :class:`~nova.EventBatch` of new Events, same ids, times,
    positions and sequences)."""
    from nova._core import Event
    from nova.store.batch import EventBatch

    batch = store.window(start, end, streams=[stream])
    events = [Event(ev.type, as_dict(ev.data, ev.timestamp), id=ev.id, timestamp=ev.timestamp, metadata=ev.metadata)
              for ev in batch]
    return EventBatch.from_events(events, streams=[stream] * len(events), positions=batch.positions,
                                  sequences=batch.sequences)
