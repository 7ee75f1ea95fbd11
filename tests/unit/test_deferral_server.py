"""A server's deferral history (``windward server --defer-history-days``, scheduler.deferral): seeded at start
with its energy source's signals of the days before now, the signals each tick observes kept in the SQLite
store (bounded to the history's days), and a restart on the same state file resumes with them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.deferral import TrailingSignals
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.service import Service, ServiceConfig
from scheduler.signals import load_energy

WALL0 = 1_900_000_800.0  # on a 15-minute slot boundary


class _Wall:
    """The wall clock a service reads: one wall second is one slot (``tick_seconds=1``)."""

    def __init__(self) -> None:
        self.t = WALL0

    def __call__(self) -> float:
        return self.t


def _service(path: Path, wall: _Wall, days: float = 1.0) -> Service:
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(path), tick_seconds=1.0,
                        defer_history_days=days, beyond_age_h=72.0)
    return Service(cfg, wall=wall)


def _deferral(svc: Service) -> TrailingSignals:
    d = svc.policy.deferral  # type: ignore[attr-defined]
    assert isinstance(d, TrailingSignals)
    return d


def _energy_before(svc: Service, slot: int, days: float) -> np.ndarray:
    """The energy source's (embedded) signals of the ``days`` before absolute ``slot``, as the history keeps
    them: (4, H) wind, carbon, grid cap, site max."""
    site = svc.site
    now = datetime.fromtimestamp(svc.epoch_unix_s + slot * site.slot_s, UTC)
    e = load_energy(None, site, now - timedelta(days=days), days, seed=svc.config.seed)
    return np.stack([e.wind_w, e.carbon_g_per_kwh, e.grid_cap_w, e.site_max_w])


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT slot, grid_cap_w FROM observed_signals ORDER BY slot").fetchall()


def test_a_server_starts_with_its_energy_sources_past_and_resumes_what_it_observed(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    wall = _Wall()
    keep = 96  # a day of 15-minute slots
    svc = _service(path, wall)
    try:
        d = _deferral(svc)
        # at start: the day of the energy source before now, not an empty history
        assert d.n_slots == keep and d.enough()
        np.testing.assert_array_equal(d.history(), _energy_before(svc, 0, 1.0))
        # a congestion cap marks what the ticks observe (slot 0 of their forecast, capped), unlike the energy
        svc.store.add_congestion(0.01, WALL0, WALL0 + 10 * 900.0, "test", WALL0, "marker")
        svc.submit(svc.tenants["science"], JobSpec(name="j", gpus=1, duration_s=3600), None)
        for _ in range(3):
            svc.tick()
            wall.t += 1.0  # the next slot
        assert [r for r in _rows(path)] == [(0, 1e4), (1, 1e4), (2, 1e4)]
        observed = d.history()[:, -3:]
    finally:
        svc.stop()
    # a restart on the same file (a compressed clock resumes at the last tick's time: slot 2): the observed
    # slots come back from the store, the slots before them from the energy source
    svc = _service(path, wall)
    try:
        d = _deferral(svc)
        assert int(svc.now_s() // svc.site.slot_s) == 2
        assert d.n_slots == keep
        hist = d.history()
        np.testing.assert_array_equal(hist[:, -3:], observed)  # slots 0-2 as observed, capped at 10 kW
        assert list(hist[2, -3:]) == [1e4] * 3
        np.testing.assert_array_equal(hist[:, :-3], _energy_before(svc, 2, 1.0)[:, 1:-2])  # slots -93 to -1
    finally:
        svc.stop()


def test_the_kept_history_is_bounded_to_its_days(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    wall = _Wall()
    svc = _service(path, wall)
    try:
        svc.tick()
        wall.t += 200.0  # 200 slots later: more than the day (96 slots) kept
        svc.tick()
        assert [r[0] for r in _rows(path)] == [200]  # slot 0 fell out of the window
    finally:
        svc.stop()
    wall.t += 1.0
    svc = _service(path, wall)
    try:
        d = _deferral(svc)
        assert d.n_slots == 96 and d.newest() is not None and d.newest()[0] == 200  # type: ignore[index]
    finally:
        svc.stop()


def test_without_deferral_nothing_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(path), tick_seconds=1.0)
    svc = Service(cfg, wall=_Wall())
    try:
        svc.tick()
        assert _rows(path) == []
    finally:
        svc.stop()


def test_where_the_energy_does_not_reach_back_the_rows_before_now_it_holds_seed_it(tmp_path: Path) -> None:
    """An energy CSV that starts where the server's timeline starts: a server turned on with deferral at
    slot 10 (after ticks without it) seeds the 10 rows before now that it holds, not the day it cannot read."""
    t0 = datetime.fromtimestamp(WALL0, UTC)
    rows = [f"{(t0 + timedelta(minutes=15 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')},1.0,10.0,{300 + i}" for i in range(200)]
    csv = tmp_path / "energy.csv"
    csv.write_text("timestamp_utc,wind_mw,grid_cap_mw,carbon_g_per_kwh\n" + "\n".join(rows) + "\n")
    path = tmp_path / "state.sqlite"
    wall = _Wall()

    def config(days: float) -> ServiceConfig:
        return ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(path), tick_seconds=1.0,
                             energy=str(csv), energy_start=t0, energy_days=2.0, defer_history_days=days)

    svc = Service(config(0.0), wall=wall)
    try:
        svc.tick()
        wall.t += 10.0
        svc.tick()  # slot 10
    finally:
        svc.stop()
    svc = Service(config(1.0), wall=wall)
    try:
        d = _deferral(svc)
        assert d.n_slots == 10
        assert list(d.history()[1]) == [300.0 + i for i in range(10)]  # the rows of slots 0-9, oldest first
    finally:
        svc.stop()
