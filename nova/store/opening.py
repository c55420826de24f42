"""``nova.store.opening.open_store``: the import path RedisStore's branch gave
:func:`nova.open_store`; the one implementation is :mod:`nova.store.urls`.

.. versionadded:: 0.2
"""

from __future__ import annotations

from nova.store.urls import open_store

__all__ = ("open_store",)
