"""The deferral price from the past (``scheduler.deferral``) as an operator option: ``windward simulate`` and
``windward server`` ``--defer-history-days DAYS`` / ``--beyond-age-h HOURS`` / ``--max-defer-h HOURS`` reach the windward policy
(``make_policy``), simulate seeds the history with the DAYS before ``--start``, a server with the DAYS before
now (and keeps it across restarts: test_deferral_server.py), and a bad value exits 2 naming its option."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.deferral import TrailingSignals, check_deferral_options
from scheduler.errors import InputError
from scheduler.models import load_site, load_tenants
from scheduler.policies import make_policy
from scheduler.policies.windward import DEFAULT_WEIGHTS
from scheduler.service import Service, ServiceConfig


@pytest.mark.parametrize(
    "days, age_h, needle",
    [
        (-1.0, None, "--defer-history-days: got -1.0"),
        (0.5, None, "--defer-history-days: got 0.5"),  # shorter than the 24 h the price needs
        (400.0, None, "--defer-history-days: got 400.0"),
        (float("inf"), None, "--defer-history-days: got inf"),
        (float("nan"), None, "--defer-history-days: got nan"),
        (7.0, 0.0, "--beyond-age-h: got 0.0"),
        (7.0, -3.0, "--beyond-age-h: got -3.0"),
        (7.0, float("nan"), "--beyond-age-h: got nan"),
        (7.0, 1e6, "--beyond-age-h: got 1000000.0"),
        (7.0, (72.0, 0.0), "--max-defer-h: got 0.0"),
        (7.0, (None, -24.0), "--max-defer-h: got -24.0"),
        (7.0, (72.0, float("inf")), "--max-defer-h: got inf"),
        (7.0, (72.0, float("nan")), "--max-defer-h: got nan"),
        (7.0, (72.0, 9000.0), "--max-defer-h: got 9000.0"),
    ],
)
def test_bad_values_are_refused_naming_the_option_and_the_range(
        days: float, age_h: float | None | tuple[float | None, float], needle: str) -> None:
    age, defer = age_h if isinstance(age_h, tuple) else (age_h, None)
    with pytest.raises(InputError) as e:
        check_deferral_options(days, age, defer)
    assert needle in str(e.value) and "allowed" in str(e.value)


def test_good_values_pass() -> None:
    assert check_deferral_options(0.0, None) == (0.0, None, None)
    assert check_deferral_options(7, 72) == (7.0, 72.0, None)
    assert check_deferral_options(7, 72, 24) == (7.0, 72.0, 24.0)
    assert check_deferral_options(365.0, 8760.0, 8760.0) == (365.0, 8760.0, 8760.0)


def test_make_policy_gives_the_windward_policy_its_deferral_and_ageing() -> None:
    off = make_policy("windward", 24.0)
    assert off.deferral is None and off.weights == DEFAULT_WEIGHTS
    on = make_policy("windward", 24.0, defer_history_days=7.0, beyond_age_h=72.0)
    assert isinstance(on.deferral, TrailingSignals) and on.deferral.history_days == 7.0
    assert on.deferral.n_slots == 0  # nothing seeded here
    assert on.weights.beyond_age_h == 72.0 and on.weights.age_h == DEFAULT_WEIGHTS.age_h
    assert on.weights.max_defer_h is None
    bounded = make_policy("windward", 24.0, defer_history_days=7.0, beyond_age_h=72.0, max_defer_h=24.0)
    assert bounded.weights == replace(DEFAULT_WEIGHTS, beyond_age_h=72.0, max_defer_h=24.0)
    assert make_policy("windward", 24.0, max_defer_h=12.0).weights == replace(DEFAULT_WEIGHTS, max_defer_h=12.0)
    with pytest.raises(InputError, match="--max-defer-h"):
        make_policy("windward", 24.0, defer_history_days=7.0, max_defer_h=-1.0)
    wrapped = make_policy("windward", 24.0, defer_history_days=3.0, fallback=True)
    assert wrapped.primary.deferral.history_days == 3.0
    assert not hasattr(make_policy("backfill", 24.0, defer_history_days=7.0), "deferral")  # baselines ignore it
    with pytest.raises(InputError, match="--defer-history-days"):
        make_policy("windward", 24.0, defer_history_days=-1.0)


def _simulate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[list[Any], dict[str, Any]]:
    """A quarter-day simulate run of the windward policy alone; each policy as run_simulation got it, with
    its deferral history's length then, and the report."""
    import scheduler.control as control

    seen: list[Any] = []
    real = control.run_simulation

    def spy(site: Any, jobs: Any, actual: Any, policy: Any, **kw: Any) -> Any:
        d = getattr(policy, "deferral", None)
        seen.append((policy, None if d is None else d.n_slots))
        return real(site, jobs, actual, policy, **kw)

    monkeypatch.setattr(control, "run_simulation", spy)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["simulate", "--days", "0.25", "--horizon-hours", "6", "--compare", "",
                                   "--no-plot", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return seen, json.loads(out.read_text())


def test_simulate_option_reaches_the_policy_seeded_with_the_days_before_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen, rep = _simulate(tmp_path, monkeypatch, "--defer-history-days", "2", "--beyond-age-h", "72",
                          "--max-defer-h", "24")
    [(policy, seeded)] = seen
    slots_per_day = int(86400 / load_site("demo").slot_s)
    assert isinstance(policy.deferral, TrailingSignals) and policy.deferral.history_days == 2.0
    assert seeded == 2 * slots_per_day  # the embedded energy's two days before --start
    assert policy.weights.beyond_age_h == 72.0 and policy.weights.max_defer_h == 24.0
    assert policy.deferral.n_slots == 2 * slots_per_day  # the run's observed slots replaced the oldest
    assert rep["defer_history_days"] == 2.0 and rep["beyond_age_h"] == 72.0 and rep["max_defer_h"] == 24.0
    seen_off, rep_off = _simulate(tmp_path, monkeypatch)
    [(policy_off, _)] = seen_off
    assert policy_off.deferral is None and policy_off.weights == DEFAULT_WEIGHTS
    assert "defer_history_days" not in rep_off and "beyond_age_h" not in rep_off and "max_defer_h" not in rep_off


def _windward(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point (a WindwardError exits 2 with ``error: ...``)."""
    return subprocess.run([sys.executable, "-c", "from scheduler.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_simulate_and_server_refuse_a_bad_value_with_exit_2_naming_the_option(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = _windward("simulate", "--days", "0.1", "--out", str(out), "--defer-history-days", "-2")
    assert p.returncode == 2, p.stderr
    assert "--defer-history-days: got -2.0" in p.stderr and not out.exists()
    state = tmp_path / "s.sqlite"
    p = _windward("server", "--demo", "--state", str(state), "--port", "0", "--beyond-age-h", "inf")
    assert p.returncode == 2, p.stderr
    assert "--beyond-age-h: got inf" in p.stderr and not state.exists()  # refused before anything is created
    p = _windward("server", "--demo", "--state", str(state), "--port", "0", "--max-defer-h", "0")
    assert p.returncode == 2, p.stderr
    assert "--max-defer-h: got 0.0" in p.stderr and not state.exists()


def test_the_servers_policy_gets_the_options_and_a_seeded_history(tmp_path: Path) -> None:
    def config(**kw: Any) -> ServiceConfig:
        return ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                             tick_seconds=1.0, **kw)

    with pytest.raises(InputError, match="ServiceConfig.defer_history_days"):
        config(defer_history_days=1000.0)
    with pytest.raises(InputError, match="ServiceConfig.max_defer_h"):
        config(defer_history_days=3.0, max_defer_h=0.0)
    svc = Service(config(defer_history_days=3.0, beyond_age_h=48.0, max_defer_h=24.0), wall=lambda: 1_900_000_000.0)
    try:
        assert isinstance(svc.policy.deferral, TrailingSignals) and svc.policy.deferral.history_days == 3.0
        # seeded with the 3 days of its energy source (embedded) before now (tests/unit/test_deferral_server.py)
        assert svc.policy.deferral.n_slots == 3 * 96
        assert svc.policy.weights.beyond_age_h == 48.0 and svc.policy.weights.max_defer_h == 24.0
    finally:
        svc.stop()
    svc = Service(config(), wall=lambda: 1_900_000_000.0)
    try:
        assert svc.policy.deferral is None and svc.policy.weights == DEFAULT_WEIGHTS
    finally:
        svc.stop()
