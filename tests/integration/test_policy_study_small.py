"""The issue-13 policy study end to end on real data, one small case: every policy (the two new baselines
included) replays real NL energy, a real ITP slice and the Azure inference trace through the control loop;
each row's carbon is at least its clairvoyant bound of the same work; no cap violation; every job is
accounted for; the table and the plot come out with a row per policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rows(shared_data: None) -> list[dict[str, object]]:
    from benchmarks.policy_study import cases, run_case

    (case,) = list(cases("small"))
    return run_case(case)


def test_every_policy_is_measured_against_its_own_bound(rows: list[dict[str, object]]) -> None:
    from benchmarks.policy_study import POLICIES

    assert [r["policy"] for r in rows] == list(POLICIES)
    for r in rows:
        assert r["bound_status"] == "optimal", r
        ratio = r["carbon_over_bound"]
        assert isinstance(ratio, float) and ratio >= 1.0 - 1e-6, r
        assert r["cap_violations"] == 0, r
        assert 0 < r["jobs_done"] <= r["jobs_total"]
        assert r["deadline_misses"] <= r["deadline_jobs"]
        assert r["policy_ms_per_tick"] > 0


def test_table_and_plot(rows: list[dict[str, object]], tmp_path: Path) -> None:
    from benchmarks.policy_study import POLICIES, plot, table

    md = table(json.loads(json.dumps(rows)))
    lines = md.splitlines()
    assert len(lines) == 2 + len(POLICIES)
    assert all(f"| small | {p} | 1 |" in md for p in POLICIES)
    png = plot(rows, tmp_path / "study.png")
    assert png.stat().st_size > 1000
