"""The Go seed's listener-manager example, in nova's spelling.

Go:
    lm := listener.New(listener.Config{WorkerPool: pool})
    lm.Register(myListener, listener.ListenerConfig{Concurrency: 10, RetryPolicy: ...,
        Circuit: ..., DeadLetter: ...})
    lm.Start(ctx)

nova (the manager is wired in: the managed listener is what gets subscribed):

    python examples/listener_example.py
"""

from __future__ import annotations

import random

from nova import (
    Backoff,
    CircuitConfig,
    DeadLetter,
    DeadLetterConfig,
    Emitter,
    Event,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
    WorkerPool,
)
from nova.store.memory import MemoryStore
from nova.testing import ManualClock

rng = random.Random(42)
service = {"failure_rate": 0.3}
handled: list[str] = []


def my_listener(event: Event) -> None:
    """A listener that talks to a flaky service (30% of calls fail)."""
    if rng.random() < service["failure_rate"]:
        raise ConnectionError("service unavailable")
    handled.append(event.id)


dead: list[DeadLetter] = []


def dead_letter_handler(dl: DeadLetter) -> None:
    dead.append(dl)


def main() -> None:
    # A ManualClock that advances itself on sleep, so the example's backoffs take no
    # real time; leave clock=None in production.
    clock = ManualClock(auto_advance=True)
    store = MemoryStore()
    with WorkerPool(size=2, queue_size=100) as pool:
        lm = ListenerManager(pool=pool, clock=clock)
        managed = lm.register(my_listener, ListenerConfig(
            concurrency=10,
            retry=RetryPolicy(max_attempts=3, backoff=Backoff.EXPONENTIAL, initial_delay=0.1),
            circuit=CircuitConfig(enabled=True, failure_threshold=20, timeout=30),
            dead_letter=DeadLetterConfig(enabled=True, handler=dead_letter_handler, store=store),
        ))
        lm.start()

        with Emitter() as em:
            em.subscribe("user.created", managed)
            for i in range(50):
                em.emit(Event("user.created", {"user": i}))

        lm.stop()  # drains the scheduled retries
        st = lm.stats()
        print(f"handled {st.processed}, dead-lettered {st.dead_lettered}, "
              f"retries {st.retried}, health {lm.health().value}")
        assert st.processed + st.dead_lettered == 50  # none lost
        for dl in dead[:3]:
            print(f"dead letter: {dl.event.data} after {dl.attempts} attempts: {dl.error!r}")

        # The dead letters were stored too; replay them once the service is back and
        # the breaker's timeout has passed (it half-opens, probes succeed, it closes).
        service["failure_rate"] = 0.0
        clock.advance(30)
        report = lm.redrive(store)
        print(f"redriven {report.replayed} ({report.succeeded} handled); "
              f"handled now {lm.stats().processed} of 50")
        assert lm.stats().processed == 50
        lm.stop()
    store.close()


if __name__ == "__main__":
    main()
