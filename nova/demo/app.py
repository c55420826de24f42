"""Wiring, run, shutdown and accounting of the complete example (see the package
docstring).  Only nova's public API is used."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from nova import (AuditTrail, Bus, CircuitConfig, DeadLetterConfig, Emitter, Event, ListenerConfig,
                  ListenerManager, RetryPolicy, SQLiteStore, TopicConfig, as_listener)

from nova.demo.workflows import Handlers, Outage, Tally, Workload

DEADLETTER = "nova.deadletter"


def parse_args(argv: Sequence[str] | None, prog: str = "python -m examples.complete") -> argparse.Namespace:
    """The command line of ``python -m examples.complete`` (or of *prog*: ``nova demo``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run nova's complete example and print its final accounting.",
        epilog=f"example: {prog} --db demo.db --seed 7, then: nova replay sqlite:///demo.db --start now-5m --end now")
    p.add_argument("--db", help="SQLite file to keep the events in (default: a temporary one, removed at the end)")
    p.add_argument("--users", type=int, default=200, help="user signups to send (default 200)")
    p.add_argument("--orders", type=int, default=600, help="orders to publish (default 600)")
    p.add_argument("--seed", type=int, default=17, help="seed of the injected failures (default 17)")
    p.add_argument("--pace", type=float, default=0.0,
                   help="seconds to wait between two sends (default 0; raise it to try Ctrl-C mid-run)")
    p.add_argument("--port", type=int, default=0, help="port of /healthz and /metrics (default: a free one)")
    args = p.parse_args(argv)
    for name in ("users", "orders", "port"):
        if getattr(args, name) < 0:
            p.error(f"Expected --{name} >= 0, got {getattr(args, name)}")
    if args.pace < 0:
        p.error(f"Expected --pace >= 0, got {args.pace}")
    return args


class Shutdown:
    """SIGINT/SIGTERM set :attr:`requested`; the producer stops sending at the next
    event and everything accepted is drained.  Handlers are installed only in the main
    thread and restored by :meth:`restore`."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            print(f"\n{self.signal_name} received: intake stops, draining what was accepted...", flush=True)
        self.requested.set()

    def restore(self) -> None:
        """Put back the handlers found at start."""
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:          # 503 when unhealthy: still a report
        return e.code, e.read().decode()


def main(argv: Sequence[str] | None = None, prog: str = "python -m examples.complete") -> int:
    """Run the complete example; returns 0 when the final accounting balances, 1 when
    it does not, 2 when an optional dependency (pandas, prometheus_client) is missing.
    *prog* names the command in ``--help`` and usage errors."""
    args = parse_args(argv, prog)
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        from prometheus_client import CollectorRegistry

        from nova.observability import PrometheusMetricsCollector, serve
    except ImportError as e:
        print(f"examples.complete needs pandas and prometheus_client "
              f"(pip install 'nova-events[prometheus]' pandas): {e}", file=sys.stderr)
        return 2
    shutdown = Shutdown()
    tmp = None
    try:
        if args.db is None:
            tmp = tempfile.TemporaryDirectory(prefix="nova-demo-")
            path = os.path.join(tmp.name, "demo.db")
        else:
            path = os.path.abspath(args.db)
        return _run(args, path, shutdown, pd, CollectorRegistry, PrometheusMetricsCollector, serve)
    finally:
        shutdown.restore()
        if tmp is not None:
            tmp.cleanup()


def _run(args: argparse.Namespace, path: str, shutdown: Shutdown, pd: Any, registry_cls: Any,
         collector_cls: Any, serve: Any) -> int:
    t0 = time.perf_counter()
    work = Workload.make(args.seed, args.users, args.orders)
    print(f"nova complete example: seed {args.seed}, {args.users} users, {args.orders} orders, store {path}")

    # --- components ---
    registry = registry_cls()
    metrics = collector_cls(registry, namespace="nova", max_label_values=100)
    store = SQLiteStore(path)
    store_baseline = {s: store.stream_info(s).length if s in store.streams() else 0
                      for s in ("users", "orders")}
    trail = AuditTrail(store, stream="nova.audit")
    tally = Tally()
    mail, gateway = Outage("mail server"), Outage("payment gateway")
    h = Handlers(store, tally, mail, gateway)

    lm = ListenerManager(metrics=metrics)
    welcome = lm.register(h.send_welcome, ListenerConfig(
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
        circuit=CircuitConfig(failure_rate=0.5, minimum_calls=20, window=10, timeout=1.0),
        dead_letter=DeadLetterConfig(store=store)), id="welcome")

    emitter = Emitter(metrics=metrics, name="web", workers=2)
    emitter.subscribe("user.signup", as_listener(h.record_user, id="record_user"))
    emitter.subscribe("user.signup", welcome)

    bus = Bus(metrics=metrics, name="shop")
    bus.create_topic("orders", TopicConfig(
        partitions=4, ordering_key=lambda e: e.data["customer"],
        retry=RetryPolicy(max_attempts=3, initial_delay=0.005),
        dead_letter=DeadLetterConfig(store=store)))
    bus.subscribe("orders", as_listener(h.fulfil, id="fulfil-a"), group="fulfillment")
    bus.subscribe("orders", as_listener(h.fulfil, id="fulfil-b"), group="fulfillment")
    bus.subscribe("orders", as_listener(h.bill, id="billing"))

    for component in (emitter, bus, lm):
        trail.attach(component)
    metrics.watch(bus, store, lm)
    server = serve(port=args.port, emitter=emitter, bus=bus, listeners=lm, registry=registry)
    print(f"health and metrics at {server.url}/healthz and {server.url}/metrics")

    # --- run: send until done or a signal ---
    start_ns = time.time_ns()
    users_accepted = orders_accepted = 0
    sends: list[tuple[str, dict[str, Any]]] = []
    per_user = len(work.orders) / max(1, len(work.users))
    oi = 0
    for i, user in enumerate(work.users):          # interleave: each signup, then its share of orders
        sends.append(("user", user))
        while oi < len(work.orders) and oi < (i + 1) * per_user:
            sends.append(("order", work.orders[oi]))
            oi += 1
    sends.extend(("order", o) for o in work.orders[oi:])
    print(f"READY sending {len(sends)} events", flush=True)
    for kind, data in sends:
        if shutdown.requested.is_set():
            break
        if kind == "user":
            emitter.emit_async(Event("user.signup", data))
            users_accepted += 1
        else:
            bus.publish("orders", Event("order.placed", data), key=data["customer"])
            orders_accepted += 1
        if args.pace:
            shutdown.requested.wait(args.pace)
    interrupted = shutdown.requested.is_set()
    print(f"{'stopped by ' + str(shutdown.signal_name) if interrupted else 'sent everything'}: "
          f"{users_accepted} users and {orders_accepted} orders accepted")

    # --- drain what was accepted (a signal now changes nothing: everything is drained) ---
    emitter.drain()
    lm.stop()                                      # the welcome retries still scheduled
    bus.flush()
    welcome_stats, bus_stats = lm.stats("welcome"), bus.stats()

    # --- the outages end: redrive the dead letters ---
    mail.fix()
    gateway.fix()
    bus_redrive = bus.redrive(store, topic="orders")
    lm_redrive = lm.redrive(store, listener_id="welcome")
    again = bus.redrive(store, topic="orders"), lm.redrive(store, listener_id="welcome")
    for name, rep in (("bus", bus_redrive), ("listener manager", lm_redrive)):
        print(f"redrive ({name}): replayed {rep.replayed}, succeeded {rep.succeeded}, "
              f"failed again {rep.failed_again}, rejected {rep.rejected}, left {rep.left}")

    # --- health and metrics, over HTTP, while everything is still open ---
    status, body = _get(server.url + "/healthz")
    health = json.loads(body)
    print(f"GET /healthz -> {status} {health['status']}: " + ", ".join(
        f"{k}={v['status']}" for k, v in health["components"].items()))
    status, text = _get(server.url + "/metrics")
    wanted = ("nova_bus_published_total", "nova_bus_dead_lettered_total", "nova_listener_dead_lettered_total",
              "nova_store_appended_total")
    print(f"GET /metrics -> {status}")
    for line in text.splitlines():
        if line.startswith(wanted):
            print("  " + line)

    # --- graceful shutdown: producers first, then consumers, then the trail and store ---
    server.close()
    emitter_ok = emitter.shutdown(timeout=10)
    bus_ok = bus.shutdown(timeout=10)
    lm.stop(timeout=10)
    trail_ok = trail.close(timeout=10)
    end_ns = time.time_ns() + 1

    # --- audit replay: the [start, end) window, to pandas ---
    df = pd.DataFrame(trail.window(start_ns, end_ns).data)
    print(f"audit window [{start_ns}, {end_ns}): {len(df)} attempts")
    if len(df):
        table = df.groupby(["listener", "outcome"]).size().unstack(fill_value=0)
        print(table.to_string())
    audit = trail.stats()
    store.close()

    # --- the final accounting, read back from the file ---
    with SQLiteStore(path) as disk:
        def count(stream: str) -> int:
            return disk.stream_info(stream).length if stream in disk.streams() else 0
        users_stored = count("users") - store_baseline["users"]
        orders_stored = count("orders") - store_baseline["orders"]
        window = disk.window(start_ns, end_ns, streams=DEADLETTER)
        dead_on_disk = len(window)

    welcome_dead = welcome_stats.dead_lettered
    billing_dead = bus_stats.dead_lettered
    checks = [
        ("users accepted == emitter emitted", users_accepted, emitter.stats().emitted),
        ("users accepted == stored on disk", users_accepted, users_stored),
        ("users accepted == welcomed + dead-lettered", users_accepted,
         welcome_stats.processed + welcome_dead),
        ("welcome dead letters == redriven and succeeded", welcome_dead, lm_redrive.succeeded),
        ("users accepted == welcomed in the end", users_accepted, tally.count("welcomed")),
        ("orders accepted == bus published", orders_accepted, bus_stats.published),
        ("orders accepted == fulfilled by the group", orders_accepted, tally.count("fulfilled")),
        ("orders accepted == stored on disk", orders_accepted, orders_stored),
        ("bus deliveries == 2 x orders (group + billing)", 2 * orders_accepted, bus_stats.deliveries),
        ("bus deliveries == handled + dead-lettered", bus_stats.deliveries,
         bus_stats.handled + bus_stats.dead_lettered),
        ("billing dead letters == redriven and succeeded", billing_dead, bus_redrive.succeeded),
        ("orders accepted == billed in the end", orders_accepted, tally.count("billed")),
        ("dead letters on disk == welcome + billing", dead_on_disk, welcome_dead + billing_dead),
        ("second redrive replays nothing", 0, again[0].replayed + again[1].replayed),
        ("audit records accepted == written", audit.accepted, audit.written),
        ("audit records lost or overflowed", 0, audit.lost + audit.overflowed),
        ("shutdowns completed (emitter, bus, trail)", 3, int(emitter_ok) + int(bus_ok) + int(trail_ok)),
    ]
    print("final accounting:")
    ok = True
    for label, want, got in checks:
        good = want == got
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label}: {want} == {got}")
    print(f"ACCOUNTING {'OK' if ok else 'FAILED'} users={users_accepted} orders={orders_accepted} "
          f"welcome_dead={welcome_dead} billing_dead={billing_dead} "
          f"interrupted={'yes' if interrupted else 'no'} in {time.perf_counter() - t0:.1f}s")
    if args.db is not None:
        print(f"events kept in {args.db}: nova replay sqlite:///{args.db} --start now-5m --end now")
    return 0 if ok else 1
