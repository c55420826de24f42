"""Per-lane delivery: what a subscriber does with a batch of one partition.

:class:`Delivery` is the Bus's *sink* (see :mod:`nova.transport.base`): one per
subscriber of a topic (an ungrouped subscription or a consumer group).  The transport
hands it a batch of one lane; it calls the handler for each event in order, applies the
topic's :class:`~nova.bus.config.DeliveryMode` to a failure, and records outcomes on the
lane through its ``count_*`` methods.

A failure goes through the one pipeline every caller shares: the retry driver
(:func:`nova.resilience.retry.retry_inline`), then the dead-letter path
(:func:`nova.resilience.deadletter.send`), so a dead letter behaves exactly as in the
ListenerManager (a sink that raises, ``BaseException`` included, is logged on the
``nova.bus`` logger and counted in ``dead_letter_errors``; with no sink, a WARNING is
logged).

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nova.bus.config import DeliveryMode
from nova.bus.dedup import Dedup
from nova.events import Subscription, is_async_listener, now_ns
from nova.resilience.policy import DeadLetter
from nova.resilience import deadletter
from nova.resilience.retry import retry_inline
from nova.testing import SYSTEM_CLOCK
from nova.transport.base import Consumer, Lane

__all__ = ("Member", "Delivery", "HANDLED", "SETTLED", "ABANDONED")

_log = logging.getLogger("nova.bus")

SYNC, ASYNC, MANAGED = 0, 1, 2
#: How a failed first call ended (see :meth:`Delivery.failed`).
HANDLED, SETTLED, ABANDONED = 0, 1, 2
# What a handler call may raise and still count as a failed call: anything.  Handlers
# run on delivery threads (never the main thread), where a BaseException (an async
# handler's CancelledError, a SystemExit or KeyboardInterrupt raised by the handler)
# would otherwise kill the thread: the batch would be counted as settled without being
# handled and the subscriber would never be served again.  Hooks likewise.
HANDLER_ERRORS = BaseException


class Member:
    """One Subscription: a listener with its own delivery thread (consumer)."""

    __slots__ = ("sub", "listener", "listener_id", "handle", "kind", "on_error", "group", "pattern", "slots", "consumer")

    def __init__(self, listener: Any, group: str | None, pattern: re.Pattern[str] | None) -> None:
        self.listener = listener
        self.listener_id: str = listener.id
        self.handle = listener.handle
        if getattr(listener, "managed", False):
            self.kind = MANAGED
        elif is_async_listener(listener):
            self.kind = ASYNC
        else:
            self.kind = SYNC
        self.on_error = getattr(listener, "on_error", None)
        self.group = group
        self.pattern = pattern
        self.slots: dict[str, Delivery] = {}  # topic name -> the subscriber it is part of
        self.sub: Subscription = None  # type: ignore[assignment]
        self.consumer: Consumer = None  # type: ignore[assignment]


def metric(lane: Lane, fn: Callable[..., Any], *args: Any) -> None:
    """Call a metrics collector method on a delivery thread.  A collector that raises
    is counted in ``hook_errors``: it must neither kill the thread nor turn a handled
    event into a failed (and retried) one."""
    try:
        fn(*args)
    except HANDLER_ERRORS:
        lane.count_hook_error()


class Delivery:
    """One subscriber (ungrouped subscription or group) of one topic: the Bus's sink.

    Args:
        topic: the topic record (``name``, ``delivery``, ``retry``, ``dedup``,
            ``dead_letter``).
        group: the consumer group, ``None`` for an ungrouped subscription.
        metrics: the bus's collector, ``None`` when metrics are off.
        on_error: the bus's ``on_error(event, exc, listener)`` hook or ``None``.
        clock: the clock retry backoffs sleep on and dedup ages are measured with.
    """

    __slots__ = ("topic", "group", "members", "tslot", "dedup", "fast_dedup", "metrics", "on_error", "clock", "obs")

    def __init__(self, topic: Any, group: str | None, metrics: Any, on_error: Any, clock: Any) -> None:
        self.topic = topic
        self.group = group
        self.members: list[Member] = []
        self.tslot: Any = None  # the transport's Slot, set once added
        self.metrics = metrics
        self.on_error = on_error
        self.clock = clock
        self.obs: Any = None  # Observers (tracing, audit), set by the registry
        self.dedup = Dedup(topic.dedup, clock) if topic.delivery is DeliveryMode.EXACTLY_ONCE else None
        # one thread per ungrouped slot and a count-only window: no lock needed
        self.fast_dedup = self.dedup is not None and group is None and topic.dedup.max_age is None

    # -- called on the lane owner's thread ----------------------------------------------
    def deliver(self, lane: Lane, consumer: Consumer, batch: deque[Any]) -> int:
        """Process *batch* (events of one partition, in order) for *consumer*'s listener.
        Returns how many were settled; stops early when the lane changes owner.

        The general path (any handler kind, metrics, any dedup window);
        :class:`nova.bus.fastpath.FastDelivery` has the benchmarked tight loops."""
        m: Member = consumer.owner
        metrics = self.metrics
        dd = self.dedup
        kind = m.kind
        i = 0
        for ev in batch:
            if lane.consumer is not consumer:
                break
            if dd is not None and not dd.claim(ev.id):
                lane.count_dups()
                if metrics is not None:
                    metric(lane, metrics.inc_events_processed, m.listener_id, "duplicate")
                i += 1
                continue
            t0 = time.perf_counter() if metrics is not None else 0.0
            if kind == MANAGED:
                self._deliver_managed(lane, m, ev)
            else:
                obs = self.obs
                tokens = None if obs is None else obs.begin(ev, m.listener_id, self.topic.name, lane.index, self.group, 1)
                try:
                    self._call(consumer, m, ev)
                except HANDLER_ERRORS as exc:
                    if tokens is not None:
                        obs.end(tokens, exc)  # settled by failed() once the outcome is known
                    outcome = self.failed(lane, consumer, m, ev, exc, tokens)
                    if outcome == ABANDONED:
                        if dd is not None:
                            dd.release(ev.id)
                        break
                    if outcome == HANDLED:
                        lane.count_handled()
                else:
                    if tokens is not None:
                        obs.end(tokens, None)
                    lane.count_handled()
                    if metrics is not None:
                        metric(lane, metrics.inc_events_processed, m.listener_id, "ok")
            if metrics is not None:
                metric(lane, metrics.observe_listener_duration, m.listener_id, time.perf_counter() - t0)
            i += 1
        return i

    def _deliver_managed(self, lane: Lane, m: Member, ev: Any) -> None:
        # A ManagedListener applies its own policy (retries, circuit, dead letters).
        metrics = self.metrics
        try:
            ok = m.listener.run_inline(ev, topic=self.topic.name)
        except HANDLER_ERRORS as exc:
            # run_inline should not raise; if it does, the event is dead-lettered
            # through the topic's config.
            self._hooks(lane, m, ev, exc)
            if self.topic.delivery is DeliveryMode.AT_MOST_ONCE:
                lane.count_failed()
            else:
                self._dead_letter(lane, m, ev, exc, 1)
            return
        if ok:
            lane.count_handled()
        else:
            lane.count_dead()
        if metrics is not None:
            metric(lane, metrics.inc_events_processed, m.listener_id, "ok" if ok else "dead_letter")

    @staticmethod
    def _call(consumer: Consumer, m: Member, ev: Any) -> None:
        if m.kind == ASYNC:
            consumer.run_coroutine(m.handle(ev))
        else:
            m.handle(ev)

    def failed(self, lane: Lane, consumer: Consumer, m: Member, ev: Any, exc: BaseException,
               tokens: Any = None) -> int:
        """The first call for *ev* raised *exc*.  Apply the delivery mode.  *tokens*:
        the observers' (tracing, audit) of that call, settled here; each retry is one
        more observed attempt.

        Returns ``HANDLED`` (a retry succeeded; not counted here), ``SETTLED`` (counted
        as failed or dead-lettered) or ``ABANDONED`` (the consumer was stopped during a
        backoff: the event stays pending for the lane's next owner)."""
        self._hooks(lane, m, ev, exc)
        topic = self.topic
        metrics = self.metrics
        obs = self.obs
        if obs is None:
            tokens = None
        if topic.delivery is DeliveryMode.AT_MOST_ONCE:
            lane.count_failed()
            if tokens is not None:
                obs.settle(tokens, "error")
            if metrics is not None:
                metric(lane, metrics.inc_events_processed, m.listener_id, "error")
            return SETTLED
        # observed: [the tokens of the last failed attempt, the number of the next one]
        att: list[Any] = [tokens, 1]

        def call() -> BaseException | None:
            if obs is None:
                try:
                    self._call(consumer, m, ev)
                except HANDLER_ERRORS as err:
                    return err
                return None
            t = obs.begin(ev, m.listener_id, topic.name, lane.index, self.group, att[1])
            try:
                self._call(consumer, m, ev)
            except HANDLER_ERRORS as err:
                obs.end(t, err)
                att[0] = t
                return err
            obs.end(t, None)
            return None

        def on_retry(attempt: int) -> None:
            if att[0] is not None:
                obs.settle(att[0], "retry_scheduled")
                att[0] = None
            att[1] = attempt
            lane.count_retry()
            if metrics is not None:
                metric(lane, metrics.inc_events_processed, m.listener_id, "retry")

        def on_predicate_error(pred_exc: BaseException) -> None:
            lane.count_hook_error()
            _log.error("nova: retry_if of topic %r raised", topic.name, exc_info=pred_exc)

        out = retry_inline(
            call,
            topic.retry,
            exc,
            sleep=lambda seconds: self._sleep(consumer, seconds),
            on_retry=on_retry,
            on_failure=lambda err: self._hooks(lane, m, ev, err),
            on_predicate_error=on_predicate_error,
        )
        if out.abandoned:
            if att[0] is not None:  # the lane's next owner delivers it again
                obs.settle(att[0], "retry_scheduled")
            return ABANDONED
        if out.error is None:
            if metrics is not None:
                metric(lane, metrics.inc_events_processed, m.listener_id, "ok")
            return HANDLED
        if att[0] is not None:
            obs.settle(att[0], "dead_lettered" if topic.dead_letter.enabled else "dropped")
        self._dead_letter(lane, m, ev, out.error, out.attempts)
        return SETTLED

    def _sleep(self, consumer: Consumer, seconds: float) -> bool:
        """Backoff sleep on a delivery thread; True if the consumer was stopped."""
        if self.clock is SYSTEM_CLOCK:
            return bool(consumer.wait_stop(seconds))
        self.clock.sleep(seconds)
        return bool(consumer.stopping)

    def _hooks(self, lane: Lane, m: Member, ev: Any, exc: BaseException) -> None:
        if m.on_error is not None:
            try:
                m.on_error(ev, exc)
            except HANDLER_ERRORS:
                lane.count_hook_error()
        hook = self.on_error
        if hook is not None:
            try:
                hook(ev, exc, m.listener)
            except HANDLER_ERRORS:
                lane.count_hook_error()

    def _dead_letter(self, lane: Lane, m: Member, ev: Any, exc: BaseException, attempts: int) -> None:
        lane.count_dead()
        if self.metrics is not None:
            metric(lane, self.metrics.inc_events_processed, m.listener_id, "dead_letter")
        name = self.topic.name
        dl = DeadLetter(ev, exc, attempts, m.listener_id, name, now_ns())
        errors = deadletter.send(self.topic.dead_letter, dl, _log, f"listener {m.listener_id!r} on topic {name!r}")
        if errors:
            lane.count_dl_errors(errors)
