"""The Prometheus alert rules (deploy/prometheus/alerts.yml).

``promtool check rules`` and ``promtool test rules`` (alerts_test.yml: each alert
fires on a bad series and stays quiet on a healthy one) run here; promtool comes
with Debian's ``prometheus`` package, which ``make test`` installs
(deploy/ensure-promtool.sh). Without it these tests fail, they do not skip. Also:
every metric a rule uses is defined in streams/telemetry.py, and every alert has a
``for:``, a severity and annotations that link its section of docs/operations.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
TELEMETRY = REPO / "streams" / "telemetry.py"
OPERATIONS = REPO / "docs" / "operations.md"

# Series Prometheus itself makes (not the worker's): allowed in rules.
BUILTIN_SERIES = {"up"}
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, ("promtool not found: install Debian's 'prometheus' package "
                  "(bash deploy/ensure-promtool.sh, run by `make test`)")
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"]]


def known_metrics(telemetry_source: str) -> set[str]:
    return set(re.findall(r'"(campaign_analytics_[a-z0-9_]+)"', telemetry_source))


def metric_problems(doc: dict[str, Any], known: set[str]) -> list[str]:
    """Metric names a rule uses that the worker does not export."""
    problems = []
    for rule in rules(doc):
        expr = rule["expr"]
        for metric in re.findall(r"\bcampaign_analytics_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in known and base not in known:
                problems.append(f"{rule['alert']}: unknown metric {metric}")
        for name in re.findall(r"(?<![\w\"])([a-z_:][a-z0-9_:]*)\s*\{", expr):
            if not name.startswith("campaign_analytics_") and name not in BUILTIN_SERIES:
                problems.append(f"{rule['alert']}: series {name} is neither ours nor built in")
    return problems


def rule_problems(doc: dict[str, Any], operations: str) -> list[str]:
    problems = []
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", operations, re.MULTILINE)}
    for rule in rules(doc):
        name = rule.get("alert", "?")
        if "for" not in rule:
            problems.append(f"{name}: no for:")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity not one of {sorted(SEVERITIES)}")
        notes = rule.get("annotations", {})
        if not notes.get("summary") or not notes.get("description"):
            problems.append(f"{name}: summary and description annotations required")
        anchor = name.lower()
        if f"docs/operations.md#{anchor}" not in notes.get("description", ""):
            problems.append(f"{name}: description does not link docs/operations.md#{anchor}")
        if anchor not in anchors:
            problems.append(f"{name}: docs/operations.md has no section #{anchor}")
    return problems


# --- the real files ----------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in rules(yaml.safe_load(ALERTS.read_text()))}
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case.get("exp_alerts")}
    assert fired == alerts
    for test in tests:  # a healthy series beside the bad one, in every test
        firing = {str(a["exp_labels"]) for case in test["alert_rule_test"]
                  for a in case.get("exp_alerts") or []}
        assert len(test["input_series"]) > len(firing), test["name"]


def test_rules_use_only_metrics_the_worker_exports() -> None:
    known = known_metrics(TELEMETRY.read_text())
    assert "campaign_analytics_stalled_commits_total" in known
    assert metric_problems(yaml.safe_load(ALERTS.read_text()), known) == []


def test_every_alert_has_for_severity_and_a_runbook_section() -> None:
    assert rule_problems(yaml.safe_load(ALERTS.read_text()), OPERATIONS.read_text()) == []


# --- negative controls ---------------------------------------------------------


def test_negative_control_unknown_metric_is_reported() -> None:
    doc = {"groups": [{"name": "g", "rules": [
        {"alert": "Fake", "expr": "rate(campaign_analytics_no_such_metric_total[5m]) > 0"},
        {"alert": "Other", "expr": 'node_load1{job="x"} > 1'},
        {"alert": "Fine", "expr": 'up{job="x"} == 0 and '
                                  "rate(campaign_analytics_sink_batch_seconds_count[5m]) > 0"},
    ]}]}
    problems = metric_problems(doc, known_metrics(TELEMETRY.read_text()))
    assert problems == ["Fake: unknown metric campaign_analytics_no_such_metric_total",
                        "Other: series node_load1 is neither ours nor built in"]


def test_negative_control_rule_without_for_severity_or_runbook() -> None:
    doc = {"groups": [{"name": "g", "rules": [
        {"alert": "Bare", "expr": "vector(1)", "labels": {"severity": "loud"},
         "annotations": {"summary": "s", "description": "see docs/operations.md#bare"}},
    ]}]}
    problems = "\n".join(rule_problems(doc, "# Operations\n## Other\n"))
    assert "Bare: no for:" in problems
    assert "Bare: severity not one of" in problems
    assert "Bare: docs/operations.md has no section #bare" in problems
    assert "description does not link" not in problems


@pytest.mark.parametrize("alert", ["CampaignAnalyticsNoSnapshots",
                                   "CampaignAnalyticsConsumerLagGrowing"])
def test_negative_control_promtool_catches_a_broken_rule(tmp_path: Path, alert: str) -> None:
    """Keep only the first condition of a two-part rule: it then fires on the healthy
    series too (idle instance; steady lag), and the unit tests say so."""
    doc = yaml.safe_load(ALERTS.read_text())
    rule = next(r for r in rules(doc) if r["alert"] == alert)
    rule["expr"] = rule["expr"].split("and")[0]
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(doc))
    (tmp_path / ALERTS_TEST.name).write_text(ALERTS_TEST.read_text())
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


@pytest.mark.parametrize("alert", ["CampaignAnalyticsClickHouseTrailing",
                                   "CampaignAnalyticsSnapshotOverdue"])
def test_negative_control_a_threshold_of_zero_fires_on_the_healthy_series(
        tmp_path: Path, alert: str) -> None:
    """The gauges' healthy series (a few seconds' lag or wait) are not 0: a rule that
    fired on any lag at all would alert all the time, and its unit test says so."""
    doc = yaml.safe_load(ALERTS.read_text())
    rule = next(r for r in rules(doc) if r["alert"] == alert)
    rule["expr"] = re.sub(r">\s*\d+\s*$", "> 0", rule["expr"].strip())
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(doc))
    (tmp_path / ALERTS_TEST.name).write_text(ALERTS_TEST.read_text())
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr
