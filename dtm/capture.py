"""`dtm capture`: copy messages of the live topics to a JSONL file that `dtm replay --from` reads.

One JSON object a line: `topic`, `partition`, `offset`, `timestamp` (Kafka's, milliseconds) and
the message itself as `value` (UTF-8 text: the JSON messages) or `value_base64` (anything else:
Avro in the Confluent wire format). The consumer assigns partitions itself (no group join) and
never commits: capturing changes nothing for the pipeline's consumer groups.
"""
from __future__ import annotations

import base64
import contextlib
import sys
import time
from dataclasses import dataclass

import click
import orjson

from dtm.common import kafka
from dtm.common import time as ttime
from dtm.common.settings import KafkaStream, Settings
from dtm.operator import UTC_TIME, load_settings

CAPTURE_GROUP_ID = "dtm-capture"  # never committed: only librdkafka needs one


class BadLine(ValueError):
    pass


@dataclass(frozen=True)
class CapturedMessage:
    """A Kafka message read back from a capture file, with the methods dtm's consumers call."""

    topic_name: str
    value_bytes: bytes | None
    partition_number: int = -1
    offset_number: int = -1
    timestamp_ms: int | None = None

    def error(self):
        return None

    def value(self) -> bytes | None:
        return self.value_bytes

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_number

    def offset(self) -> int:
        return self.offset_number

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms if self.timestamp_ms is not None else -1)  # 1: TIMESTAMP_CREATE_TIME

    @classmethod
    def from_line(cls, line: str | bytes) -> "CapturedMessage":
        try:
            entry = orjson.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("topic"), str):
                raise BadLine("not an object with a topic")
            if "value_base64" in entry:
                value = base64.b64decode(entry["value_base64"], validate=True)
            elif isinstance(entry.get("value"), str):
                value = entry["value"].encode()
            elif entry.get("value") is None:
                value = None
            else:  # a message written by hand as a JSON object rather than a string
                value = orjson.dumps(entry["value"])
            return cls(entry["topic"], value, int(entry.get("partition", -1)), int(entry.get("offset", -1)),
                       entry.get("timestamp"))
        except (orjson.JSONDecodeError, ValueError, TypeError) as error:
            raise BadLine(str(error)) from None

    def to_line(self) -> bytes:
        entry = {"topic": self.topic_name, "partition": self.partition_number, "offset": self.offset_number,
                 "timestamp": self.timestamp_ms}
        text = _as_text(self.value_bytes)
        if text is not None or self.value_bytes is None:
            entry["value"] = text
        else:
            entry["value_base64"] = base64.b64encode(self.value_bytes).decode()
        return orjson.dumps(entry) + b"\n"


def _as_text(value: bytes | None) -> str | None:
    if not value or value[0] == 0:  # the Confluent wire format starts with a zero byte
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def streams_to_capture(settings: Settings, which: str) -> list[tuple[str, KafkaStream, tuple[str, ...]]]:
    found = []
    if which in ("all", "file-notifications") and settings.file_notifications.bootstrap_servers:
        found.append(("file_notifications", settings.file_notifications, settings.file_notifications.topics))
    if which in ("all", "end-readouts") and settings.end_readouts.bootstrap_servers:
        topics = tuple(dict.fromkeys(settings.end_readouts.topics + settings.transfer_summary_topics))
        found.append(("end_readouts", settings.end_readouts, topics))
    return [(name, stream, topics) for name, stream, topics in found if topics]


def plan(consumer, topics, since_ms: int | None, until_ms: int | None, timeout: float) -> dict:
    """(topic, partition) -> [first offset, end offset) to copy. Raises KafkaException when unreachable."""
    from confluent_kafka import TopicPartition

    ranges = {}
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise click.ClickException(f"topic {topic}: {metadata.error if metadata else 'not found'}")
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
            start, end = low, high
            if since_ms is not None:
                start = _offset_at(consumer, topic, partition, since_ms, high, timeout)
            if until_ms is not None:
                end = _offset_at(consumer, topic, partition, until_ms + 1, high, timeout)
            if start < end:
                ranges[(topic, partition)] = [max(start, low), end]
    return ranges


def _offset_at(consumer, topic: str, partition: int, timestamp_ms: int, high: int, timeout: float) -> int:
    """The first offset whose timestamp is >= timestamp_ms; the end of the partition if none."""
    from confluent_kafka import TopicPartition

    found = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=timeout)[0]
    return high if found.offset < 0 else found.offset


def copy_stream(stream: KafkaStream, topics, write, *, since_ms=None, until_ms=None, limit: int | None = None,
                timeout: float = 10.0, on_start=None, on_message=None) -> int:
    """Copy the planned range of each partition through `write(CapturedMessage)`; returns the count.

    `on_start(total)` is called once the ranges are known, `on_message()` after each message.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    config = kafka.consumer_config(stream, client_id="dtm-capture")
    config.update({"group.id": CAPTURE_GROUP_ID, "enable.auto.commit": False, "enable.auto.offset.store": False,
                   "enable.partition.eof": True})
    consumer = Consumer(config)
    copied = 0
    try:
        ranges = plan(consumer, topics, since_ms, until_ms, timeout)
        total = sum(end - start for start, end in ranges.values())
        if on_start is not None:
            on_start(total if limit is None else min(total, limit))
        if not ranges or limit == 0:
            return 0
        consumer.assign([TopicPartition(topic, partition, start) for (topic, partition), (start, _) in ranges.items()])
        idle_since = time.monotonic()
        while ranges and (limit is None or copied < limit):
            messages = consumer.consume(num_messages=500, timeout=0.5)
            if not messages:
                if time.monotonic() - idle_since > timeout:
                    raise click.ClickException(f"no message from Kafka for {timeout:.0f} s with {len(ranges)} "
                                               "partition(s) not read to their end")
                continue
            idle_since = time.monotonic()
            for message in messages:
                where = (message.topic(), message.partition())
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        ranges.pop(where, None)
                    continue
                if where not in ranges or message.offset() >= ranges[where][1]:
                    ranges.pop(where, None)
                    continue
                write(CapturedMessage(message.topic(), message.value(), message.partition(), message.offset(),
                                      message.timestamp()[1]))
                copied += 1
                if on_message is not None:
                    on_message()
                if message.offset() + 1 >= ranges[where][1]:
                    ranges.pop(where)
                if limit is not None and copied >= limit:
                    break
    finally:
        consumer.close()
    return copied


@click.command("capture")
@click.argument("output", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
@click.option("--since", type=UTC_TIME, help="First message time (ISO 8601, UTC by default). Default: the oldest kept.")
@click.option("--until", type=UTC_TIME, help="Last message time (ISO 8601, UTC by default). Default: now.")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after this many messages in all.")
@click.option("--stream", "which", type=click.Choice(["all", "file-notifications", "end-readouts"]), default="all",
              show_default=True, help="Which input to copy (end-readouts includes the camera transfer summaries).")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds to wait for Kafka before giving up.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def capture(output: str, since: float | None, until: float | None, max_messages: int | None, which: str,
            timeout: float, as_json: bool) -> None:
    """Copy messages of the live topics to a JSONL file, for `dtm replay --from`.

    Reads the file-notification and end-readout topics (FILE_NOTIFICATION_* and END_READOUT_*
    settings) from --since to --until, as they are now, and stops. Nothing is committed: the
    pipeline's consumer groups do not notice.

    \b
    Examples:
      dtm capture night.jsonl --since 2025-12-04T00:00:00Z --until 2025-12-04T10:00:00Z
      dtm capture last.jsonl --stream end-readouts --max-messages 100
      dtm replay --from night.jsonl            # what dtm would decide from them
    """
    from confluent_kafka import KafkaException

    settings = load_settings()
    streams = streams_to_capture(settings, which)
    if not streams:
        raise click.ClickException("configuration: no Kafka stream to capture (set FILE_NOTIFICATION_* and/or "
                                   "END_READOUT_* bootstrap servers and topic names)")
    until = time.time() if until is None else until
    since_ms = None if since is None else int(since * 1000)
    until_ms = int(until * 1000)
    counts = {}
    with click.open_file(output, "wb") as sink, contextlib.ExitStack() as bars:
        for name, stream, topics in streams:
            limit = None if max_messages is None else max_messages - sum(counts.values())
            progress = _Progress(bars, f"capturing {name}", hidden=as_json or output == "-")
            try:
                counts[name] = copy_stream(stream, topics, lambda message: sink.write(message.to_line()),
                                           since_ms=since_ms, until_ms=until_ms, limit=limit, timeout=timeout,
                                           on_start=progress.start, on_message=progress.advance)
            except KafkaException as error:
                raise click.ClickException(f"Kafka ({name}): {error.args[0].str()}") from None
    summary = {"output": output, "messages": sum(counts.values()), "by_stream": counts,
               "until_utc": ttime.isoformat(until), "since_utc": None if since is None else ttime.isoformat(since)}
    if as_json:
        click.echo(orjson.dumps(summary).decode())
    else:
        parts = ", ".join(f"{n} {name}" for name, n in counts.items())
        click.echo(f"{summary['messages']} message(s) written to {output} ({parts})", err=output == "-")



class _Progress:
    """A click progress bar on stderr, opened once the number of messages is known."""

    def __init__(self, stack: contextlib.ExitStack, label: str, hidden: bool):
        self.stack, self.label, self.hidden, self.bar = stack, label, hidden, None

    def start(self, total: int) -> None:
        if not self.hidden and total:
            self.bar = self.stack.enter_context(click.progressbar(length=total, label=self.label, file=sys.stderr))

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
