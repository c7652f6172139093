"""Generate the monitoring manifests in k8s/monitoring/ (`python -m scripts.gen_monitoring`).

Sources of truth, each in one place:
- the dashboard: the panel list below (queries, units, layout) -> `dashboard.json`, the JSON a
  Grafana user imports, and `grafana-dashboard-configmap.yaml`, the same JSON in a ConfigMap
  labelled `grafana_dashboard: "1"` so Grafana's sidecar provisions it;
- the alert rules: `rules.yml` (a plain Prometheus rules file, edited by hand) ->
  `prometheusrule.yaml`, the same groups as a Prometheus Operator `PrometheusRule`.

WHY generated: the JSON a dashboard needs (ids, grid positions, datasource references, template
variables) is long and repetitive; the panels are not. `--check` (and tests/monitoring) fails when
a checked-in file differs from what this script writes, so the wrappers cannot drift.

Every query uses the metric names of serving/metrics.py and trainer/pushmetrics.py only, and the
template variables `$model`, `$version` (multi, "All" = `.*`), `$window` (online accuracy window)
and Grafana's `$__rate_interval`. tests/monitoring/test_e2e.py runs each one against a real
Prometheus and fails on a panel without data.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "k8s" / "monitoring"
DASHBOARD_UID = "model-serving"
DASHBOARD_FILE = "model-serving-dashboard.json"

# Selector fragments shared by the queries.
MV = 'model="$model", version=~"$version"'
M = 'model="$model"'
MODEL_APIS = 'api=~"predict|classify|classify_image"'
RI = "$__rate_interval"


@dataclass
class Query:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    title: str
    queries: list[Query]
    description: str
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    options: dict = field(default_factory=dict)


def _quantiles(metric: str, selector: str, qs: tuple[float, ...], by: str = "") -> list[Query]:
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return [Query(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RI}])))",
                  f"{prefix}p{round(q * 100)}") for q in qs]


ROWS: list[tuple[str, list[Panel]]] = [
    ("Traffic and latency", [
        Panel("Request rate by version and outcome",
              [Query(f"sum by (version, outcome) (rate(serving_requests_total{{{MV}}}[{RI}]))",
                     "v{{version}} {{outcome}}")],
              "Requests per second, REST and gRPC together. version is empty for requests that "
              "failed before a version was chosen (unknown version, bad model name).", unit="reqps"),
        Panel("Request rate by API and protocol",
              [Query(f"sum by (api, protocol) (rate(serving_requests_total{{{MV}}}[{RI}]))",
                     "{{protocol}} {{api}}")],
              "Which endpoints are used, over which protocol.", unit="reqps"),
        Panel("Latency p50 / p95 / p99 (model requests)",
              _quantiles("serving_request_duration_seconds", f"{MV}, {MODEL_APIS}", (0.5, 0.95, 0.99)),
              "Server-side latency of requests that run the model (predict, classify, classify_image), "
              "from the histogram, so quantiles aggregate correctly across replicas.", unit="s"),
        Panel("Error ratio by outcome",
              [Query(f"sum by (outcome) (rate(serving_requests_total{{{MV}, outcome!=\"ok\"}}[{RI}]))"
                     f" / ignoring (outcome) group_left sum(rate(serving_requests_total{{{MV}}}[{RI}]))",
                     "{{outcome}}")],
              "Share of requests ending in each error outcome. Client errors (invalid_argument, "
              "not_found) and server errors (unavailable, internal, resource_exhausted) are told "
              "apart by the outcome label; the alert fires on server errors only.",
              unit="percentunit"),
        Panel("Batch size",
              _quantiles("serving_batch_size", MV, (0.5, 0.95))
              + [Query(f"sum(rate(serving_batch_size_sum{{{MV}}}[{RI}])) / "
                       f"sum(rate(serving_batch_size_count{{{MV}}}[{RI}]))", "mean")],
              "Items per batch the batcher ran on the model: near 1 under light load, growing "
              "toward max_batch_size under concurrency."),
        Panel("Queue wait p50 / p99",
              _quantiles("serving_queue_wait_seconds", MV, (0.5, 0.99)),
              "Time a request waited in the batch queue before its batch ran.", unit="s"),
    ]),
    ("Versions", [
        Panel("Versions and their states",
              [Query(f"max by (version, state) (serving_model_version_state{{{MV}}}) == 1",
                     "v{{version}} {{state}}")],
              "The current state of each version the server knows (TF Serving's START, LOADING, "
              "AVAILABLE, UNLOADING, END).", kind="table", width=8,
              options={"format": "table", "instant": True}),
        Panel("Model load duration (mean per version)",
              [Query(f"max by (version) (serving_model_load_duration_seconds_sum{{{MV}}} / "
                     f"serving_model_load_duration_seconds_count{{{MV}}})", "v{{version}}")],
              "Load, signature check and warm-up time of each version.", unit="s", width=8),
        Panel("Load failures (since server start)",
              [Query(f"sum by (version) (serving_model_load_failures_total{{{M}}})", "v{{version}}")],
              "Failed load attempts per version; the previous version keeps serving. Repeated "
              "failures raise ServingRepeatedLoadFailures.", width=8),
        Panel("Runtime per version",
              [Query(f"max by (version, runtime, precision) (serving_model_runtime_info{{{MV}}}) == 1",
                     "v{{version}} {{runtime}} {{precision}}")],
              "What runs each loaded version: LiteRT once its fast form agreed with the SavedModel, "
              "else TensorFlow (docs/serving.md, \"Runtimes\").", kind="table", width=12,
              options={"format": "table", "instant": True}),
        Panel("Runtime fallbacks (since server start)",
              [Query(f"sum by (version, cause) (serving_model_runtime_fallbacks_total{{{M}}}) or "
                     f"sum by (version) (serving_model_runtime_info{{{M}}}) * 0",
                     "v{{version}} {{cause}}")],
              "Versions served on a slower runtime or precision than configured, by cause "
              "(conversion_failed, invalid_form, mismatch, precision_refused, no_contract); 0 for a "
              "loaded version served as asked. The reason is in the model status and the log.",
              width=12),
    ]),
    ("Accuracy and drift", [
        Panel("Evaluation accuracy per version (offline)",
              [Query(f"max by (version, stage) (serving_model_eval_accuracy{{{MV}}})",
                     "v{{version}} {{stage}}")],
              "Accuracy measured by the trainer on held-out data when the version was built "
              "(metadata.json). Fixed for the life of a version.", unit="percentunit"),
        Panel("Online accuracy over $window (from feedback)",
              [Query(f"sum by (version) (increase(serving_feedback_correct_total{{{MV}}}[$window])) / "
                     f"sum by (version) (increase(serving_feedback_total{{{MV}}}[$window]))",
                     "v{{version}} online"),
               Query(f"max by (version) (serving_model_eval_accuracy{{{MV}, stage=\"stage2\"}}) or "
                     f"max by (version) (serving_model_eval_accuracy{{{MV}, stage=\"stage1\"}})",
                     "v{{version}} evaluation")],
              "Share of labelled predictions (POST :feedback) whose top-1 label was right, next to "
              "the version's evaluation accuracy. A gap means production data differs from the "
              "evaluation set.", unit="percentunit"),
        Panel("Labelled predictions over $window",
              [Query(f"sum by (version) (increase(serving_feedback_total{{{MV}}}[$window]))",
                     "v{{version}}")],
              "How much feedback the online accuracy rests on.", width=8),
        Panel("Confidence distribution",
              [Query(f"sum by (le) (increase(serving_prediction_confidence_bucket{{{MV}}}[{RI}]))",
                     "{{le}}")],
              "Top-1 scores of recent predictions (histogram buckets). Mass moving to low "
              "confidence is an early sign of drift, before any feedback arrives.", kind="heatmap",
              width=8, options={"format": "heatmap"}),
        Panel("Median top-1 confidence per version",
              _quantiles("serving_prediction_confidence", MV, (0.5,), by="version"),
              "Median of the top-1 score per version.", unit="percentunit", width=8),
        Panel("Predicted-label distribution",
              [Query(f"sum by (label) (rate(serving_predicted_label_total{{{MV}}}[{RI}])) / "
                     f"ignoring (label) group_left sum(rate(serving_predicted_label_total{{{MV}}}[{RI}]))",
                     "{{label}}")],
              "Share of each predicted class. A shift against the training class balance is drift.",
              unit="percentunit", width=24),
    ]),
    ("Retraining and training runs", [
        Panel("Retrain jobs (since server start)",
              [Query(f"sum by (backend, state) (serving_retrain_jobs_total{{{M}}})", "{{backend}} {{state}}"),
               Query(f"sum(serving_retrain_jobs_running{{{M}}})", "running")],
              "Finished retrain jobs by backend and state, and jobs running now.", width=8),
        Panel("Trainer: stage accuracy (last run)",
              [Query(f"max by (stage) (trainer_stage_accuracy{{{M}}})", "{{stage}}")],
              "Validation accuracy at the end of each stage, pushed by the trainer to the Pushgateway.",
              unit="percentunit", width=8),
        Panel("Trainer: images/s and stage duration (last run)",
              [Query(f"max by (stage) (trainer_images_per_second{{{M}}})", "{{stage}} images/s"),
               Query(f"max by (stage) (trainer_stage_duration_seconds{{{M}}})", "{{stage}} seconds")],
              "Training throughput and wall time of each stage.", width=8),
        Panel("Trainer: last version exported",
              [Query(f"max(trainer_last_version{{{M}}})", "version")],
              "Version number written by the last successful training run.", kind="stat", width=12,
              height=5),
        Panel("Trainer: time since last successful run",
              [Query(f"time() - max(trainer_last_success_timestamp_seconds{{{M}}})", "age")],
              "Seconds since the last training run pushed its figures.", kind="stat", unit="s",
              width=12, height=5),
    ]),
]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    instant = panel.options.get("instant", False)
    fmt = panel.options.get("format", "time_series")
    targets = [{"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": q.expr,
                "legendFormat": q.legend, "format": fmt, "instant": instant, "range": not instant}
               for i, q in enumerate(panel.queries)]
    body = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE, "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True}},
    }
    if panel.kind == "heatmap":
        body["options"] = {"calculate": False, "yAxis": {"unit": "percentunit"},
                           "cellValues": {"unit": "short"}}
    if panel.kind == "table":
        body["transformations"] = [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True}}}]
    return body


def _variables() -> list[dict]:
    def query_var(name: str, query: str, **extra) -> dict:
        return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
                "definition": query, "query": {"query": query, "refId": name}, "refresh": 2,
                "sort": 3, **extra}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
        query_var("model", "label_values(serving_model_version_state, model)"),
        query_var("version", 'label_values(serving_model_version_state{model="$model"}, version)',
                  multi=True, includeAll=True, allValue=".*",
                  current={"selected": True, "text": ["All"], "value": ["$__all"]}),
        {"name": "window", "label": "accuracy window", "type": "custom", "query": "1h,6h,24h,7d",
         "current": {"selected": True, "text": "1h", "value": "1h"},
         "options": [{"selected": w == "1h", "text": w, "value": w} for w in ("1h", "6h", "24h", "7d")]},
    ]


def dashboard() -> dict:
    """The Grafana dashboard model (schema of Grafana 10/11), rows laid out top to bottom."""
    panels, panel_id, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id, y, x, row_height = panel_id + 1, y + 1, 0, 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id, x, row_height = panel_id + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": DASHBOARD_UID, "title": "Model serving: latency, accuracy, drift",
        "description": "Transfer-learning model service: traffic, latency, versions, offline vs online "
                       "accuracy, drift signals, retraining. Generated by scripts/gen_monitoring.py.",
        "tags": ["model-serving", "ml"], "timezone": "utc", "editable": True, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()}, "annotations": {"list": []}, "panels": panels,
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, the dashboard JSON) as readable `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def _dump_yaml(document: dict) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=100, allow_unicode=True)


def rendered_files() -> dict[str, str]:
    """File name -> content of every generated file in k8s/monitoring/."""
    dashboard_json = json.dumps(dashboard(), indent=2) + "\n"
    labels = {"app.kubernetes.io/name": "model-serving", "app.kubernetes.io/component": "monitoring"}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "model-serving-dashboard",
                              "labels": {**labels, "grafana_dashboard": "1"}},
                 "data": {DASHBOARD_FILE: dashboard_json}}
    rules = yaml.safe_load((OUT / "rules.yml").read_text())
    prometheus_rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                       "metadata": {"name": "model-serving-alerts", "labels": labels},
                       "spec": {"groups": rules["groups"]}}
    header = "# Generated by `python -m scripts.gen_monitoring` from {}; do not edit by hand.\n"
    return {
        DASHBOARD_FILE: dashboard_json,
        "grafana-dashboard-configmap.yaml": header.format("the panel list in scripts/gen_monitoring.py")
                                            + _dump_yaml(configmap),
        "prometheusrule.yaml": header.format("k8s/monitoring/rules.yml") + _dump_yaml(prometheus_rule),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gen_monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="fail if a checked-in file differs instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, content in rendered_files().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(name)
        else:
            path.write_text(content)
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m scripts.gen_monitoring", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
