"""Reading rows of a :class:`~nova.store.sqlite_log.SQLiteLog` back: :func:`fetch_rows`
(ids, metadata and payloads by global sequence) and :class:`RowSlice` (an
:class:`~nova.store.EventBatch` source whose numeric columns come from the index and
whose other columns are read from the file on demand).

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

from nova import _core
from nova.errors import EventEvicted

__all__ = ("fetch_rows", "RowSlice")

_Event: Any = _core.Event
_IN_CHUNK = 500


def fetch_rows(conn: sqlite3.Connection, seqs: np.ndarray, what: str) -> list[tuple[Any, ...]]:
    """Rows ``(seq, id, meta, data)`` (``what="all"``) or ``(seq, <what>)`` for *seqs*,
    aligned with them: one rowid range scan when the sequences are dense, ``IN`` lists
    of up to 500 otherwise.

    Raises:
        EventEvicted: a row is no longer in the file.
    """
    k = len(seqs)
    if k == 0:
        return []
    cols = "seq, id, meta, data" if what == "all" else f"seq, {what}"
    lo = int(seqs.min())
    hi = int(seqs.max())
    if hi - lo + 1 <= 2 * k:
        rows = conn.execute(f"SELECT {cols} FROM events WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchall()
        if hi - lo + 1 == k and len(rows) == k and bool((seqs[1:] > seqs[:-1]).all()):
            return rows
    else:
        rows = []
        sl = seqs.tolist()
        for i in range(0, k, _IN_CHUNK):
            part = sl[i : i + _IN_CHUNK]
            q = f"SELECT {cols} FROM events WHERE seq IN ({','.join('?' * len(part))})"
            rows += conn.execute(q, part).fetchall()
        rows.sort(key=lambda r: r[0])
    have = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    at = np.searchsorted(have, seqs)
    if len(have) == 0 or bool((at >= len(have)).any()) or bool((have[np.minimum(at, len(have) - 1)] != seqs).any()):
        raise EventEvicted("Expected the rows of this batch in the store file, got some evicted since it was taken")
    return [rows[i] for i in at.tolist()]


def _meta(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {} if text is None else json.loads(text)
    return out


class RowSlice:
    """Rows of a :class:`SQLiteLog` window: numeric columns from the index (numpy
    views), ids / payloads / metadata read from the file on demand (or at once when
    *eager*, for reads that hand out every row).  An :class:`~nova.store.EventBatch`
    source."""

    __slots__ = ("ts", "seq", "pos", "stream", "type", "_log", "_types", "_rows")

    def __init__(self, log: Any, sl: Any, eager: bool) -> None:
        self.ts = sl.ts
        self.seq = sl.seq
        self.pos = sl.pos
        self.stream = sl.stream
        self.type = sl.type
        self._log = log
        self._types = log.name_lists()[1]
        self._rows: list[tuple[Any, ...]] | None = log.fetch(sl.seq, "all", True) if eager and len(sl) else None

    def __len__(self) -> int:
        return len(self.ts)

    def _fetch(self, i: int, j: int) -> list[tuple[Any, ...]]:
        if self._rows is not None:
            return self._rows[i:j]
        rows: list[tuple[Any, ...]] = self._log.fetch(self.seq[i:j], "all")
        return rows

    def event(self, i: int) -> Any:
        """Row *i* as an Event."""
        return self.events(i, i + 1)[0]

    def events(self, i: int = 0, j: int | None = None) -> list[Any]:
        """Rows ``[i, j)`` as Events (payloads decoded)."""
        n = len(self.ts)
        j = n if j is None or j > n else j
        i = max(i, 0)
        if i >= j:
            return []
        rows = self._fetch(i, j)
        decode = self._log._codec.decode
        names = self._types
        ts = self.ts[i:j].tolist()
        tc = self.type[i:j].tolist()
        return [
            _Event(names[t], None if data is None else decode(data), id=id_, timestamp=stamp,
                   metadata=None if meta is None else json.loads(meta))
            for (_s, id_, meta, data), t, stamp in zip(rows, tc, ts)
        ]

    def ids(self) -> list[str]:
        """The event ids."""
        if self._rows is not None:
            return [r[1] for r in self._rows]
        return [r[1] for r in self._log.fetch(self.seq, "id")]

    def data(self) -> list[Any]:
        """The decoded payloads."""
        decode = self._log._codec.decode
        if self._rows is not None:
            return [None if r[3] is None else decode(r[3]) for r in self._rows]
        return [None if r[1] is None else decode(r[1]) for r in self._log.fetch(self.seq, "data")]

    def metadata(self) -> list[dict[str, str]]:
        """The metadata dicts."""
        if self._rows is not None:
            return [_meta(r[2]) for r in self._rows]
        return [_meta(r[1]) for r in self._log.fetch(self.seq, "meta")]

    def codec_bytes(self) -> list[bytes | None]:
        """The payloads as the codec's bytes (no decoding)."""
        if self._rows is not None:
            return [r[3] for r in self._rows]
        return [r[1] for r in self._log.fetch(self.seq, "data")]
