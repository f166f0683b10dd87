"""docker-compose.yml: the compose specification, docker-compose 1.29, and what the stack relies on."""
from __future__ import annotations

import os
import re
import shlex

import pytest

from .conftest import DEPLOY, REPO, find_tool, load_yaml, missing, run

COMPOSE_FILE = REPO / "docker-compose.yml"
DTM_SERVICES = ("ingest", "scheduler", "worker", "exporter")
METRICS_DIR = "/var/run/dtm/metrics"


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with an empty environment; $$ is a literal $."""
    value = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    return value.replace("$$", "$")


def test_compose_file_matches_the_compose_specification():
    check_jsonschema = find_tool("check-jsonschema") or missing("check-jsonschema")
    result = run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_1_29_accepts_the_file():
    docker_compose = find_tool("docker-compose") or missing("docker-compose (1.29, Debian package)")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "DOCKER_"))}
    result = run([docker_compose, "-f", str(COMPOSE_FILE), "config", "-q"], env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_top_level_name(compose):
    assert "name" not in compose, "docker-compose 1.29 rejects a top-level name:"


def test_services_of_the_stack(compose):
    services = compose["services"]
    for name in ("redis", "kafka", "minio", "prometheus", "grafana", "loki", *DTM_SERVICES, "simulator"):
        assert name in services, name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, one node
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "container_name" not in services["worker"], "a replicated service cannot have a container name"


def test_dtm_services_share_one_image_and_the_metrics_volume(compose):
    services = compose["services"]
    images = {services[name]["image"] for name in (*DTM_SERVICES, "simulator")}
    assert len(images) == 1, images
    for name in (*DTM_SERVICES, "simulator"):
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR
        assert f"dtm-metrics:{METRICS_DIR}" in service["volumes"], name
        assert service["labels"]["app"] == "dtm"
    assert "dtm-metrics" in compose["volumes"]


def test_dtm_commands_exist(compose):
    from dtm.cli import main

    for name in DTM_SERVICES:
        assert compose["services"][name]["command"][0] in main.commands, name


def test_simulator_is_an_opt_in_profile_with_valid_options(compose):
    simulator = compose["services"]["simulator"]
    assert simulator["profiles"] == ["simulator"]
    args = [interpolate(str(arg)) for arg in simulator["command"]]
    assert args[0] == "simulate"
    for option in ("--exposures", "--speed", "--sensors", "--native-notifications"):
        assert option in args, option
    try:
        from dtm.simulate import simulate_command
    except ImportError:
        pytest.skip("dtm simulate is not in this tree yet")
    simulate_command.make_context("simulate", args[1:])  # raises on an unknown option or a bad value


def test_dtm_environment_names_are_settings_the_code_reads(compose, known_settings):
    for name in (*DTM_SERVICES, "simulator"):
        unknown = set(compose["services"][name]["environment"]) - known_settings
        assert not unknown, f"{name}: {sorted(unknown)} are read by no dtm setting"


def test_start_order_health_checks(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health check"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} is a one-shot job"
            else:
                assert condition == "service_started"
    for name in ("redis", "kafka", "minio", *DTM_SERVICES, "prometheus", "loki", "grafana"):
        assert "healthcheck" in services[name], name
    # Consumers start after their inputs exist; the simulator after the pipeline is healthy.
    assert services["ingest"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert set(services["simulator"]["depends_on"]) == {"ingest", "scheduler", "worker"}


def test_minio_notifies_the_topic_that_ingest_reads(compose):
    services = compose["services"]
    topic = services["ingest"]["environment"]["FILE_NOTIFICATION_TOPIC_NAME"]
    minio = services["minio"]["environment"]
    assert minio["MINIO_NOTIFY_KAFKA_ENABLE_DTM"] == "on"
    assert minio["MINIO_NOTIFY_KAFKA_TOPIC_DTM"] == topic
    assert minio["MINIO_NOTIFY_KAFKA_BROKERS_DTM"] == services["ingest"]["environment"][
        "FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS"]
    init = " ".join(services["minio-init"]["command"])
    bucket = services["worker"]["environment"]["STORAGE_BUCKET_NAME"]
    assert f"mc event add local/{bucket} arn:minio:sqs::DTM:kafka" in init
    assert f"mc mb --ignore-existing local/{bucket}" in init
    topics = " ".join(services["kafka-init"]["command"])
    for topic_name in (topic, services["scheduler"]["environment"]["END_READOUT_TOPIC_NAME"]):
        assert topic_name in topics


def test_bind_mounted_config_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_every_healthcheck_command_is_a_list_or_shell(compose):
    for name, service in compose["services"].items():
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL"), name
            if test[:2] == ["CMD", "dtm-probe"]:
                assert test[2] in ("tcp", "http", "rq-worker"), name


def test_prometheus_scrapes_every_dtm_metrics_endpoint_with_an_app_label(compose):
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            assert "app" in static.get("labels", {}), f"job {job['job_name']} has no app label"
            for target in static["targets"]:
                targets[target] = static["labels"]["app"]
    port = compose["services"]["exporter"]["environment"]["METRICS_PORT"]
    assert targets.get(f"exporter:{port}") == "dtm"
    # Every compose service whose port is scraped exists.
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in compose["services"], target
    rules = config["rule_files"]
    assert rules == ["rules/*.rules.yml"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def test_grafana_provisioning(compose):
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    types = {source["type"]: source for source in datasources["datasources"]}
    assert types["prometheus"]["url"] == "http://prometheus:9090"
    assert types["loki"]["url"] == "http://loki:3100"
    providers = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "dtm.yml")
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/end-to-end.json"
    assert (DEPLOY / "grafana" / "dashboards" / "end-to-end.json").is_file()


def test_alloy_ships_to_the_loki_service():
    config = (DEPLOY / "alloy" / "config.alloy").read_text()
    assert 'url = "http://loki:3100/loki/api/v1/push"' in config
    assert config.count("{") == config.count("}"), "unbalanced braces"
    assert "__meta_docker_container_label_app" in config  # the `app` label the dashboard queries


def test_shell_commands_of_one_shot_jobs_parse(compose):
    for name in ("kafka-init", "minio-init"):
        script = compose["services"][name]["command"][0]
        shlex.split(interpolate(script), comments=True)  # balanced quotes
