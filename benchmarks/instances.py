"""Planning instances for the optimiser benchmarks and tests: a seeded family with knobs, the legacy
large-scale shape, and the two published real-shaped instances.

**The family** (issue 11): ``make(seed, knobs) -> PlanProblem`` with :class:`Knobs` (frozen, validated)
and ``describe(problem) -> dict`` (what the instance really is, measured from its arrays: capacity, demand
share, share of slots where grid + wind is below full load, widest job against its pool, job kinds,
infeasible slots). Knobs: job width relative to the pool (node multiples up to a quarter of a pool), share
of non-preemptible jobs (0-30%), share of tight deadlines, demand (20-90% of GPU capacity over the
horizon), how often grid + wind is below full load, congestion events (and one below the idle floor:
infeasible slots announced for later), 1-6 pools with label selectors, tenant quotas, must-run inference,
running jobs at slot 0 (preemptible and not). ``energy="nl"`` / ``trace="itp"`` make the real-shaped
variant: NL 2021-2023 hourly wind (capacity factor per calendar year) and carbon from a seeded start hour,
ITP job widths and durations widened to node multiples (``x 2^u``, ``u`` in -2..2, as the published
instances are made), read in place from ``../shared/data`` (``scheduler.paths``). Every instance without a
below-idle event is feasible by construction: in every slot grid + wind covers the idle floor plus the
must-run inference and the running non-preemptible jobs at full power (with a margin), the pools and the
tenant quotas hold them, and no job is wider than a quarter of its smallest eligible pool.
``corpus(n, seed)`` spans the knobs with a Latin hypercube: the small instances the test suite plans
(tests/kernels/test_corpus.py) and ``benchmarks/optimizer.py --corpus`` reports.

**The edges** (issue 11: "any feasible instance"): ``extreme(seed, edges)`` builds a small instance with the
extreme-but-valid values of :data:`EDGES` (T = 1, no job, every job must-run, deadlines before the earliest finish,
the cap exactly at the idle floor, quotas of 0, weights from 1e-6 to 1e6, ...; feasibility not promised: the test
judges an "infeasible" answer by its reason), ``extremes(n, seed)`` the (seed, edges) pairs that span them: every
edge alone, then seeded combinations (tests/kernels/test_extremes.py). Neither draws from the family's generator,
so the corpus is as it was.

**Legacy shape** ``make_problem(J, T, site="rotterdam-100k", seed=0)`` (the 50,000-job scale benchmark):

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

**Published instances** ``load_shared(name)``: ``../shared/data/instances/NAME`` (site.yaml, energy.csv,
jobs.csv) built into a problem exactly as ``windward plan --forecast perfect`` builds it, with the
instance's ``lp_bound.json`` (``shared_lp_bound(name)``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

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



# ---------------------------------------------------------------------------------------------------------
# The family (issue 11)
# ---------------------------------------------------------------------------------------------------------

#: GPU pool kinds the family draws from: (tdp_w, idle_w, host_w_per_gpu, min_power_fraction, speed curve).
POOL_KINDS: dict[str, tuple[float, float, float, float, tuple[tuple[float, float], ...]]] = {
    "h100": (700.0, 75.0, 450.0, 0.4, ((0.4, 0.62), (0.6, 0.82), (0.8, 0.95), (1.0, 1.0))),
    "b200": (1000.0, 110.0, 600.0, 0.4, ((0.4, 0.6), (0.6, 0.8), (0.8, 0.94), (1.0, 1.0))),
    "a100": (400.0, 50.0, 300.0, 0.5, ((0.5, 0.7), (0.75, 0.9), (1.0, 1.0))),
}
GPUS_PER_NODE = 8
_PUE = 1.15


@dataclass(frozen=True)
class Knobs:
    """What a family instance looks like; ``make(seed, knobs)`` draws one. Ranges are checked on creation.

    ``n_jobs, n_slots, slot_minutes``: size. ``n_pools`` 1-6 GPU pools of ``pool_nodes`` (low, high) 8-GPU
    nodes each, kinds drawn from :data:`POOL_KINDS`, with labels ``gpu``, ``jurisdiction``, ``clearance``.
    ``max_width_share`` (0, 0.25]: the widest job as a share of its smallest eligible pool (node
    multiples from 8 GPUs up; ``sub_node_share`` of the jobs use 1-4 GPUs). ``np_share`` 0-0.3
    non-preemptible. ``tight_share`` 0-1 jobs with a deadline 1.2-2.5x their full-speed duration after
    release. ``demand_share`` 0.2-0.9: work (GPU-seconds at full speed, must-run included) over GPU capacity
    of the horizon. ``short_share`` 0-1: share of slots where grid + wind is below the site's full load.
    ``congestion_events`` 0-4 events of 1-4 h with the grid cap between the mandatory floor and the firm
    cap. ``below_idle_event``: one more event, announced for later, with a 1 kW cap and little wind: those
    slots cannot hold the idle site (``describe()["infeasible_slots"]``); it begins after every running
    non-preemptible job could end, unless ``below_idle_across_running``: then it begins before the longest
    running one could end at its full level (where there is one). ``inference_over_cap``: one more event, of
    1-3 slots from a slot after slot 0 where must-run inference runs (where there is one), with little wind and
    the cap between the idle floor and the floor plus that inference at full power (10-90% of it): the
    floor fits, the inference does not (``describe()["shed_slots"]``: a plan serves the part that fits and
    sheds the rest there, kernels.check.inference_shed). ``inference_over_gpus``: a node failure or maintenance
    window, announced in ``pool_gpus`` for 1-3 slots from a slot after slot 0 where a pool without a running
    non-preemptible job runs must-run inference (where there is one): the pool keeps at most 10-90% of that inference's GPUs there, whole 8-GPU nodes
    lost (``describe()["shed_slots"]`` too: the inference that fits that pool runs, the rest is shed there, the
    other pools are planned as usual). ``node_failure``: the nodes of every eligible pool of one queued job that
    is not must-run (pools without running jobs or must-run inference) fail for the whole horizon, leaving each
    fewer healthy GPUs than that job needs (whole 8-GPU nodes: kernels.check.unplaceable then holds that job,
    and any other only those pools could run). ``np_window``: a maintenance window, announced in ``pool_gpus``
    for 1-3 slots, in the pool of a running non-preemptible job (where there is one whose block takes 2 slots or
    more): the pool keeps fewer healthy GPUs than the job's there (whole 8-GPU nodes lost), from a slot inside the
    job's shortest block (its work at the pool's fastest level: it runs up to the window and its block ends
    there unfinished, kernels.check.running_blocks) or, one time in two where there is room, from a slot after
    that block but before its slowest one ends (it keeps running and has to end first). ``inference_beside_np``: one row (a must-run one where there is one, else a
    job that is not running) becomes must-run inference from slot 0, as wide as a running non-preemptible job's
    pool leaves it too little room beside that job (whole nodes), eligible for that pool and a less frugal one
    with the room (where there are such pools): the most frugal packing displaces the running job, the packing
    beside it does not (kernels.check.inference_shed). ``selectors``: jobs carry label
    selectors (eligible for a subset of the pools). ``n_tenants`` 1-8, ``quota_share`` 0-1 of them with a
    concurrent-GPU quota. ``must_share`` 0-0.2 must-run inference rows (pinned to one pool, full power).
    ``running_share`` 0-0.5 jobs running at slot 0 (a third of them non-preemptible when ``np_share`` > 0).
    ``energy``: ``"synthetic"`` (seeded weather model) or ``"nl"`` (real NL hourly wind and carbon);
    ``trace``: ``"synthetic"`` (lognormal fit of the ITP trace) or ``"itp"`` (resampled real jobs).
    """

    n_jobs: int = 30
    n_slots: int = 48
    slot_minutes: int = 15
    n_pools: int = 2
    pool_nodes: tuple[int, int] = (4, 16)
    max_width_share: float = 0.25
    sub_node_share: float = 0.3
    np_share: float = 0.13
    tight_share: float = 0.2
    demand_share: float = 0.55
    short_share: float = 0.5
    congestion_events: int = 1
    below_idle_event: bool = False
    below_idle_across_running: bool = False
    inference_over_cap: bool = False
    inference_over_gpus: bool = False
    node_failure: bool = False
    np_window: bool = False
    inference_beside_np: bool = False
    selectors: bool = True
    n_tenants: int = 4
    quota_share: float = 0.5
    must_share: float = 0.05
    running_share: float = 0.15
    energy: str = "synthetic"
    trace: str = "synthetic"

    def __post_init__(self) -> None:
        def rng_(name: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi if lo_open else lo <= v <= hi):
                raise ValueError(f"Knobs.{name}: got {v!r}; allowed: a number in {'(' if lo_open else '['}{lo}, {hi}]")

        for name, lo, hi in (("n_jobs", 1, 10**6), ("n_slots", 2, 10**4), ("n_pools", 1, 6),
                             ("congestion_events", 0, 4), ("n_tenants", 1, 8)):
            rng_(name, lo, hi)
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"Knobs.{name}: got {getattr(self, name)!r}; allowed: an integer in [{lo}, {hi}]")
        if self.slot_minutes not in (5, 10, 15, 30, 60):
            raise ValueError(f"Knobs.slot_minutes: got {self.slot_minutes!r}; allowed: 5, 10, 15, 30 or 60")
        lo_n, hi_n = self.pool_nodes
        if not (isinstance(lo_n, int) and isinstance(hi_n, int) and 1 <= lo_n <= hi_n <= 10**5):
            raise ValueError(f"Knobs.pool_nodes: got {self.pool_nodes!r}; allowed: (low, high) integers, "
                             "1 <= low <= high <= 100000")
        rng_("max_width_share", 0.0, 0.25, lo_open=True)
        rng_("np_share", 0.0, 0.3)
        rng_("demand_share", 0.2, 0.9)
        for name in ("sub_node_share", "tight_share", "short_share", "quota_share"):
            rng_(name, 0.0, 1.0)
        rng_("must_share", 0.0, 0.2)
        rng_("running_share", 0.0, 0.5)
        if self.energy not in ("synthetic", "nl"):
            raise ValueError(f"Knobs.energy: got {self.energy!r}; allowed: 'synthetic' or 'nl'")
        if self.trace not in ("synthetic", "itp"):
            raise ValueError(f"Knobs.trace: got {self.trace!r}; allowed: 'synthetic' or 'itp'")
        if self.below_idle_event and self.n_slots < 8:
            raise ValueError(f"Knobs.below_idle_event: needs n_slots >= 8 (got {self.n_slots})")
        if self.below_idle_across_running and not self.below_idle_event:
            raise ValueError("Knobs.below_idle_across_running: needs below_idle_event=True")


def _pools(rng: np.random.Generator, k: Knobs) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    """Pool kinds, GPUs and labels. Pool 0 is an NL public H100 pool; the rest vary."""
    P = k.n_pools
    kinds = ["h100"] + list(rng.choice(list(POOL_KINDS), size=P - 1))
    nodes = rng.integers(k.pool_nodes[0], k.pool_nodes[1] + 1, P)
    labels = [{"gpu": kinds[0], "jurisdiction": "nl", "clearance": "public"}]
    for p in range(1, P):  # pools
        labels.append({"gpu": kinds[p], "jurisdiction": "nl" if rng.random() < 0.4 else "eu",
                       "clearance": "secret" if (P >= 3 and rng.random() < 0.25) else "public"})
    return kinds, nodes * GPUS_PER_NODE, labels


def _selectors(rng: np.random.Generator, k: Knobs, labels: list[dict[str, str]], J: int) -> np.ndarray:
    """Eligibility ``(J, P)`` from label selectors: any pool, a GPU kind, jurisdiction=nl, clearance=public,
    clearance=secret, or one named pool (each non-empty by construction: a selector matching nothing is
    replaced by 'any pool')."""
    P = len(labels)
    elig = np.ones((J, P), dtype=bool)
    if not k.selectors or P == 1:
        return elig
    masks = [np.ones(P, bool)]
    # sorted: a set of strings iterates in an order that changes with PYTHONHASHSEED (per process)
    for key, val in sorted({(key, lab[key]) for lab in labels for key in ("gpu", "jurisdiction", "clearance")}):
        masks.append(np.array([lab[key] == val for lab in labels]))
    masks += [np.eye(P, dtype=bool)[p] for p in range(P)]
    masks = [m for m in masks if m.any()]
    prob = np.array([4.0] + [1.0] * (len(masks) - 1))
    pick = rng.choice(len(masks), size=J, p=prob / prob.sum())
    return np.stack(masks)[pick]


def _energy(rng: np.random.Generator, k: Knobs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Per slot: wind capacity factor, carbon g/kWh, price EUR/MWh, UTC hour; and the source."""
    T, spm = k.n_slots, k.slot_minutes
    hours_f = np.arange(T) * spm / 60.0
    if k.energy == "nl":
        nl = _nl_energy()
        if nl is None:
            raise ValueError("Knobs.energy: 'nl' needs the shared data (../shared/data or $WINDWARD_DATA_DIR); "
                             "not found here")
        n_h = int(math.ceil(hours_f[-1])) + 2
        start = int(rng.integers(0, nl["cf"].size - n_h))
        hi = start + np.floor(hours_f).astype(np.int64)
        return nl["cf"][hi], nl["carbon"][hi], nl["price"][hi], nl["hour"][hi], f"NL 2021-2023 hourly, hour {start}"
    h0 = int(rng.integers(0, 24))
    hour = ((h0 + hours_f) % 24).astype(np.int64)
    # wind: an AR(1) weather state (persistence 0.97 per hour) through a logistic curve
    n_h = int(math.ceil(hours_f[-1])) + 2
    z = np.empty(n_h)
    z[0] = rng.normal(0, 1)
    e = rng.normal(0, math.sqrt(1 - 0.97**2), n_h)
    for i in range(1, n_h):  # hours of the horizon (a few dozen)
        z[i] = 0.97 * z[i - 1] + e[i]
    cf_h = 1 / (1 + np.exp(-(1.6 * z + rng.normal(0.3, 0.5))))
    cf = cf_h[np.floor(hours_f).astype(np.int64)]
    carbon = np.clip(390 - 230 * cf + 40 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 15, T), 40, 700)
    price = np.clip(45 + 90 * (1 - cf) + 25 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 10, T), -20, 400)
    return cf, carbon, price, hour, "synthetic weather model (seeded)"


def _raw_jobs(rng: np.random.Generator, k: Knobs, J: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Raw widths (GPUs, before the pool limit) and durations (s) of ``J`` jobs."""
    if k.trace == "itp":
        itp = _itp_jobs()
        if itp is None:
            raise ValueError("Knobs.trace: 'itp' needs the shared data (../shared/data or $WINDWARD_DATA_DIR); "
                             "not found here")
        i = rng.integers(0, itp[0].size, J)
        g = itp[0][i] * 2.0 ** rng.integers(-2, 3, J)  # widened as the published instances are
        return np.maximum(g, 1.0), itp[1][i].astype(np.float64), "ITP cluster04 (resampled, widened x 2^u)"
    sub = rng.random(J) < k.sub_node_share
    g = np.where(sub, rng.choice([1, 2, 3, 4], size=J), GPUS_PER_NODE * np.exp(rng.uniform(0, math.log(64), J)))
    dur = np.exp(rng.normal(math.log(2.9 * 3600), 1.0, J))
    return g, dur, "synthetic jobs (lognormal fit of ITP durations)"


def _scale_to(dur: np.ndarray, weight: np.ndarray, cap: np.ndarray, target: float) -> np.ndarray:
    """``clip(s * dur, 60, cap)`` with ``s`` found by bisection so that ``sum(weight * result)`` hits
    ``target`` (or as close as the caps allow)."""
    lo, hi = 1e-6, 1e6
    for _ in range(80):  # bisection on a log scale
        mid = math.sqrt(lo * hi)
        if (weight * np.clip(mid * dur, 60.0, cap)).sum() < target:
            lo = mid
        else:
            hi = mid
    return np.clip(hi * dur, 60.0, np.maximum(cap, 60.0))


def make(seed: int, knobs: Knobs | None = None) -> PlanProblem:
    """One instance of the family (see :class:`Knobs` and the module docstring); deterministic in
    ``(seed, knobs)``. ``describe(problem)`` says what it is."""
    k = knobs if knobs is not None else Knobs()
    if not isinstance(k, Knobs):
        raise ValueError(f"knobs: got {type(k).__name__}; allowed: benchmarks.instances.Knobs")
    rng = np.random.default_rng(seed)
    J, T = k.n_jobs, k.n_slots
    slot_s = 60.0 * k.slot_minutes
    tt = np.arange(T)
    kinds, pool_gpus, labels = _pools(rng, k)
    P = pool_gpus.size
    tdp = np.array([POOL_KINDS[x][0] for x in kinds])
    idle = np.array([POOL_KINDS[x][1] for x in kinds])
    host = np.array([POOL_KINDS[x][2] for x in kinds])
    minf = np.array([POOL_KINDS[x][3] for x in kinds])
    K = max(len(POOL_KINDS[x][4]) for x in kinds)
    curve = [list(POOL_KINDS[x][4]) + [POOL_KINDS[x][4][-1]] * (K - len(POOL_KINDS[x][4])) for x in kinds]
    curve_f = np.array([[a for a, _ in c] for c in curve])
    curve_s = np.array([[b for _, b in c] for c in curve])
    cf, carbon, price, hour, e_src = _energy(rng, k)

    # --- jobs: eligibility, widths (node multiples up to a quarter of the smallest eligible pool)
    elig = _selectors(rng, k, labels, J)
    gmin = np.where(elig, pool_gpus[None, :], np.iinfo(np.int64).max).min(axis=1)
    raw_g, raw_dur, j_src = _raw_jobs(rng, k, J)
    max_nodes = np.maximum(np.floor(k.max_width_share * gmin / GPUS_PER_NODE), 1).astype(np.int64)
    nodes = np.clip(np.ceil(raw_g / GPUS_PER_NODE - 1e-9), 1, max_nodes).astype(np.int64)
    gpus = np.where(raw_g < GPUS_PER_NODE, np.minimum(np.ceil(raw_g), max_nodes * GPUS_PER_NODE),
                    nodes * GPUS_PER_NODE).astype(np.int64)
    # kinds: must-run inference (pinned to one pool), running at slot 0, non-preemptible, tight deadline
    must = rng.random(J) < k.must_share
    running = (rng.random(J) < k.running_share) & ~must
    preempt = (rng.random(J) >= k.np_share) | must
    if k.np_share > 0:  # a third of the running jobs are non-preemptible
        preempt = np.where(running, rng.random(J) >= 1 / 3, preempt)
    tight = (rng.random(J) < k.tight_share) & ~must
    release = np.where(running | (rng.random(J) < 0.5), 0, rng.integers(0, max(T // 2, 1), J))
    # durations: lognormal/trace shape scaled so that the work hits demand_share of the GPU capacity
    m_slots = rng.integers(1, max(2, min(9, T // 2)), J)
    m_gpus = np.minimum(rng.choice([1, 2, 4, 8], size=J), gmin)
    m_pool = np.argmax(elig * rng.random((J, P)), axis=1)
    gpus = np.where(must, m_gpus, gpus)
    release = np.where(must, rng.integers(0, np.maximum(T - m_slots, 1)), release)
    horizon_left_s = (T - release) * slot_s
    cap_s = np.where(tight, horizon_left_s / 1.3, np.where(preempt, 0.9, 0.6) * horizon_left_s)
    cap_s = np.where(running, np.minimum(cap_s, 0.35 * T * slot_s), cap_s)
    capacity_gpu_s = float(pool_gpus.sum()) * T * slot_s
    must_gpu_s = float((m_gpus * m_slots * slot_s)[must].sum())
    target = max(k.demand_share * capacity_gpu_s - must_gpu_s, 0.0)
    # widths grow (node multiples, within the width limit) only when the durations alone cannot hit the demand
    base_dur = np.where(must, 0.0, raw_dur)
    wide = ~must & (gpus >= GPUS_PER_NODE)
    lo_f, hi_f = 1.0, 64.0
    for _ in range(12 if wide.any() else 0):  # bisection on the width factor
        f_w = math.sqrt(lo_f * hi_f) if hi_f / lo_f > 1.01 else hi_f
        g_try = np.where(wide, np.minimum(np.ceil(gpus * f_w / GPUS_PER_NODE), max_nodes) * GPUS_PER_NODE, gpus)
        if (g_try * _scale_to(base_dur, g_try.astype(np.float64), cap_s, target)).sum() >= 0.99 * target:
            hi_f = f_w
        else:
            lo_f = f_w
    if wide.any() and (gpus * _scale_to(base_dur, gpus.astype(np.float64), cap_s, target)).sum() < 0.99 * target:
        gpus = np.where(wide, np.minimum(np.ceil(gpus * hi_f / GPUS_PER_NODE), max_nodes) * GPUS_PER_NODE, gpus)
    gpus = gpus.astype(np.int64)
    dur = _scale_to(base_dur, np.where(must, 0.0, gpus.astype(np.float64)), cap_s, target)
    rem = np.where(must, m_slots * slot_s, dur)
    deadline = np.where(tight, release + np.ceil(rem / slot_s * rng.uniform(1.2, 2.5, J)), NO_DEADLINE)
    deadline = np.where(tight, np.minimum(deadline, T), deadline).astype(np.int64)
    # running jobs sit in an eligible pool that holds them: at most 60% of a pool is running
    fits = elig & (pool_gpus[None, :] >= gpus[:, None])
    rpool = np.where(running, np.argmax(fits * rng.random((J, P)), axis=1), -1).astype(np.int64)
    for p in range(P):  # pools
        rows = np.flatnonzero(rpool == p)
        rpool[rows[np.cumsum(gpus[rows]) > 0.6 * pool_gpus[p]]] = -1
    running = rpool >= 0
    release = np.where(running, 0, release)
    loss = np.where(running, rng.uniform(0, 1800, J), 0.0)
    # must-run rows pinned to one pool: with the running jobs at most 80% of the pool in every slot
    elig = np.where(must[:, None], np.eye(P, dtype=bool)[m_pool], elig)
    m_end = release + m_slots
    use = np.zeros((P, T))
    use += np.array([gpus[running & (rpool == p)].sum() for p in range(P)])[:, None]
    keep_must = np.zeros(J, bool)
    for j in np.flatnonzero(must):  # must-run rows (a few percent of the jobs)
        win = (tt >= release[j]) & (tt < m_end[j])
        if (use[m_pool[j], win] + gpus[j] <= 0.8 * pool_gpus[m_pool[j]]).all():
            use[m_pool[j], win] += gpus[j]
            keep_must[j] = True
    dropped = must & ~keep_must  # no room: an ordinary preemptible job instead
    must = keep_must
    preempt = preempt | dropped
    if k.inference_beside_np:  # (draws only when asked for: the corpus's instances stay as they were)
        must, preempt, gpus, rem, release, m_end, elig, m_pool = _inference_beside_np(
            rng, must, preempt, running & ~preempt, rpool, gpus, rem, release, m_slots, m_pool, elig, pool_gpus, tdp,
            idle, minf, slot_s)
    # mandatory IT power on top of the idle site: must-run at full power in its window; a running
    # non-preemptible job at full power for as long as it could take at its slowest level
    pool_of = np.where(must, m_pool, np.where(running, rpool, 0))
    marg_w = gpus * (tdp[pool_of] - idle[pool_of])
    slow = curve_s[:, 0][pool_of]
    np_run = running & ~preempt
    np_end = np.where(np_run, np.ceil((rem + loss) / (slot_s * slow)), 0).astype(np.int64)
    act = ((must[:, None] & (tt >= release[:, None]) & (tt < m_end[:, None]))
           | (np_run[:, None] & (tt < np_end[:, None])))
    mand_w = _PUE * (marg_w[:, None] * act).sum(axis=0)
    idle_w = _PUE * float((pool_gpus * (idle + host)).sum())
    full_w = _PUE * float((pool_gpus * (tdp + host)).sum())
    head_w = full_w - idle_w
    floor_w = idle_w + mand_w + 0.03 * head_w  # what grid + wind must hold in every slot
    # --- wind and grid: firm cap set so that grid + wind < full load in short_share of the slots
    wind_w = cf * rng.uniform(0.3, 0.8) * full_w
    night = (hour >= 22) | (hour < 6)
    extra_w = np.where(night, rng.uniform(0.05, 0.2) * full_w, 0.0)
    need = full_w - wind_w - extra_w  # firm below need[t]: slot t is short
    firm = float(np.quantile(need, 1 - k.short_share)) - 1.0 if k.short_share > 0 else float(need.max()) + 1.0
    firm = max(firm, float((floor_w - wind_w - extra_w).max()), 0.0)
    grid_cap_w = firm + extra_w
    infeasible = np.zeros(T, bool)
    for _ in range(k.congestion_events):  # a few events
        L = int(rng.integers(max(1, 60 // k.slot_minutes), max(2, 240 // k.slot_minutes) + 1))
        a = int(rng.integers(0, max(T - L, 1)))
        ev = (tt >= a) & (tt < a + L)
        low = np.maximum(floor_w - wind_w, 0.0) + rng.uniform(0.0, 0.4) * head_w
        grid_cap_w = np.where(ev, np.maximum(np.minimum(grid_cap_w, low), floor_w - wind_w), grid_cap_w)
    if k.below_idle_event:
        L = int(rng.integers(2, max(3, T // 8) + 1))
        first = max(T // 4, int(np_end.max(initial=0)) + 1, int(m_end[must].max(initial=0)))
        lo, hi = min(first, T - L), T - L
        if k.below_idle_across_running and np_run.any():  # before the longest running one ends at full level
            fast = curve_s[:, -1][pool_of]
            lo, hi = 1, int(np.clip(np.ceil((rem + loss) / (slot_s * fast))[np_run].max() - 1, 1, T - L))
        a = int(rng.integers(lo, hi + 1))
        ev = (tt >= a) & (tt < a + L)
        must &= ~(ev[None, :] & (tt >= release[:, None]) & (tt < m_end[:, None])).any(axis=1)
        wind_w = np.where(ev, np.minimum(wind_w, 0.3 * idle_w), wind_w)
        grid_cap_w = np.where(ev, 1000.0, grid_cap_w)
        infeasible = ev
    shed = np.zeros(T, bool)
    if k.inference_over_cap:  # (draws only when asked for: the corpus's instances stay as they were)
        inf_w = _PUE * (marg_w[:, None] * (must[:, None] & (tt >= release[:, None]) & (tt < m_end[:, None]))).sum(axis=0)
        cand = np.flatnonzero((inf_w > 0) & ~infeasible & (tt > 0))
        if cand.size:
            a = int(rng.choice(cand))
            ev = (tt >= a) & (tt < a + int(rng.integers(1, 4))) & (inf_w > 0) & ~infeasible
            level = idle_w + rng.uniform(0.1, 0.9) * inf_w
            wind_w = np.where(ev, np.minimum(wind_w, 0.3 * idle_w), wind_w)
            grid_cap_w = np.where(ev, level - wind_w, grid_cap_w)
            shed = ev
    healthy = np.repeat(pool_gpus[:, None], T, axis=1).astype(np.int64)
    if k.inference_over_gpus:  # (draws only when asked for: the corpus's instances stay as they were)
        m_act = must[:, None] & (tt >= release[:, None]) & (tt < m_end[:, None])
        inf_g = np.stack([(gpus[:, None] * (m_act & (m_pool == p)[:, None])).sum(axis=0) for p in range(P)])  # pools
        # (not a pool with a running non-preemptible job: its block could neither run on there nor end unfinished)
        calm = ~np.isin(np.arange(P), rpool[np_run])
        pp, cand = np.nonzero((inf_g > 0) & calm[:, None] & ~(infeasible | shed)[None, :] & (tt > 0)[None, :])
        if cand.size:
            i = int(rng.integers(cand.size))
            p, a = int(pp[i]), int(cand[i])
            ev = (tt >= a) & (tt < a + int(rng.integers(1, 4))) & (inf_g[p] > 0) & ~infeasible & ~shed
            lost = 8 * np.ceil((pool_gpus[p] - rng.uniform(0.1, 0.9) * inf_g[p]) / 8)  # whole nodes
            healthy[p] = np.where(ev, np.maximum(pool_gpus[p] - lost, 0), healthy[p])
            shed = shed | ev
    if k.np_window:  # (draws only when asked for: the corpus's instances stay as they were)
        healthy = _np_window(rng, healthy, np_run, rpool, gpus, rem, curve_s, slot_s, infeasible | shed)
    site_max_w = np.full(T, max(full_w * rng.uniform(0.9, 1.05), float(floor_w.max())))
    # --- weights: the product's (scheduler.planner.job_weights with terminal_value "max")
    from scheduler.planner import WeightSettings

    ws = WeightSettings()
    base = ws.weight_margin * float((_PUE * (tdp - idle)).max()) / 3.6e6 * max(float(carbon.max()), 1.0)
    prio = rng.choice(4, size=J, p=[0.4, 0.3, 0.2, 0.1])
    weight = base * ws.priority_base**prio
    # --- tenants and quotas (a quota always holds the tenant's mandatory load plus its widest job)
    N = k.n_tenants
    tenant = rng.integers(0, N, J).astype(np.int64)
    quota = np.full(N, np.inf)
    total = float(pool_gpus.sum())
    mand_gpus = gpus[:, None] * act
    for n in np.flatnonzero(rng.random(N) < k.quota_share):  # tenants with a quota
        mine = tenant == n
        need_q = float(mand_gpus[mine].sum(axis=0).max(initial=0)) + float(gpus[mine].max(initial=0))
        quota[n] = float(max(np.floor(rng.uniform(0.25, 0.6) * total), need_q))
    if k.node_failure:  # (draws only when asked for: the corpus's instances stay as they were)
        calm = ~np.isin(np.arange(P), np.r_[rpool[rpool >= 0], m_pool[must]])  # no running job, no inference
        cand = np.flatnonzero(~must & (rpool < 0) & ~(elig & ~calm[None, :]).any(axis=1) & (gpus > 1))
        if cand.size:
            victim = int(cand[rng.integers(cand.size)])
            for pool_i in np.flatnonzero(elig[victim]).tolist():  # pools
                healthy[pool_i] = np.minimum(healthy[pool_i], 8 * ((int(gpus[victim]) - 1) // 8))
    pb = PlanProblem(
        slot_s=slot_s, pue=_PUE, wind_w=wind_w, carbon_g_per_kwh=carbon, grid_cap_w=grid_cap_w,
        site_max_w=site_max_w, pool_gpus=healthy,
        tdp_w=tdp, idle_w=idle, host_w_per_gpu=host, min_power_fraction=minf, curve_f=curve_f,
        curve_s=curve_s, gpus=gpus.astype(np.int64), remaining_s=rem, release=release.astype(np.int64),
        deadline=np.where(must, NO_DEADLINE, deadline).astype(np.int64), weight=weight, eligible=elig,
        must_run=must, preemptible=preempt | must, running_pool=rpool, preempt_loss_s=loss, tenant=tenant,
        tenant_quota_gpus=quota, price_eur_per_mwh=price,
    )
    object.__setattr__(pb, "_source", f"family seed {seed}: {e_src}; {j_src}")
    object.__setattr__(pb, "_family", {"seed": seed, "knobs": asdict(k), "infeasible_slots": np.flatnonzero(
        infeasible).tolist(), "shed_slots": np.flatnonzero(shed).tolist(), "pool_kinds": kinds, "pool_labels": labels})
    return pb


def _np_window(rng: np.random.Generator, healthy: np.ndarray, np_run: np.ndarray, rpool: np.ndarray,
               gpus: np.ndarray, rem: np.ndarray, curve_s: np.ndarray, slot_s: float, busy: np.ndarray) -> np.ndarray:
    """``Knobs.np_window``: ``healthy (P, T)`` with a maintenance window in a running non-preemptible job's pool
    (slots ``busy``, infeasible or shed already, left as they are)."""
    T = healthy.shape[1]
    tt = np.arange(T)
    fast = np.ceil(rem / (slot_s * curve_s[:, -1][np.maximum(rpool, 0)]) - 1e-9).astype(np.int64)
    slow = np.ceil(rem / (slot_s * curve_s[:, 0][np.maximum(rpool, 0)]) - 1e-9).astype(np.int64)
    cand = np.flatnonzero(np_run & (fast >= 2))
    if not cand.size:
        return healthy
    j = int(cand[rng.integers(cand.size)])
    p = int(rpool[j])
    after = bool(rng.random() < 0.5) and fast[j] < min(slow[j], T)  # it can end before the window: it keeps running
    a = int(rng.integers(fast[j], min(slow[j], T))) if after else int(rng.integers(1, min(fast[j], T)))
    ev = (tt >= a) & (tt < a + int(rng.integers(1, 4))) & ~busy
    keep = 8 * ((int(gpus[j]) - 1) // 8)  # whole nodes, fewer GPUs than the job's
    out = healthy.copy()
    out[p] = np.where(ev, np.minimum(out[p], keep), out[p])
    return out


def _inference_beside_np(rng: np.random.Generator, must: np.ndarray, preempt: np.ndarray, np_run: np.ndarray,
                         rpool: np.ndarray, gpus: np.ndarray, rem: np.ndarray, release: np.ndarray,
                         m_slots: np.ndarray, m_pool: np.ndarray, elig: np.ndarray, pool_gpus: np.ndarray,
                         tdp: np.ndarray, idle: np.ndarray, minf: np.ndarray, slot_s: float) -> tuple[np.ndarray, ...]:
    """``Knobs.inference_beside_np``: the job arrays with one row made must-run inference beside a running
    non-preemptible job (see :class:`Knobs`; its mandatory watts counted in the pool with the room, where the
    packing beside the job puts it); unchanged where no pools fit."""
    P = pool_gpus.size
    per_gpu = tdp - idle  # kernels.check.pack_inference's order (pue is common): the most frugal first, then index
    rank = np.argsort(np.argsort(per_gpu, kind="stable"), kind="stable")
    run_g = np.array([gpus[(rpool == p)].sum() for p in range(P)])
    out = (must, preempt, gpus, rem, release, release + m_slots, elig, m_pool)
    cand = np.flatnonzero(np_run)
    if not cand.size:
        return out
    j = int(cand[rng.integers(cand.size)])
    p = int(rpool[j])
    width = 8 * ((int(pool_gpus[p] - gpus[j])) // 8 + 1)  # whole nodes: too wide beside the job in its pool
    qs = np.flatnonzero((rank > rank[p]) & (pool_gpus - run_g >= width) & (minf <= 1.0))
    others = np.flatnonzero(~np_run & (rpool < 0) & (np.arange(must.size) != j))
    if not qs.size or width > pool_gpus[p] or not others.size:
        return out
    q = int(qs[rng.integers(qs.size)])
    m = int(others[np.argmax(must[others])])  # a must-run row where there is one
    must, preempt, gpus, rem, release, elig, m_pool = (a.copy() for a in (must, preempt, gpus, rem, release, elig,
                                                                          m_pool))
    must[m], preempt[m], gpus[m], release[m], m_pool[m] = True, True, width, 0, q
    rem[m] = float(m_slots[m]) * slot_s
    elig[m] = np.isin(np.arange(P), (p, q))
    return must, preempt, gpus, rem, release, release + m_slots, elig, m_pool


def describe(pb: PlanProblem) -> dict[str, Any]:
    """What an instance is, measured from its arrays (and, for family instances, the knobs and seed)."""
    T, J = pb.n_slots, pb.n_jobs
    H = np.asarray(pb.pool_gpus, dtype=np.float64).reshape(pb.n_pools, -1)
    H = np.repeat(H[:, :1], T, axis=1) if H.shape[1] != T else H
    tdp, idle, host = (np.asarray(a, dtype=np.float64) for a in (pb.tdp_w, pb.idle_w, pb.host_w_per_gpu))
    idle_w = pb.pue * (H * (idle + host)[:, None]).sum(axis=0)
    full_w = pb.pue * (H * (tdp + host)[:, None]).sum(axis=0)
    supply = np.asarray(pb.grid_cap_w) + np.asarray(pb.wind_w)
    gpus = np.asarray(pb.gpus, dtype=np.float64)
    must = np.asarray(pb.must_run, bool)
    elig = np.asarray(pb.eligible, bool)
    gmin = np.where(elig, H[:, :1].T, np.inf).min(axis=1)
    running = np.asarray(pb.running_pool) >= 0
    pre = np.asarray(pb.preemptible, bool)
    dl = np.asarray(pb.deadline)
    fam = getattr(pb, "_family", None) or {}
    quota = np.asarray(pb.tenant_quota_gpus, dtype=np.float64)
    return {
        "source": problem_source(pb), "n_jobs": J, "n_slots": T, "slot_s": float(pb.slot_s), "n_pools": pb.n_pools,
        "gpus": int(H[:, 0].sum()), "pool_gpus": H[:, 0].astype(int).tolist(),
        "idle_floor_mw": float(idle_w.max() / 1e6), "full_load_mw": float(full_w.max() / 1e6),
        "demand_share": float((gpus * np.asarray(pb.remaining_s)).sum() / max(H.sum() * pb.slot_s, 1e-9)),
        "share_slots_grid_plus_wind_below_full_load": float((supply < full_w).mean()),
        "share_slots_site_max_below_full_load": float((np.asarray(pb.site_max_w) < full_w).mean()),
        "widest_job_share_of_pool": float((gpus / gmin).max(initial=0)),
        "jobs_eligible_for_a_subset": int((~elig.all(axis=1)).sum()),
        "non_preemptible": int((~pre & ~must).sum()), "deadlines_inside_horizon": int(((dl < T) & ~must).sum()),
        "must_run": int(must.sum()), "running": int(running.sum()),
        "running_non_preemptible": int((running & ~pre & ~must).sum()),
        "tenants_with_quota": int(np.isfinite(quota).sum()),
        "infeasible_slots": fam.get("infeasible_slots", []), "shed_slots": fam.get("shed_slots", []),
        "seed": fam.get("seed"), "knobs": fam.get("knobs"),
    }


def corpus(n: int = 200, seed: int = 0, *, n_jobs: tuple[int, int] = (8, 40),
           n_slots: tuple[int, int] = (16, 48), **fixed: Any) -> list[tuple[int, Knobs]]:
    """``n`` (seed, knobs) pairs spanning the knobs: a Latin hypercube over the continuous knobs (each
    range cut into ``n`` strata, one draw per stratum, the strata shuffled per knob) and the discrete ones
    cycled with co-prime periods. ``fixed`` knobs override (e.g. ``energy="nl"``)."""
    rng = np.random.default_rng(seed)
    cont = {"max_width_share": (0.02, 0.25), "np_share": (0.0, 0.3), "tight_share": (0.0, 0.6),
            "demand_share": (0.2, 0.9), "short_share": (0.0, 0.9), "must_share": (0.0, 0.15),
            "running_share": (0.0, 0.4), "quota_share": (0.0, 1.0), "sub_node_share": (0.0, 0.6)}
    u = {name: (rng.permutation(n) + rng.random(n)) / n for name in cont}
    out = []
    for i in range(n):  # corpus cases
        kw: dict[str, Any] = {name: lo + (hi - lo) * float(u[name][i]) for name, (lo, hi) in cont.items()}
        kw.update(
            n_jobs=int(rng.integers(n_jobs[0], n_jobs[1] + 1)), n_slots=int(rng.integers(n_slots[0], n_slots[1] + 1)),
            slot_minutes=(15, 30, 60)[i % 3], n_pools=1 + i % 6, congestion_events=i % 4, selectors=i % 7 != 0,
            n_tenants=1 + i % 5, pool_nodes=((2, 6), (4, 12), (6, 20))[i % 11 % 3],
        )
        kw.update(fixed)
        out.append((seed * 100_003 + i, Knobs(**kw)))
    return out



# ---------------------------------------------------------------------------------------------------------
# The edges (issue 11: "any feasible instance, not only its own generator")
# ---------------------------------------------------------------------------------------------------------

#: The extreme-but-valid edges of the space a user can reach (what :func:`extreme` can put in an instance):
#: horizon and job count at their least; job kinds all one way; deadlines at and before the earliest finish;
#: work a sliver of a slot and many horizons' worth; gangs exactly as wide as their pool; wind none and far
#: above full load; the grid cap exactly at the idle floor, at it plus 1 W, and binding in every slot;
#: identical pools; a pool with one power level (``min_power_fraction`` = 1) and two-point speed curves;
#: tenant quotas of 0 and below a job's width; running jobs with large switching losses and running
#: non-preemptible jobs whose work passes the horizon's end; weights all equal and spanning 1e-6..1e6; one
#: carbon intensity in every slot (ties everywhere); negative prices with an energy-cost weight; pool sizes
#: that vary over the slots.
EDGES = ("T1", "T2", "J0", "J1", "all_must", "all_np", "dl_next", "dl_unreachable", "tiny_work", "huge_work",
         "pool_wide", "many_pool_wide", "wind0", "wind_huge", "cap_idle", "cap_idle_1w", "cap_binds",
         "identical_pools", "mpf1", "curve2", "quota0", "quota_narrow", "running_loss", "running_np_past",
         "equal_weights", "weights_span", "carbon_const", "neg_prices", "pool_gpus_vary")
#: edges that exclude each other (one value of the same field): the first listed wins
_EDGE_CLASH = (("T1", "T2"), ("J0", "J1"), ("all_must", "all_np"), ("dl_next", "dl_unreachable"),
               ("tiny_work", "huge_work"), ("wind0", "wind_huge"), ("cap_idle", "cap_idle_1w", "cap_binds"),
               ("equal_weights", "weights_span"))


def _edge_set(edges: Any) -> frozenset[str]:
    e = frozenset(edges)
    bad = sorted(e - set(EDGES))
    if bad:
        raise ValueError(f"edges: got {bad}; allowed: {', '.join(EDGES)}")
    for group in _EDGE_CLASH:  # one value per field
        on = [x for x in group if x in e]
        e = e - set(on[1:])
    return e


def extreme(seed: int, edges: Any = ()) -> PlanProblem:
    """One small instance (1-3 pools of 8-64 GPUs, at most 12 slots and 10 jobs) with ``edges`` (names of
    :data:`EDGES`; of two that set the same field the first in ``_EDGE_CLASH`` wins), deterministic in
    ``(seed, edges)``. Valid input for ``kernels.plan`` (every array well formed, every job fits some pool in
    some slot); feasible unless an edge makes it not (``cap_idle`` under must-run or running work, a quota of 0
    under a running non-preemptible job, ...): the test judges "infeasible" by its reason.
    ``describe_extreme(problem)`` gives the edges it really has."""
    e = _edge_set(edges)
    rng = np.random.default_rng(seed)
    T = 1 if "T1" in e else 2 if "T2" in e else int(rng.integers(3, 13))
    J = 0 if "J0" in e else 1 if "J1" in e else int(rng.integers(2, 11))
    slot_s = 60.0 * float(rng.choice([5, 15, 60]))
    P = int(rng.integers(1, 4))
    kinds = ["h100"] * P if "identical_pools" in e else [str(x) for x in rng.choice(list(POOL_KINDS), P)]
    n = np.array([int(rng.choice([8, 16, 64]))] * P if "identical_pools" in e else rng.choice([8, 16, 64], P))
    tdp = np.array([POOL_KINDS[x][0] for x in kinds])
    idle = np.array([POOL_KINDS[x][1] for x in kinds])
    host = np.array([POOL_KINDS[x][2] for x in kinds])
    minf = np.array([POOL_KINDS[x][3] for x in kinds])
    if "curve2" in e:
        curve_f, curve_s = np.tile([0.5, 1.0], (P, 1)), np.tile([0.7, 1.0], (P, 1))
        minf = np.full(P, 0.5)
    else:
        K = max(len(POOL_KINDS[x][4]) for x in kinds)
        curve = [list(POOL_KINDS[x][4]) + [POOL_KINDS[x][4][-1]] * (K - len(POOL_KINDS[x][4])) for x in kinds]
        curve_f = np.array([[a for a, _ in c] for c in curve])
        curve_s = np.array([[b for _, b in c] for c in curve])
    if "mpf1" in e:
        minf[0] = 1.0
    H = np.repeat(n[:, None], T, axis=1).astype(np.int64)
    if "pool_gpus_vary" in e:  # failures and repairs: 0 to all of each pool healthy from slot to slot
        H = np.floor(H * rng.choice([0.0, 0.5, 0.75, 1.0], size=(P, T))).astype(np.int64)
        H[:, 0] = n  # every job fits its pool in some slot
    # --- jobs
    elig = rng.random((J, P)) < 0.6
    elig[np.arange(J), rng.integers(0, P, J)] = True
    gmax = (elig * n[None, :]).max(axis=1) if J else np.zeros(0, np.int64)
    gpus = np.minimum(rng.choice([1, 2, 4, 8, 16], J), gmax).astype(np.int64)
    if J and ("pool_wide" in e or "many_pool_wide" in e):  # as wide as its widest eligible pool
        wide = np.ones(J, bool) if "many_pool_wide" in e else np.arange(J) == 0
        gpus = np.where(wide, gmax, gpus)
    release = rng.integers(0, T, J)
    slots = rng.uniform(0.3, 3.0, J)
    if "tiny_work" in e:
        slots = rng.uniform(1e-6, 1e-2, J)
    elif "huge_work" in e:
        slots = rng.uniform(5.0, 50.0, J) * T
    rem = slots * slot_s
    must = np.ones(J, bool) if "all_must" in e else rng.random(J) < 0.15
    preempt = np.zeros(J, bool) if "all_np" in e else rng.random(J) >= 0.3
    running = (rng.random(J) < 0.3) & ~must
    if J and ("running_loss" in e or "running_np_past" in e):
        running[np.argmin(must)] |= not must.all()
    if "running_np_past" in e:
        preempt = np.where(running, False, preempt)
        rem = np.where(running, (T + rng.uniform(0.5, 3.0, J)) * slot_s, rem)
    rpool = np.where(running, np.argmax(elig * (n[None, :] >= gpus[:, None]) * rng.random((J, P)), axis=1), -1)
    release = np.where(running, 0, release)
    loss = np.where(running, rng.uniform(0.0, 1800.0, J), 0.0)
    if "running_loss" in e:
        loss = np.where(running, rng.uniform(5.0, 100.0, J) * slot_s, 0.0)
    dmin = np.ceil(rem / slot_s - 1e-9).astype(np.int64)  # slots at full speed
    deadline = np.where(rng.random(J) < 0.4, release + dmin + rng.integers(0, 4, J), NO_DEADLINE)
    if "dl_next" in e:
        deadline = release + 1
    elif "dl_unreachable" in e:
        deadline = release + np.maximum(dmin - rng.integers(0, 2, J), 0)
    deadline = np.where(must, NO_DEADLINE, deadline).astype(np.int64)
    prio = rng.choice(4, size=J)
    weight = 0.05 * 2.0**prio
    if "equal_weights" in e:
        weight = np.full(J, 0.1)
    elif "weights_span" in e:
        weight = 10.0 ** rng.uniform(-6, 6, J)
        weight[: min(J, 2)] = (1e-6, 1e6)[: min(J, 2)]
    N = int(rng.integers(1, 4))
    tenant = rng.integers(0, N, J).astype(np.int64)
    quota = np.where(rng.random(N) < 0.4, np.floor(rng.uniform(0.3, 1.0, N) * n.sum()), np.inf)
    if "quota0" in e:
        quota[0] = 0.0
    if "quota_narrow" in e and J:
        j = int(np.argmax(gpus))
        quota[tenant[j]] = float(max(gpus[j] - 1, 0))
    # --- energy
    idle_floor = _PUE * (H * (idle + host)[:, None]).sum(axis=0)
    full = _PUE * (H * (tdp + host)[:, None]).sum(axis=0)
    carbon = np.full(T, 250.0) if "carbon_const" in e else rng.uniform(40.0, 600.0, T)
    price = rng.uniform(-80.0, -1.0, T) if "neg_prices" in e else rng.uniform(-20.0, 300.0, T)
    ecw = float(rng.uniform(0.5, 50.0)) if "neg_prices" in e else float(rng.choice([0.0, 1.0]))
    wind = rng.uniform(0.0, 1.2, T) * full
    if "wind0" in e or "cap_idle" in e or "cap_idle_1w" in e:
        wind = np.zeros(T)
    elif "wind_huge" in e:
        wind = full * rng.uniform(10.0, 1000.0, T)
    grid = rng.uniform(0.6, 1.2, T) * full
    if "cap_idle" in e:
        grid = idle_floor.copy()
    elif "cap_idle_1w" in e:
        grid = idle_floor + 1.0
    elif "cap_binds" in e:  # the floor plus a fifth to a half of the headroom: no slot holds the site at full load
        grid = np.maximum(idle_floor + rng.uniform(0.2, 0.5, T) * (full - idle_floor) - wind, 0.0)
    site_max = np.maximum(full * rng.uniform(0.9, 1.5), idle_floor)
    pb = PlanProblem(
        slot_s=slot_s, pue=_PUE, wind_w=wind, carbon_g_per_kwh=carbon, grid_cap_w=grid, site_max_w=site_max,
        pool_gpus=H, tdp_w=tdp, idle_w=idle, host_w_per_gpu=host, min_power_fraction=minf, curve_f=curve_f,
        curve_s=curve_s, gpus=gpus, remaining_s=rem, release=release.astype(np.int64), deadline=deadline,
        weight=weight, eligible=elig, must_run=must, preemptible=preempt | must, running_pool=rpool.astype(np.int64),
        preempt_loss_s=loss, tenant=tenant, tenant_quota_gpus=quota, price_eur_per_mwh=price,
        energy_cost_weight_g_per_eur=ecw,
    )
    object.__setattr__(pb, "_source", f"extreme seed {seed}: {', '.join(sorted(e)) or 'no edge'}")
    object.__setattr__(pb, "_edges", sorted(e))
    return pb


def extremes(n: int = 120, seed: int = 0, *, per: tuple[int, int] = (2, 5)) -> list[tuple[int, tuple[str, ...]]]:
    """``n`` (seed, edges) pairs: every edge alone once (the first ``len(EDGES)``), then random combinations
    of ``per`` edges (low, high), each edge as often as the others up to one (a shuffled deck dealt out)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, tuple[str, ...]]] = [(seed * 100_003 + i, (x,)) for i, x in enumerate(EDGES[:n])]
    deck: list[str] = []
    for i in range(len(out), n):  # combinations
        k = int(rng.integers(per[0], per[1] + 1))
        pick: list[str] = []
        while len(pick) < k:  # deal distinct edges
            if not deck:
                deck = [str(x) for x in rng.permutation(EDGES)]
            x = deck.pop()
            if x not in pick:
                pick.append(x)
        out.append((seed * 100_003 + i, tuple(sorted(_edge_set(pick)))))
    return out


def describe_extreme(pb: PlanProblem) -> str:
    """The edges an :func:`extreme` instance was built with (after clashes), for failure messages."""
    return str(getattr(pb, "_source", "unknown"))

# ---------------------------------------------------------------------------------------------------------
# The published real-shaped instances (../shared/data/instances)
# ---------------------------------------------------------------------------------------------------------

SHARED_INSTANCES = ("nl2022-winter-600", "nl2023-summer-1500")


def shared_instance_dir(name: str) -> Path:
    from scheduler.paths import shared_data_dir

    d = shared_data_dir() / "instances" / name
    if not d.is_dir():
        raise ValueError(f"instance: got {name!r}; allowed: a folder of {shared_data_dir() / 'instances'} "
                         f"(published: {', '.join(SHARED_INSTANCES)})")
    return d


def load_shared(name: str) -> PlanProblem:
    """A published instance built into a problem as ``windward plan --forecast perfect`` builds it (its
    meta.json gives the start, horizon and slot length)."""
    import json

    from scheduler import signals, traces
    from scheduler.cli.options import parse_utc
    from scheduler.planner import build_problem
    from scheduler.policies.base import JobState, Snapshot

    d = shared_instance_dir(name)
    meta = json.loads((d / "meta.json").read_text())
    site = load_site(str(d / "site.yaml"))
    T = int(meta["n_slots"])
    t0 = parse_utc(meta["start_utc"], "start_utc")
    actual = signals.load_energy(str(d / "energy.csv"), site, t0, T * site.slot_s / 86400.0, seed=0)
    fc = signals.make_forecaster("perfect", actual, seed=0).forecast(0, T)
    jobs = traces.read_jobs_csv(d / "jobs.csv")
    snap = Snapshot(now_s=0.0, slot=0, site=site, jobs=tuple(JobState(job=j, state="queued") for j in jobs),
                    healthy_gpus={p.name: p.gpus for p in site.pools}, forecast=fc)
    pb, _ = build_problem(snap, T)
    object.__setattr__(pb, "_source", f"published instance {name} ({actual.source})")
    return pb


def shared_lp_bound(name: str) -> dict[str, Any]:
    """The instance's lp_bound.json: a certified lower bound on grid carbon (g) for plans that obey every
    cap and finish every job by its deadline."""
    import json

    return dict(json.loads((shared_instance_dir(name) / "lp_bound.json").read_text()))
