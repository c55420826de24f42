"""The Event type, ids and time conversion (compiled kernel).

Same names, results and exceptions as ``event_py`` (the specification).  The id of an
auto-id event is captured at construction as (milliseconds, node, counter) and only
rendered to its ``str`` form the first time it is read, which keeps construction cheap.
"""

cimport cython
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int64_t, uint64_t

import os

from nova._core import timeconv as _timeconv
from nova._core._event_common import check_metadata as _check_metadata
from nova.errors import ValidationError

__all__ = ("Event", "new_id", "to_timestamp_ns", "now_ns")

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_REALTIME

cdef tuple _FIELDS = ("type", "data", "id", "timestamp", "metadata")


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def now_ns():
    """now_ns() -> int

    Return the current wall-clock time as int nanoseconds since the epoch (UTC).
    """
    return _now_ns()


#: The one conversion (a plain module shared with the pure twin and the stores).
to_timestamp_ns = _timeconv.to_timestamp_ns
cdef object _to_ns = _timeconv.to_timestamp_ns
cdef object _ns_to_datetime = _timeconv.ns_to_datetime


# Ids: 32 lowercase hex chars = 12 (ms since the epoch) + 10 (random node, redrawn
# after fork) + 10 (per-process counter).  Updated only while holding the GIL.
cdef uint64_t _node = 0
cdef uint64_t _seq = 0
cdef int64_t _last_ms = 0
cdef char* _HEX = b"0123456789abcdef"


def _reseed_after_fork():
    global _node, _seq, _last_ms
    _node = int.from_bytes(os.urandom(5), "big")
    _seq = 0
    _last_ms = 0


_reseed_after_fork()
os.register_at_fork(after_in_child=_reseed_after_fork)


cdef inline void _hex(char* out, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = _HEX[value & 0xF]
        value >>= 4


cdef inline str _format_id(int64_t ms, uint64_t node, uint64_t seq):
    cdef char buf[32]
    _hex(buf, <uint64_t>ms & 0xFFFFFFFFFFFF, 12)
    _hex(buf + 12, node, 10)
    _hex(buf + 22, seq & 0xFFFFFFFFFF, 10)
    return PyUnicode_DecodeASCII(buf, 32, NULL)


def new_id():
    """new_id() -> str

    Return a new event id: unique across threads and processes, time-sortable.
    """
    global _seq, _last_ms
    cdef int64_t ms = _now_ns() // 1000000
    if ms < _last_ms:
        ms = _last_ms
    else:
        _last_ms = ms
    _seq += 1
    return _format_id(ms, _node, _seq)


@cython.final
@cython.freelist(256)
cdef class Event:
    """Event(type, data=None, *, id=None, timestamp=None, metadata=None)

    An event: a typed, timestamped, uniquely identified piece of data.

    Attributes:
        id: ``str``; a fresh time-sortable unique id when not given.
        type: non-empty ``str`` (e.g. ``"user.created"``).
        timestamp: ``int`` nanoseconds since the epoch (UTC); now when not given. Also
            accepts an aware ``datetime`` or ``numpy.datetime64`` at construction.
        data: any object (the payload).
        metadata: a plain ``dict[str, str]`` (trace context lives here).

    Events are equal when every field is equal; ``hash(event)`` is the hash of its id.
    They pickle, and :meth:`replace` makes a changed copy.

    Raises:
        ValidationError: empty or non-``str`` type or id, a bad timestamp (naive
            datetime, float, bool, ...), non-``str`` metadata keys or values.
    """

    cdef str _type
    cdef object _data
    cdef str _id
    cdef int64_t _timestamp
    cdef dict _metadata
    cdef int64_t _id_ms
    cdef uint64_t _id_node
    cdef uint64_t _id_seq

    def __cinit__(self, type, data=None, *, id=None, timestamp=None, metadata=None):
        global _seq, _last_ms
        cdef int64_t now = _now_ns()
        cdef int64_t ms
        if not isinstance(type, str) or not type:
            if isinstance(type, str):
                raise ValidationError("Expected a non-empty str event type, got ''")
            raise ValidationError(f"Expected a non-empty str event type, got {_tname(type)}")
        self._type = <str>type
        self._data = data
        if timestamp is None:
            self._timestamp = now
        elif isinstance(timestamp, int) and not isinstance(timestamp, bool) \
                and -0x7FFFFFFFFFFFFFFF <= timestamp <= 0x7FFFFFFFFFFFFFFF:
            self._timestamp = timestamp
        else:
            self._timestamp = _to_ns(timestamp)
        if id is None:
            ms = now // 1000000
            if ms < _last_ms:
                ms = _last_ms
            else:
                _last_ms = ms
            _seq += 1
            self._id_ms = ms
            self._id_node = _node
            self._id_seq = _seq
        elif isinstance(id, str) and id:
            self._id = <str>id
        else:
            raise ValidationError(
                f"Expected a non-empty str event id, got {_tname(id) if not isinstance(id, str) else repr(id)}"
            )
        if metadata is not None:
            self._metadata = _check_metadata(metadata)

    cdef inline str _get_id(self):
        if self._id is None:
            self._id = _format_id(self._id_ms, self._id_node, self._id_seq)
        return self._id

    @property
    def id(self):
        """The event id (``str``)."""
        return self._get_id()

    @property
    def type(self):
        """The event type (non-empty ``str``)."""
        return self._type

    @property
    def timestamp(self):
        """Int nanoseconds since the epoch (UTC)."""
        return self._timestamp

    @property
    def data(self):
        """The payload."""
        return self._data

    @property
    def metadata(self):
        """A plain ``dict[str, str]``; mutable (middleware may enrich it)."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    @property
    def datetime(self):
        """The timestamp as an aware UTC :class:`datetime.datetime`, floored to the
        microsecond (C division would truncate: -1 ns must be 23:59:59.999999)."""
        return _ns_to_datetime(self._timestamp)

    def replace(self, **changes):
        """replace(**changes) -> Event

        Return a copy with *changes* applied (``type``, ``data``, ``id``, ``timestamp``,
        ``metadata``).  The id is kept unless ``id`` is given.

        Raises:
            TypeError: an unknown field name.
            ValidationError: a changed field is invalid.
        """
        for k in changes:
            if k not in _FIELDS:
                raise TypeError(
                    f"replace() expected fields among {', '.join(_FIELDS)}, got {k!r}"
                )
        return Event(
            changes.get("type", self._type),
            changes.get("data", self._data),
            id=changes.get("id", self._get_id()),
            timestamp=changes.get("timestamp", self._timestamp),
            metadata=changes["metadata"] if "metadata" in changes else self._metadata,
        )

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        cdef Event o = <Event>other
        return (
            self._get_id() == o._get_id()
            and self._type == o._type
            and self._timestamp == o._timestamp
            and (self._metadata or {}) == (o._metadata or {})
            and bool(self._data == o._data)
        )

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(self._get_id())

    def __repr__(self):
        meta = f", metadata={self._metadata!r}" if self._metadata else ""
        return (
            f"Event(type={self._type!r}, data={self._data!r}, id={self._get_id()!r}, "
            f"timestamp={self._timestamp}{meta})"
        )

    def __reduce__(self):
        return (_restore, (self._type, self._data, self._get_id(), self._timestamp, self._metadata))


def _restore(type, data, id, timestamp, metadata):
    return Event(type, data, id=id, timestamp=timestamp, metadata=metadata)


cdef str _tname(object value):
    return value.__class__.__name__
