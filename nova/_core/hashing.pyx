# cython: freethreading_compatible = False
"""Kafka-compatible murmur2 partition hashing (compiled kernel).

Same names, results and exceptions as ``hashing_py`` (the specification).
``partition_many`` gathers key pointers while holding the GIL, then hashes with the
GIL released.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

import numpy as np

cimport numpy as cnp

cnp.import_array()

__all__ = ("murmur2", "partition_for", "partition_many")

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


cdef extern from *:
    """
    #include <string.h>
    /* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) on uint32 math. */
    static inline int32_t nova_murmur2(const unsigned char* data, Py_ssize_t length) {
        const uint32_t m = 0x5bd1e995u;
        uint32_t h = 0x9747b28cu ^ (uint32_t)length;
        Py_ssize_t n4 = length & ~(Py_ssize_t)3;
        Py_ssize_t i;
        for (i = 0; i < n4; i += 4) {
            uint32_t k;
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            memcpy(&k, data + i, 4);
    #else
            k = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24);
    #endif
            k *= m;
            k ^= k >> 24;
            k *= m;
            h *= m;
            h ^= k;
        }
        switch (length & 3) {
            case 3: h ^= (uint32_t)data[n4 + 2] << 16;  /* fall through */
            case 2: h ^= (uint32_t)data[n4 + 1] << 8;   /* fall through */
            case 1: h ^= (uint32_t)data[n4];
                    h *= m;
        }
        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return (int32_t)h;
    }
    """
    int32_t nova_murmur2(const unsigned char* data, Py_ssize_t length) noexcept nogil


cdef inline int32_t murmur2_c(const unsigned char* data, Py_ssize_t length) noexcept nogil:
    return nova_murmur2(data, length)


cdef inline int _key_ptr(object key, const unsigned char** ptr, Py_ssize_t* size) except -1:
    """Point *ptr*/*size* at the bytes of *key* (borrowed from the object)."""
    if type(key) is bytes:
        ptr[0] = <const unsigned char*>PyBytes_AS_STRING(key)
        size[0] = PyBytes_GET_SIZE(key)
        return 0
    if isinstance(key, str):
        ptr[0] = <const unsigned char*>PyUnicode_AsUTF8AndSize(key, size)
        return 0
    if isinstance(key, bytes):
        ptr[0] = <const unsigned char*>PyBytes_AS_STRING(key)
        size[0] = PyBytes_GET_SIZE(key)
        return 0
    if isinstance(key, bytearray):
        ptr[0] = <const unsigned char*>PyByteArray_AS_STRING(key)
        size[0] = PyByteArray_GET_SIZE(key)
        return 0
    raise TypeError(f"Expected a bytes or str key, got {type(key).__name__}")


cdef inline int32_t _check_n(object n) except -1:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"Expected an int number of partitions, got {type(n).__name__}")
    cdef object v = int(n)
    if v <= 0:
        raise ValueError(f"Expected a number of partitions >= 1, got {v}")
    if v > 0x7FFFFFFF:
        raise ValueError(f"Expected a number of partitions <= 2147483647, got {v}")
    return <int32_t>v


def murmur2(key):
    """murmur2(key) -> int

    Return Kafka's murmur2 hash of *key* as a signed 32-bit int.

    Raises:
        TypeError: *key* is neither ``bytes`` nor ``str``.
    """
    cdef const unsigned char* p
    cdef Py_ssize_t size
    if isinstance(key, memoryview):
        key = bytes(key)
    _key_ptr(key, &p, &size)
    return murmur2_c(p, size)


def partition_for(key, n):
    """partition_for(key, n) -> int

    Return the partition (0 <= p < n) Kafka's default partitioner assigns *key*:
    ``(murmur2(key) & 0x7fffffff) % n``.

    Raises:
        TypeError: *key* is not ``bytes``/``str`` or *n* is not an int.
        ValueError: *n* <= 0.
    """
    cdef const unsigned char* p
    cdef Py_ssize_t size
    cdef int32_t parts
    if type(n) is int and 0 < <object>n <= 0x7FFFFFFF:
        parts = n
    else:
        parts = _check_n(n)
    if type(key) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(key)
        size = PyBytes_GET_SIZE(key)
    else:
        if isinstance(key, memoryview):
            key = bytes(key)
        _key_ptr(key, &p, &size)
    return (<uint32_t>murmur2_c(p, size) & 0x7FFFFFFF) % <uint32_t>parts


cdef extern from *:
    """
    /* Lemire's fastmod: a % d for 32-bit a, d > 0, with M = UINT64_MAX / d + 1. */
    static inline uint32_t nova_fastmod_u32(uint32_t a, uint64_t M, uint32_t d) {
        uint64_t lowbits = M * a;
        return (uint32_t)(((__uint128_t)lowbits * d) >> 64);
    }
    """
    uint32_t nova_fastmod_u32(uint32_t a, uint64_t M, uint32_t d) noexcept nogil


cdef inline uint64_t _fastmod_m(uint32_t d) noexcept nogil:
    return (<uint64_t>0xFFFFFFFFFFFFFFFF) // d + 1


cdef extern from *:
    """
    /* Fixed-width keys (numpy 'S' arrays): trailing NULs are stripped, as numpy does.
       Two keys per iteration so the CPU overlaps their multiply chains. */
    static inline Py_ssize_t nova_strip(const unsigned char* item, Py_ssize_t len) {
        while (len > 0 && item[len - 1] == 0) len--;
        return len;
    }
    static void nova_hash_fixed(const unsigned char* buf, Py_ssize_t count,
                                Py_ssize_t itemsize, Py_ssize_t stride,
                                uint32_t parts, int32_t* out) {
        uint64_t M = UINT64_C(0xFFFFFFFFFFFFFFFF) / parts + 1;
        Py_ssize_t i = 0;
        for (; i + 1 < count; i += 2) {
            const unsigned char* a = buf + i * stride;
            const unsigned char* b = a + stride;
            uint32_t ha = (uint32_t)nova_murmur2(a, nova_strip(a, itemsize)) & 0x7fffffffu;
            uint32_t hb = (uint32_t)nova_murmur2(b, nova_strip(b, itemsize)) & 0x7fffffffu;
            out[i] = (int32_t)nova_fastmod_u32(ha, M, parts);
            out[i + 1] = (int32_t)nova_fastmod_u32(hb, M, parts);
        }
        for (; i < count; i++) {
            const unsigned char* a = buf + i * stride;
            uint32_t ha = (uint32_t)nova_murmur2(a, nova_strip(a, itemsize)) & 0x7fffffffu;
            out[i] = (int32_t)nova_fastmod_u32(ha, M, parts);
        }
    }
    """
    void nova_hash_fixed(const unsigned char* buf, Py_ssize_t count, Py_ssize_t itemsize,
                         Py_ssize_t stride, uint32_t parts, int32_t* out) noexcept nogil


cdef inline void _hash_fixed(const unsigned char* buf, Py_ssize_t count, Py_ssize_t itemsize,
                             Py_ssize_t stride, uint32_t parts, int32_t* out) noexcept nogil:
    nova_hash_fixed(buf, count, itemsize, stride, parts, out)


cdef void _hash_ptrs(const unsigned char** ptrs, const Py_ssize_t* sizes, Py_ssize_t count,
                     uint32_t parts, int32_t* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t M = _fastmod_m(parts)
    for i in range(count):
        out[i] = <int32_t>nova_fastmod_u32(<uint32_t>murmur2_c(ptrs[i], sizes[i]) & 0x7FFFFFFF, M, parts)


def partition_many(keys, n):
    """partition_many(keys, n) -> numpy.ndarray[int32]

    Return ``partition_for(k, n)`` for every key, as a numpy ``int32`` array.

    *keys* is a list (or other sequence) of ``bytes``/``str``, or a 1-d numpy array of
    dtype ``S`` (bytes; trailing NULs are stripped, as numpy does), ``U`` or object.
    Hashing runs with the GIL released.

    Raises:
        TypeError: a key is not ``bytes``/``str``, or the array dtype is not supported.
        ValueError: *n* <= 0, or the array is not 1-d.
    """
    cdef uint32_t parts = <uint32_t>_check_n(n)
    cdef cnp.ndarray arr
    cdef cnp.ndarray out
    cdef Py_ssize_t count, i
    cdef const unsigned char** ptrs
    cdef Py_ssize_t* sizes
    cdef list key_list
    cdef list holders = []
    cdef object key
    if isinstance(keys, np.ndarray):
        arr = <cnp.ndarray>keys
        if arr.ndim != 1:
            raise ValueError(f"Expected a 1-d array of keys, got {arr.ndim} dimensions")
        kind = arr.dtype.kind
        if kind == "U":
            arr = np.char.encode(arr, "utf-8")
            kind = "S"
        if kind == "S":
            count = arr.shape[0]
            out = np.empty(count, dtype=np.int32)
            if count == 0:
                return out
            with nogil:
                _hash_fixed(<const unsigned char*>cnp.PyArray_DATA(arr), count,
                            cnp.PyArray_ITEMSIZE(arr), cnp.PyArray_STRIDE(arr, 0),
                            parts, <int32_t*>cnp.PyArray_DATA(out))
            return out
        if kind != "O":
            raise TypeError(
                f"Expected a numpy array of dtype 'S' (bytes), 'U' or object, got dtype {arr.dtype}"
            )
        key_list = arr.tolist()
    elif isinstance(keys, list):
        key_list = <list>keys
    elif isinstance(keys, (str, bytes)):
        raise TypeError(f"Expected a sequence of keys, got a single {type(keys).__name__} key")
    else:
        try:
            key_list = list(keys)
        except TypeError:
            raise TypeError(
                f"Expected a list of bytes/str keys or a numpy bytes array, got {type(keys).__name__}"
            ) from None
    count = PyList_GET_SIZE(key_list)
    out = np.empty(count, dtype=np.int32)
    if count == 0:
        return out
    # Phase 1 (GIL held): gather pointers; key_list keeps every key alive.
    ptrs = <const unsigned char**>PyMem_Malloc(count * sizeof(const unsigned char*))
    sizes = <Py_ssize_t*>PyMem_Malloc(count * sizeof(Py_ssize_t))
    try:
        if ptrs == NULL or sizes == NULL:
            raise MemoryError()
        for i in range(count):
            key = <object>PyList_GET_ITEM(key_list, i)
            if type(key) is not bytes and isinstance(key, (bytearray, memoryview)):
                key = bytes(key)  # a private copy: nothing can resize it while we hash
                holders.append(key)
            _key_ptr(key, &ptrs[i], &sizes[i])
        # Phase 2 (GIL released): hash.
        with nogil:
            _hash_ptrs(ptrs, sizes, count, parts, <int32_t*>cnp.PyArray_DATA(out))
    finally:
        PyMem_Free(ptrs)
        PyMem_Free(sizes)
    return out
