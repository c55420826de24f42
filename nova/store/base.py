"""Compatibility re-export: the EventStore protocol and its value types now live in
:mod:`nova.store.protocol`, :class:`EventBatch` in :mod:`nova.store.batch`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.store import protocol as _protocol
from nova.store.batch import EventBatch
from nova.store.protocol import *  # noqa: F403 - the names of protocol.__all__, listed there once

__all__ = ("EventBatch", *_protocol.__all__)
