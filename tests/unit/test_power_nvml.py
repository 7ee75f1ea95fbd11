"""GPU power control through NVML, against a faked ``pynvml`` (the Zeus habit: the same functions, the same
milliwatt units and error classes, recording every call). The node agent must set limits on exactly the
GPUs Ray assigned, read the draw back from NVML, and refuse clearly where NVML cannot act."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from scheduler.errors import ExecutorError, InputError
from scheduler.executors.ray_agent import NodeAgent
from scheduler.power_devices import nvml_unavailable_error, open_node_gpus

TDP_W, IDLE_W, MIN_F = 700.0, 75.0, 0.4


class FakeNvml(types.ModuleType):
    """The subset of nvidia-ml-py that scheduler.power_devices calls, on ``n`` fake H100s."""

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's own name
        pass

    class NVMLError_NoPermission(NVMLError):  # noqa: N801
        pass

    def __init__(self, n: int = 8, *, init_error: Exception | None = None, min_mw: int = 200_000,
                 max_mw: int = 700_000, permitted: bool = True) -> None:  # fmt: skip
        super().__init__("pynvml")
        self.n, self.init_error, self.permitted = n, init_error, permitted
        self.min_mw, self.max_mw = min_mw, max_mw
        self.limit_mw = [max_mw] * n
        self.usage_mw = [int(60_000 + 1_000 * i) for i in range(n)]  # what a meter would read
        self.set_calls: list[tuple[int, int]] = []
        self.initialised = False

    def nvmlInit(self) -> None:  # noqa: N802
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        assert self.initialised
        return self.n

    def nvmlDeviceGetHandleByIndex(self, i: int) -> tuple[str, int]:  # noqa: N802
        if not 0 <= i < self.n:
            raise self.NVMLError(f"invalid index {i}")
        return ("handle", i)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: tuple[str, int]) -> tuple[int, int]:  # noqa: N802
        return self.min_mw, self.max_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: tuple[str, int]) -> int:  # noqa: N802
        return self.limit_mw[h[1]]

    def nvmlDeviceSetPowerManagementLimit(self, h: tuple[str, int], mw: int) -> None:  # noqa: N802
        if not self.permitted:
            raise self.NVMLError_NoPermission("Insufficient Permissions")
        if not isinstance(mw, int) or not self.min_mw <= mw <= self.max_mw:
            raise self.NVMLError(f"invalid argument {mw!r}")
        self.set_calls.append((h[1], mw))
        self.limit_mw[h[1]] = mw

    def nvmlDeviceGetPowerUsage(self, h: tuple[str, int]) -> int:  # noqa: N802
        return min(self.usage_mw[h[1]], self.limit_mw[h[1]])


def _install(monkeypatch: pytest.MonkeyPatch, fake: Any) -> Any:
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def _agent(backend: str = "nvml") -> NodeAgent:
    return NodeAgent("h100-eu-public", 0, 8, TDP_W, IDLE_W, MIN_F, backend)


@pytest.mark.parametrize("seed", range(12))
def test_limits_land_on_exactly_the_gpus_ray_assigned(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    fake = _install(monkeypatch, FakeNvml())
    assert nvml_unavailable_error(8) is None  # the Ray executor's check before a local cluster lets it start
    agent = _agent()
    assert agent.backend()[0] == "nvml"
    rng = np.random.default_rng(seed)
    jobs: dict[str, list[int]] = {}
    free = list(range(8))
    for k in range(3):  # up to three jobs share the node, on disjoint GPUs Ray assigned
        if not free:
            break
        take = sorted(rng.choice(free, size=int(rng.integers(1, len(free) + 1)), replace=False).tolist())
        free = [g for g in free if g not in take]
        frac = float(rng.uniform(MIN_F, 1.0))
        fake.set_calls.clear()
        limits = agent.assign(f"j{k}", [str(g) if k == 1 else g for g in take], frac)  # Ray may give str ids
        want_mw = int(round(frac * TDP_W * 1000))
        assert fake.set_calls == [(g, want_mw) for g in take]
        assert limits == pytest.approx([want_mw / 1000] * len(take))
        jobs[f"j{k}"] = take
    for jid, gpus in jobs.items():
        frac = float(rng.uniform(MIN_F, 1.0))
        fake.set_calls.clear()
        agent.set_fraction(jid, frac)
        assert [g for g, _ in fake.set_calls] == gpus  # a job's cap never touches another job's GPUs
    st = agent.state()
    assert st["backend"] == "nvml" and st["jobs"] == jobs
    assert st["draws_w"] == pytest.approx([min(u, lim) / 1000 for u, lim in zip(fake.usage_mw, fake.limit_mw)])
    for jid, gpus in jobs.items():
        fake.set_calls.clear()
        agent.release(jid)
        assert fake.set_calls == [(g, int(TDP_W * 1000)) for g in gpus]  # back to the full limit
    assert fake.limit_mw == [int(TDP_W * 1000)] * 8


@pytest.mark.parametrize("make,reason", [
    (lambda: FakeNvml(init_error=FakeNvml.NVMLError_LibraryNotFound("libnvidia-ml.so.1 not found")),
     "nvmlInit failed (NVMLError_LibraryNotFound: libnvidia-ml.so.1 not found)"),
    (lambda: FakeNvml(n=4), "NVML sees 4 GPU(s) but the node declares 8"),
    (lambda: None, "nvidia-ml-py is not installed"),
])  # fmt: skip
def test_nvml_that_cannot_act_is_refused_when_asked_for_and_simulated_on_auto(
    monkeypatch: pytest.MonkeyPatch, make: Any, reason: str
) -> None:
    fake = make()
    if fake is None:
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    else:
        _install(monkeypatch, fake)
    with pytest.raises(ExecutorError, match="NVML power control requested but unavailable") as e:
        open_node_gpus(8, TDP_W, IDLE_W, MIN_F, prefer="nvml")
    assert reason in str(e.value)
    # the check the Ray executor makes before it starts a local cluster: the same error, and no limit set
    pre = nvml_unavailable_error(8)
    assert isinstance(pre, ExecutorError) and str(pre) == str(e.value)
    auto = open_node_gpus(8, TDP_W, IDLE_W, MIN_F, prefer="auto")
    assert auto.backend == "simulated" and auto.reason == reason
    if fake is not None:
        assert fake.set_calls == []


def test_nvml_refusing_a_limit_is_an_executor_error_naming_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, FakeNvml(permitted=False))
    agent = _agent()
    with pytest.raises(ExecutorError, match=r"GPU 3: NVML refused power limit 420.0 W: Insufficient Permissions"):
        agent.assign("j", [3], 0.6)


def test_a_limit_outside_the_devices_range_is_refused_before_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _install(monkeypatch, FakeNvml(max_mw=350_000))  # a 350 W card in a pool that says 700 W
    agent = _agent()
    with pytest.raises(InputError, match=r"GPU 1: power limit 700.0 W is outside the device's \[200.0, 350.0\] W"):
        agent.assign("j", [1], 1.0)
    assert fake.set_calls == []
    with pytest.raises(InputError, match="GPU id 'GPU-4f1c' from Ray is not an index"):
        agent.assign("k", ["GPU-4f1c"], 0.5)


def test_simulated_backend_never_touches_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _install(monkeypatch, FakeNvml())
    agent = _agent("simulated")
    agent.assign("j", [0, 1], 0.5)
    assert agent.backend()[0] == "simulated" and fake.set_calls == [] and not fake.initialised
    assert agent.state()["draws_w"][:3] == pytest.approx([0.5 * TDP_W, 0.5 * TDP_W, IDLE_W])


@pytest.mark.parametrize("seed", range(8))
def test_measured_gpu_power_replaces_the_model_only_where_measured(seed: int) -> None:
    from scheduler.power_devices import it_power_with_measured_w

    rng = np.random.default_rng(seed)
    pools = [f"p{i}" for i in range(4)]
    model = {p: float(rng.uniform(1e3, 1e5)) for p in pools}
    host = {p: float(rng.uniform(100, 500)) for p in pools}
    healthy = {p: int(rng.integers(0, 64)) for p in pools}
    measured = {p: float(rng.uniform(0, 5e4)) for p in pools if rng.random() < 0.5}
    watts, source = it_power_with_measured_w(model, measured, host, healthy)
    for p in pools:
        if p in measured:
            assert source[p] == "measured" and watts[p] == pytest.approx(measured[p] + host[p] * healthy[p])
        else:
            assert source[p] == "model" and watts[p] == model[p]
    with pytest.raises(InputError, match=r"pool\(s\) \['nope'\]"):
        it_power_with_measured_w(model, {"nope": 1.0}, host, healthy)
    with pytest.raises(InputError, match="measured GPU power of pool 'p0' is nan W"):
        it_power_with_measured_w(model, {"p0": float("nan")}, host, healthy)
