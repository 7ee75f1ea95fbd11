"""``WeightSettings.max_defer_h``: a bound on how long work priced past the span may be held back.

Under a calm, dirty horizon and a windy, clean past, the deferral price tells work without a deadline to wait
for the wind the past promises (``windward:defer=7+beyond_age_h=72``): the plan leaves it out of the horizon.
In 2022 winter that wind came four days later, and short jobs submitted on day two waited ~88 h
(benchmarks/README.md, issue 13, round 9). With the bound, a job held back (hours since submission not
covered by its work done) for ``max_defer_h`` or more is priced like work due inside the span, and the plan
runs it inside the horizon; work held back less, and work that ran from its submission, still waits.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from scheduler.control import run_simulation
from scheduler.deferral import TrailingSignals
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.planner import WeightSettings, build_problem, deferred_h
from scheduler.policies.base import JobState, Snapshot
from scheduler.policies.windward import DEFAULT_WEIGHTS, WindwardPolicy
from tests.unit.test_deferral import SITE, SLOT_S, H, series

T = 16
NOW = 40 * H
#: the opt-in deferral of the study (history price, slow ageing), without and with a bound of 24 h
DEFER = replace(DEFAULT_WEIGHTS, beyond_age_h=72.0)
BOUNDED = replace(DEFER, max_defer_h=24.0)


def windy_past() -> TrailingSignals:
    tr = TrailingSignals(history_days=1.0, min_history_h=0.0)
    tr.seed(series(96, 11, wind_w=200_000.0, carbon=(20.0, 40.0)), end_slot=int(NOW / SLOT_S))
    return tr


def case() -> Snapshot:
    """A calm, dirty horizon; four queued 2-GPU, 2-hour jobs without deadline: ``old`` submitted 30 h ago and
    never run (held back 30 h), ``new`` submitted 2 h ago (2 h), ``ran`` submitted 30 h ago and paused after 28 h
    of work (2 h), ``slow`` submitted 40 h ago with 14 h of work done (26 h: it ran at low power)."""
    fc = series(T, 5, wind_w=0.0, carbon=(700.0, 900.0))

    def q(name: str, submit_h: float, done_h: float, dur_h: float = 2.0) -> JobState:
        job = Job(name, "t", "training", NOW - submit_h * H, 2, (dur_h + done_h) * H)
        return JobState(job, "queued", work_done_s=done_h * H, checkpoint_work_s=done_h * H)

    jobs = (q("old", 30.0, 0.0), q("new", 2.0, 0.0), q("ran", 30.0, 28.0), q("slow", 40.0, 14.0))
    return Snapshot(now_s=NOW, slot=int(NOW / SLOT_S), site=SITE, jobs=jobs, healthy_gpus={}, forecast=fc)


def started(weights: WeightSettings) -> list[str]:
    """The jobs the windward policy starts now (slot 0: what the plan's first slot and the policy's slot-0
    admission, which holds back work whose value does not pay for the slot's carbon, let through)."""
    pol = WindwardPolicy(T * SLOT_S / H, weights=weights, deferral=windy_past())
    return sorted(pol.decide(case()).run)


def test_held_back_hours_are_the_wait_not_covered_by_work() -> None:
    snap = case()
    waited = np.array([(NOW - js.job.submit_s) / H for js in snap.jobs])
    np.testing.assert_allclose(deferred_h(snap, waited), [30.0, 2.0, 2.0, 26.0])


def test_a_job_held_back_past_the_bound_is_planned_inside_the_horizon() -> None:
    # without the bound the windy past prices every job out of this dirty horizon (the test can fail)
    assert started(DEFER) == []
    # held back 30 h and 26 h: they run now; held back 2 h: still waiting for the wind
    assert started(BOUNDED) == ["old", "slow"]
    # a bound past what any job has been held back changes nothing
    assert started(replace(DEFER, max_defer_h=31.0)) == []


def test_the_bound_prices_held_back_work_like_work_due_in_the_span() -> None:
    snap = case()
    kw = dict(expected_arrival_gpu_s_per_s=0.0, beyond_price=windy_past().beyond_price)
    p0, i0 = build_problem(snap, T, weights=DEFER, **kw)
    p1, i1 = build_problem(snap, T, weights=BOUNDED, **kw)
    assert i0.terminal["waited_out_jobs"] == 0 and i1.terminal["waited_out_jobs"] == 2
    w0, w1 = np.asarray(p0.weight), np.asarray(p1.weight)
    assert w1[1] == w0[1] and w1[2] == w0[2]  # held back 2 h: unchanged
    value = i1.terminal["value_g_per_gpu_s"]  # the horizon-only price (clearing_margin applied)
    full = np.asarray(build_problem(snap, T, weights=replace(DEFER, terminal_value="max"))[0].weight)
    for row, waited in ((0, 30.0), (3, 40.0)):  # aged over age_h from submission, capped at the full weight
        assert w1[row] == pytest.approx(min(value * (1.0 + waited / DEFER.age_h), full[row]))
        assert w1[row] > w0[row]


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_max_defer_h_is_checked(bad: float) -> None:
    with pytest.raises(InputError, match=r"WeightSettings\.max_defer_h: got"):
        WeightSettings(max_defer_h=bad)
    assert WeightSettings(max_defer_h=0.5).max_defer_h == 0.5


def test_in_a_replay_no_job_is_held_back_far_past_the_bound() -> None:
    """A calm, dirty run after a windy, clean week: with the opt-in deferral short jobs without deadline wait
    for wind that never comes (none has started after 80 h); with a 6-hour bound every job finishes, held back
    (finish - submission - duration) at most the bound and one horizon (4 h): once priced inside the span, the
    plan places it in the horizon's cheapest slots."""
    rng = np.random.default_rng(3)
    jobs = [Job(f"j{i}", "t", "training", float(rng.uniform(0, 4 * H)), int(rng.choice([1, 2, 4])),
                float(rng.uniform(0.5, 2.0) * H)) for i in range(10)]
    run = series(320, 3, wind_w=0.0, carbon=(600.0, 900.0))
    recs = {}
    for name, weights in (("defer", DEFER), ("bounded", replace(DEFER, max_defer_h=6.0))):
        tr = TrailingSignals(history_days=7.0)
        tr.seed(series(7 * 96, 50, wind_w=200_000.0, carbon=(20.0, 60.0)))
        pol = WindwardPolicy(T * SLOT_S / H, weights=weights, deferral=tr)
        recs[name] = list(run_simulation(SITE, jobs, run, pol, n_slots=320, horizon_slots=T).loop.records.values())
    assert all(r.state == "queued" for r in recs["defer"])  # without the bound (the test can fail)
    assert all(r.state == "finished" and r.end_s is not None for r in recs["bounded"])
    held = [(r.end_s - r.job.submit_s - r.job.duration_s) / H for r in recs["bounded"] if r.end_s is not None]
    assert max(held) <= 6.0 + T * SLOT_S / H
