"""The one retry driver and the one dead-letter path (nova.resilience.retry/deadletter)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nova import DeadLetter, DeadLetterConfig, Event, MemoryStore, RetryPolicy
from nova.resilience import deadletter, retry


class Flaky:
    def __init__(self, fails: int, exc: type[BaseException] = ConnectionError) -> None:
        self.fails = fails
        self.calls = 0
        self.exc = exc

    def __call__(self) -> BaseException | None:
        self.calls += 1
        if self.calls <= self.fails:
            return self.exc(f"fail {self.calls}")
        return None


def test_next_delay_follows_the_policy():
    p = RetryPolicy(max_attempts=3, initial_delay=0.5, max_delay=10)
    assert retry.next_delay(p, ValueError(), 1) == 0.5
    assert retry.next_delay(p, ValueError(), 2) == 1.0
    assert retry.next_delay(p, ValueError(), 3) is None
    assert retry.next_delay(RetryPolicy(retry_on=(KeyError,)), ValueError(), 1) is None


def test_a_raising_predicate_stops_and_is_chained():
    boom = RuntimeError("predicate bug")

    def pred(exc):
        raise boom

    seen = []
    exc = ValueError("call failed")
    p = RetryPolicy(retry_if=pred)
    assert retry.next_delay(p, exc, 1, seen.append) is None
    assert seen == [boom] and exc.__context__ is boom


def test_retry_inline_succeeds_after_failures():
    call = Flaky(2)
    first = call()
    sleeps, retries, failures = [], [], []
    out = retry.retry_inline(call, RetryPolicy(max_attempts=5, initial_delay=0.1, max_delay=1), first,
                             sleep=lambda d: sleeps.append(d) or False,
                             on_retry=retries.append, on_failure=failures.append)
    assert out == retry.Outcome(None, 3, False)
    assert sleeps == [0.1, 0.2] and retries == [2, 3] and len(failures) == 1


def test_retry_inline_exhausts_and_abandons():
    call = Flaky(10)
    first = call()
    out = retry.retry_inline(call, RetryPolicy(max_attempts=3, initial_delay=0), first, sleep=lambda d: False)
    assert out.error is not None and str(out.error) == "fail 3" and out.attempts == 3 and not out.abandoned
    call = Flaky(10)
    first = call()
    out = retry.retry_inline(call, RetryPolicy(max_attempts=3, initial_delay=1), first, sleep=lambda d: True)
    assert out.abandoned and out.attempts == 1 and call.calls == 1


def test_aretry_inline_matches_the_sync_driver():
    call = Flaky(2)

    async def acall():
        return call()

    async def asleep(d):
        return False

    async def main():
        first = await acall()
        return await retry.aretry_inline(acall, RetryPolicy(max_attempts=5, initial_delay=0.01), first,
                                         sleep=asleep)

    assert asyncio.run(main()) == retry.Outcome(None, 3, False)


def _dl(event=None):
    return DeadLetter(event or Event("t", {"a": 1}, metadata={"k": "v"}), KeyError("gone"), 3, "lst", "orders", 123)


def test_dead_letter_event_metadata():
    ev = deadletter.dead_letter_event(_dl())
    assert ev.metadata == {"k": "v", "nova.error.type": "KeyError", "nova.error.message": "'gone'",
                           "nova.attempts": "3", "nova.listener": "lst", "nova.deadletter.timestamp": "123",
                           "nova.topic": "orders", "nova.original_type": "t"}
    assert ev.type == "nova.deadletter"
    back = deadletter.restore_event(ev)
    assert (back.type, back.metadata) == ("t", {"k": "v"})


def test_send_to_handler_and_store():
    store = MemoryStore()
    got = []
    cfg = DeadLetterConfig(handler=got.append, store=store)
    dl = _dl()
    assert deadletter.send(cfg, dl, logging.getLogger("t"), "listener 'lst'") == 0
    assert got == [dl]
    events, _ = store.read(deadletter.DEAD_LETTER_STREAM)
    assert [e.id for e in events] == [dl.event.id]
    assert deadletter.send(DeadLetterConfig(enabled=False, handler=got.append), dl,
                           logging.getLogger("t"), "x") == 0
    assert len(got) == 1


def test_failing_sinks_are_logged_and_counted_even_base_exceptions(caplog):
    class Bad:
        def append(self, stream, ev):
            raise OSError("disk full")

    def handler(dl):
        raise KeyboardInterrupt  # a BaseException: logged, never propagated, never swallowed silently

    cfg = DeadLetterConfig(handler=handler, store=Bad())
    with caplog.at_level(logging.ERROR, logger="t"):
        assert deadletter.send(cfg, _dl(), logging.getLogger("t"), "topic 'orders'") == 2
    assert "dead-letter handler of topic 'orders' raised" in caplog.text
    assert "could not store a dead letter of topic 'orders'" in caplog.text


def test_no_sink_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="t"):
        assert deadletter.send(DeadLetterConfig(), _dl(), logging.getLogger("t"), "listener 'lst'") == 0
    assert "dead-lettered by listener 'lst' after 3 attempt(s)" in caplog.text
