"""`dtm report --day`: the night at a glance, from the stored decisions.

`night_report` is a pure function over decision records. Transfer-time percentiles are exact
values of the night's exposures, by the nearest-rank method: the p-th percentile of n sorted
values is the value of rank ceil(p/100 * n) (1-based), always one of the observed values
(p50 of 1..10 is 5, p90 is 9, p98 is 10). As in the histogram metric, only transfer times > 0
count; times <= 0 are clock anomalies, counted apart.
"""
from __future__ import annotations

import csv
import math
import sys
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import click
import orjson

from dtm.common.metrics import TRANSFER_BUCKETS
from dtm.common.objectkey import BadObjectKey, parse_object_key, raft_of, sensor_kind
from dtm.operator import DAY_OBS, connect, load_settings, redis_failure

PERCENTILES = (50, 90, 98)
SENSOR_KINDS = ("science", "wavefront", "guider")
STATUSES = ("complete", "incomplete", "no_files")
CSV_COLUMNS = ("image_name", "status", "end_readout_utc", "transfer_time_seconds", "expected_files", "arrived_files",
               "late_files", "missing_files", "last_file", "arrived_after_window", "still_missing")


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile of ascending values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(values: Iterable[float], buckets: Sequence[float] = TRANSFER_BUCKETS) -> list[dict]:
    """Counts per SLA bucket (le: value <= bound, above the previous bound), then the overflow `+Inf`."""
    counts = Counter()
    for value in values:
        counts[next((bound for bound in buckets if value <= bound), "+Inf")] += 1
    return [{"le": bound, "count": counts[bound]} for bound in (*buckets, "+Inf")]


def _where(key: str) -> tuple[str, str]:
    """(sensor kind, raft) of a file key; ("unknown", "unknown") outside the key grammar."""
    try:
        parsed = parse_object_key(key)
    except BadObjectKey:
        return "unknown", "unknown"
    if parsed.sensor is None:
        return "unknown", "unknown"
    return sensor_kind(parsed.sensor, parsed.guider), raft_of(parsed.sensor)


def night_report(day_obs: str, records: Sequence[dict], *, pending: int = 0, rechecks: dict | None = None,
                 worst: int = 10) -> dict:
    """Everything `dtm report` shows, from the night's decision records (pure)."""
    rechecks = rechecks or {}
    status = Counter(record["status"] for record in records)
    times = [record["transfer_time_seconds"] for record in records if record.get("transfer_time_seconds") is not None]
    observed = sorted(t for t in times if t > 0)
    by_kind = {kind: {"late": 0, "missing": 0} for kind in SENSOR_KINDS}
    by_raft: dict[str, dict] = defaultdict(lambda: {"late": 0, "missing": 0})
    for record in records:
        for what, field in (("late", "late_files"), ("missing", "missing_files")):
            for key in record.get(field, ()):
                kind, raft = _where(key)
                by_kind.setdefault(kind, {"late": 0, "missing": 0})[what] += 1
                by_raft[raft][what] += 1
    ranked = sorted(records, key=lambda r: (-len(r.get("missing_files", ())), -len(r.get("late_files", ())),
                                            -(r.get("transfer_time_seconds") or 0), r["image_name"]))
    return {
        "day_obs": day_obs,
        "exposures": len(records),
        "pending": pending,
        **{name: status.get(name, 0) for name in STATUSES},
        "late_files": sum(len(record.get("late_files", ())) for record in records),
        "missing_files": sum(len(record.get("missing_files", ())) for record in records),
        "clock_anomalies": len(times) - len(observed),
        "transfer_time_seconds": {
            "count": len(observed),
            "method": "nearest-rank",
            **{f"p{p}": nearest_rank(observed, p) for p in PERCENTILES},
            "max": observed[-1] if observed else None,
        },
        "histogram": histogram(observed),
        "by_sensor_kind": by_kind,
        "by_raft": dict(sorted(by_raft.items())),
        "recheck": {
            "rechecked": len(rechecks),
            "arrived_after_window": sum(len(r.get("arrived_after_window", ())) for r in rechecks.values()),
            "still_missing": sum(len(r.get("still_missing", ())) for r in rechecks.values()),
        },
        "worst": [{"image_name": r["image_name"], "status": r["status"],
                   "transfer_time_seconds": r.get("transfer_time_seconds"),
                   "late": len(r.get("late_files", ())), "missing": len(r.get("missing_files", ()))}
                  for r in ranked[:worst]],
    }


def load_night(store, day_obs: str) -> tuple[list[dict], int, dict]:
    """(decision records, number still pending, recheck results by image) of the day, from Redis."""
    from dtm.common import keys

    names = store.images_of_day(day_obs)
    if not names:
        return [], 0, {}
    decisions = store.redis.mget([keys.decision(name) for name in names])
    rechecks = store.redis.mget([keys.recheck(name) for name in names])
    records = [orjson.loads(data) for data in decisions if data is not None]
    found = {name: orjson.loads(data) for name, data in zip(names, rechecks) if data is not None}
    return records, len(names) - len(records), found


# -- output --------------------------------------------------------------------------------------
def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def format_text(report: dict, rows: int = 10) -> str:
    t = report["transfer_time_seconds"]
    lines = [
        f"Night {report['day_obs']}: {report['exposures']} exposure(s) decided"
        + (f", {report['pending']} pending" if report["pending"] else ""),
        f"  complete {report['complete']}   incomplete {report['incomplete']}   no files {report['no_files']}",
        f"  late files {report['late_files']}   missing files {report['missing_files']}"
        + (f"   clock anomalies {report['clock_anomalies']}" if report["clock_anomalies"] else ""),
        f"  transfer time ({t['count']} exposures, nearest rank): p50 {_seconds(t['p50'])}  p90 {_seconds(t['p90'])}"
        f"  p98 {_seconds(t['p98'])}  max {_seconds(t['max'])}",
    ]
    recheck = report["recheck"]
    if recheck["rechecked"]:
        lines.append(f"  after the window ({recheck['rechecked']} rechecked): {recheck['arrived_after_window']} "
                     f"arrived late, {recheck['still_missing']} still missing")
    lines += ["", "Transfer time histogram (SLA buckets)"]
    peak = max((b["count"] for b in report["histogram"]), default=0) or 1
    previous = 0
    for bucket in report["histogram"]:
        label = f"> {previous} s" if bucket["le"] == "+Inf" else f"{previous}-{bucket['le']} s"
        lines.append(f"  {label:>9} | {'#' * math.ceil(40 * bucket['count'] / peak):<40} {bucket['count']}")
        previous = bucket["le"] if bucket["le"] != "+Inf" else previous
    lines += ["", "Late / missing files by sensor kind"]
    lines += [f"  {kind:<10} late {v['late']:>5}  missing {v['missing']:>5}" for kind, v in
              report["by_sensor_kind"].items()]
    if report["by_raft"]:
        lines += ["", "Late / missing files by raft"]
        lines += [f"  {raft:<10} late {v['late']:>5}  missing {v['missing']:>5}" for raft, v in
                  report["by_raft"].items()]
    if report["worst"]:
        lines += ["", "Worst exposures"]
        lines += [f"  {w['image_name']}  {w['status']:<10}  transfer {_seconds(w['transfer_time_seconds']):>9}  "
                  f"late {w['late']:>3}  missing {w['missing']:>3}" for w in report["worst"][:rows]]
    return "\n".join(lines)


def write_csv(records: Sequence[dict], rechecks: dict, out) -> None:
    """One row per exposure (file lists as counts)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in sorted(records, key=lambda r: r["end_readout_utc"]):
        recheck = rechecks.get(record["image_name"], {})
        writer.writerow([
            record["image_name"], record["status"], record["end_readout_utc"], record.get("transfer_time_seconds"),
            record.get("expected_files"), record.get("arrived_files"), len(record.get("late_files", ())),
            len(record.get("missing_files", ())), record.get("last_file") or "",
            len(recheck["arrived_after_window"]) if recheck else "", len(recheck["still_missing"]) if recheck else "",
        ])


@click.command("report")
@click.option("--day", "day_obs", type=DAY_OBS, required=True, help="The observing day (YYYY-MM-DD).")
@click.option("--worst", type=click.IntRange(min=0), default=10, show_default=True, help="How many worst exposures.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="One CSV row per exposure instead.")
def report(day_obs: str, worst: int, as_json: bool, as_csv: bool) -> None:
    """The night at a glance, from the stored decisions.

    Exposures decided (complete, incomplete, no files), transfer time p50/p90/p98/max (exact,
    nearest rank over the night's exposures, not interpolated from histogram buckets), late and
    missing files by sensor kind and by raft, the worst exposures and a histogram with the SLA
    buckets of dtm_s3_transfer_duration_seconds.

    \b
    Examples:
      dtm report --day 2025-12-03
      dtm report --day 2025-12-03 --json | jq .transfer_time_seconds
      dtm report --day 2025-12-03 --csv > night.csv
    """
    import redis

    from dtm.common.store import ExposureStore

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = load_settings()
    store = ExposureStore(connect(settings), settings.redis_key_ttl)
    try:
        records, pending, rechecks = load_night(store, day_obs)
    except redis.RedisError as error:
        raise redis_failure(settings, error) from None
    if as_csv:
        write_csv(records, rechecks, sys.stdout)
        return
    night = night_report(day_obs, records, pending=pending, rechecks=rechecks, worst=worst)
    if as_json:
        click.echo(orjson.dumps(night).decode())
    elif not records and not pending:
        click.echo(f"No exposure stored for observing day {day_obs} (none, or older than REDIS_KEY_TTL).")
    else:
        click.echo(format_text(night, rows=worst))
