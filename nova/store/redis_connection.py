"""Connecting a :class:`~nova.store.RedisStore`: the client, the URL checks, the
translation of redis-py's errors into nova's, and the check (or creation) of a
store's layout on the server.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nova.errors import StoreAuthError, StoreLayoutError, StoreUnavailable, ValidationError, type_name
from nova.store import redis_scripts as S
from nova.store.codecs import Codec, get_codec

__all__ = ("RedisConnection", "import_redis")


def import_redis() -> Any:
    """redis-py, or an ImportError naming the extra to install."""
    try:
        import redis
    except ImportError as exc:
        raise ImportError("RedisStore needs redis-py; install it with `pip install 'nova-events[redis]'`") from exc
    return redis


class RedisConnection:
    """The connection half of :class:`~nova.store.RedisStore` (a mixin: one idea per
    module; the store sets the attributes below)."""

    _redis: Any
    _client: Any
    url: str
    prefix: str
    _k_meta: str
    _k_names: str
    _k_bycode: str
    _k_last: str
    _k_evc: str
    _k_time: str
    _k_log: str

    @staticmethod
    def _safe_url(url: object) -> str:
        if not isinstance(url, str):
            raise TypeError(f"Expected url as a str, got {type_name(url)}")
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValidationError(f"Expected a redis://, rediss:// or unix:// URL, got {url!r}")
        if "@" in url:  # never echo a password
            head, tail = url.split("://", 1)
            return f"{head}://***@{tail.rsplit('@', 1)[1]}"
        return url

    def _make_client(self, url: str, timeout: float, retries: int) -> Any:
        redis = self._redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        try:
            return redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                health_check_interval=30,
            )
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"Expected a valid Redis URL, got {self.url!r} ({exc})") from exc

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn redis-py's errors into nova's."""
        redis = self._redis
        try:
            yield
        except redis.AuthenticationError as exc:
            raise StoreAuthError(f"Expected the Redis server at {self.url} to accept the credentials, got {exc}") from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if "NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text:
                raise StoreAuthError(f"Expected the Redis server at {self.url} to accept the credentials, got {text}") from exc
            if "WRONGTYPE" in text:
                raise StoreLayoutError(
                    f"Expected the keys under {{{self.prefix}}} to be a nova store's, got a key of another type "
                    f"while {what} ({text})"
                ) from exc
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"Expected the Redis server at {self.url} to answer while {what}, got {exc}") from exc

    def _open_layout(self, codec: object) -> Codec:
        """Check (or create) the store's meta hash; return the codec."""
        c = self._client
        with self._guard("opening the store"):
            kind = c.type(self._k_meta)
            if kind not in (b"none", b"hash"):
                raise StoreLayoutError(
                    f"Expected {self._k_meta!r} to be a nova store's hash, got a key of type {kind.decode()}"
                )
            chosen = get_codec("json" if codec is None else codec)
            if kind == b"none":
                p = c.pipeline(transaction=True)
                p.hsetnx(self._k_meta, "format", S.FORMAT)
                p.hsetnx(self._k_meta, "version", S.VERSION)
                p.hsetnx(self._k_meta, "codec", chosen.name)
                p.execute()
            fmt, version, recorded = c.hmget(self._k_meta, "format", "version", "codec")
            p = c.pipeline(transaction=False)
            expect = {self._k_names: b"hash", self._k_bycode: b"hash", self._k_last: b"hash", self._k_evc: b"hash",
                      self._k_time: b"zset", self._k_log: b"stream"}
            for key in expect:
                p.type(key)
            for (key, want), got in zip(expect.items(), p.execute()):
                if got not in (b"none", want):
                    raise StoreLayoutError(
                        f"Expected {key!r} to be a nova store's {want.decode()}, got a key of type {got.decode()}"
                    )
        if fmt != S.FORMAT.encode() or version is None or recorded is None:
            raise StoreLayoutError(
                f"Expected {self._k_meta!r} to be a nova store's hash, got one with format {fmt!r}"
            )
        if int(version) > S.VERSION:
            raise StoreLayoutError(
                f"Expected a store of layout version <= {S.VERSION}, got version {int(version)} under "
                f"{{{self.prefix}}} (written by a newer nova); upgrade nova to open it"
            )
        name = recorded.decode()
        if codec is None:
            if name in ("json", "msgpack"):
                return get_codec(name)
            raise StoreLayoutError(f"Expected codec= naming the codec recorded under {{{self.prefix}}}, got None for a store written with codec {name!r}")
        if chosen.name != name:
            raise StoreLayoutError(f"Expected codec {name!r} (recorded under {{{self.prefix}}}), got {chosen.name!r}")
        return chosen

