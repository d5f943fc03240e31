"""Reading a Prometheus scrape in tests: parsed with prometheus_client's own text parser."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "tollway.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    """Every sample of a scrape by (sample name, labels); a series twice is an error."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, f"{key} twice"
            series[key] = sample.value
    return series


def families(text: str) -> dict[str, str]:
    """Family name → type, and every sample name → its family's type (what PromQL can reference)."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        names[family.name] = family.type
        # A family without samples yet still names its series: a counter's _total, a histogram's parts.
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        for suffix in suffixes.get(family.type, ()):
            names[family.name + suffix] = family.type
        for sample in family.samples:
            names[sample.name] = family.type
    return names


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs and all(exprs)
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    exprs = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"warning", "critical"}
            exprs.append(str(rule["expr"]))
    return exprs
