"""Orders over a partitioned Bus: per-customer order, a consumer group, retries and dead letters.

Run: python examples/bus_orders.py
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict

from nova import Bus, DeliveryMode, Event, RetryPolicy, TopicConfig
from nova.listener import DeadLetterConfig
from nova.testing import ManualClock


def main() -> None:
    clock = ManualClock(auto_advance=True)  # retry backoffs advance it; nothing sleeps
    dead_letters = []
    lock = threading.Lock()
    shipped: dict[str, list[int]] = defaultdict(list)
    audit: list[int] = []
    rng = random.Random(1)
    flaky = {n for n in range(2000) if rng.random() < 0.05}  # first call fails
    failed_once: set[int] = set()

    with Bus(clock=clock) as bus:
        bus.create_topic("orders", TopicConfig(
            partitions=8,
            delivery=DeliveryMode.EXACTLY_ONCE,
            ordering_key=lambda e: e.metadata["customer"],
            retry=RetryPolicy(max_attempts=3, initial_delay=0.2),
            dead_letter=DeadLetterConfig(handler=dead_letters.append),
        ))

        def ship(event: Event) -> None:
            n = event.data["n"]
            if event.data.get("poison"):
                raise ValueError(f"order {n} cannot be shipped")
            with lock:
                if n in flaky and n not in failed_once:
                    failed_once.add(n)
                    raise ConnectionError("warehouse timeout")
                shipped[event.metadata["customer"]].append(n)

        # two shipping workers share the partitions; the auditor sees everything
        bus.subscribe("orders", ship, group="shipping")
        bus.subscribe("orders", ship, group="shipping")
        bus.subscribe("orders", lambda e: audit.append(e.data["n"]))

        for n in range(2000):
            customer = f"customer-{n % 50}"
            ev = Event("order.created", {"n": n, "poison": n == 1234}, metadata={"customer": customer})
            bus.publish("orders", ev)
            if n % 100 == 0:
                bus.publish("orders", ev)  # a duplicate publish: exactly-once skips it
        assert bus.flush(30)
        stats = bus.stats()

    for customer, numbers in shipped.items():
        assert numbers == sorted(numbers), customer  # per-customer order held
    assert sum(len(v) for v in shipped.values()) == 1999
    assert [d.event.data["n"] for d in dead_letters] == [1234]
    print(f"shipped {stats.handled - len(audit)} orders for {len(shipped)} customers in order")
    print(f"audited {len(audit)}; duplicates skipped {stats.duplicates}; retries {stats.retried}; "
          f"dead-lettered {stats.dead_lettered} ({dead_letters[0].error})")


if __name__ == "__main__":
    main()
