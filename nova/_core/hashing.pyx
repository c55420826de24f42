# cython: freethreading_compatible = False
"""Kafka-compatible murmur2 partition hashing (compiled kernel).

Same names, results and exceptions as ``hashing_py`` (the specification).
``partition_many`` gathers key pointers while holding the GIL from objects it owns
references to (a private copy of a caller's list; the array itself for numpy input),
then hashes with the GIL released: nothing another thread does to the caller's list
meanwhile can free or move the bytes being hashed.
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
    static void nova_hash_fixed_scalar(const unsigned char* buf, Py_ssize_t count,
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

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
        (!defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    #define NOVA_HAVE_AVX2_PATH 1
    #include <immintrin.h>

    /* AVX2 kernel for contiguous arrays (stride == itemsize), one 32-bit lane per key,
       8 keys per group. Each key's 16-byte chunks are read with 128-bit loads (keys i
       and i+4 share a ymm) and a 4x4 transpose within each 128-bit lane yields four ymm,
       ymm j holding word j of the 8 keys in input order. murmur2 runs on them with
       vpmulld (exact uint32 multiply). The w % 16 rest is read with one more 16-byte
       load per key that may run into the next key (those bytes are masked off or
       unused); a group takes the SIMD path only if that load stays inside the array
       data. The SIMD result assumes full-width keys: lanes whose key ends in NUL (so
       numpy strips it) are recomputed with the scalar code. Several groups are hashed
       per step so their serial multiply chains (h = h * m ^ k) overlap. */
    #define NOVA_MM_STEP(h, kin, mv) do {                                   \
            __m256i k_ = _mm256_mullo_epi32((kin), (mv));                   \
            k_ = _mm256_xor_si256(k_, _mm256_srli_epi32(k_, 24));           \
            k_ = _mm256_mullo_epi32(k_, (mv));                              \
            (h) = _mm256_xor_si256(_mm256_mullo_epi32((h), (mv)), k_);      \
        } while (0)

    #define NOVA_MM_LOAD_PAIR(p, a, b) _mm256_inserti128_si256(                   \
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)((p) + (a)))), \
            _mm_loadu_si128((const __m128i*)((p) + (b))), 1)

    /* W0..W3 = words 0..3 of the 16 bytes at offset off of the 8 keys at p. */
    #define NOVA_MM_LOAD8(W0, W1, W2, W3, p, w, off) do {                          \
            __m256i r0_ = NOVA_MM_LOAD_PAIR(p, (off), 4 * (w) + (off));            \
            __m256i r1_ = NOVA_MM_LOAD_PAIR(p, (w) + (off), 5 * (w) + (off));      \
            __m256i r2_ = NOVA_MM_LOAD_PAIR(p, 2 * (w) + (off), 6 * (w) + (off));  \
            __m256i r3_ = NOVA_MM_LOAD_PAIR(p, 3 * (w) + (off), 7 * (w) + (off));  \
            __m256i t0_ = _mm256_unpacklo_epi32(r0_, r1_);                         \
            __m256i t1_ = _mm256_unpackhi_epi32(r0_, r1_);                         \
            __m256i t2_ = _mm256_unpacklo_epi32(r2_, r3_);                         \
            __m256i t3_ = _mm256_unpackhi_epi32(r2_, r3_);                         \
            W0 = _mm256_unpacklo_epi64(t0_, t2_);                                  \
            W1 = _mm256_unpackhi_epi64(t0_, t2_);                                  \
            W2 = _mm256_unpacklo_epi64(t1_, t3_);                                  \
            W3 = _mm256_unpackhi_epi64(t1_, t3_);                                  \
        } while (0)

    typedef struct {
        __m256i mv, hinit, m31, nv, nm1, tmask, lbshift;
        __m256d inv;
        Py_ssize_t w, nc16, rest, rw, tb, lastidx;
        uint64_t fm;
        uint32_t parts;
        int pow2;
    } nova_avx2_ctx;

    /* Hash G (1..4, a constant after inlining) consecutive groups of 8 keys at p. */
    __attribute__((target("avx2"), always_inline))
    static inline void nova_avx2_groups(const unsigned char* p, int32_t* out, const int G,
                                        const nova_avx2_ctx* cx) {
        const __m256i mv = cx->mv;
        const Py_ssize_t w = cx->w;
        __m256i h[4];
        int nul[4] = {0, 0, 0, 0};
        Py_ssize_t c;
        int u;
    #pragma GCC unroll 4
        for (u = 0; u < G; u++) h[u] = cx->hinit;
        for (c = 0; c < cx->nc16; c++) {
    #pragma GCC unroll 4
            for (u = 0; u < G; u++) {
                __m256i W0, W1, W2, W3;
                NOVA_MM_LOAD8(W0, W1, W2, W3, p + (Py_ssize_t)u * 8 * w, w, c * 16);
                NOVA_MM_STEP(h[u], W0, mv);
                NOVA_MM_STEP(h[u], W1, mv);
                NOVA_MM_STEP(h[u], W2, mv);
                NOVA_MM_STEP(h[u], W3, mv);
                if (!cx->rest) {  /* the key's last byte is byte 3 of W3 */
                    __m256i z = _mm256_cmpeq_epi32(_mm256_srli_epi32(W3, 24),
                                                   _mm256_setzero_si256());
                    nul[u] = _mm256_movemask_ps(_mm256_castsi256_ps(z));
                }
            }
        }
        if (cx->rest) {
    #pragma GCC unroll 4
            for (u = 0; u < G; u++) {
                __m256i W0, W1, W2, W3, last, z;
                NOVA_MM_LOAD8(W0, W1, W2, W3, p + (Py_ssize_t)u * 8 * w, w, cx->nc16 * 16);
                last = cx->lastidx == 0 ? W0 : cx->lastidx == 1 ? W1 :
                       cx->lastidx == 2 ? W2 : W3;
                z = _mm256_and_si256(_mm256_srlv_epi32(last, cx->lbshift),
                                     _mm256_set1_epi32(0xff));
                z = _mm256_cmpeq_epi32(z, _mm256_setzero_si256());
                nul[u] = _mm256_movemask_ps(_mm256_castsi256_ps(z));
                if (cx->rw > 0) NOVA_MM_STEP(h[u], W0, mv);
                if (cx->rw > 1) NOVA_MM_STEP(h[u], W1, mv);
                if (cx->rw > 2) NOVA_MM_STEP(h[u], W2, mv);
                if (cx->tb) {  /* the tail word is word rw == lastidx */
                    h[u] = _mm256_xor_si256(h[u], _mm256_and_si256(last, cx->tmask));
                    h[u] = _mm256_mullo_epi32(h[u], mv);
                }
            }
        }
    #pragma GCC unroll 4
        for (u = 0; u < G; u++) {
            __m256i x = h[u];
            x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 13));
            x = _mm256_mullo_epi32(x, mv);
            x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
            x = _mm256_and_si256(x, cx->m31);
            if (cx->pow2) {
                x = _mm256_and_si256(x, cx->nm1);
            } else {
                /* x < 2^31 and n < 2^31: the double quotient x * (1/n) is within 1 of
                   x / n, so its truncation is off by at most one; one correction step
                   each way makes the remainder exact. */
                __m128i qlo = _mm256_cvttpd_epi32(_mm256_mul_pd(
                    _mm256_cvtepi32_pd(_mm256_castsi256_si128(x)), cx->inv));
                __m128i qhi = _mm256_cvttpd_epi32(_mm256_mul_pd(
                    _mm256_cvtepi32_pd(_mm256_extracti128_si256(x, 1)), cx->inv));
                __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(qlo), qhi, 1);
                __m256i r = _mm256_sub_epi32(x, _mm256_mullo_epi32(q, cx->nv));
                r = _mm256_add_epi32(r, _mm256_and_si256(
                    _mm256_cmpgt_epi32(_mm256_setzero_si256(), r), cx->nv));
                r = _mm256_sub_epi32(r, _mm256_andnot_si256(_mm256_cmpgt_epi32(cx->nv, r), cx->nv));
                x = r;
            }
            _mm256_storeu_si256((__m256i*)(out + 8 * u), x);
            if (nul[u]) {  /* keys ending in NUL: strip and hash in scalar */
                int bits = nul[u];
                while (bits) {
                    int i = __builtin_ctz(bits);
                    const unsigned char* a = p + (Py_ssize_t)(8 * u + i) * w;
                    uint32_t ha = (uint32_t)nova_murmur2(a, nova_strip(a, w)) & 0x7fffffffu;
                    out[8 * u + i] = (int32_t)nova_fastmod_u32(ha, cx->fm, cx->parts);
                    bits &= bits - 1;
                }
            }
        }
    }

    __attribute__((target("avx2")))
    static void nova_hash_fixed_avx2(const unsigned char* buf, Py_ssize_t count,
                                     Py_ssize_t w, uint32_t parts, int32_t* out) {
        nova_avx2_ctx cx;
        Py_ssize_t g = 0, lastbyte;
        const Py_ssize_t total = count * w;
        cx.w = w;
        cx.nc16 = w >> 4;
        cx.rest = w & 15;
        cx.rw = cx.rest >> 2;
        cx.tb = cx.rest & 3;
        lastbyte = cx.rest ? cx.rest - 1 : 15;  /* in the last 16-byte load */
        cx.lastidx = lastbyte >> 2;
        cx.lbshift = _mm256_set1_epi32((int)(8 * (lastbyte & 3)));
        cx.mv = _mm256_set1_epi32((int)0x5bd1e995u);
        cx.hinit = _mm256_set1_epi32((int)(0x9747b28cu ^ (uint32_t)w));
        cx.m31 = _mm256_set1_epi32(0x7fffffff);
        cx.nv = _mm256_set1_epi32((int)parts);
        cx.nm1 = _mm256_set1_epi32((int)(parts - 1));
        cx.tmask = _mm256_set1_epi32((int)((1u << (8 * cx.tb)) - 1u));
        cx.inv = _mm256_set1_pd(1.0 / (double)parts);
        cx.fm = UINT64_C(0xFFFFFFFFFFFFFFFF) / parts + 1;
        cx.parts = parts;
        cx.pow2 = (parts & (parts - 1)) == 0;
        /* A group starting at key g may read up to byte (g + 7) * w + nc16 * 16 + 16. */
    #define NOVA_GROUP_OK(g) (!cx.rest || ((g) + 7) * w + cx.nc16 * 16 + 16 <= total)
        for (; g + 32 <= count && NOVA_GROUP_OK(g + 24); g += 32)
            nova_avx2_groups(buf + g * w, out + g, 4, &cx);
        for (; g + 8 <= count && NOVA_GROUP_OK(g); g += 8)
            nova_avx2_groups(buf + g * w, out + g, 1, &cx);
    #undef NOVA_GROUP_OK
        if (g < count)
            nova_hash_fixed_scalar(buf + g * w, count - g, w, w, parts, out + g);
    }

    static int nova_avx2_state = -1;
    static int nova_has_avx2(void) {
        if (nova_avx2_state < 0) {
            __builtin_cpu_init();
            nova_avx2_state = __builtin_cpu_supports("avx2") ? 1 : 0;
        }
        return nova_avx2_state;
    }
    #endif

    static void nova_hash_fixed(const unsigned char* buf, Py_ssize_t count,
                                Py_ssize_t itemsize, Py_ssize_t stride,
                                uint32_t parts, int32_t* out) {
    #ifdef NOVA_HAVE_AVX2_PATH
        if (stride == itemsize && itemsize >= 1 && count >= 8 && nova_has_avx2()) {
            nova_hash_fixed_avx2(buf, count, itemsize, parts, out);
            return;
        }
    #endif
        nova_hash_fixed_scalar(buf, count, itemsize, stride, parts, out);
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
        # A private copy (owned references): another thread may clear or shrink the
        # caller's list, freeing its keys, while we hash without the GIL.
        key_list = list(<list>keys)
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
    # Phase 1 (GIL held): gather pointers.  key_list is ours (a copy, or the list
    # built from an array or iterable): no other thread can drop a key from it, so
    # every pointer stays valid while phase 2 runs without the GIL.
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
