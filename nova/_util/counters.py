"""Lock-free counters read without consuming them.

``next(counter)`` on an :func:`itertools.count` is atomic under the GIL (one C call), so
many threads may count with it without a lock; :func:`count_value` reads how many times
it was called from its repr (``count(N)``), which is atomic too.
"""

from __future__ import annotations

import itertools

__all__ = ("count_value", "Counter")

Counter = itertools.count


def count_value(counter: itertools.count[int]) -> int:
    """The next value of *counter* without consuming it (calls so far, for a fresh
    ``itertools.count()``)."""
    text = repr(counter)  # "count(N)"
    return int(text[text.index("(") + 1 : -1])
