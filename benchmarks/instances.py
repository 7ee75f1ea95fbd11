"""Real-shaped planning instances for the optimiser benchmarks and tests.

``make_problem(J, T, site="rotterdam-100k", seed=0)`` builds a :class:`~kernels.problem.PlanProblem`:

- energy: T slots of the real NL 2021-2023 hourly data (``scheduler.paths.nl_energy_csv()``, read in place)
  from a seeded start hour: offshore wind turned into the site's wind by the wind contract (capacity factor
  normalised per calendar year by that year's maximum), grid carbon, day-ahead price (gaps held from the
  last value), the grid contract's cap per UTC hour. Without the data: a seeded diurnal/weather model with
  the same ranges (``problem_source`` says which).
- jobs: sizes and durations resampled from the real ITP trace (``itp_trace_csv("cluster04")``) when present
  (else a lognormal fit: 83% 1 GPU, median 2.9 h); a mix of queued, running (30%), non-preemptible (10%),
  deadline (30%) and must-run inference (5%) jobs over label-selector eligibility classes of the site.
- the site's pools are scaled to about 2 GPUs per job (never above the site's own size: 100,000 GPUs at
  J = 50,000), and the grid, wind and substation figures with them.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from kernels.problem import NO_DEADLINE, PlanProblem
from scheduler.models import Site, load_site
from scheduler.paths import itp_trace_csv, nl_energy_csv, shared_data_available


@lru_cache(maxsize=1)
def _nl_energy() -> dict[str, np.ndarray] | None:
    if not shared_data_available():
        return None
    path: Path = nl_energy_csv()
    ts, wind, carbon, price = [], [], [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            ts.append(row["timestamp_utc"])
            wind.append(float(row["offshore_wind_mw"]) if row["offshore_wind_mw"] else math.nan)
            carbon.append(float(row["carbon_g_per_kwh"]) if row["carbon_g_per_kwh"] else math.nan)
            price.append(float(row["price_eur_per_mwh"]) if row["price_eur_per_mwh"] else math.nan)
    years = np.array([int(s[:4]) for s in ts])
    hours = np.array([int(s[11:13]) for s in ts])
    w = np.array(wind)
    cf = np.zeros_like(w)
    for y in np.unique(years):  # three calendar years
        m = years == y
        cf[m] = w[m] / np.nanmax(w[m])

    def ffill(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        idx = np.where(np.isnan(a), 0, np.arange(a.size))
        np.maximum.accumulate(idx, out=idx)
        a = a[idx]
        return np.where(np.isnan(a), np.nanmean(a), a)

    return {"cf": ffill(cf), "carbon": ffill(np.array(carbon)), "price": ffill(np.array(price)), "hour": hours}


@lru_cache(maxsize=1)
def _itp_jobs() -> tuple[np.ndarray, np.ndarray] | None:
    if not shared_data_available():
        return None
    g, d = [], []
    with itp_trace_csv("cluster04").open(newline="") as f:
        for row in csv.DictReader(f):
            g.append(int(row["num_gpu"]))
            d.append(float(row["duration"]))
    gpus, dur = np.array(g), np.array(d)
    ok = (gpus > 0) & (dur > 0)
    return gpus[ok], dur[ok]


def _grid_cap_mw(site: Site, hour: np.ndarray) -> np.ndarray:
    cap = np.full(hour.shape, site.grid.firm_mw, dtype=np.float64)
    for tb in site.grid.time_blocks:  # a few time blocks
        a, b = tb.hour_range
        inside = (hour >= a) | (hour < b) if a > b else (hour >= a) & (hour < b)
        cap = cap + np.where(inside, tb.extra_mw, 0.0)
    return cap


def make_problem(J: int, T: int = 192, site: str = "rotterdam-100k", seed: int = 0, *, slot_minutes: int = 15,
                 gpus_per_job: float = 2.0) -> PlanProblem:
    """A real-shaped instance (see the module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    s = load_site(site)
    slot_s = 60.0 * slot_minutes
    total = sum(p.gpus for p in s.pools)
    scale = min(1.0, J * gpus_per_job / total)
    P = len(s.pools)
    pool_gpus = np.array([max(8, int(round(p.gpus * scale / 8)) * 8) for p in s.pools], dtype=np.int64)
    scale = pool_gpus.sum() / total
    # --- energy
    steps_per_h = 60 // slot_minutes
    nl = _nl_energy()
    if nl is not None:
        n_h = math.ceil(T / steps_per_h) + 1
        start = int(rng.integers(0, nl["cf"].size - n_h))
        sl = slice(start, start + n_h)
        rep = lambda a: np.repeat(a[sl], steps_per_h)[:T]  # noqa: E731
        cf, carbon, price, hour = rep(nl["cf"]), rep(nl["carbon"]), rep(nl["price"]), rep(nl["hour"])
        source = f"NL 2021-2023 hourly data, hour {start}"
    else:
        t = np.arange(T) / steps_per_h
        hour = (t % 24).astype(np.int64)
        cf = np.clip(0.45 + 0.35 * np.sin(t / 17.0 + rng.uniform(0, 6)) + 0.1 * rng.standard_normal(T), 0, 1)
        carbon = 330 - 150 * cf + 30 * np.sin(2 * np.pi * (t - 7) / 24)
        price = 40 + 80 * (1 - cf)
        source = "synthetic energy model (no shared data)"
    wind_w = cf * s.wind.contract_mw * 1e6 * scale
    grid_cap_w = _grid_cap_mw(s, hour) * 1e6 * scale
    site_max_w = np.full(T, s.site_max_mw * 1e6 * scale)
    # --- jobs
    itp = _itp_jobs()
    if itp is not None:
        k = rng.integers(0, itp[0].size, J)
        gpus, dur = itp[0][k].astype(np.int64), itp[1][k]
    else:
        gpus = rng.choice([1, 2, 4, 8, 16, 32, 64], size=J, p=[0.83, 0.03, 0.02, 0.09, 0.02, 0.007, 0.003])
        dur = np.exp(rng.normal(np.log(2.9 * 3600), 1.5, J))
    dur = np.clip(dur, 60.0, 7 * 86400.0)
    rem = dur * rng.uniform(0.2, 1.0, J)
    # eligibility: label-selector classes
    labels = [p.labels for p in s.pools]
    sel = rng.choice(5, size=J, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    elig = np.ones((J, P), dtype=bool)
    h100 = np.array([lab.get("gpu") == "h100" for lab in labels])
    nl_j = np.array([lab.get("jurisdiction") == "nl" for lab in labels])
    public = np.array([lab.get("clearance", "public") == "public" for lab in labels])
    biggest = np.zeros(P, bool)
    biggest[int(np.argmax(pool_gpus))] = True
    for code, mask in ((1, h100), (2, nl_j), (3, public), (4, biggest)):  # selector classes
        if mask.any():
            elig[sel == code] = mask
    gmax = (elig * pool_gpus[None, :]).max(axis=1)
    gpus = np.minimum(gpus, gmax)
    running = rng.random(J) < 0.3
    must = (rng.random(J) < 0.05) & ~running
    release = np.where(running, 0, np.where(rng.random(J) < 0.6, 0, rng.integers(0, max(T // 2, 1), J)))
    preempt = rng.random(J) >= 0.1
    dl_slots = release + np.ceil(rem / slot_s * rng.uniform(1.5, 4.0, J)).astype(np.int64)
    deadline = np.where(rng.random(J) < 0.3, dl_slots, NO_DEADLINE).astype(np.int64)
    # must-run inference: a few slots of 8 GPUs at full power
    mslots = rng.integers(1, 9, J)
    rem = np.where(must, mslots * slot_s, rem)
    gpus = np.where(must, np.minimum(8, gmax), gpus)
    preempt = np.where(must, True, preempt)
    deadline = np.where(must, NO_DEADLINE, deadline)
    # running jobs sit in a random eligible pool that holds them; at most 60% of each pool is running
    fits = elig & (pool_gpus[None, :] >= gpus[:, None])
    pick = np.argmax(fits * rng.random((J, P)), axis=1)
    rpool = np.where(running, pick, -1).astype(np.int64)
    for p in range(P):  # pools
        rows = np.flatnonzero(rpool == p)
        over = rows[np.cumsum(gpus[rows]) > 0.6 * pool_gpus[p]]
        rpool[over] = -1
    running = rpool >= 0
    loss = np.where(running, rng.uniform(0, 1800, J), 0.0)
    prio = rng.choice(3, size=J, p=[0.5, 0.35, 0.15])
    weight = np.array([0.1, 0.2, 0.5])[prio]
    n_ten = 8
    tenant = rng.integers(0, n_ten, J)
    quota = np.full(n_ten, np.inf)
    quota[0] = max(64.0, 0.05 * pool_gpus.sum())
    pb = PlanProblem(
        slot_s=slot_s,
        pue=s.pue,
        wind_w=wind_w,
        carbon_g_per_kwh=carbon,
        grid_cap_w=grid_cap_w,
        site_max_w=site_max_w,
        pool_gpus=np.repeat(pool_gpus[:, None], T, axis=1),
        tdp_w=np.array([p.tdp_w for p in s.pools]),
        idle_w=np.array([p.idle_w for p in s.pools]),
        host_w_per_gpu=np.array([p.host_w_per_gpu for p in s.pools]),
        min_power_fraction=np.array([p.min_power_fraction for p in s.pools]),
        curve_f=np.array([[f for f, _ in p.speed_curve] for p in s.pools]),
        curve_s=np.array([[v for _, v in p.speed_curve] for p in s.pools]),
        gpus=gpus.astype(np.int64),
        remaining_s=rem,
        release=release.astype(np.int64),
        deadline=deadline,
        weight=weight,
        eligible=elig,
        must_run=must,
        preemptible=preempt,
        running_pool=rpool,
        preempt_loss_s=loss,
        tenant=tenant.astype(np.int64),
        tenant_quota_gpus=quota,
        price_eur_per_mwh=price,
    )
    object.__setattr__(pb, "_source", source)  # informative only
    return pb


def problem_source(pb: PlanProblem) -> str:
    return str(getattr(pb, "_source", "unknown"))


def shift_problem(pb: PlanProblem, k: int = 1) -> PlanProblem:
    """The next tick's problem: the same jobs ``k`` slots later, energy shifted (the last slot held)."""
    from dataclasses import replace

    T = pb.n_slots
    idx = np.minimum(np.arange(T) + k, T - 1)
    return replace(
        pb,
        wind_w=pb.wind_w[idx], carbon_g_per_kwh=pb.carbon_g_per_kwh[idx], grid_cap_w=pb.grid_cap_w[idx],
        site_max_w=pb.site_max_w[idx], pool_gpus=np.asarray(pb.pool_gpus)[..., idx],
        price_eur_per_mwh=None if pb.price_eur_per_mwh is None else pb.price_eur_per_mwh[idx],
        release=np.maximum(pb.release - k, 0),
        deadline=np.where(pb.deadline == NO_DEADLINE, NO_DEADLINE, pb.deadline - k),
    )

