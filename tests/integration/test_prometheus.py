"""A real Prometheus scraping a real `windward server --executor simulated` (and a real Ray node's metrics
export port) on loopback: EVERY dashboard panel query and EVERY alert expression returns data.

The queries are parsed from deploy/grafana/dashboards/*.json and deploy/prometheus/alerts.yml, never kept by
hand here. Prometheus runs with deploy/prometheus/prometheus.yml (same jobs, same rule file), only with
loopback targets and a 0.5 s scrape/evaluation interval. The server runs one 15-minute slot every 0.5 s, so
the module sees a simulated day (96 slots) in ~50 s; tenants submit work through the HTTP API and the grid
operator announces a congestion event in the middle of the day.

Alert expressions that are normally empty (a cap violated, inference under-served, ...) are checked with
each comparison turned into a ``bool`` comparison (``a > 0`` -> ``a > bool 0``): Prometheus then returns a
0/1 sample for every series the comparison matched on, so an empty answer still means a missing series
(the failure this test exists for), while the alert's own threshold does not hide it. Rules must also load
and evaluate without error in Prometheus itself (``/api/v1/rules``: health ok).

Needs `prometheus` on PATH (scripts/install-prometheus.sh; CI runs it from .ci/run).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from procs import StaticHTTP, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (scripts/install-prometheus.sh)"),
]

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROM_DIR = ROOT / "deploy" / "prometheus"
TICK_SECONDS = 0.5  # wall seconds per 15-minute slot: time runs 1800x
SLOT_S = 900.0
TIME_SCALE = SLOT_S / TICK_SECONDS
DAY_WALL_S = 86400.0 / TIME_SCALE  # 48 s
PICTURE = Path(os.environ.get("WINDWARD_PICTURE_DIR", "")) if os.environ.get("WINDWARD_PICTURE_DIR") else None


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("render_dashboard", ROOT / "scripts" / "render_dashboard.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rd = _render_module()


def _wait(what: str, ok: Any, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    t_end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < t_end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            last = ok()
            if last:
                return last
        except (httpx.HTTPError, RuntimeError, KeyError, IndexError, ValueError) as e:
            last = e
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


_RAY_NODE = """
import os, sys
os.environ.setdefault("RAY_AUTH_MODE", "disabled"); os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray
ray.init(address="local", num_cpus=1, num_gpus=2, include_dashboard=False, _metrics_export_port=int(sys.argv[1]))
print("ray-ready", flush=True)
sys.stdin.read()   # until the test closes our stdin
ray.shutdown()
"""


class _Feed(StaticHTTP):
    def __init__(self, body: bytes) -> None:
        super().__init__(body, path="/feed.json")


def _empty_feed() -> _Feed:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _Feed(json.dumps({"format": "windward.congestion/v1", "operator": "test", "connection": "test",
                             "published_utc": now, "events": []}).encode())  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prom")
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "WINDWARD_LOG": "WARNING"}
    ray_port, srv_port, prom_port = free_port(), free_port(), free_port()
    try:
        # a real Ray node exporting Ray's own metrics (the "ray" job of the scrape config)
        ray_node = subprocess.Popen(
            [sys.executable, "-c", _RAY_NODE, str(ray_port)], stdin=subprocess.PIPE,
            stdout=(tmp / "ray.log").open("wb"), stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        procs.append(ray_node)
        # a grid operator's congestion feed on loopback (no events): the server's live signals, so that the
        # staleness series (and its alert's expression) exists as in a deployment with --live-signals
        feed = _empty_feed()
        live = tmp / "live-signals.yaml"
        live.write_text(f"refresh_s: 900\ncache_dir: {tmp / 'signal-cache'}\nsources:\n"
                        f"  - {{kind: congestion, url: '{feed.url}'}}\n")  # fmt: skip
        # the real control plane
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "windward") if (ROOT / ".venv" / "bin" / "windward").exists() else "windward",
             "server", "--demo", "--executor", "simulated", "--host", "127.0.0.1", "--port", str(srv_port),
             "--state", str(tmp / "state.sqlite"), "--tick-seconds", str(TICK_SECONDS),
             "--policy", "greedy-green", "--log-level", "warning", "--live-signals", str(live)],
            stdout=(tmp / "server.log").open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )  # fmt: skip
        procs.append(server)
        # Prometheus with the deploy config, pointed at loopback
        cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = "500ms"
        cfg["rule_files"] = [str(PROM_DIR / f) for f in cfg["rule_files"]]
        targets = {"windward": f"127.0.0.1:{srv_port}", "ray": f"127.0.0.1:{ray_port}"}
        assert {j["job_name"] for j in cfg["scrape_configs"]} == set(targets)
        for j in cfg["scrape_configs"]:
            j["static_configs"] = [{"targets": [targets[j["job_name"]]]}]
            j["scrape_interval"] = "500ms"
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=(tmp / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(prom)

        srv = httpx.Client(base_url=f"http://127.0.0.1:{srv_port}", timeout=10)
        _wait("windward server ready", lambda: srv.get("/readyz").status_code == 200, 60, server)
        t0 = time.time()
        _submit_work(srv, srv_port)
        p = rd.Prometheus(f"http://127.0.0.1:{prom_port}")
        _wait("both targets up", lambda: sum(float(r["value"][1]) for r in p.query("up")) == 2, 60, prom)
        # a simulated day, then a few more scrapes so that every rate window is full
        time.sleep(max(t0 + DAY_WALL_S - time.time(), 0.0))
        _wait("10 ticks scraped", lambda: float(p.query("windward_ticks_total")[0]["value"][1]) >= 10, 30, server)
        yield {"prom": p, "t0": t0, "t1": time.time(), "tmp": tmp, "server": srv}
        p.close()
        srv.close()
    finally:
        if "feed" in locals():
            feed.close()
        for proc in reversed(procs):
            if proc is procs[0] and proc.stdin is not None and proc.poll() is None:
                proc.stdin.close()  # the Ray node shuts Ray down cleanly on EOF
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            _stop(proc)


def _submit_work(srv: httpx.Client, port: int) -> None:
    from scheduler.auth import dev_token

    jobs = [
        ("science", {"name": "train-a", "kind": "training", "gpus": 8, "duration_s": 10 * 3600}),
        ("science", {"name": "train-b", "kind": "training", "gpus": 8, "duration_s": 14 * 3600}),
        ("defence", {"name": "sovereign", "kind": "training", "gpus": 8, "duration_s": 6 * 3600,
                     "requires": {"jurisdiction": "nl", "clearance": "secret"}}),
        ("public-services", {"name": "chat", "kind": "inference", "gpus": 2, "duration_s": 20 * 3600,
                             "preemptible": False}),
        ("companies", {"name": "batch", "kind": "batch", "gpus": 4, "duration_s": 3 * 3600}),
        ("education", {"name": "course", "kind": "training", "gpus": 4, "duration_s": 12 * 3600}),
    ]  # fmt: skip
    for tenant, spec in jobs:
        r = srv.post("/v1/jobs", json=spec, headers={"Authorization": f"Bearer {dev_token(tenant)}"})
        assert r.status_code == 201, r.text
    # the grid operator caps import at 10 kW for three hours of site time, starting two hours from now on the
    # server's timeline (usage's as_of_utc: its clock now). Site time runs TIME_SCALE x the wall from the
    # server's start, so the wall clock's now lies behind it by the start-up's wall seconds x 1799: this read
    # the wall (an unauthenticated /v1/plan is a 401, whose body has no computed_utc), and a start-up slower
    # than 10 s (a loaded machine) put the whole event in the server's past, never active.
    ops = {"Authorization": f"Bearer {dev_token('ops')}"}
    now = datetime.fromisoformat(srv.get("/v1/usage", headers=ops).json()["as_of_utc"])
    start = now.timestamp() + 2 * 3600
    body = {"cap_mw": 0.010, "start": datetime.fromtimestamp(start, UTC).isoformat(),
            "end": datetime.fromtimestamp(start + 3 * 3600, UTC).isoformat(), "reason": "TenneT congestion test"}  # fmt: skip
    r = srv.post("/v1/congestion", json=body, headers=ops)
    assert r.status_code in (200, 201), r.text


def dashboard_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASH_DIR.glob("*.json")):
        for panel in rd.panels(json.loads(path.read_text())):
            for t in panel["targets"]:
                out.append((path.stem, panel["title"], t["expr"]))
    return out


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def bool_comparisons(expr: str) -> str:
    """Turn every comparison operator outside label matchers and strings into its ``bool`` form."""
    out: list[str] = []
    i, depth, quote = 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\":
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = ""
            i += 1
            continue
        if c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if depth == 0:
            two = expr[i : i + 2]
            op = two if two in ("==", "!=", ">=", "<=") else (c if c in "<>" else "")
            if op:
                rest = expr[i + len(op) :]
                out.append(op + ("" if rest.lstrip().startswith("bool") else " bool"))
                i += len(op)
                continue
        out.append(c)
        i += 1
    return "".join(out)


def test_bool_comparisons_rewrites_only_comparisons() -> None:
    assert bool_comparisons('up{job="ray"} == 0') == 'up{job="ray"} == bool 0'
    assert bool_comparisons('a{x!="1"} > on (t) b and c <= 3') == 'a{x!="1"} > bool on (t) b and c <= bool 3'
    assert bool_comparisons("a > bool 1") == "a > bool 1"


def _finite(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(r["value"][1]) for r in result) if math.isfinite(v)]


@pytest.mark.parametrize("dashboard,title,expr", dashboard_queries(), ids=lambda x: str(x)[:60])
def test_every_dashboard_query_returns_data(stack: dict[str, Any], dashboard: str, title: str, expr: str) -> None:
    result = stack["prom"].query(rd.substitute(expr))
    assert result, f"{dashboard} / {title}: {expr} returned no series"
    assert _finite(result), f"{dashboard} / {title}: {expr} returned only NaN/Inf: {result}"


def test_dashboard_variables_have_values(stack: dict[str, Any]) -> None:
    p = stack["prom"]
    for path in sorted(DASH_DIR.glob("*.json")):
        for v in json.loads(path.read_text())["templating"]["list"]:
            if v["type"] == "datasource":  # $datasource picks the Prometheus itself, not a label value
                continue
            metric, label = v["query"]["query"][len("label_values(") : -1].split(",")
            values = p._get(f"/api/v1/label/{label.strip()}/values", {"match[]": metric.strip()})
            assert values, f"{path.name}: variable {v['name']} has no values"


def annotation_exprs() -> list[tuple[str, str, str]]:
    return [(path.stem, a["name"], a["expr"]) for path in sorted(DASH_DIR.glob("*.json"))
            for a in json.loads(path.read_text())["annotations"]["list"] if a.get("expr")]  # fmt: skip


@pytest.mark.parametrize("dashboard,name,expr", annotation_exprs(), ids=lambda x: str(x)[:60])
def test_every_annotation_query_has_its_series(stack: dict[str, Any], dashboard: str, name: str, expr: str) -> None:
    """Annotations mark events (congestion, preemption bursts): normally empty, so as for the alerts the series
    under the comparison must exist."""
    p = stack["prom"]
    result = p.query(rd.substitute(expr)) or p.query(bool_comparisons(rd.substitute(expr)))
    assert result, f"{dashboard} / annotation {name}: neither {expr} nor its bool form returned a series"


@pytest.mark.parametrize("alert,expr", alert_exprs(), ids=lambda x: str(x)[:40])
def test_every_alert_expression_has_its_series(stack: dict[str, Any], alert: str, expr: str) -> None:
    p = stack["prom"]
    result = p.query(expr)
    if not result:  # normally silent: the series under the thresholds must exist
        result = p.query(bool_comparisons(expr))
    assert result, f"{alert}: neither {expr} nor its bool form returned a series"


def test_rules_load_and_evaluate_without_error(stack: dict[str, Any]) -> None:
    groups = stack["prom"]._get("/api/v1/rules", {})["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {a for a, _ in alert_exprs()}
    for name, r in rules.items():
        assert r["health"] == "ok", f"{name}: {r.get('lastError')}"


def test_site_kept_its_caps_and_reported_the_congestion(stack: dict[str, Any]) -> None:
    p = stack["prom"]
    assert p.query('windward_cap_violation_watts > 0') == []  # no cap broken against the actuals
    assert float(p.query("windward_congestion_events_total")[0]["value"][1]) >= 1
    assert float(p.query('max_over_time(windward_congestion_active[2m])')[0]["value"][1]) == 1.0
    assert float(p.query('max_over_time(sum(windward_gpus{state="busy"})[2m:])')[0]["value"][1]) > 0
    assert float(p.query('sum(windward_energy_joules_total)')[0]["value"][1]) > 0
    # Ray's own resource view is scraped beside ours
    gpus = p.query('sum(ray_resources{Name="GPU"})')
    assert gpus and float(gpus[0]["value"][1]) == 2.0


def test_site_overview_picture(stack: dict[str, Any], tmp_path: Path) -> None:
    """Draw the site overview of the simulated day with the dashboard's own queries."""
    out = (PICTURE or tmp_path) / "site-overview.png"
    drawn = rd.render(
        stack["prom"], DASH_DIR / "site-overview.json", stack["t0"], stack["t0"] + DAY_WALL_S, out,
        step_s=TICK_SECONDS, time_scale=TIME_SCALE, variables={"__rate_interval": "2s"},  # 4 scrapes = 1 site hour
        subtitle="a simulated day on the demo site (windward server, greedy-green, congestion event at +2 h)",
    )  # fmt: skip
    assert out.stat().st_size > 20_000
    assert all(n > 0 for n in drawn.values()), drawn
    assert drawn["Facility power vs grid cap, site max and wind"] == 5
