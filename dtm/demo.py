"""`dtm demo`: the whole monitor on one machine, fed by the simulated summit.

Embedded services (a Redis server, librdkafka's mock Kafka cluster held by this process, moto's S3
server), then the production components as separate processes (`dtm ingest`, `dtm scheduler`,
two `dtm worker`, `dtm exporter`), then `dtm simulate` in a thread. At the end, a table per
exposure compared with the simulator's ground truth.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import click
import redis

from dtm.common.store import ExposureStore
from dtm.embedded import Components, KafkaMockCluster, RedisServer, S3Server, free_port, wait_until
from dtm.report import nearest_rank
from dtm.schema_registry import SchemaRegistryServer

BUCKET = "rubin-summit"
NOTIFICATION_TOPIC = "rubin-summit-notifications"
END_READOUT_TOPIC = "lsst.sal.MTCamera.logevent_endReadout"


class Progress:
    """Exposures published by the simulator, and their truth as it becomes known (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.published: list[str] = []
        self.truth: dict[str, dict] = {}
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def on_event(self, kind: str, info: dict) -> None:
        with self.lock:
            if kind == "published":
                self.published.append(info["image_name"])
            elif kind == "truth":
                self.truth[info["image_name"]] = info


def agrees(decision: dict | None, truth: dict) -> bool:
    if decision is None:
        return False
    same_time = (decision["transfer_time_seconds"] is None) == (truth["transfer_time_seconds"] is None) and (
        truth["transfer_time_seconds"] is None
        or abs(decision["transfer_time_seconds"] - truth["transfer_time_seconds"]) < 1e-3)
    return (decision["status"] == truth["status"] and sorted(decision["late_files"]) == sorted(truth["late"])
            and sorted(decision["missing_files"]) == sorted(truth["missing"]) and same_time)


def summary_table(rows: list[tuple[dict, dict | None]]) -> tuple[str, bool]:
    lines = [f"{'exposure':<24} {'status':<11} {'transfer':>9} {'late':>5} {'missing':>8}  truth"]
    all_agree = True
    for truth, decision in rows:
        ok = agrees(decision, truth)
        all_agree &= ok
        if decision is None:
            lines.append(f"{truth['image_name']:<24} {'undecided':<11} {'-':>9} {'-':>5} {'-':>8}  DIFFERS")
            continue
        transfer = decision["transfer_time_seconds"]
        lines.append(
            f"{decision['image_name']:<24} {decision['status']:<11} "
            f"{'-' if transfer is None else f'{transfer:.2f} s':>9} {len(decision['late_files']):>5} "
            f"{len(decision['missing_files']):>8}  {'agrees' if ok else 'DIFFERS (truth: ' + _brief(truth) + ')'}")
    # As the histogram and `dtm report`: transfer times <= 0 are clock anomalies, not observations.
    times = sorted(d["transfer_time_seconds"] for _, d in rows if d and (d["transfer_time_seconds"] or 0) > 0)
    if times:
        lines.append(f"transfer time: p50 {nearest_rank(times, 50):.2f} s, p98 {nearest_rank(times, 98):.2f} s, "
                     f"max {times[-1]:.2f} s over {len(times)} exposures")
    agreeing = sum(agrees(d, t) for t, d in rows)
    lines.append(f"decisions agreeing with the simulator's ground truth: {agreeing}/{len(rows)}")
    return "\n".join(lines), all_agree


def _brief(truth: dict) -> str:
    transfer = truth["transfer_time_seconds"]
    return (f"{truth['status']}, {'-' if transfer is None else f'{transfer:.2f} s'}, "
            f"{len(truth['late'])} late, {len(truth['missing'])} missing")


@click.command("demo")
@click.option("--exposures", default=8, show_default=True, help="Exposures to simulate.")
@click.option("--speed", default=10.0, show_default=True, help="Cadence speed-up over LSSTCam's ~35 s.")
@click.option("--sensors", default=12, show_default=True, help="Sensors per exposure (205 for full LSSTCam).")
@click.option("--wait-time", default=6.0, show_default=True, help="S3_WAIT_TIME for the demo, seconds.")
@click.option("--late-time", default=3.0, show_default=True, help="MAX_LATE_FILE_TIME for the demo, seconds.")
@click.option("--workers", default=2, show_default=True, help="dtm worker processes.")
@click.option("--late-rate", default=0.05, show_default=True, help="Probability a file is late.")
@click.option("--missing-rate", default=0.02, show_default=True, help="Probability a file never arrives.")
@click.option("--resend-rate", default=0.05, show_default=True, help="Probability a notification is sent twice.")
@click.option("--delay-rate", default=0.05, show_default=True, help="Probability a notification is delayed.")
@click.option("--late-readout-rate", default=0.2, show_default=True,
              help="Probability an end readout is published after its files.")
@click.option("--malformed-rate", default=0.01, show_default=True, help="Garbage messages per notification.")
@click.option("--seed", default=2025, show_default=True, help="Makes the simulated night reproducible.")
@click.option("--avro", is_flag=True,
              help="End readouts in Avro through a Schema Registry (embedded), as Sasquatch sends them.")
@click.option("--metrics-port", type=int, help="Port of /metrics (default: a free port).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Keep logs, metrics files and the truth file here (default: a temporary directory).")
def demo_command(exposures, speed, sensors, wait_time, late_time, workers, late_rate, missing_rate, resend_rate,
                 delay_rate, late_readout_rate, malformed_rate, seed, avro, metrics_port, output):
    """Run the whole pipeline on embedded services, fed by a simulated summit.

    \b
    Examples:
      dtm demo
      dtm demo --exposures 30 --sensors 205 --speed 2 --wait-time 30 --late-time 10
      dtm demo --avro          # end readouts in Avro through an embedded Schema Registry
    """
    from dtm.simulate import SimulationConfig, run_simulation

    try:  # checked before anything starts
        config = SimulationConfig(
            exposures=exposures, speed=speed, sensors=sensors, wait_time=wait_time, late_time=late_time,
            late_rate=late_rate, missing_rate=missing_rate, resend_rate=resend_rate, delay_rate=delay_rate,
            late_readout_rate=late_readout_rate, malformed_rate=malformed_rate, seed=seed,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    workdir = output or Path(tempfile.mkdtemp(prefix="dtm-demo-"))
    config = dataclasses.replace(config, truth_path=workdir / "truth.jsonl")
    workdir.mkdir(parents=True, exist_ok=True)
    services, components = [], None
    progress = Progress()
    stop = threading.Event()
    try:
        echo("starting Redis, Kafka (librdkafka mock cluster) and S3 (moto server) on loopback ...")
        redis_server = RedisServer()
        services.append(redis_server)
        kafka = KafkaMockCluster({NOTIFICATION_TOPIC: 4, END_READOUT_TOPIC: 1})
        services.append(kafka)
        s3 = S3Server(BUCKET)
        services.append(s3)
        registry_url = None
        if avro:
            registry = SchemaRegistryServer().start()
            services.append(registry)
            registry_url = registry.url
            config = dataclasses.replace(config, avro_registry_url=registry_url)

        port = metrics_port or free_port()
        environment = {
            "FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "FILE_NOTIFICATION_TOPIC_NAME": NOTIFICATION_TOPIC,
            "FILE_NOTIFICATION_KAFKA_GROUP_ID": "dtm-ingest",
            "END_READOUT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "END_READOUT_TOPIC_NAME": END_READOUT_TOPIC,
            "END_READOUT_KAFKA_GROUP_ID": "dtm-scheduler",
            "STORAGE_BUCKET_NAME": BUCKET,
            "S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "S3_WAIT_TIME": str(wait_time),
            "MAX_LATE_FILE_TIME": str(late_time),
            "RECHECK_TIME": str(wait_time * 3),
            "REDIS_URL": redis_server.url,
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            "METRICS_PORT": str(port),
        }
        if registry_url:
            environment["END_READOUT_SCHEMA_REGISTRY"] = registry_url
        components = Components(environment, workdir / "logs")
        components.start("ingest", "ingest")
        components.start("scheduler", "scheduler")
        for index in range(workers):
            components.start(f"worker-{index}", "worker", "--name", f"demo-worker-{index}")
        components.start("exporter", "exporter")
        wait_until(lambda: _healthy(port, components), 30, "the exporter")
        echo(f"services: Redis {redis_server.url}, Kafka {kafka.bootstrap_servers}, S3 {s3.endpoint_url}"
             + (f", Schema Registry {registry_url}" if registry_url else ""))
        echo(f"dtm is running: metrics at http://127.0.0.1:{port}/metrics, logs in {workdir / 'logs'}")
        echo(f"simulating {exposures} exposures of {sensors} sensors ({2 * sensors} files each), "
             f"S3_WAIT_TIME={wait_time:g} s, MAX_LATE_FILE_TIME={late_time:g} s ...")

        def simulate():
            try:
                run_simulation(config, bootstrap_servers=kafka.bootstrap_servers, s3_client=s3.client(),
                               notification_topic=NOTIFICATION_TOPIC, end_readout_topic=END_READOUT_TOPIC,
                               bucket=BUCKET, on_event=progress.on_event, stop=stop)
            except BaseException as error:  # reported by the main thread
                progress.error = error
            finally:
                progress.finished.set()

        simulator = threading.Thread(target=simulate, name="simulator", daemon=True)
        simulator.start()
        store = ExposureStore(redis.Redis.from_url(redis_server.url), 3600)
        decisions = watch(progress, store, components, exposures)
        simulator.join()
        if progress.error:
            raise click.ClickException(f"the simulator failed: {progress.error!r}")
        rows = [(truth, decisions.get(image)) for image, truth in sorted(progress.truth.items())]
        table, all_agree = summary_table(rows)
        echo("\n" + table)
        echo(f"ground truth: {workdir / 'truth.jsonl'}; logs: {workdir / 'logs'}")
        if not all_agree:
            raise click.ClickException("some decisions differ from the ground truth (see the table)")
    except KeyboardInterrupt:
        echo("\ninterrupted: stopping every process ...")
        sys.exit(130)
    finally:
        stop.set()
        if components is not None:
            components.stop()
        for service in reversed(services):
            service.stop()


def watch(progress: Progress, store: ExposureStore, components: Components, expected: int) -> dict[str, dict]:
    """Report progress until every published exposure is decided and its truth known."""
    decisions: dict[str, dict] = {}
    last_line, next_print = "", 0.0
    while True:
        components.check_alive()
        with progress.lock:
            published = list(progress.published)
            truth_known = len(progress.truth)
        for image in published:
            if image not in decisions:
                record = store.decision(image)
                if record is not None:
                    decisions[image] = record
        line = (f"  published {len(published)}/{expected}, decided {len(decisions)}, "
                f"pending {len(published) - len(decisions)}")
        if line != last_line and time.monotonic() >= next_print:
            echo(line)
            last_line, next_print = line, time.monotonic() + 2
        done = progress.finished.is_set() and len(decisions) == len(published) and truth_known == len(published)
        if done or (progress.finished.is_set() and progress.error):
            return decisions
        time.sleep(0.2)  # polling Redis for progress: there is no event to wait on across processes


def _healthy(port: int, components: Components) -> bool:
    components.check_alive()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def echo(text: str) -> None:
    click.echo(text)
