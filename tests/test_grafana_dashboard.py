"""cluster/grafana/orloj-ray-dashboard.json, offline: valid dashboard JSON whose every query names
series that exist, with the Ray prefix only on series the supervisors export through Ray."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orloj_ray.observability import TaskMetrics
from orloj_ray.observability.store_metrics import store_snapshot

DASHBOARD = Path(__file__).resolve().parent.parent / "cluster" / "grafana" / "orloj-ray-dashboard.json"
SERIES = re.compile(r"(\$\{prefix\})?\b(orloj_[a-z_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _families():
    exported = {f.name: f.kind for f in TaskMetrics().registry.families()}
    derived = {f["name"]: f["kind"] for f in store_snapshot([], 0)["families"]}
    return exported, derived


def _base(name: str, kinds: dict) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and kinds.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def test_every_panel_query_names_an_existing_series_and_every_series_has_a_panel():
    doc = json.loads(DASHBOARD.read_text())
    exported, derived = _families()
    kinds = {**exported, **derived}
    assert doc["uid"] and doc["title"] and doc["panels"]
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "prefix"}
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = SERIES.findall(target["expr"])
            assert found, (panel["title"], target["expr"])
            for prefix, name in found:
                base = _base(name, kinds)
                assert base in kinds, (panel["title"], name)
                if name != base:
                    assert kinds[base] == "histogram"
                # Ray's export holds what the supervisors record; Store-derived series are only on /metrics
                assert bool(prefix) == (base in exported), (panel["title"], name)
                used.add(base)
    assert set(kinds) - used == {"orloj_events_last_id"}
