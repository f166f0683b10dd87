"""`dtm worker`: an RQ worker that runs decision jobs in its own process.

RQ's default Worker forks a work horse per job; every fork writes its own prometheus-client
files, which can never be deleted (counters would go backwards), so the metrics directory would
grow with the number of jobs. A SimpleWorker runs jobs in the worker process itself: one set of
metric files per worker, a boto3 client and Redis connections reused across jobs. Scale out with
more worker processes (or pods), not forks.
"""
from __future__ import annotations

import logging

import redis
from rq import Queue, SimpleWorker

from ..common.settings import Settings
from . import job, orphans

log = logging.getLogger(__name__)


def run(settings: Settings, *, burst: bool = False, name: str | None = None) -> None:
    connection = redis.Redis.from_url(settings.redis_url)
    job.install(job.WorkerContext.from_settings(settings, connection))
    queue = Queue(settings.queue_name, connection=connection)
    worker = SimpleWorker([queue], connection=connection, name=name)
    log.info("worker started", extra={"queue": settings.queue_name, "worker": worker.name})
    orphans.start_sweeper(job.current().store, settings, worker.name)  # files whose end readout never comes
    # with_scheduler: this worker also moves due jobs from the scheduled registry to the queue
    # (RQ elects one scheduler per queue among the workers).
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
