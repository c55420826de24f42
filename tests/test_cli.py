"""The ``nova`` command, run for real: the console script pyproject declares (and
``python -m nova``) in child interpreters against real SQLite files.  Every child has a
hard timeout and is killed on it."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nova import Event, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_704_099_600_000_000_000  # 2024-01-01T09:00:00Z
MIN = 60_000_000_000
TIMEOUT = 30


def child_env(core_name: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOVA_DEBUG", None)
    env["COLUMNS"] = "200"
    if core_name == "py":
        env["NOVA_NO_EXTENSIONS"] = "1"
        env.pop("NOVA_REQUIRE_EXTENSIONS", None)
    elif core_name == "c":
        env.pop("NOVA_NO_EXTENSIONS", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def nova_cmd(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The console script: the installed one beside this interpreter when it is
    nova's (a CI venv), else the script pip would write for pyproject's entry point."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["nova"]
    assert entry == "nova.cli:main"
    installed = Path(sys.executable).parent / "nova"
    if installed.is_file() and "nova.cli" in installed.read_text(errors="replace"):
        return [str(installed)]
    module, func = entry.split(":")
    script = tmp_path_factory.mktemp("bin") / "nova"
    script.write_text(  # what pip's console-script template writes
        f"#!{sys.executable}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {func}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({func}())\n"
    )
    script.chmod(0o755)
    return [str(script)]


def run(cmd: list[str], *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    p = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env or child_env(), cwd=cwd)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def events_fixture(path: Path) -> list[tuple[str, Event]]:
    """20 events, one a minute from T0, alternating streams; one late event."""
    rows = []
    with SQLiteStore(path) as store:
        for i in range(20):
            stream = "orders" if i % 2 else "users"
            ev = Event("order.placed" if i % 2 else "user.created", {"i": i, "name": "Ada ä"},
                       timestamp=T0 + i * MIN, metadata={"k": str(i)})
            store.append(stream, ev)
            rows.append((stream, ev))
        late = Event("order.placed", {"i": 99}, timestamp=T0 + 2 * MIN + 1)
        store.append("orders", late)
        rows.append(("orders", late))
    return rows


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, Event]]]]:
    path = tmp_path / "audit.db"
    rows = events_fixture(path)
    yield f"sqlite:///{path}", rows


def expect_window(rows: list[tuple[str, Event]], start: int, end: int, streams: Any = None,
                  types: Any = None) -> list[str]:
    kept = [(ev.timestamp, ev.id) for s, ev in rows if start <= ev.timestamp < end
            and (streams is None or s in streams) and (types is None or ev.type in types)]
    return [i for _, i in sorted(kept)]


def one_error_line(cp: subprocess.CompletedProcess[str], code: int, log_lines: int = 0) -> str:
    """The one error line on stderr (after *log_lines* warnings nova logged, if any)."""
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    assert "Traceback" not in cp.stderr + cp.stdout
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 + log_lines, cp.stderr
    assert all(line.startswith("nova: ") and "error" not in line for line in lines[:-1]), cp.stderr
    return lines[-1]


# --- replay ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "table"])
def test_replay_every_format_gives_the_window_in_time_order(
        core: Any, nova_cmd: list[str], db: Any, tmp_path: Path, fmt: str) -> None:
    url, rows = db
    name = "c" if not core.RingQueue.__module__.endswith("_py") else "py"
    out_file = tmp_path / f"w.{fmt}"
    args = [url, "--start", "2024-01-01T09:02:00Z", "--end", str(T0 + 12 * MIN), "--format", fmt]
    if fmt != "table":
        args += ["--output", str(out_file)]
    cp = run(nova_cmd, "replay", *args, env=child_env(name))
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr == ""  # no progress bar when stderr is not a terminal
    want = expect_window(rows, T0 + 2 * MIN, T0 + 12 * MIN)
    assert len(want) == 11  # the late event is inside
    by_id = {ev.id: (s, ev) for s, ev in rows}
    if fmt == "jsonl":
        got = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
        assert [g["id"] for g in got] == want
        for g in got:
            s, ev = by_id[g["id"]]
            assert (g["stream"], g["type"], g["data"], g["metadata"], g["timestamp_ns"]) == (
                s, ev.type, ev.data, ev.metadata, ev.timestamp)
        assert got[0]["time"] == "2024-01-01T09:02:00.000000000Z"
        assert got[1]["time"] == "2024-01-01T09:02:00.000000001Z"
    elif fmt == "csv":
        got_rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
        assert [r["id"] for r in got_rows] == want
        assert json.loads(got_rows[0]["data"]) == by_id[want[0]][1].data
        assert list(got_rows[0]) == ["time", "timestamp_ns", "stream", "position", "sequence", "type", "id",
                                     "data", "metadata"]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out_file)
        assert table.column("id").to_pylist() == want
        assert table.column("timestamp_ns").to_pylist() == [by_id[i][1].timestamp for i in want]
        assert str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
        assert [json.loads(d) for d in table.column("data").to_pylist()] == [by_id[i][1].data for i in want]
    else:
        lines = cp.stdout.splitlines()
        body = lines[2:-1]
        assert lines[0].split()[:4] == ["time", "stream", "position", "type"]
        assert lines[-1] == f"({len(want)} events)"
        assert [line.split()[0] for line in body] == [
            "2024-01-01T%s" % time.strftime("%H:%M:%S", time.gmtime(by_id[i][1].timestamp // 10**9))
            + f".{by_id[i][1].timestamp % 10**9:09d}Z" for i in want]


def test_replay_filters_and_time_forms(nova_cmd: list[str], db: Any, tmp_path: Path) -> None:
    url, rows = db
    cp = run(nova_cmd, "replay", url, "--stream", "orders", "--type", "order.placed", "--format", "jsonl",
             "--start", "2024-01-01T10:02:00+01:00", "--end", str(T0 + 9 * MIN))
    assert cp.returncode == 0, cp.stderr
    assert [json.loads(x)["id"] for x in cp.stdout.splitlines()] == expect_window(
        rows, T0 + 2 * MIN, T0 + 9 * MIN, streams={"orders"})
    # open bounds: everything; two --stream options
    cp = run(nova_cmd, "replay", url, "--format", "jsonl", "--stream", "orders", "--stream", "users")
    assert len(cp.stdout.splitlines()) == 21
    # relative times: the fixture is in 2024, so now-1h..now is empty and now-100000d..now is all
    cp = run(nova_cmd, "replay", url, "--format", "jsonl", "--start", "now-1h", "--end", "now")
    assert cp.returncode == 0 and cp.stdout == ""
    cp = run(nova_cmd, "replay", url, "--format", "jsonl", "--start", "now-100000d", "--end", "now+1d")
    assert len(cp.stdout.splitlines()) == 21


def test_replay_progress_bar_on_a_terminal_stderr_only(nova_cmd: list[str], db: Any, tmp_path: Path) -> None:
    import pty

    url, _ = db
    master, slave = pty.openpty()
    out = tmp_path / "w.jsonl"
    p = subprocess.Popen([*nova_cmd, "replay", url, "--format", "jsonl", "--output", str(out)],
                         stdout=subprocess.PIPE, stderr=slave, env=child_env(TERM="xterm", COLUMNS="100"))
    os.close(slave)
    chunks = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert p.wait(timeout=TIMEOUT) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        assert p.stdout is not None
        stdout = p.stdout.read()
        p.stdout.close()
    assert stdout == b""
    assert b"replay" in b"".join(chunks)  # the bar was drawn on the terminal
    assert len(out.read_text().splitlines()) == 21


def test_replay_into_a_closed_pipe_stops_quietly(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with SQLiteStore(path) as store:
        store.append_columns("s", types=["t"] * 20000, timestamps=list(range(T0, T0 + 20000)),
                             data=[{"i": i} for i in range(20000)])
    p = subprocess.Popen([*nova_cmd, "replay", f"sqlite:///{path}", "--format", "jsonl"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=child_env())
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        p.stdout.close()  # like `| head -1`
        _, err_bytes = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert json.loads(first)["data"] == {"i": 0}
    assert p.returncode == 0 and err_bytes == b""


# --- streams, stats -------------------------------------------------------------------------
def test_streams_and_stats(nova_cmd: list[str], db: Any) -> None:
    url, rows = db
    cp = run(nova_cmd, "streams", url, "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    got = {r["stream"]: r for r in map(json.loads, cp.stdout.splitlines())}
    assert got["orders"] == {"stream": "orders", "events": 11, "first_time": "2024-01-01T09:01:00.000000000Z",
                             "last_time": "2024-01-01T09:02:00.000000001Z", "first_position": 1,
                             "last_position": 11, "evicted": 0}
    assert got["users"]["events"] == 10 and got["users"]["last_time"] == "2024-01-01T09:18:00.000000000Z"
    cp = run(nova_cmd, "streams", url)
    assert cp.returncode == 0 and "orders" in cp.stdout and "users" in cp.stdout and "2 streams" in cp.stdout
    cp = run(nova_cmd, "stats", url)
    assert cp.returncode == 0, cp.stderr
    assert re.search(r"events\s*│\s*21\b", cp.stdout), cp.stdout
    assert re.search(r"streams\s*│\s*2\b", cp.stdout)
    assert "2024-01-01T09:00:00.000000000Z" in cp.stdout and "2024-01-01T09:19:00.000000000Z" in cp.stdout


# --- tail -----------------------------------------------------------------------------------
class Lines:
    """The child's stdout lines, read by a thread (no lost lines in a buffer)."""

    def __init__(self, p: subprocess.Popen[str]) -> None:
        import queue
        import threading

        self.q: queue.Queue[str] = queue.Queue()
        assert p.stdout is not None
        stdout = p.stdout
        self.thread = threading.Thread(target=lambda: [self.q.put(line) for line in stdout], daemon=True)
        self.thread.start()

    def next(self, deadline: float) -> str:
        import queue

        try:
            return self.q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no line from nova tail in time") from None


@pytest.mark.parametrize("stream", ["orders", None])
def test_tail_history_then_live_then_ctrl_c(nova_cmd: list[str], db: Any, stream: str | None) -> None:
    url, rows = db
    path = url[len("sqlite:///"):]
    args = ["tail", url, "--format", "jsonl", "--from-cursor", "9"]
    if stream is not None:
        args += ["--stream", stream]
    p = subprocess.Popen([*nova_cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=child_env())
    try:
        deadline = time.monotonic() + TIMEOUT
        key = "position" if stream else "sequence"
        lines = Lines(p)
        history = [json.loads(lines.next(deadline)) for _ in range(11 - 9 if stream else 21 - 9)]
        assert [h[key] for h in history] == list(range(10, 10 + len(history)))
        live = Event("order.shipped", {"live": True})
        with SQLiteStore(path) as store:  # another process appends
            store.append("orders", live)
        got = json.loads(lines.next(deadline))
        assert (got["id"], got["data"], got[key]) == (live.id, {"live": True}, 12 if stream else 22)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=TIMEOUT)
        lines.thread.join(TIMEOUT)
        assert p.stderr is not None
        err = p.stderr.read()
        out = "".join(lines.q.queue)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()
    assert p.returncode == 130  # interrupted, documented in docs/cli.md
    assert err.strip() == "" and out == ""  # (click ends the ^C line with a newline)


def test_tail_new_events_only_by_default(nova_cmd: list[str], db: Any) -> None:
    url, _ = db
    p = subprocess.Popen([*nova_cmd, "tail", url, "--stream", "users"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        deadline = time.monotonic() + TIMEOUT
        # the child is subscribed once it answers; keep appending until a line comes
        ev = Event("user.created", {"n": 1})
        with SQLiteStore(url[len("sqlite:///"):]) as store:
            import selectors

            assert p.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(p.stdout, selectors.EVENT_READ)
                while not sel.select(timeout=0.3):
                    assert time.monotonic() < deadline and p.poll() is None
                    ev = Event("user.created", {"n": 1})
                    store.append("users", ev)
        line = p.stdout.readline()
        assert line.startswith("position=") and "user.created" in line, line
        assert int(line.split()[0].split("=")[1]) > 10  # none of the 10 old ones
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130 and err.strip() == ""


# --- dead letters -----------------------------------------------------------------------------
def _dead_letters(path: Path, n: int) -> list[Event]:
    from nova import DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy

    def bill(ev: Any) -> None:
        raise RuntimeError("card declined")

    events = [Event("order.placed", {"i": i}, timestamp=T0 + i) for i in range(n)]
    with SQLiteStore(path) as store, ListenerManager() as lm:
        lm.register(bill, ListenerConfig(retry=RetryPolicy(max_attempts=1),
                                         dead_letter=DeadLetterConfig(store=store)), id="billing")
        for ev in events:
            assert lm.process("billing", ev) is False
    return events


def test_deadletters_list_and_redrive(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "dl.db"
    events = _dead_letters(path, 3)
    url = f"sqlite:///{path}"
    cp = run(nova_cmd, "deadletters", url, "--format", "jsonl")
    assert cp.returncode == 0, cp.stderr
    listed = [json.loads(x) for x in cp.stdout.splitlines()]
    assert [d["id"] for d in listed] == [e.id for e in events]
    assert {(d["listener"], d["attempts"], d["error"], d["message"]) for d in listed} == {
        ("billing", "1", "RuntimeError", "card declined")}
    cp = run(nova_cmd, "deadletters", url)
    assert cp.returncode == 0 and "3 dead letters" in cp.stdout and "card declined" in cp.stdout
    (tmp_path / "handlers.py").write_text(
        "import os\n"
        "def ok(ev):\n"
        "    with open(os.environ['OUT'], 'a') as f:\n"
        "        f.write(ev.id + ' ' + ev.type + ' ' + ','.join(sorted(ev.metadata)) + '\\n')\n"
        "def bad(ev):\n"
        "    raise ValueError('still broken')\n"
    )
    out = tmp_path / "seen.txt"
    env = child_env(OUT=str(out))
    cp = run(nova_cmd, "deadletters", url, "--redrive", "handlers:ok", "--dry-run", env=env, cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert [json.loads(x)["id"] for x in cp.stdout.splitlines()[:-1]] == [e.id for e in events]
    assert cp.stdout.splitlines()[-1].startswith("would redrive 3 dead letters through handlers:ok")
    assert not out.exists()  # a dry run runs nothing
    cp = run(nova_cmd, "deadletters", url, "--redrive", "handlers:ok", env=env, cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert "redrive through handlers:ok: 3 succeeded, 0 failed again" in cp.stdout
    # each event once, with its original type, its dead-letter metadata removed
    assert out.read_text().splitlines() == [f"{e.id} order.placed " for e in events]
    # a second redrive skips what the first handled
    cp = run(nova_cmd, "deadletters", url, "--redrive", "handlers:ok", env=env, cwd=tmp_path)
    assert cp.returncode == 0 and "0 succeeded" in cp.stdout and "3 skipped" in cp.stdout, cp.stdout
    assert len(out.read_text().splitlines()) == 3
    # --listener that matches nothing redrives nothing
    cp = run(nova_cmd, "deadletters", url, "--listener", "shipping", "--redrive", "handlers:ok", env=env, cwd=tmp_path)
    assert cp.returncode == 0 and "no dead letters to redrive" in cp.stdout


def test_deadletters_redrive_failing_again_exits_1(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "dl.db"
    _dead_letters(path, 2)
    url = f"sqlite:///{path}"
    (tmp_path / "handlers.py").write_text("def bad(ev):\n    raise ValueError('still broken')\n")
    cp = run(nova_cmd, "deadletters", url, "--redrive", "handlers:bad", cwd=tmp_path)
    # 2 events x 3 attempts: the breaker opens at the 5th failure and says so (a warning)
    line = one_error_line(cp, 1, log_lines=1)
    assert "circuit of listener 'billing' opened" in cp.stderr
    assert "2 failing again" in line, line
    assert "0 succeeded, 2 failed again" in cp.stdout
    with SQLiteStore(path) as store:
        assert store.stream_info("nova.deadletter").length == 4  # dead-lettered anew


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["replay", "{url}", "--start", "yesterday"], "Expected start as ISO-8601"),
    (["replay", "{url}", "--start", "2024-01-01T09:00:00"], "Expected start as ISO-8601"),
    (["replay", "{url}", "--format", "xml"], "'xml' is not one of"),
    (["replay", "{url}", "--bogus"], "No such option"),
    (["replay"], "Missing argument 'URL'"),
    (["replay", "ftp://x/y"], "Expected a store URL starting with one of"),
    (["replay", "{url}", "--format", "parquet"], "Expected --output FILE with --format parquet"),
    (["replay", "{url}", "--start", "now", "--end", "now-1h"], "Expected --end >= --start"),
    (["tail", "{url}", "--from-cursor", "-1"], "--from-cursor"),
    (["deadletters", "{url}", "--redrive", "handlers"], "Expected module:function"),
    (["deadletters", "{url}", "--dry-run"], "Expected --redrive MODULE:FUNCTION with --dry-run"),
    (["bench", "nosucharea"], "Expected areas among"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_exit_2_in_one_line(nova_cmd: list[str], db: Any, args: list[str], needle: str) -> None:
    url, _ = db
    cp = run(nova_cmd, *[a.replace("{url}", url) for a in args])
    line = one_error_line(cp, 2)
    assert needle in line and line.startswith("nova"), line


def test_runtime_errors_exit_1_in_one_line(nova_cmd: list[str], db: Any, tmp_path: Path) -> None:
    url, _ = db
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    cases = [
        (["replay", f"sqlite:///{tmp_path / 'missing.db'}"], "Expected an existing store file"),
        (["replay", f"sqlite:///{text}"], "Expected a nova SQLite event store"),
        (["streams", f"sqlite:///{text}"], "Expected a nova SQLite event store"),
        (["replay", url, "--stream", "nope"], "unknown ['nope']"),
        (["replay", url, "--output", str(tmp_path / "no" / "dir.jsonl"), "--format", "jsonl"],
         "Expected a writable --output file"),
        (["deadletters", url, "--redrive", "no_such_module_xyz:f"], "Expected an importable module"),
        (["deadletters", url, "--redrive", "json:no_such_function"], "Expected 'json' to define"),
        (["stats", "redis://127.0.0.1:1/0?prefix=t"], ""),
    ]
    for args, needle in cases:
        cp = run(nova_cmd, *args)
        line = one_error_line(cp, 1)
        assert line.startswith("nova: error: ") and needle in line, (args, line)
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    assert not (tmp_path / "no").exists()


def test_missing_extras_named_in_one_line(nova_cmd: list[str], db: Any, tmp_path: Path) -> None:
    url, _ = db
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import os, sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in os.environ['BLOCK'].split(','):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )

    def env(blocked: str) -> dict[str, str]:
        e = child_env(BLOCK=blocked)
        e["PYTHONPATH"] = str(block) + os.pathsep + e["PYTHONPATH"]
        return e

    line = one_error_line(run(nova_cmd, "stats", url, env=env("click")), 1)
    assert "pip install 'nova-events[cli]'" in line
    line = one_error_line(run(nova_cmd, "stats", url, env=env("rich")), 1)
    assert "nova-events[cli]" in line
    cp = run(nova_cmd, "replay", url, "--format", "parquet", "-o", str(tmp_path / "x.parquet"), env=env("pyarrow"))
    line = one_error_line(cp, 1)
    assert "pyarrow" in line and "nova-events[arrow]" in line
    cp = run(nova_cmd, "replay", url, "--format", "jsonl", env=env("pyarrow"))  # other formats need no pyarrow
    assert cp.returncode == 0 and len(cp.stdout.splitlines()) == 21


# --- help, python -m nova, bench ------------------------------------------------------------
def test_help_on_every_command_has_an_example(nova_cmd: list[str]) -> None:
    for cmd in ["replay", "streams", "tail", "stats", "deadletters", "audit", "bench"]:  # (demo: its own --help)
        cp = run(nova_cmd, cmd, "--help")
        assert cp.returncode == 0 and cp.stderr == "", cp.stderr
        assert "Example" in cp.stdout and f"nova {cmd}" in cp.stdout
    cp = run(nova_cmd, "--help")
    assert cp.returncode == 0 and "Exit codes" in cp.stdout
    cp = run(nova_cmd)  # no command: the help, as a usage error
    assert cp.returncode == 2 and "Commands:" in cp.stderr
    cp = run(nova_cmd, "--version")
    assert cp.returncode == 0 and cp.stdout.startswith("nova, version ")


def test_python_dash_m_nova(db: Any) -> None:
    url, _ = db
    cp = run([sys.executable, "-m", "nova"], "replay", url, "--format", "csv", "--end", str(T0 + MIN))
    assert cp.returncode == 0, cp.stderr
    assert len(cp.stdout.splitlines()) == 2  # the header and one row


def test_bench_runs_the_ratio_report(nova_cmd: list[str]) -> None:
    cp = run(nova_cmd, "bench", "foundation", "--quick", timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert "== foundation ==" in cp.stdout and re.search(r"\d+ ratios, \d+ met", cp.stdout)


def test_system_streams_only_when_asked(nova_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "sys.db"
    with SQLiteStore(path) as store:
        store.append("orders", Event("order.placed", {"n": 1}, timestamp=T0))
        store.append("nova.audit", Event("nova.delivery", {"n": 2}, timestamp=T0 + 1))
    url = f"sqlite:///{path}"

    def ids(*args: str) -> list[int]:
        cp = run(nova_cmd, "replay", url, "--format", "jsonl", *args)
        assert cp.returncode == 0, cp.stderr
        return [json.loads(x)["data"]["n"] for x in cp.stdout.splitlines()]

    assert ids() == [1]  # as store.replay(): system streams ('nova.' names) left out
    assert ids("--include-system") == [1, 2]
    assert ids("--stream", "nova.audit") == [2]
    cp = run(nova_cmd, "streams", url, "--format", "jsonl")
    assert [json.loads(x)["stream"] for x in cp.stdout.splitlines()] == ["orders", "nova.audit"]
