"""A second look at an exposure, RECHECK_TIME after its end of readout.

The decision at T0 + S3_WAIT_TIME is final: its metrics never change. But an operator wants to
know what became of the files it found missing: did they arrive a minute later (a slow transfer)
or never (lost)? When an exposure is decided with missing files (or without an expected-sensors
object), `decide_exposure` schedules `recheck_exposure` at T0 + RECHECK_TIME (job id
`recheck-<image>`, unique). The recheck lists S3 again and splits the decision's missing files:

- arrived after the window: arrival (S3 LastModified, else notification eventTime) <= T0 +
  RECHECK_TIME. Counted in `dtm_s3_arrived_after_window_total{day}`.
- still missing: no arrival by T0 + RECHECK_TIME. Counted in `dtm_s3_missing_after_recheck_total{day}`.

The cut-off is T0 + RECHECK_TIME, not the time the job runs, so a late job or a replay finds the
same answer. The result is stored once (SET NX under `keys.recheck`), which is also what makes it
counted once; `dtm inspect` shows it as the `recheck` object of the exposure.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Mapping

import orjson

from ..common import keys, metrics
from ..common import time as ttime
from ..common.jobs import schedule_once
from ..common.objectkey import exposure_prefix, is_data_file
from ..common.store import ExposureStore
from .decision import Decision, merge_arrivals

log = logging.getLogger(__name__)

RECHECK_JOB = "dtm.worker.recheck.recheck_exposure"


def needs_recheck(decision: Decision) -> bool:
    """Only exposures with something to look for: missing files, or no list of expected files."""
    return bool(decision.missing_files) or not decision.expected_sensors_found


def second_look(
    *,
    end_readout_utc: float,
    missing_files: Iterable[str],
    arrivals: Mapping[str, float],
    wait_time: float,
    recheck_time: float,
    expected_sensors_found: bool = True,
    is_data_file: Callable[[str], bool] = lambda key: True,
) -> dict:
    """What became of the decision's missing files by T0 + RECHECK_TIME (pure).

    Without an expected-sensors object nothing was "missing"; data files that arrived after the
    window are then reported as arrived after it.
    """
    window_end = end_readout_utc + wait_time
    cutoff = end_readout_utc + recheck_time
    missing = set(missing_files)
    candidates = set(missing)
    if not expected_sensors_found:
        candidates |= {key for key, at in arrivals.items() if window_end < at and is_data_file(key)}
    arrived = sorted(key for key in candidates if key in arrivals and arrivals[key] <= cutoff)
    return {
        "recheck_time_seconds": recheck_time,
        "cutoff_utc": ttime.isoformat(cutoff),
        "arrived_after_window": arrived,
        "arrival_after_end_readout_seconds": {key: round(arrivals[key] - end_readout_utc, 3) for key in arrived},
        "still_missing": sorted(missing.difference(arrived)),
    }


# -- storage -------------------------------------------------------------------------------------
def save_recheck(store: ExposureStore, image_name: str, result: dict) -> bool:
    """Store the second look; True only the first time (the caller counts metrics only then)."""
    return bool(store.redis.set(keys.recheck(image_name), orjson.dumps(result), nx=True, ex=store.ttl))


def stored_recheck(store: ExposureStore, image_name: str) -> dict | None:
    data = store.redis.get(keys.recheck(image_name))
    return None if data is None else orjson.loads(data)


# -- scheduling (from the decision job) ----------------------------------------------------------
def schedule_recheck(context, decision: Decision, now: float | None = None) -> bool:
    """Schedule the second look at T0 + RECHECK_TIME (at once if past). False if not needed or already there."""
    from rq import Queue

    if not needs_recheck(decision):
        return False
    settings = context.settings
    return schedule_once(Queue(settings.queue_name, connection=context.store.redis), RECHECK_JOB,
                         decision.image_name, job_id=keys.recheck_job_id(decision.image_name),
                         due=decision.end_readout_utc + settings.recheck_time,
                         now=time.time() if now is None else now, keep_seconds=settings.redis_key_ttl)


# -- the job -------------------------------------------------------------------------------------
def recheck_exposure(image_name: str) -> dict | None:
    """RQ job: the second look at one exposure, in the worker's context."""
    from .job import current

    return run_recheck(current(), image_name)


def run_recheck(context, image_name: str, now: float | None = None) -> dict | None:
    """List S3 again, store the second look once and count it once. Returns the stored result."""
    store, settings = context.store, context.settings
    record = store.decision(image_name)
    if record is None:
        log.error("recheck: no decision stored for this exposure (expired?): nothing to recheck",
                  extra={"image_name": image_name})
        return None
    existing = stored_recheck(store, image_name)
    if existing is not None:
        return existing
    decision = Decision.from_record(record)
    listed = context.bucket.last_modified(_prefix(store, decision))
    arrivals = merge_arrivals(listed, store.arrivals(image_name))
    result = second_look(
        end_readout_utc=decision.end_readout_utc,
        missing_files=decision.missing_files,
        arrivals=arrivals,
        wait_time=settings.s3_wait_time,
        recheck_time=settings.recheck_time,
        expected_sensors_found=decision.expected_sensors_found,
        is_data_file=is_data_file,
    )
    result["checked_at"] = ttime.isoformat(time.time() if now is None else now)
    if not save_recheck(store, image_name, result):
        return stored_recheck(store, image_name)  # another run got there first: it counted
    day = decision.day_obs
    metrics.ensure_day_series(day)
    if result["arrived_after_window"]:
        metrics.arrived_after_window.labels(day=day).inc(len(result["arrived_after_window"]))
    if result["still_missing"]:
        metrics.missing_after_recheck.labels(day=day).inc(len(result["still_missing"]))
    extra = {"image_name": image_name, "day_obs": day,
             "arrived_after_window": result["arrived_after_window"], "still_missing": result["still_missing"],
             "arrived_after_window_count": len(result["arrived_after_window"]),
             "still_missing_count": len(result["still_missing"])}
    if result["still_missing"]:
        log.warning("recheck: files still missing at RECHECK_TIME", extra=extra)
    else:
        log.info("recheck: every missing file arrived after the window", extra=extra)
    return result


def _prefix(store: ExposureStore, decision: Decision) -> str:
    readout = store.readout(decision.image_name)
    if readout is not None:
        return readout.prefix
    # The readout expired before the decision did: the image name carries the image date.
    return exposure_prefix(decision.instrument, decision.image_name.split("_")[2], decision.image_name)
