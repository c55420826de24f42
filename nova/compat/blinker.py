"""blinker 1.9 on nova: change ``blinker`` to ``nova.compat.blinker`` in your imports.

:class:`Signal`, :class:`NamedSignal`, :class:`Namespace`, :func:`signal`,
:data:`default_namespace` and :data:`ANY`, with blinker's semantics:

* ``connect(receiver, sender=ANY, weak=True)``: a weakly referenced receiver (a bound
  method through :class:`weakref.WeakMethod`) is disconnected when it is collected; a
  weakly referenceable sender's connections go when it is collected; nothing leaks.
  Senders are told apart as blinker does: ``str``/``int`` by value, bound methods by
  (function, instance), anything else by identity.
* ``send(sender, **kwargs)`` calls the receivers of *sender* and of :data:`ANY`, each once,
  with ``(sender, **kwargs)``, and returns ``[(receiver, result), ...]``; a receiver's
  exception propagates at once.  Receivers are called in the order they were first
  connected (blinker leaves the order undefined; this is one of its allowed orders).
  ``send_async`` awaits them; ``_async_wrapper`` / ``_sync_wrapper`` as blinker.
* ``connect_via``, ``connected_to``, ``muted``, ``has_receivers_for``,
  ``receivers_for``, ``disconnect``, and the ``receiver_connected`` /
  ``receiver_disconnected`` signals.
* The bookkeeping attributes blinker's tests read (``receivers``, ``_by_sender``,
  ``_by_receiver``, ``_weak_senders``, ``_cleanup_bookkeeping()``, ``_clear_state()``)
  keep blinker's shape.

What nova adds: the optional keywords of :mod:`nova.compat._features` (``metrics``,
``manager``/``listener_config``, ``store``/``stream``) on :class:`Signal`,
:class:`NamedSignal` and :meth:`Namespace.signal`, off by default.  A coroutine
receiver run through ``send``'s ``_async_wrapper`` is called as given (the wrapper
decides how), without the features.

Thread-safety: connecting and disconnecting (and weakref cleanups, from whatever thread
the collector runs them) take the signal's lock; ``send`` reads an immutable per-sender
plan of the receivers (no lock), so sends from many threads run at once.

.. versionadded:: 0.2
"""

from __future__ import annotations

import sys
import weakref
from collections import defaultdict
from collections.abc import Callable, Coroutine, Generator, Hashable
from contextlib import contextmanager
from functools import cached_property
from inspect import iscoroutinefunction, ismethod
from threading import RLock
from types import MethodType
from typing import Any, ClassVar, Protocol, TypeVar

from nova.compat._features import Call, Features

__all__ = ("ANY", "NamedSignal", "Namespace", "Signal", "Symbol", "default_namespace", "signal")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Symbol:
    """A constant symbol, nicer than ``object()``: ``Symbol("foo") is Symbol("foo")``;
    ``repr`` is the name; pickles to the same instance."""

    symbols: ClassVar[dict[str, Symbol]] = {}

    def __new__(cls, name: str) -> Symbol:
        if name in cls.symbols:
            return cls.symbols[name]
        obj = super().__new__(cls)
        cls.symbols[name] = obj
        return obj

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.name,)


ANY = Symbol("ANY")
"""Symbol for "any sender"."""

ANY_ID = 0
_NONE_ID = id(None)
_STR_INT = (str, int)
#: Plans cached per sender id before the cache is emptied (senders seen only once, such
#: as fresh objects, must not grow it without bound).
_PLAN_CACHE_MAX = 1024


def make_id(obj: object) -> Hashable:
    """A stable identifier of a receiver or sender (blinker's rule): bound methods by
    (function, instance), ``str``/``int`` by value, anything else by identity."""
    if ismethod(obj):
        return id(obj.__func__), id(obj.__self__)
    if isinstance(obj, _STR_INT):
        return obj
    return id(obj)


#: How send() identifies a sender of a given type: 0 by value (str, int and their
#: subclasses), 1 by identity; a type not listed yet goes through _sender_id_slow once.
#: Bound methods are never listed (their id is a pair).
_ID_KIND: dict[type, int] = {str: 0, int: 0, type(None): 1}
_ID_KIND_MAX = 4096


def _sender_id_slow(sender: Any) -> Hashable:
    """make_id(sender), learning the kind of its type for the next send."""
    t = type(sender)
    if t is not MethodType and len(_ID_KIND) < _ID_KIND_MAX:
        _ID_KIND[t] = 0 if isinstance(sender, _STR_INT) else 1
    return make_id(sender)


def make_ref(obj: T, callback: Callable[[weakref.ref[T]], None] | None = None) -> weakref.ref[T]:
    """A weak reference to *obj* (a :class:`weakref.WeakMethod` for a bound method).

    Raises:
        TypeError: *obj* cannot be weakly referenced.
    """
    if ismethod(obj):
        return weakref.WeakMethod(obj, callback)  # type: ignore[arg-type,return-value]
    return weakref.ref(obj, callback)


def _always(obj: Any) -> Callable[[], Any]:
    return lambda: obj


# One entry of a send plan: (receiver or None when weak, its weakref or None, receiver
# id, None for a plain sync receiver without features, else (is a coroutine function,
# the instrumented call or None)).
_Entry = tuple[Any, Any, Hashable, "tuple[bool, Call | None] | None"]


class Signal:
    """A notification emitter: blinker 1.9's ``Signal`` (see the module docstring).

    Args:
        doc: the signal's docstring.
        metrics: nova's optional features, all off by default: see
            :mod:`nova.compat._features` for this one and the four below.
        manager: a nova feature (see *metrics*).
        listener_config: a nova feature (see *metrics*).
        store: a nova feature (see *metrics*).
        stream: a nova feature (see *metrics*).

    Raises:
        TypeError / ValidationError: a bad feature argument.
    """

    ANY = ANY
    """An alias for the :data:`ANY` sender symbol."""

    set_class: type[set[Any]] = set
    """The set class of the sender/receiver bookkeeping (blinker's hook)."""

    @cached_property
    def receiver_connected(self) -> Signal:
        """Sent at the end of each :meth:`connect` call, by the signal, with the
        ``receiver``, ``sender`` and ``weak`` arguments."""
        return Signal(doc="Emitted after a receiver connects.")

    @cached_property
    def receiver_disconnected(self) -> Signal:
        """Sent at the end of each explicit :meth:`disconnect` call, by the signal, with
        the ``receiver`` and ``sender`` arguments (not on automatic weakref cleanup)."""
        return Signal(doc="Emitted after a receiver disconnects.")

    def __init__(self, doc: str | None = None, *, metrics: Any = None, manager: Any = None,
                 listener_config: Any = None, store: Any = None, stream: str | None = None) -> None:
        if doc:
            self.__doc__ = doc
        self.receivers: dict[Any, Any] = {}
        """Receiver id -> receiver (or its weakref).  ``if sig.receivers:`` is public."""
        self.is_muted: bool = False
        self._by_receiver: dict[Any, set[Any]] = defaultdict(self.set_class)
        self._by_sender: dict[Any, set[Any]] = defaultdict(self.set_class)
        self._weak_senders: dict[Any, weakref.ref[Any]] = {}
        self._lock = RLock()  # re-entrant: a weakref cleanup may run inside a locked section
        self._plans: dict[Any, tuple[_Entry, ...]] = {}
        self._meta: dict[Any, tuple[bool, Call | None]] = {}
        self._features = Features.build("blinker", metrics=metrics, manager=manager,
                                        listener_config=listener_config, store=store, stream=stream)

    def _name(self) -> str:
        return "blinker.Signal"

    # -- connecting ----------------------------------------------------------------------
    def connect(self, receiver: F, sender: Any = ANY, weak: bool = True) -> F:
        """Connect *receiver* to be called as ``receiver(sender, **kwargs)`` when the
        signal is sent by *sender* (any sender for :data:`ANY`).  With *weak*, the
        receiver is held by a weak reference and disconnected when collected (connect
        a closure with ``weak=False``).  Returns *receiver*.

        Raises:
            TypeError: *weak* and *receiver* cannot be weakly referenced.
        """
        receiver_id = make_id(receiver)
        sender_id = ANY_ID if sender is ANY else make_id(sender)
        with self._lock:
            if weak:
                held: Any = make_ref(receiver, self._make_cleanup_receiver(receiver_id))
            else:
                held = receiver
            self.receivers[receiver_id] = held
            self._set_meta(receiver_id, receiver, held, weak)
            self._by_sender[sender_id].add(receiver_id)
            self._by_receiver[receiver_id].add(sender_id)
            if sender is not ANY and sender_id not in self._weak_senders:
                try:  # a cleanup for weakly referenceable senders
                    self._weak_senders[sender_id] = make_ref(sender, self._make_cleanup_sender(sender_id))
                except TypeError:
                    pass
            self._plans = {}
        if "receiver_connected" in self.__dict__ and self.receiver_connected.receivers:
            try:
                self.receiver_connected.send(self, receiver=receiver, sender=sender, weak=weak)
            except TypeError:
                self.disconnect(receiver, sender)
                raise
        return receiver

    def _set_meta(self, receiver_id: Any, receiver: Any, held: Any, weak: bool) -> None:
        features = self._features
        call: Call | None = None
        if features is not None:
            old = self._meta.get(receiver_id)
            if old is not None:
                features.release(old[1])
            call = features.caller(held if weak else _always(receiver), receiver, self._name())
        self._meta[receiver_id] = (iscoroutinefunction(receiver), call)

    def connect_via(self, sender: Any, weak: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`connect` for *sender* (strong by default)."""

        def decorator(fn: F) -> F:
            self.connect(fn, sender, weak)
            return fn

        return decorator

    @contextmanager
    def connected_to(self, receiver: Callable[..., Any], sender: Any = ANY) -> Generator[None, None, None]:
        """Connect *receiver* (strongly) for the duration of a ``with`` block; it is
        disconnected when the block exits, also on an exception."""
        self.connect(receiver, sender=sender, weak=False)
        try:
            yield None
        finally:
            self.disconnect(receiver)

    @contextmanager
    def muted(self) -> Generator[None, None, None]:
        """Within the ``with`` block, sending calls no receiver (and returns ``[]``)."""
        self.is_muted = True
        try:
            yield None
        finally:
            self.is_muted = False

    # -- sending -------------------------------------------------------------------------
    def _plan(self, sender: Any) -> tuple[_Entry, ...]:
        """The entries to call for *sender* (cached per sender id)."""
        sid = _NONE_ID if sender is None else make_id(sender)
        plan = self._plans.get(sid)
        if plan is None:
            plan = self._build_plan(sid)
        return plan

    def _build_plan(self, sid: Any) -> tuple[_Entry, ...]:
        with self._lock:
            by_sender = self._by_sender
            ids = set(by_sender.get(ANY_ID, ()))
            if sid != ANY_ID:
                ids.update(by_sender.get(sid, ()))
            plan: list[_Entry] = []
            meta = self._meta
            for rid, held in self.receivers.copy().items():
                if rid not in ids:
                    continue
                is_async, call = meta[rid]
                slow = (is_async, call) if is_async or call is not None else None
                if isinstance(held, weakref.ref):
                    plan.append((None, held, rid, slow))
                else:
                    plan.append((held, None, rid, slow))
            result = tuple(plan)
            if len(self._plans) >= _PLAN_CACHE_MAX:
                self._plans = {}
            self._plans[sid] = result
            return result

    def _dead(self, receiver_id: Any) -> None:
        with self._lock:
            self._disconnect(receiver_id, ANY_ID)

    # Benchmark: asv_benchmarks/ratio_compat.py "blinker Signal.send" (>= 2x blinker's).
    def send(self, sender: Any | None = None, /, *,
             _async_wrapper: Callable[[Callable[..., Coroutine[Any, Any, Any]]], Callable[..., Any]] | None = None,
             **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call every receiver of *sender* and of :data:`ANY`, once each, as
        ``receiver(sender, **kwargs)``; return ``[(receiver, result), ...]``.

        A coroutine-function receiver is called through ``_async_wrapper(receiver)``.

        Raises:
            what a receiver raises (at once: the receivers after it are not called).
            RuntimeError: a coroutine-function receiver and no ``_async_wrapper``.
        """
        if self.is_muted:
            return []
        if self._features is not None:
            self._features.record(self._name(), (sender,), kwargs)
        # the sender id (make_id, inlined: this is the benchmarked path); with no
        # receiver at all the plan is empty
        kind = _ID_KIND.get(type(sender))
        if kind is None:
            sid: Any = _sender_id_slow(sender)
        elif kind:
            sid = id(sender)
        else:
            sid = sender
        plan = self._plans.get(sid)
        if plan is None:
            plan = self._build_plan(sid)
        results = []
        for fn, wr, rid, slow in plan:
            if wr is not None:
                fn = wr()
                if fn is None:
                    self._dead(rid)
                    continue
            if slow is None:
                results.append((fn, fn(sender, **kwargs) if kwargs else fn(sender)))
            elif slow[0]:
                if _async_wrapper is None:
                    raise RuntimeError("Cannot send to a coroutine function.")
                results.append((fn, _async_wrapper(fn)(sender, **kwargs)))
            else:
                results.append((fn, slow[1]((sender,), kwargs)))  # type: ignore[misc]
        return results

    async def send_async(self, sender: Any | None = None, /, *,
                         _sync_wrapper: Callable[[Callable[..., Any]], Callable[..., Coroutine[Any, Any, Any]]]
                         | None = None,
                         **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Await every receiver of *sender* and of :data:`ANY`, in turn, as
        ``await receiver(sender, **kwargs)``; return ``[(receiver, result), ...]``.

        A plain-function receiver is called through ``_sync_wrapper(receiver)``.

        Raises:
            Exception: what a receiver raises (at once).
            RuntimeError: a plain-function receiver and no ``_sync_wrapper``.
        """
        if self.is_muted:
            return []
        if self._features is not None:
            self._features.record(self._name(), (sender,), kwargs)
        if not self.receivers:
            return []
        results = []
        for fn, wr, rid, slow in self._plan(sender):
            if wr is not None:
                fn = wr()
                if fn is None:
                    self._dead(rid)
                    continue
            is_async, call = slow if slow is not None else (False, None)
            if not is_async:
                if _sync_wrapper is None:
                    raise RuntimeError("Cannot send to a non-coroutine function.")
                result = await _sync_wrapper(fn)(sender, **kwargs)
            elif call is None:
                result = await fn(sender, **kwargs)
            else:
                result = await call((sender,), kwargs)
            results.append((fn, result))
        return results

    def has_receivers_for(self, sender: Any) -> bool:
        """True if a receiver is connected for *sender* or for :data:`ANY` (weak
        receivers are not checked for liveness; see :meth:`receivers_for`)."""
        if not self.receivers:
            return False
        if self._by_sender.get(ANY_ID):
            return True
        if sender is ANY:
            return False
        return make_id(sender) in self._by_sender

    def receivers_for(self, sender: Any) -> Generator[Callable[..., Any], None, None]:
        """Yield each live receiver :meth:`send` would call for *sender*; dead weak
        receivers are disconnected and skipped."""
        if not self.receivers:
            return
        for fn, wr, rid, _ in self._plan(sender):
            if wr is not None:
                fn = wr()
                if fn is None:
                    self._dead(rid)
                    continue
            yield fn

    # -- disconnecting -------------------------------------------------------------------
    def disconnect(self, receiver: Callable[..., Any], sender: Any = ANY) -> None:
        """Disconnect *receiver* from *sender*, or from every sender (:data:`ANY`, the
        default).  Unknown receivers are ignored."""
        sender_id: Hashable = ANY_ID if sender is ANY else make_id(sender)
        with self._lock:
            self._disconnect(make_id(receiver), sender_id)
        if "receiver_disconnected" in self.__dict__ and self.receiver_disconnected.receivers:
            self.receiver_disconnected.send(self, receiver=receiver, sender=sender)

    def _disconnect(self, receiver_id: Hashable, sender_id: Hashable) -> None:
        """Call with _lock held."""
        if sender_id == ANY_ID:
            if self._by_receiver.pop(receiver_id, None) is not None:
                for bucket in list(self._by_sender.values()):
                    bucket.discard(receiver_id)
            self.receivers.pop(receiver_id, None)
            meta = self._meta.pop(receiver_id, None)
            if meta is not None and self._features is not None:
                self._features.release(meta[1])
        else:
            self._by_sender[sender_id].discard(receiver_id)
            self._by_receiver[receiver_id].discard(sender_id)
        self._plans = {}

    def _make_cleanup_receiver(self, receiver_id: Hashable) -> Callable[[weakref.ref[Any]], None]:
        """The weakref callback disconnecting a collected receiver."""

        def cleanup(ref: weakref.ref[Any]) -> None:
            # at interpreter exit disconnecting could raise oddly: skip it then
            if not sys.is_finalizing():
                with self._lock:
                    if self.receivers.get(receiver_id) is ref:
                        self._disconnect(receiver_id, ANY_ID)

        return cleanup

    def _make_cleanup_sender(self, sender_id: Hashable) -> Callable[[weakref.ref[Any]], None]:
        """The weakref callback forgetting a collected sender's connections."""
        assert sender_id != ANY_ID

        def cleanup(ref: weakref.ref[Any]) -> None:
            with self._lock:
                self._weak_senders.pop(sender_id, None)
                for receiver_id in self._by_sender.pop(sender_id, ()):
                    self._by_receiver[receiver_id].discard(sender_id)
                self._plans = {}

        return cleanup

    def _cleanup_bookkeeping(self) -> None:
        """Prune the empty sender/receiver sets that connecting and disconnecting leave."""
        with self._lock:
            for mapping in (self._by_sender, self._by_receiver):
                for ident, bucket in list(mapping.items()):
                    if not bucket:
                        mapping.pop(ident, None)
            self._plans = {}

    def _clear_state(self) -> None:
        """Disconnect all receivers and senders (useful for tests)."""
        with self._lock:
            if self._features is not None:
                for _, call in self._meta.values():
                    self._features.release(call)
            self._weak_senders.clear()
            self.receivers.clear()
            self._by_sender.clear()
            self._by_receiver.clear()
            self._meta.clear()
            self._plans = {}


class NamedSignal(Signal):
    """A :class:`Signal` with a *name* (its key in a :class:`Namespace`; the event type
    nova's features record).

    Args:
        name: the signal's name.
        doc: its docstring.
        **features: ``metrics``, ``manager``, ``listener_config``, ``store``,
            ``stream``, as :class:`Signal`.
    """

    def __init__(self, name: str, doc: str | None = None, **features: Any) -> None:
        super().__init__(doc, **features)
        self.name: str = name

    def _name(self) -> str:
        return self.name

    def __repr__(self) -> str:
        base = super().__repr__()
        return f"{base[:-1]}; {self.name!r}>"


class Namespace(dict[str, NamedSignal]):
    """A dict mapping names to signals."""

    def signal(self, name: str, doc: str | None = None, **features: Any) -> NamedSignal:
        """The :class:`NamedSignal` called *name*, created (with *doc* and nova's
        optional *features*) on first use; later calls return the same signal."""
        if name not in self:
            self[name] = NamedSignal(name, doc, **features)
        return self[name]


class _PNamespaceSignal(Protocol):
    def __call__(self, name: str, doc: str | None = None, **features: Any) -> NamedSignal: ...


default_namespace: Namespace = Namespace()
"""The :class:`Namespace` :func:`signal` creates signals in."""

signal: _PNamespaceSignal = default_namespace.signal
"""The :class:`NamedSignal` called *name* in :data:`default_namespace` (created on first use)."""
