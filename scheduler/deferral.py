"""The price of work left past the planning horizon, from the wind and carbon the site has already seen.

A rolling-horizon plan values work that may wait past its horizon at a *clearing price*
(:func:`scheduler.planner.clearing_value_g_per_gpu_s`). With ``WeightSettings.beyond_horizons`` k > 0, work
whose deadline lies past ``(1 + k)`` horizons (or that has none) is priced with k more horizons of capacity
behind the horizon, *at the horizon's own costs*: when the horizon is dirty from end to end (2022 autumn,
hours 27-100 at 430-520 g/kWh), so is the span it imagines behind it, and long work without a near deadline
runs through the dirt while the wind of hours 105-130 finds it done (benchmarks/README.md, issue 13).

:class:`TrailingSignals` prices that span from the past instead: the k horizons behind the forecast are a
sample of the last ``history_days`` of wind and carbon the policy has observed (each tick's slot 0 of its
forecast, the nowcast; optionally seeded with the site's signals from before the run), spread evenly over the
history. The clearing price is then that of the forecast horizon *and* the sampled span, cheapest capacity
first, with the same demand (backlog doable by the span's end plus expected arrivals), share cap and value
floor as the horizon-only price. Nothing of the future past the forecast is read: the history is a ring of
observed slots, and a test changes the future and checks that the price does not move.

Per job (the planner passes each job's remaining slots), the price is also at least the cost of the dearest
slot the job would use if it took the cheapest of ``max(span, (1 + slack_margin) x its slots)`` slots
distributed like the span's: a short job waits for the wind, a job longer than any span (the ITP traces' 150-hour
jobs) skips only the dearest ``slack_margin / (1 + slack_margin)`` of its slots, since each hour it skips is
an hour later that it finishes. ``WeightSettings.beyond_age_h`` (the study's ``windward:defer=7+beyond_age_h=72``)
ages such work more slowly than the rest, so that the price, not the waiting time, decides when it runs.
``WeightSettings.max_defer_h`` (``--max-defer-h``) bounds how long that price holds a job: held back that many
hours (since submission, less its work done), it is priced like work due inside the span. It bounds the price,
not the wait: from then on the horizon places the job where the forecast is cheapest (benchmarks/README.md,
issue 13, round 9: not a default).

Deadlines are kept by the planner's own terms, unchanged: work that must start inside the horizon to meet
its deadline is urgent (full weight), and work due before the span ends keeps the horizon-only price; only
work with slack past the whole span (or without a deadline) is priced from the history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from kernels.problem import PlanProblem
from scheduler.energy import EnergySeries
from scheduler.errors import InputError

if TYPE_CHECKING:
    from scheduler.models import Site

#: the price is at least this share of the span's lowest slot grid cost (work is never worth nothing, so it
#: still takes free wind)
MIN_PRICE_SHARE = 0.01
#: a job without a deadline in the span may stretch its remaining work by this factor (1 + margin) waiting for
#: cheaper slots: it skips at most the dearest margin / (1 + margin) of them
SLACK_MARGIN = 0.25
#: fewer observed (or seeded) slots than this many hours of history: the span keeps the horizon's own costs
MIN_HISTORY_H = 24.0


def _sample(series: EnergySeries, i: int) -> tuple[float, float, float, float]:
    """Slot ``i`` of ``series`` as the history keeps it: (wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w)."""
    return (float(series.wind_w[i]), float(series.carbon_g_per_kwh[i]), float(series.grid_cap_w[i]),
            float(series.site_max_w[i]))


class TrailingSignals:
    """The last ``history_days`` of observed wind, carbon and caps, one value per slot, and the price of
    deferral past the horizon they give (:meth:`beyond_price`).

    ``observe(slot, forecast)`` records the forecast's slot 0 at absolute slot ``slot`` (a repeated slot
    overwrites: a tick re-run in the same slot keeps one sample); ``seed(prior)`` records a series that ends
    where slot 0 of the run begins (the site's signals before the run). Slots older than the window are
    dropped as new ones arrive.
    """

    def __init__(self, history_days: float = 7.0, min_history_h: float = MIN_HISTORY_H,
                 slack_margin: float = SLACK_MARGIN) -> None:
        if not history_days > 0:
            raise InputError(f"TrailingSignals.history_days: got {history_days!r}; must be > 0")
        if not min_history_h >= 0:
            raise InputError(f"TrailingSignals.min_history_h: got {min_history_h!r}; must be >= 0")
        self.history_days = float(history_days)
        if not slack_margin >= 0:
            raise InputError(f"TrailingSignals.slack_margin: got {slack_margin!r}; must be >= 0")
        self.min_history_h = float(min_history_h)
        self.slack_margin = float(slack_margin)
        self._slot_s: float | None = None
        # absolute slot -> (wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w)
        self._seen: dict[int, tuple[float, float, float, float]] = {}
        self._last_slot: int | None = None

    def _check_slot(self, slot_s: float) -> None:
        if self._slot_s is None:
            self._slot_s = float(slot_s)
        elif abs(self._slot_s - slot_s) > 1e-9:
            raise InputError(f"TrailingSignals: slot_s {slot_s!r} differs from the history's {self._slot_s!r}")

    def window_slots(self, slot_s: float) -> int:
        """How many slots of ``slot_s`` seconds the history keeps (``history_days`` of them, at least one)."""
        return max(1, int(round(self.history_days * 86400.0 / slot_s)))

    def _keep(self) -> int:
        assert self._slot_s is not None
        return self.window_slots(self._slot_s)

    def _trim(self) -> None:
        if self._last_slot is None:
            return
        lo = self._last_slot - self._keep() + 1
        for s in [s for s in self._seen if s < lo]:
            del self._seen[s]

    def observe(self, slot: int, forecast: EnergySeries) -> None:
        """Record slot 0 of ``forecast`` (what the policy sees of the current slot) as absolute ``slot``."""
        if forecast.n_slots == 0:
            return
        self._check_slot(forecast.slot_s)
        self._seen[int(slot)] = _sample(forecast, 0)
        self._note_last(int(slot))
        self._trim()

    def seed(self, prior: EnergySeries, end_slot: int = 0) -> None:
        """Record ``prior`` as the slots just before absolute slot ``end_slot`` (by default the run's slot 0:
        its last slot is slot -1). A slot already held (observed, or restored: :meth:`restore`) is kept."""
        self._check_slot(prior.slot_s)
        n = prior.n_slots
        for i in range(n):
            self._seen.setdefault(end_slot - n + i, _sample(prior, i))
        if n:
            self._note_last(end_slot - 1)
        self._trim()

    def restore(self, slot_s: float, samples: Iterable[Sequence[float]]) -> int:
        """Record samples observed before, ``(slot, wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w)`` each
        (a restarted server's history, kept in its store: :meth:`newest`); returns how many are held."""
        self._check_slot(slot_s)
        n = 0
        for slot, wind, carbon, cap, site_max in samples:
            self._seen[int(slot)] = (float(wind), float(carbon), float(cap), float(site_max))
            self._note_last(int(slot))
            n += 1
        self._trim()
        return n

    def newest(self) -> tuple[int, tuple[float, float, float, float]] | None:
        """The newest slot held and its sample ``(wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w)``: after a
        tick, the slot it observed (what a server writes to its store each tick); None while empty."""
        if self._last_slot is None or self._last_slot not in self._seen:
            return None
        return self._last_slot, self._seen[self._last_slot]

    def _note_last(self, slot: int) -> None:
        self._last_slot = slot if self._last_slot is None else max(self._last_slot, slot)

    @property
    def n_slots(self) -> int:
        return len(self._seen)

    def history(self) -> np.ndarray:
        """(4, H) float array, oldest slot first: wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w."""
        if not self._seen:
            return np.zeros((4, 0))
        return np.asarray([self._seen[s] for s in sorted(self._seen)], dtype=np.float64).T

    def enough(self) -> bool:
        """Whether the history covers at least ``min_history_h`` hours."""
        return self._slot_s is not None and self.n_slots * self._slot_s >= self.min_history_h * 3600.0 - 1e-6

    def span_probe(self, probe: PlanProblem, reserve_gpus: np.ndarray, extra_slots: int
                   ) -> tuple[PlanProblem, np.ndarray]:
        """The horizon's job-less ``probe`` (T slots) followed by ``extra_slots`` slots sampled evenly from
        the history, and the reserve ``(P, T + extra_slots)`` (the horizon's mean per pool in the sampled
        slots). Each sampled slot has the horizon's first-slot GPUs."""
        hist = self.history()
        H = hist.shape[1]
        if H == 0 or extra_slots <= 0:
            return probe, reserve_gpus
        idx = np.floor((np.arange(extra_slots) + 0.5) * H / extra_slots).astype(np.int64)
        take = hist[:, np.minimum(idx, H - 1)]
        T = probe.n_slots

        def ext(a: np.ndarray, k: int) -> np.ndarray:
            return np.concatenate([np.broadcast_to(np.asarray(a, dtype=np.float64), (T,)), take[k]])

        pool_gpus = np.asarray(probe.pool_gpus).reshape(probe.n_pools, -1)
        pool_gpus = np.concatenate([pool_gpus, np.repeat(pool_gpus[:, :1], extra_slots, axis=1)], axis=1)
        R = np.asarray(reserve_gpus, dtype=np.float64).reshape(probe.n_pools, -1)
        R = np.concatenate([R, np.repeat(R.mean(axis=1, keepdims=True), extra_slots, axis=1)], axis=1)
        return replace(probe, wind_w=ext(probe.wind_w, 0), carbon_g_per_kwh=ext(probe.carbon_g_per_kwh, 1),
                       grid_cap_w=ext(probe.grid_cap_w, 2), site_max_w=ext(probe.site_max_w, 3),
                       pool_gpus=pool_gpus, price_eur_per_mwh=None), R

    def beyond_price(self, probe: PlanProblem, demand_gpu_s: float, reserve_gpus: np.ndarray,
                     floor_quantile: float, beyond_horizons: float, max_share: float,
                     needed_slots: np.ndarray | None = None) -> tuple[float | np.ndarray, dict[str, float]] | None:
        """The price (g per GPU-second of work) of work that may wait past the span of the horizon of ``probe``
        and ``beyond_horizons`` more horizons sampled from the history; None while the history is shorter than
        ``min_history_h`` (the caller keeps its own price).

        The site's price is the clearing price of ``demand_gpu_s`` over the span, floored at the
        ``floor_quantile`` of the span's capacity by cost (wind included). With ``needed_slots : (J,)`` (each
        job's remaining work in slots at full speed) the price is per job, at least the cost of the dearest
        slot it would use if it took the cheapest ``needed`` of ``max(span, (1 + slack_margin) * needed)``
        slots distributed like the span's: a job that needs a few slots of the span waits for its cheapest,
        a 150-hour job (longer than any span) may skip only the dearest ``slack_margin / (1 + slack_margin)``
        of its slots, or it would finish that much later again."""
        from scheduler.planner import clearing_value_g_per_gpu_s, slot_work_capacity

        if not self.enough():
            return None
        extra = int(math.ceil(beyond_horizons * probe.n_slots))
        span, R = self.span_probe(probe, reserve_gpus, extra)
        price, info = clearing_value_g_per_gpu_s(span, demand_gpu_s, R, 0.0, max_share=max_share)
        # the floor is the ``floor_quantile`` of the span's capacity by cost, wind included (the clearing
        # price of that share of it), not of its slots' grid costs: a past with wind enough to hold that
        # share floors the price at no cost (work then waits for the wind), a calm past at its grid costs
        floor, _ = clearing_value_g_per_gpu_s(span, floor_quantile * info["capacity_gpu_s"], R, 0.0)
        price = max(price, floor, MIN_PRICE_SHARE * info["floor_g_per_gpu_s"])
        info = {**info, "history_slots": float(self.n_slots), "history_floor_g_per_gpu_s": floor}
        if needed_slots is None:
            return price, info
        cost, green, avail, _ = slot_work_capacity(span, R)
        # a GPU's grid cost in a slot whose capacity the wind covers in part, the slots cheapest first
        by_cost = np.sort(cost * (1.0 - green / np.maximum(avail, 1e-9)))
        S = by_cost.size
        need = np.asarray(needed_slots, dtype=np.float64)
        # a job may take (1 + slack_margin) x its slots, and at least the span: it runs in that share of them
        share = need / np.maximum(float(S), (1.0 + self.slack_margin) * need)
        k = np.clip(np.ceil(share * S).astype(np.int64) - 1, 0, S - 1)
        return np.maximum(by_cost[k], price), info


#: ``--defer-history-days``: 0 (off) or at least a day (the price needs ``MIN_HISTORY_H`` of history, and the
#: ring keeps only the window) and at most a year
MAX_HISTORY_DAYS = 365.0
#: ``--beyond-age-h`` and ``--max-defer-h``: at most a year
MAX_BEYOND_AGE_H = 8760.0


def check_deferral_options(history_days: float, beyond_age_h: float | None, max_defer_h: float | None = None,
                           names: tuple[str, str, str] = ("--defer-history-days", "--beyond-age-h", "--max-defer-h")
                           ) -> tuple[float, float | None, float | None]:
    """``(history_days, beyond_age_h, max_defer_h)`` validated for an operator (the command line,
    ``ServiceConfig``); a bad value raises InputError naming its option (``names``) and the allowed range.

    ``history_days``: 0 turns deferral pricing off (the default policy); otherwise
    ``[MIN_HISTORY_H / 24, MAX_HISTORY_DAYS]`` (a shorter window never holds the history the price needs).
    ``beyond_age_h`` (``WeightSettings.beyond_age_h``) and ``max_defer_h`` (``WeightSettings.max_defer_h``, the
    bound on how long deferred work is held back): None (``WeightSettings``' default) or ``(0, MAX_BEYOND_AGE_H]``
    hours."""
    lo = MIN_HISTORY_H / 24.0
    d = float(history_days)
    if not (math.isfinite(d) and (d == 0.0 or lo <= d <= MAX_HISTORY_DAYS)):
        raise InputError(f"{names[0]}: got {history_days!r}; allowed: 0 (off) or {lo:g} to {MAX_HISTORY_DAYS:g} days")
    hours: list[float | None] = []
    for name, v in ((names[1], beyond_age_h), (names[2], max_defer_h)):
        h = None if v is None else float(v)
        if h is not None and not (math.isfinite(h) and 0.0 < h <= MAX_BEYOND_AGE_H):
            raise InputError(f"{name}: got {v!r}; allowed: more than 0 and at most {MAX_BEYOND_AGE_H:g} hours")
        hours.append(h)
    return d, hours[0], hours[1]


def policy_deferral(policy: object) -> TrailingSignals | None:
    """The :class:`TrailingSignals` of a windward policy (also inside a ``FallbackPolicy``), or None."""
    deferral = getattr(policy, "deferral", None)
    if deferral is None:
        deferral = getattr(getattr(policy, "primary", None), "deferral", None)
    return deferral if isinstance(deferral, TrailingSignals) else None


def seed_deferral(policy: object, energy: str | None, site: Site, start: datetime, *, seed: int = 0,
                  strict: bool = False, end_slot: int = 0) -> int:
    """Seed a policy that prices deferral from the past with the ``history_days`` of energy signals before
    ``start`` (``energy``: ``None``/``"embedded"`` or an energy CSV, :func:`scheduler.signals.load_energy`):
    what a site that has been running has seen, instead of an empty history. ``start`` is the time of the
    policy's absolute slot ``end_slot`` (a run's slot 0; a server's current slot). Returns the slots seeded (0
    for a policy without deferral). A CSV that does not reach back that far raises InputError (the caller
    decides whether the run goes on with an empty history)."""
    deferral = policy_deferral(policy)
    if deferral is None:
        return 0
    from scheduler import signals

    days = deferral.history_days
    prior = signals.load_energy(energy, site, start - timedelta(days=days), days, seed=seed, strict=strict)
    deferral.seed(prior, end_slot)
    return prior.n_slots
