"""The durable log under :class:`~nova.store.SQLiteStore`: rows in a SQLite table, their
numeric columns indexed in a :class:`~nova._core.ColumnLog`.

:class:`SQLiteLog` has the ColumnLog interface :class:`~nova.store.logstore.LogStore`
drives (appends, windows, stream slices, eviction, names), so ``SQLiteStore`` is the
LogStore facade (subscriptions, retention, limits, blocking) over this log, as
``MemoryStore`` is over the kernel.

* Appends are checked and encoded before the store lock (:meth:`SQLiteLog.encode`),
  then written under the store lock in a write transaction of their own
  (:attr:`SQLiteLog.group`, :mod:`nova.store.sqlite_commit`): the rows are inserted
  (a ``SAVEPOINT`` when there is more than one statement, so a failed append leaves
  no trace), their numbers added to the index (``ColumnLog.restore_row(s)``), and
  the transaction committed; with ``durability="full"`` the append then waits for an
  fsync of the WAL shared with the appends committed meanwhile (group commit).  No
  transaction stays open outside the store lock.
* Windows are a binary search in the index; payloads, ids and metadata are read from
  the table (by rowid = global sequence) only when asked for.
* Before every read and at the start of every write transaction the log checks
  ``PRAGMA data_version``: when another process committed, it reads the new rows
  (and, when that process evicted rows, rebuilds the index from the table).

Not thread-safe on its own: the store serialises every call under :attr:`mutex`
(appends through :attr:`group`), except the slices' payload reads, which take it
themselves.
Over 600 lines because :class:`SQLiteLog` is one idea, the ColumnLog interface
LogStore drives (some 30 methods: file state, index snapshot, appends, eviction,
reads) over one connection, and splitting it would split that state; group commit
(``sqlite_commit``) and reading rows back (``sqlite_rows``) have their own modules.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nova import _core
from nova._core import forksafe as _forksafe
from nova._core._columns_common import (
    _EVENT_TYPES,
    _ids_list,
    _objects_list,
    _types_list,
    restore_columns,
)
from nova._core.timeconv import timestamps_array
from nova.errors import StoreClosed, type_name
from nova.store.codecs import Codec
from nova.store.sqlite_commit import GroupCommit
from nova.store.sqlite_rows import RowSlice, fetch_rows

__all__ = ("SQLiteLog",)

_INSERT = "INSERT INTO events(seq, stream, pos, ts, type, id, meta, data) VALUES (?,?,?,?,?,?,?,?)"

def _undo_savepoint(conn: sqlite3.Connection, name: str) -> None:
    """Roll back to savepoint *name* and release it, after a failed statement.  When
    SQLite rolled the whole transaction back with the failure (``RAISE(ROLLBACK)``,
    an I/O error), there is no savepoint left: nothing to do, and the original error
    is what the caller raises (the write path sees the lost transaction)."""
    if conn.in_transaction:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")


def _end_read(conn: sqlite3.Connection) -> None:
    """End a read transaction, unless SQLite ended it with an error (then that error,
    not "no transaction is active", is what the caller sees)."""
    if conn.in_transaction:
        conn.execute("COMMIT")


class SQLiteLog:
    """The ColumnLog interface over a SQLite table (see the module docstring).

    (Size: one idea, the ~30 methods of the ColumnLog interface over one connection.)

    Args:
        conn: an open connection in autocommit mode (``isolation_level=None``) on a
            file whose schema exists.
        codec: the payload codec.
        kernel: the ColumnLog class for the index.
        wal_path: the WAL file to fsync after commits (``durability="full"``), or
            ``None`` when a commit is enough.
        on_change: called (mutex held) after rows written by another process were
            read, with the names of streams that appeared ``(name, code)``.

    Size: the ColumnLog interface over a SQLite table, method for method.
    """

    def __init__(
        self, conn: sqlite3.Connection, codec: Codec, kernel: Any, capacity: int = 1024, wal_path: str | None = None
    ) -> None:
        self._conn = conn
        self._codec = codec
        self._kernel = kernel
        self._capacity = capacity
        self.mutex = threading.Lock()
        #: Set by LogStore (the kernel's lock-free path flag); this log never reads it.
        self.fast = False
        self.on_change: Callable[[list[tuple[str, int]], bool], None] | None = None
        self._ix: Any = kernel(capacity)
        self._file_stream: list[int] = []  # index stream code -> file stream id (0: none yet)
        self._last_pos: list[int] = []  # index stream code -> last position given in the file
        self._stream_code: dict[int, int] = {}  # file stream id -> index code
        self._file_type: dict[int, int] = {}  # index type code -> file type id
        self._type_code: dict[int, int] = {}  # file type id -> index type code
        self._last_seq = 0
        self._max_stream_id = 0
        self._max_type_id = 0
        self._evict_gen = 0
        self._dv = -1
        self._snapshot_at: tuple[int, int] | None = None
        self._in_txn = False
        #: Successful commits so far (an append waits for an fsync that started after
        #: its own commit; see nova.store.sqlite_commit).
        self.commits = 0
        self._prepared: tuple[Sequence[Any], Any] | None = None
        self._wal_path = wal_path
        self._wal_fd: int | None = None
        self._wal_lock = threading.Lock()
        #: The commit path every append goes through (see nova.store.sqlite_commit).
        self.group = GroupCommit(
            self.mutex, self._begin_group, self.commit, lambda: self.commits, self._lost,
            None if wal_path is None else self.sync_wal,
        )
        self.closed = False

    # ------------------------------------------------------------------ file state
    def load(self) -> None:
        """Build the index from the table (mutex held, or before the log is shared)."""
        conn = self._conn
        # read before the snapshot: a commit in between is read again next time
        dv = conn.execute("PRAGMA data_version").fetchone()[0]
        conn.execute("BEGIN")
        try:
            self._rebuild()
            self._dv = dv
        finally:
            _end_read(conn)

    def _meta(self) -> tuple[int, int]:
        rows = dict(self._conn.execute("SELECT key, value FROM meta WHERE key IN ('evict_gen', 'last_seq')").fetchall())
        return int(rows.get("evict_gen", 0)), int(rows.get("last_seq", 0))

    def _rebuild(self) -> None:
        """A fresh index from the table, keeping every stream and type code (read
        transaction open)."""
        old = self._ix
        ix = self._kernel(self._capacity)
        snames, tnames = old.name_lists()
        for name in list(snames):
            ix.stream_code(name)
        for name in list(tnames):
            ix.type_code(name)
        self._ix = ix
        self._file_stream = [0] * len(snames)
        self._last_pos = [0] * len(snames)
        self._stream_code = {}
        self._file_type = {}
        self._type_code = {}
        self._max_stream_id = self._max_type_id = 0
        self._evict_gen, self._last_seq = self._meta()
        fresh = self._read_names()
        self._read_rows(self._load_snapshot())
        if self.on_change is not None:
            self.on_change(fresh, True)

    # ------------------------------------------------------------------ index snapshot
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Lookup tables file stream id -> index code, file type id -> index code."""
        stab = np.full(self._max_stream_id + 1, -1, dtype=np.int32)
        for sid, code in self._stream_code.items():
            stab[sid] = code
        ttab = np.full(self._max_type_id + 1, -1, dtype=np.int32)
        for tid, code in self._type_code.items():
            ttab[tid] = code
        return stab, ttab

    def _load_snapshot(self) -> int:
        """Fill the index from the snapshot of its columns the last close wrote, when no
        row was evicted since; return the last sequence it covers (0: none usable, the
        whole table is read).  Names are read already (txn open)."""
        rows = dict(self._conn.execute("SELECT name, value FROM snapshot").fetchall())
        head = rows.get("head")
        if head is None:
            return 0
        h = json.loads(head)
        if h.get("gen") != self._evict_gen or h.get("version") != 1:
            return 0
        cols = {k: np.frombuffer(rows[k], dtype=np.int64 if k in ("seq", "pos", "ts") else np.int32)
                for k in ("seq", "stream", "pos", "ts", "type")}
        n = int(h["rows"])
        if any(len(v) != n for v in cols.values()):
            return 0
        if n:
            stab, ttab = self._tables()
            if int(cols["stream"].max()) > self._max_stream_id or int(cols["type"].max()) > self._max_type_id:
                return 0
            self._ix.restore_rows(stab[cols["stream"]], ttab[cols["type"]], cols["ts"], cols["seq"], cols["pos"])
        last = int(h["last_seq"])
        self._last_seq = max(self._last_seq, last)
        self._snapshot_at = (self._evict_gen, last)
        return last

    def write_snapshot(self) -> None:
        """Write the index's columns to the file (in file ids), so the next open reads
        them instead of scanning the table; nothing when nothing changed since the
        last snapshot (mutex held).  Done at close."""
        self.sync()
        last = max(self._last_seq, self._ix.last_seq)
        if self._snapshot_at == (self._evict_gen, last):
            return
        self._begin()
        last = max(self._last_seq, self._ix.last_seq)
        sl = self._ix.since_sequence(0)
        fstream = np.asarray(self._file_stream, dtype=np.int32)
        ftype = np.zeros(len(self._ix.name_lists()[1]) + 1, dtype=np.int32)
        for code, tid in self._file_type.items():
            ftype[code] = tid
        head = json.dumps({"version": 1, "gen": self._evict_gen, "last_seq": last, "rows": len(sl)})
        conn = self._conn
        conn.execute("DELETE FROM snapshot")
        conn.executemany(
            "INSERT INTO snapshot(name, value) VALUES (?, ?)",
            [
                ("seq", np.ascontiguousarray(sl.seq, dtype=np.int64).tobytes()),
                ("stream", fstream[np.asarray(sl.stream)].tobytes()),
                ("pos", np.ascontiguousarray(sl.pos, dtype=np.int64).tobytes()),
                ("ts", np.ascontiguousarray(sl.ts, dtype=np.int64).tobytes()),
                ("type", ftype[np.asarray(sl.type)].tobytes()),
                ("head", head),
            ],
        )
        self.commit()
        self._snapshot_at = (self._evict_gen, last)

    def _read_names(self) -> list[tuple[str, int]]:
        """Streams and types added to the file since the last read (txn open)."""
        conn = self._conn
        ix = self._ix
        fresh: list[tuple[str, int]] = []
        for sid, name, last in conn.execute(
            "SELECT id, name, last_pos FROM streams WHERE id > ? ORDER BY id", (self._max_stream_id,)
        ).fetchall():
            code = ix.stream_code(name)
            while len(self._file_stream) <= code:
                self._file_stream.append(0)
                self._last_pos.append(0)
            self._file_stream[code] = sid
            self._last_pos[code] = max(self._last_pos[code], last)
            self._stream_code[sid] = code
            self._max_stream_id = sid
            fresh.append((name, code))
        for tid, name in conn.execute("SELECT id, name FROM types WHERE id > ? ORDER BY id", (self._max_type_id,)).fetchall():
            code = ix.type_code(name)
            self._file_type[code] = tid
            self._type_code[tid] = code
            self._max_type_id = tid
        return fresh

    def _read_rows(self, after: int) -> int:
        """Add the table's rows with seq > *after* to the index (txn open, names read)."""
        cur = self._conn.execute("SELECT seq, stream, pos, ts, type FROM events WHERE seq > ? ORDER BY seq", (after,))
        total = 0
        while True:
            rows = cur.fetchmany(262_144)
            if not rows:
                break
            arr = np.array(rows, dtype=np.int64).reshape(len(rows), 5)
            sids = arr[:, 1]
            tids = arr[:, 4]
            stab, ttab = self._tables()  # file ids -> index codes
            sc = stab[sids]
            self._ix.restore_rows(sc, ttab[tids], arr[:, 3], arr[:, 0], arr[:, 2])
            total += len(rows)
            last = int(arr[-1, 0])
            if last > self._last_seq:
                self._last_seq = last
        return total

    def sync(self) -> None:
        """Catch up with what other connections committed (mutex held)."""
        if self._in_txn or self.closed:
            return
        conn = self._conn
        dv = conn.execute("PRAGMA data_version").fetchone()[0]
        if dv == self._dv:
            return
        conn.execute("BEGIN")
        try:
            self._catch_up()
            self._dv = dv  # read before the snapshot: a later commit is read next time
        finally:
            _end_read(conn)

    def _catch_up(self) -> None:
        gen, last_seq = self._meta()
        if gen != self._evict_gen:
            self._rebuild()
            return
        fresh = self._read_names()
        n = self._read_rows(self._ix.last_seq if self._ix.last_seq > self._last_seq else self._last_seq)
        if last_seq > self._last_seq:
            self._last_seq = last_seq
        if (n or fresh) and self.on_change is not None:
            self.on_change(fresh, bool(n))

    def _begin(self) -> None:
        """Open the write transaction if none is open, caught up with the file."""
        if self._in_txn:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            dv = conn.execute("PRAGMA data_version").fetchone()[0]
            if dv != self._dv:
                self._catch_up()
                self._dv = dv
        except BaseException:
            if conn.in_transaction:  # (SQLite may have rolled it back with the error)
                conn.execute("ROLLBACK")
            self._in_txn = False
            raise

    # ------------------------------------------------------------------ commit
    def _begin_group(self) -> None:
        """Open the write transaction of an append (mutex held; nothing once the file
        is closed: the append then fails with StoreClosed)."""
        if not self.closed:
            self._begin()

    def _lost(self) -> bool:
        """After an append raised (mutex held): whether the open write transaction went
        with it (SQLite rolled it back after an I/O error or a full disk).  If so, the
        index is rebuilt from the file, which no longer has the transaction's rows."""
        if not self._in_txn or self._conn.in_transaction:
            return False
        self._in_txn = False
        self.load()
        return True

    def sync_wal(self) -> None:
        """fsync the WAL file: every commit made before the call is on disk after it
        (what ``synchronous=FULL`` does at each commit).  Called with no lock of the
        store held, so reads go on meanwhile (one at a time: see nova.store.sqlite_commit).

        The descriptor is opened once and kept: SQLite deletes (or replaces) the WAL
        only when the last connection to the file closes, and this one stays open
        until :meth:`close_wal`, which waits for a running fsync (so no ``stat`` or
        ``dup`` per call).  After the store was closed (an append committed before
        ``close()`` still waits for its fsync) the WAL is opened for this call only.
        """
        path = self._wal_path
        assert path is not None
        with self._wal_lock:
            fd = self._wal_fd
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    return  # checkpointed and removed at close (the database file was synced then)
                if self.closed:
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    return
                self._wal_fd = fd
            os.fsync(fd)

    def after_fork(self) -> None:
        """In a forked child: the store lock, the WAL lock and the fsync sharing state
        are re-created (a parent thread may have held them at the fork; it does not
        exist in the child)."""
        _forksafe.reinit_lock(self.mutex)
        _forksafe.reinit_lock(self._wal_lock)
        self.group.after_fork()
        # a transaction a parent thread had open is not this process's: never committed here
        self._in_txn = False

    def close_wal(self) -> None:
        """Close the WAL file descriptor :meth:`sync_wal` keeps."""
        with self._wal_lock:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

    def commit(self) -> None:
        """Commit the open write transaction now (mutex held).  On failure it is rolled
        back and the index rebuilt from the file."""
        if not self._in_txn:
            return
        conn = self._conn
        try:
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._in_txn = False
            self.load()
            raise
        self._in_txn = False  # our own commits leave data_version as it is
        self.commits += 1

    # ------------------------------------------------------------------ names
    def stream_code(self, name: str, create: bool = True) -> int:
        """The index code of stream *name* (see ``ColumnLog.stream_code``)."""
        code: int = self._ix.stream_code(name, create)
        while len(self._file_stream) <= code:
            self._file_stream.append(0)
            self._last_pos.append(0)
        return code

    def type_code(self, name: str, create: bool = True) -> int:
        """The index code of event type *name*."""
        return self._ix.type_code(name, create)  # type: ignore[no-any-return]

    def stream_names(self) -> list[str]:
        """Stream names by code (a copy)."""
        return self._ix.stream_names()  # type: ignore[no-any-return]

    def name_lists(self) -> tuple[list[str], list[str]]:
        """The live (stream names, type names) lists of the index."""
        return self._ix.name_lists()  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ appends
    def try_append(self, name: str, event: Any) -> int:
        """Never appends (every append goes through the store lock and the file)."""
        return 0

    def appender(self, fallback: Any) -> Any:
        """The store's own append path (no lock-free shortcut for a file)."""
        return fallback

    def encode(self, events: Sequence[Any]) -> Any:
        """Check and encode *events* (no lock needed: done before the append is
        queued); hand the result to :meth:`use_encoded` before the append.

        Raises:
            TypeError: an item is not an Event, or its data cannot be encoded.
        """
        return self._encode(events)

    def use_encoded(self, events: Sequence[Any], encoded: Any) -> None:
        """The next ``append_event(s)`` of *events* uses *encoded* (from
        :meth:`encode`) instead of encoding them again (mutex held)."""
        self._prepared = (events, encoded)

    def _take_prepared(self, events: Sequence[Any]) -> Any:
        p = self._prepared
        if p is None:
            return None
        self._prepared = None
        evs = p[0]
        if len(evs) == len(events) and all(a is b for a, b in zip(evs, events)):
            return p[1]
        return None

    def _encode(self, events: Sequence[Any]) -> tuple[np.ndarray, list[str], list[str], list[Any], list[Any]]:
        types = _EVENT_TYPES
        for i, ev in enumerate(events):
            if not isinstance(ev, types):
                raise TypeError(f"Expected an Event at index {i}, got {type_name(ev)}")
        k = len(events)
        ts = np.fromiter((e.timestamp for e in events), np.int64, k)
        datas = self._codec.encode_many([e.data for e in events])
        metas = [json.dumps(m, separators=(",", ":"), ensure_ascii=False) if m else None for m in (e.metadata for e in events)]
        return ts, [e.type for e in events], [e.id for e in events], metas, datas

    def append_event(self, code: int, event: Any) -> int:
        """Append one Event to stream *code*; return its position.

        Raises:
            TypeError: *event* is not an Event, or its data cannot be encoded.
        """
        if not isinstance(event, _EVENT_TYPES):
            raise TypeError(f"Expected an Event, got {type_name(event)}")
        return self.append_events(code, (event,))

    def append_events(self, code: int, events: Sequence[Any]) -> int:
        """Append Events to stream *code*, all or nothing; return the last position.

        Raises:
            TypeError: an item is not an Event, or its data cannot be encoded.
        """
        enc = self._take_prepared(events)
        if enc is None:
            enc = self._encode(events)
        if len(events) == 0:
            return self.stream_last_position(code)
        return self._write(code, *enc)

    def append_columns(self, code: int, types: object, timestamps: object, data: object = None, ids: object = None) -> int:
        """Append rows given as columns (see ``ColumnLog.append_columns``); rows
        without ids get new unique ids, stored with them.

        Raises:
            TypeError / ValidationError: a bad column; TypeError: data the codec
                cannot encode.
        """
        ts = timestamps_array(timestamps)
        k = len(ts)
        tl = _types_list(types, k)
        objs = [None] * k if data is None else _objects_list(data, k, "data")
        idl = [_core.new_id() for _ in range(k)] if ids is None else _ids_list(ids, k)
        if k == 0:
            return self.stream_last_position(code)
        datas = [None] * k if data is None else self._codec.encode_many(objs)
        return self._write(code, ts, [tl] * k if isinstance(tl, str) else tl, idl, [None] * k, datas)

    def _write(self, code: int, ts: np.ndarray, types: list[str], ids: list[str], metas: list[Any], datas: list[Any]) -> int:
        """Append rows to stream *code* with the next sequences and positions (mutex held)."""
        k = len(ts)
        self._begin()
        ix = self._ix
        seq0 = max(self._last_seq, ix.last_seq) + 1
        pos0 = self.stream_last_position(code) + 1
        if k == 1 and self._file_stream[code]:
            tc = ix.type_code(types[0])
            tid = self._file_type.get(tc)
            if tid:  # the common single append: one INSERT (atomic by itself), then the index
                t0 = int(ts[0])
                self._conn.execute(_INSERT, (seq0, self._file_stream[code], pos0, t0, tid, ids[0], metas[0], datas[0]))
                ix.restore_row(code, tc, t0, seq0, pos0)
                self._last_seq = seq0
                self._last_pos[code] = pos0
                return pos0
        self._insert(
            np.full(k, code, dtype=np.int32), ts, types, ids, metas, datas,
            np.arange(seq0, seq0 + k, dtype=np.int64), np.arange(pos0, pos0 + k, dtype=np.int64),
        )
        return pos0 + k - 1

    def write_rows(
        self, codes: np.ndarray, ts: np.ndarray, types: list[str], ids: list[str], metas: list[Any],
        datas: list[Any], seqs: np.ndarray, poss: np.ndarray,
    ) -> None:
        """Append rows whose streams, sequences and positions are given (a restored
        batch), all or nothing (mutex held).

        Raises:
            ValidationError: sequences not above the store's last sequence, or
                positions not above their stream's last position.
        """
        self._begin()
        last = np.asarray([self.stream_last_position(c) for c in range(len(self._last_pos))], dtype=np.int64)
        restore_columns(
            len(self._last_pos), len(self._ix.name_lists()[1]) + 1, max(self._last_seq, self._ix.last_seq) + 1,
            last, codes, np.zeros(len(codes), dtype=np.int32), ts, seqs, poss,
        )
        self._insert(codes, ts, types, ids, metas, datas, seqs, poss)

    def _insert(
        self, codes: np.ndarray, ts: np.ndarray, types: list[str], ids: list[str], metas: list[Any],
        datas: list[Any], seqs: np.ndarray, poss: np.ndarray,
    ) -> None:
        """Insert checked rows in the write transaction (one SAVEPOINT), then index
        them (mutex held, transaction open)."""
        k = len(ts)
        ix = self._ix
        conn = self._conn
        # the type codes, and whether a name is new to the file (no SQL yet)
        tcodes = np.empty(k, dtype=np.int32)
        ftype = self._file_type
        fresh_types: dict[int, str] = {}
        last_name = None
        tc = -1
        for i, name in enumerate(types):
            if name is not last_name:
                tc = ix.type_code(name)
                if tc not in ftype:
                    fresh_types[tc] = name
                last_name = name
            tcodes[i] = tc
        ucodes = [int(codes[0])] if k == 1 else np.unique(codes).tolist()
        fresh_streams = [c for c in ucodes if not self._file_stream[c]]
        # one INSERT statement is atomic by itself; anything more runs in a savepoint
        guarded = k > 1 or bool(fresh_types) or bool(fresh_streams)
        if guarded:
            conn.execute("SAVEPOINT nova_append")
        new_types: dict[int, int] = {}
        new_streams: dict[int, int] = {}
        try:
            names = ix.stream_names() if fresh_streams else None
            for code in fresh_streams:
                assert names is not None
                new_streams[code] = int(
                    conn.execute("INSERT INTO streams(name, last_pos) VALUES (?, 0)", (names[code],)).lastrowid or 0
                )
            for tc_, name in fresh_types.items():
                new_types[tc_] = int(conn.execute("INSERT INTO types(name) VALUES (?)", (name,)).lastrowid or 0)
            sids = {c: new_streams.get(c) or self._file_stream[c] for c in ucodes}
            if k == 1:
                conn.execute(_INSERT, (int(seqs[0]), sids[ucodes[0]], int(poss[0]), int(ts[0]),
                                       ftype.get(int(tcodes[0])) or new_types[int(tcodes[0])], ids[0], metas[0], datas[0]))
            else:
                tids = [ftype.get(t) or new_types[t] for t in tcodes.tolist()]
                col = [sids[ucodes[0]]] * k if len(ucodes) == 1 else [sids[c] for c in codes.tolist()]
                conn.executemany(_INSERT, zip(seqs.tolist(), col, poss.tolist(), ts.tolist(), tids, ids, metas, datas))
            if guarded:
                conn.execute("RELEASE nova_append")
        except BaseException:
            if guarded:
                _undo_savepoint(conn, "nova_append")
            raise
        for code, sid in new_streams.items():
            self._file_stream[code] = sid
            self._stream_code[sid] = code
            self._max_stream_id = max(self._max_stream_id, sid)
        for tc_, tid_ in new_types.items():
            self._file_type[tc_] = tid_
            self._type_code[tid_] = tc_
            self._max_type_id = max(self._max_type_id, tid_)
        ix.restore_rows(codes, tcodes, ts, seqs, poss)
        self._last_seq = max(self._last_seq, int(seqs[-1]))
        for code in ucodes:
            self._last_pos[code] = max(self._last_pos[code], ix.stream_last_position(code))

    # ------------------------------------------------------------------ eviction
    def _delete(self, seqs: np.ndarray, codes: np.ndarray) -> None:
        """Delete rows by seq in the write transaction and record it (mutex held)."""
        conn = self._conn
        self._begin()
        conn.execute("SAVEPOINT nova_evict")
        try:
            conn.executemany("DELETE FROM events WHERE seq = ?", ((s,) for s in seqs.tolist()))
            for c in np.unique(codes).tolist():
                conn.execute(
                    "UPDATE streams SET last_pos = ? WHERE id = ?",
                    (self.stream_last_position(c), self._file_stream[c]),
                )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (max(self._last_seq, self._ix.last_seq),),
            )
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'evict_gen'")
            conn.execute("RELEASE nova_evict")
        except BaseException:
            _undo_savepoint(conn, "nova_evict")
            raise
        self._evict_gen += 1
        self.commit()  # an eviction needs no fsync of its own: a lost one is redone

    def evict_before(self, cutoff: int) -> int:
        """Evict (delete) every row with timestamp < *cutoff*; return how many.  The
        deletion is committed at once (mutex held)."""
        self.sync()
        sl = self._ix.window(None, cutoff)
        if len(sl) == 0:
            return 0
        self._delete(sl.seq, sl.stream)
        k: int = self._ix.evict_before(cutoff)
        return k

    def evict_oldest(self, code: int, count: int) -> int:
        """Evict (delete) the *count* lowest live positions of stream *code*; return how
        many (committed at once, mutex held)."""
        self.sync()
        sl = self._ix.stream_slice(code, 0, count)
        if len(sl) == 0:
            return 0
        self._delete(sl.seq, sl.stream)
        return self._ix.evict_oldest(code, count)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ reads
    def window(self, start: Any, end: Any, stream_codes: Any = None, type_codes: Any = None) -> RowSlice:
        """Rows of ``[start, end)`` (index binary search; payloads read lazily)."""
        self.sync()
        return RowSlice(self, self._ix.window(start, end, stream_codes, type_codes), False)

    def stream_slice(self, code: int, after_position: int, limit: int | None = None) -> RowSlice:
        """Rows of stream *code* after a position (payloads read now)."""
        self.sync()
        return RowSlice(self, self._ix.stream_slice(code, after_position, limit), True)

    def since_sequence(self, after_seq: int, limit: int | None = None) -> RowSlice:
        """Rows of every stream after a sequence (payloads read now)."""
        self.sync()
        return RowSlice(self, self._ix.since_sequence(after_seq, limit), True)

    def stream_info(self, code: int) -> tuple[int, int, int, int]:
        """``(live, first_position, last_position, evicted)`` of stream *code*."""
        self.sync()
        live, first, _last, _ev = self._ix.stream_info(code)
        last = self.stream_last_position(code)
        return live, first, last, last - live

    def stream_last_position(self, code: int) -> int:
        """The last position ever given in stream *code*."""
        last: int = self._ix.stream_last_position(code)
        return max(last, self._last_pos[code] if code < len(self._last_pos) else 0)

    @property
    def last_seq(self) -> int:
        """The global sequence of the last row ever appended (by any process)."""
        self.sync()
        return max(self._ix.last_seq, self._last_seq)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        self.sync()
        return len(self._ix)

    def memory_bytes(self) -> int:
        """Bytes held by the index (the payloads stay in the file)."""
        return self._ix.memory_bytes()  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ payloads
    def fetch(self, seqs: np.ndarray, what: str, locked: bool = False) -> list[tuple[Any, ...]]:
        """Rows ``(seq, id, meta, data)`` (or ``(seq, <what>)``) for *seqs*, aligned
        (*locked*: the caller holds the mutex).

        Raises:
            EventEvicted: a row was deleted since *seqs* were taken.
            StoreClosed: the store was closed.
        """
        if len(seqs) == 0:
            return []
        if not locked:
            with self.mutex:
                return self.fetch(seqs, what, True)
        if self.closed:
            raise StoreClosed("Expected an open store to read the batch's rows from, got a closed one")
        return fetch_rows(self._conn, seqs, what)
