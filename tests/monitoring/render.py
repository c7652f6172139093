"""Draw the dashboard's panels with matplotlib from a real Prometheus (query_range of the same queries).

Grafana is not installed on the test machine; this picture is the closest honest stand-in: the
panel titles, queries, legends and units of k8s/monitoring/model-serving-dashboard.json, evaluated
by Prometheus over the end-to-end test's run. docs/img/monitoring-dashboard.png is made by it.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tests.monitoring.promstack import PrometheusAPI  # noqa: E402
from tests.monitoring.queries import DASHBOARD, substitute  # noqa: E402

PERCENT_UNITS = {"percentunit"}


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or str(labels)


def _series(api: PrometheusAPI, panel: dict, start: float, end: float, step: float,
            variables: dict[str, str]) -> list[tuple[str, list[float], list[float]]]:
    """(legend, seconds since start, values) per series; tables and stats: the value at `end`."""
    lines = []
    for target in panel["targets"]:
        expr = substitute(target["expr"], **variables)
        if panel["type"] in ("stat", "table"):
            for result in api.query(expr, at=end):
                lines.append((_legend(target.get("legendFormat", ""), result["metric"]),
                              [end - start], [float(result["value"][1])]))
            continue
        for result in api.query_range(expr, start, end, step):
            times = [float(t) - start for t, _ in result["values"]]
            values = [float(v) for _, v in result["values"]]
            lines.append((_legend(target.get("legendFormat", ""), result["metric"]), times, values))
    return lines


def _draw_heatmap(ax, lines) -> None:
    """Confidence buckets: cumulative `le` series -> per-bucket counts, time on x."""
    buckets = sorted(((math.inf if name == "+Inf" else float(name)), t, v) for name, t, v in lines)
    if not buckets:
        return
    times = buckets[0][1]
    cumulative = [values for _, _, values in buckets]
    counts = [[c - (cumulative[i - 1][j] if i else 0) for j, c in enumerate(row)]
              for i, row in enumerate(cumulative)]
    edges = [b for b, _, _ in buckets]
    ax.imshow(counts, aspect="auto", origin="lower", cmap="viridis",
              extent=(times[0], times[-1], 0, len(edges)))
    ax.set_yticks([i + 0.5 for i in range(len(edges))][::2],
                  [("inf" if math.isinf(e) else f"{e:g}") for e in edges][::2], fontsize=6)
    ax.set_ylabel("confidence <=", fontsize=7)


def _draw_panel(ax, panel: dict, lines) -> None:
    ax.set_title(panel["title"], fontsize=9)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    if not lines:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color="red", transform=ax.transAxes)
        return
    if panel["type"] == "heatmap":
        _draw_heatmap(ax, lines)
    elif panel["type"] in ("stat", "table"):
        ax.axis("off")
        text = "\n".join(f"{name}: {values[-1]:.4g}" for name, _, values in lines[:10])
        ax.text(0.02, 0.95, text, va="top", fontsize=8, family="monospace", transform=ax.transAxes)
        return
    else:
        for name, times, values in lines[:12]:
            ax.plot(times, values, label=name, linewidth=1.2)
        ax.legend(fontsize=6, loc="best")
    ax.set_xlabel("seconds into the test run", fontsize=7)
    if unit in PERCENT_UNITS:
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    elif unit not in ("short",):
        ax.set_ylabel(unit, fontsize=7)
    ax.tick_params(labelsize=6)


def render_dashboard(api: PrometheusAPI, out: Path, start: float, end: float,
                     variables: dict[str, str], dashboard_file: Path = DASHBOARD) -> list[str]:
    """Write the PNG; returns the titles of panels that had no data (should be none)."""
    panels = [p for p in json.loads(dashboard_file.read_text())["panels"] if p["type"] != "row"]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows))
    step = max(1.0, (end - start) / 120)
    empty = []
    for ax, panel in zip(axes.flat, panels):
        lines = _series(api, panel, start, end, step, variables)
        empty += [] if lines else [panel["title"]]
        _draw_panel(ax, panel, lines)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    title = json.loads(dashboard_file.read_text())["title"]
    fig.suptitle(f"{title}  (model={variables['model']}, version=All; rendered from Prometheus "
                 f"by tests/monitoring/test_e2e.py)", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return empty
