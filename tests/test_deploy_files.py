"""deploy/: the Grafana dashboard and the Prometheus alert rules are well formed (no server needed; the
names they reference are checked against a live scrape in tests/e2e/test_metrics_e2e.py)."""

from __future__ import annotations

import json
import re

from tests.metrics_support import DASHBOARD, dashboard_exprs, rule_exprs


def test_dashboard_panels_have_unique_ids_and_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] and panel["title"] for panel in dashboard["panels"])
    assert dashboard["uid"] == "tollway"


def test_queries_are_balanced_and_name_tollway_metrics() -> None:
    for expr in dashboard_exprs() + rule_exprs():
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), expr
        assert re.search(r"\btollway_[a-z0-9_]+", expr), expr
