"""Payload codecs for durable stores: how an event's ``data`` becomes bytes and back.

* ``"json"`` — the default (stdlib :mod:`json`): dicts, lists, str, int, float, bool,
  None.  Tuples come back as lists, dict keys as str.
* ``"msgpack"`` — msgspec's MessagePack (``pip install 'nova-events[msgpack]'``):
  faster and smaller than JSON, bytes payloads allowed.
* ``"pickle"`` — any picklable object, only when asked for by name.  **Unsafe for files
  you did not write**: unpickling runs code chosen by whoever wrote the file.
* any object with ``encode(obj) -> bytes`` and ``decode(bytes) -> obj`` (and,
  optionally, a ``name`` str recorded in the file).

:func:`get_codec` turns one of these into a :class:`Codec`.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

__all__ = ("Codec", "get_codec", "CODEC_NAMES")

#: The codec names :func:`get_codec` knows.
CODEC_NAMES = ("json", "msgpack", "pickle")


class Codec:
    """A named pair of functions: ``encode(obj) -> bytes`` and ``decode(bytes) -> obj``.

    :meth:`encode_many` encodes a list and reports the first payload the codec refuses
    as ``TypeError("Expected data the <name> codec can encode, got <type> at index i
    (...)")``.
    """

    __slots__ = ("name", "encode", "decode")

    def __init__(self, name: str, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode

    def encode_many(self, values: list[Any]) -> list[bytes | None]:
        """Encode every value (``None`` stays ``None``: no payload).

        Raises:
            TypeError: the codec cannot encode a value, or returned something other
                than bytes.
        """
        enc = self.encode
        out: list[bytes | None] = []
        append = out.append
        i = 0
        try:
            for i, v in enumerate(values):
                append(None if v is None else enc(v))
        except Exception as exc:
            raise TypeError(
                f"Expected data the {self.name} codec can encode, got {type(values[i]).__name__} "
                f"at index {i} ({exc})"
            ) from exc
        for i, b in enumerate(out):
            if b is not None and not isinstance(b, bytes):
                raise TypeError(f"Expected bytes from the {self.name} codec's encode(), got {type(b).__name__} at index {i}")
        return out

    def __repr__(self) -> str:
        return f"<Codec {self.name}>"


def _json_encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _json_decode(data: bytes) -> Any:
    return json.loads(data)


def _pickle_encode(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _msgpack() -> Codec:
    try:
        import msgspec  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "codec='msgpack' needs msgspec; install it with `pip install 'nova-events[msgpack]'`"
        ) from exc
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder()
    return Codec("msgpack", enc.encode, dec.decode)


def get_codec(codec: object) -> Codec:
    """The :class:`Codec` for *codec*: one of :data:`CODEC_NAMES`, a :class:`Codec`, or
    an object with ``encode``/``decode`` methods (its ``name`` attribute, when a str,
    names it; else its class name).

    Raises:
        ValueError: an unknown codec name.
        TypeError: an object without callable ``encode`` and ``decode``.
        ImportError: ``"msgpack"`` without msgspec installed (names the extra).
    """
    if isinstance(codec, Codec):
        return codec
    if isinstance(codec, str):
        if codec == "json":
            return Codec("json", _json_encode, _json_decode)
        if codec == "pickle":
            return Codec("pickle", _pickle_encode, pickle.loads)
        if codec == "msgpack":
            return _msgpack()
        raise ValueError(f"Expected a codec among {CODEC_NAMES} or an object with encode/decode, got {codec!r}")
    enc = getattr(codec, "encode", None)
    dec = getattr(codec, "decode", None)
    if not callable(enc) or not callable(dec):
        raise TypeError(
            f"Expected a codec name or an object with encode(obj) -> bytes and decode(bytes) -> obj, "
            f"got {type(codec).__name__}"
        )
    name = getattr(codec, "name", None)
    return Codec(name if isinstance(name, str) and name else type(codec).__name__, enc, dec)
