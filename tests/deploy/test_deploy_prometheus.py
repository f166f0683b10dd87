"""Prometheus: the compose config, the alert rules and their promtool unit tests."""
from __future__ import annotations

from .conftest import DEPLOY, load_yaml, run

RULES = DEPLOY / "prometheus" / "rules" / "dtm.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "dtm.rules.test.yml"
REQUIRED_ALERTS = {
    "DtmTransferP98OverSLA",  # transfer p98 over its SLA
    "DtmLateOrMissingFiles",
    "DtmFilesMissingAfterRecheck",
    "DtmEndReadoutsWithoutFileNotifications",
    "DtmKafkaConsumerLagHigh",
    "DtmScheduledJobsOverdue",
    "DtmComponentDown",  # up == 0
}


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config(promtool):
    # Also checks the rule files the config loads (rules/*.rules.yml, relative to the config).
    result = run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_test_rules(promtool):
    result = run([promtool, "test", "rules", str(RULE_TESTS)], cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_exist_with_severity_and_summary():
    found = alerts()
    assert REQUIRED_ALERTS <= set(found), REQUIRED_ALERTS - set(found)
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
    assert "up{" in found["DtmComponentDown"]["expr"] and "== 0" in found["DtmComponentDown"]["expr"]
    assert "> 20" in found["DtmTransferP98OverSLA"]["expr"]
    expr = found["DtmEndReadoutsWithoutFileNotifications"]["expr"]
    assert 'stream="end_readouts"' in expr and 'stream="file_notifications"' in expr


def test_every_alert_is_unit_tested_firing_and_quiet():
    fired, quiet = set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alerts())
    assert names <= fired, f"never shown firing: {names - fired}"
    assert names <= quiet, f"never shown quiet: {names - quiet}"
