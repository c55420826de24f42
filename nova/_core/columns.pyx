"""The columnar event log (compiled kernel).

Same names, results and exceptions as ``columns_py`` (the specification; read its
module docstring for the layout).  The per-event paths (single append, batch append of
Events, window lookup, materialisation of Events, stream reads) work on raw int64
buffers held by numpy arrays; bulk maintenance (index merge, compaction, name
release) and the argument checks are the plain code both twins import from
``nova._core._columns_common``.
Over 600 lines because it is one idea, the column log and the slices that read it,
mirroring the pure twin method for method.
"""

cimport cython
cimport numpy as cnp
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import os
import sys
import threading
import time
from bisect import bisect_right

import numpy as np

from nova import _core
from nova._core import forksafe as _forksafe
from nova._core._columns_common import (
    _EVENT_TYPES,
    NO_ROWS as _NO_ROWS,
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
    grow_array as _grow_array,
    kill_rows,
    name_code,
    release_types,
    restore_columns,
    trim_auto_ids,
)
from nova._core import _columns_common
from nova._core.timeconv import check_bound as _check_bound
from nova._core.timeconv import timestamps_array
from nova.errors import ValidationError

cnp.import_array()

__all__ = ("ColumnLog", "WindowSlice", "FLAG_EVENT", "FLAG_DEAD")

FLAG_EVENT = _columns_common.FLAG_EVENT
FLAG_DEAD = _columns_common.FLAG_DEAD

# The same numbers as nova._core._columns_common, as C constants for the row loops
# (tests/test_columns.py checks they agree).
cdef enum:
    C_EVENT = 1
    C_DEAD = 2
    MIN_CAPACITY = 16
    MIN_GARBAGE = 256

cdef object _Event = _core.Event
cdef object _now_ns = _core.now_ns
cdef char* _HEX = b"0123456789abcdef"


cdef inline str _tname(object value):
    return value.__class__.__name__


cdef inline void _hex(char* out, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = _HEX[value & 0xF]
        value >>= 4


cdef str _format_id(int64_t ms, uint64_t node, uint64_t seq):
    cdef char buf[32]
    _hex(buf, <uint64_t>ms & 0xFFFFFFFFFFFF, 12)
    _hex(buf + 12, node, 10)
    _hex(buf + 22, seq & 0xFFFFFFFFFF, 10)
    return PyUnicode_DecodeASCII(buf, 32, NULL)


cdef inline Py_ssize_t _lower_bound(const int64_t* a, Py_ssize_t lo, Py_ssize_t hi, int64_t x) noexcept nogil:
    """First index in [lo, hi) with a[i] >= x (hi if none)."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t _upper_bound(const int64_t* a, Py_ssize_t lo, Py_ssize_t hi, int64_t x) noexcept nogil:
    """First index in [lo, hi) with a[i] > x (hi if none)."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void* _data(object arr):
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


@cython.final
cdef class _Mutex:
    """A non-reentrant lock whose uncontended acquire/release cost a few ns.

    Under the GIL, test-and-set of ``locked`` from compiled code is atomic, so the
    fast path needs no system call (a ``threading.Lock`` costs ~100+ ns per
    acquire/release pair on some virtualised hosts).  A contended acquire waits on a
    condition variable with the GIL released.  Compatible with ``threading.Condition``.
    """

    cdef bint locked
    cdef int waiters
    cdef object _inner

    def __cinit__(self):
        self.locked = False
        self.waiters = 0
        self._inner = threading.Condition(threading.Lock())

    def acquire(self, bint blocking=True, double timeout=-1):
        """acquire(blocking=True, timeout=-1) -> bool

        Take the lock; False when not *blocking* (or after *timeout* s) and it is held.
        """
        if not self.locked:
            self.locked = True
            return True
        if not blocking:
            return False
        deadline = None if timeout < 0 else time.monotonic() + timeout
        with self._inner:
            while self.locked:
                if deadline is None:
                    wait = None
                else:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        return False
                self.waiters += 1
                try:
                    self._inner.wait(wait)
                finally:
                    self.waiters -= 1
            self.locked = True
        return True

    def _after_fork_in_child(self):
        """Free and without waiters (the parent's threads do not exist in the child)."""
        self.locked = False
        self.waiters = 0
        self._inner = threading.Condition(threading.Lock())

    def release(self):
        """release() -> None

        Release the lock.

        Raises:
            RuntimeError: the lock is not held.
        """
        if not self.locked:
            raise RuntimeError("Expected a held lock to release, got an unlocked one")
        self.locked = False
        if self.waiters:
            with self._inner:
                self._inner.notify()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


cdef inline int64_t _clamp_int64(object value) except? -1:
    """An int key clamped to the int64 range (a bound beyond it selects the same rows
    as the range's end; the pure twin compares Python ints and agrees)."""
    if value > INT64_MAX:
        return INT64_MAX
    if value < INT64_MIN:
        return INT64_MIN
    return value


cdef inline object _view(object arr, Py_ssize_t lo, Py_ssize_t hi):
    """A read-only view of arr[lo:hi]."""
    v = arr[lo:hi]
    cnp.PyArray_CLEARFLAGS(<cnp.ndarray>v, cnp.NPY_ARRAY_WRITEABLE)
    return v


@cython.final
cdef class _Stream:
    """Per-stream state: the rows of the stream in position order."""

    def __cinit__(self):
        self.set_rows(np.empty(MIN_CAPACITY, dtype=np.int64))
        self.n = 0
        self.head = 0
        self.last_pos = 0
        self.live = 0
        self.evicted = 0
        self.implicit = False

    cdef int set_rows(self, object rows) except -1:
        self.rows = rows
        self.p = <int64_t*>_data(rows)
        self.cap = len(rows)
        return 0

    cdef int materialize(self) except -1:
        """Leave implicit mode: write out rows 0..n-1."""
        cdef Py_ssize_t i
        if self.implicit:
            self.set_rows(np.empty(max(self.n + self.n // 2, MIN_CAPACITY), dtype=np.int64))
            for i in range(self.n):
                self.p[i] = i
            self.implicit = False
        return 0

    cdef inline int64_t row_at(self, Py_ssize_t i) noexcept:
        return i if self.implicit else self.p[i]

    cdef int push(self, int64_t row) except -1:
        if self.implicit:
            self.n += 1
            return 0
        if self.n == self.cap:
            self.set_rows(_grow_array(self.rows, self.n, self.n + 1))
        self.p[self.n] = row
        self.n += 1
        return 0

    cdef int push_range(self, int64_t first, Py_ssize_t count) except -1:
        cdef Py_ssize_t i
        if self.implicit:
            self.n += count
            return 0
        if self.n + count > self.cap:
            self.set_rows(_grow_array(self.rows, self.n, self.n + count))
        for i in range(count):
            self.p[self.n + i] = first + i
        self.n += count
        return 0


cdef WindowSlice _slice(ColumnLog log, Py_ssize_t lo, Py_ssize_t hi, object rows):
    """A slice over bounds the log computed itself (no checks)."""
    cdef WindowSlice sl = WindowSlice.__new__(WindowSlice)
    sl._init(log, lo, hi, rows)
    return sl


@cython.final
cdef class WindowSlice:
    """A consistent snapshot of some rows of a :class:`ColumnLog`.

    ``ts``, ``seq``, ``pos``, ``stream`` and ``type`` are numpy arrays (zero-copy views
    of the log's columns when the rows are contiguous).  Object columns (``ids()``,
    ``data()``, ``metadata()``, ``events()``) are built on demand.  Later appends,
    evictions and compactions of the log do not change a slice.
    """

    def __init__(self, ColumnLog log not None, lo, hi, rows):
        # Internal callers go through _slice() (bounds they computed); from Python every
        # bound is checked, as the object columns are later read without checks.
        lo, hi, rows = check_slice_args(lo, hi, rows, log._n)
        self._init(log, lo, hi, rows)

    cdef int _init(self, ColumnLog log, Py_ssize_t lo, Py_ssize_t hi, object rows) except -1:
        if rows is None:
            self.ts = _view(log._ts, lo, hi)
            self.seq = _view(log._seq, lo, hi)
            self.pos = _view(log._pos, lo, hi)
            self.stream = _view(log._stream, lo, hi)
            self.type = _view(log._type, lo, hi)
            self._n = hi - lo
        else:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
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
        self._c_lo = 0
        self._c_hi = 0
        return 0

    def __len__(self):
        return self._n

    cdef Py_ssize_t _row(self, Py_ssize_t i):
        if self._rows is None:
            return self._lo + i
        return (<int64_t*>_data(self._rows))[i]

    cdef str _auto_id(self, int64_t seq):
        cdef Py_ssize_t k
        if not (self._c_lo <= seq < self._c_hi):
            k = bisect_right(self._auto_seq, seq) - 1
            self._c_lo = self._auto_seq[k]
            self._c_hi = self._auto_seq[k + 1] if k + 1 < len(self._auto_seq) else INT64_MAX
            self._c_ms = self._auto_ms[k]
            self._c_node = <uint64_t>self._node
        return _format_id(self._c_ms, self._c_node, <uint64_t>seq)

    cdef object _id_at(self, Py_ssize_t i, Py_ssize_t row):
        cdef uint8_t* fp = <uint8_t*>_data(self._flags)
        if fp[row] & C_EVENT:
            return self._objs[row].id
        if self._ids is not None:
            v = (<list>self._ids)[row]
            if v is not None:
                return v
        return self._auto_id((<int64_t*>_data(self.seq))[i])

    cdef object _make(self, Py_ssize_t i, Py_ssize_t row):
        cdef int32_t tc = (<int32_t*>_data(self.type))[i]
        return _Event(
            <str>PyList_GET_ITEM(self._type_names, tc),
            self._objs[row],
            id=self._id_at(i, row),
            timestamp=(<int64_t*>_data(self.ts))[i],
        )

    def event(self, index):
        """event(i) -> Event

        The *i*-th row as an Event (the appended Event object itself when it was one).

        Raises:
            IndexError: *i* out of range.
        """
        if not 0 <= index < self._n:
            raise IndexError(f"Expected a row index in [0, {self._n}), got {index}")
        cdef Py_ssize_t i = index
        cdef Py_ssize_t row = self._row(i)
        if (<uint8_t*>_data(self._flags))[row] & C_EVENT:
            return self._objs[row]
        return self._make(i, row)

    def events(self, Py_ssize_t i=0, object j=None):
        """events(i=0, j=None) -> list

        Rows ``[i, j)`` as a list of Events (see :meth:`event`).
        """
        cdef Py_ssize_t n = self._n
        cdef Py_ssize_t end = n if j is None or j > n else <Py_ssize_t>j
        cdef Py_ssize_t k, row
        cdef uint8_t* fp
        cdef int64_t* rp
        cdef list objs = self._objs
        cdef list out
        cdef bint all_events = True
        cdef object o
        if i < 0:
            i = 0
        if end <= i:
            return []  # (also a slice made by WindowSlice.__new__: no columns at all)
        fp = <uint8_t*>_data(self._flags)
        if self._rows is None:
            for k in range(self._lo + i, self._lo + end):
                if not fp[k] & C_EVENT:
                    all_events = False
                    break
            if all_events:
                return objs[self._lo + i:self._lo + end]
            out = []
            for k in range(i, end):
                row = self._lo + k
                if fp[row] & C_EVENT:
                    out.append(<object>PyList_GET_ITEM(objs, row))
                else:
                    out.append(self._make(k, row))
            return out
        rp = <int64_t*>_data(self._rows)
        out = []
        for k in range(i, end):
            row = rp[k]
            if fp[row] & C_EVENT:
                out.append(<object>PyList_GET_ITEM(objs, row))
            else:
                out.append(self._make(k, row))
        return out

    def ids(self):
        """ids() -> list[str]

        The event ids, one per row.
        """
        cdef Py_ssize_t k
        return [self._id_at(k, self._row(k)) for k in range(self._n)]

    def data(self):
        """data() -> list

        The payloads, one per row.
        """
        cdef Py_ssize_t k, row
        cdef uint8_t* fp
        cdef list out = []
        if self._n == 0:
            return out
        fp = <uint8_t*>_data(self._flags)
        for k in range(self._n):
            row = self._row(k)
            obj = <object>PyList_GET_ITEM(self._objs, row)
            out.append(obj.data if fp[row] & C_EVENT else obj)
        return out

    def metadata(self):
        """metadata() -> list[dict]

        The metadata dicts, one per row (the Event's own dict; ``{}`` for column rows).
        """
        cdef Py_ssize_t k, row
        cdef uint8_t* fp
        cdef list out = []
        if self._n == 0:
            return out
        fp = <uint8_t*>_data(self._flags)
        for k in range(self._n):
            row = self._row(k)
            obj = <object>PyList_GET_ITEM(self._objs, row)
            out.append(obj.metadata if fp[row] & C_EVENT else {})
        return out


@cython.final
cdef class _Appender:
    """See :meth:`ColumnLog.appender`."""

    cdef ColumnLog log
    cdef object fallback

    def __cinit__(self, ColumnLog log not None, fallback):
        self.log = log
        self.fallback = fallback

    def __call__(self, stream, *events):
        cdef ColumnLog log = self.log
        cdef object pos
        if len(events) == 1:
            pos = log.try_append(stream, <object>PyTuple_GET_ITEM(events, 0))
            if pos:
                return pos
        return self.fallback(stream, *events)


@cython.final
cdef class ColumnLog:
    """ColumnLog(capacity=1024)

    One state machine over the columns, hence one class over ~400 lines.

    An append-only columnar event log with a (timestamp, sequence) index.  See
    ``nova._core.columns_py`` for the layout.  Not thread-safe: callers serialise access.

    Raises:
        TypeError: *capacity* is not an int.
        ValueError: *capacity* is negative.
    """

    def __cinit__(self, capacity=1024):
        # __cinit__, not __init__: ColumnLog.__new__(ColumnLog) from Python must not
        # leave NULL column pointers behind.
        cdef Py_ssize_t cap = check_capacity(capacity)
        self._set_arrays(
            np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
            np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int32),
            np.empty(cap, dtype=np.int32), np.empty(cap, dtype=np.uint8),
        )
        self._objs = []
        self._ids = None
        self._n = 0
        self._start = 0
        self._dead = 0
        self._live = 0
        self._next_seq = 1
        self._max_ts = INT64_MIN
        self._sorted = True
        self._perm = None
        self._perm_ts = None
        self._perm_n = 0
        self._perm_start = 0
        self._perm_rows = 0
        self._streams = []
        self._stream_names = []
        self._stream_index = {}
        self._type_names = []
        self._type_index = {}
        self._last_type = None
        self._last_tcode = -1
        self._auto_seq = []
        self._auto_ms = []
        self._node = int.from_bytes(os.urandom(5), "big")
        self._mutex = _Mutex() if _GIL else threading.Lock()
        self.fast = False
        self._solo = -1
        _forksafe.track(self)

    def _after_fork_in_child(self):
        """In a forked child (see ``nova._core.forksafe``): the mutex is made free and
        waiter-less in place (owners such as MemoryStore keep a reference to it)."""
        if isinstance(self._mutex, _Mutex):
            (<_Mutex>self._mutex)._after_fork_in_child()
        else:
            _forksafe.reinit_lock(self._mutex)

    cdef int _set_arrays(self, ts, seq, pos, stream, type_, flags) except -1:
        self._ts = ts
        self._seq = seq
        self._pos = pos
        self._stream = stream
        self._type = type_
        self._flags = flags
        self._ts_p = <int64_t*>_data(ts)
        self._seq_p = <int64_t*>_data(seq)
        self._pos_p = <int64_t*>_data(pos)
        self._stream_p = <int32_t*>_data(stream)
        self._type_p = <int32_t*>_data(type_)
        self._flags_p = <uint8_t*>_data(flags)
        self._cap = len(ts)
        return 0

    # ---------------------------------------------------------------- names
    def stream_code(self, name, bint create=True):
        """stream_code(name, create=True) -> int

        The code of stream *name*; a new code if *create*, else -1 when unknown.

        Raises:
            ValidationError: *name* is not a non-empty ``str``.
        """
        code = name_code(self._stream_index, self._stream_names, name, "stream name", create)
        if code == len(self._streams):  # a new stream
            self._streams.append(_Stream())
        return code

    cdef int32_t _tcode(self, object name) except -1:
        if name is self._last_type:
            return self._last_tcode
        code = self._type_index.get(name)
        if code is None:  # a new name (or not a name: refused)
            code = name_code(self._type_index, self._type_names, name, "event type", True)
        self._last_type = name
        self._last_tcode = code
        return self._last_tcode

    def type_code(self, name, bint create=True):
        """type_code(name, create=True) -> int

        The code of event type *name*; a new code if *create*, else -1 when unknown.

        Raises:
            ValidationError: *name* is not a non-empty ``str``.
        """
        return name_code(self._type_index, self._type_names, name, "event type", create)

    def stream_names(self):
        """stream_names() -> list[str]

        Every stream name ever appended to, indexed by code (a copy).
        """
        return list(self._stream_names)

    def type_names(self):
        """type_names() -> list[str]

        Every event type name seen, indexed by code (a copy).
        """
        return list(self._type_names)

    def name_lists(self):
        """name_lists() -> (list[str], list[str])

        The live (stream names, type names) lists, indexed by code.  Callers must
        not mutate them; a compaction replaces the type list (codes are renumbered) and
        leaves the one returned earlier as it was, matching the slices taken with it.
        """
        return self._stream_names, self._type_names

    @property
    def n_streams(self):
        """How many stream codes exist."""
        return len(self._stream_names)

    cdef _Stream _state(self, object code):
        if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < len(self._streams):
            raise ValueError(f"Expected a stream code in [0, {len(self._streams)}), got {code!r}")
        return <_Stream>self._streams[code]

    # ---------------------------------------------------------------- appends
    cdef int _solo_check(self, Py_ssize_t code, _Stream st) except -1:
        """While a single stream holds every row, its row index is implicit (row i is
        physical row i) and costs nothing per append; the first row of another stream
        writes it out."""
        if self._solo == code:
            return 0
        if self._solo == -1 and self._n == 0:
            self._solo = code
            st.implicit = True
            return 0
        if self._solo >= 0:
            (<_Stream>self._streams[self._solo]).materialize()
        self._solo = -2
        return 0

    cdef int _reserve(self, Py_ssize_t k) except -1:
        cdef Py_ssize_t need = self._n + k
        cdef Py_ssize_t n = self._n
        if need > self._cap:
            self._set_arrays(
                _grow_array(self._ts, n, need), _grow_array(self._seq, n, need),
                _grow_array(self._pos, n, need), _grow_array(self._stream, n, need),
                _grow_array(self._type, n, need), _grow_array(self._flags, n, need),
            )
        return 0

    @property
    def mutex(self):
        """The lock callers serialise this log with (see :meth:`try_append`)."""
        return self._mutex

    cpdef object try_append(self, object name, object event):
        """try_append(name, event) -> int

        The lock-free-when-uncontended single append: when :attr:`fast` is true and
        :attr:`mutex` is free, take it, append *event* to the existing non-empty stream
        *name* and return its position.  Return 0 (storing nothing) otherwise, for the
        caller to take the ordinary path.

        Raises:
            TypeError: *event* is not an Event.
        """
        if not self.fast or not _GIL or type(name) is not str:
            return 0  # (a non-str name: the caller's ordinary path says what is wrong)
        cdef _Mutex m = <_Mutex>self._mutex
        if m.locked:
            return 0
        m.locked = True
        try:
            code = self._stream_index.get(name)
            if code is None:
                return 0
            st = <_Stream>PyList_GET_ITEM(self._streams, <Py_ssize_t>code)
            if st.last_pos == 0:
                return 0
            return self._append1(<Py_ssize_t>code, st, event)
        finally:
            m.locked = False
            if m.waiters:
                with m._inner:
                    m._inner.notify()

    def appender(self, fallback):
        """appender(fallback) -> callable

        A callable ``f(name, *events)``: one event goes through :meth:`try_append`;
        whatever that declines (several events, a busy lock, a new stream, ``fast``
        off) is passed on as ``fallback(name, *events)``.  Lets an owner expose a
        single append with no Python frame in the common case.
        """
        return _Appender(self, fallback)

    def append_named(self, name, event):
        """append_named(name, event) -> int

        Append one Event to the existing, non-empty stream *name*; return its
        position, or 0 (storing nothing) when no event was ever appended to *name*.

        Raises:
            TypeError: *event* is not an Event.
        """
        if type(name) is not str:
            return 0
        code = self._stream_index.get(name)
        if code is None:
            return 0
        cdef _Stream st = <_Stream>PyList_GET_ITEM(self._streams, <Py_ssize_t>code)
        if st.last_pos == 0:
            return 0
        return self._append1(<Py_ssize_t>code, st, event)

    cdef int64_t _append1(self, Py_ssize_t c, _Stream st, object event) except -1:
        if type(event) is not _Event and not isinstance(event, _EVENT_TYPES):
            raise TypeError(f"Expected an Event, got {_tname(event)}")
        cdef int64_t ts = event.timestamp
        cdef int32_t tcode = self._tcode(event.type)
        if self._solo != c:
            self._solo_check(c, st)
        cdef Py_ssize_t n = self._n
        if n == self._cap:
            self._reserve(1)
        self._objs.append(event)
        if self._ids is not None:
            (<list>self._ids).append(None)
        st.push(n)
        self._ts_p[n] = ts
        self._seq_p[n] = self._next_seq
        self._next_seq += 1
        st.last_pos += 1
        self._pos_p[n] = st.last_pos
        self._stream_p[n] = <int32_t>c
        self._type_p[n] = tcode
        self._flags_p[n] = C_EVENT
        st.live += 1
        if ts < self._max_ts:
            self._sorted = False
        else:
            self._max_ts = ts
        self._n = n + 1
        self._live += 1
        return st.last_pos

    def append_event(self, code, event):
        """append_event(code, event) -> int

        Append one Event to stream *code*; return its position.

        Raises:
            ValueError: unknown stream code.
            TypeError: *event* is not an Event.
        """
        cdef _Stream st = self._state(code)
        cdef Py_ssize_t c = code
        return self._append1(c, st, event)

    def append_events(self, code, events):
        """append_events(code, events) -> int

        Append Events to stream *code* (all or nothing); return the last position.

        Raises:
            ValueError: unknown stream code.
            TypeError: *events* is not a list or tuple, or an item is not an Event
                (nothing is stored then).
        """
        cdef _Stream st = self._state(code)
        if not isinstance(events, (list, tuple)):
            raise TypeError(f"Expected events as a list or tuple, got {_tname(events)}")
        cdef list lst = list(events)
        cdef Py_ssize_t k = len(lst)
        cdef Py_ssize_t i
        cdef object ev
        for i in range(k):
            ev = <object>PyList_GET_ITEM(lst, i)
            if type(ev) is not _Event and not isinstance(ev, _EVENT_TYPES):
                raise TypeError(f"Expected an Event at index {i}, got {_tname(ev)}")
        if k == 0:
            return st.last_pos
        ts = np.empty(k, dtype=np.int64)
        tc = np.empty(k, dtype=np.int32)
        cdef int64_t* tsp = <int64_t*>_data(ts)
        cdef int32_t* tcp = <int32_t*>_data(tc)
        for i in range(k):
            ev = <object>PyList_GET_ITEM(lst, i)
            tsp[i] = ev.timestamp
            tcp[i] = self._tcode(ev.type)
        self._commit(code, st, ts, tc, lst, None, C_EVENT)
        return st.last_pos

    def append_columns(self, code, types, timestamps, data=None, ids=None):
        """append_columns(code, types, timestamps, data=None, ids=None) -> int

        Append rows given as columns to stream *code* (all or nothing); return the
        last position.  See ``columns_py.ColumnLog.append_columns``.

        Raises:
            ValueError: unknown stream code.
            TypeError / ValidationError: a column of the wrong kind, length or content
                (nothing is stored then).
        """
        cdef _Stream st = self._state(code)
        ts = timestamps_array(timestamps)
        cdef Py_ssize_t k = len(ts)
        cdef Py_ssize_t i
        tl = _types_list(types, k)
        objs = [None] * k if data is None else _objects_list(data, k, "data")
        idl = None if ids is None else _ids_list(ids, k)
        if k == 0:
            return st.last_pos
        cdef int32_t* tcp
        if isinstance(tl, str):
            tc = self._tcode(tl)  # one code for every row: written by _commit
        else:
            tc = np.empty(k, dtype=np.int32)
            tcp = <int32_t*>_data(tc)
            for i in range(k):
                tcp[i] = self._tcode(<object>PyList_GET_ITEM(tl, i))
        self._commit(code, st, ts, tc, objs, idl, 0)
        return st.last_pos

    cdef int _commit(self, Py_ssize_t code, _Stream st, object ts, object tc, list objs, object ids, uint8_t flag) except -1:
        cdef Py_ssize_t k = len(ts)
        cdef Py_ssize_t n = self._n
        cdef Py_ssize_t i
        cdef int64_t first_seq = self._next_seq
        cdef int64_t first_pos = st.last_pos + 1
        cdef const int64_t* tsp = <int64_t*>_data(ts)
        cdef bint in_order = self._sorted
        cdef int64_t mx = self._max_ts
        if self._solo != code:
            self._solo_check(code, st)
        self._reserve(k)
        memcpy(self._ts_p + n, tsp, k * sizeof(int64_t))
        cdef int32_t one_type
        if isinstance(tc, int):
            one_type = tc
            for i in range(k):
                self._type_p[n + i] = one_type
        else:
            memcpy(self._type_p + n, _data(tc), k * sizeof(int32_t))
        for i in range(k):
            self._seq_p[n + i] = first_seq + i
            self._pos_p[n + i] = first_pos + i
            self._stream_p[n + i] = <int32_t>code
            self._flags_p[n + i] = flag
            if tsp[i] < mx:
                in_order = False
            else:
                mx = tsp[i]
        self._objs.extend(objs)
        if ids is not None and self._ids is None:
            self._ids = [None] * n
        if self._ids is not None:
            if ids is None:
                (<list>self._ids).extend([None] * k)
            else:
                (<list>self._ids).extend(ids)
        if not flag and ids is None:
            ms = _now_ns() // 1_000_000
            # one run per millisecond (no [-1]: wraparound is off in the kernels)
            if not self._auto_ms or self._auto_ms[len(self._auto_ms) - 1] != ms:
                self._auto_seq.append(first_seq)
                self._auto_ms.append(ms)
        st.push_range(n, k)
        st.last_pos += k
        st.live += k
        self._next_seq += k
        self._sorted = in_order
        self._max_ts = mx
        self._n = n + k
        self._live += k
        return 0

    def restore_rows(self, stream_codes, type_codes, timestamps, sequences, positions):
        """restore_rows(stream_codes, type_codes, timestamps, sequences, positions) -> int

        Append rows whose sequence and position are already decided (payload-less
        column rows; gaps allowed).  All or nothing; returns how many rows were added.
        See ``columns_py.ColumnLog.restore_rows``.

        Raises:
            TypeError / ValidationError: see ``columns_py.restore_columns``.
        """
        cdef Py_ssize_t ns = len(self._streams)
        last = np.empty(ns, dtype=np.int64)
        cdef int64_t* lp = <int64_t*>_data(last)
        cdef Py_ssize_t i
        for i in range(ns):
            lp[i] = (<_Stream>PyList_GET_ITEM(self._streams, i)).last_pos
        sc, tc, ts, seq, pos = restore_columns(
            ns, len(self._type_names), self._next_seq, last,
            stream_codes, type_codes, timestamps, sequences, positions,
        )
        cdef Py_ssize_t k = len(sc)
        if k == 0:
            return 0
        cdef Py_ssize_t n = self._n
        self._reserve(k)
        cdef const int32_t* scp = <int32_t*>_data(sc)
        cdef const int64_t* tsp = <int64_t*>_data(ts)
        cdef const int64_t* seqp = <int64_t*>_data(seq)
        cdef const int64_t* posp = <int64_t*>_data(pos)
        memcpy(self._ts_p + n, tsp, k * sizeof(int64_t))
        memcpy(self._seq_p + n, seqp, k * sizeof(int64_t))
        memcpy(self._pos_p + n, posp, k * sizeof(int64_t))
        memcpy(self._stream_p + n, scp, k * sizeof(int32_t))
        memcpy(self._type_p + n, _data(tc), k * sizeof(int32_t))
        cdef bint in_order = self._sorted
        cdef int64_t mx = self._max_ts
        cdef _Stream st
        cdef Py_ssize_t c
        for i in range(k):
            self._flags_p[n + i] = 0
            c = scp[i]
            st = <_Stream>PyList_GET_ITEM(self._streams, c)
            if self._solo != c:
                self._solo_check(c, st)
            st.push(n + i)
            st.last_pos = posp[i]
            st.live += 1
            if tsp[i] < mx:
                in_order = False
            else:
                mx = tsp[i]
        self._objs.extend([None] * k)
        if self._ids is not None:
            (<list>self._ids).extend([None] * k)
        self._auto_seq.append(seqp[0])
        self._auto_ms.append(_now_ns() // 1_000_000)
        self._next_seq = seqp[k - 1] + 1
        self._sorted = in_order
        self._max_ts = mx
        self._n = n + k
        self._live += k
        return k

    def restore_row(self, code, type_code, timestamp, sequence, position):
        """restore_row(code, type_code, timestamp, sequence, position) -> None

        :meth:`restore_rows` for one row, with scalars (a durable store's single
        append).  See ``columns_py.ColumnLog.restore_row``.

        Raises:
            ValueError: unknown stream code.
            ValidationError: unknown type code, sequence or position not increasing.
        """
        cdef _Stream st = self._state(code)
        cdef Py_ssize_t c = code
        cdef Py_ssize_t ntypes = len(self._type_names)
        if isinstance(type_code, bool) or not isinstance(type_code, (int, np.integer)) or not 0 <= type_code < ntypes:
            raise ValidationError(f"Expected a type code in [0, {ntypes}), got {type_code!r}")
        cdef int64_t ts = timestamp
        cdef int64_t seq = sequence
        cdef int64_t pos = position
        if seq < self._next_seq:
            raise ValidationError(f"Expected sequences increasing from {self._next_seq}, got [{seq}]...")
        if pos <= st.last_pos:
            raise ValidationError(
                f"Expected positions increasing past the stream's last position {st.last_pos}, "
                f"got {pos} in stream code {c}"
            )
        if self._solo != c:
            self._solo_check(c, st)
        cdef Py_ssize_t n = self._n
        if n == self._cap:
            self._reserve(1)
        self._objs.append(None)
        if self._ids is not None:
            (<list>self._ids).append(None)
        if not self._auto_seq:
            self._auto_seq.append(seq)
            self._auto_ms.append(_now_ns() // 1_000_000)
        st.push(n)
        self._ts_p[n] = ts
        self._seq_p[n] = seq
        self._pos_p[n] = pos
        self._stream_p[n] = <int32_t>c
        self._type_p[n] = <int32_t>type_code
        self._flags_p[n] = 0
        st.last_pos = pos
        st.live += 1
        self._next_seq = seq + 1
        if ts < self._max_ts:
            self._sorted = False
        else:
            self._max_ts = ts
        self._n = n + 1
        self._live += 1

    # ---------------------------------------------------------------- state
    def __len__(self):
        return self._live

    @property
    def last_seq(self):
        """The global sequence of the last appended row (0 before the first)."""
        return self._next_seq - 1

    @property
    def is_sorted(self):
        """True while the physical order is the (timestamp, sequence) order."""
        return self._sorted

    def stream_info(self, code):
        """stream_info(code) -> (live, first_position, last_position, evicted)

        ``first_position`` is 0 when no event of the stream is live.

        Raises:
            ValueError: unknown stream code.
        """
        cdef _Stream st = self._state(code)
        cdef int64_t first = 0
        cdef Py_ssize_t i = st.head
        cdef int64_t row
        while i < st.n:
            row = st.row_at(i)
            if row >= self._start and not self._flags_p[row] & C_DEAD:
                first = self._pos_p[row]
                break
            i += 1
        st.head = i
        return st.live, first, st.last_pos, st.evicted

    def stream_last_position(self, code):
        """stream_last_position(code) -> int

        The last position ever given in stream *code* (0 when none).
        """
        return self._state(code).last_pos

    def time_bounds(self):
        """time_bounds() -> (int, int) | None

        ``(min, max)`` timestamp of the live rows, or None when empty.
        """
        if self._live == 0:
            return None
        rows = self._ordered_rows(None, None)
        return int(self._ts[rows[0]]), int(self._ts[rows[len(rows) - 1]])

    def memory_bytes(self):
        """memory_bytes() -> int

        Bytes held by the log's own storage (arrays at capacity, list slots, indexes);
        the payload and Event objects themselves are not counted.
        """
        total = sum(a.nbytes for a in (self._ts, self._seq, self._pos, self._stream, self._type, self._flags))
        total += sys.getsizeof(self._objs)
        if self._ids is not None:
            total += sys.getsizeof(self._ids)
        for st in self._streams:
            total += (<_Stream>st).rows.nbytes
        if self._perm is not None:
            total += self._perm.nbytes + self._perm_ts.nbytes
        return total

    # ---------------------------------------------------------------- index
    cdef int _ensure_index(self) except -1:
        """See ``columns_py.ColumnLog._ensure_index``."""
        if self._perm is not None and self._perm_rows == self._n:
            return 0
        self._perm, self._perm_ts, self._perm_start, self._perm_n = extend_index(
            self._ts, self._perm, self._perm_ts, self._perm_start, self._perm_n, self._perm_rows, self._n
        )
        self._perm_rows = self._n
        return 0

    cdef object _alive_mask(self, object rows):
        return alive_mask(rows, self._start, self._flags)

    cdef tuple _range(self, object start, object end):
        cdef Py_ssize_t lo = self._start
        cdef Py_ssize_t hi = self._n
        if start is not None:
            lo = _lower_bound(self._ts_p, self._start, self._n, <int64_t>start)
        if end is not None:
            hi = _lower_bound(self._ts_p, self._start, self._n, <int64_t>end)
        return lo, max(lo, hi)

    cdef object _ordered_rows(self, object start, object end):
        cdef Py_ssize_t lo, hi, s, e, a, b
        if self._sorted:
            lo, hi = self._range(start, end)
            rows = np.arange(lo, hi, dtype=np.int64)
            if self._dead:
                rows = rows[(self._flags[lo:hi] & C_DEAD) == 0]
            return rows
        self._ensure_index()
        s, e = self._perm_start, self._perm_n
        cdef int64_t* pts = <int64_t*>_data(self._perm_ts)
        a = s if start is None else _lower_bound(pts, s, e, <int64_t>start)
        b = e if end is None else _lower_bound(pts, s, e, <int64_t>end)
        rows = self._perm[a:max(a, b)]
        return rows[self._alive_mask(rows)]

    # ---------------------------------------------------------------- reads
    def window(self, start, end, stream_codes=None, type_codes=None):
        """window(start, end, stream_codes=None, type_codes=None) -> WindowSlice

        Live rows with ``start <= timestamp < end`` (``None``: open), optionally only
        of the given stream / type codes, in (timestamp, sequence) order.

        O(log n) and zero-copy when the log is in order, nothing was evicted inside it
        and no filter is given; otherwise O(log n + k).

        Raises:
            TypeError: a bound is neither an int nor None.
            ValidationError: a bound is out of the int64 range.
        """
        cdef Py_ssize_t lo, hi
        if not (start is None or type(start) is int) or not (end is None or type(end) is int):
            start = _check_bound(start, "start")
            end = _check_bound(end, "end")
        elif (start is not None and not -0x8000000000000000 <= start <= 0x7FFFFFFFFFFFFFFF) or (
            end is not None and not -0x8000000000000000 <= end <= 0x7FFFFFFFFFFFFFFF
        ):
            start = _check_bound(start, "start")
            end = _check_bound(end, "end")
        if self._sorted and not self._dead and stream_codes is None and type_codes is None:
            lo, hi = self._range(start, end)
            return _slice(self, lo, hi, None)
        rows = filter_rows(self._ordered_rows(start, end), self._stream, self._type, stream_codes, type_codes)
        return _slice(self, 0, 0, rows)

    def stream_slice(self, code, after_position, limit=None):
        """stream_slice(code, after_position, limit=None) -> WindowSlice

        Live rows of stream *code* with position > *after_position*, in position
        order, at most *limit* of them (``None``: all).

        Raises:
            ValueError: unknown stream code, or a negative *limit*.
        """
        cdef _Stream st = self._state(code)
        check_limit(limit)
        cdef int64_t after = _clamp_int64(after_position)
        if limit is not None and limit > self._n:
            limit = None  # more than every row: all of them (and no C overflow)
        cdef Py_ssize_t lo = st.head
        cdef Py_ssize_t hi = st.n
        cdef Py_ssize_t mid
        while lo < hi:
            mid = lo + (hi - lo) // 2
            if self._pos_p[st.row_at(mid)] <= after:
                lo = mid + 1
            else:
                hi = mid
        return _slice(self, 0, 0, self._collect(None if st.implicit else st.rows, lo, st.n, limit))

    def since_sequence(self, after_seq, limit=None):
        """since_sequence(after_seq, limit=None) -> WindowSlice

        Live rows of every stream with sequence > *after_seq*, in sequence order, at
        most *limit* of them (``None``: all).

        Raises:
            ValueError: a negative *limit*.
        """
        check_limit(limit)
        if limit is not None and limit > self._n:
            limit = None  # more than every row: all of them (and no C overflow)
        cdef Py_ssize_t lo = _upper_bound(self._seq_p, self._start, self._n, _clamp_int64(after_seq))
        cdef Py_ssize_t hi
        if not self._dead:
            hi = self._n if limit is None else min(self._n, lo + <Py_ssize_t>limit)
            return _slice(self, lo, hi, None)
        return _slice(self, 0, 0, self._collect(None, lo, self._n, limit))

    cdef object _collect(self, object index, Py_ssize_t lo, Py_ssize_t hi, object limit):
        return collect_alive(index, lo, hi, limit, self._start, self._flags, self._dead)

    # ---------------------------------------------------------------- eviction
    cdef Py_ssize_t _kill(self, object rows) except -1:
        rows = rows[self._alive_mask(rows)]
        cdef Py_ssize_t k = len(rows)
        cdef _Stream st
        if k == 0:
            return 0
        for c, dead in kill_rows(self._flags, self._stream, rows, len(self._streams)):
            st = <_Stream>self._streams[c]
            st.live -= dead
            st.evicted += dead
        self._dead += k
        self._live -= k
        return k

    cdef int _normalize(self) except -1:
        cdef Py_ssize_t s = self._start
        cdef Py_ssize_t n = self._n
        while s < n and self._flags_p[s] & C_DEAD:
            s += 1
            self._dead -= 1
        self._start = s
        cdef Py_ssize_t garbage = self._start + self._dead
        if garbage >= MIN_GARBAGE and garbage * 2 >= self._n:
            self.compact()
        return 0

    def evict_before(self, cutoff):
        """evict_before(cutoff) -> int

        Evict every live row with timestamp < *cutoff*; return how many.

        Raises:
            TypeError / ValidationError: *cutoff* is not an int in the int64 range.
        """
        c = _check_bound(cutoff, "cutoff")
        cdef Py_ssize_t lo, hi, s, e, b, k
        if self._live == 0:
            return 0
        if self._sorted:
            lo, hi = self._range(None, c)
            if hi == lo:
                return 0
            k = self._kill(np.arange(lo, hi, dtype=np.int64))
        else:
            self._ensure_index()
            s, e = self._perm_start, self._perm_n
            b = _lower_bound(<int64_t*>_data(self._perm_ts), s, e, <int64_t>c)
            if b == s:
                return 0
            k = self._kill(self._perm[s:b])
            self._perm_start = b
        if k:
            self._normalize()
        return k

    def evict_oldest(self, code, count):
        """evict_oldest(code, count) -> int

        Evict the *count* lowest live positions of stream *code*; return how many.

        Raises:
            ValueError: unknown stream code or negative *count*.
        """
        cdef _Stream st = self._state(code)
        if count < 0:
            raise ValueError(f"Expected count >= 0, got {count}")
        cdef Py_ssize_t want = count
        cdef Py_ssize_t i = st.head
        cdef Py_ssize_t done = 0
        cdef int64_t row
        while done < want and i < st.n:
            row = st.row_at(i)
            if row >= self._start and not self._flags_p[row] & C_DEAD:
                self._flags_p[row] |= C_DEAD
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

    def compact(self):
        """compact() -> None

        Remove evicted rows from storage now (also done automatically once evicted
        rows are at least half of the storage).  Earlier slices are unaffected.
        """
        cdef Py_ssize_t m
        cdef _Stream st
        if not self._sorted:
            self._ensure_index()
        plan = Compaction(self._flags, self._start, self._n)
        m = plan.m
        self._set_arrays(
            plan.take(self._ts), plan.take(self._seq), plan.take(self._pos),
            plan.take(self._stream), plan.take(self._type), plan.take(self._flags),
        )
        self._objs = plan.take_list(self._objs)
        if self._ids is not None:
            self._ids = plan.take_list(self._ids)
        for s in self._streams:
            st = <_Stream>s
            if st.implicit:  # still the only stream: its rows are the kept rows
                st.n = m
                st.head = 0
                continue
            rows, st.n = plan.stream_rows(st.rows, st.head, st.n)
            st.set_rows(rows)
            st.head = 0
        if not self._sorted:
            self._sorted, self._perm, self._perm_ts, self._perm_n, self._perm_start = plan.reindex(
                self._perm, self._perm_start, self._perm_n, self._ts
            )
            self._perm_rows = self._perm_n
        if self._sorted:
            self._max_ts = self._ts_p[m - 1] if m else INT64_MIN
        self._n = m
        self._start = 0
        self._dead = 0
        self._release_names(m)

    cdef int _release_names(self, Py_ssize_t m) except -1:
        """See ``columns_py.ColumnLog._release_names``."""
        first = self._seq_p[0] if m else self._next_seq
        self._auto_seq, self._auto_ms = trim_auto_ids(self._auto_seq, self._auto_ms, first)
        names = release_types(self._type, m, self._type_names)
        if names is None:
            return 0
        self._type_names = names
        self._type_index = {name: code for code, name in enumerate(names)}
        self._last_type = None
        self._last_tcode = -1
        return 0
