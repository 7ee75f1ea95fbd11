"""Gang placement and pool isolation on a real multi-node Ray cluster (simulated GPU nodes)."""

from __future__ import annotations

import pytest
import ray
from ray.util.placement_group import placement_group_table

from scheduler.errors import ExecutorError, InputError
from scheduler.jobs import Job

pytestmark = pytest.mark.integration

EU, NL = "h100-eu-public", "h100-nl-secret"


def _job(job_id: str, gpus: int, **kw: object) -> Job:
    return Job(job_id, "acme", "training", 0.0, gpus, 36000.0, **kw)  # long: stays running during the test


def _pg_nodes(job_id: str) -> list[str]:
    t = [e for e in placement_group_table().values() if e["name"] == f"windward-{job_id}" and e["state"] == "CREATED"]
    assert len(t) == 1
    return [t[0]["bundles_to_node_id"][b] for b in sorted(t[0]["bundles_to_node_id"])]


def _labels_of(node_id: str) -> dict[str, str]:
    return next(n["Labels"] for n in ray.nodes() if n["NodeID"] == node_id)


def test_multi_node_gang_gets_all_gpus_or_none(ray_ex) -> None:
    small = ray_ex.start(_job("g-small", 4), EU, 1.0, 0.0)
    assert small is not None and small.gpus_per_node == (4,)
    free_before = ray_ex.free_gpus_by_node(EU).tolist()
    assert sorted(free_before) == [4, 8]
    # 16 GPUs need two whole nodes; only one is whole: nothing is reserved, no group is left behind
    assert ray_ex.start(_job("g-big", 16), EU, 1.0, 0.0) is None
    assert ray_ex.free_gpus_by_node(EU).tolist() == free_before
    assert not [e for e in placement_group_table().values() if e["name"] == "windward-g-big" and e["state"] != "REMOVED"]
    assert "g-big" not in ray_ex.running()
    ray_ex.preempt("g-small", "make room")
    big = ray_ex.start(_job("g-big", 16), EU, 1.0, 0.0)
    assert big is not None
    assert sorted(big.nodes) == [0, 1] and big.gpus_per_node == (8, 8)
    nodes = _pg_nodes("g-big")
    assert len(set(nodes)) == 2  # one bundle per node (STRICT_SPREAD)
    assert all(_labels_of(n)["windward.pool"] == EU for n in nodes)
    assert ray_ex.free_gpus_by_node(EU).tolist() == [0, 0]
    assert ray_ex.healthy_gpus() == {EU: 16, NL: 16}


def test_uneven_gang_spreads_whole_node_plus_remainder(ray_ex) -> None:
    p = ray_ex.start(_job("g-12", 12), NL, 1.0, 0.0)
    assert p is not None and p.gpus_per_node == (8, 4) and len(set(p.nodes)) == 2
    assert sorted(ray_ex.free_gpus_by_node(NL).tolist()) == [0, 4]


def test_sovereign_jobs_never_land_outside_their_pool(ray_ex) -> None:
    secret = [_job(f"s-{i}", 8, pool="jurisdiction=nl,clearance=secret") for i in range(3)]
    with pytest.raises(ExecutorError):
        ray_ex.start(secret[0], EU, 1.0, 0.0)  # the executor refuses an ineligible pool outright
    placed = [ray_ex.start(j, NL, 1.0, 0.0) for j in secret[:2]]
    assert all(p is not None for p in placed)
    for j in secret[:2]:
        assert all(_labels_of(n)["windward.pool"] == NL and _labels_of(n)["clearance"] == "secret" for n in _pg_nodes(j.job_id))
    # the sovereign pool is full; the public pool is empty, yet the third job waits rather than leaving NL
    assert ray_ex.free_gpus_by_node(EU).tolist() == [8, 8]
    assert ray_ex.start(secret[2], NL, 1.0, 0.0) is None
    assert "s-2" not in ray_ex.running()


def test_job_no_pool_could_ever_hold_is_rejected_at_submission(ray_ex) -> None:
    with pytest.raises(InputError, match="needs 64 GPUs"):
        ray_ex.check_job(_job("too-big", 64))
    with pytest.raises(InputError, match="no pool matches"):
        ray_ex.check_job(_job("nowhere", 1, jurisdiction="us"))
    ray_ex.check_job(_job("fine", 16, jurisdiction="nl"))
