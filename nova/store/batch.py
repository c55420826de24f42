"""EventBatch: a columnar result (numpy arrays + names), iterable as Events, with
pandas and Arrow conversions.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ("EventBatch",)


class _ListSource:
    """A :class:`EventBatch` source over plain lists (for backends without columns)."""

    __slots__ = ("ts", "seq", "pos", "stream", "type", "_events")

    def __init__(
        self,
        events: list[Any],
        ts: np.ndarray,
        seq: np.ndarray,
        pos: np.ndarray,
        stream: np.ndarray,
        type_: np.ndarray,
    ) -> None:
        self._events = events
        self.ts, self.seq, self.pos, self.stream, self.type = ts, seq, pos, stream, type_

    def __len__(self) -> int:
        return len(self._events)

    def event(self, i: int) -> Any:
        return self._events[i]

    def events(self, i: int = 0, j: int | None = None) -> list[Any]:
        return self._events[i:j]

    def ids(self) -> list[str]:
        return [e.id for e in self._events]

    def data(self) -> list[Any]:
        return [e.data for e in self._events]

    def metadata(self) -> list[dict[str, str]]:
        return [e.metadata for e in self._events]


_CHUNK = 4096


class EventBatch:
    """A columnar batch of events (what ``window()`` returns).

    Numeric columns are numpy arrays (zero-copy views of the store's columns when
    possible; treat them as read-only): :attr:`timestamps` (int64 ns), :attr:`sequences`
    (int64, global append order), :attr:`positions` (int64, position in its stream),
    :attr:`stream_codes` and :attr:`type_codes` (int32).  Names are categorical:
    ``batch.streams[batch.stream_codes[i]]`` is the stream of row *i* and
    ``batch.types[batch.type_codes[i]]`` its type.  :attr:`ids`, :attr:`data` and
    :attr:`metadata` are lists built on first access.

    ``len(batch)``, ``batch[i]`` (an Event) and iteration (Events, in row order) work;
    :meth:`to_pandas` and :meth:`to_arrow` export it.  A batch is a snapshot: later
    appends or evictions do not change it.
    """

    __slots__ = ("_src", "_stream_names", "_type_names", "_ids", "_data", "_metadata", "_streams", "_types")

    def __init__(self, source: Any, stream_names: Sequence[str], type_names: Sequence[str]) -> None:
        self._src = source
        self._stream_names = stream_names
        self._type_names = type_names
        self._ids: list[str] | None = None
        self._data: list[Any] | None = None
        self._metadata: list[dict[str, str]] | None = None
        self._streams: tuple[str, ...] | None = None
        self._types: tuple[str, ...] | None = None

    @classmethod
    def from_events(
        cls,
        events: Sequence[Any],
        *,
        streams: Sequence[str],
        positions: Sequence[int],
        sequences: Sequence[int],
    ) -> EventBatch:
        """Build a batch from Events and, per event, its stream, position and sequence
        (for store backends that keep rows rather than columns).

        Raises:
            ValueError: the sequences do not all have the same length.
        """
        n = len(events)
        if not len(streams) == len(positions) == len(sequences) == n:
            raise ValueError(
                f"Expected streams, positions and sequences of length {n}, got "
                f"{len(streams)}, {len(positions)} and {len(sequences)}"
            )
        snames: dict[str, int] = {}
        tnames: dict[str, int] = {}
        sc = np.fromiter((snames.setdefault(s, len(snames)) for s in streams), np.int32, n)
        tc = np.fromiter((tnames.setdefault(e.type, len(tnames)) for e in events), np.int32, n)
        src = _ListSource(
            list(events),
            np.fromiter((e.timestamp for e in events), np.int64, n),
            np.asarray(sequences, dtype=np.int64).reshape(n),
            np.asarray(positions, dtype=np.int64).reshape(n),
            sc,
            tc,
        )
        return cls(src, list(snames), list(tnames))

    # -- columns
    @property
    def timestamps(self) -> np.ndarray:
        """int64 nanoseconds since the epoch (UTC), one per row."""
        return self._src.ts  # type: ignore[no-any-return]

    @property
    def sequences(self) -> np.ndarray:
        """int64 global sequence (append order across streams), one per row."""
        return self._src.seq  # type: ignore[no-any-return]

    @property
    def positions(self) -> np.ndarray:
        """int64 position in the row's stream (from 1), one per row."""
        return self._src.pos  # type: ignore[no-any-return]

    @property
    def stream_codes(self) -> np.ndarray:
        """int32 stream codes, indexes into :attr:`streams`."""
        return self._src.stream  # type: ignore[no-any-return]

    @property
    def type_codes(self) -> np.ndarray:
        """int32 type codes, indexes into :attr:`types`."""
        return self._src.type  # type: ignore[no-any-return]

    @property
    def streams(self) -> tuple[str, ...]:
        """Stream names indexed by code (may name streams that have no row here)."""
        if self._streams is None:
            self._streams = tuple(self._stream_names)
        return self._streams

    @property
    def types(self) -> tuple[str, ...]:
        """Event type names indexed by code (may name types that have no row here)."""
        if self._types is None:
            self._types = tuple(self._type_names)
        return self._types

    @property
    def ids(self) -> list[str]:
        """Event ids, one per row."""
        if self._ids is None:
            self._ids = self._src.ids()
        return self._ids

    @property
    def data(self) -> list[Any]:
        """Payloads, one per row."""
        if self._data is None:
            self._data = self._src.data()
        return self._data

    @property
    def metadata(self) -> list[dict[str, str]]:
        """Metadata dicts, one per row."""
        if self._metadata is None:
            self._metadata = self._src.metadata()
        return self._metadata

    # -- rows
    def __len__(self) -> int:
        return len(self._src)

    def __getitem__(self, i: int) -> Any:
        """Row *i* as an Event (negative indexes count from the end).

        Raises:
            IndexError: *i* out of range.  TypeError: *i* is not an int.
        """
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"Expected an int row index, got {type(i).__name__}")
        n = len(self._src)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"Expected a row index in [-{n}, {n}), got {i}")
        return self._src.event(j)

    def __iter__(self) -> Iterator[Any]:
        src = self._src
        n = len(src)
        for i in range(0, n, _CHUNK):
            yield from src.events(i, i + _CHUNK)

    def events(self) -> list[Any]:
        """Every row as an Event, in row order."""
        return self._src.events(0, len(self._src))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<EventBatch rows={len(self)} streams={len(self._stream_names)} types={len(self._type_names)}>"

    # -- exports
    def to_pandas(self) -> Any:
        """A :class:`pandas.DataFrame` with columns ``timestamp`` (datetime64[ns, UTC]),
        ``sequence``, ``stream`` (categorical), ``position``, ``type`` (categorical),
        ``id``, ``data`` and ``metadata``.

        Raises:
            ImportError: pandas is not installed (``pip install 'nova-events[pandas]'``).
        """
        try:
            import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "EventBatch.to_pandas() needs pandas; install it with `pip install 'nova-events[pandas]'`"
            ) from exc
        return pd.DataFrame(
            {
                "timestamp": pd.to_datetime(np.asarray(self.timestamps), unit="ns", utc=True),
                "sequence": np.asarray(self.sequences),
                "stream": pd.Categorical.from_codes(np.asarray(self.stream_codes), categories=self._categories(self.streams)),
                "position": np.asarray(self.positions),
                "type": pd.Categorical.from_codes(np.asarray(self.type_codes), categories=self._categories(self.types)),
                "id": self.ids,
                "data": self.data,
                "metadata": self.metadata,
            }
        )

    @staticmethod
    def _categories(names: tuple[str, ...]) -> list[str]:
        return list(names)

    def to_arrow(self, *, include_data: bool = True, data: str = "infer", codec: Any = "json") -> Any:
        """A :class:`pyarrow.Table` with columns ``timestamp`` (timestamp[ns, UTC]),
        ``sequence``, ``stream`` and ``type`` (dictionary-encoded), ``position``, ``id``
        and, if *include_data*, ``data``.

        *data* says how payloads are written:

        * ``"infer"`` (default): typed by pyarrow's inference (payloads of different
          shapes are merged into one struct: lossy, handy for analytics).
        * ``"json"`` / ``"bytes"``: the **lossless** archive form: payloads as JSON text
          or as *codec*'s bytes (``"json"``, ``"msgpack"``, ``"pickle"`` or a codec
          object), plus a ``metadata`` column (``map<string, string>``); the schema
          records the form, so :meth:`from_arrow` restores every field exactly.
        * ``"struct"``: inferred as with ``"infer"``, plus the ``metadata`` column.

        Raises:
            ImportError: pyarrow is not installed (``pip install 'nova-events[arrow]'``).
            TypeError: the payloads have no common Arrow type (``"infer"``/``"struct"``;
                pass ``include_data=False``, or use ``data="json"``), or the codec
                cannot encode a payload.
            ValueError: an unknown *data* form.
        """
        if data not in ("infer", "json", "bytes", "struct"):
            raise ValueError(f"Expected data among ('infer', 'json', 'bytes', 'struct'), got {data!r}")
        try:
            import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "EventBatch.to_arrow() needs pyarrow; install it with `pip install 'nova-events[arrow]'`"
            ) from exc
        streams = pa.array(list(self.streams), pa.string())
        types = pa.array(list(self.types), pa.string())
        cols: dict[str, Any] = {
            "timestamp": pa.array(np.asarray(self.timestamps), pa.timestamp("ns", tz="UTC")),
            "sequence": pa.array(np.asarray(self.sequences)),
            "stream": pa.DictionaryArray.from_arrays(pa.array(np.asarray(self.stream_codes)), streams),
            "position": pa.array(np.asarray(self.positions)),
            "type": pa.DictionaryArray.from_arrays(pa.array(np.asarray(self.type_codes)), types),
            "id": pa.array(self.ids, pa.string()),
        }
        schema_meta: dict[bytes, bytes] = {}
        if data != "infer":
            cols["metadata"] = pa.array([list(m.items()) for m in self.metadata], pa.map_(pa.string(), pa.string()))
            schema_meta[b"nova.data"] = data.encode()
        if include_data:
            if data in ("infer", "struct"):
                try:
                    cols["data"] = pa.array(self.data)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
                    raise TypeError(
                        f"Expected payloads pyarrow can type, got ({exc}); "
                        "pass include_data=False or use to_pandas()"
                    ) from exc
            else:
                from nova.store.codecs import get_codec

                c = get_codec("json" if data == "json" else codec)
                encoded = c.encode_many(self.data)
                if data == "json":
                    cols["data"] = pa.array([None if b is None else b.decode("utf-8") for b in encoded], pa.string())
                else:
                    cols["data"] = pa.array(encoded, pa.binary())
                    schema_meta[b"nova.codec"] = c.name.encode()
        table = pa.table(cols)
        return table.replace_schema_metadata(schema_meta) if schema_meta else table

    @classmethod
    def from_arrow(cls, table: Any, *, codec: Any = None) -> EventBatch:
        """The batch a lossless :meth:`to_arrow` table (``data="json"`` or ``"bytes"``,
        read back from Parquet too) holds: every id, stream, position, sequence,
        timestamp, type, metadata and payload as they were.

        *codec*: for ``data="bytes"`` tables, the codec to decode with (``None``: the
        one recorded in the table, json or msgpack; pickle must be named).

        Raises:
            ValueError: the table is not a lossless export (no ``nova.data`` form or
                a missing column), or a pickle table without ``codec="pickle"``.
        """
        from nova._core import Event
        from nova.store.codecs import get_codec

        meta = table.schema.metadata or {}
        form = meta.get(b"nova.data", b"").decode()
        need = ("timestamp", "sequence", "stream", "position", "type", "id", "metadata")
        missing = [c for c in need if c not in table.column_names]
        if form not in ("json", "bytes", "struct") or missing:
            raise ValueError(
                "Expected a table from EventBatch.to_arrow(data='json' or 'bytes'), got "
                + (f"one without the columns {missing}" if missing else f"data form {form or 'infer'!r}")
            )
        n = table.num_rows
        ts = np.asarray(table.column("timestamp").cast("int64").to_numpy(), dtype=np.int64).reshape(n)
        ids = table.column("id").to_pylist()
        types = table.column("type").to_pylist()
        metas = [dict(m) if m else None for m in table.column("metadata").to_pylist()]
        if "data" not in table.column_names:
            datas: list[Any] = [None] * n
        elif form == "json":
            import json

            datas = [None if t is None else json.loads(t) for t in table.column("data").to_pylist()]
        elif form == "struct":
            datas = table.column("data").to_pylist()
        else:
            recorded = meta.get(b"nova.codec", b"json").decode()
            if codec is None and recorded not in ("json", "msgpack"):
                raise ValueError(f"Expected codec= naming the table's codec {recorded!r}, got None")
            c = get_codec(recorded if codec is None else codec)
            datas = [None if b is None else c.decode(b) for b in table.column("data").to_pylist()]
        events = [
            Event(t, d, id=i, timestamp=int(stamp), metadata=m)
            for t, d, i, stamp, m in zip(types, datas, ids, ts.tolist(), metas)
        ]
        return cls.from_events(
            events,
            streams=table.column("stream").to_pylist(),
            positions=table.column("position").to_numpy(),
            sequences=table.column("sequence").to_numpy(),
        )
