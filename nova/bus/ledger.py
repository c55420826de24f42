"""The Bus's counters: lanes of removed subscribers folded into totals, and the sum
that :meth:`nova.Bus.stats` reports.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterable

from nova.transport.base import Lane, LaneCounts

__all__ = ("Ledger",)

_ZERO = LaneCounts(*([0] * len(LaneCounts._fields)))


def _add(a: LaneCounts, b: LaneCounts) -> LaneCounts:
    return LaneCounts(*[x + y for x, y in zip(a, b)])


class Ledger:
    """Totals of the lanes a bus no longer serves.  Not thread-safe: the Bus calls it
    under its lock.

    Lanes of removed slots have their counters folded into the totals as soon as
    nothing of theirs is in flight (the lane, its slot and dedup window are then let
    go); a lane with a batch still in flight (its handler running) is kept until a
    later call finds it settled.  So what is kept is bounded by the handler calls
    running, not by the churn.
    """

    __slots__ = ("folded", "retired")

    def __init__(self) -> None:
        self.folded = _ZERO
        self.retired: list[Lane] = []  # lanes of removed slots with a batch still in flight

    def retire(self, lanes: Iterable[Lane] = ()) -> None:
        """Fold *lanes* (and retired lanes settled since) into the totals."""
        keep = []
        folded = self.folded
        for lane in [*self.retired, *lanes]:
            if lane.pending() == 0:
                folded = _add(folded, lane.counts())
            else:
                keep.append(lane)
        self.folded = folded
        self.retired = keep

    def pending_retired(self) -> list[Lane]:
        """Retired lanes with events still in flight."""
        return [lane for lane in self.retired if lane.pending()]

    def totals(self, live: Iterable[Lane]) -> tuple[LaneCounts, int]:
        """The counters summed over the folded lanes, the retired ones still in flight
        and *live*; and the events pending in the last two."""
        self.retire()
        sums = self.folded
        pending = 0
        for lane in [*live, *self.retired]:
            sums = _add(sums, lane.counts())
            pending += lane.pending()
        return sums, pending
