"""The hashing kernel: Kafka murmur2, partition_for, partition_many (both twins)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
PARTITION_VECTORS = {b"": 681, b"a": 524, b"123456789": 566}


@pytest.mark.parametrize("key,expected", list(KAFKA_VECTORS.items()), ids=str)
def test_kafka_vectors(core, key, expected):
    assert core.murmur2(key) == expected
    raw = key.encode() if isinstance(key, str) else key
    assert core.murmur2(raw) == expected
    assert core.murmur2(bytearray(raw)) == expected


@pytest.mark.parametrize("key,expected", list(PARTITION_VECTORS.items()), ids=repr)
def test_partition_vectors_1000(core, key, expected):
    assert core.partition_for(key, 1000) == expected
    assert core.partition_many([key], 1000).tolist() == [expected]


def test_str_keys_are_utf8(core):
    key = "ключ-🔑"
    assert core.murmur2(key) == core.murmur2(key.encode("utf-8"))
    assert core.partition_for(key, 7) == core.partition_for(key.encode("utf-8"), 7)


def test_result_is_signed_32_bit(core):
    values = [core.murmur2(f"k{i}") for i in range(2000)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)


def test_partition_for_range(core):
    for n in (1, 2, 3, 8, 1000, 2**31 - 1):
        for i in range(200):
            p = core.partition_for(f"key-{i}", n)
            assert 0 <= p < n
    assert core.partition_for("x", np.int64(8)) == core.partition_for("x", 8)


@pytest.mark.parametrize("n", [0, -1, -100])
def test_bad_partition_count(core, n):
    with pytest.raises(ValueError, match="partitions >= 1"):
        core.partition_for(b"k", n)
    with pytest.raises(ValueError, match="partitions >= 1"):
        core.partition_many([b"k"], n)


@pytest.mark.parametrize("n", [1.5, "8", None, True])
def test_bad_partition_type(core, n):
    with pytest.raises(TypeError, match="int number of partitions"):
        core.partition_for(b"k", n)
    with pytest.raises(TypeError, match="int number of partitions"):
        core.partition_many([b"k"], n)


def test_too_many_partitions(core):
    with pytest.raises(ValueError, match="<= 2147483647"):
        core.partition_for(b"k", 2**31)


@pytest.mark.parametrize("key", [1, 1.0, None, object(), [b"a"]])
def test_bad_key_type(core, key):
    with pytest.raises(TypeError, match="Expected a bytes or str key, got"):
        core.murmur2(key)
    with pytest.raises(TypeError, match="Expected a bytes or str key, got"):
        core.partition_for(key, 4)


def test_partition_many_list_matches_scalar(core):
    keys = [f"user-{i}" for i in range(500)] + [bytes([i % 256]) * (i % 37) for i in range(500)]
    out = core.partition_many(keys, 12)
    assert out.dtype == np.int32
    assert out.tolist() == [core.partition_for(k, 12) for k in keys]


def test_partition_many_numpy_bytes(core):
    keys = [b"a", b"bc", b"def", b"", b"0123456789abcdef"]
    arr = np.array(keys, dtype="S16")
    assert core.partition_many(arr, 5).tolist() == [core.partition_for(k, 5) for k in keys]
    # non-contiguous (strided) view
    view = arr[::2]
    assert core.partition_many(view, 5).tolist() == [core.partition_for(k, 5) for k in keys[::2]]
    # trailing NULs are stripped, as numpy does when it hands the items back
    padded = np.array([b"ab\x00"], dtype="S3")
    assert padded.tolist() == [b"ab"]
    assert core.partition_many(padded, 97).tolist() == [core.partition_for(b"ab", 97)]


def test_partition_many_unicode_and_object_arrays(core):
    keys = ["α", "beta", "", "γδ"]
    expected = [core.partition_for(k, 9) for k in keys]
    assert core.partition_many(np.array(keys), 9).tolist() == expected
    assert core.partition_many(np.array(keys, dtype=object), 9).tolist() == expected
    assert core.partition_many(tuple(keys), 9).tolist() == expected
    assert core.partition_many(iter(keys), 9).tolist() == expected


def test_partition_many_empty(core):
    for empty in ([], np.array([], dtype="S4")):
        out = core.partition_many(empty, 3)
        assert out.dtype == np.int32 and out.shape == (0,)


def test_partition_many_bad_inputs(core):
    with pytest.raises(TypeError, match="dtype"):
        core.partition_many(np.arange(4), 3)
    with pytest.raises(TypeError, match="dtype"):
        core.partition_many(np.zeros(3, dtype=np.float64), 3)
    with pytest.raises(ValueError, match="1-d"):
        core.partition_many(np.array([[b"a"]], dtype="S1"), 3)
    with pytest.raises(TypeError, match="single bytes key"):
        core.partition_many(b"abc", 3)
    with pytest.raises(TypeError, match="single str key"):
        core.partition_many("abc", 3)
    with pytest.raises(TypeError, match="Expected a bytes or str key, got int"):
        core.partition_many([b"a", 5], 3)
    with pytest.raises(TypeError, match="Expected a bytes or str key, got NoneType"):
        core.partition_many(np.array([b"a", None], dtype=object), 3)
    with pytest.raises(TypeError, match="Expected a list"):
        core.partition_many(42, 3)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=80))
def test_differential_murmur2_bytes(core_pair, key):
    c, py = core_pair
    assert c.murmur2(key) == py.murmur2(key)


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=40), n=st.integers(1, 2**31 - 1))
def test_differential_partition_for_str(core_pair, key, n):
    c, py = core_pair
    assert c.partition_for(key, n) == py.partition_for(key, n)


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.binary(max_size=24), max_size=40), n=st.integers(1, 1000))
def test_differential_partition_many(core_pair, keys, n):
    c, py = core_pair
    assert c.partition_many(keys, n).tolist() == py.partition_many(keys, n).tolist()
    width = max((len(k) for k in keys), default=1) or 1
    arr = np.array(keys, dtype=f"S{width}")
    assert c.partition_many(arr, n).tolist() == py.partition_many(arr, n).tolist()
