"""The columnar event log (pure-Python twin, the specification).

:class:`ColumnLog` is the engine of :class:`nova.store.MemoryStore`.  It is *not*
thread-safe on its own: the store serialises every call under its lock.

Storage
    One physical row per appended event, in append (global sequence) order.  Numeric
    columns live in growable numpy arrays: ``timestamp`` (int64 ns), ``sequence``
    (int64, global, from 1), ``stream`` (int32 code), ``type`` (int32 code),
    ``position`` (int64, per stream, from 1) and ``flags`` (uint8).  The object column
    holds the :class:`~nova.events.Event` itself for rows appended as events (so replay
    hands back the very same object) or the payload for rows appended as columns; ids
    given with columns live in a second object column created on first use, and ids
    not given are derived on demand from the row's sequence (they are stable).

Ordering
    While timestamps arrive in non-decreasing order the physical order *is* the
    (timestamp, sequence) order: a window is two binary searches and zero-copy views.
    The first late (out-of-order) row switches the log to an index: a permutation of
    the rows in (timestamp, sequence) order, merged lazily on the next read (in-order
    tails are appended to it in O(k), late rows are inserted in O(n + k log k)).
    Appends stay O(1) amortized in both modes.

Eviction
    Evicted rows are tombstoned (or cut off as a prefix) and physically removed by a
    compaction once they are at least half of the rows, so eviction is O(1) amortized.
    Rows of a given storage generation never change once written: a :class:`WindowSlice`
    taken earlier stays valid and consistent whatever happens to the log afterwards.

The numpy work both twins share (index merge, compaction plans, name release) and the
argument checks live in :mod:`nova._core._columns_common`.  Over 600 lines (and
:class:`ColumnLog` over ~400) because it is one idea, the column log and the slices
that read it, mirrored method for method by the compiled twin.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np

from nova import _core
from nova._core import forksafe, timeconv
from nova._core._columns_common import (
    _EVENT_TYPES,
    FLAG_DEAD,
    FLAG_EVENT,
    INT64_MIN,
    MIN_CAPACITY,
    MIN_GARBAGE,
    Compaction,
    _ids_list,
    _objects_list,
    _types_list,
    alive_mask,
    check_capacity,
    check_limit,
    check_slice_args,
    collect_alive,
    extend_index,
    filter_rows,
    grow_array,
    kill_rows,
    name_code,
    release_types,
    restore_columns,
    trim_auto_ids,
)
from nova.errors import ValidationError

__all__ = ("ColumnLog", "WindowSlice", "FLAG_EVENT", "FLAG_DEAD")



_Event: Any = _core.Event


def _tname(value: object) -> str:
    return type(value).__name__


def _format_id(ms: int, node: int, seq: int) -> str:
    return f"{ms & 0xFFFFFFFFFFFF:012x}{node:010x}{seq & 0xFFFFFFFFFF:010x}"


_check_bound = timeconv.check_bound
#: Shared with the compiled twin and the stores: see :mod:`nova._core.timeconv`.
timestamps_array = timeconv.timestamps_array


def _view(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """A read-only view of arr[lo:hi]."""
    v = arr[lo:hi]
    v.flags.writeable = False
    return v


class _Stream:
    """Per-stream state: the rows of the stream in position order."""

    __slots__ = ("rows", "n", "head", "last_pos", "live", "evicted")

    def __init__(self) -> None:
        self.rows = np.empty(MIN_CAPACITY, dtype=np.int64)
        self.n = 0
        self.head = 0
        self.last_pos = 0
        self.live = 0
        self.evicted = 0

    def push(self, row: int) -> None:
        if self.n == len(self.rows):
            self.rows = grow_array(self.rows, self.n, self.n + 1)
        self.rows[self.n] = row
        self.n += 1

    def push_range(self, first: int, count: int) -> None:
        if self.n + count > len(self.rows):
            self.rows = grow_array(self.rows, self.n, self.n + count)
        self.rows[self.n : self.n + count] = np.arange(first, first + count, dtype=np.int64)
        self.n += count


def _slice(log: ColumnLog, lo: int, hi: int, rows: np.ndarray | None) -> WindowSlice:
    """A slice over bounds the log computed itself (no checks)."""
    sl = WindowSlice.__new__(WindowSlice)
    sl._init(log, lo, hi, rows)
    return sl


class WindowSlice:
    """A consistent snapshot of some rows of a :class:`ColumnLog`.

    ``ts``, ``seq``, ``pos``, ``stream`` and ``type`` are numpy arrays (zero-copy views
    of the log's columns when the rows are contiguous).  Object columns (``ids()``,
    ``data()``, ``metadata()``, ``events()``) are built on demand.  Later appends,
    evictions and compactions of the log do not change a slice.
    """

    __slots__ = (
        "ts", "seq", "pos", "stream", "type",
        "_lo", "_rows", "_flags", "_objs", "_ids", "_type_names",
        "_auto_seq", "_auto_ms", "_node", "_n",
    )

    def __init__(self, log: ColumnLog, lo: int, hi: int, rows: np.ndarray | None) -> None:
        # Internal callers go through _slice() (bounds they computed); from Python every
        # bound is checked, as the compiled twin reads the object columns unchecked.
        if not isinstance(log, ColumnLog):
            raise TypeError(f"Expected a ColumnLog, got {_tname(log)}")
        lo, hi, rows = check_slice_args(lo, hi, rows, log._n)
        self._init(log, lo, hi, rows)

    def _init(self, log: ColumnLog, lo: int, hi: int, rows: np.ndarray | None) -> None:
        if rows is None:
            self.ts = _view(log._ts, lo, hi)
            self.seq = _view(log._seq, lo, hi)
            self.pos = _view(log._pos, lo, hi)
            self.stream = _view(log._stream, lo, hi)
            self.type = _view(log._type, lo, hi)
            self._n = hi - lo
        else:
            self.ts = log._ts[rows]
            self.seq = log._seq[rows]
            self.pos = log._pos[rows]
            self.stream = log._stream[rows]
            self.type = log._type[rows]
            self._n = len(rows)
        self._lo = lo
        self._rows = rows
        self._flags = log._flags
        self._objs = log._objs
        self._ids = log._ids
        self._type_names = log._type_names
        self._auto_seq = log._auto_seq
        self._auto_ms = log._auto_ms
        self._node = log._node

    def __len__(self) -> int:
        return self._n

    def _row(self, i: int) -> int:
        return self._lo + i if self._rows is None else int(self._rows[i])

    def _auto_id(self, seq: int) -> str:
        k = bisect_right(self._auto_seq, seq) - 1
        return _format_id(self._auto_ms[k], self._node, seq)

    def _id_at(self, i: int, row: int) -> str:
        if self._flags[row] & FLAG_EVENT:
            return self._objs[row].id  # type: ignore[no-any-return]
        if self._ids is not None:
            v = self._ids[row]
            if v is not None:
                return v  # type: ignore[no-any-return]
        return self._auto_id(int(self.seq[i]))

    def event(self, i: int) -> Any:
        """The *i*-th row as an Event (the appended Event object itself when it was one).

        Raises:
            IndexError: *i* out of range.
        """
        if not 0 <= i < self._n:
            raise IndexError(f"Expected a row index in [0, {self._n}), got {i}")
        row = self._row(i)
        if self._flags[row] & FLAG_EVENT:
            return self._objs[row]
        return _Event(
            self._type_names[int(self.type[i])],
            self._objs[row],
            id=self._id_at(i, row),
            timestamp=int(self.ts[i]),
        )

    def events(self, i: int = 0, j: int | None = None) -> list[Any]:
        """Rows ``[i, j)`` as a list of Events (see :meth:`event`)."""
        n = self._n
        if j is None or j > n:
            j = n
        if i < 0:
            i = 0
        return [self.event(k) for k in range(i, j)]

    def ids(self) -> list[str]:
        """The event ids, one per row."""
        return [self._id_at(i, self._row(i)) for i in range(self._n)]

    def data(self) -> list[Any]:
        """The payloads, one per row."""
        out = []
        for i in range(self._n):
            row = self._row(i)
            obj = self._objs[row]
            out.append(obj.data if self._flags[row] & FLAG_EVENT else obj)
        return out

    def metadata(self) -> list[dict[str, str]]:
        """The metadata dicts, one per row (the Event's own dict; ``{}`` for column rows)."""
        out: list[dict[str, str]] = []
        for i in range(self._n):
            row = self._row(i)
            out.append(self._objs[row].metadata if self._flags[row] & FLAG_EVENT else {})
        return out


class ColumnLog:
    """ColumnLog(capacity=1024)

    One state machine over the columns, hence one class over ~400 lines.

    An append-only columnar event log with a (timestamp, sequence) index.  See the
    module docstring for the layout.  Not thread-safe: callers serialise access.

    Raises:
        TypeError: *capacity* is not an int.
        ValueError: *capacity* is negative.

    Size: one idea, the column log, mirroring the compiled kernel method for method.
    """

    def __init__(self, capacity: int = 1024) -> None:
        cap = check_capacity(capacity)
        self._ts = np.empty(cap, dtype=np.int64)
        self._seq = np.empty(cap, dtype=np.int64)
        self._pos = np.empty(cap, dtype=np.int64)
        self._stream = np.empty(cap, dtype=np.int32)
        self._type = np.empty(cap, dtype=np.int32)
        self._flags = np.empty(cap, dtype=np.uint8)
        self._objs: list[Any] = []
        self._ids: list[Any] | None = None
        self._n = 0
        self._start = 0
        self._dead = 0
        self._live = 0
        self._next_seq = 1
        self._max_ts = INT64_MIN
        self._sorted = True
        self._perm: np.ndarray | None = None
        self._perm_ts: np.ndarray | None = None
        self._perm_n = 0
        self._perm_start = 0
        self._perm_rows = 0
        self._streams: list[_Stream] = []
        self._stream_names: list[str] = []
        self._stream_index: dict[str, int] = {}
        self._type_names: list[str] = []
        self._type_index: dict[str, int] = {}
        self._auto_seq: list[int] = []
        self._auto_ms: list[int] = []
        self._node = int.from_bytes(os.urandom(5), "big")
        self._mutex = threading.Lock()
        forksafe.track(self)
        #: Set by the owner: True while :meth:`try_append` may append (no limits, no
        #: waiters to wake).  Change it only while holding :attr:`mutex`.
        self.fast = False

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`nova._core.forksafe`): the mutex is made free
        and waiter-less in place (owners such as MemoryStore keep a reference to it)."""
        forksafe.reinit_lock(self._mutex)

    @property
    def mutex(self) -> Any:
        """The lock callers serialise this log with (see :meth:`try_append`)."""
        return self._mutex

    def try_append(self, name: str, event: Any) -> int:
        """The cheap single append: when :attr:`fast` is true and :attr:`mutex` is free,
        take it, append *event* to the existing non-empty stream *name* and return its
        position.  Return 0 (storing nothing) otherwise, for the caller to take the
        ordinary path.

        Raises:
            TypeError: *event* is not an Event.
        """
        if not self.fast:
            return 0
        lock = self._mutex
        if not lock.acquire(False):
            return 0
        try:
            if not self.fast:
                return 0
            return self.append_named(name, event)
        finally:
            lock.release()

    def appender(self, fallback: Any) -> Any:
        """A callable ``f(name, *events)``: one event goes through :meth:`try_append`;
        whatever that declines (several events, a busy lock, a new stream, ``fast``
        off) is passed on as ``fallback(name, *events)``.  Lets an owner expose a
        single append with no Python frame in the common case (compiled twin)."""
        try_append = self.try_append

        def append(stream: str, *events: Any) -> Any:
            if len(events) == 1:
                pos = try_append(stream, events[0])
                if pos:
                    return pos
            return fallback(stream, *events)

        return append

    # ---------------------------------------------------------------- names
    def stream_code(self, name: str, create: bool = True) -> int:
        """The code of stream *name*; a new code if *create*, else -1 when unknown.

        Raises:
            ValidationError: *name* is not a non-empty ``str``.
        """
        code = name_code(self._stream_index, self._stream_names, name, "stream name", create)
        if code == len(self._streams):  # a new stream
            self._streams.append(_Stream())
        return code

    def type_code(self, name: str, create: bool = True) -> int:
        """The code of event type *name*; a new code if *create*, else -1 when unknown.

        Raises:
            ValidationError: *name* is not a non-empty ``str``.
        """
        if type(name) is str:  # a known name first: this runs per appended event
            code = self._type_index.get(name)
            if code is not None:
                return code
        return name_code(self._type_index, self._type_names, name, "event type", create)

    def stream_names(self) -> list[str]:
        """Every stream name ever appended to, indexed by code (a copy)."""
        return list(self._stream_names)

    def type_names(self) -> list[str]:
        """Every event type name seen, indexed by code (a copy)."""
        return list(self._type_names)

    def name_lists(self) -> tuple[list[str], list[str]]:
        """The live (stream names, type names) lists, indexed by code.  Callers must
        not mutate them; a compaction replaces the type list (codes are renumbered) and
        leaves the one returned earlier as it was, matching the slices taken with it."""
        return self._stream_names, self._type_names

    @property
    def n_streams(self) -> int:
        """How many stream codes exist."""
        return len(self._stream_names)

    def _stream_state(self, code: int) -> _Stream:
        if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < len(self._streams):
            raise ValueError(f"Expected a stream code in [0, {len(self._streams)}), got {code!r}")
        return self._streams[code]

    # ---------------------------------------------------------------- appends
    def _reserve(self, k: int) -> None:
        need = self._n + k
        if need > len(self._ts):
            n = self._n
            self._ts = grow_array(self._ts, n, need)
            self._seq = grow_array(self._seq, n, need)
            self._pos = grow_array(self._pos, n, need)
            self._stream = grow_array(self._stream, n, need)
            self._type = grow_array(self._type, n, need)
            self._flags = grow_array(self._flags, n, need)

    def append_event(self, code: int, event: Any) -> int:
        """Append one Event to stream *code*; return its position.

        Raises:
            ValueError: unknown stream code.
            TypeError: *event* is not an Event.
        """
        st = self._stream_state(code)
        if not isinstance(event, _EVENT_TYPES):
            raise TypeError(f"Expected an Event, got {_tname(event)}")
        ev: Any = event
        ts = ev.timestamp
        tcode = self.type_code(ev.type)
        n = self._n
        self._reserve(1)
        self._ts[n] = ts
        self._seq[n] = self._next_seq
        self._next_seq += 1
        st.last_pos += 1
        pos = st.last_pos
        self._pos[n] = pos
        self._stream[n] = code
        self._type[n] = tcode
        self._flags[n] = FLAG_EVENT
        self._objs.append(event)
        if self._ids is not None:
            self._ids.append(None)
        st.push(n)
        st.live += 1
        self._added_row(n, ts)
        return pos

    def append_named(self, name: str, event: Any) -> int:
        """Append one Event to the existing, non-empty stream *name*; return its
        position, or 0 (storing nothing) when no event was ever appended to *name*.

        Raises:
            TypeError: *event* is not an Event.
        """
        if type(name) is not str:
            return 0
        code = self._stream_index.get(name)
        if code is None or self._streams[code].last_pos == 0:
            return 0
        return self.append_event(code, event)

    def append_events(self, code: int, events: Sequence[Any]) -> int:
        """Append Events to stream *code* (all or nothing); return the last position.

        Raises:
            ValueError: unknown stream code.
            TypeError: *events* is not a list or tuple, or an item is not an Event
                (nothing is stored then).
        """
        st = self._stream_state(code)
        if not isinstance(events, (list, tuple)):
            raise TypeError(f"Expected events as a list or tuple, got {_tname(events)}")
        k = len(events)
        for i, ev in enumerate(events):
            if not isinstance(ev, _EVENT_TYPES):
                raise TypeError(f"Expected an Event at index {i}, got {_tname(ev)}")
        if k == 0:
            return st.last_pos
        ts = np.fromiter((ev.timestamp for ev in events), dtype=np.int64, count=k)
        tc = np.fromiter((self.type_code(ev.type) for ev in events), dtype=np.int32, count=k)
        self._commit(code, st, ts, tc, list(events), None, FLAG_EVENT)
        return st.last_pos

    def append_columns(
        self,
        code: int,
        types: object,
        timestamps: object,
        data: object = None,
        ids: object = None,
    ) -> int:
        """Append rows given as columns to stream *code* (all or nothing); return the
        last position.

        *types* is one ``str`` for every row or a sequence of ``str`` (numpy ``U``/``S``
        arrays too); *timestamps* an int64 / datetime64 array or a sequence of what
        Event accepts; *data* a sequence of payloads (``None`` for none); *ids* a
        sequence of non-empty ``str`` (``None``: derived, unique and stable).

        Raises:
            ValueError: unknown stream code.
            TypeError / ValidationError: a column of the wrong kind, length or content
                (nothing is stored then).
        """
        st = self._stream_state(code)
        ts = timestamps_array(timestamps)
        k = len(ts)
        tl = _types_list(types, k)
        objs = [None] * k if data is None else _objects_list(data, k, "data")
        idl = None if ids is None else _ids_list(ids, k)
        if k == 0:
            return st.last_pos
        if isinstance(tl, str):
            tc = np.full(k, self.type_code(tl), dtype=np.int32)
        else:
            tc = np.fromiter((self.type_code(t) for t in tl), dtype=np.int32, count=k)
        self._commit(code, st, ts, tc, objs, idl, 0)
        return st.last_pos

    def _commit(
        self,
        code: int,
        st: _Stream,
        ts: np.ndarray,
        tc: np.ndarray,
        objs: list[Any],
        ids: list[str] | None,
        flag: int,
    ) -> None:
        k = len(ts)
        n = self._n
        self._reserve(k)
        first_seq = self._next_seq
        self._ts[n : n + k] = ts
        self._seq[n : n + k] = np.arange(first_seq, first_seq + k, dtype=np.int64)
        self._pos[n : n + k] = np.arange(st.last_pos + 1, st.last_pos + 1 + k, dtype=np.int64)
        self._stream[n : n + k] = code
        self._type[n : n + k] = tc
        self._flags[n : n + k] = flag
        self._objs.extend(objs)
        if ids is not None and self._ids is None:
            self._ids = [None] * n
        if self._ids is not None:
            if ids is None:
                self._ids.extend([None] * k)
            else:
                self._ids.extend(ids)
        if not flag and ids is None:
            ms = _core.now_ns() // 1_000_000
            if not self._auto_ms or self._auto_ms[-1] != ms:  # one run per millisecond
                self._auto_seq.append(first_seq)
                self._auto_ms.append(ms)
        st.push_range(n, k)
        st.last_pos += k
        st.live += k
        self._next_seq += k
        self._added(n, ts)

    def _added_row(self, n: int, ts: int) -> None:
        """Row *n* with timestamp *ts* was written: as :meth:`_added` for one row."""
        if ts < self._max_ts:
            self._sorted = False
        else:
            self._max_ts = ts
        self._n = n + 1
        self._live += 1

    def _added(self, n: int, ts: np.ndarray) -> None:
        """Rows ``n..n+len(ts)`` with timestamps *ts* were written: the log's row
        counts, its order flag and its latest timestamp follow."""
        k = len(ts)
        if self._sorted:
            if ts[0] < self._max_ts or (k > 1 and bool((ts[1:] < ts[:-1]).any())):
                self._sorted = False
        mx = int(ts.max())
        if mx > self._max_ts:
            self._max_ts = mx
        self._n = n + k
        self._live += k

    def restore_rows(
        self,
        stream_codes: object,
        type_codes: object,
        timestamps: object,
        sequences: object,
        positions: object,
    ) -> int:
        """Append rows whose sequence and position are already decided (a durable
        store rebuilding its index, or catching up with rows another process wrote).
        Rows are column rows with no payload (the owner keeps payloads and ids); gaps
        in sequences and positions are allowed (evicted rows).  All or nothing; returns
        how many rows were added.

        Raises:
            TypeError / ValidationError: see :func:`restore_columns`.
        """
        last = np.fromiter((st.last_pos for st in self._streams), np.int64, len(self._streams))
        sc, tc, ts, seq, pos = restore_columns(
            len(self._streams), len(self._type_names), self._next_seq, last,
            stream_codes, type_codes, timestamps, sequences, positions,
        )
        k = len(sc)
        if k == 0:
            return 0
        n = self._n
        self._reserve(k)
        self._ts[n : n + k] = ts
        self._seq[n : n + k] = seq
        self._pos[n : n + k] = pos
        self._stream[n : n + k] = sc
        self._type[n : n + k] = tc
        self._flags[n : n + k] = 0
        self._objs.extend([None] * k)
        if self._ids is not None:
            self._ids.extend([None] * k)
        self._auto_seq.append(int(seq[0]))
        self._auto_ms.append(_core.now_ns() // 1_000_000)
        for c, p, row in zip(sc.tolist(), pos.tolist(), range(n, n + k)):
            st = self._streams[c]
            st.push(row)
            st.last_pos = p
            st.live += 1
        self._next_seq = int(seq[-1]) + 1
        self._added(n, ts)
        return k

    def restore_row(self, code: int, type_code: int, timestamp: int, sequence: int, position: int) -> None:
        """:meth:`restore_rows` for one row, with scalars (a durable store's single
        append).

        Raises:
            ValueError: unknown stream code.
            ValidationError: unknown type code, sequence or position not increasing.
        """
        st = self._stream_state(code)
        ntypes = len(self._type_names)
        if isinstance(type_code, bool) or not isinstance(type_code, (int, np.integer)) or not 0 <= type_code < ntypes:
            raise ValidationError(f"Expected a type code in [0, {ntypes}), got {type_code!r}")
        ts, seq, pos = int(timestamp), int(sequence), int(position)
        if seq < self._next_seq:
            raise ValidationError(f"Expected sequences increasing from {self._next_seq}, got [{seq}]...")
        if pos <= st.last_pos:
            raise ValidationError(
                f"Expected positions increasing past the stream's last position {st.last_pos}, "
                f"got {pos} in stream code {code}"
            )
        n = self._n
        self._reserve(1)
        self._objs.append(None)
        if self._ids is not None:
            self._ids.append(None)
        if not self._auto_seq:
            self._auto_seq.append(seq)
            self._auto_ms.append(_core.now_ns() // 1_000_000)
        st.push(n)
        self._ts[n] = ts
        self._seq[n] = seq
        self._pos[n] = pos
        self._stream[n] = code
        self._type[n] = type_code
        self._flags[n] = 0
        st.last_pos = pos
        st.live += 1
        self._next_seq = seq + 1
        self._added_row(n, ts)

    # ---------------------------------------------------------------- state
    def __len__(self) -> int:
        return self._live

    @property
    def last_seq(self) -> int:
        """The global sequence of the last appended row (0 before the first)."""
        return self._next_seq - 1

    @property
    def is_sorted(self) -> bool:
        """True while the physical order is the (timestamp, sequence) order."""
        return self._sorted

    def stream_info(self, code: int) -> tuple[int, int, int, int]:
        """``(live, first_position, last_position, evicted)`` of stream *code*;
        ``first_position`` is 0 when no event of the stream is live.

        Raises:
            ValueError: unknown stream code.
        """
        st = self._stream_state(code)
        first = 0
        i = st.head
        flags = self._flags
        while i < st.n:
            row = int(st.rows[i])
            if row >= self._start and not flags[row] & FLAG_DEAD:
                first = int(self._pos[row])
                break
            i += 1
        st.head = i
        return st.live, first, st.last_pos, st.evicted

    def stream_last_position(self, code: int) -> int:
        """The last position ever given in stream *code* (0 when none)."""
        return self._stream_state(code).last_pos

    def time_bounds(self) -> tuple[int, int] | None:
        """``(min, max)`` timestamp of the live rows, or None when empty."""
        if self._live == 0:
            return None
        rows = self._ordered_rows(None, None)
        return int(self._ts[rows[0]]), int(self._ts[rows[-1]])

    def memory_bytes(self) -> int:
        """Bytes held by the log's own storage (arrays at capacity, list slots, indexes);
        the payload and Event objects themselves are not counted."""
        import sys

        total = sum(
            a.nbytes for a in (self._ts, self._seq, self._pos, self._stream, self._type, self._flags)
        )
        total += sys.getsizeof(self._objs)
        if self._ids is not None:
            total += sys.getsizeof(self._ids)
        for st in self._streams:
            total += st.rows.nbytes
        if self._perm is not None and self._perm_ts is not None:
            total += self._perm.nbytes + self._perm_ts.nbytes
        return total

    # ---------------------------------------------------------------- index
    def _ensure_index(self) -> None:
        """Bring the (timestamp, sequence) permutation up to date (unsorted mode)."""
        self._perm, self._perm_ts, self._perm_start, self._perm_n = extend_index(
            self._ts, self._perm, self._perm_ts, self._perm_start, self._perm_n, self._perm_rows, self._n
        )
        self._perm_rows = self._n

    def _alive_mask(self, rows: np.ndarray) -> np.ndarray:
        return alive_mask(rows, self._start, self._flags)

    def _range(self, start: int | None, end: int | None) -> tuple[int, int]:
        """Physical rows [lo, hi) with start <= ts < end (sorted mode)."""
        s, n = self._start, self._n
        ts = self._ts
        lo = s if start is None else s + int(np.searchsorted(ts[s:n], start, side="left"))
        hi = n if end is None else s + int(np.searchsorted(ts[s:n], end, side="left"))
        return lo, max(lo, hi)

    def _ordered_rows(self, start: int | None, end: int | None) -> np.ndarray:
        """Live rows with start <= ts < end in (timestamp, sequence) order."""
        if self._sorted:
            lo, hi = self._range(start, end)
            rows = np.arange(lo, hi, dtype=np.int64)
            if self._dead:
                rows = rows[(self._flags[lo:hi] & FLAG_DEAD) == 0]
            return rows
        self._ensure_index()
        assert self._perm is not None and self._perm_ts is not None
        s, e = self._perm_start, self._perm_n
        pts = self._perm_ts
        a = s if start is None else s + int(np.searchsorted(pts[s:e], start, side="left"))
        b = e if end is None else s + int(np.searchsorted(pts[s:e], end, side="left"))
        rows = self._perm[a : max(a, b)]
        alive: np.ndarray = rows[self._alive_mask(rows)]
        return alive

    # ---------------------------------------------------------------- reads
    def window(
        self,
        start: int | None,
        end: int | None,
        stream_codes: Sequence[int] | None = None,
        type_codes: Sequence[int] | None = None,
    ) -> WindowSlice:
        """Live rows with ``start <= timestamp < end`` (``None``: open), optionally only
        of the given stream / type codes, in (timestamp, sequence) order.

        O(log n) and zero-copy when the log is in order, nothing was evicted inside it
        and no filter is given; otherwise O(log n + k).

        Raises:
            TypeError: a bound is neither an int nor None.
            ValidationError: a bound is out of the int64 range.
        """
        start = _check_bound(start, "start")
        end = _check_bound(end, "end")
        if self._sorted and not self._dead and stream_codes is None and type_codes is None:
            lo, hi = self._range(start, end)
            return _slice(self, lo, hi, None)
        rows = self._ordered_rows(start, end)
        rows = filter_rows(rows, self._stream, self._type, stream_codes, type_codes)
        return _slice(self, 0, 0, rows)

    def stream_slice(self, code: int, after_position: int, limit: int | None = None) -> WindowSlice:
        """Live rows of stream *code* with position > *after_position*, in position
        order, at most *limit* of them (``None``: all).

        Raises:
            ValueError: unknown stream code, or a negative *limit*.
        """
        st = self._stream_state(code)
        check_limit(limit)
        srows = st.rows
        pos = self._pos
        lo, hi = st.head, st.n
        while lo < hi:
            mid = (lo + hi) // 2
            if pos[srows[mid]] <= after_position:
                lo = mid + 1
            else:
                hi = mid
        return _slice(self, 0, 0, self._collect(srows, lo, st.n, limit))

    def since_sequence(self, after_seq: int, limit: int | None = None) -> WindowSlice:
        """Live rows of every stream with sequence > *after_seq*, in sequence order, at
        most *limit* of them (``None``: all).

        Raises:
            ValueError: a negative *limit*.
        """
        check_limit(limit)
        s, n = self._start, self._n
        lo = s + int(np.searchsorted(self._seq[s:n], after_seq, side="right"))
        if not self._dead:
            hi = n if limit is None else min(n, lo + limit)
            return _slice(self, lo, hi, None)
        return _slice(self, 0, 0, self._collect(None, lo, n, limit))

    def _collect(self, index: np.ndarray | None, lo: int, hi: int, limit: int | None) -> np.ndarray:
        """Alive rows among ``index[lo:hi]`` (or physical rows lo..hi), first *limit*."""
        return collect_alive(index, lo, hi, limit, self._start, self._flags, self._dead)

    # ---------------------------------------------------------------- eviction
    def _kill(self, rows: np.ndarray) -> int:
        """Tombstone the alive rows among *rows*; return how many were killed."""
        rows = rows[self._alive_mask(rows)]
        k = len(rows)
        if k == 0:
            return 0
        for c, dead in kill_rows(self._flags, self._stream, rows, len(self._streams)):
            st = self._streams[c]
            st.live -= dead
            st.evicted += dead
        self._dead += k
        self._live -= k
        return k

    def _normalize(self) -> None:
        flags = self._flags
        s, n = self._start, self._n
        while s < n and flags[s] & FLAG_DEAD:
            s += 1
            self._dead -= 1
        self._start = s
        garbage = self._start + self._dead
        if garbage >= MIN_GARBAGE and garbage * 2 >= self._n:
            self.compact()

    def evict_before(self, cutoff: int) -> int:
        """Evict every live row with timestamp < *cutoff*; return how many.

        Raises:
            TypeError / ValidationError: *cutoff* is not an int in the int64 range.
        """
        c = _check_bound(cutoff, "cutoff")
        assert c is not None
        if self._live == 0:
            return 0
        if self._sorted:
            lo, hi = self._range(None, c)
            if hi == lo:
                return 0
            k = self._kill(np.arange(lo, hi, dtype=np.int64))
        else:
            self._ensure_index()
            assert self._perm is not None and self._perm_ts is not None
            s, e = self._perm_start, self._perm_n
            b = s + int(np.searchsorted(self._perm_ts[s:e], c, side="left"))
            if b == s:
                return 0
            k = self._kill(self._perm[s:b])
            self._perm_start = b
        if k:
            self._normalize()
        return k

    def evict_oldest(self, code: int, count: int) -> int:
        """Evict the *count* lowest live positions of stream *code*; return how many.

        Raises:
            ValueError: unknown stream code or negative *count*.
        """
        st = self._stream_state(code)
        if count < 0:
            raise ValueError(f"Expected count >= 0, got {count}")
        flags = self._flags
        i = st.head
        done = 0
        while done < count and i < st.n:
            row = int(st.rows[i])
            if row >= self._start and not flags[row] & FLAG_DEAD:
                flags[row] |= FLAG_DEAD
                done += 1
            i += 1
        st.head = i
        if done:
            st.live -= done
            st.evicted += done
            self._dead += done
            self._live -= done
            self._normalize()
        return done

    def compact(self) -> None:
        """Remove evicted rows from storage now (also done automatically once evicted
        rows are at least half of the storage).  Earlier slices are unaffected."""
        if not self._sorted:
            self._ensure_index()
        plan = Compaction(self._flags, self._start, self._n)
        m = plan.m
        self._ts = plan.take(self._ts)
        self._seq = plan.take(self._seq)
        self._pos = plan.take(self._pos)
        self._stream = plan.take(self._stream)
        self._type = plan.take(self._type)
        self._flags = plan.take(self._flags)
        self._objs = plan.take_list(self._objs)
        if self._ids is not None:
            self._ids = plan.take_list(self._ids)
        for st in self._streams:
            st.rows, st.n = plan.stream_rows(st.rows, st.head, st.n)
            st.head = 0
        if not self._sorted:
            assert self._perm is not None
            self._sorted, self._perm, self._perm_ts, self._perm_n, self._perm_start = plan.reindex(
                self._perm, self._perm_start, self._perm_n, self._ts
            )
            self._perm_rows = self._perm_n
        if self._sorted:
            self._max_ts = int(self._ts[m - 1]) if m else INT64_MIN
        self._n = m
        self._start = 0
        self._dead = 0
        self._release_names(m)

    def _release_names(self, m: int) -> None:
        """Forget what only removed rows used (compaction; the first m rows are kept):
        the auto-id runs before the first kept sequence, and the event types no kept
        row has (codes are renumbered densely).  New lists replace the old ones, so
        slices taken earlier keep theirs: memory stays bounded under retention even
        when every append brings a new type name."""
        first = int(self._seq[0]) if m else self._next_seq
        self._auto_seq, self._auto_ms = trim_auto_ids(self._auto_seq, self._auto_ms, first)
        names = release_types(self._type, m, self._type_names)
        if names is None:
            return
        self._type_names = names
        self._type_index = {name: code for code, name in enumerate(names)}
