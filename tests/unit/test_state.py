"""The SQLite state store: idempotent submission, journalled actions, recovery, usage, audit, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scheduler.auth import Authenticator, admit_job, dev_token, tenant_pools
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.state import IdempotencyConflict, JobProgress, StateStore, UsageDelta

T0 = 1_800_000_000.0


def spec(**kw: object) -> JobSpec:
    return JobSpec.model_validate({"name": "j", "gpus": 2, "duration_s": 3600, **kw})


def test_submit_is_durable_and_idempotent(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "s.sqlite")
    a = s.submit("science", spec(), "k", T0)
    b = s.submit("science", spec(), "k", T0 + 1)
    assert a.created and not b.created and a.record.id == b.record.id
    with pytest.raises(IdempotencyConflict):
        s.submit("science", spec(gpus=3), "k", T0)
    c = s.submit("education", spec(), "k", T0)  # keys are per tenant
    assert c.created and c.record.id != a.record.id
    s.close()
    # a new process sees exactly what was acknowledged
    s2 = StateStore(tmp_path / "s.sqlite")
    assert [r.id for r in s2.list_jobs()] == [a.record.id, c.record.id]
    assert s2.list_jobs(tenant="science")[0].state == "queued"
    s2.close()


def test_start_preempt_recover_cycle(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "s.sqlite")
    jid = s.submit("defence", spec(requires={"clearance": "secret"}), None, T0).record.id
    aid = s.intend("start", jid, {"pool": "p"}, T0)
    assert [a.id for a in s.open_actions()] == [aid]
    s.record_started(aid, jid, "p", {"clearance": "secret"}, (3,), 1.0, T0)
    assert s.open_actions() == []
    s.record_progress([JobProgress(jid, "p", (3,), 1.0, 2000.0, 1800.0)],
                      [UsageDelta(jid, "defence", 4000.0, 5e6, 12.0)], "2027-01-15", T0 + 2000)  # fmt: skip
    r = s.get(jid)
    assert (r.state, r.pool, r.nodes, r.work_done_s, r.gpu_s) == ("running", "p", (3,), 2000.0, 4000.0)
    # a crash with an open intent: recovery requeues from the checkpoint and closes the intent
    s.intend("preempt", jid, {}, T0 + 2001)
    rep = s.recover(executor_running=[], now_unix_s=T0 + 3000)
    assert rep.requeued == (jid,) and rep.open_actions == 1 and rep.lost_work_s == pytest.approx(200.0)
    r = s.get(jid)
    assert (r.state, r.work_done_s, r.lost_work_s, r.starts) == ("queued", 1800.0, 200.0, 1)
    assert s.audit()[0]["labels"] == {"clearance": "secret"} and s.audit()[0]["tenant"] == "defence"
    assert s.usage_by_tenant()["defence"]["carbon_g"] == 12.0


def test_recover_adopts_what_the_executor_still_runs(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "s.sqlite")
    jid = s.submit("science", spec(), None, T0).record.id
    s.record_started(s.intend("start", jid, {}, T0), jid, "p", {}, (0,), 1.0, T0)
    rep = s.recover(executor_running=[jid], now_unix_s=T0 + 10)
    assert rep.adopted == (jid,) and s.get(jid).state == "running"


def test_cancel(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "s.sqlite")
    q = s.submit("science", spec(), None, T0).record.id
    r = s.submit("science", spec(name="r"), None, T0).record.id
    s.record_started(s.intend("start", r, {}, T0), r, "p", {}, (0,), 1.0, T0)
    assert s.request_cancel(q, T0).state == "cancelled"
    rec = s.request_cancel(r, T0)
    assert rec.state == "running" and rec.cancel_requested  # the loop stops it, journalled
    s.record_stopped(None, r, "cancelled", 0.0, T0 + 5)
    assert s.get(r).state == "cancelled"
    with pytest.raises(KeyError):
        s.request_cancel("job-nope", T0)


def test_concurrent_submissions_from_threads(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "s.sqlite")
    ids: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(50):
            res = s.submit(f"t{t}", spec(name=f"{i % 25}"), f"k{i % 25}", T0)  # every key used twice
            with lock:
                ids.append(res.record.id)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(ids)) == 4 * 25 and len(s.list_jobs()) == 100


def test_bad_state_file_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="junk.sqlite"):
        StateStore(p)


def test_auth_and_sovereignty() -> None:
    site = load_site("demo")
    tf = load_tenants()
    auth = Authenticator(tf)
    assert auth.authenticate(dev_token("science")).name == "science"
    assert auth.authenticate(dev_token("ops")).is_operator
    assert auth.authenticate("windward-dev-nobody") is None and auth.authenticate("") is None
    assert auth.bearer("Bearer abc") == "abc" and auth.bearer("Basic abc") is None
    tenants = {t.name: t for t in tf.tenants}
    assert tenant_pools(site, tenants["defence"]) == ("h100-nl-secret",)
    assert tenant_pools(site, tenants["companies"]) == ("h100-eu-public",)
    job = Job("j", "companies", "training", 0.0, 4, 3600.0)
    assert admit_job(site, tenants["companies"], job).pools_allowed == ("h100-eu-public",)
    with pytest.raises(InputError, match="requires.clearance"):
        admit_job(site, tenants["companies"], Job("j", "companies", "training", 0.0, 4, 3600.0, clearance="secret"))
    with pytest.raises(InputError, match="no pool matches"):
        admit_job(site, tenants["companies"], Job("j", "companies", "training", 0.0, 4, 3600.0, pool="h100-nl-secret"))
