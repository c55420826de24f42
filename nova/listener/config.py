"""ListenerConfig: how a ListenerManager runs one listener (an immutable value type)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nova._util.checks import check_int, check_positive_timeout
from nova.errors import type_name
from nova.resilience.policy import CircuitConfig, DeadLetterConfig, RetryPolicy

__all__ = ("ListenerConfig",)


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How the manager runs one listener.

    Args:
        concurrency: calls of this listener allowed to run at once (a semaphore);
            ``None`` for no bound.
        retry: the :class:`RetryPolicy`.
        circuit: the :class:`CircuitConfig`.
        dead_letter: the :class:`DeadLetterConfig`.
        timeout: per-call timeout in seconds (or ``timedelta``), ``None`` for none.  An
            ``async def`` listener that overruns is cancelled; a sync listener is run on a
            helper thread and, when it overruns, the call counts as failed with
            :class:`nova.errors.Timeout` and its late result is ignored.
        rate_limit: ``None``, calls per second (a token bucket with burst
            ``max(1, rate)``), a ``(rate, burst)`` pair, or an object with
            ``acquire(n=1, timeout=None)`` (a :class:`nova.TokenBucket` or
            :class:`nova.RateLimiter`).  Each call waits for a token.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``concurrency < 1``, a non-positive ``timeout`` or rate.
    """

    concurrency: int | None = 10
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit: CircuitConfig = field(default_factory=CircuitConfig)
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    timeout: float | None = None
    rate_limit: Any = None

    def __post_init__(self) -> None:
        if self.concurrency is not None:
            check_int(self.concurrency, "concurrency", 1)
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"Expected retry as a RetryPolicy, got {type_name(self.retry)}")
        if not isinstance(self.circuit, CircuitConfig):
            raise TypeError(f"Expected circuit as a CircuitConfig, got {type_name(self.circuit)}")
        if not isinstance(self.dead_letter, DeadLetterConfig):
            raise TypeError(
                f"Expected dead_letter as a DeadLetterConfig, got {type_name(self.dead_letter)}"
            )
        object.__setattr__(self, "timeout", check_positive_timeout(self.timeout))
        rl = self.rate_limit
        if rl is None or callable(getattr(rl, "acquire", None)):
            return
        if isinstance(rl, tuple):
            if len(rl) != 2:
                raise ValueError(f"Expected rate_limit as a (rate, burst) pair, got {rl!r}")
            _check_rate(rl[0])
            check_int(rl[1], "rate_limit burst", 1)
            return
        _check_rate(rl)


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(
            "Expected rate_limit as calls per second, a (rate, burst) pair or an object "
            f"with acquire(), got {type_name(rate)}"
        )
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"Expected rate_limit > 0 calls per second, got {rate!r}")
    return float(rate)
