"""The real server on loopback, real HTTP: isolation, auth, validation, body limit, idempotency, cancel,
sovereignty, congestion, plan, usage, audit. One server for the module (start-up costs seconds)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess, auth, start_server, wait_first_tick

from scheduler.policies import available_policies

pytestmark = pytest.mark.integration

SPEC = {"name": "train-a", "kind": "training", "gpus": 4, "duration_s": 7200}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("srv")
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "3")
    yield s
    s.kill()


@pytest.fixture(scope="module")
def c(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def submit(c: httpx.Client, tenant: str, spec: dict, key: str | None = None) -> httpx.Response:
    h = auth(tenant) | ({"Idempotency-Key": key} if key else {})
    return c.post("/v1/jobs", json=spec, headers=h)


def test_health_and_docs(c: httpx.Client) -> None:
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz").json()
    assert r["ready"] and all(r["checks"].values())
    paths = c.get("/openapi.json").json()["paths"]
    for p in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/queue", "/v1/usage", "/v1/plan", "/v1/congestion", "/v1/audit"):
        assert p in paths
    assert "windward_facility_power_watts" in c.get("/metrics").text


def test_missing_or_wrong_token_is_401(c: httpx.Client) -> None:
    for h in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/queue"), ("GET", "/v1/plan"), ("GET", "/v1/usage")):
            r = c.request(method, path, headers=h)
            assert r.status_code == 401, (h, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    r = c.post("/v1/jobs", json=SPEC)
    assert r.status_code == 401


def test_tenant_isolation_is_404(c: httpx.Client) -> None:
    r = submit(c, "science", SPEC)
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert c.get(f"/v1/jobs/{jid}", headers=auth("science")).status_code == 200
    # another tenant: exactly like a job that does not exist
    other = c.get(f"/v1/jobs/{jid}", headers=auth("companies"))
    ghost = c.get("/v1/jobs/job-0000000000000000", headers=auth("companies"))
    assert other.status_code == ghost.status_code == 404
    assert c.delete(f"/v1/jobs/{jid}", headers=auth("companies")).status_code == 404
    assert jid not in {j["id"] for j in c.get("/v1/jobs", headers=auth("companies")).json()["jobs"]}
    q = c.get("/v1/queue", headers=auth("companies")).json()
    assert jid not in {j["id"] for j in q["running"] + q["queued"]}
    # still there and untouched for its owner; visible to the operator
    assert c.get(f"/v1/jobs/{jid}", headers=auth("science")).json()["state"] in ("queued", "running")
    assert c.get(f"/v1/jobs/{jid}", headers=auth("ops")).status_code == 200


def test_malformed_spec_is_422_naming_the_field(c: httpx.Client) -> None:
    cases = {
        "gpus": {**SPEC, "gpus": -1},
        "duration_s": {**SPEC, "duration_s": "long"},
        "colour": {**SPEC, "colour": "blue"},  # unknown fields are refused
        "kind": {**SPEC, "kind": "mining"},
        "name": {k: v for k, v in SPEC.items() if k != "name"},
    }
    before = len(c.get("/v1/jobs", headers=auth("education")).json()["jobs"])
    for field, spec in cases.items():
        r = submit(c, "education", spec)
        assert r.status_code == 422, (field, r.text)
        assert any(field in d["loc"] for d in r.json()["detail"]), (field, r.json())
    # a body that is not JSON is a 400 (issue 16: the OpenAPI document says so), naming the body
    r = c.post("/v1/jobs", content=b"{not json", headers=auth("education") | {"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"][0] == "body", r.text
    # nothing half-applied
    assert len(c.get("/v1/jobs", headers=auth("education")).json()["jobs"]) == before


def test_odd_but_plausible_specs_are_422_naming_the_field_and_what_is_allowed(c: httpx.Client) -> None:
    """Round 25, as a tenant would type them: priorities outside scheduler.models.JOB_PRIORITY_MIN ..
    JOB_PRIORITY_MAX; selectors with an empty key or value,
    a model no pool has, a label twice, a key in upper case. Each is a 422 naming the field, the selector ones
    with this site's labels; nothing is stored. A float priority with no fraction is an integer (JSON Schema)."""
    before = len(c.get("/v1/jobs", headers=auth("science")).json()["jobs"])
    for prio, bound in ((-101, "greater than or equal to -100"), (101, "less than or equal to 100")):
        r = submit(c, "science", {**SPEC, "priority": prio})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "priority"], r.text
        assert bound in r.json()["detail"][0]["msg"], r.text
    for sel, what in (("=", "an empty key"), ("gpu=", "an empty value for 'gpu'"), ("gpu=tpu", "no pool has gpu=tpu"),
                      ("jurisdiction=eu,jurisdiction=nl", "the label 'jurisdiction' is given twice"),
                      ("GPU=h100", "no pool has the label 'GPU'")):
        r = submit(c, "science", {**SPEC, "pool": sel})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pool"], (sel, r.text)
        msg = r.json()["detail"][0]["msg"]
        assert f"field pool: pool selector {sel!r}: {what}; allowed: a pool name (h100-eu-public, h100-nl-secret)" \
            in msg and msg.endswith("clearance=public|secret; gpu=h100; jurisdiction=eu|nl"), (sel, msg)
    assert len(c.get("/v1/jobs", headers=auth("science")).json()["jobs"]) == before
    r = submit(c, "science", {**SPEC, "name": "prio-float", "priority": 2.0})
    assert r.status_code == 201, r.text


def test_sovereignty_refused_at_submission(c: httpx.Client) -> None:
    # education (public, eu) asks for secret clearance: above its own
    r = submit(c, "education", {**SPEC, "requires": {"clearance": "secret"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "requires", "clearance"]
    # companies (eu only) asks for nl
    r = submit(c, "companies", {**SPEC, "requires": {"jurisdiction": "nl"}})
    assert r.status_code == 422 and "jurisdiction" in r.json()["detail"][0]["msg"]
    # defence asks for more GPUs than the secret pool holds
    r = submit(c, "defence", {**SPEC, "gpus": 24, "requires": {"clearance": "secret"}})
    assert r.status_code == 422, r.text
    # companies names the secret pool directly: no pool it may use matches
    r = submit(c, "companies", {**SPEC, "pool": "h100-nl-secret"})
    assert r.status_code == 422, r.text
    # defence with its clearance is admitted and lands only on the secret pool
    r = submit(c, "defence", {**SPEC, "name": "sov", "requires": {"clearance": "secret", "jurisdiction": "nl"}})
    assert r.status_code == 201
    jid = r.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        j = c.get(f"/v1/jobs/{jid}", headers=auth("defence")).json()
        if j["pool"]:
            break
        time.sleep(0.3)
    assert j["pool"] == "h100-nl-secret"
    audit = c.get("/v1/audit", headers=auth("ops")).json()["placements"]
    mine = [a for a in audit if a["job_id"] == jid]
    assert mine and all(a["labels"]["clearance"] == "secret" and a["tenant"] == "defence" for a in mine)
    # every placement in the log respects its tenant: only defence ever lands on the secret pool
    assert all(a["tenant"] == "defence" for a in audit if a["pool"] == "h100-nl-secret")
    rows = list(csv.DictReader(io.StringIO(c.get("/v1/audit?format=csv", headers=auth("ops")).text)))
    assert {r["job_id"] for r in rows} == {a["job_id"] for a in audit}
    assert c.get("/v1/audit", headers=auth("defence")).status_code == 403


def test_oversized_body_is_413(c: httpx.Client) -> None:
    big = {**SPEC, "entrypoint": "x" * 70_000}
    r = submit(c, "science", big)
    assert r.status_code == 413
    # a streamed body with no Content-Length is counted as it arrives
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "' + b"y" * 40_000
        yield b"z" * 40_000 + b'", "gpus": 1, "duration_s": 1}'
    r = c.post("/v1/jobs", content=chunks(), headers=auth("science") | {"content-type": "application/json"})
    assert r.status_code == 413


def test_idempotency(c: httpx.Client) -> None:
    spec = {**SPEC, "name": "idem"}
    r1 = submit(c, "science", spec, key="key-1")
    r2 = submit(c, "science", spec, key="key-1")
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r1.json()["id"] == r2.json()["id"]
    # same key, different body: 409, and nothing new was created
    r3 = submit(c, "science", {**spec, "gpus": 2}, key="key-1")
    assert r3.status_code == 409
    # the same key from another tenant is another job
    r4 = submit(c, "education", spec, key="key-1")
    assert r4.status_code == 201 and r4.json()["id"] != r1.json()["id"]
    jobs = c.get("/v1/jobs", headers=auth("science")).json()["jobs"]
    assert sum(1 for j in jobs if j["name"] == "idem") == 1


def test_cancel(c: httpx.Client) -> None:
    jid = submit(c, "companies", {**SPEC, "name": "to-cancel", "gpus": 1}).json()["id"]
    r = c.delete(f"/v1/jobs/{jid}", headers=auth("companies"))
    assert r.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = c.get(f"/v1/jobs/{jid}", headers=auth("companies")).json()["state"]
        if st == "cancelled":
            break
        time.sleep(0.3)
    assert st == "cancelled"
    # cancelling again changes nothing
    assert c.delete(f"/v1/jobs/{jid}", headers=auth("companies")).json()["state"] == "cancelled"


def test_plan_usage_and_congestion(server: ServerProcess, c: httpx.Client) -> None:
    wait_first_tick(server.url)  # /readyz is 200 before the first plan, and this test may run first (-k)
    plan = c.get("/v1/plan", headers=auth("science")).json()
    assert plan["status"] != "no_plan_yet" and plan["slots"] and "dual_price_g_per_gpu_h" in plan["slots"][0]
    u = c.get("/v1/usage", headers=auth("science")).json()
    assert [t["tenant"] for t in u["tenants"]] == ["science"]
    assert u["tenants"][0]["commitment"]["period"] == "day"
    assert len(c.get("/v1/usage", headers=auth("ops")).json()["tenants"]) == 5
    ev = {"cap_mw": 0.001, "start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z", "reason": "test"}
    assert c.post("/v1/congestion", json=ev, headers=auth("science")).status_code == 403
    bad = c.post("/v1/congestion", json={**ev, "end": "2019-01-01T00:00:00Z"}, headers=auth("ops"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "end"]
    r = c.post("/v1/congestion", json=ev, headers=auth("ops"))
    assert r.status_code == 201
    assert any(e["id"] == r.json()["id"] for e in c.get("/v1/congestion", headers=auth("science")).json()["events"])
    # the next tick (triggered at once) honours the cap in its plan's caps
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        plan = c.get("/v1/plan", headers=auth("science")).json()
        if plan["slots"][0]["grid_cap_w"] <= 1000.0 + 1e-6:
            break
        time.sleep(0.3)
    assert plan["slots"][0]["grid_cap_w"] <= 1000.0 + 1e-6


@pytest.mark.parametrize("policy", available_policies())
def test_every_registered_policy_serves(tmp_path: Path, policy: str) -> None:
    """``windward server --policy P`` for every registered policy, as an operator runs it: it starts, a job
    submitted over HTTP (a deadline five minutes past its run: every policy must start it now) is running
    after the tick its submission triggers, and SIGTERM stops the server cleanly. ``cics`` exited 1 at start
    with a traceback (make_policy handed it a horizon it has no parameter for)."""
    srv = start_server(tmp_path / "state.sqlite", tmp_path / "server.log", "--tick-seconds", "600", policy=policy)
    try:
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3600 + 300)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = submit(c, "science", {**SPEC, "gpus": 2, "duration_s": 3600, "deadline": due.isoformat()})
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            deadline = time.monotonic() + 60
            while (job := c.get(f"/v1/jobs/{jid}", headers=auth("science")).json())["state"] != "running":
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
        assert job["pool"], job
    finally:
        srv.kill(signal.SIGTERM)
    assert srv.proc.returncode == 0, srv.log()
    assert f"policy {policy}," in srv.log() and "windward server: stopped" in srv.log()
    assert "Traceback" not in srv.log()
