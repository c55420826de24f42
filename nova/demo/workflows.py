"""The business side of the complete example: seeded workloads and the handlers that
process them, with failures injected deterministically.

Nothing here knows about nova's internals: handlers are plain functions taking an
Event, and every failure is decided up front by a seeded ``random.Random`` and carried
in the event's data, so two runs with the same seed fail the same events.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nova import Event


@dataclass
class Outage:
    """A downstream service that is down until :meth:`fix` (the mail server, the
    payment gateway).  Events marked ``"permanent"`` fail while it is down."""

    name: str
    fixed: threading.Event = field(default_factory=threading.Event)

    def fix(self) -> None:
        """The service is back: later attempts of "permanent" failures succeed."""
        self.fixed.set()


@dataclass
class Workload:
    """Seeded users and orders.  ``users[i]`` and ``orders[i]`` are the data dicts to
    send; ``fail`` is ``None``, ``"transient"`` (the first attempt fails, a retry
    succeeds) or ``"permanent"`` (fails until the outage is fixed: dead-lettered, then
    redriven)."""

    users: list[dict[str, Any]]
    orders: list[dict[str, Any]]

    @classmethod
    def make(cls, seed: int, n_users: int, n_orders: int) -> Workload:
        """Build the workload for *seed* (same seed, same failures)."""
        rng = random.Random(seed)

        def fate(transient: float, permanent: float) -> str | None:
            r = rng.random()
            return "permanent" if r < permanent else "transient" if r < permanent + transient else None

        users = [{"user": f"u-{i}", "email": f"user{i}@example.com", "fail": fate(0.10, 0.04)}
                 for i in range(n_users)]
        orders = []
        for i in range(n_orders):
            customer = users[rng.randrange(n_users)]["user"] if users else f"u-{rng.randrange(100)}"
            orders.append({"order": f"o-{i}", "customer": customer,
                           "amount": round(rng.uniform(5, 500), 2), "fail": fate(0.08, 0.05)})
        return cls(users, orders)


class Tally:
    """Thread-safe counts of what the handlers did, keyed by (what, id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._done: dict[str, set[str]] = {}

    def attempt(self, what: str, key: str) -> int:
        """Count one attempt of *what* on *key*; returns the attempt number (1-based)."""
        with self._lock:
            self._attempts[(what, key)] += 1
            return self._attempts[(what, key)]

    def done(self, what: str, key: str) -> None:
        """Record that *what* finished for *key* (a set: a repeat is not counted twice)."""
        with self._lock:
            self._done.setdefault(what, set()).add(key)

    def count(self, what: str) -> int:
        """How many distinct keys *what* finished for."""
        with self._lock:
            return len(self._done.get(what, ()))

    def calls(self, what: str) -> int:
        """Every attempt of *what*, retries included."""
        with self._lock:
            return sum(n for (w, _), n in self._attempts.items() if w == what)


def _maybe_fail(data: dict[str, Any], attempt: int, outage: Outage, error: type[Exception], text: str) -> None:
    if data.get("fail") == "transient" and attempt == 1:
        raise error(f"{text} (transient)")
    if data.get("fail") == "permanent" and not outage.fixed.is_set():
        raise error(f"{text} ({outage.name} down)")


class Handlers:
    """The listeners of the example, bound to one store, one tally and the outages."""

    def __init__(self, store: Any, tally: Tally, mail: Outage, gateway: Outage) -> None:
        self.store = store
        self.tally = tally
        self.mail = mail
        self.gateway = gateway

    # --- users ---
    def record_user(self, event: Event) -> None:
        """Emitter listener: keep every signup in the durable ``users`` stream."""
        self.store.append("users", event)
        self.tally.done("recorded", event.data["user"])

    def send_welcome(self, event: Event) -> None:
        """Managed listener: mail the new user (the mail server fails now and then)."""
        user = event.data["user"]
        _maybe_fail(event.data, self.tally.attempt("welcome", user), self.mail, ConnectionError, "smtp refused")
        self.tally.done("welcomed", user)

    # --- orders ---
    def fulfil(self, event: Event) -> None:
        """Consumer-group member: store the order in the durable ``orders`` stream."""
        self.store.append("orders", event)
        self.tally.done("fulfilled", event.data["order"])

    def bill(self, event: Event) -> None:
        """Bus subscriber: charge the order (the gateway times out or is down)."""
        order = event.data["order"]
        _maybe_fail(event.data, self.tally.attempt("billing", order), self.gateway, TimeoutError, "gateway timeout")
        self.tally.done("billed", order)
