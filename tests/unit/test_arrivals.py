"""Expected arrivals (scheduler.arrivals): fitted from submissions seen so far, never from the future."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.arrivals import ArrivalModel
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies.base import JobState, Snapshot

SITE = load_site("demo")
H = 3600.0
FC = EnergySeries(datetime(2023, 1, 1, tzinfo=UTC), 900, np.zeros(4), np.zeros(4), np.zeros(4),
                  np.zeros(4), np.zeros(4), "test")


def snap(now_s: float, jobs: list[Job]) -> Snapshot:
    return Snapshot(now_s, int(now_s // 900), SITE, tuple(JobState(j, "queued") for j in jobs if j.submit_s <= now_s),
                    {}, FC)


@pytest.mark.parametrize("seed", range(10))
def test_rate_is_the_trailing_mean_of_what_was_seen(seed: int) -> None:
    rng = np.random.default_rng(seed)
    jobs = [Job(f"j{i}", "t", "training", float(rng.uniform(0, 48 * H)), int(rng.integers(1, 9)),
                float(rng.uniform(0.2, 5) * H)) for i in range(60)]
    jobs.append(Job("inf", "t", "inference", 1.0, 4, 900.0, preemptible=False))  # left out: must-run
    m = ArrivalModel(window_s=24 * H, min_history_s=H)
    rates = {}
    for now in np.arange(0, 49 * H, 900.0):
        # a job stays in the snapshot until done: here every submitted job is seen at every tick
        m.observe(snap(float(now), jobs))
        rates[float(now)] = m.rate_gpu_s_per_s(float(now))
    for now, rate in rates.items():
        if now < H:
            assert rate == 0.0
            continue
        span = min(now, 24 * H)
        want = sum(j.gpus * j.duration_s for j in jobs if not j.must_run and now - span < j.submit_s <= now) / span
        assert rate == pytest.approx(want, rel=1e-9, abs=1e-12)
        # later observations never change what the model says about an earlier time
        assert m.rate_gpu_s_per_s(now) == pytest.approx(rate, rel=1e-9, abs=1e-12)
    assert m.expected_gpu_s(48 * H, 2 * H) == pytest.approx(2 * H * m.rate_gpu_s_per_s(48 * H))


def test_bad_window_is_named() -> None:
    with pytest.raises(ValueError, match="window_s"):
        ArrivalModel(window_s=0)
