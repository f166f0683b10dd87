"""Scheduling an exposure's RQ jobs (its decision, its recheck): once per exposure, never early."""
from __future__ import annotations

import math

from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from . import time as ttime

# S3 or Redis hiccups: try again a few times before the job lands in the failed registry.
RETRY = Retry(max=3, interval=[10, 30, 90])


def schedule_once(queue: Queue, function: str, image_name: str, *, job_id: str, due: float, now: float,
                  keep_seconds: int) -> bool:
    """Run `function(image_name)` at `due` (UTC unix seconds; at once if past). False if `job_id` exists.

    `unique=True` makes RQ refuse a second job with the same id atomically: a redelivered event
    schedules nothing. The finished job is kept `keep_seconds`, so that refusal holds that long.
    """
    options = dict(job_id=job_id, unique=True, retry=RETRY, result_ttl=keep_seconds, failure_ttl=keep_seconds)
    try:
        if due <= now:
            queue.enqueue(function, image_name, **options)
        else:
            # RQ's scheduler keeps whole seconds and drops the fraction: round up, never run early.
            queue.enqueue_at(ttime.to_datetime(math.ceil(due)), function, image_name, **options)
    except DuplicateJobError:
        return False
    return True
