"""Offline checks of k8s/monitoring: promtool check/test rules, generated files fresh, dashboard sane."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts import gen_monitoring
from serving.metrics import REGISTRY
from tests.monitoring.queries import (DASHBOARD, MONITORING, RULES, alert_rules, panel_queries,
                                      substitute, template_variables)
from trainer.pushmetrics import build_registry

HERE = Path(__file__).resolve().parent
REQUIRED_ALERTS = {"ServingHighP99Latency", "ServingHighErrorRatio", "ServingNoAvailableVersion",
                   "ServingRepeatedLoadFailures", "ServingOnlineAccuracyBelowEval", "RetrainJobFailed"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module", autouse=True)
def _debs(prometheus_debs) -> None:
    """promtool comes with Debian's prometheus package."""


def test_plain_rules_file_passes_promtool_check():
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", str(RULES)).stdout


def test_prometheusrule_groups_pass_promtool_check(tmp_path):
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1" and resource["kind"] == "PrometheusRule"
    extracted = tmp_path / "groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}))
    promtool("check", "rules", str(extracted))
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_alert_unit_tests_pass_promtool_test_rules():
    assert "SUCCESS" in promtool("test", "rules", str(HERE / "rules_test.yml")).stdout


def test_every_required_alert_exists_and_has_a_unit_test():
    names = {rule["alert"] for rule in alert_rules()}
    assert names == REQUIRED_ALERTS
    tested = {case["alertname"] for test in yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == REQUIRED_ALERTS


def test_generated_files_are_up_to_date():
    assert gen_monitoring.main(["--check"]) == 0, "run python -m scripts.gen_monitoring"


def test_configmap_wraps_the_dashboard_for_grafanas_sidecar():
    import json

    configmap = yaml.safe_load((MONITORING / "grafana-dashboard-configmap.yaml").read_text())
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (name, body), = configmap["data"].items()
    assert name.endswith(".json") and json.loads(body) == json.loads(DASHBOARD.read_text())


def test_dashboard_has_model_and_version_variables():
    variables = {v["name"]: v for v in template_variables()}
    assert {"model", "version"} <= variables.keys()
    assert variables["version"]["includeAll"] and variables["version"]["multi"]


def _metric_names(registry) -> set[str]:
    names = set()
    for family in registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def test_queries_use_only_defined_metrics_and_show_every_metric():
    """Typos in a metric name would match nothing; every metric defined should be on a panel."""
    figures = {"stage_accuracy": {"s": 1}, "stage_duration_seconds": {"s": 1},
               "images_per_second": {"s": 1}, "version": 1}
    defined = _metric_names(REGISTRY) | _metric_names(build_registry(figures))
    used = {name for q in panel_queries() for name in re.findall(r"\b(?:serving|trainer)_\w+", q.expr)}
    used_by_rules = {name for rule in alert_rules()
                     for name in re.findall(r"\b(?:serving|trainer)_\w+", rule["expr"])}
    assert used | used_by_rules <= defined, (used | used_by_rules) - defined
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in defined}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert families <= shown, f"metrics on no panel: {families - shown}"


def test_every_dashboard_query_parses(tmp_path):
    """Offline syntax check: each substituted panel query as a recording rule through promtool."""
    queries = panel_queries()
    assert len(queries) >= 20
    rules = [{"record": f"panel:query_{i}", "expr": substitute(q.expr, model="m")}
             for i, q in enumerate(queries)]
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    promtool("check", "rules", str(rules_file))
