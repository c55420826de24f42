"""The one retry driver: what happens after a call failed, for every caller.

The Bus (per-lane delivery) and the ListenerManager (inline and scheduled retries) both
decide "retry or give up, and after how long" with :func:`next_delay`, and run inline
retry loops with :func:`retry_inline` / :func:`aretry_inline`, so a retry behaves the
same wherever it happens:

* the policy's ``should_retry(exc, attempt)`` decides; a ``retry_if`` predicate that
  raises stops the retries (the predicate's error is chained as the ``__context__`` of
  the call's error and reported to ``on_predicate_error``);
* the delay is ``policy.delay(attempt)`` (backoff, cap, jitter);
* a sleep that reports the caller was stopped ends the loop *abandoned*: the event is
  neither handled nor dead-lettered (it stays pending for the next owner).

A call is a function returning ``None`` on success or the exception it raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

__all__ = ("Outcome", "next_delay", "retry_inline", "aretry_inline")


class Outcome(NamedTuple):
    """How a retry loop ended.

    Attributes:
        error: ``None`` if a call succeeded, else the last call's error.
        attempts: calls made in all (the first one included).
        abandoned: True if the caller was stopped during a backoff sleep.
    """

    error: BaseException | None
    attempts: int
    abandoned: bool


def next_delay(
    policy: Any,
    exc: BaseException,
    attempt: int,
    on_predicate_error: Callable[[BaseException], Any] | None = None,
) -> float | None:
    """Seconds to wait before call ``attempt + 1`` after call *attempt* failed with
    *exc*, or ``None`` to give up (attempts exhausted, error not retryable, or the
    policy's ``retry_if`` raised)."""
    try:
        again = policy.should_retry(exc, attempt)
    except BaseException as pred_exc:  # noqa: BLE001 - a predicate's bug stops retrying
        if exc is not pred_exc and exc.__context__ is None:
            exc.__context__ = pred_exc
        if on_predicate_error is not None:
            on_predicate_error(pred_exc)
        return None
    if not again:
        return None
    return float(policy.delay(attempt))


def retry_inline(
    call: Callable[[], BaseException | None],
    policy: Any,
    error: BaseException,
    *,
    sleep: Callable[[float], bool],
    attempt: int = 1,
    on_retry: Callable[[int], Any] | None = None,
    on_failure: Callable[[BaseException], Any] | None = None,
    on_predicate_error: Callable[[BaseException], Any] | None = None,
) -> Outcome:
    """Retry in the calling thread after call *attempt* failed with *error*.

    Args:
        call: makes one call; returns ``None`` on success or the error.
        policy: a :class:`~nova.RetryPolicy` (``should_retry``, ``delay``).
        sleep: ``sleep(seconds) -> stopped``; True abandons the loop.
        on_retry: called with the number of the call about to be made (2, 3, ...).
        on_failure: called with each retry's error (not the first one's).
        on_predicate_error: called if ``retry_if`` raised.
    """
    while True:
        delay = next_delay(policy, error, attempt, on_predicate_error)
        if delay is None:
            return Outcome(error, attempt, False)
        if delay > 0 and sleep(delay):
            return Outcome(error, attempt, True)
        attempt += 1
        if on_retry is not None:
            on_retry(attempt)
        err = call()
        if err is None:
            return Outcome(None, attempt, False)
        error = err
        if on_failure is not None:
            on_failure(err)


async def aretry_inline(
    call: Callable[[], Awaitable[BaseException | None]],
    policy: Any,
    error: BaseException,
    *,
    sleep: Callable[[float], Awaitable[bool]],
    attempt: int = 1,
    on_retry: Callable[[int], Any] | None = None,
    on_failure: Callable[[BaseException], Any] | None = None,
    on_predicate_error: Callable[[BaseException], Any] | None = None,
) -> Outcome:
    """:func:`retry_inline` for asyncio code: calls and sleeps are awaited."""
    while True:
        delay = next_delay(policy, error, attempt, on_predicate_error)
        if delay is None:
            return Outcome(error, attempt, False)
        if delay > 0 and await sleep(delay):
            return Outcome(error, attempt, True)
        attempt += 1
        if on_retry is not None:
            on_retry(attempt)
        err = await call()
        if err is None:
            return Outcome(None, attempt, False)
        error = err
        if on_failure is not None:
            on_failure(err)
