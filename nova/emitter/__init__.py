"""The Emitter package (see nova.emitter.emitter)."""

from nova.emitter.emitter import ERROR_POLICIES, OVERFLOW_POLICIES, WILDCARD, Emitter, EmitterStats, HookMiddleware, hooks

__all__ = ("Emitter", "EmitterStats", "HookMiddleware", "hooks", "WILDCARD", "OVERFLOW_POLICIES", "ERROR_POLICIES")
