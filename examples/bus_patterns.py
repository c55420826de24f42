"""Pattern subscriptions, Kafka-compatible partitions and an asyncio publisher.

Run: python examples/bus_patterns.py
"""

from __future__ import annotations

import asyncio

from nova import Bus, Event, TopicConfig, partition_for


async def main() -> None:
    seen: list[str] = []
    async with Bus(default_partitions=6) as bus:
        bus.subscribe_pattern(r"user\.(created|deleted)", lambda e: seen.append(e.type))

        async def audit(event: Event) -> None:  # async listeners run on the bus's threads
            await asyncio.sleep(0)
            seen.append("audit:" + event.type)

        bus.subscribe_pattern(r"user\..+", audit)
        bus.create_topic("user.renamed", TopicConfig(partitions=3))  # later topics match too
        for topic in ("user.created", "user.renamed", "user.deleted", "order.created"):
            receipt = await bus.apublish(topic, Event(topic), key="user-7")
            # the partition Kafka's default partitioner would choose for this key
            assert receipt.partition == partition_for("user-7", bus.topic_config(topic).partitions)
        assert await asyncio.to_thread(bus.flush, 10)
    print(sorted(seen))


if __name__ == "__main__":
    asyncio.run(main())
