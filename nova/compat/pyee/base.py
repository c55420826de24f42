"""pyee 13's ``EventEmitter`` on nova: same API and semantics, a faster emit.

What is pyee's, kept as is:

* ``emit(event, *args, **kwargs)`` calls each listener of *event* in the order it was
  added, with the arguments as given, in the caller's thread; returns ``True`` if
  *event* had listeners.  A listener's exception propagates at once (the listeners
  after it are not called), as in pyee.
* The ``"error"`` event: emitted with no listener, its first argument is raised (an
  ``Exception``), or a :class:`PyeeError` saying what came.
* ``"new_listener"`` is emitted with ``(event, listener)`` *before* a listener is added.
* A listener removed (or added) while an emit runs does not change that emit: each emit
  calls the listeners that were attached when it started.
* ``_events`` is pyee's ``{event: OrderedDict(listener -> callable)}`` (read it, do
  not write it: writes go through the methods).  Instances pickle (without their lock).

What nova adds: the optional keywords of :mod:`nova.compat._features` (``metrics``,
``manager``/``listener_config``, ``store``/``stream``), off by default.

Thread-safety: adding and removing listeners take the emitter's lock; ``emit`` reads an
immutable snapshot of the listeners (no lock), so emits from many threads run at once.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from threading import Lock
from typing import Any, TypeVar, overload

from nova.compat._features import Call, Features

__all__ = ("EventEmitter", "Handler", "PyeeError", "PyeeException")


class PyeeException(Exception):
    """An exception internal to pyee. Deprecated in favor of :class:`PyeeError`."""


class PyeeError(PyeeException):
    """An error internal to pyee: an ``"error"`` event emitted with no listener and a
    first argument that is not an ``Exception``."""


Handler = TypeVar("Handler", bound=Callable[..., Any])

_NO_CALLS: tuple[Callable[..., Any], ...] = ()


class EventEmitter:
    """A Node.js-style event emitter: pyee 13's ``EventEmitter`` (see the module docstring).

    Args:
        metrics: nova's optional features, all off by default: see
            :mod:`nova.compat._features` for this one and the four below.
        manager: a nova feature (see *metrics*).
        listener_config: a nova feature (see *metrics*).
        store: a nova feature (see *metrics*).
        stream: a nova feature (see *metrics*).

    Subclasses may override ``_emit_run(f, args, kwargs)`` (how one listener is run), as
    pyee's own subclasses do; emits then go through it.

    Raises:
        TypeError / ValidationError: a bad feature argument.
    """

    #: True on subclasses that override ``_emit_run`` (set by ``__init_subclass__``).
    _via_run = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._via_run = cls._emit_run is not EventEmitter._emit_run

    def __init__(self, *, metrics: Any = None, manager: Any = None, listener_config: Any = None,
                 store: Any = None, stream: str | None = None) -> None:
        self._events: dict[Any, OrderedDict[Callable[..., Any], Callable[..., Any]]] = {}
        self._lock: Lock = Lock()
        self._features = Features.build("pyee", metrics=metrics, manager=manager,
                                        listener_config=listener_config, store=store, stream=stream)
        # event -> the tuple emit() calls (the listeners, instrumented when features are
        # on, routed through _emit_run on subclasses that override it); replaced, never
        # mutated, under _lock
        self._calls: dict[Any, tuple[Callable[..., Any], ...]] = {}
        self._entries: dict[tuple[Any, Callable[..., Any]], Callable[..., Any]] = {}
        self._once_calls: dict[tuple[Any, Callable[..., Any]], Call] = {}

    # -- pickling ----------------------------------------------------------------------
    def __getstate__(self) -> Mapping[str, Any]:
        if self._features is not None:
            raise TypeError("Expected an EventEmitter without nova features to pickle, got one with "
                            "metrics/manager/store (they hold threads and locks)")
        state = self.__dict__.copy()
        for name in ("_lock", "_calls", "_entries", "_once_calls"):
            del state[name]
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = Lock()
        self._calls = {}
        self._entries = {}
        self._once_calls = {}
        for event in list(self._events):
            self._rebuild(event)

    # -- adding listeners --------------------------------------------------------------
    @overload
    def on(self, event: Any) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, event: Any, f: Handler) -> Handler: ...

    def on(self, event: Any, f: Handler | None = None) -> Handler | Callable[[Handler], Handler]:
        """Register *f* for *event*; without *f*, return a decorator that does.  Either
        way the function itself is returned (call it directly, or pass it to
        :meth:`remove_listener`).  Emits ``"new_listener"`` first."""
        if f is None:
            return self.listens_to(event)
        return self.add_listener(event, f)

    def listens_to(self, event: Any) -> Callable[[Handler], Handler]:
        """A decorator registering the decorated function for *event* (returns it)."""

        def on(f: Handler) -> Handler:
            self._add_event_handler(event, f, f)
            return f

        return on

    def add_listener(self, event: Any, f: Handler) -> Handler:
        """Register *f* for *event* and return it (not a decorator)."""
        self._add_event_handler(event, f, f)
        return f

    def _add_event_handler(self, event: Any, k: Callable[..., Any], v: Callable[..., Any]) -> None:
        # 'new_listener' fires *before* the listener is added (pyee, Node.js)
        self.emit("new_listener", event, k)
        with self._lock:
            od = self._events.get(event)
            if od is None:
                od = self._events[event] = OrderedDict()
            old = od.get(k)
            od[k] = v
            if old is not None and old is not v:
                self._drop_entry(event, k)
            self._rebuild(event)

    def once(self, event: Any, f: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """As :meth:`on`, but the listener is removed before its first call; concurrent
        emits call it once in all."""

        def _wrapper(f: Callable[..., Any]) -> Callable[..., Any]:
            features = self._features
            call: Call | None = None
            if features is not None:
                call = features.caller(lambda: f, f, event)

            def g(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    # it may have been removed (or fired in another thread) just before
                    od = self._events.get(event)
                    if od is None or f not in od:
                        return None
                    self._remove_listener(event, f)
                # f may return a coroutine: returned, so that emit can schedule it
                if call is not None:
                    return call(args, kwargs)
                return f(*args, **kwargs)

            g.nova_once = True  # type: ignore[attr-defined]
            self._add_event_handler(event, f, g)
            if call is not None:
                with self._lock:
                    self._once_calls[(event, f)] = call
            return f

        if f is None:
            return _wrapper
        return _wrapper(f)

    # -- the call table ----------------------------------------------------------------
    def _entry(self, event: Any, v: Callable[..., Any], k: Callable[..., Any]) -> Callable[..., Any]:
        """What emit() calls for listener *k* (value *v*).  Call with _lock held."""
        features = self._features
        if features is None and not self._via_run:
            return v
        key = (event, k)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        target = v
        if features is not None and not getattr(v, "nova_once", False):
            call = features.caller(lambda: v, v, event)

            def target(*args: Any, **kwargs: Any) -> Any:
                return call(args, kwargs)

            target.nova_call = call  # type: ignore[attr-defined]
        if self._via_run:
            run = self._emit_run
            inner = target

            def entry(*args: Any, **kwargs: Any) -> None:
                run(inner, args, kwargs)

            entry.nova_call = getattr(target, "nova_call", None)  # type: ignore[attr-defined]
        else:
            entry = target
        self._entries[key] = entry
        return entry

    def _rebuild(self, event: Any) -> None:
        """Publish the call tuple of *event*.  Call with _lock held."""
        od = self._events.get(event)
        if od:
            self._calls[event] = tuple([self._entry(event, v, k) for k, v in od.items()])
        else:
            self._calls.pop(event, None)

    def _drop_entry(self, event: Any, k: Callable[..., Any]) -> None:
        """Forget listener *k*'s instrumented call (unregistering it from the manager)."""
        key = (event, k)
        entry = self._entries.pop(key, None)
        once_call = self._once_calls.pop(key, None)
        features = self._features
        if features is not None:
            if entry is not None:
                features.release(getattr(entry, "nova_call", None))
            if once_call is not None:
                features.release(once_call)

    # -- emit --------------------------------------------------------------------------
    # Benchmark: asv_benchmarks/ratio_compat.py "pyee EventEmitter.emit" (>= 2x pyee's).
    def emit(self, event: Any, *args: Any, **kwargs: Any) -> bool:
        """Call every listener of *event* with ``*args, **kwargs``, in the order they
        were added.  Returns ``True`` if *event* had listeners, else ``False``.

        Raises:
            Exception: what a listener raises (the listeners after it are not called);
                for an ``"error"`` event that has no listener, its first argument when
                that is an ``Exception``.
            PyeeError: an ``"error"`` event that has no listener and whose first
                argument is not an ``Exception``.
        """
        if self._features is not None:
            self._features.record(event, args, kwargs)
        calls = self._calls.get(event, _NO_CALLS)
        if calls:
            if kwargs:
                for f in calls:
                    f(*args, **kwargs)
            else:  # no kwargs dict to build per call
                for f in calls:
                    f(*args)
            return True
        self._emit_handle_potential_error(event, args[0] if args else None)
        return False

    def _emit_run(self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Run one listener (the subclass hook; the base class calls listeners directly)."""
        f(*args, **kwargs)

    def _emit_handle_potential_error(self, event: Any, error: Any) -> None:
        if event == "error":
            if isinstance(error, Exception):
                raise error
            raise PyeeError(f"Uncaught, unspecified 'error' event: {error}")

    def _call_handlers(self, event: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """pyee's internal step of :meth:`emit`: call the listeners, True if any."""
        calls = self._calls.get(event, _NO_CALLS)
        for f in calls:
            f(*args, **kwargs)
        return bool(calls)

    # -- removing listeners ------------------------------------------------------------
    def _remove_listener(self, event: Any, f: Callable[..., Any]) -> None:
        """Naked removal (call with _lock held).  KeyError if *event* exists without *f*."""
        od = self._events.get(event)
        if od is not None:
            od.pop(f)
            self._drop_entry(event, f)
            if not od:
                del self._events[event]
            self._rebuild(event)

    def remove_listener(self, event: Any, f: Callable[..., Any]) -> None:
        """Remove *f* from *event* (nothing happens when *event* has no listeners).

        Raises:
            KeyError: *event* has listeners but *f* is not one of them (as pyee).
        """
        with self._lock:
            self._remove_listener(event, f)

    def remove_all_listeners(self, event: Any = None) -> None:
        """Remove every listener of *event*, or of every event when *event* is None."""
        with self._lock:
            if event is not None:
                for k in list(self._events.get(event, ())):
                    self._drop_entry(event, k)
                self._events[event] = OrderedDict()  # pyee keeps the (empty) name
                self._rebuild(event)
            else:
                for ev, od in list(self._events.items()):
                    for k in list(od):
                        self._drop_entry(ev, k)
                self._events = {}
                self._calls = {}

    # -- introspection -----------------------------------------------------------------
    def event_names(self) -> set[Any]:
        """The events that have (or had, see :meth:`remove_all_listeners`) listeners."""
        return set(self._events.keys())

    def listeners(self, event: Any) -> list[Callable[..., Any]]:
        """A new list of the listeners of *event* (``[]`` if none)."""
        od = self._events.get(event)
        return [] if od is None else list(od.keys())
