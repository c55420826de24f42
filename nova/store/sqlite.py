"""SQLiteStore: the durable embedded event store.

Events live in one SQLite file (WAL); their numeric columns are indexed in memory in a
:class:`~nova._core.ColumnLog`, so windows are a binary search as in
:class:`~nova.store.MemoryStore` and payloads are read and decoded only when asked
for.  Several processes may open the same file: appends get unique, contiguous
positions, and subscriptions see other processes' appends within milliseconds.

The store is the :class:`~nova.store.logstore.LogStore` facade (subscriptions,
retention, limits, blocking subscribers), as MemoryStore is, over
:class:`~nova.store.sqlite_log.SQLiteLog`; see that module for the write path and
group commit.

.. versionadded:: 0.2
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from nova import _core
from nova.errors import StoreClosed, StoreFileError, ValidationError, type_name
from nova.store.batch import EventBatch
from nova.store.args import check_stream
from nova.store.codecs import Codec, get_codec
from nova.store.logstore import LogStore
from nova.store.sqlite_log import SQLiteLog

__all__ = ("SQLiteStore", "SCHEMA_VERSION", "DURABILITY")

#: The schema version this nova writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a nova store file ("nova" in ASCII).
APPLICATION_ID = 0x6E6F7661
#: Durability levels: the ``synchronous`` setting each one uses (WAL in every case).
#: ``"full"`` commits with NORMAL and then fsyncs the WAL itself, once for all the
#: appends waiting (group commit): what FULL does at every commit, shared.
DURABILITY = {"full": "NORMAL", "normal": "NORMAL", "off": "OFF"}

_SCHEMA = """
CREATE TABLE events (
    seq    INTEGER PRIMARY KEY,
    stream INTEGER NOT NULL,
    pos    INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    type   INTEGER NOT NULL,
    id     TEXT NOT NULL,
    meta   TEXT,
    data   BLOB
);
CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, last_pos INTEGER NOT NULL);
CREATE TABLE types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE snapshot (name TEXT PRIMARY KEY, value BLOB);
"""
_TABLES = {"events", "streams", "types", "meta", "snapshot"}


def connect(path: str, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode usable from any thread (callers serialise)."""
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)


def _file_error(path: str, exc: BaseException) -> StoreFileError:
    return StoreFileError(f"Expected a nova SQLite event store at {path!r}, got a file SQLite cannot read ({exc})")


def open_schema(conn: sqlite3.Connection, path: str, codec: object) -> Codec:
    """Check (or create, in an empty file) the schema; return the codec to use.

    Raises:
        StoreFileError: not a SQLite file, corrupt, another application's database,
            a newer schema, or a codec other than the one recorded.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.DatabaseError as exc:
        raise _file_error(path, exc) from exc
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app == 0 and version == 0 and not tables:
            chosen = get_codec("json" if codec is None else codec)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("format", "nova-events"), ("codec", chosen.name), ("evict_gen", 0), ("last_seq", 0)],
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            return chosen
        if app != APPLICATION_ID:
            raise StoreFileError(
                f"Expected a nova event store at {path!r}, got a SQLite database of another application "
                f"(application_id={app}, tables {sorted(tables)}); it was not modified"
            )
        if version > SCHEMA_VERSION:
            raise StoreFileError(
                f"Expected a store of schema version <= {SCHEMA_VERSION}, got version {version} at {path!r} "
                "(written by a newer nova); upgrade nova to open it"
            )
        if version < 1 or not _TABLES <= tables:
            raise StoreFileError(
                f"Expected a nova event store of schema version {SCHEMA_VERSION} at {path!r}, got version {version} "
                f"with tables {sorted(tables)}"
            )
        recorded = conn.execute("SELECT value FROM meta WHERE key = 'codec'").fetchone()
        recorded_name = recorded[0] if recorded else "json"
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise _file_error(path, exc) from exc
        raise
    if codec is None:
        if recorded_name in ("json", "msgpack"):
            return get_codec(recorded_name)
        raise StoreFileError(
            f"Expected codec= naming the codec recorded in {path!r}, got None for a file written with "
            f"codec {recorded_name!r}" + (" (pickle is unsafe for files you did not write)" if recorded_name == "pickle" else "")
        )
    chosen = get_codec(codec)
    if chosen.name != recorded_name:
        raise StoreFileError(f"Expected codec {recorded_name!r} (recorded in {path!r}), got {chosen.name!r}")
    return chosen


class SQLiteStore(LogStore):
    """SQLiteStore(path, *, durability="normal", codec=None, retention=None,
    max_events_per_stream=None, on_full="evict_oldest", max_streams=None,
    busy_timeout=30.0, poll_interval=0.01, clock=None, now_ns=None, sweep_interval=1.0,
    kernel=None)

    A durable :class:`~nova.store.EventStore` in one SQLite file, with the semantics
    of :class:`~nova.store.MemoryStore` (same arguments for retention and limits).

    Args:
        path: the file (created with the schema when missing or empty); ``":memory:"``
            for a private in-memory database.
        durability: ``"full"`` (every append that returned is on disk, even after a
            power loss: WAL + ``synchronous=FULL``; concurrent appenders share fsyncs),
            ``"normal"`` (WAL + ``synchronous=NORMAL``: survives a crash of the
            process, may lose the last appends on power loss or OS crash), ``"off"``
            (``synchronous=OFF``, for bulk loads: survives a process crash, an OS
            crash may corrupt the file).
        codec: ``"json"``, ``"msgpack"``, ``"pickle"`` (by name only; unsafe for
            files you did not write) or an object with ``encode``/``decode``.
            ``None``: JSON for a new file, the recorded json/msgpack codec for an
            existing one.
        busy_timeout: seconds to wait for another process's write lock.
        poll_interval: seconds between checks for other processes' appends while a
            subscriber waits.
        kernel: the ColumnLog class of the index (``None``: the active twin).

    Raises:
        StoreFileError: the file is not a nova store, is corrupt, has a newer schema
            or another codec (nothing is written to it then).
        ValueError / TypeError: bad arguments.
        ImportError: ``codec="msgpack"`` without msgspec.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "normal",
        codec: object = None,
        retention: float | timedelta | None = None,
        max_events_per_stream: int | None = None,
        on_full: str = "evict_oldest",
        max_streams: int | None = None,
        busy_timeout: float = 30.0,
        poll_interval: float = 0.01,
        clock: Any = None,
        now_ns: Callable[[], int] | None = None,
        sweep_interval: float | timedelta | None = 1.0,
        kernel: Any = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Expected path as a str or os.PathLike, got {type_name(path)}")
        path = os.fspath(path)
        if durability not in DURABILITY:
            raise ValueError(f"Expected durability among {tuple(DURABILITY)}, got {durability!r}")
        for name, value in (("busy_timeout", busy_timeout), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Expected {name} as seconds > 0, got {value!r}")
        if codec is not None:
            get_codec(codec)  # a bad codec (or msgpack without msgspec) fails before the file is touched
        self.path = path
        self.durability = durability
        self._pid = os.getpid()  # the process whose connection this is (see _after_fork_in_child)
        self._poll_interval = float(poll_interval)
        created = path != ":memory:" and not os.path.exists(path)
        try:
            conn = connect(path, float(busy_timeout))
        except sqlite3.Error as exc:
            raise _file_error(path, exc) from exc
        try:
            self.codec = open_schema(conn, path, codec)
            if path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreFileError(f"Expected WAL journal mode for {path!r}, got {mode!r}")
            conn.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
            wal = path + "-wal" if durability == "full" and path != ":memory:" else None
            log = SQLiteLog(conn, self.codec, _core.ColumnLog if kernel is None else kernel, wal_path=wal)
            try:
                log.load()
            except sqlite3.DatabaseError as exc:
                raise _file_error(path, exc) from exc
            self._conn = conn
            self._sqlite_log = log
            self._poller: threading.Thread | None = None
            super().__init__(  # checks the retention and limit arguments
                lambda: log,
                max_events_per_stream=max_events_per_stream,
                retention=retention,
                on_full=on_full,
                max_streams=max_streams,
                clock=clock,
                now_ns=now_ns,
                sweep_interval=sweep_interval,
            )
        except BaseException:
            conn.close()
            if created:  # a refused call leaves no file behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    try:
                        os.remove(path + suffix)
                    except OSError:
                        pass
            raise
        self._register(sorted(((sid, code) for code, sid in enumerate(log._file_stream) if sid)))
        ref = weakref.ref(self)
        log.on_change = lambda fresh, rows: _on_change(ref, fresh, rows)

    def _wait_for_room(self, code: int, k: int) -> None:
        """Commit what is written so far before waiting for a blocking subscriber
        (waiting releases the store lock: no write transaction stays open outside it,
        and the subscriber can read those rows)."""
        self._sqlite_log.commit()
        super()._wait_for_room(code, k)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the store lock free, no fsync waiter any more (see
        LogStore and ``SQLiteLog.after_fork``), and the connection never used again:
        a SQLite connection must not cross ``fork()`` (the child holds none of its
        file locks, and a transaction a parent thread had open at the fork would be
        committed half-written).  Every call then raises StoreClosed naming the
        parent; ``close()`` leaves the file alone, and the connection is never freed
        in the child."""
        log = self._sqlite_log
        log.after_fork()
        log.closed = True  # (reads of the log return at once; fetches raise StoreClosed)
        # Never closed nor freed in the child: closing it would run SQLite on a handle
        # whose mutex a parent thread may have held at the fork (a hang at exit).
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._conn))
        super()._after_fork_in_child()

    def _check_open(self) -> None:
        """Raise StoreClosed when closed or inherited through ``fork()``; else catch up
        with other processes' commits (lock held: every public call checks this
        first, before it looks at names)."""
        if self._pid != os.getpid():
            raise StoreClosed(
                f"Expected a SQLiteStore opened in this process, got one inherited through fork() from process "
                f"{self._pid} (a SQLite connection must not cross fork()); open stores after forking, or start "
                "processes with the spawn method"
            )
        super()._check_open()
        self._sqlite_log.sync()

    def _register(self, pairs: Iterable[tuple[int, int]]) -> None:
        names = self._sqlite_log.stream_names()
        for _sid, code in pairs:
            self._codes.setdefault(names[code], code)

    # ------------------------------------------------------------------ appends
    def append(self, stream: str, *events: Any) -> int:
        """Append *events* to *stream* (all or nothing); return the stream's last
        position once the append is committed with the store's durability.

        Raises:
            TypeError: an item is not an Event, or its data cannot be encoded by the
                codec (nothing stored).
            ValidationError, StreamFull, StoreClosed: as :meth:`MemoryStore.append`.
            sqlite3.Error: the file could not be written (nothing stored).
        """
        log = self._sqlite_log
        check_stream(stream)
        encoded = log.encode(events)  # checked and encoded before the append is queued

        def write() -> int:  # store lock held, its own transaction open
            log.use_encoded(events, encoded)
            try:
                return self._append_body(stream, events)
            finally:
                log.use_encoded((), None)  # (refused before it was used: StreamFull, closed...)

        pos: int = log.group.run(write)
        return pos

    def append_columns(self, stream: str, *, types: Any, timestamps: Any, data: Any = None, ids: Any = None) -> int:
        """Append rows given as columns (all or nothing), committed before it returns;
        see :meth:`MemoryStore.append_columns`.  Rows without ids get new unique ids
        stored with them."""
        check_stream(stream)
        columns = (types, timestamps, data, ids)

        def write() -> int:  # store lock held, its own transaction open
            return self._columns_body(stream, columns)

        pos: int = self._sqlite_log.group.run(write)
        return pos

    def append_batch(self, batch: EventBatch) -> int:
        """Append every row of *batch* (say from :meth:`EventBatch.from_arrow`) with its
        own stream, position, sequence, id, timestamp, type, metadata and payload, in
        sequence order, all or nothing; return how many rows were appended.  Restoring
        an archive into an empty store gives back the very same numbers.
        ``max_events_per_stream`` and ``on_full`` are not applied to restored rows.

        Raises:
            TypeError: *batch* is not an EventBatch, or a payload the codec refuses.
            ValidationError: a sequence not above the store's last sequence, or a
                position not above its stream's last position (nothing stored).
            StreamFull: ``max_streams`` would be exceeded.  StoreClosed: closed.
        """
        if not isinstance(batch, EventBatch):
            raise TypeError(f"Expected an EventBatch, got {type_name(batch)}")
        n = len(batch)
        if n == 0:
            return 0
        order = np.argsort(np.asarray(batch.sequences), kind="stable")
        events = batch.events()
        events = [events[i] for i in order.tolist()]
        names = [batch.streams[c] for c in np.asarray(batch.stream_codes)[order].tolist()]
        datas = self.codec.encode_many([e.data for e in events])
        metas = [json.dumps(m, separators=(",", ":"), ensure_ascii=False) if m else None for m in (e.metadata for e in events)]
        log = self._sqlite_log

        def write() -> int:  # store lock held, its own transaction open (never waits)
            self._check_open()
            fresh: dict[str, int] = {}
            for name in dict.fromkeys(names):
                if name not in self._codes:
                    fresh[name] = self._new_stream(name)
            codes = np.fromiter((self._codes.get(nm, fresh.get(nm, -1)) for nm in names), np.int32, n)
            log.write_rows(
                codes, np.fromiter((e.timestamp for e in events), np.int64, n), [e.type for e in events],
                [e.id for e in events], metas, datas,
                np.asarray(batch.sequences, dtype=np.int64)[order], np.asarray(batch.positions, dtype=np.int64)[order],
            )
            for name, code in fresh.items():
                self._codes[name] = code
            self._wake()
            return n

        written: int = log.group.run(write)
        return written

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, stream: str | None = None, cursor: Any = None, *, buffer: int = 1000, overflow: str = "block",
                  include_system: bool = False) -> Any:
        """Follow *stream* as :meth:`MemoryStore.subscribe` does, including appends made
        by other processes to the same file (seen within ``poll_interval`` seconds
        while the subscriber waits)."""
        sub = super().subscribe(stream, cursor, buffer=buffer, overflow=overflow, include_system=include_system)
        with self._lock:
            if self._poller is None and self._conn_path_shared():
                self._poller = threading.Thread(
                    target=_poll_loop, args=(weakref.ref(self), self._stop, self._poll_interval),
                    name="nova-sqlite-poll", daemon=True,
                )
                self._poller.start()
        return sub

    def _conn_path_shared(self) -> bool:
        return self.path != ":memory:"

    # ------------------------------------------------------------------ files
    def backup(self, path: str | os.PathLike[str]) -> None:
        """Write an online, consistent copy of the store to *path* (SQLite backup API);
        appends may go on meanwhile.

        Raises:
            StoreClosed: the store is closed.  sqlite3.Error: *path* cannot be written.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Expected path as a str or os.PathLike, got {type_name(path)}")
        with self._lock:
            self._check_open()
            if self.path == ":memory:":
                target = sqlite3.connect(os.fspath(path))
                try:
                    self._conn.backup(target)
                finally:
                    target.close()
                return
        # A connection of its own: one read snapshot of what is committed, copied
        # without the store lock, so appends (ours and other processes') go on.
        source = sqlite3.connect(self.path)
        target = sqlite3.connect(os.fspath(path))
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

    def close(self) -> None:
        """Close the store (subscriptions end, the file is closed).  Idempotent."""
        with self._lock:
            first = not self._closed
        super().close()
        if not first:
            return
        if self._pid != os.getpid():
            return  # inherited through fork(): the parent's connection is not touched
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join()
        with self._lock:
            log = self._sqlite_log
            try:
                log.commit()
                try:
                    # the next open reads it instead of scanning the table; a busy
                    # writer elsewhere delays close by at most half a second
                    self._conn.execute("PRAGMA busy_timeout = 500")
                    log.write_snapshot()
                except sqlite3.Error:
                    pass  # a read-only file or a busy writer: the next open scans the table
            finally:
                log.closed = True
                self._conn.close()
                log.close_wal()

    def __enter__(self) -> SQLiteStore:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SQLiteStore {self.path!r} durability={self.durability!r} codec={self.codec.name!r} {state}>"


def _on_change(ref: Any, fresh: list[tuple[str, int]], rows: bool) -> None:
    """Rows or streams written by another process were read (store lock held)."""
    store = ref()
    if store is None:
        return
    for name, code in fresh:
        store._codes.setdefault(name, code)
    if rows:
        store._wake()


def _poll_loop(ref: Any, stop: threading.Event, interval: float) -> None:
    """While subscribers wait, check the file for other processes' commits every
    *interval* seconds (``PRAGMA data_version``, no busy loop)."""
    while not stop.wait(interval):
        store = ref()
        if store is None:
            return
        if store._nwait:
            with store._lock:
                if store._closed:
                    return
                store._sqlite_log.sync()
        del store
