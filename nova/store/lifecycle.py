"""Closing a store, shared by :class:`~nova.store.logstore.LogStore` (memory and
SQLite) and :class:`~nova.store.RedisStore`: ending its subscriptions, waking
blocked appenders and waiters, stopping the retention sweep, the context manager.

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
import threading
from typing import Any

__all__ = ("StoreLifecycle", "sweep_loop")


class StoreLifecycle(abc.ABC):
    """The close half of a store (a base class).  A subclass sets ``_lock`` (the
    store lock), ``_cond`` (a condition on it), ``_closed``, ``_subs`` and
    ``_block_subs`` (its subscriptions), ``_stop`` (set to stop the sweep),
    ``_sweeper`` (the sweep thread or ``None``) and ``_clock``; its ``close()``
    calls :meth:`_close_locked` under the lock, then :meth:`_join_sweeper`."""

    _lock: Any
    _cond: threading.Condition
    _closed: bool
    _subs: Any
    _block_subs: Any
    _stop: threading.Event
    _sweeper: threading.Thread | None
    _clock: Any

    def _closing(self) -> None:
        """Called first when the store closes (lock held, ``_closed`` just set)."""

    def _closed_wake(self) -> None:
        """Wake what waits on the store besides ``_cond`` (lock held, on close)."""

    def _close_locked(self) -> bool:
        """Close (lock held): subscriptions end, blocked appenders and waiters wake
        (and get StoreClosed), the sweep is told to stop.  False when the store was
        closed already."""
        if self._closed:
            return False
        self._closed = True
        self._closing()
        for sub in list(self._subs):
            sub._ended("store closed")
        self._subs.clear()
        self._block_subs.clear()
        self._cond.notify_all()
        self._closed_wake()
        self._stop.set()
        return True

    @abc.abstractmethod
    def _sweep_once(self) -> bool:
        """Apply retention once (from the sweep thread); False when the store is closed
        (the sweep ends)."""

    def _join_sweeper(self, timeout: float | None) -> None:
        """Wait for the retention sweep to end (not from the sweep itself)."""
        sweeper = self._sweeper
        # (a sweep sleeping on an injected clock cannot be woken: it ends at its next tick)
        if sweeper is not None and self._clock is None and sweeper is not threading.current_thread():
            sweeper.join(timeout)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store (idempotent)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep_loop(ref: Any, stop: threading.Event, clock: Any, interval: float) -> None:
    """The background retention sweep of a store (``_sweep_once`` every *interval*
    seconds, on *clock* when one is injected).  It holds the store only weakly between
    sweeps, so a store dropped without close() is collected and the thread ends."""
    while not stop.is_set():
        if clock is None:
            if stop.wait(interval):
                return
        else:
            clock.sleep(interval)
        store = ref()
        if store is None or not store._sweep_once():
            return
        del store
