"""The RQ job that decides one exposure, and what it needs from its process.

RQ imports jobs by name (`dtm.worker.job.decide_exposure`), so the process-wide context (settings,
Redis, S3 client) is installed once by `dtm worker` and reused by every job it runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import redis

from ..common import camera_summary, metrics
from ..common.models import EndReadout
from ..common.objectkey import BadExpectedSensors, expected_file_keys, expected_sensors_key, is_data_file
from ..common.settings import Settings
from ..common.store import ExposureStore
from .decision import Decision, decide, merge_arrivals
from .recheck import schedule_recheck
from .s3 import BucketReader, make_client

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    store: ExposureStore
    bucket: BucketReader

    @classmethod
    def from_settings(cls, settings: Settings, connection: redis.Redis | None = None) -> "WorkerContext":
        connection = connection or redis.Redis.from_url(settings.redis_url)
        return cls(settings, ExposureStore(connection, settings.redis_key_ttl),
                   BucketReader(make_client(settings), settings.bucket))


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def current() -> WorkerContext:
    global _context
    if _context is None:  # a job run by a plain `rq worker`: build the context from the environment
        _context = WorkerContext.from_settings(Settings.from_env())
    return _context


def decide_exposure(image_name: str) -> dict | None:
    """Decide an exposure, record its metrics once, store and log the decision."""
    context = current()
    readout = context.store.readout(image_name)
    if readout is None:
        log.error("no end readout stored for this exposure (expired?): nothing to decide",
                  extra={"image_name": image_name})
        return None
    decision = evaluate(context, readout)
    record = decision.to_record()
    first_time = context.store.save_decision(record)
    if first_time:
        record_metrics(decision)
    # Read after the decision is stored: a summary stored meanwhile by the scheduler is compared here or there.
    summary = context.store.transfer_summary(image_name)
    if summary is not None:
        camera_summary.check(context.store, record, summary, where="worker")
    log_decision(decision, first_time=first_time)
    schedule_recheck(context, decision)  # a second look at T0 + RECHECK_TIME, when files are missing
    return record


def evaluate(context: WorkerContext, readout: EndReadout) -> Decision:
    """Read S3 and Redis and decide, without recording anything."""
    settings = context.settings
    image_name = readout.image_name
    prefix = readout.prefix
    extra = {"image_name": image_name, "day_obs": readout.day_obs}
    expected_keys = None
    sensors_key = expected_sensors_key(prefix, image_name, settings.expected_sensors_filename)
    try:
        document = context.bucket.read_json(sensors_key)
        if document is not None:
            expected_keys = expected_file_keys(prefix, image_name, document)
    except (orjson.JSONDecodeError, BadExpectedSensors) as error:
        metrics.rejected_messages.labels(stream="expected_sensors", reason="malformed").inc()
        log.error("expected-sensors object unreadable, deciding without it: %s", error,
                  extra={**extra, "key": sensors_key})
    listed = context.bucket.last_modified(prefix)
    arrivals = {key: at for key, at in merge_arrivals(listed, context.store.arrivals(image_name)).items()
                if is_data_file(key)}
    return decide(
        image_name=image_name,
        instrument=readout.instrument,
        day_obs=readout.day_obs,
        end_readout_utc=readout.end_readout_utc,
        expected_keys=expected_keys,
        arrivals=arrivals,
        wait_time=settings.s3_wait_time,
        max_late_time=settings.max_late_file_time,
    )


def record_metrics(decision: Decision) -> None:
    day = decision.day_obs
    metrics.ensure_day_series(day)
    metrics.exposures_decided.labels(day=day, status=decision.status).inc()
    if decision.late_or_missing:
        metrics.late_or_missing.labels(day=day).inc(decision.late_or_missing)
    if decision.clock_anomaly:
        metrics.clock_anomalies.labels(day=day).inc()
    elif decision.transfer_time_seconds is not None:
        metrics.transfer_duration.labels(day=day).observe(decision.transfer_time_seconds)


def log_decision(decision: Decision, *, first_time: bool) -> None:
    extra = {
        "image_name": decision.image_name,
        "day_obs": decision.day_obs,
        "status": decision.status,
        "transfer_time_seconds": decision.transfer_time_seconds,
        "expected_files": decision.expected_files,
        "arrived_files": decision.arrived_files,
        "late_count": len(decision.late_files),
        "missing_count": len(decision.missing_files),
        "late_files": decision.late_files,
        "missing_files": decision.missing_files,
        "first_decision": first_time,
    }
    if decision.clock_anomaly:
        log.warning("clock anomaly: latest file stamped at or before the end of readout; not observed", extra=extra)
    elif not decision.expected_sensors_found:
        log.warning("exposure decided without an expected-sensors object", extra=extra)
    else:
        log.info("exposure decided", extra=extra)
