"""Crash safety: clients submit with idempotency keys while the server is SIGKILLed at random points and
restarted, again and again. Afterwards every acknowledged submission exists exactly once, with the id it
was acknowledged with, and every job's state is consistent with its journal and audit log."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_process import auth, start_server

pytestmark = pytest.mark.integration

TENANTS = ("science", "education", "companies", "defence")
KILLS = 8


def _spec(tenant: str, i: int) -> dict:
    spec = {"name": f"{tenant}-{i}", "kind": "training", "gpus": 1 + i % 4, "duration_s": 900 + 300 * (i % 5),
            "checkpoint_interval_s": 300}  # fmt: skip
    if tenant == "defence":
        spec["requires"] = {"clearance": "secret"}
    return spec


def _all_jobs(c: httpx.Client, tenant: str) -> list[dict]:
    """Every page of GET /v1/jobs (issue 16: lists page with a cursor)."""
    jobs: list[dict] = []
    cursor = None
    while True:
        page = c.get("/v1/jobs", params={"limit": 5000} | ({"cursor": cursor} if cursor else {}),
                     headers=auth(tenant)).json()  # fmt: skip
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


def test_sigkill_loses_nothing_duplicates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    log = tmp_path / "server.log"
    rng = random.Random(1234)
    url_box = {"url": ""}
    acked: dict[tuple[str, str], str] = {}  # (tenant, key) -> id the server acknowledged
    tried: dict[tuple[str, str], dict] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(tenant: str) -> None:
        i = 0
        with httpx.Client(timeout=3) as c:
            while not stop.is_set():
                key = f"{tenant}-key-{i}"
                spec = _spec(tenant, i)
                with lock:
                    tried[(tenant, key)] = spec
                try:
                    r = c.post(url_box["url"] + "/v1/jobs", json=spec, headers=auth(tenant) | {"Idempotency-Key": key})
                except httpx.HTTPError:
                    time.sleep(0.05)  # server down: retry the same key (a client that keeps its promise)
                    continue
                assert r.status_code in (200, 201), r.text
                with lock:
                    prev = acked.setdefault((tenant, key), r.json()["id"])
                    assert prev == r.json()["id"]
                i += 1

    srv = start_server(state, log, "--tick-seconds", "1")
    url_box["url"] = srv.url
    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in TENANTS]
    for t in threads:
        t.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            srv.kill()  # SIGKILL: no shutdown code runs
            srv = start_server(state, log, "--tick-seconds", "1")
            url_box["url"] = srv.url
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    try:
        assert len(acked) > 50, f"only {len(acked)} acknowledged submissions: the test did not exercise much"
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            # every acknowledged id is there, for its tenant
            for tenant in TENANTS:
                jobs = _all_jobs(c, tenant)
                names = [j["name"] for j in jobs]
                assert len(names) == len(set(names)), f"{tenant}: a submission was stored twice"
                ids = {j["id"] for j in jobs}
                mine = {v for (t, _), v in acked.items() if t == tenant}
                assert mine <= ids, f"{tenant}: acknowledged jobs lost: {sorted(mine - ids)[:5]}"
                # every stored job was submitted by a client (nothing invented)
                assert len(ids) <= sum(1 for (t, _) in tried if t == tenant)
            # retrying every key now returns the acknowledged job, never a new one
            for (tenant, key), jid in list(acked.items())[::7]:
                r = c.post("/v1/jobs", json=tried[(tenant, key)], headers=auth(tenant) | {"Idempotency-Key": key})
                assert r.status_code == 200 and r.json()["id"] == jid
            # let the loop run the remaining work for a few slots
            time.sleep(2.0)
            assert c.get("/readyz").json()["ready"]
    finally:
        srv.kill()

    db = sqlite3.connect(state)
    n_dupes = db.execute(
        "SELECT COUNT(*) FROM (SELECT tenant, idempotency_key FROM jobs GROUP BY 1, 2 HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    assert n_dupes == 0
    for jid, st, pool, work, dur, ckpt, starts in db.execute(
        "SELECT id, state, pool, work_done_s, duration_s, checkpoint_work_s, starts FROM jobs"
    ):
        assert st in ("queued", "running", "finished", "failed", "cancelled"), (jid, st)
        assert 0.0 <= ckpt <= work + 1e-6 and work <= dur + 1e-6, (jid, ckpt, work, dur)
        if st == "running":
            assert pool is not None, jid
        if st == "finished":
            assert abs(work - dur) < 1e-6, jid
        if st == "queued":
            assert starts == 0 or work == ckpt, (jid, "a requeued job resumes from its checkpoint")
        # one audit row per start: each placement was made once, never replayed
        n_audit = db.execute("SELECT COUNT(*) FROM audit WHERE job_id=?", (jid,)).fetchone()[0]
        assert n_audit == starts, (jid, n_audit, starts)
    # each job started at most once per process lifetime and never twice without a stop in between:
    # successful 'start' outcomes alternate with stops (preempt / finish / restart-requeue) per job
    rows = db.execute("SELECT job_id, COUNT(*) FROM actions WHERE kind='start' AND outcome='started' GROUP BY 1")
    for jid, n in rows:
        starts = db.execute("SELECT starts FROM jobs WHERE id=?", (jid,)).fetchone()[0]
        assert n == starts, (jid, n, starts)
    # secret work only ever on the secret pool
    for tenant, pool, _clearance in db.execute("SELECT tenant, pool, clearance_required FROM audit"):
        assert (pool == "h100-nl-secret") == (tenant == "defence"), (tenant, pool)
    db.close()
