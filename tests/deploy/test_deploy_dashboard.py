"""The Grafana dashboard "End to End", and the metric names that it and the alert rules query.

promtool has no standalone PromQL parser: every panel query goes into a throwaway rules file as a
recording rule (Grafana's $variables replaced by values of the right type), and `promtool check
rules` parses them all at once.
"""
from __future__ import annotations

import ast
import inspect
import json
import re

import pytest
import yaml

from .conftest import DEPLOY, load_yaml, run

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "end-to-end.json"
RULES = DEPLOY / "prometheus" / "rules" / "dtm.rules.yml"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "${day}": ".*", "$day": ".*"}
TARGET_LABELS = {"app", "component", "job", "instance", "pod", "namespace"}  # added by Prometheus, not by dtm
CONTRACT_P98 = ('histogram_quantile(0.98, sum by (le, app) (rate(dtm_s3_transfer_duration_seconds_bucket'
                '{day=~"$day"}[$__rate_interval])))')


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard, kind):
    """(panel title, expr) of every target whose datasource is of this type."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel.get("datasource") or {}
            if datasource.get("type") == kind:
                yield panel["title"], target["expr"]


def substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def rule_exprs():
    return [rule["expr"] for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


# --- names the code defines -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def code_metrics() -> dict[str, set[str]]:
    """Exposed series name -> label names, from dtm.common.metrics and the exporter's collectors."""
    from dtm.common import metrics
    from dtm.worker import exporter
    from prometheus_client.metrics import MetricWrapperBase

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("", "_count", "_sum", "_created")}
    names: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels = set(value._labelnames)
            for suffix in suffixes[value._type]:
                names[value._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    # Collectors read at scrape time: GaugeMetricFamily("name", ..., labels=[...]) in the exporter.
    tree = ast.parse(inspect.getsource(exporter))
    families = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith("MetricFamily"):
            labels = set()
            for keyword in node.keywords:
                if keyword.arg == "labels":
                    labels = {element.value for element in keyword.value.elts}
            names[node.args[0].value] = labels
            families += 1
    assert families >= 4 and "dtm_queue_jobs" in names and "dtm_s3_transfer_duration_seconds_bucket" in names
    return names


def used_metrics(expr: str):
    """(metric name, label names of its selector) of every dtm_* series an expression selects."""
    for match in re.finditer(r"\b(dtm_[a-zA-Z0-9_]+)\b(\{[^}]*\})?", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2) or ""))
        yield match.group(1), labels


def all_queries(dashboard):
    yield from ((f"panel {title!r}", expr) for title, expr in queries(dashboard, "prometheus"))
    yield from (("alert rules", expr) for expr in rule_exprs())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["definition"]


def test_every_queried_metric_and_label_exists_in_the_code(dashboard, code_metrics):
    seen = set()
    for where, expr in all_queries(dashboard):
        for name, labels in used_metrics(expr):
            seen.add(name)
            assert name in code_metrics, f"{where}: {name} is exported by no dtm code"
            unknown = labels - code_metrics[name] - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label(s) {unknown}"
    # The checks above looked at something: the pipeline-health and late/missing names at least.
    assert {"dtm_queue_jobs", "dtm_scheduled_jobs_overdue", "dtm_kafka_consumer_lag_messages",
            "dtm_rejected_messages_total", "dtm_clock_anomalies_total", "dtm_s3_late_or_missing_total",
            "dtm_s3_arrived_after_window_total", "dtm_s3_missing_after_recheck_total",
            "dtm_file_messages_received_total", "dtm_s3_transfer_duration_seconds_bucket"} <= seen


def test_the_name_check_catches_a_typo(code_metrics):
    (name, _), = used_metrics('rate(dtm_s3_late_or_mising_total{day="x"}[5m])')
    assert name not in code_metrics


def test_every_panel_query_parses(dashboard, promtool, tmp_path):
    rules = [{"record": f"dashboard:query_{index}", "expr": substitute(expr)}
             for index, (_, expr) in enumerate(queries(dashboard, "prometheus"))]
    assert len(rules) >= 20
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_dashboard_identity_and_day_variable(dashboard):
    assert dashboard["uid"] == "dtm-end-to-end"
    assert dashboard["title"] == "End to End"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    day = variables["day"]
    assert day["definition"] == "label_values(dtm_s3_transfer_duration_seconds_bucket, day)"
    assert day["query"]["query"] == day["definition"]
    assert day["includeAll"] and day["multi"] and day["allValue"] == ".*"
    assert variables["datasource"]["query"] == "prometheus" and variables["loki"]["query"] == "loki"


def test_dashboard_layout(dashboard):
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in ("${datasource}", "${loki}"), panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], panel["title"]
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["File transfers", "Transfer time", "Late and missing files", "Network", "Pipeline health"]


def test_dashboard_shows_what_operators_need(dashboard):
    prom = [expr for _, expr in queries(dashboard, "prometheus")]
    text = "\n".join(prom)
    assert CONTRACT_P98 in prom
    for quantile in ("0.5", "0.9"):
        assert CONTRACT_P98.replace("0.98", quantile) in prom
    assert any(panel["type"] == "heatmap" and "dtm_s3_transfer_duration_seconds_bucket" in panel["targets"][0]["expr"]
               and panel["targets"][0]["format"] == "heatmap" for panel in panels(dashboard))
    assert "sum by (kind) (rate(dtm_file_messages_received_total" in text
    assert "sum by (le, day)" in text  # per observing day
    loki = [expr for _, expr in queries(dashboard, "loki")]
    assert 'sum(count_over_time({app="summit-proxy"} |= "Operation timed out" [$__interval]))' in loki
    for state in ("queued", "scheduled", "failed"):
        assert f'dtm_queue_jobs{{state="{state}"}}' in text
