"""nova in one screen: emit events, keep them in the store, replay an exact time window.

Run it: python examples/quickstart.py
"""

from datetime import datetime, timedelta, timezone

from nova import Emitter, Event, MemoryStore

store = MemoryStore()
t0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)

with Emitter(workers=2) as em:

    @em.on("order.placed")
    def bill(event):
        print(f"billing {event.data['customer']}: {event.data['total']:.2f}")

    @em.on("*")  # every event type
    def audit(event):
        store.append(f"customer-{event.data['customer']}", event)

    for minute, (customer, total) in enumerate([("ada", 12.5), ("grace", 99.0), ("ada", 7.25)]):
        em.emit(Event("order.placed", {"customer": customer, "total": total},
                      timestamp=t0 + timedelta(minutes=minute)))
    em.emit_async(Event("order.shipped", {"customer": "ada"}, timestamp=t0 + timedelta(minutes=5)))
# leaving the block shuts the emitter down: everything accepted has been delivered

# Replay the half-open window [09:00, 09:02): exactly the first two orders.
window = list(store.replay(t0, t0 + timedelta(minutes=2)))
print("replayed:", [(e.type, e.data["customer"]) for e in window])

# The same window as numpy columns (ready for pandas or Arrow).
batch = store.window(t0, t0 + timedelta(minutes=10))
print("columns:", len(batch), "events, streams", sorted(set(batch.streams)))

# Read one stream from its start, with a cursor to continue from later.
events, cursor = store.read("customer-ada")
print("ada:", [e.type for e in events], "next position", cursor.position + 1)
store.close()
