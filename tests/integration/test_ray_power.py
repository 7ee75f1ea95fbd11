"""GPU power limits: the node agents set exactly what the plan asks (simulated devices here, NVML on GPU nodes)."""

from __future__ import annotations

import pytest

from scheduler.errors import ExecutorError
from scheduler.executors.ray_executor import _RemoteNodeAgent, _root_cause
from scheduler.jobs import Job
from scheduler.power_devices import nvml_unavailable_error

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"
TDP_W = 700.0


def test_agent_limits_equal_the_planned_fraction(ray_ex) -> None:
    backends = ray_ex.power_backends()
    assert len(backends) == 4 and all(b in ("simulated", "nvml") for b, _ in backends.values())
    p = ray_ex.start(Job("pw", "acme", "training", 0.0, 3, 36000.0), POOL, 0.7, 0.0)
    assert p is not None
    node = p.nodes[0]
    st = ray_ex.node_power_state(POOL, node)
    mine = st["jobs"]["pw"]
    assert len(mine) == 3
    assert [st["limits_w"][i] for i in mine] == pytest.approx([0.7 * TDP_W] * 3)
    others = [i for i in range(8) if i not in mine]
    assert [st["limits_w"][i] for i in others] == pytest.approx([TDP_W] * 5)
    for frac in (0.45, 1.0, 0.6):
        ray_ex.set_power_fraction("pw", frac)
        st = ray_ex.node_power_state(POOL, node)
        assert [st["limits_w"][i] for i in mine] == pytest.approx([frac * TDP_W] * 3)
    if st["backend"] == "simulated":  # the DESIGN model: busy GPUs draw their limit, idle ones idle_w
        assert [st["draws_w"][i] for i in mine] == pytest.approx([0.6 * TDP_W] * 3)
        assert [st["draws_w"][i] for i in others] == pytest.approx([75.0] * 5)
    assert ray_ex.running()["pw"].power_fraction == 0.6
    with pytest.raises(ExecutorError, match="outside pool"):
        ray_ex.set_power_fraction("pw", 0.2)  # below the pool's min_power_fraction (0.4)
    ray_ex.preempt("pw", "test")
    st = ray_ex.node_power_state(POOL, node)
    assert "pw" not in st["jobs"] and st["limits_w"] == pytest.approx([TDP_W] * 8)


def test_power_mode_is_reported_and_nothing_is_measured_on_simulated_nodes(ray_ex) -> None:
    # every node of the demo cluster is simulated: the metric says so, and no pool has a measured draw
    # (the model stays the only source); NVML nodes are exercised against a faked NVML in
    # tests/unit/test_power_nvml.py
    assert ray_ex.power_control_modes() == {"nvml": 0, "simulated": 4}
    assert ray_ex.measured_gpu_power_w() == {}


def test_a_node_agent_asked_for_nvml_where_nvml_cannot_act_fails_naming_the_reason(ray_ex) -> None:
    """The node side of `--power-control nvml`: an agent started with the nvml backend on a node where NVML
    cannot act dies in its constructor, and the executor's root cause (what RayExecutor._start_agents puts in
    its refusal for each node of a cluster given by --address) names the reason. A local cluster is refused
    before it starts (tests/integration/test_server_ray.py); this runs one throwaway agent on the session's
    cluster, under no agent's name."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected = nvml_unavailable_error(8)
    if expected is None:
        pytest.skip("NVML can act on this host")
    node_id = ray_ex.node_id(POOL, 0)
    agent = _RemoteNodeAgent.options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=str(node_id), soft=False)
    ).remote(POOL, 0, 8, TDP_W, 75.0, 0.4, "nvml")
    try:
        with pytest.raises(Exception) as got:
            ray.get(agent.backend.remote(), timeout=60)
        assert f"ExecutorError: {expected}" in _root_cause(got.value), _root_cause(got.value)
    finally:
        ray.kill(agent)
