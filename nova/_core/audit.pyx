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

import numpy as np

from nova._core.audit_py import check_run

__all__ = ("call_rows",)


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
