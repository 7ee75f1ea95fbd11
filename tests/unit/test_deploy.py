"""Structural checks of deploy/: Prometheus config and alert rules (promtool), Grafana dashboards and
provisioning, the compose file, and the KubeRay manifests against the site file.

What is checked against what (the failure modes of deployment files are inconsistencies between them):
every ``windward_*`` metric a dashboard or an alert names is one that ``scheduler.metrics.Metrics``
exports; job names agree between prometheus.yml, the ServiceMonitor/PodMonitor relabelings and the alert
rules; ports and host names agree between prometheus.yml, compose and the KubeRay pods; the KubeRay and
compose files are the render of scheduler/executors/manifests.py, the RayCluster is valid against KubeRay's
CRD schema (v1.7.0, deploy/kuberay/schema/) with unknown fields refused, and what `ray start` makes of each
worker's parameters is exactly the pool node the executor looks for (ray_cluster.node_spec). Whether each
query really returns data is tests/integration/test_prometheus.py's job.
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
    assert jobs["ray"]["static_configs"][0]["targets"][0] == f"windward:{RAY_METRICS_PORT}"  # + compose workers
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
    # headroom low, a cap violated, plan stale, a commitment at risk, a node down, inference under-served, the
    # optimiser infeasible
    for needed in (
        "WindwardCapHeadroomLow",
        "WindwardCapViolated",
        "WindwardPlanStale",
        "WindwardCommitmentAtRisk",
        "WindwardNodeDown",
        "WindwardInferenceUnderServed",
        "WindwardPlanInfeasible",
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
            # every panel uses the dashboard's $datasource variable (tests/unit/test_dashboards.py), whose
            # default is the provisioned datasource (isDefault)
            assert p["datasource"]["uid"] == "${datasource}" and ds["isDefault"], f"{fname}: {p['title']}"
            assert p["targets"], f"{fname}: panel {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
                assert t["expr"].strip()
        for title, expr in panel_exprs(dash):
            n_queries += 1
            used = _WINDWARD_NAME.findall(expr)
            assert used or "ray_" in expr or "up{" in expr, f"{fname}: {title}: {expr} names no metric"
            for name in used:
                assert name in exported, f"{fname}: panel {title!r} queries {name}, never exported"
        for v in [v for v in dash["templating"]["list"] if v["type"] != "datasource"]:
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


# ------------------------------------------------------------------------------------------ rendered files
#
# deploy/kuberay/{base,redis,raycluster}.yaml and deploy/compose/docker-compose.yml are rendered by
# scheduler/executors/manifests.py from ray_cluster.node_spec (the one definition of a pool node) and the
# site files; tests/integration/test_ray_manifest_nodes.py and test_server_ray_restart.py start real Ray
# nodes with the parameters parsed from these files.


def test_committed_deploy_files_are_the_render() -> None:
    from scheduler.executors import manifests

    for path, text in manifests.rendered().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} differs: python -m scheduler.executors.manifests --write"
    assert manifests.main(["--check"]) == 0


def test_render_check_catches_a_hand_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler.executors import manifests

    files = manifests.rendered()
    edited = {p: t for p, t in files.items()}
    rc = next(p for p in files if p.name == "raycluster.yaml")
    edited[rc] = files[rc].replace("windward_pool_h100-eu-public", "pool_h100_eu_public")  # the old defect
    assert edited[rc] != files[rc]
    monkeypatch.setattr(manifests, "rendered", lambda: {tmp_path / p.name: t for p, t in files.items()})
    for p, t in edited.items():
        (tmp_path / p.name).write_text(t)
    assert manifests.main(["--check"]) == 1


# ------------------------------------------------------------------------------------------ compose


def _compose_worker_specs(compose: dict[str, Any]) -> dict[str, Any]:
    """Service name -> the NodeSpec its `ray start` command makes (parsed from the compose file)."""
    from scheduler.executors.ray_cluster import parse_ray_start, parse_ray_start_args

    out = {}
    for name, svc in compose["services"].items():
        cmd = svc.get("entrypoint") or []
        if cmd[:2] == ["ray", "start"]:
            out[name] = parse_ray_start(parse_ray_start_args(cmd[2:]))
    return out


def test_compose_workers_join_the_demo_pools_as_the_executor_expects() -> None:
    from scheduler.executors.ray_cluster import node_spec

    compose = _yaml(COMPOSE)
    site = load_site("demo")
    specs = _compose_worker_specs(compose)
    assert len(specs) == len(site.pools) == 2  # a head and two workers
    by_pool = {s.labels["windward.pool"]: s for s in specs.values()}
    for pool in site.pools:
        assert by_pool[pool.name] == node_spec(pool)  # GPUs, the pool resource and every label
    for name in specs:
        svc = compose["services"][name]
        assert f"--address={'windward'}:6379" in svc["entrypoint"] and svc["entrypoint"][-1] == "--block"
        assert any(v.endswith(":/var/lib/windward/state/windward.sqlite.ray") for v in svc["volumes"])


def test_compose_server_needs_a_tenants_file_and_shares_checkpoints() -> None:
    compose = _yaml(COMPOSE)
    ww = compose["services"]["windward"]
    assert ww["environment"]["WINDWARD_TENANTS"] == "/etc/windward/tenants.yaml"
    assert any(v.endswith(":/etc/windward/tenants.yaml:ro") for v in ww["volumes"])
    assert "WINDWARD_DEMO" not in ww["environment"]
    vols = {v.split(":")[1]: v.split(":")[0] for v in ww["volumes"]}
    # the server reads the checkpoints the workers write: the same volume at the same path
    assert vols["/var/lib/windward/state/windward.sqlite.ray"] == "windward-checkpoints"
    entry = (COMPOSE.parent / "entrypoint.sh").read_text()
    assert "--tenants" in entry and "--demo" in entry and "WINDWARD_DEMO" in entry
    assert "--state /var/lib/windward/state/windward.sqlite" in entry  # <state>.ray is the checkpoint volume
    assert "ray start --head --port=6379 --num-gpus=0" in entry and "--metrics-export-port=8080" in entry
    assert "GRAFANA_ADMIN_PASSWORD:?" in compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert "'.[nvml]'" in dockerfile and "torch" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^nvml = \["nvidia-ml-py', pyproject, re.M)


def test_compose_runs_windward_beside_prometheus_and_grafana() -> None:
    compose = _yaml(COMPOSE)
    svcs = compose["services"]
    assert set(svcs) == {"windward", "prometheus", "grafana", *_compose_worker_specs(compose)}
    ww = svcs["windward"]
    assert (COMPOSE.parent / ww["build"]["context"] / ww["build"]["dockerfile"]).resolve().is_file()
    cfg = _yaml(PROM_DIR / "prometheus.yml")
    ray_targets = set(next(j for j in cfg["scrape_configs"] if j["job_name"] == "ray")["static_configs"][0]["targets"])
    # Prometheus scrapes Ray on the head and on every worker
    assert ray_targets == {f"{s}:{RAY_METRICS_PORT}" for s in ["windward", *_compose_worker_specs(compose)]}
    for job in cfg["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in svcs, f"scrape target {target}: no compose service {host}"
            svc = svcs[host]
            reachable = {int(p.split(":")[-1]) for p in svc.get("ports", [])} | {int(p) for p in svc.get("expose", [])}
            assert int(port) in reachable, f"scrape target {target}: service {host} does not open {port}"
    prom_mounts = {m.split(":")[1]: (COMPOSE.parent / m.split(":")[0]).resolve() for m in svcs["prometheus"]["volumes"] if m.startswith(".")}
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == (PROM_DIR / "prometheus.yml").resolve()
    for rf in cfg["rule_files"]:
        assert prom_mounts[f"/etc/prometheus/{rf}"] == (PROM_DIR / rf).resolve()
    entry = (COMPOSE.parent / "entrypoint.sh").read_text()
    assert f"--port {WINDWARD_PORT}" in entry and f"--metrics-export-port={RAY_METRICS_PORT}" in entry
    assert "windward server" in entry


# ------------------------------------------------------------------------------------------ KubeRay

SCHEMA = KUBERAY / "schema" / "raycluster-v1.7.0.schema.json.gz"


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    (rc,) = _kind("RayCluster")
    return rc


def _strict(schema: Any) -> Any:
    """The CRD's OpenAPI schema as JSON Schema that refuses unknown fields (kubectl --validate=strict)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    return out


@pytest.fixture(scope="module")
def rc_validator() -> Any:
    import gzip

    import jsonschema

    schema = _strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    return jsonschema.Draft7Validator(schema)


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_raycluster_is_valid_against_the_kuberay_crd_schema(raycluster: dict[str, Any], rc_validator: Any) -> None:
    assert _errors(rc_validator, raycluster) == []


@pytest.mark.parametrize("breakage", [
    ("'workerGroupSpec' was unexpected", lambda rc: rc["spec"].update(workerGroupSpec=rc["spec"].pop("workerGroupSpecs"))),
    ("replicas", lambda rc: rc["spec"]["workerGroupSpecs"][0].update(replicas="1024")),
    ("rayStartParams", lambda rc: rc["spec"]["workerGroupSpecs"][1]["rayStartParams"].update({"num-gpus": 8})),
    ("containers", lambda rc: rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][1].update(probe={})),
    ("backend", lambda rc: rc["spec"]["gcsFaultToleranceOptions"].update(backend="etcd")),
])  # fmt: skip
def test_the_schema_check_rejects_broken_clusters(raycluster: dict[str, Any], rc_validator: Any, breakage: Any) -> None:
    import copy

    where, breaks = breakage
    rc = copy.deepcopy(raycluster)
    breaks(rc)
    errs = _errors(rc_validator, rc)
    assert errs and any(where in e for e in errs), errs


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds_every_object() -> None:
    r = subprocess.run(["kubectl", "kustomize", str(KUBERAY)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert ("RayCluster", "windward") in kinds and ("Deployment", "windward-redis") in kinds
    assert ("PersistentVolumeClaim", "windward-checkpoints") in kinds
    assert all(d["metadata"].get("namespace") == "windward" for d in docs if d["kind"] != "Namespace")


def _containers(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in group["template"]["spec"]["containers"]}


def _mounts(c: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}


def _claims(group: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName", "") for v in group["template"]["spec"]["volumes"]}


def test_raycluster_head_runs_windward_server_as_its_own_container(raycluster: dict[str, Any]) -> None:
    from scheduler.executors import manifests

    head = raycluster["spec"]["headGroupSpec"]
    cs = _containers(head)
    assert list(cs) == ["ray-head", "windward-server"]  # KubeRay runs `ray start` in the first container
    srv = cs["windward-server"]
    cmd = " ".join(srv["command"])
    assert "windward server" in cmd and "--executor ray" in cmd and "--site rotterdam-100k" in cmd
    assert f"--port {WINDWARD_PORT}" in cmd and "--address auto" in cmd and "--demo" not in cmd
    assert "--tenants /etc/windward/tenants/tenants.yaml" in cmd
    assert f"--state {manifests.STATE_FILE}" in cmd
    assert srv["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert srv["livenessProbe"]["httpGet"]["path"] == "/healthz" and srv["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in srv["ports"]} == {"windward": WINDWARD_PORT}
    ray_head = cs["ray-head"]
    assert "command" not in ray_head  # KubeRay's generated `ray start --head ...` with rayStartParams
    assert {p["name"]: p["containerPort"] for p in ray_head["ports"]}["metrics"] == RAY_METRICS_PORT
    assert head["rayStartParams"]["metrics-export-port"] == str(RAY_METRICS_PORT)
    assert head["rayStartParams"]["num-gpus"] == "0"
    # the server is a driver on the head's node: it shares the head's /tmp/ray
    assert _mounts(ray_head)["/tmp/ray"] == _mounts(srv)["/tmp/ray"]
    claims = _claims(head)
    m = _mounts(srv)
    assert claims[m[manifests.STATE_DIR]] == "windward-state" and claims[m[manifests.CHECKPOINT_DIR]] == "windward-checkpoints"
    assert manifests.CHECKPOINT_DIR == manifests.STATE_FILE + ".ray"  # scheduler.service.make_executor's <state>.ray
    vols = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    assert vols[m["/etc/windward/tenants"]]["secret"]["secretName"] == "windward-tenants"
    pvcs = {d["metadata"]["name"]: d for d in _kind("PersistentVolumeClaim")}
    assert pvcs["windward-state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvcs["windward-checkpoints"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gcs_fault_tolerance_uses_the_external_redis(raycluster: dict[str, Any]) -> None:
    ft = raycluster["spec"]["gcsFaultToleranceOptions"]
    (svc,) = [s for s in _kind("Service") if s["metadata"]["name"] == "windward-redis"]
    (dep,) = [d for d in _kind("Deployment") if d["metadata"]["name"] == "windward-redis"]
    host_port = ft["redisAddress"].removeprefix("redis://")
    assert host_port == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{svc['spec']['ports'][0]['port']}"
    assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())
    secret = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == secret and "--requirepass" in " ".join(c["command"])
    assert "--appendonly yes" in " ".join(c["command"])


def test_worker_groups_are_the_site_pools(raycluster: dict[str, Any]) -> None:
    from scheduler.executors import manifests
    from scheduler.executors.ray_cluster import node_spec, parse_ray_start

    site = load_site("rotterdam-100k")
    groups = {g["groupName"]: g for g in raycluster["spec"]["workerGroupSpecs"]}
    assert list(groups) == [p.name for p in site.pools]
    total_gpus = 0
    for pool in site.pools:
        g = groups[pool.name]
        assert g["replicas"] == g["minReplicas"] == g["maxReplicas"] == pool.nodes
        rsp = g["rayStartParams"]
        # what `ray start` makes of these is exactly the pool node the executor looks for
        assert parse_ray_start(rsp) == node_spec(pool)
        assert rsp["metrics-export-port"] == str(RAY_METRICS_PORT)
        (c,) = g["template"]["spec"]["containers"]
        limits = c["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == int(c["resources"]["requests"]["nvidia.com/gpu"]) == pool.gpus_per_node
        assert "SYS_ADMIN" in c["securityContext"]["capabilities"]["add"]  # NVML may set power limits
        pod_labels = g["template"]["metadata"]["labels"]
        assert pod_labels["windward.io/pool"] == pool.name
        for k, v in pool.labels.items():
            assert pod_labels[f"windward.io/{k}"] == v
        assert not any("node" in k and k != "windward.io/pool" for k in pod_labels)  # identity comes from Ray
        assert g["template"]["spec"]["nodeSelector"] == {"windward.io/pool": pool.name}
        tols = {(t["key"], t.get("value")) for t in g["template"]["spec"]["tolerations"]}
        assert ("nvidia.com/gpu", None) in tols and ("windward.io/pool", pool.name) in tols
        assert _claims(g)[_mounts(c)[manifests.CHECKPOINT_DIR]] == "windward-checkpoints"
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == RAY_METRICS_PORT
        total_gpus += g["replicas"] * int(limits["nvidia.com/gpu"])
    assert total_gpus == site.total_gpus == 100_000


def test_a_pool_label_with_its_own_prefix_is_a_pod_label_as_it_is() -> None:
    """``windward.io/example.com/rack`` (two ``/``) is no Kubernetes label key: a prefixed pool label keeps its key;
    one that would replace the manifest's own pod label (the pool's name) is refused, naming pool and label."""
    from scheduler.errors import InputError
    from scheduler.executors.manifests import worker_group
    from scheduler.models import check_label_key, check_label_value

    pool = load_site("demo").pools[0]
    rack = pool.model_copy(update={"labels": {**pool.labels, "example.com/rack": "r-12"}})
    labels = worker_group(rack)["template"]["metadata"]["labels"]
    assert labels["example.com/rack"] == "r-12" and labels["windward.io/gpu"] == "h100", labels
    assert all(check_label_key(k) and check_label_value(v) for k, v in labels.items())
    for key in ("pool", "windward.io/pool"):
        clash = pool.model_copy(update={"labels": {key: "other"}})
        with pytest.raises(InputError, match=rf"pool '{pool.name}': label '{key}' would replace the pod label "
                                             r"'windward.io/pool'"):  # fmt: skip
            worker_group(clash)


def test_monitors_select_the_pods_and_ports_and_keep_the_job_names(raycluster: dict[str, Any]) -> None:
    cluster = raycluster["metadata"]["name"]
    (svc,) = [s for s in _kind("Service") if s["metadata"]["name"] == "windward"]
    (sm,) = _kind("ServiceMonitor")
    (pm,) = _kind("PodMonitor")
    # KubeRay labels every pod with ray.io/cluster and the head with ray.io/node-type=head
    head_labels = {"ray.io/cluster": cluster, "ray.io/node-type": "head", **raycluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]}
    assert all(head_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    head_ports = {p["name"] for c in _containers(raycluster["spec"]["headGroupSpec"]).values() for p in c["ports"]}
    (sp,) = svc["spec"]["ports"]
    assert sp["targetPort"] in head_ports and sp["port"] == WINDWARD_PORT
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == sp["name"] and ep["path"] == "/metrics"
    assert pm["spec"]["selector"]["matchLabels"] == {"ray.io/cluster": cluster}
    (pep,) = pm["spec"]["podMetricsEndpoints"]
    for g in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        assert pep["port"] in {p["name"] for c in _containers(g).values() for p in c["ports"]}
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
