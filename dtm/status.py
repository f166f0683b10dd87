"""`dtm status`: one screen for the on-call, and an exit code for a liveness check.

`gather` reads Redis, RQ and Kafka (short timeouts, never committing anything); `assess` (pure)
turns the snapshot into the list of problems; the exit code is 1 when there is one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import click
import orjson

from dtm.common import keys
from dtm.common import time as ttime
from dtm.common.settings import KafkaStream, Settings, redact_url
from dtm.operator import REDIS_TIMEOUT, load_settings

STREAMS = ("file_notifications", "end_readouts")
ORPHANS_SHOWN_SINCE = 86400.0  # orphans of the last day


@dataclass(frozen=True)
class Thresholds:
    overdue_after: float = 60.0  # a scheduled job this late has not been moved: no scheduler runs
    failed_window: float = 3600.0  # a failure in the last hour needs a look
    max_lag: int = 5000  # messages behind, per stream
    max_silence: float | None = None  # seconds without a message (None: no check; days are quiet)


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


# -- reading -------------------------------------------------------------------------------------
def queue_snapshot(connection, queue_name: str, now: float, thresholds: Thresholds) -> dict:
    from rq import Queue, Worker
    from rq.job import Job

    queue = Queue(queue_name, connection=connection)
    scheduled = queue.scheduled_job_registry
    next_due = connection.zrange(scheduled.key, 0, 0, withscores=True)
    overdue = connection.zrangebyscore(scheduled.key, 0, now - thresholds.overdue_after, withscores=True)
    failed_ids = queue.failed_job_registry.get_job_ids()
    failed = []
    for job in Job.fetch_many(failed_ids[-50:], connection=connection):
        if job is not None:
            failed.append(_failure(job, now))
    failed.sort(key=lambda f: f["age_seconds"] if f["age_seconds"] is not None else float("inf"))
    workers = []
    for worker in Worker.all(queue=queue):
        heartbeat = ttime.to_unix(worker.last_heartbeat) if worker.last_heartbeat else None
        workers.append({"name": worker.name, "state": str(worker.get_state()),
                        "heartbeat_age_seconds": _age(now, heartbeat), "current_job": worker.get_current_job_id()})
    return {
        "name": queue_name,
        "queued": queue.count,
        "started": queue.started_job_registry.count,
        "scheduled": scheduled.count,
        "next_due_utc": ttime.isoformat(next_due[0][1]) if next_due else None,
        "next_due_in_seconds": round(next_due[0][1] - now, 3) if next_due else None,
        "overdue": len(overdue),
        "most_overdue_seconds": round(now - overdue[0][1], 3) if overdue else None,
        "overdue_jobs": [member.decode() for member, _ in overdue[:10]],
        "failed": len(failed_ids),
        "failed_recently": sum(1 for f in failed if f["age_seconds"] is not None
                               and f["age_seconds"] <= thresholds.failed_window),
        "failed_jobs": failed[:5],
        "workers": workers,
    }


def _failure(job, now: float) -> dict:
    """A failed job: when, and the last line of its exception (a job RQ cannot read is shown as such)."""
    try:
        ended = ttime.to_unix(job.ended_at) if job.ended_at else None
        result = job.latest_result()
        error = (result.exc_string or "") if result is not None else ""
        function = job.func_name
    except Exception as problem:  # a job hash written by another version, or half expired
        ended, error, function = None, f"unreadable job: {problem}", None
    return {"id": job.id, "function": function, "ended_at": ended and ttime.isoformat(ended),
            "age_seconds": _age(now, ended),
            "error": next((line for line in reversed(error.strip().splitlines()) if line.strip()), "")}


def activity_snapshot(connection, now: float) -> dict:
    """Age of the last message of each stream and of the last orphan sweep; recent orphans."""
    from dtm.common.store import ExposureStore
    from dtm.worker.orphans import recent_orphans

    names = (*STREAMS, "orphan_sweep")
    values = connection.mget([keys.last_seen(name) for name in names])
    last = {name: None if value is None else float(value) for name, value in zip(names, values)}
    orphans = recent_orphans(ExposureStore(connection, 0), now - ORPHANS_SHOWN_SINCE)
    return {
        "last_seen": {name: {"utc": None if at is None else ttime.isoformat(at), "age_seconds": _age(now, at)}
                      for name, at in last.items()},
        "orphans": [{"image_name": o["image_name"], "day_obs": o["day_obs"], "files": o["files"],
                     "first_file_utc": o["first_file_utc"]} for o in orphans],
    }


def kafka_lag(stream: KafkaStream, topics: tuple[str, ...], timeout: float) -> dict:
    """Committed offsets of the stream's group against the high watermarks. Never commits, never joins."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from dtm.common import kafka

    if not (stream.bootstrap_servers and topics and stream.group_id):
        return {"configured": False}
    config = kafka.consumer_config(stream, client_id="dtm-status")
    timeout_ms = int(timeout * 1000)
    config.update({"socket.timeout.ms": max(timeout_ms, 10),
                   "socket.connection.setup.timeout.ms": max(timeout_ms, 1000),
                   "enable.auto.commit": False, "log_level": 0})
    result = {"configured": True, "group_id": stream.group_id, "reachable": False, "partitions": [], "total_lag": None}
    consumer = Consumer(config)
    try:
        partitions = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if metadata is None or metadata.error is not None:
                result["error"] = f"topic {topic}: {metadata.error if metadata else 'not found'}"
                return result
            partitions += [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = consumer.committed(partitions, timeout=timeout)
        for partition in committed:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout, cached=False)
            position = partition.offset if partition.offset >= 0 else low  # nothing committed: all unread
            result["partitions"].append({"topic": partition.topic, "partition": partition.partition,
                                         "committed": partition.offset if partition.offset >= 0 else None,
                                         "high": high, "lag": max(high - position, 0)})
        result["reachable"] = True
        result["total_lag"] = sum(p["lag"] for p in result["partitions"])
    except KafkaException as error:
        result["error"] = error.args[0].str() if error.args else str(error)
    finally:
        consumer.close()
    return result


def gather(settings: Settings, connection, *, now: float | None = None, thresholds: Thresholds = Thresholds(),
           kafka_timeout: float = 3.0, check_kafka: bool = True) -> dict:
    import redis

    now = time.time() if now is None else now
    snapshot = {"checked_at": ttime.isoformat(now), "redis": {"url": redact_url(settings.redis_url)}}
    try:
        connection.ping()
        snapshot["redis"]["reachable"] = True
        snapshot["queue"] = queue_snapshot(connection, settings.queue_name, now, thresholds)
        snapshot.update(activity_snapshot(connection, now))
    except redis.RedisError as error:
        snapshot["redis"].update(reachable=False, error=str(error))
    if check_kafka:
        summary_topics = settings.transfer_summary_topics
        snapshot["kafka"] = {
            "file_notifications": kafka_lag(settings.file_notifications, settings.file_notifications.topics,
                                            kafka_timeout),
            "end_readouts": kafka_lag(settings.end_readouts,
                                      tuple(dict.fromkeys(settings.end_readouts.topics + summary_topics)),
                                      kafka_timeout),
        }
    return snapshot


# -- judging -------------------------------------------------------------------------------------
def assess(snapshot: dict, thresholds: Thresholds = Thresholds()) -> list[str]:
    """What needs attention, one line each (pure). Empty: healthy."""
    problems = []
    if not snapshot["redis"].get("reachable"):
        return [f"Redis unreachable: {snapshot['redis'].get('error', '')}".rstrip(": ")] + _kafka_problems(
            snapshot, thresholds)
    queue = snapshot["queue"]
    if not queue["workers"]:
        problems.append("no live worker: nothing decides exposures (start `dtm worker`)")
    if queue["overdue"]:
        problems.append(f"{queue['overdue']} scheduled job(s) overdue by up to {queue['most_overdue_seconds']:.0f} s: "
                        "no worker moves due jobs (is a worker running with its scheduler?)")
    if queue["failed_recently"]:
        latest = queue["failed_jobs"][0]
        problems.append(f"{queue['failed_recently']} job(s) failed in the last {thresholds.failed_window:.0f} s; "
                        f"latest {latest['id']}: {latest['error']}")
    if thresholds.max_silence is not None:
        for stream in STREAMS:
            age = snapshot["last_seen"][stream]["age_seconds"]
            if age is None or age > thresholds.max_silence:
                problems.append(f"no {stream.replace('_', ' ')} message for "
                                f"{'ever' if age is None else f'{age:.0f} s'} (limit {thresholds.max_silence:.0f} s)")
    return problems + _kafka_problems(snapshot, thresholds)


def _kafka_problems(snapshot: dict, thresholds: Thresholds) -> list[str]:
    problems = []
    for stream, lag in snapshot.get("kafka", {}).items():
        if not lag.get("configured"):
            continue
        if not lag["reachable"]:
            problems.append(f"Kafka ({stream}) unreachable: {lag.get('error', 'no answer')}")
        elif lag["total_lag"] > thresholds.max_lag:
            problems.append(f"consumer group {lag['group_id']} is {lag['total_lag']} message(s) behind "
                            f"(limit {thresholds.max_lag})")
    return problems


def _seconds(value: float | None) -> str:
    if value is None:
        return "never"
    if abs(value) < 120:
        return f"{value:.0f} s"
    if abs(value) < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def format_text(snapshot: dict, problems: list[str]) -> str:
    lines = [f"dtm status at {snapshot['checked_at']}: " + ("OK" if not problems else "NEEDS ATTENTION")]
    lines += [f"  ! {problem}" for problem in problems]
    redis_state = "reachable" if snapshot["redis"].get("reachable") else "UNREACHABLE"
    lines.append(f"Redis      {snapshot['redis']['url']}  {redis_state}")
    queue = snapshot.get("queue")
    if queue:
        next_due = "-" if queue["next_due_utc"] is None else (
            f"{queue['next_due_utc']} (in {_seconds(queue['next_due_in_seconds'])})")
        lines += [
            f"Queue      {queue['name']}: {queue['queued']} queued, {queue['started']} running, "
            f"{queue['scheduled']} scheduled (next {next_due}), {queue['overdue']} overdue, {queue['failed']} failed",
            f"Workers    {len(queue['workers'])}" + "".join(
                f"\n  {w['name']}  {w['state']}  heartbeat {_seconds(w['heartbeat_age_seconds'])} ago"
                + (f"  on {w['current_job']}" if w["current_job"] else "") for w in queue["workers"]),
        ]
        for failure in queue["failed_jobs"]:
            lines.append(f"  failed {failure['id']} ({_seconds(failure['age_seconds'])} ago): {failure['error']}")
        for name, seen in snapshot["last_seen"].items():
            label = {"orphan_sweep": "last orphan sweep"}.get(name, f"last {name.replace('_', ' ')[:-1]}")
            ago = "" if seen["age_seconds"] is None else " ago"
            lines.append(f"{label:<22} {_seconds(seen['age_seconds'])}{ago}")
        if snapshot["orphans"]:
            lines.append(f"Orphaned   {len(snapshot['orphans'])} image(s) with files but no end readout (last 24 h):")
            lines += [f"  {o['image_name']}  {o['files']} file(s) since {o['first_file_utc']}  (day {o['day_obs']})"
                      for o in snapshot["orphans"][-10:]]
    for stream, lag in snapshot.get("kafka", {}).items():
        if not lag.get("configured"):
            lines.append(f"Kafka      {stream}: not configured")
        elif not lag["reachable"]:
            lines.append(f"Kafka      {stream}: UNREACHABLE ({lag.get('error', '')})")
        else:
            per_partition = ", ".join(f"{p['topic']}[{p['partition']}] {p['lag']}" for p in lag["partitions"])
            lines.append(f"Kafka      {stream}: group {lag['group_id']} lag {lag['total_lag']} ({per_partition})")
    return "\n".join(lines)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="The snapshot and its problems as one JSON object.")
@click.option("--overdue-after", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds past due after which a scheduled job counts as overdue.")
@click.option("--failed-window", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Failed jobs younger than this many seconds need attention.")
@click.option("--max-lag", type=click.IntRange(min=0), default=5000, show_default=True,
              help="Messages a consumer group may be behind, per stream.")
@click.option("--max-silence", type=click.FloatRange(min=0),
              help="Seconds without a notification or end readout that need attention (off by default: "
                   "days are quiet).")
@click.option("--kafka-timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds to wait for each Kafka request.")
@click.option("--no-kafka", is_flag=True, help="Skip the consumer lag.")
def status(as_json: bool, overdue_after: float, failed_window: float, max_lag: int, max_silence: float | None,
           kafka_timeout: float, no_kafka: bool) -> None:
    """One screen for the on-call: is the pipeline alive and keeping up?

    Redis, the decision queue (queued, scheduled and the next due, overdue), failed jobs and their
    error, live workers, consumer lag of both Kafka groups (read, never committed), age of the last
    notification, end readout and orphan sweep, images orphaned in the last 24 h.

    Exit code 0 when healthy, 1 when something needs attention: Redis down, no worker, overdue
    scheduled jobs, jobs failed within --failed-window, Kafka unreachable or lag over --max-lag
    (and silence over --max-silence when given). Suitable for a liveness probe.

    \b
    Examples:
      dtm status
      dtm status --json | jq .queue.failed_jobs
      dtm status --no-kafka --max-silence 600 || page-the-on-call
    """
    import redis

    settings = load_settings()
    thresholds = Thresholds(overdue_after, failed_window, max_lag, max_silence)
    connection = redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                      socket_connect_timeout=min(REDIS_TIMEOUT, 3))
    snapshot = gather(settings, connection, thresholds=thresholds, kafka_timeout=kafka_timeout,
                      check_kafka=not no_kafka)
    problems = assess(snapshot, thresholds)
    if as_json:
        click.echo(orjson.dumps({**snapshot, "problems": problems, "healthy": not problems}).decode())
    else:
        click.echo(format_text(snapshot, problems))
    raise SystemExit(1 if problems else 0)
