"""Kafka-compatible murmur2 partition hashing (pure-Python twin, the specification).

``murmur2`` is bit-exact with Kafka's Java ``org.apache.kafka.common.utils.Utils.murmur2``,
so ``partition_for(key, n)`` returns the partition Kafka's default partitioner picks
for a keyed record: ``(murmur2(key) & 0x7fffffff) % n``.

``str`` keys are encoded as UTF-8 (as Kafka's ``StringSerializer`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ("murmur2", "partition_for", "partition_many")

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"Expected a bytes or str key, got {type(key).__name__}")


def _murmur2_bytes(data: bytes) -> int:
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def murmur2(key: bytes | str) -> int:
    """Return Kafka's murmur2 hash of *key* as a signed 32-bit int.

    Raises:
        TypeError: *key* is neither ``bytes`` nor ``str``.
    """
    return _murmur2_bytes(_key_bytes(key))


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"Expected an int number of partitions, got {type(n).__name__}")
    n = int(n)
    if n <= 0:
        raise ValueError(f"Expected a number of partitions >= 1, got {n}")
    if n > 0x7FFFFFFF:
        raise ValueError(f"Expected a number of partitions <= 2147483647, got {n}")
    return n


def partition_for(key: bytes | str, n: int) -> int:
    """Return the partition (0 <= p < n) Kafka's default partitioner assigns *key*.

    Raises:
        TypeError: *key* is not ``bytes``/``str`` or *n* is not an int.
        ValueError: *n* <= 0.
    """
    n = _check_n(n)
    return (_murmur2_bytes(_key_bytes(key)) & 0x7FFFFFFF) % n


def _as_key_list(keys: Any) -> list[bytes]:
    if isinstance(keys, np.ndarray):
        if keys.ndim != 1:
            raise ValueError(f"Expected a 1-d array of keys, got {keys.ndim} dimensions")
        kind = keys.dtype.kind
        if kind == "S":
            as_list: list[bytes] = keys.tolist()  # numpy strips trailing NULs, as documented
            return as_list
        if kind == "U":
            return [k.encode("utf-8") for k in keys.tolist()]
        if kind == "O":
            return [_key_bytes(k) for k in keys.tolist()]
        raise TypeError(
            f"Expected a numpy array of dtype 'S' (bytes), 'U' or object, got dtype {keys.dtype}"
        )
    if isinstance(keys, (str, bytes)):
        raise TypeError(f"Expected a sequence of keys, got a single {type(keys).__name__} key")
    if not isinstance(keys, Iterable):
        raise TypeError(f"Expected a list of bytes/str keys or a numpy bytes array, got {type(keys).__name__}")
    return [_key_bytes(k) for k in keys]


def partition_many(keys: Any, n: int) -> npt.NDArray[np.int32]:
    """Return ``partition_for(k, n)`` for every key, as a numpy ``int32`` array.

    *keys* is a list (or other sequence) of ``bytes``/``str``, or a 1-d numpy array of
    dtype ``S`` (bytes; trailing NULs are stripped, as numpy does), ``U`` or object.

    Raises:
        TypeError: a key is not ``bytes``/``str``, or the array dtype is not supported.
        ValueError: *n* <= 0, or the array is not 1-d.
    """
    n = _check_n(n)
    key_list = _as_key_list(keys)
    out = np.empty(len(key_list), dtype=np.int32)
    for i, k in enumerate(key_list):
        out[i] = (_murmur2_bytes(k) & 0x7FFFFFFF) % n
    return out
