"""Replace direct calls with events: sync listeners, a failing one that does not stop
the others, middleware, the worker buffer and a clean shutdown.

    python examples/emitter_basic.py
"""

from __future__ import annotations

import logging

from nova import Emitter, Event


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    errors: list[str] = []
    with Emitter(workers=2, error_policy="continue",
                 on_error=lambda ev, exc, listener: errors.append(f"{listener.id}: {exc}")) as em:
        welcomed: list[str] = []
        audited: list[str] = []

        @em.on("user.created")
        def send_welcome(event: Event) -> None:
            if event.data["name"] == "Mallory":
                raise ValueError("no mail for Mallory")
            welcomed.append(event.data["name"])

        @em.on("*")
        def audit(event: Event) -> None:
            audited.append(event.type)

        def stamp(event: Event, call_next):  # middleware: enrich every event
            event.metadata["source"] = "signup-form"
            return call_next(event)

        em.use(stamp)
        em.emit(Event("user.created", {"name": "Ada"}))
        em.emit(Event("user.created", {"name": "Mallory"}))   # reported, audit still runs
        accepted = em.emit_batch(Event("user.created", {"name": f"user{i}"}) for i in range(100))
        assert em.drain(timeout=10)
        stats = em.stats()
    print(f"welcomed {len(welcomed)}, audited {len(audited)}, accepted {accepted}")
    print(f"errors: {errors}")
    print(f"emitted {stats.emitted}, processed {stats.processed}, failed {stats.failed}, "
          f"delivered {stats.delivered}")


if __name__ == "__main__":
    main()
