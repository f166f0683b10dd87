"""How many files the prometheus-client multiprocess directory holds after N decision jobs.

Compares dtm's worker (`dtm worker`: RQ SimpleWorker + slot-named metric files) with RQ's default
forking Worker (`rq worker`), on a real Redis server and moto's S3 server.

    python bench/metrics_files.py [--jobs 100]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from dtm.common import time as ttime
from dtm.common.models import EndReadout
from dtm.common.store import ExposureStore
from rq import Queue

from dtm.embedded import RedisServer, S3Server

BIN = Path(sys.executable).parent


def enqueue_jobs(connection, count: int, first: int) -> None:
    store = ExposureStore(connection, 3600)
    queue = Queue("dtm", connection=connection)
    end_tai = ttime.utc_to_tai(time.time() - 120)
    for number in range(first, first + count):
        readout = EndReadout(f"MC_O_20251203_{number:06d}", "MC", "O", "20251203", end_tai)
        store.save_readout(readout, seen_at=time.time())
        queue.enqueue("dtm.worker.job.decide_exposure", readout.image_name)


def run(command: list[str], environment: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    jobs = parser.parse_args().jobs
    redis_server, s3 = RedisServer(), S3Server("rubin-summit")
    connection = redis.Redis.from_url(redis_server.url)
    base = {**os.environ, "REDIS_URL": redis_server.url, "S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    try:
        print(f"{'worker model':<46} {'jobs':>5} {'files':>6} {'seconds':>8}")
        for label, command, runs in (
            ("dtm worker (SimpleWorker, slot files), 1 run", [str(BIN / "dtm"), "worker", "--burst"], 1),
            ("dtm worker, 3 runs (restarts)", [str(BIN / "dtm"), "worker", "--burst"], 3),
            ("rq worker (forking Worker, pid files)", [str(BIN / "rq"), "worker", "--burst", "-u",
                                                       redis_server.url, "dtm"], 1),
        ):
            connection.flushdb()
            directory = tempfile.mkdtemp(prefix="dtm-bench-metrics-")
            environment = {**base, "PROMETHEUS_MULTIPROC_DIR": directory}
            seconds = 0.0
            for index in range(runs):
                enqueue_jobs(connection, jobs, first=index * jobs)
                seconds += run(command, environment)
            files = [name for name in os.listdir(directory) if name.endswith(".db")]
            print(f"{label:<46} {jobs * runs:>5} {len(files):>6} {seconds:>8.2f}")
    finally:
        s3.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
