"""The one interpreter-exit hook for everything nova runs in the background.

Every nova object that owns threads or accepted work it has not finished (an Emitter
with ``emit_async`` work buffered, a ListenerManager with retries pending, a Bus with
undelivered events, a WorkerPool with queued tasks, a store's sweeper) registers here
when it starts such work, with a method ``close_at_exit(timeout)``.  When the
interpreter exits, the hook calls them in stage order (producers first, so what an
emitter hands to a manager or a pool is still taken) with the time left of one shared
budget, :data:`EXIT_TIMEOUT` seconds (``NOVA_EXIT_TIMEOUT`` in the environment, default
5).  Each method must return within the time it is given: it delivers what it can, and
reports (on the ``nova`` logger, at WARNING) how many accepted items it could not
deliver.  The interpreter never hangs on nova at exit.

A component closed explicitly (``shutdown()``/``close()``/``stop()``) should call
:func:`unregister`; the registry only keeps weak references, so a collected object
drops out by itself.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any

__all__ = ("EXIT_TIMEOUT", "STAGE_PRODUCER", "STAGE_ROUTER", "STAGE_CONSUMER", "STAGE_EXECUTOR",
           "STAGE_STORAGE", "register", "unregister", "run_exit_hooks", "exiting")

_log = logging.getLogger("nova")


def _env_timeout() -> float:
    raw = os.environ.get("NOVA_EXIT_TIMEOUT", "")
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        value = 5.0
    return value if value >= 0 and value == value else 5.0


#: Seconds that nova as a whole may spend at interpreter exit finishing accepted work.
EXIT_TIMEOUT: float = _env_timeout()

#: Stages, run in this order: what an earlier stage hands on is taken by a later one.
STAGE_PRODUCER = 0  # Emitters
STAGE_ROUTER = 1  # Bus
STAGE_CONSUMER = 2  # ListenerManager (retries)
STAGE_EXECUTOR = 3  # WorkerPool
STAGE_STORAGE = 4  # stores (sweepers, file handles)

_lock = threading.Lock()
# id(obj) -> (stage, weak method)
_hooks: dict[int, tuple[int, weakref.WeakMethod[Any]]] = {}
_exiting = False


def register(method: Callable[[float], Any], stage: int) -> None:
    """Call bound *method* (``obj.close_at_exit``) with the seconds left at interpreter
    exit, in *stage* order.  Registering the same object again replaces its entry."""
    obj: object = getattr(method, "__self__", None)
    if obj is None or not inspect.ismethod(method):
        raise TypeError(f"Expected a bound method close_at_exit(timeout), got {type(method).__name__}")
    key = id(obj)
    ref = weakref.WeakMethod(method)

    def _gone(_: Any, key: int = key) -> None:
        with _lock:
            entry = _hooks.get(key)
            if entry is not None and entry[1]() is None:
                del _hooks[key]

    weakref.finalize(obj, _gone, None)
    with _lock:
        _hooks[key] = (stage, ref)


def unregister(obj: object) -> None:
    """Forget *obj* (it was closed explicitly)."""
    with _lock:
        entry = _hooks.get(id(obj))
        if entry is not None:
            bound = entry[1]()
            if bound is None or bound.__self__ is obj:
                del _hooks[id(obj)]


def exiting() -> bool:
    """True once the interpreter-exit hook has started."""
    return _exiting


def run_exit_hooks(timeout: float | None = None) -> None:
    """Run every registered ``close_at_exit`` in stage order within *timeout* seconds in
    all (default :data:`EXIT_TIMEOUT`).  Called by :mod:`atexit`; exposed for tests."""
    global _exiting
    _exiting = True
    budget = EXIT_TIMEOUT if timeout is None else timeout
    deadline = monotonic() + budget
    with _lock:
        entries = sorted(_hooks.items(), key=lambda kv: kv[1][0])
        _hooks.clear()
    for _key, (_stage, ref) in entries:
        method = ref()
        if method is None:
            continue
        left = max(0.0, deadline - monotonic())
        try:
            method(left)
        except BaseException as exc:  # noqa: BLE001 - exit must go on for the others
            _log.warning("nova: %r failed to close at interpreter exit: %r", method, exc)


atexit.register(run_exit_hooks)
