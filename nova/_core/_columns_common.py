"""What both ColumnLog twins need that is not a hot loop, written once.

:mod:`nova._core.columns_py` (the specification) and the compiled
:mod:`nova._core.columns` both import these: the constants of the layout, the argument
checks, and the numpy work of index maintenance and compaction (whole-array
operations, as fast from plain Python as from Cython).  The compiled twin keeps only
what must be compiled: the per-row loops of appends, reads, eviction and the id
formatting.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from nova import _core
from nova._core import event_py
from nova.errors import ValidationError

__all__ = (
    "FLAG_EVENT",
    "FLAG_DEAD",
    "MIN_CAPACITY",
    "MAX_CAPACITY",
    "MIN_GARBAGE",
    "INT64_MIN",
    "INT64_MAX",
    "NO_ROWS",
    "check_capacity",
    "refuse_name",
    "name_code",
    "check_limit",
    "check_slice_args",
    "alive_mask",
    "filter_rows",
    "collect_alive",
    "kill_rows",
    "grow_array",
    "check_rows",
    "extend_index",
    "Compaction",
    "trim_auto_ids",
    "release_types",
)

#: Row flag: the object column holds the Event itself (else a payload).
FLAG_EVENT = 1
#: Row flag: the row was evicted (a tombstone until compaction).
FLAG_DEAD = 2
#: Rows allocated at least (columns, stream row lists, the index).
MIN_CAPACITY = 16
#: The largest capacity that keeps an int64 column's size in bytes an int64.
MAX_CAPACITY = (2**63 - 1) // 8
#: Dead rows tolerated before a compaction is considered.
MIN_GARBAGE = 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: Shared by every stream with no rows: capacity 0, so nothing is ever written to it.
NO_ROWS = np.empty(0, dtype=np.int64)
NO_ROWS.flags.writeable = False


def check_capacity(capacity: object) -> int:
    """The rows to allocate for a requested *capacity* (an int in [0, MAX_CAPACITY]).

    Raises:
        TypeError: not an int.  ValueError: negative or too large.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"Expected capacity as an int, got {type(capacity).__name__}")
    if capacity < 0:
        raise ValueError(f"Expected capacity >= 0, got {capacity}")
    if capacity > MAX_CAPACITY:
        raise ValueError(f"Expected capacity <= {MAX_CAPACITY} rows, got {capacity}")
    return max(capacity, MIN_CAPACITY)


def refuse_name(name: object, what: str) -> NoReturn:
    """Raise for a *name* that is not a non-empty ``str`` (a stream name or an event
    type given to the log); *what* names it.

    Raises:
        ValidationError: always (called once the cheap check failed).
    """
    got = repr(name) if isinstance(name, str) else type(name).__name__
    raise ValidationError(f"Expected a non-empty str {what}, got {got}")


def name_code(index: dict[str, int], names: list[str], name: object, what: str, create: bool) -> int:
    """The code of *name* in a name table (``names[code] == name``, *index* the reverse
    map): a new code, appended, if *create*, else -1 when unknown.  *what* names the
    kind of name for the error.

    Raises:
        ValidationError: *name* is not a non-empty ``str``.
    """
    if not isinstance(name, str) or not name:
        refuse_name(name, what)
    code = index.get(name)
    if code is not None:
        return code
    if not create:
        return -1
    code = len(names)
    names.append(name)
    index[name] = code
    return code


def check_limit(limit: object) -> None:
    """Refuse a negative row *limit* (``None`` is no limit).

    Raises:
        ValueError: *limit* < 0.
    """
    if limit is not None and limit < 0:  # type: ignore[operator]
        raise ValueError(f"Expected limit >= 0 or None, got {limit}")


def check_slice_args(lo: object, hi: object, rows: object, n: int) -> tuple[int, int, np.ndarray | None]:
    """The arguments of a ``WindowSlice(log, lo, hi, rows)`` made from Python, checked
    against a log of *n* rows: ``(lo, hi, None)`` for rows ``[lo, hi)``, or
    ``(0, 0, rows)`` with *rows* as int64 row indexes (see :func:`check_rows`).

    Raises:
        ValueError: bounds or rows outside ``[0, n)``.
    """
    if rows is None:
        if not _is_index(lo) or not _is_index(hi) or not 0 <= lo <= hi <= n:  # type: ignore[operator]
            raise ValueError(
                f"Expected rows lo, hi with 0 <= lo <= hi <= {n}, got {lo!r}, {hi!r}"
            )
        return int(lo), int(hi), None  # type: ignore[call-overload]
    return 0, 0, check_rows(rows, n)


def _is_index(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def alive_mask(rows: np.ndarray, start: int, flags: np.ndarray) -> np.ndarray:
    """Which of *rows* are alive: at or after the log's first row *start* and not
    tombstoned in *flags*."""
    mask: np.ndarray = (rows >= start) & ((flags[rows] & FLAG_DEAD) == 0)
    return mask


def filter_rows(
    rows: np.ndarray,
    streams: np.ndarray,
    types: np.ndarray,
    stream_codes: Sequence[int] | None,
    type_codes: Sequence[int] | None,
) -> np.ndarray:
    """The rows among *rows* whose stream code (column *streams*) is one of
    *stream_codes* and whose type code (column *types*) is one of *type_codes*
    (``None``: any)."""
    if stream_codes is not None:
        rows = rows[np.isin(streams[rows], np.asarray(list(stream_codes), dtype=np.int32))]
    if type_codes is not None:
        rows = rows[np.isin(types[rows], np.asarray(list(type_codes), dtype=np.int32))]
    return rows


def collect_alive(
    index: np.ndarray | None, lo: int, hi: int, limit: int | None, start: int, flags: np.ndarray, dead: int
) -> np.ndarray:
    """The alive rows among ``index[lo:hi]`` (``index=None``: the physical rows
    ``lo..hi``), the first *limit* of them (``None``: all), gathered in chunks that
    double so that a small limit reads little.  *start* and *flags* are the log's
    (see :func:`alive_mask`); with *start* 0 and no *dead* row every row is alive."""
    want = (hi - lo) if limit is None else min(limit, hi - lo)
    parts: list[np.ndarray] = []
    got = 0
    i = lo
    chunk = max(want, 64)
    while got < want and i < hi:
        j = min(hi, i + chunk)
        rows = index[i:j] if index is not None else np.arange(i, j, dtype=np.int64)
        if dead or start:
            rows = rows[alive_mask(rows, start, flags)]
        if got + len(rows) > want:
            rows = rows[: want - got]
        parts.append(rows)
        got += len(rows)
        i = j
        chunk *= 2
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def kill_rows(flags: np.ndarray, streams: np.ndarray, rows: np.ndarray, nstreams: int) -> list[tuple[int, int]]:
    """Tombstone *rows* (alive rows) in *flags*; return ``(stream code, rows killed)``
    for each of the *nstreams* streams that lost some (column *streams*)."""
    flags[rows] |= FLAG_DEAD
    counts = np.bincount(streams[rows], minlength=nstreams)
    codes = np.flatnonzero(counts)
    return list(zip(codes.tolist(), counts[codes].tolist()))


def grow_array(arr: np.ndarray, used: int, need: int) -> np.ndarray:
    """A larger copy of *arr* (its first *used* items kept) with room for *need*
    items: grows by half at least."""
    cap = max(need, len(arr) + len(arr) // 2, MIN_CAPACITY)
    new = np.empty(cap, dtype=arr.dtype)
    new[:used] = arr[:used]
    return new


def check_rows(rows: object, n: int) -> np.ndarray:
    """*rows* as a 1-d int64 array of row indexes in [0, n) (ValueError otherwise)."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(
            f"Expected rows as a 1-d array of int row indexes, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        raise ValueError(
            f"Expected row indexes in [0, {n}), got values in [{int(arr.min())}, {int(arr.max())}]"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def extend_index(
    ts: np.ndarray,
    perm: np.ndarray | None,
    perm_ts: np.ndarray | None,
    perm_start: int,
    perm_n: int,
    perm_rows: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Bring the (timestamp, sequence) permutation of an out-of-order log up to date
    with its first *n* rows; return ``(perm, perm_ts, perm_start, perm_n)`` (the
    permutation covers rows ``[0, n)`` afterwards).

    The index is ``perm[perm_start:perm_n]``, row numbers in (timestamp, row) order,
    with their timestamps in ``perm_ts``; it covers the first *perm_rows* rows.  New
    rows are sorted (stably) and appended when they all come after the indexed ones,
    else merged in.
    """
    if perm is None or perm_ts is None:
        order = np.argsort(ts[:n], kind="stable").astype(np.int64)
        cap = max(n + n // 2, MIN_CAPACITY)
        perm = np.empty(cap, dtype=np.int64)
        perm_ts = np.empty(cap, dtype=np.int64)
        perm[:n] = order
        perm_ts[:n] = ts[order]
        return perm, perm_ts, 0, n
    if perm_rows == n:
        return perm, perm_ts, perm_start, perm_n
    new_rows = np.arange(perm_rows, n, dtype=np.int64)
    nts = ts[perm_rows:n]
    order = np.argsort(nts, kind="stable")
    new_rows = new_rows[order]
    nts = nts[order]
    k = len(new_rows)
    s, e = perm_start, perm_n
    if e == s or nts[0] >= perm_ts[e - 1]:
        if e + k > len(perm):
            perm = grow_array(perm, e, e + k)
            perm_ts = grow_array(perm_ts, e, e + k)
        perm[e : e + k] = new_rows
        perm_ts[e : e + k] = nts
        return perm, perm_ts, s, e + k
    cur = perm[s:e]
    cur_ts = perm_ts[s:e]
    at = np.searchsorted(cur_ts, nts, side="right")
    merged = np.insert(cur, at, new_rows)
    merged_ts = np.insert(cur_ts, at, nts)
    m = len(merged)
    cap = max(m + m // 2, MIN_CAPACITY)
    perm = np.empty(cap, dtype=np.int64)
    perm_ts = np.empty(cap, dtype=np.int64)
    perm[:m] = merged
    perm_ts[:m] = merged_ts
    return perm, perm_ts, 0, m


class Compaction:
    """The plan to drop a log's dead rows: which rows stay (``keep``, ``m`` of them)
    and where each old row goes (``newrow``, -1 for a dropped one).

    Built from the flags of the first *n* rows (rows before *start* are dropped too);
    its methods give the compacted copies of the columns, of a stream's row list and
    of the time index.
    """

    __slots__ = ("alive", "keep", "newrow", "m", "cap")

    def __init__(self, flags: np.ndarray, start: int, n: int) -> None:
        alive = np.zeros(n, dtype=bool)
        alive[start:n] = (flags[start:n] & FLAG_DEAD) == 0
        keep = np.flatnonzero(alive)
        m = len(keep)
        newrow = np.full(n, -1, dtype=np.int64)
        newrow[keep] = np.arange(m, dtype=np.int64)
        self.alive = alive
        self.keep = keep
        self.newrow = newrow
        self.m = m
        self.cap = max(m + m // 2, MIN_CAPACITY)

    def take(self, arr: np.ndarray) -> np.ndarray:
        """The kept rows of column *arr*, in new storage of the compacted capacity."""
        out = np.empty(self.cap, dtype=arr.dtype)
        out[: self.m] = arr[self.keep]
        return out

    def take_list(self, values: list[Any]) -> list[Any]:
        """The kept items of an object column."""
        return [values[i] for i in self.keep.tolist()]

    def stream_rows(self, rows: np.ndarray, head: int, n: int) -> tuple[np.ndarray, int]:
        """A stream's live rows ``rows[head:n]`` renumbered: new storage (with room to
        grow; :data:`NO_ROWS` when none is left) and how many."""
        r = rows[head:n]
        r = self.newrow[r[self.alive[r]]]
        k = len(r)
        if not k:  # a stream emptied by eviction keeps no row storage (grown on its next push)
            return NO_ROWS, 0
        out = np.empty(max(k + k // 2, MIN_CAPACITY), dtype=np.int64)
        out[:k] = r
        return out, k

    def reindex(
        self, perm: np.ndarray, perm_start: int, perm_n: int, ts: np.ndarray
    ) -> tuple[bool, np.ndarray | None, np.ndarray | None, int, int]:
        """The time index of an out-of-order log after compaction (see :meth:`index`)
        as the log's new ``(sorted, perm, perm_ts, perm_n, perm_start)``: sorted with
        no index when the kept rows are in time order, else the renumbered index over
        the ``m`` kept rows (``perm_rows`` is then ``perm_n``)."""
        index = self.index(perm, perm_start, perm_n, ts)
        if index is None:  # the kept rows are in time order again
            return True, None, None, 0, 0
        return False, index[0], index[1], self.m, 0

    def index(self, perm: np.ndarray, perm_start: int, perm_n: int, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The time index ``perm[perm_start:perm_n]`` renumbered, with the compacted
        timestamp column *ts*: ``(perm, perm_ts)``, or ``None`` when the kept rows are
        already in time order (the log is sorted again)."""
        m = self.m
        p = perm[perm_start:perm_n]
        p = self.newrow[p[self.alive[p]]]
        if bool((p == np.arange(m)).all()):
            return None
        new_perm = np.empty(self.cap, dtype=np.int64)
        new_ts = np.empty(self.cap, dtype=np.int64)
        new_perm[:m] = p
        new_ts[:m] = ts[p]
        return new_perm, new_ts


def trim_auto_ids(auto_seq: list[int], auto_ms: list[int], first: int) -> tuple[list[int], list[int]]:
    """Drop the auto-id runs that end before sequence *first* (the first kept row):
    new lists when some go, so slices taken earlier keep theirs."""
    if len(auto_seq) > 1:
        k = bisect_right(auto_seq, first) - 1
        if k > 0:
            return auto_seq[k:], auto_ms[k:]
    return auto_seq, auto_ms


def release_types(types: np.ndarray, m: int, type_names: list[str]) -> list[str] | None:
    """The type names the first *m* rows of column *types* still use, with the codes
    renumbered densely in place; ``None`` (nothing changed) when every name is used."""
    t = len(type_names)
    if t == 0:
        return None
    used = np.bincount(types[:m], minlength=t) if m else np.zeros(t, dtype=np.int64)
    if bool(used.all()):
        return None
    keep = np.flatnonzero(used)
    remap = np.full(t, -1, dtype=np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    types[:m] = remap[types[:m]]
    return [type_names[c] for c in keep.tolist()]


def _tname(value: object) -> str:
    return type(value).__name__


def _event_types() -> tuple[type, ...]:
    types: list[type] = [event_py.Event]
    active = _core.Event
    if active is not event_py.Event:
        types.insert(0, active)
    return tuple(types)


_EVENT_TYPES = _event_types()


# ---- the checks of append_columns / restore_rows arguments (both twins and SQLiteLog)
def _types_list(types: object, n: int) -> list[str] | str:
    """Validate *types*: one str for every row, or a sequence of n non-empty str."""
    if isinstance(types, str):
        if not types:
            raise ValidationError("Expected a non-empty str event type, got ''")
        return types
    if isinstance(types, np.ndarray):
        if types.ndim != 1:
            raise ValidationError(f"Expected 1-D types, got an array of shape {types.shape}")
        items = types.tolist()
    elif isinstance(types, Sequence) and not isinstance(types, bytes):
        items = list(types)
    else:
        raise TypeError(f"Expected types as a str or a sequence of str, got {_tname(types)}")
    if len(items) != n:
        raise ValidationError(f"Expected {n} types (one per event), got {len(items)}")
    for i, t in enumerate(items):
        if type(t) is str and t:
            continue
        if isinstance(t, bytes):
            t = t.decode("utf-8")
        if not isinstance(t, str) or not t:
            got = repr(t) if isinstance(t, str) else _tname(t)
            raise ValidationError(f"Expected non-empty str event types, got {got} at index {i}")
        items[i] = str(t)
    out: list[str] = items
    return out


def _objects_list(values: object, n: int, name: str) -> list[Any]:
    if type(values) is list:
        if len(values) != n:
            raise ValidationError(f"Expected {n} {name} (one per event), got {len(values)}")
        same: list[Any] = values
        return same
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValidationError(f"Expected 1-D {name}, got an array of shape {values.shape}")
        items = values.tolist()
    elif isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        items = list(values)
    else:
        raise TypeError(f"Expected {name} as a sequence, got {_tname(values)}")
    if len(items) != n:
        raise ValidationError(f"Expected {n} {name} (one per event), got {len(items)}")
    result: list[Any] = items
    return result


def _ids_list(ids: object, n: int) -> list[str]:
    items = _objects_list(ids, n, "ids")
    for i, v in enumerate(items):
        if not isinstance(v, str) or not v:
            got = repr(v) if isinstance(v, str) else _tname(v)
            raise ValidationError(f"Expected non-empty str event ids, got {got} at index {i}")
    return items


def restore_columns(
    log_streams: int,
    log_types: int,
    next_seq: int,
    last_positions: np.ndarray,
    stream_codes: object,
    type_codes: object,
    timestamps: object,
    sequences: object,
    positions: object,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the columns of :meth:`ColumnLog.restore_rows` (both twins use it) and
    return them as contiguous ``(stream int32, type int32, ts, seq, pos int64)`` arrays.

    *last_positions* holds each stream's last position (indexed by code).

    Raises:
        TypeError: a column is not a sequence or array of ints.
        ValidationError: columns of different lengths, an unknown stream or type code,
            sequences not increasing from *next_seq*, positions not increasing past
            their stream's last position.
    """
    cols = []
    for name, values, dtype in (
        ("stream_codes", stream_codes, np.int32),
        ("type_codes", type_codes, np.int32),
        ("timestamps", timestamps, np.int64),
        ("sequences", sequences, np.int64),
        ("positions", positions, np.int64),
    ):
        arr = np.asarray(values)
        if arr.ndim != 1 or (len(arr) and arr.dtype.kind not in "iu"):
            raise TypeError(f"Expected {name} as a 1-D array of ints, got {arr.dtype} of shape {arr.shape}")
        cols.append(np.ascontiguousarray(arr, dtype=dtype))
    sc, tc, ts, seq, pos = cols
    seq_: Any = seq
    k = len(sc)
    if not len(tc) == len(ts) == len(seq) == len(pos) == k:
        raise ValidationError(
            f"Expected columns of one length, got {k}, {len(tc)}, {len(ts)}, {len(seq)} and {len(pos)}"
        )
    if k == 0:
        return sc, tc, ts, seq, pos
    if k == 1:  # one row (a durable store's single append): scalar checks
        c, t, q, p = int(sc[0]), int(tc[0]), int(seq[0]), int(pos[0])
        if not 0 <= c < log_streams:
            raise ValidationError(f"Expected stream codes in [0, {log_streams}), got {c}..{c}")
        if not 0 <= t < log_types:
            raise ValidationError(f"Expected type codes in [0, {log_types}), got {t}..{t}")
        if q < next_seq:
            raise ValidationError(f"Expected sequences increasing from {next_seq}, got {[q]}...")
        if p <= int(last_positions[c]):
            raise ValidationError(
                f"Expected positions increasing past the stream's last position {int(last_positions[c])}, "
                f"got {p} in stream code {c}"
            )
        return sc, tc, ts, seq, pos
    if int(sc.min()) < 0 or int(sc.max()) >= log_streams:
        raise ValidationError(f"Expected stream codes in [0, {log_streams}), got {int(sc.min())}..{int(sc.max())}")
    if int(tc.min()) < 0 or int(tc.max()) >= log_types:
        raise ValidationError(f"Expected type codes in [0, {log_types}), got {int(tc.min())}..{int(tc.max())}")
    if int(seq[0]) < next_seq or (k > 1 and bool((seq_[1:] <= seq_[:-1]).any())):
        raise ValidationError(f"Expected sequences increasing from {next_seq}, got {seq[:8].tolist()}...")
    # per stream, positions must increase past the stream's last position
    order = np.lexsort((seq, sc))
    s_sorted = sc[order]
    p_sorted: Any = pos[order]
    first = np.ones(k, dtype=bool)
    first[1:] = s_sorted[1:] != s_sorted[:-1]
    prev: Any = np.empty(k, dtype=np.int64)
    prev[1:] = p_sorted[:-1]
    prev[first] = last_positions[s_sorted[first]]
    if bool((p_sorted <= prev).any()):
        bad = int(np.flatnonzero(p_sorted <= prev)[0])
        raise ValidationError(
            f"Expected positions increasing past the stream's last position {int(prev[bad])}, "
            f"got {int(p_sorted[bad])} in stream code {int(s_sorted[bad])}"
        )
    return sc, tc, ts, seq, pos
