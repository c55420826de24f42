"""Drop-in facades for migrating to nova from other Python event systems.

* :mod:`nova.compat.pyee`: pyee 13's ``EventEmitter``, ``AsyncIOEventEmitter``,
  ``ExecutorEventEmitter``, ``PyeeError`` and the ``pyee.cls`` decorators.
* :mod:`nova.compat.blinker`: blinker 1.9's ``Signal``, ``NamedSignal``, ``Namespace``,
  ``signal`` and ``ANY``.

Change the import, keep the code::

    from nova.compat.pyee import EventEmitter      # was: from pyee import EventEmitter
    from nova.compat import blinker                 # was: import blinker

Both pass their projects' own test suites (``tests/compat/run_upstream.py``) and are
faster than the originals (``python asv_benchmarks/ratios.py compat``).  nova's
machinery (a metrics collector, :class:`~nova.listener.ListenerManager`-managed
listeners, an event-store tap) is reached through optional keywords, off by default so
behaviour stays identical; see :mod:`nova.compat._features` and ``docs/migration.md``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from nova.compat._features import Features

__all__ = ("Features",)
