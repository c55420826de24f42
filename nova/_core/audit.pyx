# cython: freethreading_compatible = False
"""The audit trail's row builder (compiled kernel).

Same names, results, exceptions and messages as ``audit_py`` (the specification):
:func:`call_rows` builds the short rows of an Emitter worker's successful calls and
their wall-clock start times in one C loop, reading each ``perf_counter`` end time
as a C double (no intermediate float or int objects: per call, one 4-tuple and the
float of its duration are all that is allocated).
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import numpy as np

from nova._core.audit_py import check_run

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


@cython.boundscheck(False)
@cython.wraparound(False)
def call_rows(run, base_ns, base_pc, rows):
    """call_rows(run, base_ns, base_pc, rows) -> numpy.ndarray

    Append one ``(event_id, event_type, listener_id, duration)`` row per call of the
    call batches *run* to *rows*; return the calls' start times as wall-clock ns.
    See ``audit_py.call_rows``.

    Raises:
        TypeError / ValueError: see ``audit_py.check_run`` (nothing appended then).
    """
    cdef Py_ssize_t total = check_run(run, rows)
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
    cdef object ev, x
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
            new.append((ev.id, ev.type, <object>PyList_GET_ITEM(lids, j), end - start))
            start = end
            k += 1
    (<list>rows).extend(new)
    return out
