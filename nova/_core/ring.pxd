cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass


@cython.final
@cython.no_gc_clear
cdef class RingQueue:
    # The slots live in a private list (so the garbage collector sees the items, via
    # the list); ``buf`` points at its item array.  An empty slot holds None.
    cdef list slots
    cdef PyObject** buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t head
    cdef Py_ssize_t count
    cdef Py_ssize_t peak
    cdef uint64_t puts
    cdef uint64_t gets
    # Threads registered as waiting (read and written with the GIL held).
    cdef Py_ssize_t getters
    cdef Py_ssize_t putters
    # Wake-up sequences, bumped with the GIL *and* the mutex held; waiters compare them
    # under the mutex alone, so a wake-up between "check" and "wait" is never lost.
    cdef uint64_t get_seq
    cdef uint64_t put_seq
    cdef bint closed_flag
    cdef bint sync_ready
    cdef pthread_mutex_t mutex
    cdef pthread_cond_t not_empty
    cdef pthread_cond_t not_full
    cdef object __weakref__

    cdef int _push(self, object item) except -1
    cdef object _pop(self)
    cdef int _wake_getters(self, Py_ssize_t n) except -1
    cdef int _wake_putters(self, Py_ssize_t n) except -1
    cdef int _wait(self, bint getter, double timeout, bint has_timeout) except -1
    cdef int _init_sync(self) except -1
