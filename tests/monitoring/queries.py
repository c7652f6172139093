"""Every PromQL expression the monitoring ships: the dashboard's panel queries and the alert rules.

Read from the checked-in files (k8s/monitoring/model-serving-dashboard.json and rules.yml), not
from the generator, so what is tested is exactly what Grafana and Prometheus get. Template
variables are substituted the way Grafana does for a chosen model, version "All" and a window.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
DASHBOARD = MONITORING / "model-serving-dashboard.json"
RULES = MONITORING / "rules.yml"


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str
    legend: str


def panel_queries(dashboard_file: Path = DASHBOARD) -> list[PanelQuery]:
    dashboard = json.loads(dashboard_file.read_text())
    return [PanelQuery(panel["title"], target["refId"], target["expr"], target.get("legendFormat", ""))
            for panel in dashboard["panels"] if panel["type"] != "row"
            for target in panel["targets"]]


def template_variables(dashboard_file: Path = DASHBOARD) -> list[dict]:
    return json.loads(dashboard_file.read_text())["templating"]["list"]


def variable_queries(dashboard_file: Path = DASHBOARD) -> list[str]:
    """The label_values(...) queries of the query-type template variables."""
    return [v["query"]["query"] for v in template_variables(dashboard_file) if v["type"] == "query"]


def substitute(expr: str, model: str, version: str = ".*", window: str = "1h",
               rate_interval: str = "1m") -> str:
    """What Grafana sends for model=`model`, version=All (its allValue `.*`) and `window`."""
    values = {"model": model, "version": version, "window": window, "__rate_interval": rate_interval}
    result = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
    return result


def alert_rules(rules_file: Path = RULES) -> list[dict]:
    return [rule for group in yaml.safe_load(rules_file.read_text())["groups"] for rule in group["rules"]]
