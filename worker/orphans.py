"""Files whose end readout never comes: the orphan sweep.

Ingest records every image it sees files of in `keys.unclaimed_images()` (score: when its first
file was seen); storing the image's end readout removes it. Ingest may add an image again after
its readout was stored (files arriving late), so the sweep checks for a readout itself.

Every SWEEP_INTERVAL a thread of `dtm worker` takes a short Redis lease (one sweep per interval
however many workers run) and, for each unclaimed image first seen more than ORPHAN_GRACE_TIME
ago, of a monitored camera and controller, with neither an end readout nor a decision:
- stores an orphan record (`keys.orphan`, indexed in `keys.orphans()`): `dtm inspect IMAGE` then
  shows status `orphaned`, `dtm status` lists it;
- counts its files once in `dtm_orphaned_files_total{day}` (day: observing day of its first file's
  eventTime, as for every file counter), and logs one warning with image_name and day_obs.
Files arriving for an image already reported add to its record and count then (only the new ones).

Why a thread and not a self-rescheduling RQ job: a job that re-enqueues itself under a fixed id
collides with its own still-existing job hash (`unique=True`), and once it is lost (failed
registry, flushed queue) nobody re-arms it. The thread lives as long as a worker does, needs no
S3, takes milliseconds, and leaves a heartbeat (`keys.last_seen("orphan_sweep")`) for `dtm status`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Mapping

import orjson
import redis

from ..common import keys, metrics
from ..common import time as ttime
from ..common.objectkey import INSTRUMENTS, is_image_name
from ..common.settings import Settings
from ..common.store import ExposureStore

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0
ORPHANED = "orphaned"


def orphan_record(previous: dict | None, image_name: str, first_seen: float, arrivals: Mapping[str, float],
                  now: float) -> tuple[dict, int]:
    """The orphan record after this sweep, and how many files it counts for the first time (pure)."""
    counted = previous["files"] if previous else 0
    files = max(len(arrivals), counted)
    first_file = min(arrivals.values(), default=first_seen)
    last_file = max(arrivals.values(), default=first_seen)
    if previous:
        first_file = min(first_file, ttime.parse_iso_utc(previous["first_file_utc"]))
    record = {
        "image_name": image_name,
        "instrument": INSTRUMENTS.get(image_name[:2]),
        # The day of a file counter is the day of the notification's eventTime; it never moves.
        "day_obs": previous["day_obs"] if previous else ttime.observing_day_of_utc(first_file),
        "status": ORPHANED,
        "files": files,
        "first_file_utc": ttime.isoformat(first_file),
        "last_file_utc": ttime.isoformat(last_file),
        "declared_at": previous["declared_at"] if previous else ttime.isoformat(now),
        "updated_at": ttime.isoformat(now),
    }
    return record, files - counted


def stored_orphan(store: ExposureStore, image_name: str) -> dict | None:
    data = store.redis.get(keys.orphan(image_name))
    return None if data is None else orjson.loads(data)


def recent_orphans(store: ExposureStore, since_utc: float) -> list[dict]:
    """Orphan records of images first seen since `since_utc`, oldest first."""
    names = [member.decode() for member in store.redis.zrangebyscore(keys.orphans(), since_utc, "+inf")]
    records = store.redis.mget([keys.orphan(name) for name in names]) if names else []
    return [orjson.loads(data) for data in records if data is not None]


def _record_orphan(store: ExposureStore, image_name: str, first_seen: float, arrivals: Mapping[str, float],
                   now: float) -> tuple[dict, int]:
    key = keys.orphan(image_name)

    def update(pipe) -> tuple[dict, int]:
        current = pipe.get(key)
        previous = orjson.loads(current) if current is not None else None
        record, new_files = orphan_record(previous, image_name, first_seen, arrivals, now)
        if previous is not None and new_files == 0:
            return previous, 0
        pipe.multi()
        pipe.set(key, orjson.dumps(record), ex=store.ttl)
        pipe.zadd(keys.orphans(), {image_name: ttime.parse_iso_utc(record["first_file_utc"])})
        pipe.expire(keys.orphans(), store.ttl)
        return record, new_files

    return store.redis.transaction(update, key, value_from_callable=True)


def _claimed_or_ignored(store: ExposureStore, settings: Settings, image_name: str) -> bool:
    if not is_image_name(image_name):
        return True
    source, controller = image_name.split("_")[:2]
    if not settings.monitors(source, controller):
        return True  # the scheduler skips these readouts: their files are not orphans
    return store.readout(image_name) is not None or store.decision(image_name) is not None


def sweep(store: ExposureStore, settings: Settings, now: float | None = None) -> list[dict]:
    """One pass over the unclaimed images; returns the records that counted new orphaned files."""
    now = time.time() if now is None else now
    unclaimed = keys.unclaimed_images()
    reported = []
    for member, first_seen in store.redis.zrangebyscore(unclaimed, "-inf", now - settings.orphan_grace_time,
                                                        withscores=True):
        image_name = member.decode()
        if not _claimed_or_ignored(store, settings, image_name):
            record, new_files = _record_orphan(store, image_name, first_seen, store.arrivals(image_name), now)
            if new_files:
                metrics.ensure_day_series(record["day_obs"])
                metrics.orphaned_files.labels(day=record["day_obs"]).inc(new_files)
                log.warning("files with no end readout after ORPHAN_GRACE_TIME: orphaned", extra={
                    "image_name": image_name, "day_obs": record["day_obs"], "files": record["files"],
                    "new_files": new_files, "first_file_utc": record["first_file_utc"]})
                reported.append(record)
        store.redis.zrem(unclaimed, image_name)
    store.redis.set(keys.last_seen("orphan_sweep"), now, ex=store.ttl)
    return reported


def sweep_if_leased(store: ExposureStore, settings: Settings, worker_name: str, interval: float = SWEEP_INTERVAL,
                    now: float | None = None) -> list[dict] | None:
    """Sweep unless another worker holds this interval's lease; None when it does."""
    if not store.redis.set(keys.orphan_sweep_lease(), worker_name, nx=True, ex=max(int(interval) - 1, 1)):
        return None
    return sweep(store, settings, now)


def start_sweeper(store: ExposureStore, settings: Settings, worker_name: str,
                  stop: threading.Event | None = None, interval: float = SWEEP_INTERVAL) -> threading.Thread:
    """A daemon thread sweeping every `interval` seconds; it logs errors and carries on."""
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                sweep_if_leased(store, settings, worker_name, interval)
            except redis.RedisError as error:
                log.error("orphan sweep: Redis unavailable, trying again in %.0f s: %s", interval, error)
            except Exception:  # a bug must not end the sweeps for the life of the worker
                log.exception("orphan sweep failed")

    thread = threading.Thread(target=loop, name="dtm-orphan-sweep", daemon=True)
    thread.start()
    return thread
