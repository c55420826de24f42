"""Exactly-once dedup: the event ids one subscriber has seen on one topic.

.. versionadded:: 0.1
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any

from nova.bus.config import DedupWindow

__all__ = ("Dedup", "own_id")


def own_id(eid: str) -> str:
    """An exact ``str`` equal to *eid* (a ``str`` subclass instance): the dedup window
    keeps ids for a long time and must not keep a caller's object (and what its
    attributes reference) alive."""
    return str.__str__(eid)


class Dedup:
    """The ids one subscriber has seen on one topic (see :class:`DedupWindow`).

    A count-only window is generational: ids go into ``cur``; when it holds
    ``max_ids`` it becomes ``prev`` (the older ``prev`` is dropped whole).  So the last
    ``max_ids`` ids are always remembered and at most ``2 * max_ids`` are kept, with no
    per-id eviction work.  A window with ``max_age`` keeps ids in arrival order with
    their time and forgets them one by one (exactly ``max_ids`` at most).

    Thread-safe through :meth:`claim` and :meth:`release`; the delivery fast path of an
    ungrouped subscriber (one thread) reads ``cur``/``prev`` directly.
    """

    __slots__ = ("cur", "prev", "seen", "order", "tokens", "max_ids", "max_age", "lock", "clock")

    def __init__(self, window: DedupWindow, clock: Any) -> None:
        self.cur: set[str] = set()
        self.prev: set[str] = set()
        self.seen: dict[str, int] = {}
        self.order: deque[tuple[float, int, str]] = deque()
        self.tokens = itertools.count()
        self.max_ids = window.max_ids
        self.max_age = window.max_age
        self.lock = threading.Lock()
        self.clock = clock

    def claim(self, eid: str) -> bool:
        """True if *eid* is new (and now remembered); False for a duplicate."""
        if type(eid) is not str:
            eid = own_id(eid)
        with self.lock:
            return self._claim(eid)

    def claim_many(self, eids: list[str]) -> list[bool]:
        """:meth:`claim` for each of *eids*, in order, under one lock acquisition (a
        batch of a group member: benchmark ratio_bus_redis.py "exactly-once cost")."""
        ids = [e if type(e) is str else own_id(e) for e in eids]
        with self.lock:
            claim = self._claim
            return [claim(e) for e in ids]

    def _claim(self, eid: str) -> bool:
        # Caller holds the lock.
        max_age = self.max_age
        if max_age is None:
            if eid in self.cur or eid in self.prev:
                return False
            self.cur.add(eid)
            if len(self.cur) >= self.max_ids:  # type: ignore[operator]
                self.prev = self.cur
                self.cur = set()
            return True
        now = self.clock.monotonic()
        horizon = now - max_age
        order, seen = self.order, self.seen
        while order and order[0][0] <= horizon:
            _, tok, old = order.popleft()
            if seen.get(old) == tok:
                del seen[old]
        if eid in seen:
            return False
        tok = next(self.tokens)
        seen[eid] = tok
        order.append((now, tok, eid))
        if self.max_ids is not None and len(order) > self.max_ids:
            _, tok, old = order.popleft()
            if seen.get(old) == tok:
                del seen[old]
        return True

    def release(self, eid: str) -> None:
        """Forget the claim of an event abandoned before it was processed."""
        if type(eid) is not str:
            eid = own_id(eid)
        with self.lock:
            self.cur.discard(eid)
            self.prev.discard(eid)
            self.seen.pop(eid, None)
