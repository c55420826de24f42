"""Issue 16 part 3: serve() /healthz and /metrics over a real listening socket."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from nova import Bus, CircuitConfig, Emitter, Event, ListenerConfig, ListenerManager, RetryPolicy
from nova.observability import PrometheusMetricsCollector, serve


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def raw(srv, data: bytes) -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_healthz_and_metrics():
    reg = CollectorRegistry()
    m = PrometheusMetricsCollector(reg)
    em = Emitter(metrics=m, name="web")
    em.subscribe("x", lambda ev: None)
    em.emit(Event("x"))
    bus = Bus(name="b")
    with serve(emitter=em, bus=bus, registry=reg) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        code, ctype, body = get(srv.url + "/healthz")
        assert code == 200 and ctype == "application/json"
        doc = json.loads(body)
        assert doc["status"] == "healthy"
        assert doc["components"]["emitter:web"]["queued"] == 0
        assert doc["components"]["bus:b"]["pending"] == 0
        code, ctype, body = get(srv.url + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        assert b'nova_events_emitted_total{result="ok",type="x"} 1.0' in body
    assert srv.closed
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2).close()
    em.shutdown()
    bus.shutdown()


def test_circuit_open_is_503_and_closed_bus_unhealthy():
    mgr = ListenerManager()

    def bad(ev):
        raise RuntimeError("down")

    ml = mgr.register(bad, ListenerConfig(retry=RetryPolicy(max_attempts=1),
                                          circuit=CircuitConfig(failure_threshold=2, timeout=60)))
    for _ in range(2):
        mgr.process(ml.id, Event("x"))
    with serve(listeners=mgr) as srv:
        code, _, body = get(srv.url + "/healthz")
        assert code == 503
        doc = json.loads(body)
        assert doc["status"] == "circuit-open"
        comp = next(iter(doc["components"].values()))
        assert comp["listeners"][ml.id]["breaker"] == "open"
    bus = Bus(name="gone")
    bus.shutdown()
    with serve(bus=bus) as srv:
        code, _, body = get(srv.url + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "unhealthy"


def test_degraded_is_200():
    bus = Bus(name="d")
    from nova import TopicConfig

    bus.create_topic("t", TopicConfig(retry=RetryPolicy(max_attempts=1)))
    bus.subscribe("t", lambda ev: 1 / 0)
    bus.publish("t", Event("x"))
    assert bus.flush(10)
    with serve(bus=bus) as srv:
        code, _, body = get(srv.url + "/healthz")
        assert code == 200 and json.loads(body)["status"] == "degraded"
    bus.shutdown()


def test_bad_requests_get_4xx_never_a_traceback():
    with serve() as srv:
        assert get(srv.url + "/nope")[0] == 404
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("POST", "/healthz", body=b"x")
        r = c.getresponse()
        assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
        r.read()
        c.close()
        for req in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\xff\xfe\r\n\r\n",
                    b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
            out = raw(srv, req)
            status = int(out.split(b" ", 2)[1])
            assert 400 <= status < 500, out
            assert b"Traceback" not in out
        # still serving
        assert get(srv.url + "/healthz")[0] == 200


def test_a_failing_component_is_500_json_not_a_traceback(capfd):
    class Broken(Emitter):
        def stats(self):
            raise RuntimeError("secret detail")

    em = Broken(name="broken")
    with serve(emitter=em) as srv:
        code, ctype, body = get(srv.url + "/healthz")
    assert code == 500 and ctype == "application/json"
    assert b"Traceback" not in body and b"secret detail" not in body
    assert "Traceback" not in capfd.readouterr().err
    em.shutdown()


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"port": "80"}, TypeError, "Expected port as an int, got str"),
        ({"port": 70000}, ValueError, "Expected a port in 0..65535, got 70000"),
        ({"host": 1}, TypeError, "Expected host as a str, got int"),
        ({"host": ""}, ValueError, "Expected a non-empty host"),
        ({"registry": 5}, TypeError, "Expected a prometheus_client CollectorRegistry or None, got int"),
    ],
)
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        serve(**kwargs)


def test_close_is_idempotent_and_threadsafe():
    import threading

    srv = serve()
    ts = [threading.Thread(target=srv.close) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    srv.close()
    assert srv.closed and "closed" in repr(srv)
