"""pyee's class decorators on nova (``pyee.cls``): ``@evented`` and ``@on(event)``.

::

    @evented
    class Service:
        @on("event")
        def handler(self, *args, **kwargs): ...

    Service().event_emitter.emit("event", 1)

``@on`` marks a method; ``@evented`` wraps ``__init__`` so that each instance gets an
``event_emitter`` (a new :class:`~nova.compat.pyee.EventEmitter` unless ``__init__`` set
one) with the marked methods of the class bound to it, in definition order.  Unlike
pyee, the marks live on the methods, not in a module-global list, so classes built in
several threads at once, or a marked class that is not ``@evented``, cannot mix up.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from nova.compat.pyee.base import EventEmitter

__all__ = ("evented", "on", "Handler")

_MARK = "_nova_pyee_events"


@dataclass
class Handler:
    """One ``@on`` registration: *event* and the (unbound) *method*."""

    event: Any
    method: Callable[..., Any]


def on(event: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method of an ``@evented`` class as a listener of *event* (returns it)."""

    def decorator(method: Callable[..., Any]) -> Callable[..., Any]:
        events = getattr(method, _MARK, None)
        if events is None:
            events = []
            setattr(method, _MARK, events)
        events.append(event)
        return method

    return decorator


def _bind(self: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    return bound


Cls = TypeVar("Cls", bound=type)


def evented(cls: Cls) -> Cls:
    """Make *cls* evented: see the module docstring.  Returns *cls*."""
    handlers = [Handler(event, method) for method in list(vars(cls).values())
                for event in getattr(method, _MARK, ())]
    og_init: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @wraps(og_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        og_init(self, *args, **kwargs)
        if not hasattr(self, "event_emitter"):
            self.event_emitter = EventEmitter()
        for h in handlers:
            self.event_emitter.on(h.event, _bind(self, h.method))

    cls.__init__ = init  # type: ignore[misc]
    return cls
