#!/usr/bin/env python3
"""Fail when an alert rule or dashboard query uses a metric that nothing exports.

Known names: every metric declared in shared/metrics.py (with the _bucket/_sum/_count/_total series
prometheus_client derives, and the gauges of custom collectors, declared there as CollectedMetric), Triton's own
nv_* series, `up`, the recording rules alerts.yaml defines, and the few Kubernetes series listed in EXTERNAL
(kube-state-metrics and the kubelet's cAdvisor, which kube-prometheus-stack scrapes): by name, so a typo fails.
Usage: check_metric_names.py ALERTS.yaml DASHBOARD.json
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "deriv",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "avg",
    "max",
    "min",
    "count",
    "topk",
    "bottomk",
    "abs",
    "delta",
    "offset",
    "bool",
    "le",
    "time",
    "vector",
    "scalar",
    "absent",
    "label_replace",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "predict_linear",
    "quantile",
    "group",
}

# Series of other exporters that the alerts and the dashboard use (docs/operations.md#slos, saturation panels).
EXTERNAL = {
    # kube-state-metrics
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_pod_container_resource_limits",
    "kube_pod_container_status_restarts_total",
    # cAdvisor (kubelet /metrics/cadvisor)
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_memory_working_set_bytes",
}


def exported() -> set[str]:
    names: set[str] = set()
    tree = ast.parse((ROOT / "shared" / "metrics.py").read_text())
    for node in ast.walk(tree):
        kind = getattr(node.func, "id", "") if isinstance(node, ast.Call) else ""
        if kind == "CollectedMetric":
            names.add(node.args[0].value)  # a gauge a collector yields at scrape time
        elif kind in ("Counter", "Gauge", "Histogram", "Summary"):
            name = node.args[0].value
            if kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "Counter":
                names |= {name if name.endswith("_total") else f"{name}_total"}
            else:
                names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"(?<![a-zA-Z0-9_:])\d+(\.\d+)?([eE][-+]?\d+)?", "0", expr)  # drop numbers (1e-9)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        after = expr[m.end() :].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        if re.fullmatch(r"\d.*|e\d+", word):
            continue
        names.add(word)
    return names


def main(alerts: str, dashboard: str) -> int:
    known = exported()
    rules = yaml.safe_load(Path(alerts).read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [(f"{alerts}: {r.get('alert') or r.get('record')}", r["expr"]) for g in rules["groups"] for r in g["rules"]]

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    board = json.loads(Path(dashboard).read_text())
    exprs += [(f"{dashboard}: panel query", e.replace("$__rate_interval", "5m")) for e in walk(board)]
    bad, used = [], set()
    for where, expr in exprs:
        for name in metric_names(expr):
            used.add(name)
            if name in known or name in recorded or name in EXTERNAL or name.startswith("nv_") or name == "up":
                continue
            bad.append(f"{where}: unknown metric {name!r}")
    for line in bad:
        print(line, file=sys.stderr)
    print(f"{len(exprs)} expressions, {len(used)} metric names; {len(bad)} unknown")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
