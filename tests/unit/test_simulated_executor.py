"""The simulated executor: gang placement, progress, checkpoints, preemption, node failures, scale."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.errors import ExecutorError, InputError
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.jobs import Job
from scheduler.models import load_site

POOL = "h100-eu-public"  # demo site: 2 nodes x 8 GPUs


def job(jid: str, gpus: int, duration_s: float = 3600.0, ckpt_s: float = 300.0) -> Job:
    return Job(jid, "t", "training", 0.0, gpus, duration_s, checkpoint_interval_s=ckpt_s)


@pytest.fixture
def ex() -> SimulatedExecutor:
    return SimulatedExecutor(load_site("demo"), VirtualClock())


def test_virtual_clock_moves_only_forward() -> None:
    c = VirtualClock(10.0)
    c.advance(5.0)
    assert c.now_s() == 15.0
    with pytest.raises(ValueError):
        c.advance(-1.0)


def test_best_fit_packs_small_jobs(ex: SimulatedExecutor) -> None:
    assert ex.start(job("a", 3), POOL, 1.0, 0.0).nodes == (0,)
    # node 0 has 5 free, node 1 has 8: best fit for 4 is node 0
    assert ex.start(job("b", 4), POOL, 1.0, 0.0).nodes == (0,)
    # node 0 has 1 free: a 2-GPU job goes to node 1
    assert ex.start(job("c", 2), POOL, 1.0, 0.0).nodes == (1,)
    assert ex.free_gpus_by_node(POOL).tolist() == [1, 6]
    assert ex.free_gpus_by_node(POOL).dtype == np.int32


def test_gang_is_all_or_nothing(ex: SimulatedExecutor) -> None:
    ex.start(job("small", 1), POOL, 1.0, 0.0)
    before = ex.free_gpus_by_node(POOL).tolist()
    # 16 GPUs need both nodes whole: 15 free GPUs is not enough, and nothing changes
    assert ex.start(job("big", 16), POOL, 1.0, 0.0) is None
    assert ex.free_gpus_by_node(POOL).tolist() == before
    assert not ex.is_running("big")
    ex.preempt("small", "test")
    p = ex.start(job("big", 16), POOL, 1.0, 0.0)
    assert p is not None and p.nodes == (0, 1) and p.gpus_per_node == (8, 8)
    assert ex.free_gpus_by_node(POOL).tolist() == [0, 0]


def test_multi_node_job_needs_whole_nodes(ex: SimulatedExecutor) -> None:
    ex.start(job("a", 1), POOL, 1.0, 0.0)  # node 0 no longer whole
    # 12 GPUs = 2 whole nodes; only one is whole
    assert ex.start(job("b", 12), POOL, 1.0, 0.0) is None
    assert ex.start(job("c", 8), POOL, 1.0, 0.0).nodes == (1,)


def test_progress_speed_and_exact_finish_time(ex: SimulatedExecutor) -> None:
    ex.start(job("full", 1, duration_s=1000.0), POOL, 1.0, 0.0)
    ex.start(job("slow", 1, duration_s=1000.0), POOL, 0.6, 0.0)
    assert ex.step(900.0) == []
    info = ex.running()
    assert info["full"].work_done_s == pytest.approx(900.0)
    assert info["slow"].work_done_s == pytest.approx(900.0 * 0.82)  # speed curve at f=0.6
    events = ex.step(900.0)
    fin = [(e.job_id, e.time_s) for e in events if e.kind == "finished"]
    # exact completion times inside the step, in time order; slow: 1000 s of work at speed 0.82
    assert fin == [("full", pytest.approx(1000.0)), ("slow", pytest.approx(1000.0 / 0.82))]
    assert ex.clock.now_s() == 1800.0
    assert ex.free_gpus_by_node(POOL).sum() == 16


def test_preemption_loses_work_since_checkpoint(ex: SimulatedExecutor) -> None:
    ex.start(job("a", 2, duration_s=10_000.0, ckpt_s=300.0), POOL, 1.0, 0.0)
    ex.step(1000.0)  # work 1000, last checkpoint at 900
    assert ex.running()["a"].checkpoint_work_s == pytest.approx(900.0)
    lost = ex.preempt("a", "test")
    assert lost == pytest.approx(100.0)
    evs = ex.step(0.0)
    assert [(e.kind, e.job_id, e.lost_s) for e in evs] == [("preempted", "a", pytest.approx(100.0))]
    assert ex.free_gpus_by_node(POOL).sum() == 16
    # resume from the checkpoint: the checkpoint is safe work, progress continues from it
    ex.start(job("a", 2, duration_s=10_000.0, ckpt_s=300.0), POOL, 1.0, 900.0)
    ex.step(100.0)
    assert ex.running()["a"].work_done_s == pytest.approx(1000.0)
    with pytest.raises(ExecutorError):
        ex.preempt("nope", "test")


def test_node_failure_stops_jobs_and_repair_restores(ex: SimulatedExecutor) -> None:
    ex.start(job("on0", 8, duration_s=10_000.0, ckpt_s=600.0), POOL, 1.0, 0.0)
    ex.start(job("on1", 4, duration_s=10_000.0), POOL, 1.0, 0.0)
    ex.step(700.0)
    events = ex.fail_node(POOL, 0)
    failed = [e for e in events if e.kind == "failed"]
    assert [e.job_id for e in failed] == ["on0"] and failed[0].lost_s == pytest.approx(100.0)
    assert ex.healthy_gpus()[POOL] == 8
    assert ex.free_gpus_by_node(POOL).tolist() == [0, 4]
    assert set(ex.running()) == {"on1"}
    # the down node cannot take work
    assert ex.start(job("x", 8), POOL, 1.0, 0.0) is None
    assert {e.kind for e in ex.step(0.0)} == {"node_down", "failed"}
    ex.repair_node(POOL, 0)
    assert ex.healthy_gpus()[POOL] == 16
    assert ex.start(job("x", 8), POOL, 1.0, 0.0).nodes == (0,)
    with pytest.raises(InputError):
        ex.fail_node(POOL, 99)


def test_bad_calls_are_refused_without_change(ex: SimulatedExecutor) -> None:
    with pytest.raises(InputError, match="unknown pool"):
        ex.start(job("a", 1), "nope", 1.0, 0.0)
    with pytest.raises(ExecutorError, match="power_fraction"):
        ex.start(job("a", 1), POOL, 0.1, 0.0)
    ex.start(job("a", 1), POOL, 1.0, 0.0)
    with pytest.raises(ExecutorError, match="already running"):
        ex.start(job("a", 1), POOL, 1.0, 0.0)
    with pytest.raises(ExecutorError):
        ex.set_power_fraction("a", 1.5)
    assert ex.running()["a"].power_fraction == 1.0
    assert ex.free_gpus_by_node(POOL).sum() == 15


def test_100k_gpus_are_arrays_not_objects() -> None:
    site = load_site("rotterdam-100k")
    ex = SimulatedExecutor(site, VirtualClock())
    total_nodes = sum(len(ex.free_gpus_by_node(p.name)) for p in site.pools)
    assert total_nodes * 8 == site.total_gpus == sum(ex.healthy_gpus().values())
    pool = site.pools[1].name
    for i in range(2000):
        assert ex.start(job(f"j{i}", 16 if i % 2 else 1), pool, 1.0, 0.0) is not None
    assert int(site.pool(pool).gpus - ex.free_gpus_by_node(pool).sum()) == 1000 * 16 + 1000
    ex.step(3600.0)
    assert len(ex.running()) == 0  # all 1-hour jobs finished


def test_inference_is_placed_as_replicas_across_partly_used_nodes() -> None:
    site = load_site("demo")
    clock = VirtualClock()
    ex = SimulatedExecutor(site, clock)
    pub = "h100-eu-public"
    assert ex.start(Job("a", "t", "training", 0.0, 5, 3600.0), pub, 1.0, 0.0) is not None
    assert ex.start(Job("b", "t", "training", 0.0, 5, 3600.0), pub, 1.0, 0.0) is not None
    # 6 GPUs free, 3 + 3 on two nodes: a 6-GPU training gang does not fit, a 6-GPU inference service does
    assert sorted(ex.free_gpus_by_node(pub).tolist()) == [3, 3]
    assert ex.start(Job("g", "t", "training", 0.0, 6, 3600.0), pub, 1.0, 0.0) is None
    pl = ex.start(Job("inf", "t", "inference", 0.0, 6, 900.0, preemptible=False), pub, 1.0, 0.0)
    assert pl is not None and pl.gpus_per_node == (3, 3) and len(set(pl.nodes)) == 2
    assert ex.free_gpus_by_node(pub).sum() == 0
    assert ex.start(Job("inf2", "t", "inference", 0.0, 1, 900.0, preemptible=False), pub, 1.0, 0.0) is None
    ev = ex.step(900.0)
    assert [e.job_id for e in ev if e.kind == "finished"] == ["inf"]
    assert ex.free_gpus_by_node(pub).sum() == 6
