"""RedisStore: the event store on Redis Streams (or Valkey), shared by many processes
and machines.

One Redis stream per nova stream, a global append log, an exact event-time index, all
under one hash tag (the layout is in :mod:`nova.store.redis_scripts`).  Appends are
one Lua script per call: positions and the global sequence are assigned inside it, so
an append is all or nothing and positions are unique and contiguous across every
process.  Windows are exact to the nanosecond, late events included; subscriptions
tail with ``XREAD BLOCK``.  Needs ``pip install 'nova-events[redis]'``.

The store is assembled from one module per idea: :mod:`~nova.store.redis_connection`
(client, errors, layout check), :mod:`~nova.store.redis_appends` (the append path),
:mod:`~nova.store.redis_windows` (windows and replay), :mod:`~nova.store.redis_scripts`
(key layout and Lua), :mod:`~nova.store.redis_rows` (decoding replies) and
:mod:`~nova.store.redis_subscription` (live subscriptions); docs/backends.md explains
the design.  Size: :class:`RedisStore` is over ~400 lines only by the full EventStore
protocol with its docstrings; each mechanism is in the sibling module named.

.. versionadded:: 0.2
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from nova import _core
from nova.errors import StoreClosed, StoreUnavailable, ValidationError, type_name
from nova.store import redis_scripts as S
from nova.store.batch import EventBatch
from nova.store.protocol import ON_FULL_POLICIES, OVERFLOW_POLICIES, Cursor, StoreStats, StreamInfo
from nova.store.args import check_include_system, cursor_position
from nova.store.codecs import Codec, get_codec
from nova.store.lifecycle import StoreLifecycle, sweep_loop
from nova._util.checks import check_opt_int as _opt_int
from nova._util.checks import check_timeout as _check_timeout
from nova.store.redis_appends import Appends
from nova.store.redis_connection import RedisConnection, import_redis
from nova.store.redis_rows import event_of, ts_bytes
from nova.store.redis_subscription import RedisSubscription
from nova.store.redis_windows import WindowReads, iter_fields
from nova.testing import to_seconds

__all__ = ("RedisStore",)

_INT64_MIN = -(2**63)
_ID_MAX = 2**64 - 1
_PAGE = 10_000  # rows per read/window script call (a script blocks the server while it runs)


class RedisStore(RedisConnection, Appends, WindowReads, StoreLifecycle):
    """RedisStore(url="redis://localhost:6379/0", *, client=None, prefix="nova",
    codec=None, retention=None, max_events_per_stream=None, on_full="evict_oldest",
    max_streams=None, timeout=5.0, retries=5, now_ns=None, sweep_interval=1.0,
    clock=None)

    An :class:`~nova.store.EventStore` on Redis Streams with MemoryStore's semantics,
    shared by every process that opens the same server and *prefix*.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` or
            ``unix:///path.sock``.  Ignored when *client* is given.
        client: a ``redis.Redis`` to use (made with ``decode_responses=False``);
            its timeouts and retries are then the caller's.
        prefix: the store's name on the server; every key is ``{prefix}:...`` (one
            Redis Cluster slot).  Stores with different prefixes are independent.
        codec: ``"json"``, ``"msgpack"``, ``"pickle"`` (by name only) or an object with
            ``encode``/``decode``; recorded on the server at creation, and checked
            when the store is opened again (``None``: the recorded json/msgpack
            codec, or json for a new store).
        retention: as :class:`~nova.store.MemoryStore` (this limit and the next
            three are applied by the append script, for every process alike).
        max_events_per_stream: as :class:`~nova.store.MemoryStore`.
        on_full: as :class:`~nova.store.MemoryStore`.
        max_streams: as :class:`~nova.store.MemoryStore`.
        now_ns: as :class:`~nova.store.MemoryStore`.
        sweep_interval: as :class:`~nova.store.MemoryStore`.
        clock: as :class:`~nova.store.MemoryStore`.
        timeout: seconds every network call may take (connect and read).
        retries: reconnect attempts, with exponential backoff (50 ms doubling up
            to 1 s), before a call fails with :class:`~nova.errors.StoreUnavailable`.
        outcome_timeout: seconds an append whose connection broke *after* it was
            sent keeps retrying until the server tells whether it was applied (each
            append carries a token the script remembers for 10 minutes, so a retry
            is applied at most once).  An append therefore returns once stored, or
            raises having stored nothing, unless the server stays away longer than
            this after receiving it (the error then says the outcome is unknown).

    Raises:
        ImportError: redis-py is not installed.
        ValidationError: a URL that is not redis://, rediss:// or unix://.
        StoreUnavailable: the server cannot be reached.  StoreAuthError: the server
            refused the credentials.  StoreLayoutError: the prefix holds keys that
            are not a nova store's, or another codec's.
        TypeError / ValueError: bad arguments.

    Size: the EventStore protocol on Redis with its docstrings; appends, windows and
    scripts are sibling modules.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: Any = None,
        prefix: str = "nova",
        codec: object = None,
        retention: float | timedelta | None = None,
        max_events_per_stream: int | None = None,
        on_full: str = "evict_oldest",
        max_streams: int | None = None,
        timeout: float = 5.0,
        retries: int = 5,
        outcome_timeout: float = 30.0,
        now_ns: Callable[[], int] | None = None,
        sweep_interval: float | timedelta | None = 1.0,
        clock: Any = None,
    ) -> None:
        redis = import_redis()
        self._redis = redis
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValidationError(f"Expected prefix as a non-empty str without braces, got {prefix!r}")
        self._limit = _opt_int(max_events_per_stream, "max_events_per_stream", 1)
        if on_full not in ON_FULL_POLICIES:
            raise ValueError(f"Expected on_full among {ON_FULL_POLICIES}, got {on_full!r}")
        self._on_full = on_full
        self._max_streams = _opt_int(max_streams, "max_streams", 1)
        self._retention_ns: int | None = None
        if retention is not None:
            seconds = to_seconds(retention, "retention")
            if seconds != float("inf"):
                self._retention_ns = int(round(seconds * 1e9))
        if now_ns is not None and not callable(now_ns):
            raise TypeError(f"Expected now_ns as a callable returning int ns, got {type_name(now_ns)}")
        self._now_ns: Callable[[], int] = now_ns if now_ns is not None else _core.now_ns
        interval = _check_timeout(sweep_interval, "sweep_interval")
        if interval is not None and interval <= 0:
            raise ValueError(f"Expected sweep_interval > 0 seconds or None, got {sweep_interval!r}")
        if clock is not None and not (callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))):
            raise TypeError(f"Expected a clock with monotonic() and sleep(), got {type_name(clock)}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"Expected timeout as seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"Expected retries as an int >= 0, got {retries!r}")
        if isinstance(outcome_timeout, bool) or not isinstance(outcome_timeout, (int, float)) or not outcome_timeout >= 0:
            raise ValueError(f"Expected outcome_timeout as seconds >= 0, got {outcome_timeout!r}")
        self._retries = retries
        self._outcome_timeout = float(outcome_timeout)
        self.timeout = float(timeout)
        if codec is not None:
            get_codec(codec)  # a bad codec fails before the server is touched
        self.prefix = prefix
        if client is None:
            self.url = self._safe_url(url)
            client = self._make_client(url, self.timeout, retries)
            # appends retry in _call_append, which knows whether a lost call was sent
            self._append_client: Any = self._make_client(url, self.timeout, 0)
            self._own_client = True
        else:
            if not callable(getattr(client, "evalsha", None)):
                raise TypeError(f"Expected client as a redis.Redis, got {type_name(client)}")
            kwargs = client.get_connection_kwargs() if hasattr(client, "get_connection_kwargs") else {}
            if kwargs.get("decode_responses"):
                raise ValueError("Expected a redis client with decode_responses=False, got decode_responses=True")
            self.url = "<client>"
            sock = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}).get("socket_timeout")
            if isinstance(sock, (int, float)) and sock > 0:
                self.timeout = float(sock)  # blocking reads end before the client's own timeout
            self._append_client = None
            self._own_client = False
        self._client = client
        # the same connections, replies left as hiredis parses them (no dict-building callbacks)
        self._raw = redis.Redis(connection_pool=client.connection_pool)
        for cmd in ("XRANGE", "ZRANGE"):
            self._raw.response_callbacks.pop(cmd, None)
        k = "{" + prefix + "}:"
        self._k_meta, self._k_names, self._k_bycode = k + "meta", k + "names", k + "bycode"
        self._k_last, self._k_evc, self._k_time, self._k_log = k + "last", k + "evc", k + "time", k + "log"
        self._k_stream = k + "s:"
        self._k_tok = k + "tok:" + os.urandom(8).hex()
        self._tokens = itertools.count(1)
        # bytes, so redis-py's encoder passes them through (single appends are bound by
        # the client's per-argument cost)
        self._append_keys = [key.encode() for key in (self._k_meta, self._k_names, self._k_bycode, self._k_last,
                                                      self._k_evc, self._k_time, self._k_log)]
        self._k_stream_b = self._k_stream.encode()
        self._k_tok_b = self._k_tok.encode()
        self._token_lock = threading.Lock()
        self._cfg = [
            str(self._max_streams or 0).encode(),
            str(self._limit or 0).encode(),
            b"1" if on_full == "reject" else b"0",
        ]
        reg = client.register_script
        self._s_append = reg(S.APPEND)
        self._s_append_one = reg(S.APPEND_ONE)
        # the lean single-event script's keys (the stream's and the token ring's added per call)
        self._one_keys = [key.encode() for key in (self._k_meta, self._k_names, self._k_last, self._k_time, self._k_log)]
        self._one_local = threading.local()  # each thread's connection for single appends
        self._one_conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._s_read = reg(S.READ)
        self._s_stream_fetch = reg(S.STREAM_FETCH)
        self._s_log_fetch = reg(S.LOG_FETCH)
        self._s_expire = reg(S.EXPIRE)
        self._s_info = reg(S.INFO)
        self._s_heads = reg(S.HEADS)
        self._names_by_code: dict[int, str] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._final_stats: StoreStats | None = None
        self._subs: weakref.WeakSet[RedisSubscription] = weakref.WeakSet()
        self._block_subs: weakref.WeakSet[RedisSubscription] = weakref.WeakSet()
        self._blocked = 0
        self._stop = threading.Event()
        try:
            self.codec: Codec = self._open_layout(codec)
        except BaseException:
            if self._own_client:
                client.close()
                self._append_client.close()
            raise
        self._sweeper: threading.Thread | None = None
        self._clock = clock
        if self._retention_ns is not None and interval is not None:
            self._sweeper = threading.Thread(
                target=sweep_loop, args=(weakref.ref(self), self._stop, clock, interval),
                name="nova-redis-sweep", daemon=True,
            )
            self._sweeper.start()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("Expected an open store, got a closed one")

    def _skey(self, stream: str) -> str:
        return self._k_stream + stream

    # ------------------------------------------------------------------ reads
    def read(self, stream: str, cursor: Cursor | None = None, limit: int | None = None) -> tuple[list[Any], Cursor]:
        """Read the events of *stream* after *cursor* (``None``: from the start), at
        most *limit* (``None``: all), in position order; return them and the cursor
        of the last one (past the end: ``[]`` and the same cursor).

        Raises:
            TypeError / ValueError: a bad cursor or limit.  StoreClosed: closed.
            StoreUnavailable: the server did not answer.
        """
        if not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name, got {type_name(stream)}")
        after = cursor_position(cursor, stream)
        limit = _opt_int(limit, "limit", 0)
        if cursor is None:
            cursor = Cursor(stream, 0, None)
        self._check_open()
        self._expire()
        if limit == 0 or after >= _ID_MAX:
            return [], cursor
        rows: list[Any] = []
        first = after + 1
        want = limit
        with self._guard(f"reading {stream!r}"):
            while True:
                count = _PAGE if want is None or want > _PAGE else want
                page = self._s_read(keys=[self._skey(stream)], args=[first, count])
                rows += page
                if want is not None:
                    want -= len(page)
                if len(page) < count or want == 0:
                    break
                first = int(page[-1][0].split(b"-", 1)[0]) + 1
        if not rows:
            return [], cursor
        decode = self.codec.decode
        events = [event_of(f, decode) for _id, f in rows]
        return events, Cursor(stream, int(rows[-1][0].split(b"-", 1)[0]), events[-1].timestamp)

    def window(self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None,
               include_system: bool = False) -> EventBatch:
        """The events with ``start <= timestamp < end`` as an :class:`EventBatch`, in
        (timestamp, sequence) order, exact to the nanosecond (late events included):
        a lexicographic range of the event-time index, then the entries, read by
        server-side scripts in pages of 10,000 rows.  The batch holds every row's
        fields (a snapshot: later appends, from any process, are not in it).

        Raises:
            ValidationError: a bad bound.  TypeError: bad filters.
            StoreClosed: closed.  StoreUnavailable: the server did not answer.
        """
        return self._batch(*self._rows(start, end, streams, types, include_system))

    def replay(self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None,
               include_system: bool = False) -> Iterator[Any]:
        """Iterate the Events with ``start <= timestamp < end`` in (timestamp, sequence)
        order (a snapshot taken at the call; Events are built as you iterate).

        Raises:
            ValidationError / TypeError / StoreClosed / StoreUnavailable: as :meth:`window`.
        """
        _members, fields = self._rows(start, end, streams, types, include_system)
        return iter_fields(fields, self.codec.decode)

    def stream_info(self, stream: str) -> StreamInfo:
        """What the store knows about *stream*.

        Raises:
            TypeError: not a str.  KeyError: never appended to.  StoreClosed: closed.
        """
        if not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name, got {type_name(stream)}")
        self._check_open()
        self._expire()
        with self._guard(f"reading the info of {stream!r}"):
            r = self._s_info(keys=[self._k_names, self._k_last, self._k_evc, self._skey(stream)], args=[stream])
        if r is None:
            raise KeyError(f"Expected a stream with events, got unknown stream {stream!r}")
        live, first, last, evicted = (int(x) for x in r)
        return StreamInfo(stream, live, first or None, last, evicted)

    def streams(self) -> list[str]:
        """The names of every stream ever appended to (by any process), in creation order."""
        self._check_open()
        with self._guard("listing streams"):
            got = self._client.hgetall(self._k_bycode)
        pairs = sorted((int(c), n.decode()) for c, n in got.items())
        for c, n in pairs:
            self._names_by_code.setdefault(c, n)
        return [n for _c, n in pairs]

    def stats(self) -> StoreStats:
        """The store's counters, shared by every process (``subscriptions`` and
        ``blocked`` are this object's; ``memory_bytes`` is the server's ``MEMORY
        USAGE`` estimate of every key of the store, payloads included).  After
        :meth:`close`, the counters at close."""
        if self._closed and self._final_stats is not None:
            return self._final_stats
        c = self._client
        with self._guard("reading the counters"):
            p = c.pipeline(transaction=False)
            p.zcard(self._k_time)
            p.hlen(self._k_names)
            p.hmget(self._k_meta, "seq", "evicted", "rejected")
            p.hvals(self._k_bycode)
            head = p.execute()
            p = c.pipeline(transaction=False)
            keys = [self._k_meta, self._k_names, self._k_bycode, self._k_last, self._k_evc, self._k_time, self._k_log]
            keys += [self._k_stream + name.decode() for name in head[3]]
            for key in keys:
                p.memory_usage(key)
            usage = p.execute()
        appended, evicted, rejected = (int(x or 0) for x in head[2])
        return StoreStats(
            events=int(head[0]),
            streams=int(head[1]),
            appended=appended,
            evicted=evicted,
            rejected=rejected,
            subscriptions=len(self._subs),
            blocked=self._blocked,
            memory_bytes=sum(int(x or 0) for x in usage),
        )

    # ------------------------------------------------------------------ retention
    def _expire(self) -> int:
        """Apply retention now: delete every event older than now - retention from
        its stream, the log and the index (in script calls of 10,000)."""
        if self._retention_ns is None:
            return 0
        cutoff = self._now_ns() - self._retention_ns
        if cutoff <= _INT64_MIN:
            return 0
        keys = [self._k_meta, self._k_time, self._k_bycode, self._k_log, self._k_evc]
        total = 0
        with self._guard("applying retention"):
            while True:
                n = int(self._s_expire(keys=keys, args=[self._k_stream, ts_bytes(cutoff), _PAGE]))
                total += n
                if n < _PAGE:
                    return total

    def _sweep_once(self) -> bool:
        """One background sweep (False: closed); a server that does not answer is
        tried again at the next sweep."""
        if self._closed:
            return False
        try:
            self._expire()
        except StoreUnavailable:
            pass
        return True

    def sweep(self) -> int:
        """Apply retention now; return how many events were evicted.

        Raises:
            StoreClosed: closed.  StoreUnavailable: the server did not answer.
        """
        self._check_open()
        return self._expire()

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        stream: str | None = None,
        cursor: Cursor | None = None,
        *,
        buffer: int = 1000,
        overflow: str = "block",
        include_system: bool = False,
    ) -> RedisSubscription:
        """Follow *stream* (``None``: every stream, in global sequence order): the
        events after *cursor*, then live appends from every process, with no gap and
        no duplicate (``XREAD BLOCK`` waits; no polling).  *buffer* and *overflow* as
        :meth:`MemoryStore.subscribe`; ``"block"`` makes this store's appenders wait
        (appends from other processes are kept on the server until read).

        Raises:
            TypeError / ValueError: bad arguments.  StoreClosed: closed.
        """
        if stream is not None and not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name or None, got {type_name(stream)}")
        if stream == "":
            raise ValidationError("Expected a non-empty str stream name or None, got ''")
        include_system = check_include_system(include_system)
        after = cursor_position(cursor, stream)
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            raise TypeError(f"Expected buffer as an int, got {type_name(buffer)}")
        if buffer < 1:
            raise ValueError(f"Expected buffer >= 1, got {buffer}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {OVERFLOW_POLICIES}, got {overflow!r}")
        self._check_open()
        seq, pos = self._heads(stream)
        with self._lock:
            self._check_open()
            sub = RedisSubscription(self, stream, after, seq if stream is None else pos, buffer, overflow,
                                    include_system)
            self._subs.add(sub)
            if overflow == "block":
                self._block_subs.add(sub)
        return sub

    def _detach(self, sub: RedisSubscription) -> None:
        """Forget *sub* (lock held)."""
        self._subs.discard(sub)
        self._block_subs.discard(sub)
        self._cond.notify_all()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the store: subscriptions end, blocked appenders get StoreClosed, the
        connections are closed (the data stays on the server).  Idempotent."""
        with self._lock:
            if self._closed:
                return
        try:
            final = self.stats()
        except StoreUnavailable:
            final = None
        with self._lock:
            if not self._close_locked():
                return
            self._final_stats = final
        self._join_sweeper(None)
        self._close_one_conns()
        if self._own_client:
            self._client.close()
            self._append_client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RedisStore {self.url} prefix={self.prefix!r} codec={self.codec.name!r} {state}>"


def _iter_fields(fields: list[Any], decode: Any) -> Iterator[Any]:
    for f in fields:
        yield event_of(f, decode)
