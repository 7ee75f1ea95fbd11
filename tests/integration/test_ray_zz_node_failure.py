"""A node dies: its GPUs leave the pool, its jobs fail with the work since their checkpoint lost and resume
from the checkpoint elsewhere. Runs last (zz) and puts the node back for anything after it."""

from __future__ import annotations

import pytest

from scheduler.executors.ray_executor import _seed
from scheduler.jobs import Job
from scheduler.workloads import training

pytestmark = pytest.mark.integration

POOL = "h100-nl-secret"


def test_killed_nodes_jobs_resume_elsewhere_from_checkpoint(ray_ex) -> None:
    job = Job("victim", "acme", "training", 0.0, 8, 7200.0, checkpoint_interval_s=720.0, pool=POOL)
    p = ray_ex.start(job, POOL, 1.0, 0.0)
    assert p is not None
    node = p.nodes[0]
    for _ in range(60):
        ray_ex.step(300.0)
        if ray_ex.running()["victim"].checkpoint_work_s >= 720.0:
            break
    ck = ray_ex.running()["victim"].checkpoint_work_s
    assert ck >= 720.0
    dead_id = ray_ex.node_id(POOL, node)
    assert ray_ex.local.kill_node(dead_id) == POOL
    events = []
    for _ in range(60):  # Ray marks the node dead after ~3 s
        events += ray_ex.step(300.0)
        if {"failed", "node_down"} <= {e.kind for e in events}:  # the actor's death may be seen first
            break
    kinds = {(e.kind, e.job_id) for e in events}
    assert ("node_down", None) in kinds and ("failed", "victim") in kinds
    failed = next(e for e in events if e.kind == "failed")
    assert failed.lost_s >= 0.0 and failed.node == node
    assert ray_ex.healthy_gpus()[POOL] == 8
    assert ray_ex.free_gpus_by_node(POOL)[node] == 0
    assert "victim" not in ray_ex.running()
    try:
        # it resumes on the surviving node of its pool, from its checkpoint
        p2 = ray_ex.start(job, POOL, 1.0, ck)
        assert p2 is not None and p2.nodes != (node,)
        assert ray_ex.running()["victim"].work_done_s >= ck
        for _ in range(80):
            if any(e.kind == "finished" for e in ray_ex.step(300.0)):
                break
        assert ray_ex.result("victim") == training.reference_result(seed=_seed("victim"))
    finally:
        new_id = ray_ex.local.add_node(ray_ex.site.pool(POOL))
        for _ in range(40):
            if any(e.kind == "node_up" for e in ray_ex.step(300.0)):
                break
    assert ray_ex.healthy_gpus()[POOL] == 16
    # the new node (a new Ray node id) takes the dead one's place: the pool keeps two nodes
    assert ray_ex.node_id(POOL, node) == new_id != dead_id
    assert ray_ex.free_gpus_by_node(POOL).tolist() == [8, 8]
