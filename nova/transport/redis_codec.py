"""How a :class:`~nova.transport.redis.RedisTransport` stores an event in a stream entry.

One field, ``e``: a JSON header ``[id, type, timestamp, metadata, has_data]``, a NUL
byte, then the payload encoded by the transport's codec (:mod:`nova.store.codecs`,
``"json"`` by default).  JSON is decoded with msgspec when it is installed (the
``msgpack`` extra), else with the standard library: the same values either way.  JSON never contains a raw NUL (control characters are
escaped), so the first NUL ends the header.  One field keeps a publish to one
``XADD key 0-* e <bytes>`` (redis-py's cost is per argument).

.. versionadded:: 0.3
"""

from __future__ import annotations

import json
from typing import Any

from nova import _core
from nova.store.codecs import Codec, _json_decode

__all__ = ("EntryCodec",)

_Event: Any = _core.Event
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads: Any = json.loads
try:  # the same JSON, decoded about 3x faster (benchmark: ratio_bus_redis.py "one consumer")
    import msgspec  # type: ignore[import-not-found, unused-ignore]

    _loads = msgspec.json.Decoder().decode
except ImportError:  # pragma: no cover - msgspec is an optional extra
    pass


class EntryCodec:
    """Encode an Event to the bytes of field ``e`` and back, with payload codec *codec*."""

    __slots__ = ("codec", "_enc", "_dec")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._enc = codec.encode
        # nova's "json" codec writes standard JSON (no NaN): any JSON decoder reads it
        self._dec = _loads if codec.decode is _json_decode else codec.decode

    def encode(self, ev: Any) -> bytes:
        """The entry bytes of *ev*.

        Raises:
            TypeError: the codec cannot encode ``ev.data``.
        """
        data = ev.data
        meta = ev.metadata
        head = _dumps([ev.id, ev.type, ev.timestamp, meta if meta else None, data is not None]).encode()
        if data is None:
            return head + b"\x00"
        try:
            body = self._enc(data)
        except Exception as exc:
            raise TypeError(
                f"Expected event data the {self.codec.name} codec can encode, got {type(data).__name__} ({exc})"
            ) from exc
        if not isinstance(body, bytes):
            raise TypeError(f"Expected bytes from the {self.codec.name} codec's encode(), got {type(body).__name__}")
        return head + b"\x00" + body

    def decode(self, raw: bytes) -> Any:
        """The Event of entry bytes *raw*."""
        head, _, body = raw.partition(b"\x00")
        eid, etype, ts, meta, has = _loads(head)
        return _Event(etype, self._dec(body) if has else None, id=eid, timestamp=ts, metadata=meta)
