"""The Emitter: in-process events, delivered inline, through a worker pool, or on asyncio.

The package holds one idea per module (see ``docs/architecture.md``):

* :mod:`~nova.emitter.emitter`: the :class:`Emitter` facade.
* :mod:`~nova.emitter.routes`: the route table (subscriptions -> delivery plans).
* :mod:`~nova.emitter.middleware`: :class:`HookMiddleware`, :func:`hooks`, the chain.
* :mod:`~nova.emitter.dispatch`: delivery from a thread, error policy and reporting.
* :mod:`~nova.emitter.buffered`: ``emit_async``'s buffer and drain loops.
* :mod:`~nova.emitter.aio`: nova's loop thread and delivery on asyncio.
* :mod:`~nova.emitter.stats`: :class:`EmitterStats` and the counters.
* :mod:`~nova.emitter.lifecycle`: shutdown, interpreter exit, the fork reset.
* :mod:`~nova.emitter.fastpath`: the benchmarked inline paths.
"""

from nova.emitter.emitter import ERROR_POLICIES, OVERFLOW_POLICIES, Emitter
from nova.emitter.middleware import HookMiddleware, hooks
from nova.emitter.routes import WILDCARD
from nova.emitter.stats import EmitterStats

__all__ = ("Emitter", "EmitterStats", "HookMiddleware", "hooks", "WILDCARD", "OVERFLOW_POLICIES", "ERROR_POLICIES")
