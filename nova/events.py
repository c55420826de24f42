"""Events, listeners and subscriptions.

* :class:`Event` — the immutable event record (compiled when the kernels are built).
* :class:`Listener` — the protocol every listener satisfies; :func:`as_listener` turns
  any callable or ``async def`` into one.
* :class:`Subscription` — the handle returned when a listener is subscribed.
* :func:`to_timestamp_ns`, :func:`new_id`, :func:`now_ns` — time and id helpers.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nova import _core
from nova.errors import ValidationError

if TYPE_CHECKING:
    from nova._core.event_py import Event, new_id, now_ns, to_timestamp_ns
else:
    Event = _core.Event
    new_id = _core.new_id
    now_ns = _core.now_ns
    to_timestamp_ns = _core.to_timestamp_ns

__all__ = (
    "Event",
    "EventABC",
    "EVENT_CLASSES",
    "is_event",
    "check_event",
    "Listener",
    "FunctionListener",
    "Subscription",
    "as_listener",
    "is_async_listener",
    "new_id",
    "now_ns",
    "to_timestamp_ns",
)


class EventABC(abc.ABC):
    """What every nova event is an instance of, compiled or pure.

    Both implementations of :class:`Event` are registered with it (as multidict registers
    its C types with its ABCs), so code that accepts events checks
    ``isinstance(x, EventABC)`` (or calls :func:`check_event`) and never imports the
    other twin.

    .. versionadded:: 0.2
    """

    __slots__ = ()


def _event_classes() -> tuple[type, ...]:
    from nova._core import event_py

    classes: list[type] = [Event]
    if event_py.Event is not Event:
        classes.append(event_py.Event)
    return tuple(classes)


#: The concrete Event classes in use (the active one first, then the pure twin if
#: different): a tuple for ``isinstance`` on hot paths, where an ABC check costs more.
EVENT_CLASSES: tuple[type, ...] = _event_classes()
for _cls in EVENT_CLASSES:
    EventABC.register(_cls)
del _cls


def is_event(obj: object) -> bool:
    """True if *obj* is a nova :class:`Event` (either implementation)."""
    return isinstance(obj, EVENT_CLASSES)


def check_event(obj: object) -> None:
    """Raise ``TypeError("Expected a nova Event, got <type>")`` unless *obj* is one."""
    if not isinstance(obj, EVENT_CLASSES):
        raise TypeError(f"Expected a nova Event, got {type(obj).__name__}")


@runtime_checkable
class Listener(Protocol):
    """What nova calls with events.

    A listener has an ``id`` (``str``) and a ``handle(event)`` method, which may be a
    coroutine function.  It may also define ``on_error(event, exc)``, which nova calls
    when ``handle`` raised and the error was not re-raised to the emitting caller.
    """

    @property
    def id(self) -> str: ...

    def handle(self, event: Event) -> Any:
        """Handle one event; may return an awaitable (``async def``). Raising reports an
        error to the component that delivered the event (see its error policy)."""
        ...


def _qualname(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def _is_coroutine_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


class FunctionListener:
    """A :class:`Listener` made from a plain callable or an ``async def``.

    ``id`` is the callable's qualified name (``module.qualname``) unless given.
    ``is_async`` tells whether calling it returns a coroutine.
    """

    __slots__ = ("_id", "fn", "is_async", "_on_error")

    def __init__(
        self,
        fn: Callable[[Event], Any],
        id: str | None = None,
        on_error: Callable[[Event, BaseException], Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Expected a callable listener, got {type(fn).__name__}")
        if id is not None and (not isinstance(id, str) or not id):
            raise ValidationError(f"Expected a non-empty str listener id, got {id!r}")
        self._id = id if id is not None else _qualname(fn)
        self.fn = fn
        self.is_async = _is_coroutine_callable(fn)
        self._on_error = on_error

    @property
    def id(self) -> str:
        """The listener id."""
        return self._id

    def handle(self, event: Event) -> Any:
        """Call the wrapped function with *event* and return what it returns."""
        return self.fn(event)

    def on_error(self, event: Event, exc: BaseException) -> None:
        """Forward to the ``on_error`` callable given at construction, if any."""
        if self._on_error is not None:
            self._on_error(event, exc)

    def __call__(self, event: Event) -> Any:
        return self.fn(event)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FunctionListener):
            return NotImplemented
        return self.fn == other.fn and self._id == other._id

    def __hash__(self) -> int:
        return hash((self._id, id(self.fn)))

    def __repr__(self) -> str:
        kind = "async " if self.is_async else ""
        return f"<FunctionListener {kind}{self._id!r}>"


def as_listener(fn: Any, id: str | None = None) -> Any:
    """Return a :class:`Listener` for *fn*.

    * An object that already has ``id`` and a callable ``handle`` is returned as is
      (unless a different *id* is asked for, then it is wrapped under that id).
    * Any other callable (``async def`` included) is wrapped in a
      :class:`FunctionListener` whose id is its qualified name unless *id* is given.

    Raises:
        TypeError: *fn* is neither a Listener nor callable.
        ValidationError: *id* is given but is not a non-empty ``str``.
    """
    handle = getattr(fn, "handle", None)
    if handle is not None and callable(handle) and isinstance(getattr(fn, "id", None), str):
        if id is None or id == fn.id:
            return fn
        if not isinstance(id, str) or not id:
            raise ValidationError(f"Expected a non-empty str listener id, got {id!r}")
        return _RenamedListener(fn, id)
    if not callable(fn):
        raise TypeError(
            f"Expected a callable, an async def or a Listener (with id and handle), got {type(fn).__name__}"
        )
    return FunctionListener(fn, id=id)


class _RenamedListener:
    """A :class:`Listener` under another id.  Not a plain function wrapper: what its
    ``handle`` returns (an awaitable, for a Listener that returns one) is still acted on."""

    __slots__ = ("_id", "listener", "handle", "is_async", "on_error")

    def __init__(self, listener: Any, id: str) -> None:
        self._id = id
        self.listener = listener
        self.handle = listener.handle
        self.is_async = is_async_listener(listener)
        self.on_error = getattr(listener, "on_error", None)

    @property
    def id(self) -> str:
        """The listener id."""
        return self._id

    def __repr__(self) -> str:
        return f"<Listener {self._id!r} for {self.listener!r}>"


def is_async_listener(listener: Any) -> bool:
    """Return True if calling ``listener.handle(event)`` returns an awaitable."""
    flag = getattr(listener, "is_async", None)
    if isinstance(flag, bool):
        return flag
    return _is_coroutine_callable(getattr(listener, "handle", None))


_sub_ids = itertools.count(1)


class Subscription:
    """The handle of one subscription: a listener attached to a topic or event type.

    Attributes:
        id: unique ``str`` id of this subscription.
        topic: the event type, topic or pattern subscribed to.
        listener: the :class:`Listener` that receives events.
        active: ``True`` until unsubscribed (or ended by its owner, e.g. a deleted
            topic; :attr:`end_reason` then says why).

    ``unsubscribe()`` is idempotent and thread-safe: it returns ``True`` the first time
    and ``False`` afterwards.  Used as a context manager, it unsubscribes on exit.
    """

    __slots__ = ("id", "topic", "listener", "_active", "_detach", "_lock", "end_reason", "__weakref__")

    def __init__(
        self,
        topic: str,
        listener: Any,
        detach: Callable[[Subscription], Any] | None = None,
        *,
        id: str | None = None,
    ) -> None:
        self.id = id if id is not None else f"sub-{next(_sub_ids)}"
        self.topic = topic
        self.listener = listener
        self._active = True
        self._detach = detach
        self._lock = threading.Lock()
        self.end_reason: str | None = None

    @property
    def active(self) -> bool:
        """``True`` while the subscription receives events."""
        return self._active

    def unsubscribe(self) -> bool:
        """Stop receiving events. Returns ``True`` if this call ended the subscription."""
        with self._lock:
            if not self._active:
                return False
            self._active = False
            self.end_reason = "unsubscribed"
            detach, self._detach = self._detach, None
        if detach is not None:
            detach(self)
        return True

    def _end(self, reason: str) -> bool:
        """Mark inactive from the owner's side (no detach callback). For owners only."""
        with self._lock:
            if not self._active:
                return False
            self._active = False
            self.end_reason = reason
            self._detach = None
        return True

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        state = "active" if self._active else f"inactive ({self.end_reason})"
        lid = getattr(self.listener, "id", self.listener)
        return f"<Subscription {self.id} topic={self.topic!r} listener={lid!r} {state}>"


# Re-exported for type hints in facades.
ListenerLike = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]] | Listener
