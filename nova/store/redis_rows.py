"""Turning Redis replies of a :class:`~nova.store.RedisStore` into Events and
:class:`~nova.store.EventBatch` columns.

A stream entry's fields come back as the flat list ``[b"t", ts8, b"y", type, b"i",
id, b"m", meta, (b"d", payload)]``; an index member is ``ts(8) seq(8) code(4)
pos(8)``, big-endian, the timestamp biased by 2**63.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from nova import _core

__all__ = ("TS_BIAS", "ts_bytes", "ts_of", "event_of", "RedisRows", "MEMBER_DTYPE", "msgpack_array")

_Event: Any = _core.Event
#: Added to an int64 timestamp so that its unsigned big-endian bytes sort as it does.
TS_BIAS = 1 << 63
#: The numpy layout of an index member.
MEMBER_DTYPE = np.dtype([("ts", ">u8"), ("seq", ">u8"), ("code", ">u4"), ("pos", ">u8")])
_from_bytes = int.from_bytes


def ts_bytes(ts: int) -> bytes:
    """The 8 index bytes of int ns *ts*."""
    return (ts + TS_BIAS).to_bytes(8, "big")


def ts_of(b: bytes) -> int:
    """The int ns of 8 index bytes."""
    return _from_bytes(b, "big") - TS_BIAS


_U32 = struct.Struct(">I").pack


def msgpack_array(items: list[bytes]) -> bytes:
    """*items* as one MessagePack array of str-32 values (Lua strings are bytes; the server's cmsgpack has no bin type) (what the append script
    unpacks with ``cmsgpack``)."""
    parts = [b"\xdd" + _U32(len(items))]
    add = parts.extend
    for b in items:
        add((b"\xdb" + _U32(len(b)), b))
    return b"".join(parts)


def event_of(fields: list[bytes], decode: Any) -> Any:
    """The Event of one stream entry's fields."""
    return _Event(
        fields[3].decode(),
        decode(fields[9]) if len(fields) > 8 else None,
        id=fields[5].decode(),
        timestamp=_from_bytes(fields[1], "big") - TS_BIAS,
        metadata=json.loads(fields[7]) if fields[7] else None,
    )


class RedisRows:
    """An :class:`~nova.store.EventBatch` source over the rows of a window reply:
    numeric columns decoded at once (numpy, from the index members), Events,
    payloads and metadata built on demand from the fetched fields (a snapshot:
    nothing is read from the server again)."""

    __slots__ = ("ts", "seq", "pos", "stream", "type", "_fields", "_types", "_decode")

    def __init__(self, members: list[bytes], fields: list[list[bytes]], stream_code_of: Any, decode: Any) -> None:
        n = len(members)
        arr = np.frombuffer(b"".join(members), dtype=MEMBER_DTYPE, count=n) if n else np.zeros(0, MEMBER_DTYPE)
        self.ts = (arr["ts"].astype(np.uint64) ^ np.uint64(TS_BIAS)).view(np.int64)
        self.seq = arr["seq"].astype(np.int64)
        self.pos = arr["pos"].astype(np.int64)
        self.stream = stream_code_of(arr["code"].astype(np.int64))
        tnames: dict[bytes, int] = {}
        setdefault = tnames.setdefault
        self.type = np.fromiter((setdefault(f[3], len(tnames)) for f in fields), np.int32, n)
        self._types = [t.decode() for t in tnames]
        self._fields = fields
        self._decode = decode

    @property
    def type_names(self) -> list[str]:
        return self._types

    def __len__(self) -> int:
        return len(self._fields)

    def event(self, i: int) -> Any:
        return event_of(self._fields[i], self._decode)

    def events(self, i: int = 0, j: int | None = None) -> list[Any]:
        decode = self._decode
        return [event_of(f, decode) for f in self._fields[i:j]]

    def ids(self) -> list[str]:
        return [f[5].decode() for f in self._fields]

    def data(self) -> list[Any]:
        decode = self._decode
        return [decode(f[9]) if len(f) > 8 else None for f in self._fields]

    def metadata(self) -> list[dict[str, str]]:
        return [json.loads(f[7]) if f[7] else {} for f in self._fields]
