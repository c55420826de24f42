"""Redrive of the Bus's dead letters: :meth:`nova.Bus.redrive`.

The one implementation is :func:`nova.resilience.redrive.redrive` (idempotent through
ack records in stream ``"nova.deadletter.ack"``, breaker-aware, ``dry_run``); this
module tells it where a Bus dead letter goes back to.

An entry is **re-delivered to the subscriber that dead-lettered it** (its
``nova.listener`` on its ``nova.topic``), not re-published to the topic: every other
subscriber and consumer group already handled the event, and an exactly-once topic
would drop a re-published id as a duplicate.  This is what a Kafka user gets when a
consumer group's dead-letter topic is consumed by that group's own handler (Spring
Kafka's DLT handler, a per-connector errant-record replay) rather than produced back
to the source topic.  To send the events to every subscriber instead, take them from
``redrive(store, dry_run=True).events`` and ``publish`` them.

The entry runs through the same pipeline a delivery thread uses
(:class:`~nova.bus.delivery.Delivery`): the handler, its ``on_error`` and the bus's
hook on each failure, the topic's retry policy (backoffs on the bus clock) and, when
the attempts are spent, the topic's dead-letter config (a store sink appends a new
entry, which supersedes the old one).  A :class:`~nova.listener.ManagedListener`
subscriber applies its own policy (retries, breaker, dead letters), as on delivery.

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from typing import Any

from nova._util.loop import LoopThread
from nova.bus.delivery import ASYNC, HANDLED, MANAGED, Delivery, Member
from nova.resilience.redrive import RedriveReport, Target, redrive

__all__ = ("redrive_bus",)


class _Tally:
    """The lane a redrive counts on: redrive outcomes are reported in the
    :class:`~nova.resilience.redrive.RedriveReport`, not in ``Bus.stats()`` (which
    counts deliveries from the partitions), so nothing is kept but hook and sink
    errors, which are logged where they happen."""

    consumer: Any = None

    def count_handled(self, n: int = 1) -> None:
        pass

    def count_failed(self) -> None:
        pass

    def count_dead(self) -> None:
        pass

    def count_dups(self, n: int = 1) -> None:
        pass

    def count_retry(self) -> None:
        pass

    def count_hook_error(self) -> None:
        pass

    def count_dl_errors(self, n: int) -> None:
        pass


class _Caller:
    """The "consumer" of a redrive: the calling thread.  ``async def`` handlers run on
    a private loop thread (started on first need, closed when the redrive ends), so a
    redrive may be called from any thread."""

    stopping = False

    def __init__(self) -> None:
        self._loop: LoopThread | None = None
        self._stop = threading.Event()  # never set: a redrive's backoff sleeps in full

    def run_coroutine(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = LoopThread("nova-bus-redrive")
        return self._loop.run(coro)

    def wait_stop(self, seconds: float) -> bool:
        return self._stop.wait(seconds)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()


def _find(registry: Any, listener_id: str, topic: str) -> tuple[Member, Delivery] | None:
    """The subscription of *listener_id* on *topic* (the first one, if it subscribed
    more than once) and its subscriber slot; None when there is none now."""
    with registry.lock:
        for m in registry.members.values():
            if m.listener_id == listener_id:
                slot = m.slots.get(topic)
                if slot is not None:
                    return m, slot
    return None


def redrive_bus(
    registry: Any,
    clock: Any,
    store: Any,
    *,
    topic: str | None,
    listener_id: str | None,
    start: Any,
    end: Any,
    dry_run: bool,
    on_open: str,
) -> RedriveReport:
    """Redrive the Bus dead letters in *store* (see :meth:`nova.Bus.redrive`)."""
    from nova.events import Event

    caller = _Caller()
    tally = _Tally()

    def target(lid: str, entry_topic: str | None) -> Target | None:
        if entry_topic is None or (topic is not None and entry_topic != topic):
            return None  # not a Bus dead letter, or another topic's
        if listener_id is not None and lid != listener_id:
            return None
        found = _find(registry, lid, entry_topic)
        if found is None:
            return None  # the subscriber is gone: the entry stays for later
        m, slot = found
        if m.kind == MANAGED:
            managed = m.listener

            def run_managed(event: Any, t: str | None) -> bool:
                return bool(managed.run_inline(event, topic=t))

            return Target(run_managed, managed.breaker, managed.config.dead_letter.store is store)

        def run(event: Any, t: str | None) -> bool:
            try:
                if m.kind == ASYNC:
                    caller.run_coroutine(m.handle(event))
                else:
                    m.handle(event)
            except (KeyboardInterrupt, SystemExit):
                raise  # the caller's own thread: an interrupt stops the redrive
            except BaseException as exc:  # noqa: BLE001 - as a delivery thread does
                # retries, hooks and dead letters, as on delivery (never abandoned:
                # a redrive's backoffs are slept in full)
                return slot.failed(tally, caller, m, event, exc) == HANDLED  # type: ignore[arg-type]
            return True

        return Target(run, None, slot.topic.dead_letter.store is store)

    try:
        return redrive(store, target, start=start, end=end, dry_run=dry_run, on_open=on_open,
                       wait=clock.sleep, new_event=Event)
    finally:
        caller.close()
