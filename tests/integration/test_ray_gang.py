"""Multi-node gangs on real Ray: one worker per bundle, each with its rank, the world size, rank 0's address
and port and the GPUs Ray assigned it; the example training runs data-parallel with torch.distributed
(gloo on CPU), a preemption stops every rank, and the resume restarts all of them from rank 0's checkpoint."""

from __future__ import annotations

import json

import pytest
import ray
from procs import step_until

from scheduler.executors.ray_executor import NAMESPACE, _seed, actor_name
from scheduler.jobs import Job
from scheduler.workloads import training
from scheduler.workloads.runtime import checkpoint_work_s, read_progress

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"


def _until(ex, pred, max_steps: int = 120, dt_s: float = 300.0) -> list:
    return step_until(ex, pred, max_steps, dt_s)


def _gang_state(ex, job_id: str) -> list[dict]:
    """What each rank was given, read from the rank itself (its actor's config)."""
    out = []
    for rank in range(2):
        a = ray.get_actor(actor_name(job_id, rank), namespace=NAMESPACE)
        info = ray.get(a.info.remote(), timeout=30)
        out.append(json.loads(info["config"]))
    return out


@pytest.mark.parametrize("gpus,sizes", [(16, (8, 8)), (12, (8, 4))])
def test_gang_ranks_train_together_preempt_together_and_resume(ray_ex, gpus: int, sizes: tuple[int, ...]) -> None:
    jid = f"gang-{gpus}"
    params = {"steps": 120}
    ray_ex.set_workload_params(jid, params)
    job = Job(jid, "acme", "training", 0.0, gpus, 7200.0, checkpoint_interval_s=600.0)
    p = ray_ex.start(job, POOL, 1.0, 0.0)
    assert p is not None and p.gpus_per_node == sizes and len(set(p.nodes)) == 2
    cfgs = _gang_state(ray_ex, jid)
    assert [c["rank"] for c in cfgs] == [0, 1] and {c["world_size"] for c in cfgs} == {2}
    assert cfgs[0]["master_addr"] and cfgs[0]["master_port"] > 0
    assert {(c["master_addr"], c["master_port"]) for c in cfgs} == {(cfgs[0]["master_addr"], cfgs[0]["master_port"])}
    # each rank holds exactly the GPUs Ray assigned to its bundle, and the node agents capped those
    run = ray_ex._runs[jid]
    assert [len(d) for d in run.devices] == list(sizes)
    assert [tuple(c["gpu_ids"]) for c in cfgs] == [tuple(d) for d in run.devices]
    for node, dev in zip(p.nodes, run.devices):
        st = ray_ex.node_power_state(POOL, node)
        assert sorted(st["jobs"][jid]) == sorted(int(g) for g in dev)
    # both ranks make progress (rank 1 writes its own progress file)
    _until(ray_ex, lambda ev: ray_ex.running()[jid].work_done_s >= 1500.0)
    assert (read_progress(ray_ex.job_dir(jid), rank=1) or {}).get("step", 0) > 0
    ray_ex.preempt(jid, "test")
    ck = checkpoint_work_s(ray_ex.job_dir(jid))
    r0, r1 = read_progress(ray_ex.job_dir(jid)), read_progress(ray_ex.job_dir(jid), rank=1)
    assert r0 is not None and r1 is not None
    assert r0["step"] == r1["step"] and r0["stopped"] and r1["stopped"]  # all ranks stopped at the same step
    assert ck == pytest.approx(r0["work_done_s"]) and ck >= 1500.0 - 600.0
    for rank in range(2):  # no rank is left running
        with pytest.raises(ValueError):
            ray.get_actor(actor_name(jid, rank), namespace=NAMESPACE)
    # resume: every rank restarts from the checkpoint, and the gang finishes the training
    assert ray_ex.start(job, POOL, 0.8, ck) is not None
    assert ray_ex.running()[jid].work_done_s == pytest.approx(ck)
    _until(ray_ex, lambda ev: any(e.kind == "finished" and e.job_id == jid for e in ev))
    res = ray_ex.result(jid)
    ref = training.reference_result(seed=_seed(jid), params=params)
    assert res["world_size"] == 2 and res["backend"] == "gloo" and res["steps"] == 120
    assert res["accuracy"] == pytest.approx(ref["accuracy"], abs=0.03)  # shard-sum gradients: not bit-exact
    r1 = read_progress(ray_ex.job_dir(jid), rank=1)
    assert r1 is not None and r1["done"] and r1["result"]["weights_sha256"] == res["weights_sha256"]
    log0 = (ray_ex.job_dir(jid) / "job.log").read_text()
    assert "resuming from checkpoint" in log0 or "resume from" in log0
