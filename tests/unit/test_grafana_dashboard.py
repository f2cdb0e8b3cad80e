"""The Grafana dashboard in deploy/ charts every family /metrics exports, and only those."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from support import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "switchboard.json"


def test_every_family_has_a_panel_and_every_query_names_a_family() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {name for expr in exprs for name in re.findall(r"switchboard_\w+", expr)}
    queried = {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(metrics.render(queue_depth=0).decode())
        if family.name.startswith("switchboard_")
    }
    assert queried == exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
