"""Appending to a :class:`~nova.store.RedisStore`: checking and encoding the events,
running the append script until its outcome is known, and making appenders wait for
this process's blocking subscribers.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import os
import threading
import weakref
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nova import _core
from nova._core._columns_common import _ids_list, _objects_list, _types_list
from nova._core.timeconv import timestamps_array
from nova.store.args import check_stream, events_seq, is_system
from nova.errors import StoreLayoutError, StoreUnavailable, StreamFull, ValidationError, type_name
from nova.events import Event
from nova.store import redis_scripts as S
from nova.store.redis_rows import msgpack_array, ts_bytes

__all__ = ("Appends",)

_TOKEN_TTL = 86_400  # seconds a store object's token ring lives after it was refreshed
_TTL = b"%d" % _TOKEN_TTL
_RING = 1024
_CoreEvent: Any = _core.Event


_packer: Any = None


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    """One command in RESP, as send_packed_command takes it (hiredis, the required
    client parser, packs it in C)."""
    global _packer
    if _packer is None:
        import hiredis

        _packer = hiredis.pack_command
    return [_packer(args)]


def _check_name(stream: object) -> str:
    check_stream(stream)  # the one stream-name check every store uses
    return stream  # type: ignore[return-value]


class Appends:
    """The append half of :class:`~nova.store.RedisStore` (a mixin; the store sets the
    attributes below)."""

    _redis: Any
    url: str
    prefix: str
    codec: Any
    _cfg: list[bytes]
    _append_keys: list[bytes]
    _k_stream_b: bytes
    _k_tok_b: bytes
    _k_meta: str
    _k_names: str
    _k_last: str
    _tokens: Any
    _token_lock: threading.Lock
    _append_client: Any
    _retries: int
    _outcome_timeout: float
    _limit: int | None
    _max_streams: int | None
    _block_subs: Any
    _cond: threading.Condition
    _blocked: int
    _s_append: Any
    _s_append_one: Any
    _one_keys: list[bytes]
    _one_local: threading.local
    _one_conns: weakref.WeakSet[Any]
    _closed: bool
    _s_heads: Any

    if TYPE_CHECKING:  # provided by RedisConnection and RedisStore

        def _guard(self, what: str) -> Any: ...

        def _check_open(self) -> None: ...

    def append(self, stream: str, *events: Any) -> int:
        """Append *events* to *stream* (one Lua script: all or nothing, positions and
        sequence assigned on the server); return the stream's last position.

        Raises:
            TypeError: an item is not an Event, or a payload the codec refuses.
            ValidationError: a bad stream name.
            StreamFull: ``on_full="reject"`` and the stream is full, or ``max_streams``
                is reached and *stream* is new.
            StoreClosed: the store is closed.
            StoreUnavailable: the server could not be reached within the retries
                (nothing was stored), or, rarely, it went away after receiving the
                append and stayed away longer than *outcome_timeout* (the message
                says the outcome is unknown).
        """
        self._check_open()
        _check_name(stream)
        for i, e in enumerate(events):
            if type(e) is not _CoreEvent and not isinstance(e, Event):
                raise TypeError(f"Expected an Event at index {i}, got {type_name(e)}")
        n = len(events)
        if n == 1 and self._limit is None:
            pos = self._append_one(stream, events[0])
            if pos:
                return pos
        datas = self.codec.encode_many([e.data for e in events]) if n else []
        argv: list[Any] = [stream.encode(), *self._cfg, _TTL, b"%d" % n, None, b"", b"", b""]
        mask = bytearray(b"0" * n)
        dumps = json.dumps
        add = argv.extend
        for i, e in enumerate(events):
            md = e.metadata
            d = datas[i]
            if d is not None:
                mask[i] = 49
            add((ts_bytes(e.timestamp), e.type.encode(), e.id.encode(),
                 dumps(md, separators=(",", ":"), ensure_ascii=False).encode() if md else b"", b"" if d is None else d))
        argv[6] = bytes(mask)
        return self._run_append(stream, n, argv)

    def _append_one(self, stream: str, e: Any) -> int:
        """One event to an existing stream with the lean script (APPEND_ONE), when no
        per-stream limit applies; 0 when the stream is new (nothing written: the
        caller runs the full script).  A retry after a lost reply runs the full
        script with the same token, so the call is applied once either way."""
        d = self.codec.encode_many([e.data])[0]
        if self._block_subs:
            self._wait_for_room(stream, 1)
        md = e.metadata
        counter = next(self._tokens)  # (atomic: itertools.count is C code under the GIL)
        slot = counter % _RING
        sb = stream.encode()
        tsb = ts_bytes(e.timestamp)
        tb, ib = e.type.encode(), e.id.encode()
        mb = json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode() if md else b""
        cb, slb, ref = b"%d" % counter, b"%d" % slot, b"1" if slot == 1 else b"0"
        keys = [*self._one_keys, self._k_stream_b + sb, self._k_tok_b]
        args = [sb, tsb, tb, ib, mb, b"" if d is None else d, b"0" if d is None else b"1", cb, slb, ref, _TTL]

        def full() -> tuple[list[bytes], list[Any]]:  # the same call as APPEND (a retry)
            argv = [sb, *self._cfg, _TTL, b"1", b"0" if d is None else b"1", cb, slb, ref,
                    tsb, tb, ib, mb, b"" if d is None else d]
            return [*self._append_keys, self._k_stream_b + sb, self._k_tok_b], [msgpack_array(argv)]

        try:
            got = self._call_append(keys, args, stream, full)
        except Exception:
            with self._guard(f"appending to {stream!r}"):  # nova's error for redis-py's
                raise
        if got is None:
            return 0
        if isinstance(got, int):
            return got
        return self._append_result(stream, 1, got)

    def _run_append(self, stream: str, n: int, argv: list[Any]) -> int:
        if self._block_subs and n:
            self._wait_for_room(stream, n)
        with self._token_lock:  # at most _RING calls of one store in flight share the ring
            counter = next(self._tokens)
        argv[7:10] = (b"%d" % counter, b"%d" % (counter % _RING), b"1" if counter % _RING == 1 else b"0")
        keys = [*self._append_keys, self._k_stream_b + stream.encode(), self._k_tok_b]
        with self._guard(f"appending to {stream!r}"):
            got = self._call_append(keys, [msgpack_array(argv)], stream)
        return self._append_result(stream, n, got)

    def _append_result(self, stream: str, n: int, got: Any) -> int:
        """The position the full append script's reply gives, or its refusal raised."""
        status, payload = got
        if status == 1:
            return int(payload.split(b" ", 1)[0])
        if status == 0:
            return int(payload)
        if status == -3:
            key, kind = payload.decode().rsplit(" ", 1)
            raise StoreLayoutError(
                f"Expected the keys under {{{self.prefix}}} to be a nova store's, got {key!r} of type {kind} "
                f"while appending to {stream!r} (nothing was written)"
            )
        if status == -1:
            raise StreamFull(
                f"Expected at most max_streams={self._max_streams} streams, got an append to a new stream {stream!r}"
            )
        raise StreamFull(
            f"Expected at most max_events_per_stream={self._limit} events in stream {stream!r}, "
            f"got {int(payload)} stored + {n} appended"
        )

    def _call_append(self, keys: list[bytes], argv: list[Any], stream: str, full: Any = None) -> Any:
        """Run the append script until its outcome is known.

        A call that failed to connect (or met a server still loading its data) was
        not applied: it is retried *retries* times with backoff, then fails with
        StoreUnavailable saying nothing was stored.  A call whose connection broke
        after it was sent may have been applied: it is retried with the same token
        (applied at most once) until the server answers, for up to
        *outcome_timeout* seconds.

        *full*: *keys* and *argv* are the lean single-event script's (APPEND_ONE) and
        ``full()`` gives the full script's for the same call: every retry runs the
        full one, which knows whether the first attempt was applied."""
        client = self._append_client
        script = self._s_append if full is None else self._s_append_one
        if client is None:  # a caller's client: its own retry policy
            return script(keys=keys, args=argv)
        redis = self._redis
        delay = 0.05
        attempts = 0
        sent_at: float | None = None
        while True:
            try:
                if full is not None:
                    return self._evalsha_direct(client, keys, argv)
                return script(keys=keys, args=argv, client=client)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                now = time.monotonic()
                unsent = isinstance(exc, redis.BusyLoadingError) or "connecting to" in str(exc)
                if not unsent and sent_at is None:
                    sent_at = now
                attempts += 1
                if sent_at is not None:
                    if now - sent_at >= self._outcome_timeout:
                        raise StoreUnavailable(
                            f"Expected the Redis server at {self.url} to answer an append to {stream!r}, got no "
                            f"answer for {self._outcome_timeout} s after it was sent ({exc}); it was applied at most "
                            "once: read the stream to know"
                        ) from exc
                elif attempts > self._retries:
                    raise StoreUnavailable(
                        f"Expected the Redis server at {self.url} to answer while appending to {stream!r}, got {exc} "
                        f"after {attempts} attempts; nothing was stored"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                if full is not None:  # the retry runs the full script, same token
                    keys, argv = full()
                    script, full = self._s_append, None

    def _evalsha_direct(self, client: Any, keys: list[bytes], argv: list[bytes]) -> Any:
        """EVALSHA of APPEND_ONE packed by hiredis in one call, on this thread's own
        connection (made with *client*'s pool settings): redis-py's per-argument
        checks, command dispatch and pool bookkeeping cost more than the server's
        work for one event.  A server that lost its scripts (a restart) gets it
        loaded again.  Errors are redis-py's, as the client raises them (the
        connection is dropped when the reply was not read; the next call connects
        again)."""
        conn = self._one_conn(client)
        packed = _pack(("EVALSHA", self._s_append_one.sha, b"%d" % len(keys), *keys, *argv))
        try:
            try:
                conn.send_packed_command(packed, check_health=False)
                return conn.read_response()
            except self._redis.exceptions.NoScriptError:
                client.script_load(S.APPEND_ONE)
                conn.send_packed_command(packed, check_health=False)
                return conn.read_response()
        except self._redis.exceptions.ResponseError:
            raise  # the reply was read: the connection stays usable
        except BaseException:
            conn.disconnect()
            raise
        finally:
            if self._closed:  # a call that raced close() (and reconnected to finish)
                conn.disconnect()

    def _one_conn(self, client: Any) -> Any:
        """This thread's connection for single appends (a new one in a forked child;
        all of them are closed with the store)."""
        local = self._one_local
        conn = getattr(local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            pool = client.connection_pool
            conn = local.conn = pool.connection_class(**pool.connection_kwargs)
            with self._token_lock:
                self._one_conns.add(conn)
        return conn

    def _close_one_conns(self) -> None:
        """Close every thread's single-append connection (the store closes)."""
        with self._token_lock:
            conns = list(self._one_conns)
            self._one_conns.clear()
        for conn in conns:
            conn.disconnect()

    def append_many(self, stream: str, events: Iterable[Any]) -> int:
        """Append the Events of an iterable to *stream* (all or nothing); see :meth:`append`."""
        return self.append(stream, *events_seq(events))

    def append_columns(self, stream: str, *, types: Any, timestamps: Any, data: Any = None, ids: Any = None) -> int:
        """Append rows given as columns (all or nothing), as
        :meth:`MemoryStore.append_columns`; rows without ids get new unique ids,
        stored with them.

        Raises:
            TypeError / ValidationError: a column of the wrong kind, length or content.
            StreamFull, StoreClosed, StoreUnavailable: as :meth:`append`.
        """
        self._check_open()
        _check_name(stream)
        ts = timestamps_array(timestamps)
        n = len(ts)
        tl = _types_list(types, n)
        objs = [None] * n if data is None else _objects_list(data, n, "data")
        idl = [_core.new_id() for _ in range(n)] if ids is None else _ids_list(ids, n)
        datas = self.codec.encode_many(objs)
        argv: list[Any] = [stream.encode(), *self._cfg, _TTL, b"%d" % n, None, b"", b"", b""]
        mask = bytearray(b"0" * n)
        add = argv.extend
        one = tl if isinstance(tl, str) else None
        for i, t in enumerate(ts.tolist()):
            d = datas[i]
            if d is not None:
                mask[i] = 49
            add((ts_bytes(t), (one or tl[i]).encode(), idl[i].encode(), b"", b"" if d is None else d))
        argv[6] = bytes(mask)
        return self._run_append(stream, n, argv)

    def _heads(self, stream: str | None, what: str = "reading the heads") -> tuple[int, int]:
        """(global sequence, last position of *stream*) on the server now."""
        with self._guard(what):
            seq, pos = self._s_heads(keys=[self._k_meta, self._k_names, self._k_last], args=[stream or ""])
        return int(seq), int(pos)

    def _wait_for_room(self, stream: str, k: int) -> None:
        """Block while a local "block" subscriber of *stream* (or of every stream) has
        no room for *k* more live events.  Appends from other processes never wait:
        their events stay on the server until the subscriber reads them."""
        counted: set[int] = set()
        while True:
            self._check_open()
            system = is_system(stream)
            subs = [s for s in list(self._block_subs)
                    if s.stream == stream or (s.stream is None and (s.include_system or not system))]
            if not subs:
                return
            seq, pos = self._heads(stream, f"checking a blocking subscriber before appending to {stream!r}; nothing was stored")
            full = None
            for sub in subs:
                backlog = sub._backlog_at(seq if sub.stream is None else pos)
                if backlog > 0 and backlog + k > sub._buffer:
                    full = sub
                    break
            if full is None:
                return
            with self._cond:
                if id(full) not in counted:
                    counted.add(id(full))
                    full._blocked += 1
                    self._blocked += 1
                    self._cond.notify_all()
                full = None
                subs = []
                self._cond.wait(1.0)

