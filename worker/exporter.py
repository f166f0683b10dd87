"""`dtm exporter`: serves the sum of every process's metrics from the multiprocess directory."""
from __future__ import annotations

import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue, Worker

from ..common.settings import Settings

log = logging.getLogger(__name__)


class QueueCollector:
    """The RQ queue as gauges, read from Redis at scrape time (pipeline health on the dashboard)."""

    def __init__(self, settings: Settings):
        self.connection = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.queue_name = settings.queue_name

    def collect(self):
        up = GaugeMetricFamily("dtm_redis_up", "1 when the exporter reaches Redis.")
        jobs = GaugeMetricFamily("dtm_queue_jobs", "RQ decision jobs by state.", labels=["state"])
        overdue = GaugeMetricFamily("dtm_scheduled_jobs_overdue", "Scheduled jobs due more than 60 s ago.")
        workers = GaugeMetricFamily("dtm_workers", "Live RQ workers on the queue.")
        try:
            queue = Queue(self.queue_name, connection=self.connection)
            registries = {
                "queued": queue,
                "scheduled": queue.scheduled_job_registry,
                "started": queue.started_job_registry,
                "failed": queue.failed_job_registry,
            }
            for state, registry in registries.items():
                jobs.add_metric([state], registry.count)
            overdue.add_metric([], self.connection.zcount(queue.scheduled_job_registry.key, 0, time.time() - 60))
            workers.add_metric([], Worker.count(queue=queue))
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        yield from (up, jobs, overdue, workers)


def make_server(
    directory: str, port: int, host: str = "0.0.0.0", queue: QueueCollector | None = None
) -> ThreadingHTTPServer:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    if queue is not None:
        registry.register(queue)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?", 1)[0] == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif self.path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _reply(self, status: int, content_type: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # scrapes every 15 s are not news
            pass

    return ThreadingHTTPServer((host, port), Handler)


def run(settings: Settings, port: int) -> None:
    directory = settings.prometheus_multiproc_dir
    # The exporter may start before any process has written a metric (and made the directory).
    os.makedirs(directory, exist_ok=True)
    server = make_server(directory, port, queue=QueueCollector(settings))
    log.info("exporter serving /metrics", extra={"port": server.server_address[1], "directory": directory})
    try:
        server.serve_forever()
    finally:
        server.server_close()
