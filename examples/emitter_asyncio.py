"""The Emitter from asyncio code: async and sync listeners together, a concurrency
bound, and `async with` shutdown.

    python examples/emitter_asyncio.py
"""

from __future__ import annotations

import asyncio

from nova import Emitter, Event


async def main() -> None:
    running = 0
    peak = 0
    stored: list[int] = []

    async def store(event: Event) -> None:  # at most 3 at once (max_concurrency)
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        stored.append(event.data)
        running -= 1

    counted: list[int] = []
    async with Emitter(max_concurrency=3) as em:
        em.subscribe("reading", store)
        em.subscribe("reading", lambda ev: counted.append(ev.data))  # sync: runs inline
        await asyncio.gather(*(em.aemit(Event("reading", i)) for i in range(20)))
    print(f"stored {len(stored)} readings, counted {len(counted)}, peak concurrency {peak}")


if __name__ == "__main__":
    asyncio.run(main())
