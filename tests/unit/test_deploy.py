"""Structural checks of deploy/: Prometheus config and alert rules (promtool), Grafana dashboards and
provisioning, the compose file, and the KubeRay manifests against the site file.

What is checked against what (the failure modes of deployment files are inconsistencies between them):
every ``windward_*`` metric a dashboard or an alert names is one that ``scheduler.metrics.Metrics``
exports; job names agree between prometheus.yml, the ServiceMonitor/PodMonitor relabelings and the alert
rules; ports and host names agree between prometheus.yml, compose and the KubeRay pods; worker groups,
replicas, GPU limits and labels agree with scheduler/sites/rotterdam-100k.yaml. Whether each query really
returns data is tests/integration/test_prometheus.py's job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.metrics import Metrics
from scheduler.models import load_site

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASH_DIR = DEPLOY / "grafana" / "dashboards"
PROV_DIR = DEPLOY / "grafana" / "provisioning"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
KUBERAY = DEPLOY / "kuberay"

WINDWARD_PORT = 8470
RAY_METRICS_PORT = 8080


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _yaml_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(kind: str) -> list[dict[str, Any]]:
    out = []
    for f in sorted(KUBERAY.glob("*.yaml")):
        out += [d for d in _yaml_all(f) if d.get("kind") == kind]
    return out


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASH_DIR.glob("*.json"))}


def panel_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' nested panels included."""
    out = []
    for p in dash["panels"]:
        for q in [p, *p.get("panels", [])]:
            for t in q.get("targets", []):
                out.append((q["title"], t["expr"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in _yaml(PROM_DIR / "alerts.yml")["groups"] for r in g["rules"]]


_WINDWARD_NAME = re.compile(r"\bwindward_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return Metrics(site=load_site("rotterdam-100k")).names()


# ------------------------------------------------------------------------------------------ Prometheus


def test_scrape_jobs_and_rule_files() -> None:
    cfg = _yaml(PROM_DIR / "prometheus.yml")
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"windward", "ray"}
    assert jobs["windward"]["static_configs"][0]["targets"] == [f"windward:{WINDWARD_PORT}"]
    assert jobs["ray"]["static_configs"][0]["targets"] == [f"windward:{RAY_METRICS_PORT}"]
    for f in cfg["rule_files"]:
        assert (PROM_DIR / f).is_file(), f"rule file {f} named in prometheus.yml is missing"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (scripts/install-prometheus.sh)")
@pytest.mark.parametrize("what,file", [("config", "prometheus.yml"), ("rules", "alerts.yml")])
def test_promtool(what: str, file: str) -> None:
    r = subprocess.run(["promtool", "check", what, str(PROM_DIR / file)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (scripts/install-prometheus.sh)")
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The promtool check above is not vacuous: a rule with bad PromQL fails it."""
    bad = {"groups": [{"name": "x", "rules": [{"alert": "Bad", "expr": "sum(windward_gpus"}]}]}
    p = tmp_path / "bad.yml"
    p.write_text(yaml.safe_dump(bad))
    r = subprocess.run(["promtool", "check", "rules", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_alert_rules_cover_the_issue_and_name_exported_metrics(exported: set[str]) -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    # headroom low, a cap violated, plan stale, a commitment at risk, a node down, inference under-served
    for needed in (
        "WindwardCapHeadroomLow",
        "WindwardCapViolated",
        "WindwardPlanStale",
        "WindwardCommitmentAtRisk",
        "WindwardNodeDown",
        "WindwardInferenceUnderServed",
    ):
        assert needed in names
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        for name in _WINDWARD_NAME.findall(r["expr"]):
            assert name in exported, f"alert {r['alert']} uses {name}, which scheduler.metrics does not export"
        for job in re.findall(r'job="([^"]+)"', r["expr"]):
            assert job in {"windward", "ray"}, f"alert {r['alert']} names unknown job {job}"


def test_prometheus_rule_crd_equals_alerts_file() -> None:
    (crd,) = _kind("PrometheusRule")
    assert crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["spec"]["groups"] == _yaml(PROM_DIR / "alerts.yml")["groups"]


# ------------------------------------------------------------------------------------------ Grafana


def test_dashboards_are_the_four_views() -> None:
    ds = dashboards()
    assert set(ds) == {"site-overview.json", "pools.json", "tenants.json", "scheduler.json"}
    uids = [d["uid"] for d in ds.values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_queries_exported_metrics_through_the_provisioned_datasource(exported: set[str]) -> None:
    ds_prov = _yaml(PROV_DIR / "datasources" / "windward.yml")["datasources"]
    (ds,) = ds_prov
    assert ds["type"] == "prometheus"
    n_queries = 0
    for fname, dash in dashboards().items():
        ids = set()
        for p in dash["panels"]:
            assert p["id"] not in ids, f"{fname}: panel id {p['id']} repeated"
            ids.add(p["id"])
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{fname}: {p['title']} outside the 24-column grid"
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == ds["uid"], f"{fname}: {p['title']}"
            assert p["targets"], f"{fname}: panel {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == ds["uid"]
                assert t["expr"].strip()
        for title, expr in panel_exprs(dash):
            n_queries += 1
            used = _WINDWARD_NAME.findall(expr)
            assert used or "ray_" in expr or "up{" in expr, f"{fname}: {title}: {expr} names no metric"
            for name in used:
                assert name in exported, f"{fname}: panel {title!r} queries {name}, never exported"
        for v in dash["templating"]["list"]:
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
            assert m and m.group(1) in exported, f"{fname}: variable {v['name']}"
    assert n_queries >= 30


def test_site_overview_shows_power_against_caps_wind_carbon_and_headroom() -> None:
    exprs = " ".join(e for _, e in panel_exprs(dashboards()["site-overview.json"]))
    for name in (
        "windward_facility_power_watts",
        "windward_grid_cap_watts",
        "windward_site_max_watts",
        "windward_wind_available_watts",
        "windward_grid_import_watts",
        "windward_carbon_intensity_grams_per_kwh",
        "windward_carbon_grams_total",
        "windward_cap_headroom_watts",
    ):
        assert name in exprs


def test_grafana_provisioning_matches_compose_mounts() -> None:
    compose = _yaml(COMPOSE)
    graf = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: (COMPOSE.parent / m.split(":")[0]).resolve() for m in graf["volumes"] if m.startswith(".")}
    (provider,) = _yaml(PROV_DIR / "dashboards" / "windward.yml")["providers"]
    assert mounts[provider["options"]["path"]] == DASH_DIR.resolve()
    assert mounts["/etc/grafana/provisioning/datasources"] == (PROV_DIR / "datasources").resolve()
    assert mounts["/etc/grafana/provisioning/dashboards"] == (PROV_DIR / "dashboards").resolve()
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"]) and (DASH_DIR / Path(home).name).is_file()
    (ds,) = _yaml(PROV_DIR / "datasources" / "windward.yml")["datasources"]
    prom_port = compose["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert ds["url"] == f"http://prometheus:{prom_port}"


# ------------------------------------------------------------------------------------------ compose


def test_compose_runs_windward_beside_prometheus_and_grafana() -> None:
    compose = _yaml(COMPOSE)
    svcs = compose["services"]
    assert set(svcs) == {"windward", "prometheus", "grafana"}
    ww = svcs["windward"]
    assert (COMPOSE.parent / ww["build"]["context"] / ww["build"]["dockerfile"]).resolve().is_file()
    published = {int(p.split(":")[-1]) for p in ww["ports"]}
    reachable = published | {int(p) for p in ww.get("expose", [])}
    # every scrape target is a compose service on a port that service opens
    cfg = _yaml(PROM_DIR / "prometheus.yml")
    for job in cfg["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in svcs, f"scrape target {target}: no compose service {host}"
            assert int(port) in reachable, f"scrape target {target}: service {host} does not open {port}"
    # prometheus mounts the same config and rules this repo checks
    prom_mounts = {m.split(":")[1]: (COMPOSE.parent / m.split(":")[0]).resolve() for m in svcs["prometheus"]["volumes"] if m.startswith(".")}
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == (PROM_DIR / "prometheus.yml").resolve()
    for rf in cfg["rule_files"]:
        assert prom_mounts[f"/etc/prometheus/{rf}"] == (PROM_DIR / rf).resolve()
    # the entrypoint serves on the ports the compose file and the scrape config expect
    entry = (COMPOSE.parent / "entrypoint.sh").read_text()
    assert f"--port {WINDWARD_PORT}" in entry and f"--metrics-export-port={RAY_METRICS_PORT}" in entry
    assert "windward server" in entry


# ------------------------------------------------------------------------------------------ KubeRay


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    (rc,) = _kind("RayCluster")
    return rc


def test_raycluster_head_runs_windward_server(raycluster: dict[str, Any]) -> None:
    assert raycluster["apiVersion"] == "ray.io/v1"
    head = raycluster["spec"]["headGroupSpec"]
    (c,) = head["template"]["spec"]["containers"]
    cmd = " ".join(c["command"] + c["args"])
    assert "windward server" in cmd and "--executor ray" in cmd and "--site rotterdam-100k" in cmd
    assert f"--port {WINDWARD_PORT}" in cmd
    # the head's `ray start` comes from KubeRay's generated command, so the annotation must be set
    assert "$KUBERAY_GEN_RAY_START_CMD" in cmd or "${KUBERAY_GEN_RAY_START_CMD" in cmd
    assert raycluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["windward"] == WINDWARD_PORT and ports["metrics"] == RAY_METRICS_PORT
    assert head["rayStartParams"]["metrics-export-port"] == str(RAY_METRICS_PORT)
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_worker_groups_are_the_site_pools(raycluster: dict[str, Any]) -> None:
    site = load_site("rotterdam-100k")
    groups = {g["groupName"]: g for g in raycluster["spec"]["workerGroupSpecs"]}
    assert list(groups) == [p.name for p in site.pools]
    total_gpus = 0
    for pool in site.pools:
        g = groups[pool.name]
        assert g["replicas"] == g["minReplicas"] == g["maxReplicas"] == pool.nodes
        (c,) = g["template"]["spec"]["containers"]
        limits = c["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == pool.gpus_per_node
        assert int(c["resources"]["requests"]["nvidia.com/gpu"]) == pool.gpus_per_node
        rsp = g["rayStartParams"]
        assert int(rsp["num-gpus"]) == pool.gpus_per_node
        assert rsp["metrics-export-port"] == str(RAY_METRICS_PORT)
        ray_labels = dict(kv.split("=", 1) for kv in rsp["labels"].split(","))
        assert ray_labels == {"pool": pool.name, **pool.labels}
        pod_labels = g["template"]["metadata"]["labels"]
        assert pod_labels["windward.io/pool"] == pool.name
        for k, v in pool.labels.items():
            assert pod_labels[f"windward.io/{k}"] == v
        assert g["template"]["spec"]["nodeSelector"] == {"windward.io/pool": pool.name}
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == RAY_METRICS_PORT
        total_gpus += g["replicas"] * int(limits["nvidia.com/gpu"])
    assert total_gpus == site.total_gpus == 100_000


def test_monitors_select_the_pods_and_ports_and_keep_the_job_names(raycluster: dict[str, Any]) -> None:
    cluster = raycluster["metadata"]["name"]
    (svc,) = _kind("Service")
    (sm,) = _kind("ServiceMonitor")
    (pm,) = _kind("PodMonitor")
    # KubeRay labels every pod with ray.io/cluster and the head with ray.io/node-type=head
    head_labels = {"ray.io/cluster": cluster, "ray.io/node-type": "head", **raycluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]}
    assert all(head_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    (head_c,) = raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    head_ports = {p["name"] for p in head_c["ports"]}
    (sp,) = svc["spec"]["ports"]
    assert sp["targetPort"] in head_ports and sp["port"] == WINDWARD_PORT
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == sp["name"] and ep["path"] == "/metrics"
    assert pm["spec"]["selector"]["matchLabels"] == {"ray.io/cluster": cluster}
    (pep,) = pm["spec"]["podMetricsEndpoints"]
    for g in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        (c,) = g["template"]["spec"]["containers"]
        assert pep["port"] in {p["name"] for p in c["ports"]}
    jobs = {j["job_name"] for j in _yaml(PROM_DIR / "prometheus.yml")["scrape_configs"]}

    def job_of(endpoint: dict[str, Any]) -> str:
        (r,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        return str(r["replacement"])

    assert {job_of(ep), job_of(pep)} == jobs
    ns = {d["metadata"]["name"] for d in _kind("Namespace")}
    for obj in (svc, sm, pm, raycluster):
        assert obj["metadata"]["namespace"] in ns
    kust = _yaml(KUBERAY / "kustomization.yaml")
    assert sorted(kust["resources"]) == sorted(p.name for p in KUBERAY.glob("*.yaml") if p.name != "kustomization.yaml")
