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


# ----------------------------------------------------------------------- batching (group commit, journal)


def _sql_counts(path: Path) -> dict[tuple[str, str], int]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return {(st, t): n for st, t, n in db.execute("SELECT state, tenant, COUNT(*) FROM jobs GROUP BY 1, 2")}
    finally:
        db.close()


def test_submit_many_is_one_batch_with_per_request_results(tmp_path: Path) -> None:
    from scheduler.state import SubmitRequest

    s = StateStore(tmp_path / "s.sqlite")
    first = s.submit("science", spec(name="a"), "k1", T0)
    out = s.submit_many(
        [
            SubmitRequest("science", spec(name="a"), "k1"),  # retry of an earlier key: the same job
            SubmitRequest("science", spec(name="b"), "k2"),  # new
            SubmitRequest("science", spec(name="b"), "k2"),  # the same key twice in one batch: one job
            SubmitRequest("science", spec(name="c"), "k2"),  # that key, another spec: conflict, alone
            SubmitRequest("education", spec(name="b"), "k2"),  # keys are per tenant
            SubmitRequest("science", spec(name="d"), None),
        ],
        T0 + 1,
    )
    assert not out[0].created and out[0].record.id == first.record.id
    assert out[1].created and not out[2].created and out[2].record.id == out[1].record.id
    assert isinstance(out[3], IdempotencyConflict)
    assert out[4].created and out[4].record.id != out[1].record.id
    assert out[5].created
    # what the batch returned is exactly what is stored (the record is built without a read back)
    for r in (out[1], out[4], out[5]):
        assert s.get(r.record.id) == r.record
    assert len(s.list_jobs()) == 4
    assert s.counts() == _sql_counts(tmp_path / "s.sqlite") == {("queued", "science"): 3, ("queued", "education"): 1}


def test_a_batch_looks_its_keys_up_at_once_in_the_index(tmp_path: Path) -> None:
    """submit_many looks every key of a batch up in one query per tenant and chunk (StateStore._known_keys),
    each key a point lookup in the unique index (a range scan of the tenant's keyed rows would grow with the
    history), and answers retries and conflicts of committed keys, the empty key included, as before."""
    from scheduler.state import SubmitRequest

    s = StateStore(tmp_path / "s.sqlite")
    committed = {(t, f"k{i}"): s.submit(t, spec(name=f"{t}{i}"), f"k{i}", T0).record
                 for t, n in (("science", 7), ("education", 2)) for i in range(n)}  # fmt: skip
    committed[("science", "")] = s.submit("science", spec(name="empty"), "", T0).record
    found = StateStore._known_keys(s._w, {*committed, ("science", "k99"), ("public-services", "k0")}, chunk=2)
    assert {k: rec for k, (rec, _) in found.items()} == committed
    sql: list[str] = []
    s._w.set_trace_callback(sql.append)
    try:
        out = s.submit_many([SubmitRequest("science", spec(name="science3"), "k3"),  # retry: the same job
                             SubmitRequest("science", spec(name="other"), "k4"),  # another spec: conflict
                             SubmitRequest("science", spec(name="empty"), ""),  # the empty key is a key
                             SubmitRequest("education", spec(name="new"), "k5")], T0 + 1)  # fmt: skip
    finally:
        s._w.set_trace_callback(None)
    assert not out[0].created and out[0].record == committed[("science", "k3")]
    assert isinstance(out[1], IdempotencyConflict)
    assert not out[2].created and out[2].record == committed[("science", "")]
    assert out[3].created and s.get(out[3].record.id) == out[3].record
    lookups = [q for q in sql if q.lstrip().upper().startswith("SELECT") and "idempotency_key" in q]
    assert len(lookups) == 2  # one per tenant
    for q in lookups:
        plan = " ".join(str(r) for r in s._w.execute("EXPLAIN QUERY PLAN " + q).fetchall())
        assert "jobs_idem (tenant=? AND idempotency_key=?)" in plan, plan


def test_submit_queue_groups_concurrent_submissions(tmp_path: Path) -> None:
    from scheduler.state import SubmitQueue, SubmitRequest

    s = StateStore(tmp_path / "s.sqlite")
    q = SubmitQueue(s, lambda: T0)
    futs = []
    lock = threading.Lock()

    def client(t: int) -> None:
        for i in range(40):
            f = q.put(SubmitRequest(f"t{t}", spec(name=f"{i % 20}"), f"k{i % 20}"))  # every key used twice
            with lock:
                futs.append(f)
            f.result(timeout=30)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ids = {f.result().record.id for f in futs}
    assert len(ids) == 8 * 20 and len(s.list_jobs()) == 160
    assert q.submissions == 320 and q.batches < 320  # several clients shared a commit
    q.close()
    s.close()
    # all of it is on disk for the next process
    assert len(StateStore(tmp_path / "s.sqlite").list_jobs()) == 160


def test_batched_journal_and_counts(tmp_path: Path) -> None:
    from scheduler.state import ActionIntent, PlainOutcome, StartOutcome, StopOutcome

    s = StateStore(tmp_path / "s.sqlite")
    a, b, c = (s.submit("science", spec(name=n), None, T0).record.id for n in "abc")
    ids = s.intend_many([ActionIntent("start", j, {"pool": "p"}) for j in (a, b, c)], T0)
    assert len(ids) == 3 and [o.id for o in s.open_actions()] == ids  # all durable before acting
    s.request_cancel(c, T0)  # cancelled while the tick was starting it
    gone = s.record_outcomes(
        started=[StartOutcome(ids[0], a, "p", {"clearance": "public"}, (0,), 1.0),
                 StartOutcome(ids[2], c, "p", {}, (1,), 1.0)],
        plain=[PlainOutcome(ids[1], "no_fit", {})],
        now_unix_s=T0 + 1,
    )  # fmt: skip
    assert gone == [c] and s.open_actions() == []
    assert (s.get(a).state, s.get(b).state, s.get(c).state) == ("running", "queued", "cancelled")
    assert [r["job_id"] for r in s.audit()] == [a]  # no audit row for a start that did not take
    # a preemption resumes from the checkpoint the executor reported
    s.record_progress([JobProgress(a, "p", (0,), 1.0, 900.0, 600.0)], [], "2027-01-15", T0 + 900)
    s.record_outcomes(stopped=[StopOutcome(None, a, "queued", 100.0, "plan", 800.0)], now_unix_s=T0 + 901)
    r = s.get(a)
    assert (r.state, r.work_done_s, r.checkpoint_work_s, r.lost_work_s) == ("queued", 800.0, 800.0, 100.0)
    assert s.counts() == _sql_counts(tmp_path / "s.sqlite")
    # count(): one entry of counts() (the API's queued-jobs limit), 0 where counts() has none
    for st in ("queued", "running", "cancelled", "finished"):
        for tenant in ("science", "education"):
            assert s.count(st, tenant) == s.counts().get((st, tenant), 0)
    assert (s.count("queued", "science"), s.count("cancelled", "science"), s.count("running", "science")) == (2, 1, 0)


def test_recover_adopts_a_start_the_crash_left_unrecorded(tmp_path: Path) -> None:
    from scheduler.executors.base import RunningInfo

    s = StateStore(tmp_path / "s.sqlite")
    a = s.submit("science", spec(name="a"), None, T0).record.id
    done = s.submit("science", spec(name="d"), None, T0).record.id
    s.intend("start", a, {"pool": "p"}, T0)  # crash: the executor started it, the outcome never landed
    s.request_cancel(done, T0)
    running = {a: RunningInfo(a, "p", (2,), 0.8, 50.0, 0.0), done: RunningInfo(done, "p", (3,), 1.0, 0.0, 0.0)}
    rep = s.recover(running, T0 + 5, pool_labels={"p": {"clearance": "public"}})
    assert rep.adopted == (a,) and rep.orphans == (done,) and rep.open_actions == 0
    r = s.get(a)
    assert (r.state, r.pool, r.nodes, r.starts) == ("running", "p", (2,), 1)
    assert [x["job_id"] for x in s.audit()] == [a]
    assert s.counts() == _sql_counts(tmp_path / "s.sqlite")


@pytest.mark.parametrize("seed", range(4))
def test_view_json_is_the_view(tmp_path: Path, seed: int) -> None:
    """The submission reply splices the stored spec into the view's JSON: the same document as view()."""
    import json
    import random

    from scheduler.api import _json_bytes

    rng = random.Random(seed)
    s = StateStore(tmp_path / "s.sqlite")
    for i in range(30):
        name = rng.choice(["plain", "caf\u00e9 \u00fc\u00df", "\u6f22\u5b57", 'quote " and \\ backslash', f"n{i}"])
        kw: dict[str, object] = {"name": name, "gpus": rng.randint(1, 8), "priority": rng.randint(-3, 3)}
        if rng.random() < 0.4:
            kw["deadline"] = "2027-01-20T00:00:00Z"
        if rng.random() < 0.3:
            kw["entrypoint"] = "python train.py"
            kw["env"] = {"K": "v\u00e9"}
            kw["args"] = ["--x", "1"]
        rec = s.submit(rng.choice(["science", "education"]), spec(**kw), None, T0 + rng.random() * 1e5).record
        assert json.loads(rec.view_json(_json_bytes)) == rec.view()
        extra = {"position": i, "reason": rng.choice([None, "waits for wind", "\u00e9"])}
        assert json.loads(rec.view_json(_json_bytes, extra)) == {**rec.view(), **extra}
        assert json.loads(rec.view_json(_json_bytes)) == json.loads(json.dumps(rec.view()))
    s.close()


def test_authenticator_remembers_known_tokens_only() -> None:
    a = Authenticator(load_tenants())
    sci = a.authenticate(dev_token("science"))
    assert sci is not None and sci.name == "science" and not sci.is_operator
    for _ in range(3):
        assert a.authenticate(dev_token("science")) is sci
    ops = a.authenticate(dev_token("ops"))
    assert ops is not None and ops.is_operator
    for i in range(500):  # unknown tokens: refused every time, none remembered
        assert a.authenticate(f"windward-dev-nobody-{i}") is None
    assert a.authenticate(dev_token("science") + "x") is None
    assert set(a._verified) == {dev_token("science"), dev_token("ops")}
