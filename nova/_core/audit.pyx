# cython: freethreading_compatible = False
"""The audit trail's row builder (compiled kernel).

Same names, results, exceptions and messages as ``audit_py`` (the specification):
:func:`call_rows` builds the short rows of an Emitter worker's successful calls and
their wall-clock start times in one C loop, reading each ``perf_counter`` end time
as a C double (no intermediate float or int objects: per call, one 4-tuple and the
float of its duration are all that is allocated).  A row of strings and a float is
untracked by the garbage collector when it is made (what the collector's first pass
would do), so a trail of millions of stored rows adds nothing to collections.
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object)

import numpy as np


__all__ = ("call_rows", "note_call")


cdef inline double _perf_counter() noexcept nogil:
    # time.perf_counter() on Linux: CLOCK_MONOTONIC as int ns, then seconds as a double
    # exactly as CPython converts it (_PyTime_AsSecondsDouble), so readings mix with
    # perf_counter()'s.
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    cdef int64_t ns = <int64_t>t.tv_sec * 1000000000 + t.tv_nsec
    if ns % 1000000000 == 0:
        return <double>(ns // 1000000000)
    return <double>ns / 1e9


def note_call(events, listener_ids, ends, event, listener_id):
    """note_call(events, listener_ids, ends, event, listener_id) -> None

    Note a call that ended now (see ``audit_py.note_call``): the clock is read in C.

    Raises:
        TypeError: a list argument is not a list (nothing appended).
    """
    if type(events) is not list or type(listener_ids) is not list or type(ends) is not list:
        raise TypeError(
            f"Expected events, listener_ids and ends as lists, got "
            f"{type(events).__name__}, {type(listener_ids).__name__}, {type(ends).__name__}"
        )
    (<list>ends).append(_perf_counter())
    (<list>events).append(event)
    (<list>listener_ids).append(listener_id)


cdef Py_ssize_t _check_run(object run, object rows) except -1:
    # audit_py.check_run in C (the same checks and messages): per call batch, no
    # Python bytecode.
    if not isinstance(run, list):
        raise TypeError(f"Expected run as a list of call batches, got {type(run).__name__}")
    if not isinstance(rows, list):
        raise TypeError(f"Expected rows as a list, got {type(rows).__name__}")
    cdef Py_ssize_t total = 0, n
    cdef object evs, lids, ends
    for item in <list>run:
        if not isinstance(item, tuple) or len(<tuple>item) < 4:
            raise TypeError(f"Expected a call batch (start, events, listener_ids, ends, ...), got {type(item).__name__}")
        if type((<tuple>item)[0]) is not float:
            raise TypeError(f"Expected start as a float (a perf_counter reading), got {type((<tuple>item)[0]).__name__}")
        evs = (<tuple>item)[1]
        lids = (<tuple>item)[2]
        ends = (<tuple>item)[3]
        if not isinstance(evs, list):
            raise TypeError(f"Expected events as a list, got {type(evs).__name__}")
        if not isinstance(lids, list):
            raise TypeError(f"Expected listener_ids as a list, got {type(lids).__name__}")
        if not isinstance(ends, list):
            raise TypeError(f"Expected ends as a list, got {type(ends).__name__}")
        n = PyList_GET_SIZE(ends)
        if PyList_GET_SIZE(evs) != n or PyList_GET_SIZE(lids) != n:
            raise ValueError(
                f"Expected events, listener_ids and ends of one length, got {len(evs)}, {len(lids)}, {n}"
            )
        total += n
    return total


@cython.boundscheck(False)
@cython.wraparound(False)
def call_rows(run, base_ns, base_pc, rows):
    """call_rows(run, base_ns, base_pc, rows) -> numpy.ndarray

    Append one ``(event_id, event_type, listener_id, duration)`` row per call of the
    call batches *run* to *rows*; return the calls' start times as wall-clock ns.
    See ``audit_py.call_rows``.

    Raises:
        TypeError / ValueError: as ``audit_py.check_run`` (nothing appended then).
    """
    cdef Py_ssize_t total = _check_run(run, rows)
    cdef int64_t bns = base_ns
    cdef double bpc = base_pc
    out = np.empty(total, dtype=np.int64)
    if total == 0:
        return out
    cdef int64_t[::1] ts = out
    cdef list new = []  # appended to rows at the end: all or nothing
    cdef list evs, lids, ends
    cdef Py_ssize_t j, m, k = 0
    cdef double start, end
    cdef object ev, x, eid, etype, lid
    cdef tuple row
    for item in <list>run:
        start = item[0]
        evs = <list>item[1]
        lids = <list>item[2]
        ends = <list>item[3]
        m = PyList_GET_SIZE(ends)
        for j in range(m):
            ev = <object>PyList_GET_ITEM(evs, j)
            x = <object>PyList_GET_ITEM(ends, j)
            if type(x) is not float:
                raise TypeError(f"Expected ends as floats (perf_counter readings), got {type(x).__name__}")
            end = PyFloat_AS_DOUBLE(x)
            ts[k] = bns + <int64_t>((start - bpc) * 1e9)
            eid = ev.id
            etype = ev.type
            lid = <object>PyList_GET_ITEM(lids, j)
            row = (eid, etype, lid, end - start)
            if type(eid) is str and type(etype) is str and type(lid) is str:
                # only atoms inside: untrack it now, as the GC's first pass over it
                # would (_PyTuple_MaybeUntrack), so the collector never walks the
                # stored rows
                PyObject_GC_UnTrack(row)
            new.append(row)
            start = end
            k += 1
    (<list>rows).extend(new)
    return out
