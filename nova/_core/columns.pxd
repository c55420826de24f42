from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t


cdef class _Stream:
    cdef object rows
    cdef int64_t* p
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef Py_ssize_t head
    cdef int64_t last_pos
    cdef int64_t live
    cdef int64_t evicted
    cdef bint implicit

    cdef int materialize(self) except -1
    cdef int64_t row_at(self, Py_ssize_t i) noexcept
    cdef int push(self, int64_t row) except -1
    cdef int push_range(self, int64_t first, Py_ssize_t count) except -1
    cdef int set_rows(self, object rows) except -1


cdef class ColumnLog


cdef class WindowSlice:
    cdef readonly object ts
    cdef readonly object seq
    cdef readonly object pos
    cdef readonly object stream
    cdef readonly object type
    cdef Py_ssize_t _lo
    cdef object _rows
    cdef object _flags
    cdef list _objs
    cdef object _ids
    cdef list _type_names
    cdef list _auto_seq
    cdef list _auto_ms
    cdef object _node
    cdef Py_ssize_t _n
    cdef int64_t _c_lo
    cdef int64_t _c_hi
    cdef int64_t _c_ms
    cdef uint64_t _c_node

    cdef int _init(self, ColumnLog log, Py_ssize_t lo, Py_ssize_t hi, object rows) except -1
    cdef Py_ssize_t _row(self, Py_ssize_t i)
    cdef str _auto_id(self, int64_t seq)
    cdef object _id_at(self, Py_ssize_t i, Py_ssize_t row)
    cdef object _make(self, Py_ssize_t i, Py_ssize_t row)


cdef class ColumnLog:
    cdef object _ts
    cdef object _seq
    cdef object _pos
    cdef object _stream
    cdef object _type
    cdef object _flags
    cdef int64_t* _ts_p
    cdef int64_t* _seq_p
    cdef int64_t* _pos_p
    cdef int32_t* _stream_p
    cdef int32_t* _type_p
    cdef uint8_t* _flags_p
    cdef Py_ssize_t _cap
    cdef list _objs
    cdef object _ids
    cdef Py_ssize_t _n
    cdef Py_ssize_t _start
    cdef Py_ssize_t _dead
    cdef Py_ssize_t _live
    cdef int64_t _next_seq
    cdef int64_t _max_ts
    cdef bint _sorted
    cdef object _perm
    cdef object _perm_ts
    cdef Py_ssize_t _perm_n
    cdef Py_ssize_t _perm_start
    cdef Py_ssize_t _perm_rows
    cdef list _streams
    cdef list _stream_names
    cdef dict _stream_index
    cdef list _type_names
    cdef dict _type_index
    cdef object _last_type
    cdef int32_t _last_tcode
    cdef list _auto_seq
    cdef list _auto_ms
    cdef object _node
    cdef object _mutex
    cdef public bint fast
    cdef Py_ssize_t _solo
    cdef object __weakref__

    cdef _Stream _state(self, object code)
    cpdef object try_append(self, object name, object event)
    cdef int32_t _tcode(self, object name) except -1
    cdef int64_t _append1(self, Py_ssize_t c, _Stream st, object event) except -1
    cdef int _solo_check(self, Py_ssize_t code, _Stream st) except -1
    cdef int _reserve(self, Py_ssize_t k) except -1
    cdef int _set_arrays(self, ts, seq, pos, stream, type_, flags) except -1
    cdef int _commit(self, Py_ssize_t code, _Stream st, object ts, object tc, list objs, object ids, uint8_t flag) except -1
    cdef int _ensure_index(self) except -1
    cdef tuple _range(self, object start, object end)
    cdef object _ordered_rows(self, object start, object end)
    cdef object _alive_mask(self, object rows)
    cdef object _collect(self, object index, Py_ssize_t lo, Py_ssize_t hi, object limit)
    cdef Py_ssize_t _kill(self, object rows) except -1
    cdef int _normalize(self) except -1
    cdef int _release_names(self, Py_ssize_t m) except -1
