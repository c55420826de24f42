"""Middleware: the onion chain around delivery, and the seed's ``before``/``after`` hooks.

A middleware is ``middleware(event, call_next)``; the first added is the outermost.
:class:`HookMiddleware` adapts the Go seed's ``before(event)`` / ``after(event, error)``
shape.  :class:`Stack` is the emitter's immutable set of middleware, with the parts the
buffered path needs precomputed: the ``before`` hooks run in the emitting thread, the
rest (``after`` hooks and plain middleware) in the worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from nova.errors import type_name
from nova.events import EVENT_CLASSES, check_event

__all__ = ("HookMiddleware", "hooks", "Stack", "as_middleware", "chain", "run", "Ctx")


class HookMiddleware:
    """Middleware of the seed's ``before``/``after`` shape, as an onion middleware.

    ``before(event)`` runs first: it returns ``None`` (go on with *event*), an
    :class:`~nova.events.Event` (go on with that one instead) or ``False`` (stop: the
    event is not delivered).  If it raises, the event is not delivered and the error
    is a middleware error.  ``after(event, error)`` runs once delivery is over, with the
    delivery error (``None`` if every listener succeeded or errors were reported rather
    than raised); its return value is ignored.

    With :meth:`Emitter.emit_async`, ``before`` runs in the emitting thread (so a
    rejection raises at the call) and ``after`` in the worker after delivery.

    Raises:
        TypeError: neither hook given, or a hook is not callable.
    """

    __slots__ = ("before", "after")

    def __init__(self, before: Callable[[Any], Any] | None = None, after: Callable[[Any, BaseException | None], Any] | None = None) -> None:
        if before is None and after is None:
            raise TypeError("Expected a before and/or an after hook, got neither")
        for name, fn in (("before", before), ("after", after)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Expected a callable {name} hook, got {type_name(fn)}")
        self.before = before
        self.after = after

    def run_before(self, event: Any) -> Any:
        """Run ``before``: return the event to deliver, or ``None`` to stop."""
        if self.before is None:
            return event
        r = self.before(event)
        if r is None:
            return event
        if r is False:
            return None
        if isinstance(r, EVENT_CLASSES):
            return r
        raise TypeError(f"Expected before() to return None, False or an Event, got {type_name(r)}")

    def after_only(self, event: Any, call_next: Callable[[Any], Any]) -> Any:
        """The part of this middleware that runs after ``before`` already ran."""
        err: BaseException | None = None
        try:
            return call_next(event)
        except BaseException as exc:
            err = exc
            raise
        finally:
            if self.after is not None:
                self.after(event, err)

    def __call__(self, event: Any, call_next: Callable[[Any], Any]) -> Any:
        ev = self.run_before(event)
        if ev is None:
            return None
        return self.after_only(ev, call_next)

    def __repr__(self) -> str:
        return f"<HookMiddleware before={self.before!r} after={self.after!r}>"


def hooks(before: Callable[[Any], Any] | None = None, after: Callable[[Any, BaseException | None], Any] | None = None) -> HookMiddleware:
    """Make a middleware from ``before(event)`` / ``after(event, error)`` hooks (the
    Go seed's shape).  See :class:`HookMiddleware`."""
    return HookMiddleware(before, after)


def as_middleware(middleware: Any, before: Callable[[Any], Any] | None,
                  after: Callable[[Any, BaseException | None], Any] | None) -> Any:
    """What :meth:`Emitter.use` adds for its arguments (see there); raises TypeError."""
    if middleware is None:
        return HookMiddleware(before, after)
    if before is not None or after is not None:
        raise TypeError("Expected either a middleware or before/after hooks, got both")
    if isinstance(middleware, HookMiddleware):
        return middleware
    if not callable(middleware) and (hasattr(middleware, "before") or hasattr(middleware, "after")):
        return HookMiddleware(getattr(middleware, "before", None), getattr(middleware, "after", None))
    if callable(middleware):
        if inspect.iscoroutinefunction(middleware) or inspect.iscoroutinefunction(getattr(middleware, "__call__", None)):
            raise TypeError("Expected a sync middleware(event, call_next), got an async def")
        return middleware
    raise TypeError(f"Expected a middleware(event, call_next) or an object with before/after, got {type_name(middleware)}")


class Stack:
    """An immutable middleware stack (outermost first).

    Attributes:
        all: every middleware, for ``emit``/``aemit``.
        before: the hook middlewares with a ``before``, run by ``emit_async`` at intake.
        worker: what runs in the workers around delivery (``after`` parts and plain
            middleware).
    """

    __slots__ = ("all", "before", "worker")

    def __init__(self, middlewares: tuple[Any, ...] = ()) -> None:
        self.all = middlewares
        self.before = tuple(m for m in middlewares if isinstance(m, HookMiddleware) and m.before is not None)
        layers: list[Any] = []
        for m in middlewares:
            if not isinstance(m, HookMiddleware):
                layers.append(m)
            elif m.after is not None:
                layers.append(m.after_only)
        self.worker = tuple(layers)

    def plus(self, middleware: Any) -> Stack:
        """A stack with *middleware* added innermost."""
        return Stack((*self.all, middleware))


class Ctx:
    """Per-call state of a delivery through middleware."""

    __slots__ = ("delivery_exc",)

    def __init__(self) -> None:
        self.delivery_exc: BaseException | None = None


def chain(layers: tuple[Any, ...], terminal: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """*terminal* wrapped in *layers* (outermost first); each ``call_next`` checks that
    it is given an Event."""
    call = terminal
    for mw in reversed(layers):
        call = _layer(mw, call)
    return call


def _layer(mw: Any, nxt: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call_next_checked(ev: Any) -> Any:
        check_event(ev)
        return nxt(ev)

    def run(ev: Any) -> Any:
        return mw(ev, call_next_checked)

    return run


def run(layers: tuple[Any, ...], event: Any, terminal: Callable[[Any], Any]) -> Exception | None:
    """Pass *event* through *layers* to *terminal* (given only Events); returns the
    Exception that came out of the chain, or None."""

    def checked(ev: Any) -> Any:
        check_event(ev)
        return terminal(ev)

    try:
        chain(layers, checked)(event)
    except Exception as exc:
        return exc
    return None
