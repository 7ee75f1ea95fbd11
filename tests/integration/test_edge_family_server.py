"""The write paths of the real server (``windward server`` on loopback) against the edge family of their own
models (tests/unit/edge_family.py): every field of the job spec (``POST /v1/jobs``, ``scheduler.models.JobSpec``)
and of a congestion event (``POST /v1/congestion``, ``scheduler.api.CongestionIn``) at and past each edge, alone
and three at once (seeded), a few odd job ids to ``DELETE /v1/jobs/{id}``, and a tenants file the server refuses
at start. The property: 201 (or 200), or a 4xx whose ``detail`` names the field in ``loc``; never a 5xx; a value
the field's own definition refuses is refused; and a refused request leaves nothing in the real SQLite store (the
job and congestion rows are counted before and after); a refused tenants file exits 2 naming the field and
creates no store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from edge_family import Edge, apply, model_edges, sample
from server_process import REPO, ServerProcess, auth, start_server

from scheduler.api import CongestionIn
from scheduler.models import SITES_DIR, JobSpec, TenantsFile

pytestmark = pytest.mark.integration

BASE_SPEC: dict[str, Any] = {"name": "edge", "gpus": 1, "duration_s": 600.0}
BASE_CONGESTION: dict[str, Any] = {"cap_mw": 5.0, "start": "2027-01-20T00:00:00Z", "end": "2027-01-20T04:00:00Z"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    d = tmp_path_factory.mktemp("edge-server")
    srv = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "600", "--submit-rate", "1000",
                       "--submit-burst", "100000", "--max-queued-per-tenant", "100000")  # fmt: skip
    try:
        yield srv, d / "state.sqlite"
    finally:
        log = srv.log()
        srv.kill()
        assert "Traceback" not in log, log[-3000:]


def _count(db: Path, table: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def _body(doc: Any) -> bytes:
    """JSON as a client may send it: NaN and Infinity as Python writes them, a lone surrogate escaped."""
    return json.dumps(doc, allow_nan=True).encode()


def _post(srv: ServerProcess, path: str, doc: Any, who: str) -> httpx.Response:
    headers = {**auth(who), "Content-Type": "application/json"}
    return httpx.post(srv.url + path, content=_body(doc), headers=headers, timeout=30)


def _judge(resp: httpx.Response, edges: list[Edge], db: Path, table: str, before: int, what: str) -> None:
    assert resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:500]}"
    after = _count(db, table)
    if resp.status_code in (200, 201):
        assert not any(e.refuse for e in edges), f"{what}: the field's own definition refuses it: {resp.text[:300]}"
        assert after == before + (resp.status_code == 201), what
        return
    assert 400 <= resp.status_code < 500, what
    assert after == before, f"{what}: refused ({resp.status_code}) but the store changed: {before} -> {after}"
    if resp.status_code == 422 and len(edges) == 1:
        detail = resp.json()["detail"]
        # the field, or (a container the edge replaced, a rule across two fields) its parent or its name in msg
        keys = {str(k) for k in edges[0].path if isinstance(k, str)}
        items = detail if isinstance(detail, list) else [{"loc": [], "msg": str(detail)}]
        assert any(keys & {str(x) for x in it["loc"]} or any(k in it["msg"] for k in keys) for it in items), (
            what, detail)


SPEC_EDGES = list(model_edges(JobSpec))
CONGESTION_EDGES = list(model_edges(CongestionIn))


def test_every_job_spec_field_at_and_past_its_edges(server: tuple[ServerProcess, Path]) -> None:
    srv, db = server
    for e in SPEC_EDGES:
        before = _count(db, "jobs")
        _judge(_post(srv, "/v1/jobs", apply(BASE_SPEC, e), "science"), [e], db, "jobs", before, e.id)


@pytest.mark.parametrize("seed", range(20))
def test_job_specs_with_several_odd_fields_at_once(server: tuple[ServerProcess, Path], seed: int) -> None:
    srv, db = server
    edges = sample(SPEC_EDGES, 3, seed)
    doc = BASE_SPEC
    used = []
    for e in edges:
        try:
            doc = apply(doc, e)
            used.append(e)
        except (TypeError, KeyError, IndexError):  # (an earlier edge replaced the parent with a non-container)
            continue
    before = _count(db, "jobs")
    resp = _post(srv, "/v1/jobs", doc, "science")
    # several fields: the refusal must be, where one of them must be; the store unchanged on refusal
    assert resp.status_code < 500, resp.text[:500]
    if any(e.refuse for e in used):
        assert 400 <= resp.status_code < 500, ([e.id for e in used], resp.text[:300])
    _judge(resp, [], db, "jobs", before, f"seed {seed}: {[e.id for e in used]}")


def test_every_congestion_field_at_and_past_its_edges(server: tuple[ServerProcess, Path]) -> None:
    srv, db = server
    for e in CONGESTION_EDGES:
        before = _count(db, "congestion")
        _judge(_post(srv, "/v1/congestion", apply(BASE_CONGESTION, e), "ops"), [e], db, "congestion", before, e.id)


@pytest.mark.parametrize("job_id", ["", " ", "x" * 65, "x" * 5000, "caf\u00e9", "a%00b", "..", "%2e%2e", "-1", "0"])
def test_cancel_an_odd_job_id(server: tuple[ServerProcess, Path], job_id: str) -> None:
    srv, db = server
    before = _count(db, "jobs")
    resp = httpx.delete(f"{srv.url}/v1/jobs/{job_id}", headers=auth("science"), timeout=30)
    # (an empty id is the collection's path with a slash: a redirect to it, which a DELETE does not follow)
    assert resp.status_code in (307, 404, 405, 414, 422, 431), (job_id[:20], resp.status_code, resp.text[:300])
    assert _count(db, "jobs") == before


TENANT_REFUSALS = [e for e in model_edges(TenantsFile) if e.refuse and e.path[:2] == ("tenants", 0)]


@pytest.mark.parametrize("edge", sample(TENANT_REFUSALS, 3, seed=26), ids=lambda e: e.id)
def test_a_tenants_file_the_server_refuses_exits_2_and_creates_no_store(tmp_path: Path, edge: Edge) -> None:
    doc = apply(yaml.safe_load((SITES_DIR / "demo-tenants.yaml").read_text()), edge)
    p = tmp_path / "tenants.yaml"
    p.write_bytes(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))
    state = tmp_path / "state.sqlite"
    r = subprocess.run([str(Path(sys.executable).parent / "windward"), "server", "--tenants", str(p), "--state",
                        str(state), "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2, (edge.id, r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and str(p) in r.stderr and "field" in r.stderr, r.stderr[-2000:]
    assert not state.exists(), edge.id


def _ticks(srv: ServerProcess) -> float:
    text = httpx.get(srv.url + "/metrics", timeout=30).text
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("windward_ticks_total")))


def test_the_loop_ticks_over_every_accepted_spec(server: tuple[ServerProcess, Path]) -> None:
    """What the edges got accepted (a 1e-9 s job, priorities at the bounds, a begin in year 9999, ...) is planned
    and applied by the next tick without an error: a congestion event triggers one (ticks are 600 s apart)."""
    import time

    srv, db = server
    assert _count(db, "jobs") > 0
    n0 = _ticks(srv)
    resp = _post(srv, "/v1/congestion", BASE_CONGESTION, "ops")
    assert resp.status_code == 201, resp.text[:300]
    deadline = time.monotonic() + 120
    while _ticks(srv) <= n0:
        assert time.monotonic() < deadline, "no tick within 120 s of a congestion event"
        time.sleep(0.2)
    assert srv.proc.poll() is None
    assert "Traceback" not in srv.log() and " ERROR " not in srv.log(), srv.log()[-3000:]


@pytest.mark.parametrize("field", ["deadline", "begin"])
def test_a_time_past_the_furthest_the_api_takes_is_refused(server: tuple[ServerProcess, Path], field: str) -> None:
    """The generator reads no clock: the API's rule against its own (scheduler.models.DEADLINE_MAX_AHEAD_S after
    submission) is held here, for a deadline and, since round 26, a begin (year 9999 was accepted and held the
    job for good). Just inside is taken, just past and year 9999 are refused naming the field; the store is
    unchanged by a refusal."""
    from datetime import UTC, datetime, timedelta

    from scheduler.models import DEADLINE_MAX_AHEAD_S

    srv, db = server
    now = datetime.now(UTC)
    for when, ok in ((now + timedelta(seconds=DEADLINE_MAX_AHEAD_S - 86400), True),
                     (now + timedelta(seconds=DEADLINE_MAX_AHEAD_S + 86400), False),
                     (datetime(9999, 12, 31, tzinfo=UTC), False)):  # fmt: skip
        before = _count(db, "jobs")
        resp = _post(srv, "/v1/jobs", {**BASE_SPEC, field: when.isoformat().replace("+00:00", "Z")}, "science")
        if ok:
            assert resp.status_code == 201, resp.text[:300]
            assert _count(db, "jobs") == before + 1
        else:
            assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", field], resp.text[:300]
            assert _count(db, "jobs") == before
