"""`dtm replay`: decide exposures again after the fact, or feed captured messages through the pipeline.

Selected exposures (`--image`, `--day`, `--since/--until`) are decided again from their stored end
readout and what S3 lists now (merged with the notifications still in Redis: the worker's own
`evaluate`), with the live decision's rules: arrivals after T0 + S3_WAIT_TIME are missing, however
long ago that was. By default nothing changes; `--apply` runs the worker's `decide_exposure`,
which stores the decision and records metrics only for an exposure never observed before.

`--from FILE.jsonl` feeds captured messages (`dtm capture`) through ingest's `parse_batch` +
`ExposureStore.add_arrivals` and the scheduler's `handle_message` (`ReadoutScheduler.handle`),
then decides every exposure whose T0 + S3_WAIT_TIME has passed. A dry run does that against a
private scratch Redis; `--apply` against the pipeline's Redis (the scheduled decision jobs then
find the exposures observed: nothing is counted twice).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import orjson

from dtm.common import logs
from dtm.operator import DAY_OBS, UTC_TIME, connect, load_settings, metrics_to_exporter, observing_days, redis_failure

log = logging.getLogger(__name__)

# What a re-decision is compared on: the contract's fields of `dtm inspect --json`.
COMPARED = ("status", "expected_files", "arrived_files", "late_files", "missing_files", "transfer_time_seconds",
            "last_file", "day_obs", "end_readout_utc")
NO_READOUT = ("no end readout in Redis (older than REDIS_KEY_TTL, or never received): cannot re-decide; "
              "feed its end readout with `dtm replay --from FILE`")
NOTIFICATION_BATCH = 2000


def changed_fields(new: dict, stored: dict | None) -> list[str] | None:
    """The compared fields that differ; None when nothing was stored."""
    if stored is None:
        return None
    return [name for name in COMPARED if new.get(name) != stored.get(name)]


def outcome(image_name: str, result: str, *, record: dict | None = None, stored: dict | None = None,
            counted: bool = False, message: str | None = None) -> dict:
    changed = None if record is None else changed_fields(record, stored)
    return {"image_name": image_name, "result": result, "status": record and record["status"],
            "previous_status": stored and stored["status"], "changed": changed, "counted": counted,
            "message": message, "decision": record}


def redecide(context, image_name: str, *, apply: bool, now: float | None = None, stored_in=None) -> dict:
    """Decide one exposure again; with `apply` exactly as the live job does. Never raises for one image.

    The new decision is compared with the one in `stored_in` (default: the context's store).
    """
    import redis
    from botocore.exceptions import BotoCoreError, ClientError

    from dtm.worker import job

    store = context.store
    try:
        stored = (stored_in or store).decision(image_name)
        readout = store.readout(image_name)
        if readout is None:
            return outcome(image_name, "no_readout", stored=stored, message=NO_READOUT)
        now = time.time() if now is None else now
        if readout.end_readout_utc + context.settings.s3_wait_time > now:
            return outcome(image_name, "not_due", stored=stored,
                           message="T0 + S3_WAIT_TIME has not passed: its scheduled job decides it")
        if not apply:
            return outcome(image_name, "decided", record=job.evaluate(context, readout).to_record(), stored=stored)
        observed_before = store.was_observed(image_name)
        job.install(context)
        record = job.decide_exposure(image_name)
        return outcome(image_name, "decided", record=record, stored=stored, counted=not observed_before)
    except (BotoCoreError, ClientError) as error:
        return outcome(image_name, "error", message=f"S3: {error}")
    except redis.RedisError:
        raise  # nothing can be replayed without Redis: the command stops with one line
    except Exception as error:  # one bad exposure never ends a replay of a night
        log.exception("replay of one exposure failed", extra={"image_name": image_name})
        return outcome(image_name, "error", message=f"{type(error).__name__}: {error}")


def select_images(store, images, day: str | None, since: float | None, until: float | None) -> list[str]:
    if images:
        return list(dict.fromkeys(images))
    if day:
        return store.images_of_day(day)
    return store.images_between(observing_days(since, until), since, until)


# -- --from FILE ---------------------------------------------------------------------------------
def feed(lines, settings, connection, *, count_metrics: bool, on_line=None) -> dict:
    """Messages of a capture file through ingest and the scheduler. Returns counts and readout image names."""
    import redis

    from dtm.capture import BadLine, CapturedMessage
    from dtm.ingest import consumer as ingest
    from dtm.scheduler import consumer as scheduler
    from dtm.scheduler.decoding import make_decoder

    readout_scheduler = scheduler.ReadoutScheduler(settings, connection)
    decode = make_decoder(settings.schema_registry_url)
    summary = {"lines": 0, "notifications": 0, "end_readouts": 0, "skipped": 0, "errors": 0, "images": []}
    pending = []

    def flush() -> None:
        batch = ingest.parse_batch(pending, settings)
        if batch.arrivals:
            readout_scheduler.store.add_arrivals(batch.arrivals, seen_at=time.time())
        if count_metrics:
            ingest.count(batch)
        pending.clear()

    for number, line in enumerate(lines, 1):
        if on_line is not None:
            on_line()
        if not line.strip():
            continue
        summary["lines"] += 1
        try:
            message = CapturedMessage.from_line(line)
        except BadLine as error:
            summary["skipped"] += 1
            log.warning("capture line %d skipped: %s", number, error)
            continue
        kind = _stream_of(message, settings)
        if kind == "file_notifications":
            summary["notifications"] += 1
            pending.append(message)
            if len(pending) >= NOTIFICATION_BATCH:
                flush()
        elif kind == "end_readouts":
            summary["end_readouts"] += 1
            flush()  # the notifications before it first, as they came
            try:
                scheduler.handle_message(message, decode, readout_scheduler)
            except redis.RedisError:
                raise
            except Exception as error:  # e.g. the Schema Registry away: this message only
                summary["errors"] += 1
                log.error("capture line %d not handled: %s", number, error)
                continue
            try:
                readout = scheduler.parse_readout(decode, message.value(), message.topic())
            except Exception:  # rejected (or a transfer summary): handle_message counted and logged it
                continue
            if settings.monitors(readout.image_source, readout.image_controller):  # else not stored: skipped
                summary["images"].append(readout.image_name)
        else:
            summary["skipped"] += 1
            log.warning("capture line %d skipped: topic %r is neither stream's", number, message.topic())
    flush()
    summary["images"] = list(dict.fromkeys(summary["images"]))
    return summary


def _stream_of(message, settings) -> str | None:
    topic = message.topic()
    if topic in settings.file_notifications.topics:
        return "file_notifications"
    if topic in settings.end_readouts.topics or topic in settings.transfer_summary_topics:
        return "end_readouts"
    # Topics not configured here (an offline replay): tell the two kinds apart by their content.
    value = message.value() or b""
    if value[:1] == b"\0":
        return "end_readouts"
    if b'"Records"' in value[:200]:
        return "file_notifications"
    if b'"imageName"' in value or b'"obsId"' in value:
        return "end_readouts"
    return None


def replay_file(path: str, settings, connection, *, apply: bool, show_progress: bool) -> tuple[dict, list[dict]]:
    """Feed the file, then decide each fed exposure. With `apply` the pipeline's Redis, else a scratch one."""
    import redis

    from dtm.common.store import ExposureStore
    from dtm.embedded import RedisServer
    from dtm.worker.job import WorkerContext

    scratch = None if apply else RedisServer()
    try:
        scratch_connection = None if scratch is None else redis.Redis.from_url(scratch.url)
        with open(path, "rb") as lines:
            total = sum(1 for _ in lines)
        with open(path, "rb") as lines, click.progressbar(length=total, label="feeding", file=sys.stderr,
                                                          hidden=not show_progress) as bar:
            summary = feed(lines, settings, scratch_connection or connection, count_metrics=apply,
                           on_line=lambda: bar.update(1))
        context = WorkerContext.from_settings(settings, scratch_connection or connection)
        outcomes = decide_all(context, summary.pop("images"), apply=apply, show_progress=show_progress,
                              stored_in=ExposureStore(connection, settings.redis_key_ttl) if scratch else None)
        return summary, outcomes
    finally:
        if scratch is not None:
            scratch.stop()


def decide_all(context, images: list[str], *, apply: bool, show_progress: bool, stored_in=None) -> list[dict]:
    hidden = not show_progress or len(images) < 20
    with click.progressbar(images, label="deciding", file=sys.stderr, hidden=hidden) as bar:
        return [redecide(context, image_name, apply=apply, stored_in=stored_in) for image_name in bar]


# -- output --------------------------------------------------------------------------------------
def summarize(outcomes: list[dict], apply: bool) -> dict:
    decided = [o for o in outcomes if o["result"] == "decided"]
    return {
        "mode": "apply" if apply else "dry_run",
        "exposures": len(outcomes),
        "decided": len(decided),
        "unchanged": sum(1 for o in decided if o["changed"] == []),
        "changed": sum(1 for o in decided if o["changed"]),
        "new": sum(1 for o in decided if o["changed"] is None),
        "counted": sum(1 for o in decided if o["counted"]),
        "no_readout": sum(1 for o in outcomes if o["result"] == "no_readout"),
        "not_due": sum(1 for o in outcomes if o["result"] == "not_due"),
        "errors": sum(1 for o in outcomes if o["result"] == "error"),
    }


def format_outcome(o: dict) -> str:
    if o["result"] != "decided":
        return f"{o['image_name']}  {o['result'].upper().replace('_', ' ')}: {o['message']}"
    record = o["decision"]
    transfer = record["transfer_time_seconds"]
    shown = "-" if transfer is None else f"{transfer:.3f} s"
    line = (f"{o['image_name']}  {record['status']:<10}  transfer {shown:>10}"
            f"  late {len(record['late_files'])}  missing {len(record['missing_files'])}")
    if o["changed"] is None:
        line += "  (not decided before)"
    elif o["changed"]:
        line += f"  CHANGED ({', '.join(o['changed'])}; was {o['previous_status']})"
    else:
        line += "  (as stored)"
    return line + ("  [counted in metrics]" if o["counted"] else "")


def format_summary(summary: dict) -> str:
    text = (f"{summary['exposures']} exposure(s): {summary['decided']} decided ({summary['unchanged']} as stored, "
            f"{summary['changed']} changed, {summary['new']} not decided before)")
    for name, label in (("no_readout", "without end readout"), ("not_due", "not due yet"), ("errors", "failed")):
        if summary[name]:
            text += f", {summary[name]} {label}"
    if summary["mode"] == "dry_run":
        return text + ".\nDry run: nothing stored, no metric changed (add --apply to store)."
    return text + (f".\nApplied: decisions stored; {summary['counted']} exposure(s) counted in metrics "
                   "for the first time.")


@click.command("replay")
@click.option("--image", "images", multiple=True, metavar="IMAGE_NAME", help="An exposure (repeatable).")
@click.option("--day", type=DAY_OBS, help="Every exposure whose end of readout is in this observing day.")
@click.option("--since", type=UTC_TIME, help="Exposures whose end of readout is at or after this time (ISO 8601, UTC).")
@click.option("--until", type=UTC_TIME, help="... and at or before this time (default: now).")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False),
              help="A capture file (JSONL, `dtm capture`) to feed through ingest and the scheduler.")
@click.option("--apply", is_flag=True, help="Store the decisions (metrics only for exposures never observed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: each exposure's outcome and a summary.")
def replay(images: tuple[str, ...], day: str | None, since: float | None, until: float | None, source: str | None,
           apply: bool, as_json: bool) -> None:
    """Decide exposures again, after the fact, with the live rules.

    Re-reads S3 (and the notifications still in Redis) and decides as the worker did at
    T0 + S3_WAIT_TIME: a file that arrived later is missing now as it was then. Prints each new
    decision next to the stored one. Without --apply nothing changes. With --apply the decisions
    are stored, and metrics recorded only for exposures never observed before: replaying twice
    counts nothing twice. Exits 1 when an exposure could not be decided (e.g. its end readout
    expired from Redis: feed it again with --from).

    \b
    Examples:
      dtm replay --image MC_O_20251203_000123               # what would dtm decide now?
      dtm replay --day 2025-12-03 --json | jq .summary
      dtm replay --since 2025-12-04T02:00:00Z --until 2025-12-04T03:00:00Z --apply
      dtm capture night.jsonl --since 2025-12-04T00:00:00Z  # after an outage ...
      dtm replay --from night.jsonl                         # ... see what it would decide,
      dtm replay --from night.jsonl --apply                 # ... then backfill
    """
    import redis

    selections = sum((bool(images), day is not None, since is not None, source is not None))
    if selections != 1:
        raise click.UsageError("choose exactly one of --image, --day, --since (with --until) or --from")
    if until is not None and since is None:
        raise click.UsageError("--until needs --since")
    settings = load_settings()
    logs.configure(settings.log_level if apply else "WARNING", component="replay")
    metrics_to_exporter(settings, apply, "replay")
    connection = connect(settings)
    show_progress = not as_json
    feed_summary = None
    try:
        if source is not None:
            feed_summary, outcomes = replay_file(source, settings, connection, apply=apply,
                                                 show_progress=show_progress)
        else:
            from dtm.worker.job import WorkerContext

            context = WorkerContext.from_settings(settings, connection)
            until = time.time() if until is None and since is not None else until
            names = select_images(context.store, images, day, since, until)
            outcomes = decide_all(context, names, apply=apply, show_progress=show_progress)
    except redis.RedisError as error:
        raise redis_failure(settings, error) from None
    summary = summarize(outcomes, apply)
    if feed_summary is not None:
        summary["fed"] = feed_summary
    if as_json:
        click.echo(orjson.dumps({"summary": summary, "exposures": outcomes}).decode())
    else:
        if feed_summary is not None:
            click.echo(f"fed {Path(source).name}: {feed_summary['notifications']} notification(s), "
                       f"{feed_summary['end_readouts']} end readout(s), {feed_summary['skipped']} line(s) skipped, "
                       f"{feed_summary['errors']} failed")
        for o in outcomes:
            click.echo(format_outcome(o))
        click.echo(format_summary(summary))
    if summary["no_readout"] or summary["errors"] or (feed_summary or {}).get("errors"):
        sys.exit(1)
