"""The `dtm` command line."""
from __future__ import annotations

import logging
import sys

import click
import orjson

from dtm.capture import capture
from dtm.common import logs, metrics
from dtm.common.settings import Settings, redact_url
from dtm.demo import demo_command
from dtm.operator import connect, load_settings, redis_failure, stop_on_signals
from dtm.replay import replay
from dtm.report import report
from dtm.simulate import simulate_command
from dtm.status import status

log = logging.getLogger("dtm")


def start_component(component: str) -> Settings:
    """What every long-running component does first: settings, JSON logs, its metrics slot."""
    settings = load_settings()
    logs.configure(settings.log_level, component=component)
    if settings.prometheus_multiproc_dir:
        slot = metrics.use_process_slot(settings.prometheus_multiproc_dir, component)
        log.info("metrics slot %s", slot, extra={"metrics_dir": settings.prometheus_multiproc_dir})
    else:
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: this process's metrics reach no exporter")
    log.info("%s starting", component, extra={"redis": redact_url(settings.redis_url)})
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """dtm, the data transfer monitor of the Vera C. Rubin Observatory.

    Joins S3 file notifications and camera end-readout events, decides S3_WAIT_TIME after each
    end of readout how long the exposure's files took to reach the embargo bucket, which were
    late and which are missing, and exports Prometheus metrics labelled by observing day.
    Configuration comes from the environment (see README.md).
    """


@main.command()
def ingest() -> None:
    """Consume S3 file notifications into Redis (FILE_NOTIFICATION_* settings)."""
    from dtm.ingest import consumer

    consumer.run(start_component("ingest"), stop_on_signals())


@main.command()
def scheduler() -> None:
    """Consume end-readout events and schedule each exposure's decision (END_READOUT_* settings)."""
    from dtm.scheduler import consumer

    consumer.run(start_component("scheduler"), stop_on_signals())


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty (scheduled jobs are not waited for).")
@click.option("--name", help="Worker name shown by RQ (default: host and pid).")
def worker(burst: bool, name: str | None) -> None:
    """Run decision jobs: read S3, decide, record metrics. Start several to scale out."""
    from dtm.worker import runner

    runner.run(start_component("worker"), burst=burst, name=name)


@main.command()
@click.option("--port", type=int, help="Port (default METRICS_PORT, 8000).")
def exporter(port: int | None) -> None:
    """Serve /metrics (the sum of every dtm process of PROMETHEUS_MULTIPROC_DIR) and /healthz."""
    from dtm.worker import exporter as metrics_exporter

    settings = load_settings()
    logs.configure(settings.log_level, component="exporter")
    if not settings.prometheus_multiproc_dir:
        raise click.ClickException("configuration: PROMETHEUS_MULTIPROC_DIR is not set: nothing to export")
    metrics_exporter.run(settings, port or settings.metrics_port)


@main.command()
@click.argument("image_name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (contract section 7).")
def inspect(image_name: str, as_json: bool) -> None:
    """Show one exposure's decision.

    \b
    Example:
      dtm inspect MC_O_20251203_000123
      dtm inspect MC_O_20251203_000123 --json | jq .missing_files
    """
    import redis

    from dtm.common.store import ExposureStore
    from dtm.exposure_view import UnknownExposure, exposure_record, format_text

    settings = load_settings()
    store = ExposureStore(connect(settings), settings.redis_key_ttl)
    try:
        record = exposure_record(store, image_name)
    except UnknownExposure as error:
        raise click.ClickException(str(error)) from None
    except redis.RedisError as error:
        raise redis_failure(settings, error) from None
    click.echo(orjson.dumps(record).decode() if as_json else format_text(record))


main.add_command(demo_command)
main.add_command(simulate_command, name="simulate")
main.add_command(replay)  # the operator commands (issue 6)
main.add_command(capture)
main.add_command(report)
main.add_command(status)

if __name__ == "__main__":
    sys.exit(main())
