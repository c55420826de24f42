"""Reading windows of a :class:`~nova.store.RedisStore`: the event-time index, then
the entries, into an :class:`~nova.store.EventBatch` or Events.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from nova.store.batch import EventBatch
from nova.store.args import bound as _bound
from nova.store.args import check_include_system, is_system, names as _names
from nova.store.redis_rows import MEMBER_DTYPE, RedisRows, event_of, ts_bytes

__all__ = ("WindowReads",)

_PAGE = 10_000  # index members per page


def iter_fields(fields: list[Any], decode: Any) -> Iterator[Any]:
    """Events of entry fields, built as the caller iterates."""
    for f in fields:
        yield event_of(f, decode)


class WindowReads:
    """The window half of :class:`~nova.store.RedisStore` (a mixin; the store sets the
    attributes below)."""

    _client: Any
    _raw: Any
    codec: Any
    _k_meta: str
    _k_names: str
    _k_bycode: str
    _k_time: str
    _k_stream: str
    _names_by_code: dict[int, str]

    if TYPE_CHECKING:  # provided by RedisConnection and RedisStore

        def _guard(self, what: str) -> Any: ...

        def _check_open(self) -> None: ...

        def _expire(self) -> int: ...

    def _codes_of(self, names: list[str]) -> list[int]:
        if not names:
            return []
        with self._guard("reading stream names"):
            got = self._client.hmget(self._k_names, names)
        return [int(c) for c in got if c is not None]

    def _name_of_codes(self, codes: Iterable[int]) -> dict[int, str]:
        cache = self._names_by_code
        missing = [c for c in codes if c not in cache]
        if missing:
            with self._guard("reading stream names"):
                got = self._client.hmget(self._k_bycode, missing)
            for c, name in zip(missing, got):
                if name is not None:
                    cache[c] = name.decode()
        return cache

    def _rows(self, start: Any, end: Any, streams: Any, types: Any,
              include_system: bool = False) -> tuple[list[bytes], list[Any]]:
        """Index members and entry fields of ``[start, end)`` in (timestamp, sequence)
        order: a snapshot at the global sequence read with the first page.

        Each page is one ``ZRANGE BYLEX`` of the index (10,000 members), then one
        pipelined ``XRANGE`` per run of members that are consecutive positions of one
        stream (time-ordered appends make a window one run per stream), parsed
        without redis-py's dict-building callbacks."""
        s = _bound(start, "start")
        e = _bound(end, "end")
        snl = _names(streams, "streams")
        tnl = _names(types, "types")
        # system streams ("nova." names) are left out of a read over every stream
        skip_system = snl is None and not check_include_system(include_system)
        self._check_open()
        self._expire()
        if s is not None and e is not None and s >= e:
            return [], []
        codes: np.ndarray | None = None
        if snl is not None:
            codes = np.asarray(self._codes_of(snl), dtype=np.int64)
            if not len(codes):
                return [], []
        tset = None if tnl is None else {t.encode() for t in tnl}
        lo = b"-" if s is None else b"[" + ts_bytes(s)
        hi = b"+" if e is None else b"(" + ts_bytes(e)
        raw = self._raw
        members_out: list[bytes] = []
        fields_out: list[Any] = []
        maxseq = -1
        with self._guard("reading a window"):
            while True:
                if maxseq < 0:
                    p = raw.pipeline(transaction=True)
                    p.hget(self._k_meta, "seq")
                    p.execute_command("ZRANGE", self._k_time, lo, hi, "BYLEX", "LIMIT", 0, _PAGE)
                    head, members = p.execute()
                    maxseq = int(head or 0)
                else:
                    members = raw.execute_command("ZRANGE", self._k_time, lo, hi, "BYLEX", "LIMIT", 0, _PAGE)
                if members:
                    self._page(raw, members, maxseq, codes, tset, members_out, fields_out, skip_system)
                if len(members) < _PAGE:
                    break
                lo = b"(" + members[-1]
        return members_out, fields_out

    def _page(self, raw: Any, members: list[bytes], maxseq: int, codes: np.ndarray | None, tset: set[bytes] | None,
              members_out: list[bytes], fields_out: list[Any], skip_system: bool = False) -> None:
        arr = np.frombuffer(b"".join(members), dtype=MEMBER_DTYPE, count=len(members))
        seq = arr["seq"].astype(np.int64)
        code = arr["code"].astype(np.int64)
        pos = arr["pos"].astype(np.int64)
        keep = seq <= maxseq
        if codes is not None:
            keep &= np.isin(code, codes)
        idx = np.flatnonzero(keep)
        if not len(idx):
            return
        kc, kp, ks = code[idx], pos[idx], seq[idx]
        cut = np.flatnonzero((kc[1:] != kc[:-1]) | (kp[1:] != kp[:-1] + 1)) + 1
        starts = np.concatenate(([0], cut)).tolist()
        ends = np.concatenate((cut, [len(idx)])).tolist()
        names = self._name_of_codes(np.unique(kc).tolist())
        kcl, kpl, ksl, idl = kc.tolist(), kp.tolist(), ks.tolist(), idx.tolist()
        p = raw.pipeline(transaction=False)
        runs = []
        for a, b in zip(starts, ends):
            name = names.get(kcl[a])
            if name is None or (skip_system and is_system(name)):
                continue
            runs.append((a, b))
            p.execute_command("XRANGE", self._k_stream + name, f"{kpl[a]}-{ksl[a]}", f"{kpl[b - 1]}-{ksl[b - 1]}")
        for (a, b), entries in zip(runs, p.execute()):
            if len(entries) == b - a and tset is None:
                members_out.extend([members[i] for i in idl[a:b]])
                fields_out.extend([f for _id, f in entries])
                continue
            # evicted rows in the run, or a type filter: match by entry id
            by_id = {eid: f for eid, f in entries}
            for t in range(a, b):
                f = by_id.get(b"%d-%d" % (kpl[t], ksl[t]))
                if f is not None and (tset is None or f[3] in tset):
                    members_out.append(members[idl[t]])
                    fields_out.append(f)

    def _batch(self, members: list[bytes], fields: list[Any]) -> EventBatch:
        holder: list[str] = []

        def stream_codes(codes: np.ndarray) -> np.ndarray:
            uniq, inverse = np.unique(codes, return_inverse=True)
            names = self._name_of_codes(uniq.tolist())
            holder.extend(names.get(c, f"?{c}") for c in uniq.tolist())
            return inverse.astype(np.int32).reshape(len(codes))

        src = RedisRows(members, fields, stream_codes, self.codec.decode)
        return EventBatch(src, holder, src.type_names)

