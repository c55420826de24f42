"""``nova.open_store(url)``: an event store named by a URL.

* ``memory://`` — a :class:`~nova.store.MemoryStore` (tests, demos);
* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite:///:memory:`` — a :class:`~nova.store.SQLiteStore` (SQLAlchemy's
  convention: three slashes then the path); ``?durability=full`` and ``?codec=msgpack``
  may follow;
* ``redis://[user:password@]host:port/db?prefix=p`` (``rediss://``, and
  ``unix:///path/redis.sock?db=0&prefix=p`` too) — a
  :class:`~nova.store.RedisStore` with that key prefix (default ``nova``), imported
  only when such a URL is opened.

Keyword arguments go to the store's constructor.  The ``nova`` command takes the same
URLs.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from nova.errors import ValidationError, type_name

__all__ = ("open_store", "StoreURL", "parse_store_url", "SCHEMES")

#: The URL schemes :func:`open_store` understands.
SCHEMES = ("memory://", "sqlite:///", "redis://", "rediss://", "unix://")
_SQLITE_OPTIONS = ("durability", "codec")


class StoreURL(NamedTuple):
    """A parsed store URL: ``kind`` (``"memory"``, ``"sqlite"`` or ``"redis"``),
    ``target`` (the SQLite path, the Redis URL without ``prefix``, ``""`` for memory)
    and ``options`` (constructor arguments given in the query string)."""

    kind: str
    target: str
    options: dict[str, str]


def parse_store_url(url: str) -> StoreURL:
    """Split a store URL into what :func:`open_store` needs, opening nothing (the
    ``nova`` command uses it to refuse a SQLite path that does not exist).

    Raises:
        TypeError: *url* is not a str.
        ValidationError: an unknown scheme, an empty path, or an unknown option.
    """
    if not isinstance(url, str):
        raise TypeError(f"Expected url as a str, got {type_name(url)}")
    if url.startswith("memory://"):
        if url != "memory://":
            raise ValidationError(f"Expected 'memory://' with nothing after it, got {url!r}")
        return StoreURL("memory", "", {})
    if url.startswith("sqlite:///"):
        path, _, query = url[len("sqlite:///"):].partition("?")
        if not path:
            raise ValidationError(f"Expected 'sqlite:///<path>' with a path, got {url!r}")
        try:
            options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        except ValueError:
            raise ValidationError(f"Expected sqlite URL options as ?name=value&..., got {url!r}") from None
        unknown = sorted(set(options) - set(_SQLITE_OPTIONS))
        if unknown:
            raise ValidationError(
                f"Expected sqlite URL options among {_SQLITE_OPTIONS}, got {', '.join(map(repr, unknown))} in {url!r}"
            )
        return StoreURL("sqlite", path, options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        parts = urlsplit(str(url))
        if parts.scheme == "unix" and not parts.path:
            raise ValidationError(f"Expected 'unix:///path/to/redis.sock', got {url!r} (no socket path)")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValidationError(f"Expected 'redis://host:port/db', got {url!r} (no host)")
        pairs = parse_qsl(str(parts.query), keep_blank_values=True)
        prefix = [v for k, v in pairs if k == "prefix"]
        if len(prefix) > 1:
            raise ValidationError(f"Expected at most one prefix= in the URL, got {len(prefix)} in {url!r}")
        kept = urlencode([(k, v) for k, v in pairs if k != "prefix"])
        rest = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{kept}" if kept else "")
        return StoreURL("redis", rest, {"prefix": prefix[0]} if prefix else {})
    shown = url if len(url) <= 80 else url[:77] + "..."
    raise ValidationError(f"Expected a store URL starting with one of {', '.join(SCHEMES)}, got {shown!r}")


def open_store(url: str, **options: Any) -> Any:
    """Open the event store *url* names (see the module docstring); *options* go to
    its constructor (an option both in the URL and here is an error).

    Example::

        with nova.open_store("sqlite:///audit.db") as store:
            batch = store.window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")

    Raises:
        TypeError: *url* is not a str.
        ValidationError: an unknown scheme, a malformed URL, an option given twice.
        ImportError: a ``redis://`` URL without redis-py (the message names
            ``nova-events[redis]``).
        Exception: whatever the store's constructor raises
            (:class:`~nova.errors.StoreFileError` for a file that is not a nova
            store, ...).
    """
    parsed = parse_store_url(url)
    both = sorted(set(parsed.options) & set(options))
    if both:
        raise ValidationError(f"Expected {', '.join(both)} in the URL or as an argument, got both")
    kwargs: dict[str, Any] = {**parsed.options, **options}
    if parsed.kind == "memory":
        from nova.store.memory import MemoryStore

        return MemoryStore(**kwargs)
    if parsed.kind == "sqlite":
        from nova.store.sqlite import SQLiteStore

        return SQLiteStore(parsed.target, **kwargs)
    from nova.store.redis import RedisStore  # needs redis-py only when a store is made

    return RedisStore(parsed.target, **kwargs)
