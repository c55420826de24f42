from libc.stdint cimport int32_t, uint32_t

cdef int32_t murmur2_c(const unsigned char* data, Py_ssize_t length) noexcept nogil
