"""benchmarks.drain_check without data: the pairing with the baseline, the equal-work test, the median over
equal-work rows only, and the resumable output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.drain_check import (
    median_saving,
    pair_rows,
    read_rows,
    row_key,
    rule_rows,
    rule_table,
    table,
    variants,
)


def _row(window: str, policy: str, kg: float, gpu_h: float, jobs: int = 10, misses: int = 0,
         drain: float = 9.0) -> dict[str, object]:
    return {"set": "seasons", "window": window, "cluster": "c", "forecast": "noisy", "seed": 0,
            "drain_days": drain, "policy": policy, "grid_carbon_kg": kg, "work_gpu_h": gpu_h, "jobs_done": jobs,
            "jobs_total": 10, "deadline_misses": misses}


def test_pairs_each_policy_with_the_baseline_of_the_same_case() -> None:
    rows = [_row("a", "backfill", 100.0, 1000.0), _row("a", "windward", 80.0, 1000.0),
            _row("a", "windward", 50.0, 1000.0, drain=3.0),  # no backfill at 3 days: no pair
            _row("b", "windward", 10.0, 1000.0)]  # no backfill in b: no pair
    pairs = pair_rows(rows)
    assert len(pairs) == 1
    p = pairs[0]
    assert (p["window"], p["drain_days"], p["policy"]) == ("a", 9.0, "windward")
    assert p["saving_pct"] == pytest.approx(-20.0) and p["work_pct"] == pytest.approx(0.0)
    assert (p["base_kg"], p["kg"], p["equal_work"]) == (100.0, 80.0, True)


@pytest.mark.parametrize(("gpu_h", "jobs", "tol", "equal"), [
    (995.0, 10, 1.0, True),    # 0.5% less work, same jobs
    (985.0, 10, 1.0, False),   # 1.5% less work
    (985.0, 10, 2.0, True),    # ... within a 2% tolerance
    (1000.0, 9, 1.0, False),   # same GPU-hours rounded, one job fewer finished
    (1012.0, 10, 1.0, False),  # more work is not equal either
])
def test_equal_work_needs_the_work_within_tolerance_and_the_same_jobs(gpu_h: float, jobs: int, tol: float,
                                                                      equal: bool) -> None:
    (p,) = pair_rows([_row("a", "backfill", 100.0, 1000.0), _row("a", "windward", 90.0, gpu_h, jobs)], tol_pct=tol)
    assert p["equal_work"] is equal


def test_median_saving_is_over_the_equal_work_rows_only() -> None:
    rows = [_row("a", "backfill", 100.0, 1000.0), _row("a", "windward", 90.0, 1000.0),   # -10%
            _row("b", "backfill", 100.0, 1000.0), _row("b", "windward", 70.0, 1000.0),   # -30%
            _row("c", "backfill", 100.0, 1000.0), _row("c", "windward", 80.0, 1000.0),   # -20%
            _row("d", "backfill", 100.0, 1000.0), _row("d", "windward", 40.0, 700.0),    # -60% at 30% less work
            _row("d", "greedy-green", 95.0, 1000.0)]
    pairs = pair_rows(rows)
    assert median_saving(pairs, "windward") == (pytest.approx(-20.0), 3, 4)  # not -25% with d counted
    assert median_saving(pairs, "greedy-green") == (pytest.approx(-5.0), 1, 1)
    assert median_saving(pair_rows(rows[6:8]), "windward") == (None, 0, 1)


def test_table_has_a_line_per_pair_and_a_median_per_policy_and_drain() -> None:
    rows = [_row("a", "backfill", 100.0, 1000.0, misses=2), _row("a", "windward", 90.0, 1000.0, misses=3),
            _row("b", "backfill", 100.0, 1000.0), _row("b", "windward", 40.0, 700.0, jobs=8),
            _row("a", "backfill", 50.0, 900.0, drain=3.0), _row("a", "windward", 45.0, 900.0, drain=3.0)]
    lines = table(pair_rows(rows)).splitlines()
    assert len(lines) == 2 + 3 + 2 + 1  # and one line over the cases at their shortest equal-work drain
    med9 = next(x for x in lines if x.startswith("| **median** | 9 |"))
    assert "**-10.0%** at equal work (1 of 2 rows); -35.0% over all 2" in med9
    assert "1 rows with more misses than backfill" in med9
    b = next(x for x in lines if x.startswith("| b | 9 |"))
    assert "40 / 700 / 8 of 10 / 0" in b and "| -60.0% |  | -30.00% | no |" in b  # no idle row: no column


def test_read_rows_resumes_from_a_file_with_a_torn_last_line(tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    assert read_rows(f) == []
    r = _row("a", "windward", 90.0, 1000.0)
    f.write_text(json.dumps(r) + "\n" + '{"set": "seas')
    assert [row_key(x) for x in read_rows(f)] == [("seasons", "a", "c", "noisy", 0, 9.0, "windward")]


def test_each_case_is_settled_at_its_shortest_equal_work_drain() -> None:
    from benchmarks.drain_check import settle

    rows = [_row("a", "backfill", 100.0, 1000.0, drain=d) for d in (3.0, 9.0, 12.0)]
    rows += [_row("a", "windward", 60.0, 900.0, jobs=9, drain=3.0), _row("a", "windward", 85.0, 1000.0, drain=9.0),
             _row("a", "windward", 88.0, 1000.0, drain=12.0)]
    rows += [_row("b", "backfill", 100.0, 1000.0, drain=d) for d in (3.0, 9.0)]
    rows += [_row("b", "windward", 50.0, 800.0, jobs=8, drain=3.0), _row("b", "windward", 70.0, 950.0, jobs=9, drain=9.0)]
    got = {p["window"]: p for p in settle(pair_rows(rows))}
    assert (got["a"]["drain_days"], got["a"]["equal_work"], got["a"]["saving_pct"]) == (9.0, True, pytest.approx(-15.0))
    assert (got["b"]["drain_days"], got["b"]["equal_work"]) == (9.0, False)  # none equal: the longest drain
    med = next(x for x in table(pair_rows(rows)).splitlines() if x.startswith("| **median, each case"))
    assert "**-15.0%** (1 of 2 cases at equal work)" in med and "drains: a 9, b 9" in med


def test_the_saving_above_the_idle_site_leaves_its_carbon_out_of_both_runs() -> None:
    rows = [_row("a", "backfill", 100.0, 1000.0), _row("a", "windward", 90.0, 1000.0),
            _row("a", "idle", 80.0, 0.0, jobs=0),   # 20 kg above idle -> 10 kg: -50%, where -10% in all
            _row("b", "backfill", 100.0, 1000.0), _row("b", "windward", 70.0, 1000.0),
            _row("c", "backfill", 100.0, 1000.0), _row("c", "windward", 40.0, 1000.0), _row("c", "idle", 20.0, 0.0)]
    pairs = {p["window"]: p for p in pair_rows(rows)}
    assert len(pairs) == 3 and all(p["policy"] == "windward" for p in pairs.values())  # idle is no policy
    assert pairs["a"]["saving_pct"] == pytest.approx(-10.0) and pairs["a"]["above_idle_pct"] == pytest.approx(-50.0)
    assert pairs["b"]["above_idle_pct"] is None and pairs["c"]["above_idle_pct"] == pytest.approx(-75.0)
    assert median_saving(list(pairs.values()), "windward", "above_idle_pct") == (pytest.approx(-62.5), 2, 3)
    lines = table(list(pairs.values())).splitlines()
    assert "| -10.0% | -50.0% (20 -> 10) |" in next(x for x in lines if x.startswith("| a |"))
    med = next(x for x in lines if x.startswith("| **median** |"))
    assert "**-30.0%** at equal work (3 of 3 rows)" in med and "**-62.5%** at equal work (2 rows)" in med


def test_a_policy_name_may_carry_its_planning_and_forecast_horizon() -> None:
    from benchmarks.drain_check import study_policy

    p, h = study_policy("windward:clearing_margin=0.6@96")
    assert h == 96.0 and p.horizon_hours == 96.0 and p.name == "windward:clearing_margin=0.6@96"
    assert p.weights.clearing_margin == 0.6
    p, h = study_policy("windward")
    assert (h, p.horizon_hours, p.name) == (48.0, 48.0, "windward")
    assert study_policy("backfill")[1] == 48.0


def test_work_carbon_over_the_bound_is_taken_above_the_idle_site() -> None:
    rows = [_row("a", "backfill", 100.0, 1000.0), _row("a", "windward", 90.0, 1000.0),
            _row("a", "idle", 80.0, 0.0, jobs=0), _row("a", "bound", 85.0, 1000.0),  # (90-80)/(85-80) = 2
            _row("b", "backfill", 100.0, 1000.0), _row("b", "windward", 70.0, 1000.0), _row("b", "bound", 60.0, 1000.0)]
    pairs = {(p["window"], p["policy"]): p for p in pair_rows(rows)}
    assert pairs[("a", "windward")]["work_over_bound"] == pytest.approx(2.0)
    assert pairs[("a", "bound")]["work_over_bound"] == pytest.approx(1.0)
    assert pairs[("a", "bound")]["above_idle_pct"] == pytest.approx(-75.0)  # the most a policy could save
    assert pairs[("b", "windward")]["work_over_bound"] is None  # no idle row
    line = next(x for x in table(list(pairs.values())).splitlines() if x.startswith("| a | 9 |") and "windward" in x)
    assert "-50.0% (20 -> 10; 2.00 x bound)" in line


def test_a_deferral_policy_is_seeded_with_the_days_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from benchmarks.drain_check import seed_deferral
    from benchmarks.policy_study import make_study_policy
    from scheduler import signals
    from scheduler.energy import EnergySeries
    from scheduler.models import load_site

    site = load_site("demo")
    t0 = datetime(2022, 10, 1, tzinfo=UTC)
    calls = []

    def fake(spec: str, site_: object, start: datetime, days: float, seed: int = 0, strict: bool = False
             ) -> EnergySeries:
        calls.append((start, days))
        n = int(round(days * 86400 / site.slot_s))
        return EnergySeries(start, int(site.slot_s), np.full(n, 1e4), np.full(n, 300.0), np.full(n, 50.0),
                            np.full(n, 4e4), np.full(n, 5e4), "fake")

    monkeypatch.setattr(signals, "load_energy", fake)
    seed_deferral(make_study_policy("windward"), site, t0)  # no deferral: nothing loaded
    assert calls == []
    p = make_study_policy("windward:defer=2+beyond_age_h=72")
    seed_deferral(p, site, t0)
    assert calls == [(t0 - timedelta(days=2), 2.0)]
    assert p.deferral.n_slots == 2 * 96 and p.weights.beyond_age_h == 72.0


def test_variants_run_a_case_with_other_seeds_or_forecast_and_keep_them_apart_in_the_rows() -> None:
    from benchmarks.policy_study import cases

    case = next(iter(cases("seasons")))
    assert variants(case, None, None) == [case]
    both = variants(case, "perfect", "1,2")
    assert [(c.forecast, c.seed, c.window) for c in both] == [("perfect", 1, case.window), ("perfect", 2, case.window)]
    keys = {row_key({**{k: getattr(c, k) for k in ("set", "window", "cluster", "forecast", "seed")},
                     "drain_days": 9.0, "policy": "windward"}) for c in [case, *both]}
    assert len(keys) == 3  # each variant's row is its own case in --out (resumable, paired apart)


def test_the_default_rule_needs_every_part_in_the_row() -> None:
    """rule_rows: lower carbon than the reference, the same misses, p95 <= 1.25 x, at equal work; each row
    below fails one part (and only that part), and a case without both policies is not a row."""
    def r(window: str, policy: str, kg: float, p95: float | None, misses: int = 1, gpu_h: float = 1000.0,
          jobs: int = 10) -> dict[str, object]:
        return {**_row(window, policy, kg, gpu_h, jobs, misses), "p95_completion_h": p95}

    cand = "windward:max_defer_h=24"
    rows = [r("ok", "windward", 100.0, 40.0), r("ok", cand, 99.0, 50.0),            # 1.25x exactly: passes
            r("dear", "windward", 100.0, 40.0), r("dear", cand, 100.0, 40.0),       # not lower (equal)
            r("miss", "windward", 100.0, 40.0), r("miss", cand, 90.0, 40.0, misses=2),
            r("slow", "windward", 100.0, 40.0), r("slow", cand, 90.0, 50.1),        # 1.2525x
            r("less", "windward", 100.0, 40.0), r("less", cand, 90.0, 40.0, gpu_h=980.0),
            r("jobs", "windward", 100.0, 40.0), r("jobs", cand, 90.0, 40.0, jobs=9),
            r("none", "windward", 100.0, 40.0), r("none", cand, 90.0, None),        # no finished job: no ratio
            r("alone", cand, 50.0, 10.0), _row("alone", "backfill", 200.0, 1000.0)]
    got = {x["window"]: x for x in rule_rows(rows, cand)}
    assert set(got) == {"ok", "dear", "miss", "slow", "less", "jobs", "none"}
    assert [w for w, x in got.items() if x["passes"]] == ["ok"]
    assert got["ok"]["p95_ratio"] == pytest.approx(1.25) and got["ok"]["vs_ref_pct"] == pytest.approx(-1.0)
    assert not got["dear"]["lower"] and got["dear"]["misses_equal"] and got["dear"]["p95_ok"]
    assert not got["miss"]["misses_equal"] and got["miss"]["lower"]
    assert not got["slow"]["p95_ok"] and got["slow"]["lower"] and got["slow"]["equal_work"]
    assert not got["less"]["equal_work"] and not got["jobs"]["equal_work"] and got["less"]["p95_ok"]
    assert got["none"]["p95_ratio"] is None and not got["none"]["p95_ok"]
    text = rule_table(rule_rows(rows, cand))
    assert "passes in 1 of 7 rows" in text and "p95 > 1.25x: none noisy 0, slow noisy 0" in text
    assert {x["window"]: x for x in rule_rows(rows, cand, p95_max_ratio=1.3)}["slow"]["p95_ok"]  # a looser rule
