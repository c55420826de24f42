"""OpenTelemetry tracing of nova deliveries, on ``opentelemetry-api`` only.

:class:`Tracing` is an observer (see :mod:`nova.observability.observers`) given to an
Emitter or a Bus (``Emitter(tracing=...)``, ``Bus(tracing=...)``, or
``tracing.attach(component)``):

* on ``emit``/``emit_async``/``aemit``/``publish`` a ``publish <destination>`` span
  (kind PRODUCER) is started in the caller's context and its context is injected into
  ``event.metadata`` as W3C ``traceparent``/``tracestate`` (with
  ``opentelemetry.propagate``, so the configured propagator decides the keys).  An
  event that already carries a trace context (a replayed or re-published event) and is
  sent outside any span keeps its trace: the producer span is its child;
* each listener call (each delivery attempt, retries included) runs inside a
  ``process <destination>`` span (kind CONSUMER) whose parent is the context extracted
  from the event (and which links to it), current while the listener runs (spans the
  listener starts are its children), with ``messaging.system="nova"``,
  ``messaging.destination.name``, ``messaging.message.id``,
  ``messaging.destination.partition.id`` and ``messaging.consumer.group.name`` (bus),
  ``messaging.operation.type``, ``nova.listener.id``, ``nova.delivery.attempt``; a
  failed call sets the status ERROR and records the exception as a span event.

The context travels in the event, so it crosses threads, the worker pool, asyncio and a
store round trip (the metadata is stored with the event).

Needs the optional extra: ``pip install 'nova-events[otel]'`` (an SDK and exporter of
your choice to see the spans).

.. versionadded:: 0.3
"""

from __future__ import annotations

from typing import Any

from nova.errors import type_name

__all__ = ("Tracing", "require_otel")

_SYSTEM = "nova"
_CACHE_SIZE = 4096  # contexts of recent sends kept for the consumers in this process


def require_otel() -> Any:
    """Import ``opentelemetry.trace`` or raise an ImportError naming the extra."""
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(
            "Expected opentelemetry-api to be installed for nova's tracing, got it missing: "
            "pip install 'nova-events[otel]'"
        ) from exc
    return trace


class Tracing:
    """Trace nova's sends and deliveries with OpenTelemetry (see the module).

    Args:
        tracer_provider: the ``TracerProvider`` to get the tracer from (``None``: the
            global one, ``opentelemetry.trace.get_tracer_provider()``).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (the message names the extra).
        TypeError: *tracer_provider* has no ``get_tracer``.
    """

    #: Tracing wants ``send``/``sent`` (the producer span).
    producer = True

    def __init__(self, tracer_provider: Any = None) -> None:
        trace = require_otel()
        from opentelemetry import context, propagate
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
            raise TypeError(f"Expected an OpenTelemetry TracerProvider or None, got {type_name(tracer_provider)}")
        from nova._version import __version__

        self._tracer = trace.get_tracer("nova", __version__, tracer_provider=tracer_provider)
        self._trace = trace
        self._context = context
        self._propagate = propagate
        self._Link, self._SpanKind = Link, SpanKind
        self._error = Status(StatusCode.ERROR)
        self._sent: dict[str, tuple[str | None, Any]] = {}  # traceparent -> (tracestate, context)

    def attach(self, component: Any) -> Any:
        """Trace *component* (an Emitter or a Bus) from now on; returns it."""
        add = getattr(component, "_add_observer", None)
        if add is None:
            raise TypeError(f"Expected an Emitter or a Bus, got {type_name(component)}")
        add(self)
        return component

    # -- the observer calls --------------------------------------------------------------
    def send(self, event: Any, destination: str, component: str) -> Any:
        """Start the producer span and inject its context into ``event.metadata``."""
        trace = self._trace
        meta = event.metadata
        parent = None
        if "traceparent" in meta and not trace.get_current_span().get_span_context().is_valid:
            parent = self._propagate.extract(meta)  # a replayed event keeps its trace
        span = self._tracer.start_span(
            f"publish {destination}",
            context=parent,
            kind=self._SpanKind.PRODUCER,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.type": "publish",
                "messaging.operation.name": "publish",
                "messaging.destination.name": destination,
                "messaging.message.id": str(event.id),
                "nova.component": component,
            },
        )
        ctx = trace.set_span_in_context(span)
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier, context=ctx)
        meta.update(carrier)
        # The consumers in this process reuse the context instead of parsing the header
        # again (extract costs ~8 us); bounded: emptied when full.
        tp = carrier.get("traceparent")
        if tp is not None:
            cache = self._sent
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[tp] = (carrier.get("tracestate"), ctx)
        return span

    def sent(self, span: Any, partition: int | None, exc: BaseException | None) -> None:
        """End the producer span."""
        if partition is not None:
            span.set_attribute("messaging.destination.partition.id", str(partition))
        if exc is not None:
            span.set_status(self._error)
            span.record_exception(exc)
        span.end()

    def begin(self, event: Any, listener_id: str, destination: str, partition: int | None,
              group: str | None, attempt: int) -> Any:
        """Start the consumer span of one attempt and make it current."""
        trace = self._trace
        meta = event.metadata
        tp = meta.get("traceparent")
        parent = None
        if tp is not None:
            hit = self._sent.get(tp)
            if hit is not None and hit[0] == meta.get("tracestate"):
                parent = hit[1]
            else:
                parent = self._propagate.extract(meta)
        links = None
        if parent is not None:
            sc = trace.get_current_span(parent).get_span_context()
            if sc.is_valid:
                links = [self._Link(sc)]
        attrs: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": destination,
            "messaging.message.id": str(event.id),
            "nova.listener.id": listener_id,
            "nova.delivery.attempt": attempt,
        }
        if partition is not None:
            attrs["messaging.destination.partition.id"] = str(partition)
        if group is not None:
            attrs["messaging.consumer.group.name"] = group
        span = self._tracer.start_span(f"process {destination}", context=parent, kind=self._SpanKind.CONSUMER,
                                       attributes=attrs, links=links)
        token = self._context.attach(trace.set_span_in_context(span))
        return span, token

    def end(self, t: Any, exc: BaseException | None, outcome: str | None = None) -> None:
        """End the consumer span (error status and exception event on failure)."""
        span, token = t
        try:
            if exc is not None:
                span.set_status(self._error)
                span.record_exception(exc)
            if exc is None:
                span.set_attribute("nova.outcome", "ok")
            elif outcome is not None:
                span.set_attribute("nova.outcome", outcome)
            span.end()
        finally:
            self._context.detach(token)

    def settle(self, t: Any, outcome: str) -> None:
        """Nothing: the span ended with the call (its duration is the call's)."""

    def __repr__(self) -> str:
        return "<nova.observability.Tracing>"
