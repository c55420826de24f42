# cython: freethreading_compatible = False
"""The parking of an emitter's idle workers and the watch for a stuck batch (compiled
kernel).

Same names and behaviour as ``park_py`` (the specification), with one difference that
is the reason for this kernel: :meth:`Watch.wait` polls with the GIL released.  The
watcher's poll reads the batches' take times from C arrays and takes the GIL back only
when a batch is old enough to look at, when it is woken, or when it stops polling, so
its polls (about a thousand a second while batches are being taken) never take the GIL
from the worker delivering an event.  (With a GIL-taking poll, the p99 of emit_async at
50 k events/s with 4 workers was twice that of one worker: issue 11.)

:class:`ParkLock` is a plain lock (``PyThread_type_lock``, what ``threading.Lock`` is
built on) whose timed acquire the watcher can run without the GIL.
"""

cimport cython
from cpython.pythread cimport (
    PY_LOCK_ACQUIRED,
    PyLockStatus,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.stdlib cimport calloc, free
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import math

__all__ = ("ParkLock", "Watch", "WOKEN", "CHECK", "IDLE")

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds,
                                             int intr_flag) nogil

WOKEN, CHECK, IDLE = 0, 1, 2
cdef int _WOKEN = 0, _CHECK = 1, _IDLE = 2


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef long long _micros(timeout) except -2:
    """A timeout in seconds as lock-wait microseconds (-1: no limit)."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"Expected a timeout in seconds as an int or float, got {type(timeout).__name__}")
    t = float(timeout)
    if t == -1.0:
        return -1
    if math.isnan(t) or t < 0:
        raise ValueError(f"Expected a timeout >= 0 or -1, got {timeout!r}")
    if t * 1e6 >= 9.2e15:
        return -1
    return <long long>(t * 1e6)


@cython.final
cdef class ParkLock:
    """A parked worker's lock (``acquire(blocking=True, timeout=-1)``, ``release()``),
    as ``threading.Lock``."""

    cdef PyThread_type_lock lock
    cdef bint held

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError("Expected a lock, got none: out of memory")
        self.held = False

    def __dealloc__(self):
        if self.lock != NULL:
            if self.held:
                PyThread_release_lock(self.lock)
            PyThread_free_lock(self.lock)

    cdef bint _acquire(self, long long us) noexcept:
        """Take the lock within *us* microseconds (-1: no limit), the GIL released while
        waiting."""
        cdef PyLockStatus r = PyThread_acquire_lock_timed(self.lock, 0, 0)
        if r != PY_LOCK_ACQUIRED and us != 0:
            with nogil:
                r = PyThread_acquire_lock_timed(self.lock, us, 0)
        if r == PY_LOCK_ACQUIRED:
            self.held = True
            return True
        return False

    def acquire(self, blocking=True, timeout=-1):
        """Take the lock (True), or False when *blocking* is false or *timeout* seconds
        passed first."""
        if not blocking:
            if timeout is not None and timeout != -1:
                raise ValueError(f"Expected no timeout for a non-blocking acquire, got {timeout!r}")
            return self._acquire(0)
        return self._acquire(_micros(timeout))

    def release(self):
        """Release the lock (it must be held: RuntimeError otherwise)."""
        if not self.held:
            raise RuntimeError("Expected a held ParkLock to release, got it unlocked")
        self.held = False
        PyThread_release_lock(self.lock)

    def locked(self):
        """True while the lock is held."""
        return self.held

    def __repr__(self):
        return f"<ParkLock {'locked' if self.held else 'unlocked'}>"


@cython.final
cdef class Watch:
    """When each of *workers* workers took the multi-event batch it is delivering, and
    the watcher's park (see ``park_py.Watch``)."""

    cdef double* since_
    cdef double* acked
    cdef readonly Py_ssize_t n
    cdef readonly unsigned long long multi
    cdef readonly unsigned long long polls

    def __cinit__(self, workers):
        self.since_ = NULL
        self.acked = NULL
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"Expected workers as an int >= 1, got {workers!r}")
        self.n = workers
        self.since_ = <double*>calloc(self.n, sizeof(double))
        self.acked = <double*>calloc(self.n, sizeof(double))
        if self.since_ == NULL or self.acked == NULL:
            raise MemoryError(f"Expected memory for {workers} workers, got none")
        self.multi = 0
        self.polls = 0

    def __dealloc__(self):
        free(self.since_)
        free(self.acked)

    cdef inline int _check(self, Py_ssize_t wid) except -1:
        if not 0 <= wid < self.n:
            raise IndexError(f"Expected a worker index in [0, {self.n}), got {wid!r}")
        return 0

    def took(self, Py_ssize_t wid, bint multi):
        """Worker *wid* took (*multi*: from the buffer, 2+ events) or joined a batch now."""
        self._check(wid)
        self.since_[wid] = _now()
        if multi:
            self.multi += 1

    def clear(self, Py_ssize_t wid):
        """Worker *wid* finished its batch."""
        self._check(wid)
        self.since_[wid] = 0.0

    def since(self, Py_ssize_t wid):
        """When worker *wid* took its batch (``time.monotonic()`` seconds; 0.0: none)."""
        self._check(wid)
        return self.since_[wid]

    def stale(self, double period):
        """``(worker, since)`` of the workers whose batch was taken *period* seconds ago
        or more and not acknowledged as finished."""
        cdef double now = _now(), s
        cdef Py_ssize_t i
        out = []
        for i in range(self.n):
            s = self.since_[i]
            if s != 0.0 and s != self.acked[i] and now - s >= period:
                out.append((i, s))
        return out

    def ack(self, Py_ssize_t wid, double since):
        """The batch worker *wid* took at *since* has no unstarted event left."""
        self._check(wid)
        self.acked[wid] = since

    cdef int _found(self, double period) noexcept nogil:
        """0: nothing being delivered; 1: a batch being delivered; 2: a stale batch."""
        cdef double now = _now(), s
        cdef Py_ssize_t i
        cdef int found = 0
        for i in range(self.n):
            s = self.since_[i]
            if s != 0.0:
                found = 1
                if s != self.acked[i] and now - s >= period:
                    return 2
        return found

    def wait(self, ParkLock lock not None, double period, int idle_polls):
        """The watcher's park: wait for *lock*, looking every *period* seconds for a
        stale batch, with the GIL released throughout.  Returns WOKEN, CHECK or IDLE
        (see ``park_py.Watch.wait``)."""
        if not period > 0:
            raise ValueError(f"Expected a period > 0, got {period!r}")
        cdef long long us = max(<long long>(period * 1e6), 1)
        cdef unsigned long long seen = self.multi
        cdef int idle = 0, found, result
        cdef PyLockStatus r
        if PyThread_acquire_lock_timed(lock.lock, 0, 0) == PY_LOCK_ACQUIRED:
            lock.held = True
            return WOKEN
        with nogil:
            while True:
                r = PyThread_acquire_lock_timed(lock.lock, us, 0)
                if r == PY_LOCK_ACQUIRED:
                    result = _WOKEN
                    break
                self.polls += 1  # only the watcher writes it
                found = self._found(period)
                if found == 2:
                    result = _CHECK
                    break
                if self.multi == seen and found == 0:
                    idle += 1
                    if idle >= idle_polls:
                        result = _IDLE
                        break
                else:
                    idle = 0
                    seen = self.multi
        if result == _WOKEN:
            lock.held = True
        return result
