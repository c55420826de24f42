# cython: freethreading_compatible = False
"""The audit trail's row builder (compiled kernel).

Same names, results, exceptions and messages as ``audit_py`` (the specification):
:func:`call_rows` builds the short rows of an Emitter worker's successful calls and
their wall-clock start times in one C loop, reading each ``perf_counter`` end time
as a C double (no intermediate float or int objects: per call, one 4-tuple and the
float of its duration are all that is allocated).  A row of strings and a float is
untracked by the garbage collector when it is made (what the collector's first pass
would do), so a trail of millions of stored rows adds nothing to collections.
:func:`deliver_noted` is an Emitter worker's audited batch loop in C (no Python
bytecode per event on a plain route; each call's end read from the clock in C and
stored as a double in the worker's ``array('d')``, no float object).
"""

cimport cython
from cpython cimport array
from cpython.dict cimport PyDict_GetItemWithError
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object)
    Py_ssize_t Py_SIZE(object)
    int _list_cut "PyList_SetSlice"(object, Py_ssize_t, Py_ssize_t, PyObject*) except -1

import numpy as np


__all__ = ("call_rows", "deliver_noted", "note_call")


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


cdef inline bint _is_doubles(object x) noexcept:
    return type(x) is array.array and (<array.array>x).ob_descr.typecode == 100  # 'd'


cdef inline int _note(list events, list listener_ids, object ends, object event, object listener_id) except -1:
    # note_call's body, its arguments checked
    cdef array.array a
    cdef Py_ssize_t n
    if type(ends) is list:
        (<list>ends).append(_perf_counter())
    else:
        a = <array.array>ends
        n = Py_SIZE(a)
        array.resize_smart(a, n + 1)
        a.data.as_doubles[n] = _perf_counter()
    events.append(event)
    listener_ids.append(listener_id)
    return 0


def deliver_noted(batch, routes, default, events, listener_ids, ends):
    """deliver_noted(batch, routes, default, events, listener_ids, ends) -> (taken, event, route, failure)

    An Emitter worker's batch loop on plain routes, noting each call (see
    ``audit_py.deliver_noted``): take events from the end of *batch* (as
    ``batch.pop()``; other workers may take from it meanwhile) and deliver each on
    ``routes.get(event.type, default)`` while that route is plain (``all_sync`` and
    not ``checked``): ``route.wtick()``, then its entries' calls, each noted as
    :func:`note_call` does (``entry.lid`` its listener id).
    Returns at the first event it does not finish: ``(taken, None, None, None)`` when
    *batch* is empty; ``(taken, event, route, None)`` for an event whose route is not
    plain (taken, not delivered); ``(taken, event, route, (entry, exc))`` when a call
    raised (noted; the entries after it not called); ``(taken, event, None, (None,
    exc))`` when finding the route raised.  *taken* counts the events taken, the one
    returned included.

    Raises:
        TypeError: *batch* is not a list, *routes* not a dict, or a list argument as
            in :func:`note_call` (nothing taken).
    """
    if type(events) is not list or type(listener_ids) is not list or not (type(ends) is list or _is_doubles(ends)):
        _bad_lists(events, listener_ids, ends)
    if type(batch) is not list:
        raise TypeError(f"Expected batch as a list, got {type(batch).__name__}")
    if type(routes) is not dict:
        raise TypeError(f"Expected routes as a dict, got {type(routes).__name__}")
    cdef Py_ssize_t n, i, taken = 0
    cdef object event, route, entry
    cdef object last = None, wtick = None, entries = None, calls = None, lids = None
    cdef PyObject* found
    while True:
        n = PyList_GET_SIZE(batch)
        if n == 0:
            return (taken, None, None, None)
        event = <object>PyList_GET_ITEM(batch, n - 1)  # a new reference: kept while removed
        _list_cut(batch, n - 1, n, NULL)  # as batch.pop(): no Python code runs between
        taken += 1
        try:
            found = PyDict_GetItemWithError(routes, event.type)
            if found == NULL:
                route = default
            else:
                route = <object>found
            if route is not last:
                # a route is immutable: what it is made of is read once per call of
                # this function (a batch's events mostly share a few routes)
                if not route.all_sync or route.checked:
                    return (taken, event, route, None)
                entries = route.entries
                if type(entries) is not tuple:
                    raise TypeError(f"Expected route entries as a tuple, got {type(entries).__name__}")
                calls = tuple([e.call for e in entries])
                lids = tuple([e.lid for e in entries])
                wtick = route.wtick
                last = route
            wtick()  # its calls presumed processed
        except BaseException as exc:
            return (taken, event, None, (None, exc))
        for i in range(PyTuple_GET_SIZE(calls)):
            try:
                (<object>PyTuple_GET_ITEM(calls, i))(event)
            except BaseException as exc:
                _note(<list>events, <list>listener_ids, ends, event, <object>PyTuple_GET_ITEM(lids, i))
                return (taken, event, route, (<object>PyTuple_GET_ITEM(entries, i), exc))
            _note(<list>events, <list>listener_ids, ends, event, <object>PyTuple_GET_ITEM(lids, i))


def note_call(events, listener_ids, ends, event, listener_id):
    """note_call(events, listener_ids, ends, event, listener_id) -> None

    Note a call that ended now (see ``audit_py.note_call``): the clock is read in C,
    and stored as a C double when *ends* is an ``array('d')`` (no float object).

    Raises:
        TypeError: *events* or *listener_ids* is not a list, or *ends* neither a list
            nor an ``array('d')`` (nothing appended).
    """
    if type(events) is not list or type(listener_ids) is not list or not (type(ends) is list or _is_doubles(ends)):
        _bad_lists(events, listener_ids, ends)
    _note(<list>events, <list>listener_ids, ends, event, listener_id)


cdef int _bad_lists(object events, object listener_ids, object ends) except -1:
    raise TypeError(
        f"Expected events and listener_ids as lists and ends as a list or an array('d'), got "
        f"{type(events).__name__}, {type(listener_ids).__name__}, {_ends_name(ends)}"
    )


cdef str _ends_name(object ends):
    if type(ends) is array.array:
        return f"array({(<array.array>ends).typecode!r})"
    return type(ends).__name__


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
        if type(ends) is list:
            n = PyList_GET_SIZE(ends)
        elif _is_doubles(ends):
            n = Py_SIZE(ends)
        else:
            raise TypeError(f"Expected ends as a list or an array('d'), got {_ends_name(ends)}")
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
    cdef list evs, lids
    cdef object ends
    cdef const double* dends
    cdef Py_ssize_t j, m, k = 0
    cdef double start, end
    cdef object ev, x, eid = None, etype = None, lid
    cdef object prev = None  # the event of the call before: its id and type are read once
    cdef bint atoms = False
    cdef tuple row
    for item in <list>run:
        start = item[0]
        evs = <list>item[1]
        lids = <list>item[2]
        ends = item[3]
        dends = NULL
        if type(ends) is list:
            m = PyList_GET_SIZE(ends)
        else:  # an array('d') (checked by _check_run)
            m = Py_SIZE(ends)
            dends = (<array.array>ends).data.as_doubles
        for j in range(m):
            ev = <object>PyList_GET_ITEM(evs, j)
            if dends != NULL:
                end = dends[j]
            else:
                x = <object>PyList_GET_ITEM(ends, j)
                if type(x) is not float:
                    raise TypeError(f"Expected ends as floats (perf_counter readings), got {type(x).__name__}")
                end = PyFloat_AS_DOUBLE(x)
            ts[k] = bns + <int64_t>((start - bpc) * 1e9)
            if ev is not prev:  # (an event's calls to several listeners are consecutive)
                eid = ev.id
                etype = ev.type
                atoms = type(eid) is str and type(etype) is str
                prev = ev
            lid = <object>PyList_GET_ITEM(lids, j)
            row = (eid, etype, lid, end - start)
            if atoms and type(lid) is str:
                # only atoms inside: untrack it now, as the GC's first pass over it
                # would (_PyTuple_MaybeUntrack), so the collector never walks the
                # stored rows
                PyObject_GC_UnTrack(row)
            new.append(row)
            start = end
            k += 1
    (<list>rows).extend(new)
    return out
