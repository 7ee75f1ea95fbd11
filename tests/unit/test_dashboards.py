"""Dashboards ready for kube-prometheus-stack: a ``$datasource`` variable everywhere (no hard-coded uid),
ConfigMaps for the Grafana sidecar in sync with the dashboards, annotations for congestion events and
preemption bursts that query exported metrics, and a ``runbook_url`` on every alert rule pointing at an anchor
of docs/operators-guide.md that exists. Whether each query returns data against a real Prometheus is
tests/integration/test_prometheus.py's job (it evaluates the annotation queries too)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.metrics import Metrics
from scheduler.models import load_site

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "deploy" / "grafana" / "dashboards"
CM_DIR = ROOT / "deploy" / "grafana" / "configmaps"
GUIDE = ROOT / "docs" / "operators-guide.md"
RULE_FILES = [ROOT / "deploy" / "prometheus" / "alerts.yml", ROOT / "deploy" / "kuberay" / "prometheusrule.yaml"]
DS = {"type": "prometheus", "uid": "${datasource}"}


def _render() -> Any:
    spec = importlib.util.spec_from_file_location("render_dashboard", ROOT / "scripts" / "render_dashboard.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rd = _render()


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASH_DIR.glob("*.json"))}


def _datasources(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every ``datasource`` value anywhere in the dashboard, with where it sits."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "datasource":
                out.append((f"{path}.{k}", v))
            else:
                out += _datasources(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _datasources(v, f"{path}[{i}]")
    return out


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return Metrics(site=load_site("rotterdam-100k")).names()


# ----------------------------------------------------------------------------------------- $datasource


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_query_goes_through_the_datasource_variable(name: str) -> None:
    dash = dashboards()[name]
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert dash["templating"]["list"][0] is var  # first, so the other variables can use it
    found = _datasources(dash)
    assert len(found) > 10
    for where, ds in found:
        assert ds == DS, f"{name}{where}: {ds} (a hard-coded datasource breaks on any Grafana but ours)"
    assert "windward-prometheus" not in (DASH_DIR / name).read_text()


def test_the_datasource_check_catches_a_hard_coded_uid() -> None:
    dash = json.loads(json.dumps(dashboards()["pools.json"]))
    panel = next(p for p in dash["panels"] if p.get("targets"))
    panel["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    assert [w for w, ds in _datasources(dash) if ds != DS] == [
        f".panels[{dash['panels'].index(panel)}].targets[0].datasource"
    ]


# ------------------------------------------------------------------------------------------ annotations


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_congestion_and_preemption_burst_annotations(name: str, exported: set[str]) -> None:
    anns = {a["name"]: a for a in dashboards()[name]["annotations"]["list"]}
    assert set(anns) >= {"Congestion events", "Preemption bursts"}
    assert "windward_congestion_active" in anns["Congestion events"]["expr"]
    assert "windward_preemptions_total" in anns["Preemption bursts"]["expr"]
    for a in anns.values():
        assert a["enable"] and a["datasource"] == DS and a["titleFormat"]
        for metric in re.findall(r"\bwindward_[a-z0-9_]+\b", a["expr"]):
            assert metric in exported, f"{name}: annotation {a['name']} queries {metric}, never exported"


# ------------------------------------------------------------------------------------------ ConfigMaps


def test_configmaps_are_in_sync_with_the_dashboards() -> None:
    want = rd.configmap_files(DASH_DIR)
    have = {p.name: p.read_text() for p in CM_DIR.glob("*.yaml")}
    stale = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    assert not stale, (
        f"out of date: {stale}; run: python scripts/render_dashboard.py --configmaps deploy/grafana/configmaps"
    )


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_each_configmap_carries_its_dashboard_for_the_sidecar(name: str) -> None:
    cm = yaml.safe_load((CM_DIR / name.replace(".json", ".yaml")).read_text())
    assert (cm["apiVersion"], cm["kind"]) == ("v1", "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # the string "1": the sidecar matches text
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Windward"
    assert "namespace" not in cm["metadata"]
    assert json.loads(cm["data"][name]) == dashboards()[name]
    assert len(json.dumps(cm)) < 1_000_000  # a ConfigMap holds at most 1 MiB
    kust = yaml.safe_load((CM_DIR / "kustomization.yaml").read_text())
    assert name.replace(".json", ".yaml") in kust["resources"]


def test_the_sync_check_fails_on_an_edited_dashboard(tmp_path: Path) -> None:
    dash_dir, out = tmp_path / "dashboards", tmp_path / "cm"
    dash_dir.mkdir()
    for p in DASH_DIR.glob("*.json"):
        (dash_dir / p.name).write_text(p.read_text())
    files = ["kustomization.yaml", "pools.yaml", "scheduler.yaml", "site-overview.yaml", "tenants.yaml"]
    assert rd.write_configmaps(out, dashboard_dir=dash_dir) == files
    assert rd.write_configmaps(out, check=True, dashboard_dir=dash_dir) == []
    d = json.loads((dash_dir / "pools.json").read_text())
    d["title"] = "changed"
    (dash_dir / "pools.json").write_text(json.dumps(d, indent=2))
    assert rd.write_configmaps(out, check=True, dashboard_dir=dash_dir) == ["pools.yaml"]
    (out / "old.yaml").write_text("x")
    assert rd.write_configmaps(out, dashboard_dir=dash_dir) == ["old.yaml", "pools.yaml"]
    assert not (out / "old.yaml").exists()


# ------------------------------------------------------------------------------------------- runbooks


def _anchors(md: str) -> set[str]:
    """Explicit ``<a id=...>`` anchors and GitHub's heading anchors."""
    ids = set(re.findall(r'<a id="([^"]+)"', md))
    for h in re.findall(r"^#+\s+(.+)$", md, flags=re.M):
        ids.add(re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-"))
    return ids


def _rules(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    groups = (
        docs[0]["groups"]
        if "groups" in docs[0]
        else next(d for d in docs if d.get("kind") == "PrometheusRule")["spec"]["groups"]
    )
    return [r for g in groups for r in g["rules"]]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_a_runbook_url_to_an_anchor_that_exists(path: Path) -> None:
    anchors = _anchors(GUIDE.read_text())
    rules = _rules(path)
    assert len(rules) >= 8
    for r in rules:
        url = r["annotations"].get("runbook_url")
        assert url, f"{path.name}: {r['alert']} has no runbook_url"
        page, _, anchor = url.partition("#")
        assert page == "docs/operators-guide.md", f"{r['alert']}: {url}"
        assert anchor == f"alert-{r['alert'].lower()}", f"{r['alert']}: {url}"
        assert anchor in anchors, f"{r['alert']}: anchor #{anchor} is not in docs/operators-guide.md"


def test_the_anchor_check_sees_a_missing_anchor() -> None:
    md = GUIDE.read_text()
    assert "alert-windwardnodedown" in _anchors(md)
    assert "alert-windwardnodedown" not in _anchors(md.replace('<a id="alert-windwardnodedown"></a>', ""))
    assert "alerts-and-what-to-do" in _anchors(md)
