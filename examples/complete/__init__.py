"""The complete nova example: every component wired together in one small service.

Run it with ``python -m examples.complete`` (``--help`` for the options).  It starts an
Emitter, a Bus (keyed topic, a consumer group), a ListenerManager (retries, a circuit
breaker, dead letters), a durable SQLiteStore, an AuditTrail, a Prometheus collector and
the ``/healthz`` + ``/metrics`` endpoint; runs seeded user and order workflows with
injected failures; redrives the dead letters; replays an audit window into pandas; and
prints a final accounting that must balance.  SIGINT/SIGTERM stop intake and drain
everything already accepted before that accounting.

:func:`main` is the entry point (``nova demo`` calls it).  The code lives in the package,
:mod:`nova.demo` (``nova/demo/app.py`` and ``nova/demo/workflows.py``), so that ``nova demo``
works after ``pip install``; this folder is the way to run it from a source checkout.
"""

from nova.demo.app import main

__all__ = ("main",)
