"""The Grafana dashboard (deploy/grafana/dashboards/campaign-analytics.json): its
panels query only metrics the worker exports, show every metric an alert rule uses
and each of issue 19 item 6's freshness metrics, and lie on the grid without
overlapping. Negative controls: a broken copy of the dashboard is reported."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy.test_alerts import ALERTS, TELEMETRY, known_metrics, rules

DASHBOARD = (Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dashboards"
             / "campaign-analytics.json")
FRESHNESS = {"campaign_analytics_consumer_lag", "campaign_analytics_sink_lag_records",
             "campaign_analytics_sink_lag_seconds", "campaign_analytics_clickhouse_rows",
             "campaign_analytics_snapshot_age_seconds",
             "campaign_analytics_snapshot_pending_seconds"}


def metrics_in(expr: str) -> set[str]:
    names = set(re.findall(r"\bcampaign_analytics_[a-z0-9_]+", expr))
    names |= {"up"} if re.search(r"\bup\{", expr) else set()
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def shown(dashboard: dict[str, Any]) -> set[str]:
    return {m for p in dashboard["panels"] for t in p.get("targets", [])
            for m in metrics_in(t["expr"])}


def dashboard_problems(dashboard: dict[str, Any], known: set[str], alerting: set[str]
                       ) -> list[str]:
    problems = []
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids repeat: {sorted(ids)}")
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"{p['title']}: outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{p['title']} overlaps {cells[x, y]}")
                    break
                cells[x, y] = p["title"]
            else:
                continue
            break
        if p["type"] != "row" and not p.get("targets"):
            problems.append(f"{p['title']}: no query")
        for t in p.get("targets", []):
            for m in metrics_in(t["expr"]) - known - {"up"}:
                problems.append(f"{p['title']}: unknown metric {m}")
    for m in sorted((alerting | FRESHNESS) - shown(dashboard)):
        problems.append(f"no panel shows {m}")
    return problems


def alert_metrics() -> set[str]:
    return {m for r in rules(yaml.safe_load(ALERTS.read_text())) for m in metrics_in(r["expr"])}


def test_dashboard_has_no_problems() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert "campaign_analytics_sink_lag_seconds" in alert_metrics()
    assert dashboard_problems(dashboard, known_metrics(TELEMETRY.read_text()),
                              alert_metrics()) == []


def test_the_freshness_row_holds_the_freshness_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    row = next(i for i, p in enumerate(panels) if p["type"] == "row"
               and p["title"].startswith("Freshness"))
    below = {"panels": panels[row + 1:]}  # the last row: everything after it
    assert shown(below) == FRESHNESS - {"campaign_analytics_consumer_lag"}


def test_negative_control_a_broken_dashboard_is_reported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    broken = copy.deepcopy(dashboard)
    freshness = [p for p in broken["panels"] if "campaign_analytics_clickhouse_rows" in
                 json.dumps(p.get("targets", []))]
    broken["panels"].remove(freshness[0])
    broken["panels"][1]["gridPos"] = dict(broken["panels"][0]["gridPos"])
    broken["panels"][2]["targets"][0]["expr"] = "rate(campaign_analytics_nope_total[1m])"
    problems = dashboard_problems(broken, known_metrics(TELEMETRY.read_text()),
                                  alert_metrics())
    titles = [p["title"] for p in dashboard["panels"]]
    assert problems == [f"{titles[1]} overlaps {titles[0]}",
                        f"{titles[2]}: unknown metric campaign_analytics_nope_total",
                        "no panel shows campaign_analytics_clickhouse_rows"], problems
