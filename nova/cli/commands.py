"""The ``nova`` commands (click): replay, streams, tail, stats, deadletters, audit, demo,
bench.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from nova.cli.formats import FORMATS, iso_ns, make_writer, rows_of
from nova.cli.times import parse_time
from nova.errors import ValidationError

__all__ = ("CLIError", "OutputClosed", "cli", "open_url")

_URL_HELP = "sqlite:///relative.db, sqlite:////abs/path.db, redis://host:6379/0?prefix=p or memory://"


class CLIError(click.ClickException):
    """A runtime failure reported in one line (exit 1)."""


class OutputClosed(Exception):
    """The reader of stdout went away (``nova replay ... | head``): stop quietly, exit 0.
    (Not an OSError, which click would turn into exit code 1.)"""


@contextlib.contextmanager
def _pipe_guard() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise OutputClosed() from None


class TimeParam(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """ISO-8601 with a zone, now-15m style, or epoch ns (a bad one is a usage error)."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(value, name=param.name if param is not None and param.name else "time")
        except ValidationError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


@contextlib.contextmanager
def open_url(url: str) -> Iterator[Any]:
    """Open the store *url* names for reading: a SQLite path that does not exist is an
    error here (reading must not create a file)."""
    from nova.store.urls import open_store, parse_store_url

    try:
        parsed = parse_store_url(url)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    if parsed.kind == "sqlite" and parsed.target != ":memory:" and not os.path.exists(parsed.target):
        raise CLIError(f"Expected an existing store file, got no file at {parsed.target!r} (from {url!r})")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _check_streams(store: Any, streams: tuple[str, ...]) -> list[str] | None:
    if not streams:
        return None
    known = set(store.streams())
    unknown = [s for s in streams if s not in known]
    if unknown:
        shown = sorted(known)[:10]
        raise CLIError(f"Expected streams of the store {shown}{'...' if len(known) > 10 else ''}, got unknown {unknown}")
    return list(streams)


def _progress(total: int, active: bool) -> Any:
    """A rich progress bar on stderr, or None."""
    if not active:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("replay", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), transient=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             no_args_is_help=True)
@click.version_option(package_name="nova-events", prog_name="nova")
def cli() -> None:
    """Look into nova event stores: replay a time window, list streams, follow them
    live, count, and redrive dead letters.

    URL is a store URL: sqlite:///relative.db, sqlite:////abs/path.db,
    redis://host:6379/0?prefix=p, memory://.  Times (T) are ISO-8601 with a zone
    (2024-01-01T09:00:00Z), now-15m style, or epoch ns.

    Exit codes: 0 done, 1 runtime failure, 2 usage error, 130 interrupted.

    \b
    Example:
      nova replay sqlite:///audit.db --start now-1h --end now --format table
    """


@cli.command()
@click.argument("url")
@click.option("--start", type=TIME, default=None, help="window start T, included (default: the first event)")
@click.option("--end", type=TIME, default=None, help="window end T, excluded (default: after the last event)")
@click.option("--stream", "streams", multiple=True, metavar="S", help="only this stream (repeatable)")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="only this event type (repeatable)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write to FILE (default: stdout; parquet needs a file)")
@click.option("--include-system", is_flag=True,
              help="also the system streams ('nova.' names: dead letters, redrive acks, audit) when no --stream names them")
@click.option("--progress/--no-progress", default=None,
              help="progress bar on stderr (default: when stderr is a terminal and the rows go elsewhere)")
def replay(url: str, start: int | None, end: int | None, streams: tuple[str, ...], types: tuple[str, ...],
           fmt: str, output: str | None, include_system: bool, progress: bool | None) -> None:
    """Print the events of [start, end) in time order.

    Columns: time (UTC, ns), timestamp_ns, stream, position, sequence, type, id, data
    and metadata (JSON).  Any number of rows in constant memory.

    \b
    Examples:
      nova replay sqlite:///audit.db --start 2024-01-01T00:00:00Z --end 2024-01-02T00:00:00Z
      nova replay sqlite:///audit.db --start now-15m --end now --stream orders --format jsonl
      nova replay sqlite:///audit.db --format parquet --output window.parquet
    """
    if fmt == "parquet" and output is None:
        raise click.UsageError("Expected --output FILE with --format parquet, got none (parquet is not for a terminal)")
    if start is not None and end is not None and end < start:
        raise click.UsageError(f"Expected --end >= --start, got end {iso_ns(end)} before start {iso_ns(start)}")
    with open_url(url) as store:
        extra = {"include_system": True} if include_system else {}  # (not every store takes it yet)
        batch = store.window(start, end, streams=_check_streams(store, streams), types=list(types) or None, **extra)
        out: IO[Any]
        with contextlib.ExitStack() as stack:
            if output is None:
                out = sys.stdout
            else:
                try:
                    if fmt == "parquet":
                        out = stack.enter_context(open(output, "wb"))
                    else:
                        out = stack.enter_context(open(output, "w", newline="", encoding="utf-8"))
                except OSError as exc:
                    raise CLIError(f"Expected a writable --output file, got {output!r}: {exc.strerror}") from None
            writer = make_writer(fmt, out)
            show = progress if progress is not None else (sys.stderr.isatty() and (output is not None or not sys.stdout.isatty()))
            bar = _progress(len(batch), show)
            if bar is not None:
                stack.enter_context(bar)
                task = bar.add_task("replay", total=len(batch))
            with _pipe_guard():
                for rows in rows_of(batch):
                    writer.write(rows)
                    if bar is not None:
                        bar.advance(task, len(rows))
                writer.close()


@cli.command()
@click.argument("url")
@click.option("--format", "fmt", type=click.Choice(("table", "jsonl")), default="table", show_default=True)
def streams(url: str, fmt: str) -> None:
    """List the streams: events stored, first and last timestamp, positions.

    \b
    Example:
      nova streams sqlite:///audit.db
    """
    from nova.store import Cursor

    rows = []
    with open_url(url) as store:
        for name in store.streams():
            info = store.stream_info(name)
            first = last = None
            if info.length:
                head, _ = store.read(name, Cursor(name, (info.first_position or 1) - 1), limit=1)
                tail, _ = store.read(name, Cursor(name, info.last_position - 1), limit=1)
                first = head[0].timestamp if head else None
                last = tail[0].timestamp if tail else None
            rows.append({"stream": name, "events": info.length, "first_time": None if first is None else iso_ns(first),
                         "last_time": None if last is None else iso_ns(last), "first_position": info.first_position,
                         "last_position": info.last_position, "evicted": info.evicted})
    if fmt == "jsonl":
        import json

        for r in rows:
            click.echo(json.dumps(r))
        return
    _table(f"{len(rows)} streams", ["stream", "events", "first_time", "last_time", "first_position",
                                     "last_position", "evicted"], [[r[k] for k in r] for r in rows])


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    click.echo(title)
    table = Table()
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(table)


@cli.command()
@click.argument("url")
@click.option("--stream", default=None, metavar="S", help="follow this stream (default: every stream)")
@click.option("--from-cursor", "cursor", type=click.IntRange(min=0), default=None, metavar="C",
              help="start after position C of S (after global sequence C without --stream); default: new events only")
@click.option("--include-system", is_flag=True, help="without --stream: also the system streams ('nova.' names)")
@click.option("--format", "fmt", type=click.Choice(("table", "jsonl")), default="table", show_default=True)
def tail(url: str, stream: str | None, cursor: int | None, include_system: bool, fmt: str) -> None:
    """Print the events after a cursor, then new ones as they come, until Ctrl-C
    (exit code 130).  Each line carries the cursor to resume from.

    \b
    Examples:
      nova tail sqlite:///audit.db --stream orders --from-cursor 0
      nova tail sqlite:///audit.db --format jsonl
    """
    from nova.store import Cursor

    with open_url(url) as store:
        if cursor is None:
            start = store.stream_info(stream).last_position if stream in store.streams() else 0
            if stream is None:
                start = store.stats().appended
        else:
            start = cursor
        extra = {"include_system": True} if include_system else {}
        with store.subscribe(stream, Cursor(stream, start), **extra) as sub:
            with _pipe_guard():
                _follow(sub, fmt, "position" if stream is not None else "sequence")


def _follow(sub: Any, fmt: str, key: str) -> None:
    """Print what *sub* delivers until it ends (or Ctrl-C), flushing when caught up."""
    import json

    from nova.errors import StoreClosed, Timeout

    unflushed = False
    while True:
        try:
            ev = sub.get(timeout=0 if unflushed else 0.5)
        except Timeout:
            if unflushed:  # caught up: a reader on a pipe sees what came
                sys.stdout.flush()
                unflushed = False
            continue
        except StoreClosed:
            return
        n = sub.cursor.position
        if fmt == "jsonl":
            line = json.dumps({key: n, "time": iso_ns(ev.timestamp), "type": ev.type, "id": ev.id,
                               "data": ev.data, "metadata": ev.metadata}, default=str)
        else:
            line = f"{key}={n}  {iso_ns(ev.timestamp)}  {ev.type}  {ev.id}  {json.dumps(ev.data, default=str)}"
        sys.stdout.write(line + "\n")
        unflushed = True


@cli.command()
@click.argument("url")
def stats(url: str) -> None:
    """Print the store's counters and the time range of its events.

    \b
    Example:
      nova stats sqlite:///audit.db
    """
    with open_url(url) as store:
        s = store.stats()
        ts = store.window().timestamps
        rows: list[list[Any]] = [["store", repr(store)]]
        rows += [[k, v] for k, v in s._asdict().items()]
        rows.append(["first_time", iso_ns(int(ts[0])) if len(ts) else None])
        rows.append(["last_time", iso_ns(int(ts[-1])) if len(ts) else None])
    _table("store stats", ["counter", "value"], rows)


def _load_listener(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"Expected module:function, got {spec!r}", param_hint="--redrive")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as python -m does: modules of the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CLIError(f"Expected an importable module for --redrive, got {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CLIError(f"Expected {module_name!r} to define {attr!r}, got no such attribute")
    if not callable(obj):
        raise CLIError(f"Expected a callable listener at {spec!r}, got {type(obj).__name__}")
    return obj


@cli.command()
@click.argument("url")
@click.option("--listener", "listener_id", default=None, metavar="ID", help="only the dead letters of this listener id")
@click.option("--start", type=TIME, default=None, help="dead letters from T (included)")
@click.option("--end", type=TIME, default=None, help="dead letters before T (excluded)")
@click.option("--redrive", "target", default=None, metavar="MODULE:FUNCTION",
              help="replay them through this listener (retried; a new failure is dead-lettered again in the store)")
@click.option("--dry-run", is_flag=True, help="with --redrive: list what would be replayed, run nothing")
@click.option("--format", "fmt", type=click.Choice(("table", "jsonl")), default="table", show_default=True)
def deadletters(url: str, listener_id: str | None, start: int | None, end: int | None, target: str | None,
                dry_run: bool, fmt: str) -> None:
    """List the dead letters (stream "nova.deadletter"), or redrive them.

    With --redrive, each dead letter goes through MODULE:FUNCTION, registered under
    the listener id it was dead-lettered by, with ListenerManager.redrive semantics:
    the original type comes back, the dead-letter metadata goes, and what was done is
    recorded (stream "nova.deadletter.ack"), so a second redrive skips what the first
    handled.  Exit code 1 when some failed again or a breaker stopped the redrive.

    \b
    Examples:
      nova deadletters sqlite:///audit.db
      nova deadletters sqlite:///audit.db --listener billing --redrive myapp.handlers:bill
    """
    import json

    from nova.resilience.deadletter import DEAD_LETTER_STREAM, ORIGINAL_TYPE_KEY

    if dry_run and target is None:
        raise click.UsageError("Expected --redrive MODULE:FUNCTION with --dry-run, got none")
    fn = _load_listener(target) if target is not None else None
    with open_url(url) as store:
        letters = []
        if DEAD_LETTER_STREAM in store.streams():
            for ev in store.replay(start, end, streams=[DEAD_LETTER_STREAM]):
                if listener_id is None or ev.metadata.get("nova.listener") == listener_id:
                    letters.append(ev)
        if fn is None:
            rows = [{"time": iso_ns(ev.timestamp), "listener": ev.metadata.get("nova.listener"),
                     "attempts": ev.metadata.get("nova.attempts"), "error": ev.metadata.get("nova.error.type"),
                     "message": ev.metadata.get("nova.error.message"),
                     "type": ev.metadata.get(ORIGINAL_TYPE_KEY, ev.type), "id": ev.id}
                    for ev in letters]
            if fmt == "jsonl":
                for r in rows:
                    click.echo(json.dumps(r))
            else:
                _table(f"{len(rows)} dead letters", ["time", "listener", "attempts", "error", "message", "type", "id"],
                       [list(r.values()) for r in rows])
            return
        from nova.listener import DeadLetterConfig, ListenerConfig, ListenerManager

        with ListenerManager() as lm:
            config = ListenerConfig(dead_letter=DeadLetterConfig(store=store))
            for lid in dict.fromkeys(ev.metadata.get("nova.listener") for ev in letters):
                if lid is not None:
                    lm.register(fn, config, id=lid)
            if not letters:
                click.echo(f"no dead letters to redrive through {target}")
                return
            report = lm.redrive(store, listener_id=listener_id, start=start, end=end, dry_run=dry_run)
        if dry_run:
            for ev in report.events:
                click.echo(json.dumps({"time": iso_ns(ev.timestamp), "type": ev.type, "id": ev.id, "data": ev.data},
                                      default=str))
            click.echo(f"would redrive {len(report.events)} dead letters through {target} "
                       f"(skipped {report.skipped}: already redriven or not selected)")
            return
        click.echo(f"redrive through {target}: {report.succeeded} succeeded, {report.failed_again} failed again "
                   f"(dead-lettered again), {report.rejected} rejected by an open breaker, "
                   f"{report.skipped} skipped (already redriven), {report.left} left")
        if report.failed_again or report.rejected or report.left:
            raise CLIError(f"Expected every redriven event to be handled, got {report.failed_again} failing again, "
                           f"{report.rejected + report.left} not run (breaker open); run the redrive again later")


@cli.command()
@click.argument("url")
@click.argument("event_id")
@click.option("--stream", default="nova.audit", show_default=True, metavar="S", help="the audit trail's stream")
@click.option("--format", "fmt", type=click.Choice(("table", "jsonl")), default="table", show_default=True)
def audit(url: str, event_id: str, stream: str, fmt: str) -> None:
    """Print the audit trail's history of one event: every delivery attempt
    (listener, group, attempt, outcome, duration, error), in the order they started.

    The records are those an AuditTrail wrote to stream S (AuditTrail.history).
    Exit code 1 when the event has no record.

    \b
    Example:
      nova audit sqlite:///audit.db 01a243d63bd517ec86f68b0000000002
    """
    import json

    from nova.observability.audit import AuditTrail

    with open_url(url) as store:
        if stream not in store.streams():
            raise CLIError(f"Expected an audit trail in stream {stream!r}, got no such stream in the store")
        trail = AuditTrail(store, stream=stream)
        try:
            records = trail.history(event_id)
        finally:
            trail.close()
    if not records:
        raise CLIError(f"Expected audit records of event {event_id!r} in stream {stream!r}, got none")
    if fmt == "jsonl":
        for r in records:
            click.echo(json.dumps(r._asdict()))
        return
    _table(f"{len(records)} delivery attempts of {event_id} ({records[0].event_type})",
           ["time", "component", "destination", "partition", "listener", "group", "attempt", "outcome",
            "duration", "error"],
           [[iso_ns(r.timestamp), r.component, r.destination, r.partition, r.listener, r.group, r.attempt,
             r.outcome, f"{r.duration * 1000:.3f} ms",
             None if r.error_type is None else f"{r.error_type}: {r.error_message}"] for r in records])


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run nova's complete example (nova.demo): every component in one small service,
    injected failures, dead letters and a redrive, an audit window, the final
    accounting.  Options go to the example (nova demo --help lists them).

    \b
    Example:
      nova demo --db demo.db && nova replay sqlite:///demo.db --start now-5m --end now
    """
    from nova.demo import main as demo_main

    code = demo_main(list(args), prog="nova demo")
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@click.argument("areas", nargs=-1)
@click.option("--quick", is_flag=True, help="fewer repeats (a smoke run)")
def bench(areas: tuple[str, ...], quick: bool) -> None:
    """Run the performance ratio report (asv_benchmarks/ratios.py of a source
    checkout) for AREAS (default: all).

    \b
    Example:
      nova bench store --quick
    """
    script = Path(__file__).resolve().parents[2] / "asv_benchmarks" / "ratios.py"
    if not script.is_file():
        raise CLIError(f"Expected the ratio report at {str(script)!r} (a source checkout of nova), got no such file")
    known = sorted(p.stem[len("ratio_"):] for p in script.parent.glob("ratio_*.py"))
    bad = [a for a in areas if a not in known]
    if bad:
        raise click.BadParameter(f"Expected areas among {known}, got {bad}", param_hint="AREAS")
    code = subprocess.call([sys.executable, str(script), *areas, *(["--quick"] if quick else [])])
    if code:
        raise CLIError(f"Expected the ratio report to finish, got exit code {code}")
