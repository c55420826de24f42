# cython: freethreading_compatible = False
"""A bounded multi-producer, multi-consumer FIFO queue (compiled kernel).

Same names, results, exceptions and messages as ``ring_py`` (the specification).

Design: a ring of ``PyObject*`` slots (the item array of a private list, so the
garbage collector sees queued items; an empty slot holds None).  A reference is taken
on put and handed to the caller on get.  The slots and counters are only touched with
the GIL held and no Python code running in between, which makes each operation atomic
without a lock on the fast path.  Blocking waits release
the GIL and sleep on a pthread condition variable: a waiter registers itself and
snapshots a wake-up sequence with the GIL held, then, with the GIL released, locks
the mutex and waits until the sequence moves (a producer that sees a registered waiter
bumps the sequence and signals under the mutex).  The mutex is never held while
waiting for the GIL, and never waited for by a thread that would need to be running
Python for the holder to make progress, so there is no lock-order deadlock.  Nothing
polls: an idle blocked consumer is asleep in the kernel.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.errno cimport ETIMEDOUT
from libc.math cimport floor
from libc.stdint cimport uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.types cimport clockid_t

import threading

from nova._core import forksafe as _forksafe
from nova._core.ring_py import (
    RingStats,
    check_capacity,
    check_max_items,
    check_timeout,
    closed_get_error,
    closed_put_error,
    empty_error,
    full_error,
    get_timeout_error,
    put_timeout_error,
)

__all__ = ("RingQueue", "RingStats")


cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject** ob_item
    void _incref "Py_INCREF"(PyObject* o)
    void _decref "Py_DECREF"(PyObject* o)

cdef PyObject* _NONE = <PyObject*>None


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, const void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_condattr_init(pthread_condattr_t* a)
    int pthread_condattr_setclock(pthread_condattr_t* a, clockid_t clock)
    int pthread_condattr_destroy(pthread_condattr_t* a)
    int pthread_cond_init(pthread_cond_t* c, const pthread_condattr_t* a)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* t)
    int pthread_cond_signal(pthread_cond_t* c)
    int pthread_cond_broadcast(pthread_cond_t* c)


cdef unsigned long _MAIN_IDENT = <unsigned long>threading.main_thread().ident
# The main thread wakes this often while blocked without a deadline, to run signal
# handlers (Ctrl-C); other threads sleep until woken.
cdef double _SIGNAL_SLICE = 0.1


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline void _to_timespec(double t, timespec* ts) noexcept nogil:
    cdef double sec = floor(t)
    ts.tv_sec = <long>sec
    ts.tv_nsec = <long>((t - sec) * 1e9)
    if ts.tv_nsec >= 1000000000:
        ts.tv_sec += 1
        ts.tv_nsec -= 1000000000


@cython.final
@cython.no_gc_clear
cdef class RingQueue:
    """A bounded FIFO queue for many producers and many consumers.

    Args:
        capacity: the most items the queue holds (an int > 0).

    Raises:
        TypeError: *capacity* is not an int.
        ValueError: *capacity* <= 0.

    Every method is thread-safe.  Timeouts are float seconds or a
    :class:`datetime.timedelta`; ``None`` (or ``inf``, or any timeout too long for a
    lock wait) waits without limit; a negative or NaN timeout is a ``ValueError``.
    """

    def __cinit__(self, capacity):
        self.sync_ready = False
        self.buf = NULL
        cap = check_capacity(capacity)
        self.slots = [None] * cap
        self.buf = (<PyListObject*>self.slots).ob_item
        self.cap = cap
        self.head = 0
        self.count = 0
        self.peak = 0
        self.puts = 0
        self.gets = 0
        self.getters = 0
        self.putters = 0
        self.get_seq = 0
        self.put_seq = 0
        self.closed_flag = False
        self._init_sync()
        self.sync_ready = True
        _forksafe.track(self)

    cdef int _init_sync(self) except -1:
        """(Re-)create the mutex and condition variables, with no waiter."""
        cdef pthread_condattr_t attr
        if pthread_mutex_init(&self.mutex, NULL) != 0:
            raise OSError("Expected pthread_mutex_init to succeed, got an error")
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.not_empty, &attr)
        pthread_cond_init(&self.not_full, &attr)
        pthread_condattr_destroy(&attr)
        return 0

    def _after_fork_in_child(self):
        """In a forked child (see ``nova._core.forksafe``): the parent's threads that
        waited here do not exist.  The mutex may have been copied locked and the
        condition variables still count those waiters (glibc would wait for them for
        ever), so they are created anew (not destroyed: their state is garbage); the
        items, counters and closed state are kept."""
        if self.sync_ready:
            self._init_sync()
        self.getters = 0
        self.putters = 0

    def __dealloc__(self):
        # The items go with the slots list, which Cython releases after this.
        self.buf = NULL
        if self.sync_ready:
            pthread_cond_destroy(&self.not_empty)
            pthread_cond_destroy(&self.not_full)
            pthread_mutex_destroy(&self.mutex)

    # -- internals (GIL held) ---------------------------------------------------------

    cdef int _push(self, object item) except -1:
        cdef Py_ssize_t tail = self.head + self.count
        if tail >= self.cap:
            tail -= self.cap
        # Replace the None in the slot; dropping a reference to None runs no code.
        _incref(<PyObject*>item)
        _decref(self.buf[tail])
        self.buf[tail] = <PyObject*>item
        self.count += 1
        self.puts += 1
        if self.count > self.peak:
            self.peak = self.count
        if self.getters > 0:
            self._wake_getters(1)
        return 0

    cdef object _pop(self):
        cdef PyObject* p = self.buf[self.head]
        _incref(_NONE)
        self.buf[self.head] = _NONE
        self.head += 1
        if self.head == self.cap:
            self.head = 0
        self.count -= 1
        self.gets += 1
        item = <object>p   # new reference...
        Py_DECREF(item)    # ...and the buffer's reference handed over
        if self.putters > 0:
            self._wake_putters(1)
        return item

    # The wakers lock the mutex with the GIL held.  That is deadlock-free because the
    # only other holders of the mutex are waiters inside their ``nogil`` section, which
    # never need the GIL while they hold it; and releasing the GIL here would hand it to
    # another thread at every wake-up.

    cdef int _wake_getters(self, Py_ssize_t n) except -1:
        pthread_mutex_lock(&self.mutex)
        self.get_seq += 1
        if n == 1:
            pthread_cond_signal(&self.not_empty)
        else:
            pthread_cond_broadcast(&self.not_empty)
        pthread_mutex_unlock(&self.mutex)
        return 0

    cdef int _wake_putters(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t i
        pthread_mutex_lock(&self.mutex)
        self.put_seq += 1
        if n >= self.putters:
            pthread_cond_broadcast(&self.not_full)
        else:
            for i in range(n):
                pthread_cond_signal(&self.not_full)
        pthread_mutex_unlock(&self.mutex)
        return 0

    cdef int _wait(self, bint getter, double timeout, bint has_timeout) except -1:
        """Wait (GIL released) until an item (getter) or room (putter) is there:
        return 1; or the timeout passed: return 0.  Raises QueueClosed when closed
        (for a getter: once drained)."""
        cdef double deadline = 0.0
        cdef double slice_end
        cdef timespec ts
        cdef uint64_t seq0
        cdef pthread_cond_t* cond
        cdef uint64_t* seqp
        cdef bint timed_out = False
        cdef bint slice_out = False
        cdef bint is_main = PyThread_get_thread_ident() == _MAIN_IDENT
        cdef bint use_deadline
        cdef int rc
        if has_timeout:
            deadline = _now() + timeout
        while True:
            if getter:
                if self.count > 0:
                    return 1
                if self.closed_flag:
                    raise closed_get_error()
            else:
                if self.closed_flag:
                    raise closed_put_error()
                if self.count < self.cap:
                    return 1
            if timed_out or (has_timeout and timeout <= 0.0):
                return 0
            if slice_out:
                PyErr_CheckSignals()
                slice_out = False
            # Register, snapshot the wake-up sequence, then sleep without the GIL.
            use_deadline = has_timeout
            slice_end = deadline
            if is_main:
                slice_end = _now() + _SIGNAL_SLICE
                if not has_timeout or slice_end < deadline:
                    use_deadline = True
                else:
                    slice_end = deadline
            _to_timespec(slice_end, &ts)
            # Getters wait on not_empty for get_seq to move, putters on not_full for put_seq.
            cond = &self.not_empty if getter else &self.not_full
            seqp = &self.get_seq if getter else &self.put_seq
            if getter:
                self.getters += 1
            else:
                self.putters += 1
            seq0 = seqp[0]
            with nogil:
                pthread_mutex_lock(&self.mutex)
                while seqp[0] == seq0 and not self.closed_flag:
                    if use_deadline:
                        rc = pthread_cond_timedwait(cond, &self.mutex, &ts)
                        if rc == ETIMEDOUT:
                            if has_timeout and slice_end >= deadline:
                                timed_out = True
                            else:
                                slice_out = True
                            break
                    else:
                        pthread_cond_wait(cond, &self.mutex)
                pthread_mutex_unlock(&self.mutex)
            if getter:
                self.getters -= 1
            else:
                self.putters -= 1

    # -- producers --------------------------------------------------------------------

    def put(self, item, timeout=None):
        """Append *item*, waiting while the queue is full.

        Raises:
            QueueClosed: the queue is closed (also when it closes while waiting).
            Timeout: still full after *timeout* seconds.
        """
        cdef double t = 0.0
        if timeout is not None:
            timeout = check_timeout(timeout)   # None when too long to be a limit
            if timeout is not None:
                t = timeout
        # No Python call from the checks to the push: the GIL keeps them atomic.
        if self.closed_flag:
            raise closed_put_error()
        if self.count < self.cap:
            self._push(item)
            return None
        if not self._wait(False, t, timeout is not None):
            raise put_timeout_error(t, self.cap)
        self._push(item)

    def put_nowait(self, item):
        """Append *item* if there is room.

        Raises:
            QueueClosed: the queue is closed.
            BufferFull: the queue is full.
        """
        if self.closed_flag:
            raise closed_put_error()
        if self.count >= self.cap:
            raise full_error(self.cap)
        self._push(item)

    # -- consumers --------------------------------------------------------------------

    def get(self, timeout=None):
        """Remove and return the oldest item, waiting while the queue is empty.

        Raises:
            QueueClosed: the queue is closed and drained (also when it closes while waiting).
            Timeout: still empty after *timeout* seconds.
        """
        cdef double t = 0.0
        if timeout is not None:
            timeout = check_timeout(timeout)
            if timeout is not None:
                t = timeout
        if self.count > 0:
            return self._pop()
        if not self._wait(True, t, timeout is not None):
            raise get_timeout_error(t)
        return self._pop()

    def get_nowait(self):
        """Remove and return the oldest item if there is one.

        Raises:
            QueueEmpty: the queue is empty (and not closed).
            QueueClosed: the queue is closed and drained.
        """
        if self.count == 0:
            if self.closed_flag:
                raise closed_get_error()
            raise empty_error()
        return self._pop()

    def get_many(self, max_items, timeout=None):
        """Remove and return up to *max_items* of the oldest items, oldest first.

        Waits only while the queue is empty; then takes everything available (up to
        *max_items*) at once.  Returns ``[]`` when *timeout* passes with nothing to take
        (``timeout=0`` never waits).

        Raises:
            TypeError / ValueError: *max_items* is not an int > 0.
            QueueClosed: the queue is closed and drained.
        """
        cdef Py_ssize_t m, n, i, h
        cdef double t = 0.0
        if type(max_items) is not int or max_items <= 0:
            check_max_items(max_items)
        if max_items < self.cap:
            m = max_items
        else:
            m = self.cap
        if timeout is not None:
            timeout = check_timeout(timeout)
            if timeout is not None:
                t = timeout
        while True:
            if self.count == 0:
                if not self._wait(True, t, timeout is not None):
                    return []
            n = self.count if self.count < m else m
            # Allocating the list may run the garbage collector, hence arbitrary Python
            # code and a thread switch: check again that the n items are still there.
            out = PyList_New(n)
            if self.count >= n:
                break
        # From here on no Python code runs until the items are moved: atomic under the GIL.
        h = self.head
        for i in range(n):
            PyList_SET_ITEM(out, i, <object>self.buf[h])  # steals the slot's reference
            _incref(_NONE)
            self.buf[h] = _NONE
            h += 1
            if h == self.cap:
                h = 0
        self.head = h
        self.count -= n
        self.gets += <uint64_t>n
        if self.putters > 0:
            self._wake_putters(n)
        if self.count > 0 and self.getters > 0:
            self._wake_getters(1)
        return out

    # -- lifecycle and introspection ----------------------------------------------------

    def close(self):
        """Stop intake and wake every waiter.  Idempotent.

        After ``close()``: ``put``/``put_nowait`` raise :class:`QueueClosed`; getters take
        the remaining items and then raise :class:`QueueClosed`.
        """
        pthread_mutex_lock(&self.mutex)
        self.closed_flag = True
        self.get_seq += 1
        self.put_seq += 1
        pthread_cond_broadcast(&self.not_empty)
        pthread_cond_broadcast(&self.not_full)
        pthread_mutex_unlock(&self.mutex)

    @property
    def closed(self):
        """True once :meth:`close` was called."""
        return self.closed_flag

    @property
    def capacity(self):
        """The most items the queue holds."""
        return self.cap

    def qsize(self):
        """The number of items in the queue now."""
        return self.count

    def __len__(self):
        return self.count

    def stats(self):
        """A consistent snapshot: capacity, size now, peak size, total puts, total gets,
        threads blocked in a get / in a put now, and whether it is closed."""
        return RingStats(self.cap, self.count, self.peak, self.puts, self.gets,
                         self.getters, self.putters, self.closed_flag)

    def __repr__(self):
        state = "closed" if self.closed_flag else "open"
        return f"<RingQueue {state} {self.count}/{self.cap}>"
