"""Real Ray nodes started with exactly the rayStartParams of deploy/kuberay/raycluster.yaml's worker groups
(GPUs, resources and labels parsed from the YAML, not restated) join the right pool of the executor, take
work, and leave it again; a group of a pool the site does not have is ignored. The demo site's two pools
are also rotterdam-100k pools with the same node shape, so the session's demo cluster can take them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scheduler.executors.ray_cluster import parse_ray_start
from scheduler.jobs import Job

pytestmark = pytest.mark.integration

RAYCLUSTER = Path(__file__).resolve().parents[2] / "deploy" / "kuberay" / "raycluster.yaml"


def _groups() -> dict[str, dict]:
    (rc,) = [d for d in yaml.safe_load_all(RAYCLUSTER.read_text()) if d and d.get("kind") == "RayCluster"]
    return {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}


def _add(ray_ex, group: dict) -> str:
    spec = parse_ray_start(group["rayStartParams"])
    node = ray_ex.local.cluster.add_node(num_cpus=1, num_gpus=spec.num_gpus, resources=dict(spec.resources),
                                         labels=dict(spec.labels), object_store_memory=80 * 1024**2)  # fmt: skip
    return str(node.node_id)


def _step_until(ray_ex, pred, n: int = 60) -> list:
    events = []
    for _ in range(n):
        events += ray_ex.step(100.0)
        if pred(events):
            return events
    raise AssertionError(f"not reached; events {events}")


@pytest.mark.parametrize("pool", ["h100-eu-public", "h100-nl-secret"])
def test_a_node_started_from_the_manifest_joins_its_pool_and_takes_work(ray_ex, pool: str) -> None:
    groups = _groups()
    before = ray_ex.healthy_gpus()
    node_id = _add(ray_ex, groups[pool])
    try:
        _step_until(ray_ex, lambda ev: any(e.kind == "node_up" and e.pool == pool for e in ev))
        assert ray_ex.healthy_gpus() == {**before, pool: before[pool] + 8}
        index = next(i for i in range(3) if ray_ex.node_id(pool, i) == node_id)
        assert index == 2  # after the site's two nodes; numbered by the executor, not by a label
        jobs = [Job(f"fill-{pool}-{k}", "acme", "training", 0.0, 8, 36000.0, pool=f"jurisdiction={'nl' if 'nl' in pool else 'eu'}")
                for k in range(3)]  # fmt: skip
        placed = [ray_ex.start(j, pool, 1.0, 0.0) for j in jobs]
        assert all(p is not None for p in placed)
        assert sorted(p.nodes[0] for p in placed) == [0, 1, 2]  # the third job runs on the new node
        assert ray_ex.power_control_modes()["simulated"] == 5
    finally:
        ray_ex.stop_all()
        ray_ex.local.cluster.remove_node(next(n for n in ray_ex.local.cluster.worker_nodes if str(n.node_id) == node_id),
                                         allow_graceful=True)  # fmt: skip
        _step_until(ray_ex, lambda ev: any(e.kind == "node_down" and e.pool == pool for e in ev))
    assert ray_ex.healthy_gpus() == before and len(ray_ex.free_gpus_by_node(pool)) == 2


def test_a_group_of_a_pool_the_site_lacks_is_ignored(ray_ex) -> None:
    groups = _groups()
    assert "b200-nl-confidential" not in {p.name for p in ray_ex.site.pools}
    before = ray_ex.healthy_gpus()
    node_id = _add(ray_ex, groups["b200-nl-confidential"])
    try:
        ray_ex.step(100.0)
        ray_ex.step(100.0)
        assert ray_ex.healthy_gpus() == before
    finally:
        ray_ex.local.cluster.remove_node(next(n for n in ray_ex.local.cluster.worker_nodes if str(n.node_id) == node_id),
                                         allow_graceful=True)  # fmt: skip
