"""partition_many on fixed-width numpy 'S' arrays: the compiled kernel's vector path
(8 keys per step, full-width keys only, the w % 16 rest read past the key) against the
pure twin, over widths, trailing NULs, n, sizes that are not a multiple of 8, and
strided views."""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np
import pytest

# 49: 1.0 / 49 * 49 < 1 in doubles, so a quotient taken through a reciprocal can be one
# short at multiples of 49 and the remainder needs its correction step.
N_VALUES = [1, 3, 8, 12, 49, 64, 97, 1024, 65537, 2**31 - 1]


def _keys(rng: np.random.Generator, width: int, count: int, nul_rate: float) -> bytes:
    raw = bytearray(rng.bytes(width * count))
    for i in range(count):
        if rng.random() < nul_rate:  # strip 1..width trailing bytes
            z = int(rng.integers(1, width + 1))
            raw[(i + 1) * width - z : (i + 1) * width] = bytes(z)
    return bytes(raw)


@pytest.mark.parametrize("width", range(1, 71))
def test_fixed_width_matches_pure(core_pair, width):
    c, py = core_pair
    rng = np.random.default_rng(width)
    for count, nul_rate in ((8, 0.0), (45, 0.0), (77, 0.2), (19, 0.6)):
        raw = _keys(rng, width, count, nul_rate)
        arr = np.frombuffer(raw, dtype=f"S{width}")
        strided = np.frombuffer(raw + raw, dtype=f"S{width}")[::2]
        for n in N_VALUES:
            assert c.partition_many(arr, n).tolist() == py.partition_many(arr, n).tolist()
            assert c.partition_many(arr[3:], n).tolist() == py.partition_many(arr[3:], n).tolist()
        assert c.partition_many(strided, 97).tolist() == py.partition_many(strided, 97).tolist()


def test_fixed_width_modulo_many_n(core_pair):
    c, py = core_pair
    rng = np.random.default_rng(1)
    arr = np.frombuffer(rng.bytes(16 * 4003), dtype="S16")
    for n in [int(x) for x in rng.integers(1, 2**31, 40)] + [2**k for k in range(31)] + [49, 98]:
        assert c.partition_many(arr, n).tolist() == py.partition_many(arr, n).tolist()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect via ctypes")
def test_fixed_width_no_read_past_the_array(core_pair):
    """Arrays that end right before an unreadable page: a read past the data crashes."""
    c, py = core_pair
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 4 * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    data = np.frombuffer(buf, dtype=np.uint8)
    rng = np.random.default_rng(3)
    assert libc.mprotect(base + 3 * page, page, 0) == 0  # PROT_NONE
    try:
        for width in range(1, 71):
            for count in (8, 9, 16, 31, 33, 40):
                start = 3 * page - width * count
                data[start : 3 * page] = np.frombuffer(rng.bytes(width * count), np.uint8)
                arr = np.frombuffer(buf, dtype=f"S{width}", count=count, offset=start)
                for n in (8, 12):
                    assert c.partition_many(arr, n).tolist() == py.partition_many(arr, n).tolist()
    finally:
        libc.mprotect(base + 3 * page, page, 3)  # PROT_READ | PROT_WRITE
        del arr, data
        buf.close()
