"""The complete nova example, shipped with the package so ``nova demo`` runs anywhere.

Every component wired together in one small service: an Emitter, a Bus (keyed topic, a
consumer group), a ListenerManager (retries, a circuit breaker, dead letters), a durable
SQLiteStore, an AuditTrail, a Prometheus collector and the ``/healthz`` + ``/metrics``
endpoint; seeded user and order workflows with injected failures; a redrive of the dead
letters; an audit window replayed into pandas; and a final accounting that must balance.
SIGINT/SIGTERM stop intake and drain everything already accepted before that accounting.

Run it with ``nova demo``, ``python -m nova.demo`` or, from a source checkout,
``python -m examples.complete`` (``--help`` for the options).  It needs the ``cli``-free
extras ``nova-events[pandas,prometheus]``.  Read :mod:`nova.demo.app` (setup, run,
shutdown, accounting) and :mod:`nova.demo.workflows` (the workload and handlers).
"""

from nova.demo.app import main

__all__ = ("main",)
