"""The Grafana dashboard (helm/visearch/files/dashboard.json) shows one install at a time and has the panels an
on-call engineer needs: every query is scoped by the namespace and release variables, and the SLO, freshness,
lag and saturation panels query what their titles say (the metric names themselves are checked by
deploy/tools/check_metric_names.py, run by check-chart.sh)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "helm" / "visearch" / "files" / "dashboard.json").read_text())
TARGETS = [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p["targets"]]
# A series selector: a metric name and its matchers (PromQL keywords never precede a brace).
SELECTOR = re.compile(r"(?<![\w:])((?:visearch|nv|kube|container)[\w:]*|up)(\{[^}]*\})?")
SCOPED = 'namespace="$namespace",release="$release"'
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)")  # label lists, not series


def panel(title_part: str) -> dict:
    (found,) = [p for p in DASHBOARD["panels"] if title_part in p["title"]]
    return found


def test_namespace_and_release_variables():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["namespace"]["type"] == variables["release"]["type"] == "query"
    assert "namespace" in variables["namespace"]["definition"]
    assert "$namespace" in variables["release"]["definition"] and "release" in variables["release"]["definition"]


def test_every_query_is_scoped_to_the_selected_install():
    """visearch and Triton series (the ServiceMonitor's namespace and release labels) by both variables; Kubernetes
    series (kube-state-metrics, cAdvisor: no release label) by namespace, and kept to the release's pods by a join
    on its scrape targets (or its autoscalers' names)."""
    problems = []
    for title, expr in TARGETS:
        for name, matchers in SELECTOR.findall(GROUPING.sub("", expr)):
            if not matchers:
                problems.append(f"{title}: {name} without matchers")
            elif name.startswith(("kube_", "container_")):
                scoped = 'namespace="$namespace"' in matchers and (
                    f"and on (namespace, pod) up{{{SCOPED}}}" in expr or "$release-" in matchers
                )
                if not scoped:
                    problems.append(f"{title}: {name}{matchers} not kept to the release")
            elif SCOPED not in matchers:
                problems.append(f"{title}: {name}{matchers} lacks {SCOPED}")
    assert not problems, "\n".join(problems)


def test_panel_ids_are_unique_and_panels_do_not_overlap():
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_slo_freshness_lag_and_saturation_panels():
    for slo, metric in (
        ("search latency", 'le="0.5"'),
        ("search availability", "grpc_code=~"),
        ("ingest freshness", "visearch_ingest_freshness_seconds_bucket"),
    ):
        (target,) = panel(f"Error budget left, {slo}")["targets"]
        assert metric in target["expr"] and "[30d]" in target["expr"], slo
    freshness = " ".join(t["expr"] for t in panel("Ingest freshness p50 / p99")["targets"])
    assert "histogram_quantile(0.5," in freshness and "histogram_quantile(0.99," in freshness
    assert "visearch_ingest_freshness_seconds_bucket" in freshness
    assert "visearch_kafka_consumer_lag_records" in panel("Consumer lag by group")["targets"][0]["expr"]
    assert "visearch_kafka_consumer_lag_seconds" in panel("Oldest waiting record")["targets"][0]["expr"]
    for title, metric in (
        ("CPU throttling", "container_cpu_cfs_throttled_periods_total"),
        ("Memory working set / limit", "kube_pod_container_resource_limits"),
        ("Replicas / autoscaler maximum", "kube_horizontalpodautoscaler_spec_max_replicas"),
        ("Container restarts", "kube_pod_container_status_restarts_total"),
    ):
        assert metric in panel(title)["targets"][0]["expr"], title


def test_queue_time_panels_query_queue_time():
    """A panel named for queue time queries Triton's queue duration (it once showed request rates only)."""
    queue_panels = [p for p in DASHBOARD["panels"] if "queue" in p["title"].lower()]
    assert queue_panels
    for p in queue_panels:
        assert all("nv_inference_queue_duration_us" in t["expr"] for t in p["targets"]), p["title"]
