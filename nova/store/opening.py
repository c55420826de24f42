"""``nova.open_store(url)``: an event store named by a URL.

* ``memory://`` — a :class:`~nova.store.MemoryStore`;
* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
  — a :class:`~nova.store.SQLiteStore`;
* ``redis://[user:password@]host:port/db?prefix=p`` (``rediss://``, ``unix://`` too) —
  a :class:`~nova.store.RedisStore` with that key prefix (default ``nova``).

Keyword arguments go to the store's constructor.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nova.errors import ValidationError

__all__ = ("open_store",)

_SCHEMES = ("memory://", "sqlite:///", "redis://", "rediss://", "unix://")


def open_store(url: str, **options: Any) -> Any:
    """Open the event store *url* names (see the module docstring); *options* go to
    its constructor.

    Raises:
        TypeError: *url* is not a str.
        ValidationError: an unknown scheme, or options in a memory:// or sqlite:// URL.
        and whatever the store's constructor raises.
    """
    if not isinstance(url, str):
        raise TypeError(f"Expected url as a str, got {type(url).__name__}")
    if url.startswith("memory://"):
        if url != "memory://":
            raise ValidationError(f"Expected 'memory://' with nothing after it, got {url!r}")
        from nova.store.memory import MemoryStore

        return MemoryStore(**options)
    if url.startswith("sqlite:///"):
        from nova.store.sqlite import SQLiteStore

        path = url[len("sqlite:///"):]
        if not path or "?" in path:
            raise ValidationError(f"Expected 'sqlite:///<path>' (no query), got {url!r}")
        return SQLiteStore(path, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from nova.store.redis import RedisStore

        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = [v for k, v in query if k == "prefix"]
        if len(prefix) > 1:
            raise ValidationError(f"Expected at most one prefix= in the URL, got {len(prefix)}")
        if prefix:
            if "prefix" in options:
                raise ValidationError("Expected prefix in the URL or as an argument, got both")
            options["prefix"] = prefix[0]
        rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
        return RedisStore(rest, **options)
    raise ValidationError(f"Expected a store URL starting with one of {_SCHEMES}, got {url!r}")
