"""pyee 13 on nova: change ``pyee`` to ``nova.compat.pyee`` in your imports, keep the code.

* :class:`EventEmitter` (``pyee`` / ``pyee.base``), :class:`PyeeError`,
  :class:`PyeeException`, ``Handler``;
* :class:`~nova.compat.pyee.asyncio.AsyncIOEventEmitter` (``pyee.asyncio``);
* :class:`~nova.compat.pyee.executor.ExecutorEventEmitter` (``pyee.executor``);
* ``evented`` and ``on`` (``pyee.cls``).

Trio, Twisted and ``pyee.uplift`` are not provided.  See ``docs/migration.md``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from nova.compat.pyee.base import EventEmitter, Handler, PyeeError, PyeeException

__all__ = ("EventEmitter", "Handler", "PyeeError", "PyeeException")
