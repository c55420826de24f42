"""Redrive: replay dead letters from an EventStore, once, and report exactly what happened.

The dead-letter stream is append-only.  What a redrive did is recorded next to it, in
stream :data:`ACK_STREAM`: one ack event per entry that need not be replayed again

* ``ok``: the event was handled; every dead-letter entry of that event for that listener
  is skipped from then on;
* ``superseded``: the event failed again and its new dead letter went to the same
  store (that newer entry is the one a later redrive replays).

:func:`redrive` is the one implementation; :meth:`nova.ListenerManager.redrive` gives it
its listeners.  An open breaker stops the redrive early (``on_open="stop"``, the rest is
reported in ``left``) or waits on the clock until it half-opens (``on_open="wait"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from nova.resilience.deadletter import DEAD_LETTER_STREAM, restore_event

__all__ = ("RedriveReport", "Target", "redrive", "ACK_STREAM", "ACK_TYPE")

#: The stream the acks of redriven dead letters are appended to.
ACK_STREAM = "nova.deadletter.ack"
#: The event type of an ack.
ACK_TYPE = "nova.deadletter.ack"


class RedriveReport(NamedTuple):
    """What one redrive did.

    Attributes:
        replayed: entries run through their listener (``succeeded + failed_again``).
        succeeded: of those, handled.
        failed_again: of those, dead-lettered again.
        rejected: entries not run because the listener's breaker was open (the redrive
            stopped there with ``on_open="stop"``); they stay to be redriven.
        skipped: entries not run: acked by an earlier redrive, already handled in this
            one, of another or unknown listener, or outside the filter.
        left: entries not reached because the redrive stopped early (rejected ones
            excluded); they stay to be redriven.
        events: with ``dry_run=True``, the events that would be replayed (restored:
            original type, dead-letter metadata removed); empty otherwise.

    .. versionadded:: 0.2
    """

    replayed: int = 0
    succeeded: int = 0
    failed_again: int = 0
    rejected: int = 0
    skipped: int = 0
    left: int = 0
    events: tuple[Any, ...] = ()


class Target(NamedTuple):
    """Where an entry is redriven: ``run(event, topic) -> handled``; ``breaker`` (or
    ``None``) is asked first; ``same_store`` tells whether a new dead letter lands in
    the store redriven from."""

    run: Callable[[Any, str | None], bool]
    breaker: Any
    same_store: bool


def _key(meta: Any, ev: Any) -> str:
    return f"{meta.get('nova.listener')}\x1f{ev.id}\x1f{meta.get('nova.deadletter.timestamp', '')}"


def _acks(store: Any) -> tuple[set[str], set[str]]:
    entries: set[str] = set()
    handled: set[str] = set()
    for ack in store.replay(None, None, streams=[ACK_STREAM]):
        meta = ack.metadata
        key = meta.get("nova.redrive.entry")
        if key is None:
            continue
        entries.add(key)
        if meta.get("nova.redrive.outcome") == "ok":
            handled.add(key.rsplit("\x1f", 1)[0])
    return entries, handled


def redrive(
    store: Any,
    target: Callable[[str], Target | None],
    *,
    start: Any = None,
    end: Any = None,
    dry_run: bool = False,
    on_open: str = "stop",
    wait: Callable[[float], Any] | None = None,
    new_event: Callable[..., Any] | None = None,
) -> RedriveReport:
    """Replay the dead letters of *store* with timestamps in ``[start, end)``.

    *target(listener_id)* says where an entry goes (``None``: skipped).  *wait(seconds)*
    sleeps on the caller's clock (``on_open="wait"``).  *new_event(type, **kw)* makes
    an ack event (the ``nova.Event`` class).
    """
    if on_open not in ("stop", "wait"):
        raise ValueError(f"Expected on_open 'stop' or 'wait', got {on_open!r}")
    if on_open == "wait" and wait is None:
        raise ValueError("Expected a wait function with on_open='wait', got None")
    acked, handled = _acks(store)
    entries = list(store.replay(start, end, streams=[DEAD_LETTER_STREAM]))
    replayed = succeeded = failed = rejected = skipped = 0
    would: list[Any] = []
    for i, ev in enumerate(entries):
        meta = ev.metadata
        lid = meta.get("nova.listener")
        key = _key(meta, ev)
        tgt = target(lid) if lid is not None else None
        if tgt is None or key in acked or key.rsplit("\x1f", 1)[0] in handled:
            skipped += 1
            continue
        event = restore_event(ev)
        if dry_run:
            would.append(event)
            replayed += 1
            continue
        br = tgt.breaker
        if br is not None and br.state.value == "open":
            if on_open == "stop":
                rejected += 1
                return RedriveReport(replayed, succeeded, failed, rejected, skipped,
                                     len(entries) - i - 1)
            assert wait is not None
            while br.state.value == "open":
                wait(max(br.retry_after(), 1e-3))
        ok = tgt.run(event, meta.get("nova.topic"))
        replayed += 1
        if ok:
            succeeded += 1
            handled.add(key.rsplit("\x1f", 1)[0])
            outcome = "ok"
        else:
            failed += 1
            if not tgt.same_store:
                continue  # the entry stays the one to redrive
            outcome = "superseded"
        acked.add(key)
        if new_event is not None:
            store.append(ACK_STREAM, new_event(ACK_TYPE, None, metadata={
                "nova.redrive.entry": key, "nova.redrive.outcome": outcome,
                "nova.listener": str(lid), "nova.redrive.event": str(ev.id)}))
    return RedriveReport(replayed, succeeded, failed, rejected, skipped, 0, tuple(would))

