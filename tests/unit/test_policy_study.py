"""benchmarks.policy_study without data: the study's case grid and the windward variants it compares
(old and new defaults in the same run)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.policy_study import cases, make_study_policy
from scheduler.errors import InputError
from scheduler.policies.windward import DEFAULT_WEIGHTS, WindwardPolicy


@pytest.mark.parametrize(("which", "n", "forecast"), [("seasons", 12, "noisy"), ("clusters", 5, "noisy"),
                                                      ("horizons", 4, "noisy"), ("forecast", 4, "perfect"),
                                                      ("seeds", 4, "noisy"), ("small", 1, "noisy"),
                                                      ("horizons-2023", 4, "noisy"), ("seeds-more", 6, "noisy")])
def test_every_set_has_its_cases(which: str, n: int, forecast: str) -> None:
    got = list(cases(which))
    assert len(got) == n and {c.set for c in got} == {which} and {c.forecast for c in got} == {forecast}
    assert len({(c.window, c.cluster, c.days, c.seed) for c in got}) == n  # no case twice


def test_variants_change_only_the_fields_they_name() -> None:
    plain = make_study_policy("windward")
    assert isinstance(plain, WindwardPolicy) and plain.weights == DEFAULT_WEIGHTS
    v = make_study_policy("windward:clearing_margin=0.5+age_h=72+slot0=0")
    assert isinstance(v, WindwardPolicy) and v.name == "windward:clearing_margin=0.5+age_h=72+slot0=0"
    assert v.weights == replace(DEFAULT_WEIGHTS, clearing_margin=0.5, age_h=72.0)
    assert v.slot0_admission is False and plain.slot0_admission is True
    assert make_study_policy("windward:slot0run=0").slot0_running is False and plain.slot0_running is True
    assert make_study_policy("backfill").name == "backfill"


def test_unknown_or_bad_variant_fields_are_named() -> None:
    with pytest.raises(InputError, match="unknown field 'age_days'"):
        make_study_policy("windward:age_days=3")
    with pytest.raises(InputError, match="clearing_margin"):
        make_study_policy("windward:clearing_margin=-1")


def _row(st: str, window: str, policy: str, carbon_kg: float, ratio: float | None) -> dict[str, object]:
    return {"set": st, "window": window, "cluster": "c", "days": 2.0, "forecast": "noisy", "seed": 0,
            "policy": policy, "grid_carbon_kg": carbon_kg, "carbon_over_bound": ratio,
            "work_carbon_over_bound": ratio, "work_gpu_h": 100.0, "jobs_done": 9, "jobs_total": 10,
            "deadline_misses": 1, "deadline_jobs": 4, "lost_work_gpu_h": 2.0, "p95_completion_h": 5.0,
            "cap_violations": 0, "policy_ms_per_tick": 3.0}


def test_table_gives_medians_per_set_and_over_all_cases() -> None:
    from benchmarks.policy_study import table

    rows = [_row("seasons", "a", "backfill", 100.0, 1.5), _row("seasons", "a", "windward", 70.0, 1.05),
            _row("seasons", "b", "backfill", 200.0, 1.4), _row("seasons", "b", "windward", 180.0, 1.26),
            _row("horizons", "c", "backfill", 50.0, None), _row("horizons", "c", "windward", 40.0, 1.1)]
    lines = table(rows).splitlines()
    assert len(lines) == 2 + 3 * 2  # two sets and "all", two policies each
    all_w = next(x for x in lines if x.startswith("| all | windward |"))
    # ratios 1.05, 1.26, 1.1 -> 1.100; carbon vs backfill as run -30%, -10%, -20% -> -20%; misses summed 3/12;
    # at equal work, paired ratios 1.05 / 1.5, 1.26 / 1.4 (case c: backfill has no ratio) -> -30%, -10% -> -20%
    assert "| 3 | 1.100 |" in all_w and "| -20.0% | -20.0% |" in all_w and "| 3/12 |" in all_w
    # less work at the same carbon: as run it looks equal, at equal work it is dearer
    short = [_row("s", "a", "backfill", 100.0, 1.2), {**_row("s", "a", "windward", 100.0, 1.5), "work_gpu_h": 80.0}]
    w_line = next(x for x in table(short).splitlines() if x.startswith("| s | windward |"))
    assert "| +25.0% | +0.0% | -20.0% |" in w_line
    one = table(rows[:4]).splitlines()
    assert not any(x.startswith("| all |") for x in one)  # one set: no "all" rows
