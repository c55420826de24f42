"""nova's machinery behind the compat facades: metrics, managed listeners, a store tap.

Every facade (:mod:`nova.compat.pyee`, :mod:`nova.compat.blinker`) takes the same
optional keywords, all off by default (then the facade behaves exactly as the original
and pays nothing but one ``is None`` test per emit):

``metrics``
    a :class:`~nova.observability.metrics.MetricsCollector`: each emit/send counts
    ``nova_events_emitted_total{type, result="ok"}``; each listener call counts
    ``nova_events_processed_total{listener, result="ok"|"error"}`` and observes
    ``nova_listener_duration_seconds{listener}`` (for a coroutine function, the time to
    create the coroutine).  Listener labels are ``"<source>:<qualname>"``.
``manager`` (and ``listener_config``)
    a :class:`~nova.listener.ListenerManager`: every listener is registered with it
    (id ``"<source>:<qualname>#<n>"``, config *listener_config*) and called through the
    :class:`~nova.listener.ManagedListener`, so retries, the circuit breaker and dead
    letters apply and ``manager.health()`` sees it.  As with any managed listener, a
    failure is not raised to the emitter's caller (it is retried, then dead-lettered)
    and the call returns ``None``.  Removing the listener unregisters it.
``store`` (and ``stream``)
    an event store (:class:`~nova.store.MemoryStore`, ...): every emit/send is appended
    to *stream* as ``Event(<event name>, {"args": args, "kwargs": kwargs})`` before the
    listeners run (emits with no listener too), so it can be replayed or audited.

Raises (at construction of the facade): ``TypeError`` for a wrong type,
:class:`~nova.errors.ValidationError` for an empty *stream* or a *listener_config*
without a *manager*.

.. versionadded:: 0.2
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Callable
from typing import Any

from nova._core import Event
from nova.errors import ValidationError, type_name

__all__ = ("Features", "Resolve", "Call", "event_type", "label_of")

#: A zero-argument function returning the listener to call now (``None``: it is gone,
#: e.g. a weakly referenced receiver that was collected).
Resolve = Callable[[], Any]
#: ``call(args, kwargs)``: one instrumented listener call.
Call = Callable[[tuple[Any, ...], dict[str, Any]], Any]

_METRIC_OPS = ("inc_events_emitted", "inc_events_processed", "observe_listener_duration")


def event_type(name: Any) -> str:
    """The nova event type for an emitted name: the name itself when it is a non-empty
    ``str``, else its ``str()`` (pyee allows any hashable name; an empty one becomes
    ``"<empty>"``)."""
    if type(name) is str and name:
        return name
    text = str(name)
    return text if text else "<empty>"


def label_of(fn: Any) -> str:
    """A stable, bounded label for a listener: its qualified name."""
    name = getattr(fn, "__qualname__", None)
    if not isinstance(name, str):
        name = type(fn).__qualname__
    return name


class Features:
    """The optional nova features of one facade object (see the module docstring).

    Built by :meth:`build`, which returns ``None`` when every feature is off (the
    facades test ``features is None`` on their hot paths).  Thread-safe.
    """

    __slots__ = ("source", "metrics", "manager", "config", "store", "stream", "_seq")

    def __init__(self, source: str, *, metrics: Any = None, manager: Any = None,
                 listener_config: Any = None, store: Any = None, stream: str | None = None) -> None:
        from nova.listener import ListenerConfig, ListenerManager

        if metrics is not None:
            for op in _METRIC_OPS:
                if not callable(getattr(metrics, op, None)):
                    raise TypeError(f"Expected a MetricsCollector (with {op}) or None, got {type_name(metrics)}")
            if getattr(metrics, "enabled", True) is False:
                metrics = None
        if manager is not None and not isinstance(manager, ListenerManager):
            raise TypeError(f"Expected a ListenerManager or None, got {type_name(manager)}")
        if listener_config is not None:
            if not isinstance(listener_config, ListenerConfig):
                raise TypeError(f"Expected a ListenerConfig or None, got {type_name(listener_config)}")
            if manager is None:
                raise ValidationError("Expected a manager with listener_config, got listener_config alone")
        if store is not None and not callable(getattr(store, "append", None)):
            raise TypeError(f"Expected an event store (with append) or None, got {type_name(store)}")
        if stream is None:
            stream = source
        elif not isinstance(stream, str):
            raise TypeError(f"Expected a str stream, got {type_name(stream)}")
        elif not stream:
            raise ValidationError("Expected a non-empty stream name, got ''")
        self.source = source
        self.metrics = metrics
        self.manager = manager
        self.config = listener_config
        self.store = store
        self.stream = stream
        self._seq = itertools.count(1)

    @classmethod
    def build(cls, source: str, *, metrics: Any = None, manager: Any = None, listener_config: Any = None,
              store: Any = None, stream: str | None = None) -> Features | None:
        """The features asked for, or ``None`` when none is (arguments checked either way)."""
        f = cls(source, metrics=metrics, manager=manager, listener_config=listener_config,
                store=store, stream=stream)
        if f.metrics is None and f.manager is None and f.store is None:
            return None
        return f

    # -- per emit ------------------------------------------------------------------------
    def record(self, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """One emit/send of *name*: append it to the store, count it."""
        etype = event_type(name)
        if self.store is not None:
            self.store.append(self.stream, Event(etype, {"args": args, "kwargs": kwargs}))
        if self.metrics is not None:
            self.metrics.inc_events_emitted(etype, "ok")

    # -- per listener --------------------------------------------------------------------
    def caller(self, resolve: Resolve, fn: Any, name: Any) -> Call:
        """The instrumented call of listener *fn* (found by *resolve* at each call) for
        events named *name*.  Release it with :meth:`release` when the listener goes."""
        label = f"{self.source}:{label_of(fn)}"
        etype = event_type(name)
        call: Call
        if self.manager is not None:
            call = self._managed(resolve, fn, etype, label)
        else:
            def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                target = resolve()
                return None if target is None else target(*args, **kwargs)
        if self.metrics is None:
            return call
        return self._measured(call, label)

    def _managed(self, resolve: Resolve, fn: Any, etype: str, label: str) -> Call:
        lid = f"{label}#{next(self._seq)}"
        if inspect.iscoroutinefunction(fn):
            async def inner_async(event: Any) -> Any:
                target = resolve()
                if target is None:
                    return None
                return await target(*event.data["args"], **event.data["kwargs"])

            inner: Any = inner_async
        else:
            def inner_sync(event: Any) -> Any:
                target = resolve()
                if target is None:
                    return None
                return target(*event.data["args"], **event.data["kwargs"])

            inner = inner_sync
        managed = self.manager.register(inner, self.config, id=lid)
        handle = managed.handle

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return handle(Event(etype, {"args": args, "kwargs": kwargs}))

        call.nova_listener_id = lid  # type: ignore[attr-defined]
        return call

    def _measured(self, call: Call, label: str) -> Call:
        m = self.metrics
        perf = time.perf_counter

        def measured(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            t0 = perf()
            try:
                result = call(args, kwargs)
            except BaseException:
                m.observe_listener_duration(label, perf() - t0)
                m.inc_events_processed(label, "error")
                raise
            m.observe_listener_duration(label, perf() - t0)
            m.inc_events_processed(label, "ok")
            return result

        lid = getattr(call, "nova_listener_id", None)
        if lid is not None:
            measured.nova_listener_id = lid  # type: ignore[attr-defined]
        return measured

    def release(self, call: Any) -> None:
        """The listener behind *call* is gone: unregister it from the manager."""
        lid = getattr(call, "nova_listener_id", None)
        if lid is None or self.manager is None:
            return
        from nova.errors import ListenerNotFound

        try:
            self.manager.unregister(lid)
        except ListenerNotFound:
            pass
