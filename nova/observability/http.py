"""A small HTTP endpoint for probes and scrapes: ``GET /healthz`` and ``GET /metrics``.

:func:`serve` starts a stdlib ``http.server`` on a daemon thread, bound to loopback by
default, and returns a :class:`Server` handle (``.url``, ``.close()``, a context manager).

* ``GET /healthz``: JSON from :func:`nova.observability.health.health_report`; status
  200 when the overall health is ``healthy`` or ``degraded``, 503 when ``unhealthy`` or
  ``circuit-open``.
* ``GET /metrics``: the Prometheus text format of *registry* (``prometheus_client``'s
  global ``REGISTRY`` by default; 503 with a message when ``prometheus_client`` is not
  installed).
* Anything else gets a 4xx (404 unknown path, 405 other methods, 400 a malformed
  request), and a failure while answering a 500 with a one-line JSON message: never a
  traceback, neither in the answer nor on stderr (it is logged on ``nova.observability``).

.. versionadded:: 0.3
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nova.errors import type_name
from nova.observability.health import health_report, serving_status

__all__ = ("serve", "Server")

_log = logging.getLogger("nova.observability")


class _Handler(BaseHTTPRequestHandler):
    server_version = "nova"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a malformed request still gets a status line
    error_content_type = "application/json"
    error_message_format = '{"error": "%(message)s", "code": %(code)d}\n'

    def version_string(self) -> str:
        return "nova"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # What the client got wrong is a 4xx: the stdlib answers an unsupported HTTP
        # version with 505 and an unknown method with 501.
        if code in (501, 505):
            code = 400 if code == 505 else 405
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        _log.debug("http %s: " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, sort_keys=True).encode(), "application/json")

    def do_GET(self) -> None:
        srv: Any = self.server
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/healthz", "/health"):
                report = health_report(**srv.nova_components)
                self._json(serving_status(report["status"]), report)
            elif path == "/metrics":
                self._metrics(srv.nova_registry)
            else:
                self._json(404, {"error": f"Expected /healthz or /metrics, got {path[:200]!r}"})
        except Exception as exc:  # noqa: BLE001 - an answer, never a traceback
            _log.exception("nova: answering %s failed", path[:200])
            self._json(500, {"error": f"{type_name(exc)} while answering {path[:200]!r}"})

    do_HEAD = do_GET

    def _metrics(self, registry: Any) -> None:
        try:
            import prometheus_client
        except ImportError:
            self._json(503, {"error": "Expected prometheus_client for /metrics, got it missing: "
                                      "pip install 'nova-events[prometheus]'"})
            return
        reg = prometheus_client.REGISTRY if registry is None else registry
        self._send(200, prometheus_client.generate_latest(reg), prometheus_client.CONTENT_TYPE_LATEST)

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        body = json.dumps({"error": f"Expected GET or HEAD, got {self.command[:20]!r}"}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def __getattr__(self, name: str) -> Any:
        # any other method (POST, PUT, FOO...) is a 405, not the stdlib's 501
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    nova_components: dict[str, Any]
    nova_registry: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("nova: http connection from %s failed", client_address, exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class Server:
    """A running endpoint (see :func:`serve`): ``url`` (``http://host:port``), ``host``,
    ``port``, :meth:`close`; a context manager."""

    def __init__(self, httpd: _HTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._lock = threading.Lock()
        self._closed = False
        host, port = httpd.server_address[:2]
        self.host: str = str(host)
        self.port: int = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the socket (idempotent, thread-safe)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<nova.observability.Server {self.url} {'closed' if self._closed else 'serving'}>"


def serve(port: int = 0, host: str = "127.0.0.1", *, emitter: Any = None, bus: Any = None,
          listeners: Any = None, registry: Any = None) -> Server:
    """Serve ``/healthz`` and ``/metrics`` on *host*:*port* (port 0: a free one) from a
    daemon thread.  *emitter*, *bus*, *listeners* (a ListenerManager) are one component
    or a list of them; *registry* is the ``prometheus_client`` registry ``/metrics``
    renders (``None``: the global one).

    Returns:
        a :class:`Server`; ``server.url`` is where it listens.

    Raises:
        TypeError / ValueError: a bad *port* or *host*.
        OSError: the address cannot be bound.
    """
    if type(port) is not int:
        raise TypeError(f"Expected port as an int, got {type_name(port)}")
    if not 0 <= port <= 65535:
        raise ValueError(f"Expected a port in 0..65535, got {port}")
    if not isinstance(host, str):
        raise TypeError(f"Expected host as a str, got {type_name(host)}")
    if not host:
        raise ValueError("Expected a non-empty host, got ''")
    if registry is not None and not callable(getattr(registry, "collect", None)):
        raise TypeError(f"Expected a prometheus_client CollectorRegistry or None, got {type_name(registry)}")
    cls: type[_HTTPServer] = _HTTPServer6 if ":" in host else _HTTPServer
    httpd = cls((host, port), _Handler)
    httpd.nova_components = {"emitter": emitter, "bus": bus, "listeners": listeners}
    httpd.nova_registry = registry
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         name=f"nova-http-{httpd.server_address[1]}", daemon=True)
    t.start()
    return Server(httpd, t)
