"""Output formats of ``nova replay`` (table, jsonl, csv, parquet), written a chunk of
rows at a time so a window of millions of events runs in constant memory.

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
import csv
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

from nova.errors import type_name

__all__ = ("FORMATS", "COLUMNS", "iso_ns", "rows_of", "Writer", "make_writer")

FORMATS = ("table", "jsonl", "csv", "parquet")
#: The columns every format writes, in order.
COLUMNS = ("time", "timestamp_ns", "stream", "position", "sequence", "type", "id", "data", "metadata")
CHUNK = 4096


def iso_ns(ns: int) -> str:
    """``2024-01-01T09:00:00.000000001Z`` for int ns since the epoch (UTC)."""
    sec, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return f"<{type_name(value)}: {value!r}>"


def rows_of(batch: Any, chunk: int = CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of an EventBatch, *chunk* at a time: tuples in :data:`COLUMNS` order
    (``data`` and ``metadata`` as JSON text).  Only one chunk of Events is decoded at a
    time."""
    n = len(batch)
    ts = batch.timestamps
    pos = batch.positions
    seq = batch.sequences
    sc = batch.stream_codes
    names = batch.streams
    events = iter(batch)
    for i in range(0, n, chunk):
        j = min(n, i + chunk)
        out = []
        for k in range(i, j):
            ev = next(events)
            t = int(ts[k])
            out.append((iso_ns(t), t, names[sc[k]], int(pos[k]), int(seq[k]), ev.type, ev.id,
                        _json(ev.data), _json(ev.metadata)))
        yield out


class Writer(abc.ABC):
    """Writes chunks of rows to *out*; :meth:`close` finishes the file."""

    def __init__(self, out: IO[Any]) -> None:
        self.out = out

    @abc.abstractmethod
    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Write one chunk of rows."""

    def close(self) -> None:
        self.out.flush()


class JSONLWriter(Writer):
    """One JSON object per line."""

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        w = self.out.write
        for r in rows:
            w('{"time":%s,"timestamp_ns":%d,"stream":%s,"position":%d,"sequence":%d,"type":%s,"id":%s,'
              '"data":%s,"metadata":%s}\n' % (_json(r[0]), r[1], _json(r[2]), r[3], r[4], _json(r[5]),
                                            _json(r[6]), r[7], r[8]))


class CSVWriter(Writer):
    """RFC 4180 CSV with a header row; data and metadata as JSON text."""

    def __init__(self, out: IO[Any]) -> None:
        super().__init__(out)
        self._w = csv.writer(out, lineterminator="\n")
        self._w.writerow(COLUMNS)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self._w.writerows(rows)


class TableWriter(Writer):
    """A fixed-width text table (streamed: widths do not depend on later rows)."""

    WIDTHS = (30, 16, 8, 20, 26)

    def __init__(self, out: IO[Any]) -> None:
        super().__init__(out)
        self._rows = 0
        out.write(self._line(("time", "stream", "position", "type", "id", "data")))
        out.write(self._line(tuple("-" * w for w in self.WIDTHS) + ("-" * 4,)))

    def _line(self, cells: tuple[str, ...]) -> str:
        parts = []
        for cell, width in zip(cells, self.WIDTHS):
            text = cell if len(cell) <= width else cell[: width - 1] + "…"
            parts.append(text.ljust(width))
        data = cells[-1]
        parts.append(data if len(data) <= 60 else data[:59] + "…")
        return "  ".join(parts).rstrip() + "\n"

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        w = self.out.write
        for r in rows:
            w(self._line((r[0], r[2], str(r[3]), r[5], r[6], r[7])))
        self._rows += len(rows)

    def close(self) -> None:
        self.out.write(f"({self._rows} events)\n")
        super().close()


class ParquetWriter(Writer):
    """Apache Parquet through pyarrow, one row group per chunk; ``time`` as
    ``timestamp[ns, UTC]``."""

    def __init__(self, out: IO[Any]) -> None:
        super().__init__(out)
        try:
            import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "Expected pyarrow for --format parquet, got it missing; install it with: "
                "pip install 'nova-events[arrow]'"
            ) from exc
        self._pa = pa
        self._schema = pa.schema([
            ("time", pa.timestamp("ns", tz="UTC")), ("timestamp_ns", pa.int64()), ("stream", pa.string()),
            ("position", pa.int64()), ("sequence", pa.int64()), ("type", pa.string()), ("id", pa.string()),
            ("data", pa.string()), ("metadata", pa.string()),
        ])
        self._writer = pq.ParquetWriter(out, self._schema)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cols = list(zip(*rows))
        arrays = [self._pa.array(cols[1], self._pa.int64()).cast(self._schema.field("time").type)]
        arrays += [self._pa.array(c, f.type) for c, f in zip(cols[1:], list(self._schema)[1:])]
        self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()
        super().close()


def make_writer(fmt: str, out: IO[Any]) -> Writer:
    """The writer of *fmt* (one of :data:`FORMATS`) over *out* (binary for parquet)."""
    kinds: dict[str, type[Writer]] = {
        "table": TableWriter, "jsonl": JSONLWriter, "csv": CSVWriter, "parquet": ParquetWriter,
    }
    return kinds[fmt](out)
