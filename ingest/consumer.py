"""`dtm ingest`: S3 file notifications from Kafka into Redis.

The loop, in the style of confluent-kafka's examples: consume a batch, parse it (pure), write
every arrival to Redis in one pipeline, and only then commit the offsets. After a crash the
uncommitted batch is delivered again, and writing it again changes nothing (ZADD GT).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis
from confluent_kafka import Consumer, KafkaError

from ..common import kafka, metrics
from ..common.models import FileArrival, parse_file_notification
from ..common.settings import Settings
from ..common.store import ExposureStore

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
POLL_TIMEOUT = 0.2  # seconds a consume() waits for a batch to fill: the latency of a quiet stream
LAG_REPORT_INTERVAL = 15.0
STREAM = "file_notifications"


@dataclass
class ParsedBatch:
    arrivals: list[FileArrival] = field(default_factory=list)
    received: Counter = field(default_factory=Counter)  # (day, kind) -> count
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def parse_batch(messages, settings: Settings) -> ParsedBatch:
    """Parse a batch of Kafka messages; bad ones are logged (with their offset) and counted."""
    batch = ParsedBatch()
    for message in messages:
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.error("Kafka error: %s", message.error(), extra={"stream": STREAM})
            continue
        try:
            arrival = parse_file_notification(
                message.value(),
                bucket=settings.bucket,
                expected_sensors_filename=settings.expected_sensors_filename,
                opaque_data=settings.file_notification_opaque_data.reveal()
                if settings.file_notification_opaque_data else None,
            )
        except Exception as error:  # noqa: BLE001 - counted and logged, never fatal
            rejection = kafka.as_rejection(error)
            batch.rejected[rejection.reason] += 1
            kafka.log_rejection(STREAM, rejection, message)
            continue
        batch.arrivals.append(arrival)
        batch.received[(arrival.day_obs, arrival.object_key.extension)] += 1
    return batch


def count(batch: ParsedBatch) -> None:
    for (day, kind), n in batch.received.items():
        metrics.ensure_day_series(day)
        metrics.file_messages_received.labels(day=day, kind=kind).inc(n)
    for reason, n in batch.rejected.items():
        metrics.rejected_messages.labels(stream=STREAM, reason=reason).inc(n)


def write_until_stored(store: ExposureStore, batch: ParsedBatch, stop: threading.Event) -> bool:
    """Write the batch to Redis, retrying while Redis is away. False if stopped before it was stored."""
    delay = 0.5
    while True:
        try:
            store.add_arrivals(batch.arrivals, seen_at=time.time())
            return True
        except redis.RedisError as error:
            log.error("Redis write failed, retrying in %.1f s (offsets not committed): %s", delay, error,
                      extra={"stream": STREAM})
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 30.0)


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    stream = settings.file_notifications.require()
    config = kafka.consumer_config(stream, client_id="dtm-ingest")
    store = ExposureStore(redis.Redis.from_url(settings.redis_url), settings.redis_key_ttl)
    consumer = Consumer(config)
    consumer.subscribe(list(stream.topics))
    log.info("ingest started", extra={"stream": STREAM, "topics": stream.topics, "kafka": kafka.describe(config)})
    next_lag_report, lag_reported = 0.0, set()
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=BATCH_SIZE, timeout=POLL_TIMEOUT)
            if messages:
                batch = parse_batch(messages, settings)
                if batch.arrivals and not write_until_stored(store, batch, stop):
                    break  # stopping with the batch unstored: leave its offsets uncommitted
                count(batch)
                kafka.commit(consumer)
                metrics.last_message_time.labels(stream=STREAM).set(time.time())
            if time.monotonic() >= next_lag_report:
                lag_reported = kafka.report_lag(consumer, metrics.consumer_lag, lag_reported)
                next_lag_report = time.monotonic() + LAG_REPORT_INTERVAL
    finally:
        consumer.close()
        log.info("ingest stopped", extra={"stream": STREAM})
