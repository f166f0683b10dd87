"""`dtm scheduler`: end-readout events from Kafka into delayed RQ decision jobs.

Each event is stored in Redis and schedules `decide_exposure` at T0 + S3_WAIT_TIME (at once when
that instant has passed: a replay, or a scheduler that was down). The job id comes from the
image name and the job is enqueued with `unique=True`, so a redelivered event schedules nothing.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from confluent_kafka import Consumer, KafkaError
from rq import Queue

from ..common import camera_summary, kafka, keys, metrics
from ..common import time as ttime
from ..common.jobs import schedule_once
from ..common.models import EndReadout, Rejected, end_readout_from_fields
from ..common.settings import Settings
from ..common.store import ExposureStore
from .decoding import Decoder, RegistryUnavailable, make_decoder

log = logging.getLogger(__name__)

STREAM = "end_readouts"
BATCH_SIZE = 500
POLL_TIMEOUT = 0.2
LAG_REPORT_INTERVAL = 15.0
DECIDE_JOB = "dtm.worker.job.decide_exposure"


class ReadoutScheduler:
    """Stores end readouts and schedules their decisions. Kafka-free, so tests drive it directly."""

    def __init__(self, settings: Settings, connection: redis.Redis):
        self.settings = settings
        self.store = ExposureStore(connection, settings.redis_key_ttl)
        self.queue = Queue(settings.queue_name, connection=connection)

    def handle(self, readout: EndReadout, now: float | None = None) -> bool:
        """Store and schedule. True if a decision job was scheduled, False if one already exists."""
        now = time.time() if now is None else now
        self.store.save_readout(readout, seen_at=now)
        return schedule_once(self.queue, DECIDE_JOB, readout.image_name,
                             job_id=keys.decide_job_id(readout.image_name),
                             due=readout.end_readout_utc + self.settings.s3_wait_time, now=now,
                             keep_seconds=self.settings.redis_key_ttl)


def parse_readout(decode: Decoder, value: bytes | None, topic: str) -> EndReadout:
    return end_readout_from_fields(decode(value, topic))


def handle_message(message, decode: Decoder, scheduler: ReadoutScheduler) -> None:
    settings = scheduler.settings
    if message.topic() in settings.transfer_summary_topics:
        handle_summary_message(message, decode, scheduler)
        return
    try:
        readout = parse_readout(decode, message.value(), message.topic())
    except Rejected as rejection:
        reject(STREAM, rejection, message)
        return
    extra = {"image_name": readout.image_name, "day_obs": readout.day_obs}
    if not settings.monitors(readout.image_source, readout.image_controller):
        log.debug("end readout of an unmonitored camera or controller skipped", extra=extra)
        return
    if scheduler.handle(readout):
        log.info("decision scheduled", extra={
            **extra, "end_readout_utc": ttime.isoformat(readout.end_readout_utc),
            "decide_at": ttime.isoformat(readout.end_readout_utc + settings.s3_wait_time)})
    else:
        log.info("end readout delivered again: decision already scheduled", extra=extra)


def handle_summary_message(message, decode: Decoder, scheduler: ReadoutScheduler) -> None:
    """The camera's fileTransferPerImageSummary: keep the latest, compare with a decision already made."""
    try:
        summary = camera_summary.summary_from_fields(decode(message.value(), message.topic()))
    except Rejected as rejection:
        reject(camera_summary.STREAM, rejection, message)
        return
    image_name = summary["obsId"]
    if not _monitored(scheduler.settings, image_name):
        return
    stored = camera_summary.handle_summary(scheduler.store, summary)
    log.debug("camera transfer summary %s", "stored" if stored else "older than the stored one: ignored",
              extra={"image_name": image_name, "stream": camera_summary.STREAM})


def _monitored(settings: Settings, image_name: str) -> bool:
    return settings.monitors(*camera_summary.image_source_and_controller(image_name))


def reject(stream: str, rejection: Rejected, message) -> None:
    metrics.rejected_messages.labels(stream=stream, reason=rejection.reason).inc()
    kafka.log_rejection(stream, rejection, message)


def store_until_done(messages, decode: Decoder, scheduler: ReadoutScheduler, stop: threading.Event) -> bool:
    """Handle the batch, retrying while Redis is away. False if stopped before it was stored."""
    delay = 0.5
    pending = [message for message in messages if _usable(message)]
    while pending:
        try:
            handle_message(pending[0], decode, scheduler)
            pending.pop(0)
        except (redis.RedisError, RegistryUnavailable) as error:
            what = "Redis write failed" if isinstance(error, redis.RedisError) else "Schema Registry unavailable"
            log.error("%s, retrying in %.1f s (offsets not committed): %s", what, delay, error,
                      extra={"stream": STREAM})
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 30.0)
        except Exception as error:  # noqa: BLE001 - a bug must not stop the stream on this message forever
            reject(STREAM, kafka.as_rejection(error), pending.pop(0))
    return True


def _usable(message) -> bool:
    if message.error() is None:
        return True
    if message.error().code() != KafkaError._PARTITION_EOF:
        log.error("Kafka error: %s", message.error(), extra={"stream": STREAM})
    return False


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    stream = settings.end_readouts.require()
    config = kafka.consumer_config(stream, client_id="dtm-scheduler")
    scheduler = ReadoutScheduler(settings, redis.Redis.from_url(settings.redis_url))
    decode = make_decoder(settings.schema_registry_url)
    consumer = Consumer(config)
    # One consumer for both event kinds; handle_message routes each message by its topic.
    consumer.subscribe(list(dict.fromkeys(stream.topics + settings.transfer_summary_topics)))
    log.info("scheduler started", extra={"stream": STREAM, "topics": stream.topics, "kafka": kafka.describe(config),
                                         "transfer_summary_topics": settings.transfer_summary_topics,
                                         "avro": settings.schema_registry_url is not None})
    next_lag_report, lag_reported = 0.0, set()
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=BATCH_SIZE, timeout=POLL_TIMEOUT)
            if messages:
                if not store_until_done(messages, decode, scheduler, stop):
                    break
                kafka.commit(consumer)
                metrics.last_message_time.labels(stream=STREAM).set(time.time())
            if time.monotonic() >= next_lag_report:
                lag_reported = kafka.report_lag(consumer, metrics.consumer_lag, lag_reported)
                next_lag_report = time.monotonic() + LAG_REPORT_INTERVAL
    finally:
        consumer.close()
        log.info("scheduler stopped", extra={"stream": STREAM})
