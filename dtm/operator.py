"""What the operator commands (`replay`, `capture`, `report`, `status`) share: settings, Redis, time options."""
from __future__ import annotations

import datetime as dt
import signal
import threading

import click
import redis

from dtm.common import metrics
from dtm.common import time as ttime
from dtm.common.settings import Settings, SettingsError, redact_url

REDIS_TIMEOUT = 5.0  # seconds: an operator command never hangs on an unreachable Redis


def load_settings() -> Settings:
    """The settings, or one line naming the bad variable (a click error: exit 1)."""
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.ClickException(f"configuration: {error}") from None


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: long-running commands stop cleanly between batches."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                socket_connect_timeout=REDIS_TIMEOUT)


def redis_failure(settings: Settings, error: Exception) -> click.ClickException:
    """One line naming Redis (never its password)."""
    return click.ClickException(f"Redis at {redact_url(settings.redis_url)}: {error}")


def metrics_to_exporter(settings: Settings, apply: bool, component: str) -> None:
    """Metrics of a command that changes state reach `dtm exporter`; a dry run's stay in the process.

    Call before the first metric value is created.
    """
    from prometheus_client import values

    if apply and settings.prometheus_multiproc_dir:
        metrics.use_process_slot(settings.prometheus_multiproc_dir, component)
    else:
        # PROMETHEUS_MULTIPROC_DIR may be set in the pod: a dry run must not leave counts there.
        values.ValueClass = values.MutexValue


class UtcTime(click.ParamType):
    """An ISO 8601 instant; UTC when it carries no offset. Converted to unix seconds."""

    name = "ISO_TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2025-12-04T05:00:00Z", param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return ttime.to_unix(when)


class DayObs(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an observing day YYYY-MM-DD", param, ctx)


UTC_TIME = UtcTime()
DAY_OBS = DayObs()


def observing_days(start_utc: float, end_utc: float) -> list[str]:
    """Every observing day with an instant in [start_utc, end_utc]."""
    day, last = ttime.observing_day_of_utc(start_utc), ttime.observing_day_of_utc(end_utc)
    days = [day]
    while day < last:
        day = ttime.next_day(day)
        days.append(day)
    return days
