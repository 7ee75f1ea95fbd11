"""Periodic refresh: live sources merged into the site's :class:`~scheduler.energy.EnergySeries`.

The CSV or the embedded model stays the base (and the default: without sources nothing changes). Every
``refresh_s`` the :class:`Refresher` asks each :class:`~scheduler.sources.cache.CachedSource` for the window
``[now - lookback_s, now + horizon_s)`` (slot-aligned) and writes what came back over the series it holds:

* ``wind_w``            = ``wind_capacity_factor`` x ``site.wind.contract_mw`` (the wind contract, as for the
                          CSV's national column);
* ``carbon_g_per_kwh``, ``price_eur_per_mwh`` as given;
* ``grid_cap_w``        = min(the series' cap, ``grid_cap_mw``): an announced congestion cap only lowers the cap;
* ``load_mw``, ``offshore_wind_mw`` are kept in the frames for operators and not used by the planner.

Sources are listed in priority order: for each slot and column the first source with a value wins (e.g. NED's
measured wind before ENTSO-E's forecast). Slots with no live value keep the series' value. When live data
reaches past the end of the series, the series is extended: the last slot's wind, carbon and price are held
(what :meth:`EnergySeries.window` does today) and the contract cap and substation limit are computed for the
new slots, then the live values are written. Live values stay in the series once written (a later failure
falls back to the cache, never to older numbers).

The clock is injected; the server's hook is a call to :meth:`Refresher.maybe_refresh` each tick (see
docs/contracts.md, "Live signal sources").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from scheduler.energy import EnergySeries
from scheduler.models import Site
from scheduler.signals import grid_cap_w_at
from scheduler.sources.base import Clock, EnergyFrame, SourceError
from scheduler.sources.cache import CachedSource

log = logging.getLogger(__name__)


def extend(series: EnergySeries, site: Site, n_slots: int) -> EnergySeries:
    """``series`` with ``n_slots`` slots (never fewer than it has): new slots hold the last wind, carbon and
    price and get the contract cap of their hour and the substation limit."""
    n0 = series.n_slots
    if n_slots <= n0:
        return series
    extra = n_slots - n0
    times = [series.slot_start(n0 + i) for i in range(extra)]

    def hold(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([a, np.full(extra, a[-1])])

    return EnergySeries(
        start_utc=series.start_utc, slot_s=series.slot_s,
        wind_w=hold(series.wind_w), carbon_g_per_kwh=hold(series.carbon_g_per_kwh),
        price_eur_per_mwh=hold(series.price_eur_per_mwh),
        grid_cap_w=np.concatenate([series.grid_cap_w, grid_cap_w_at(site, times)]),
        site_max_w=np.concatenate([series.site_max_w, np.full(extra, site.site_max_mw * 1e6)]),
        source=series.source, gaps=series.gaps,
    )  # fmt: skip


def merge(series: EnergySeries, site: Site, frames: Sequence[EnergyFrame], window_start: datetime,
          n_window: int, label: str = "") -> EnergySeries:  # fmt: skip
    """Write the frames' values for the ``n_window`` slots from ``window_start`` over ``series`` (module
    docstring). ``window_start`` must lie on the series' slot grid; slots before the series' start are dropped."""
    slot_s = series.slot_s
    off_s = (window_start - series.start_utc).total_seconds()
    if off_s % slot_s:
        raise ValueError(f"window start {window_start.isoformat()} is not on the series' {slot_s} s slot grid")
    i0 = int(off_s // slot_s)
    series = extend(series, site, i0 + n_window)
    wind, carbon = series.wind_w.copy(), series.carbon_g_per_kwh.copy()
    price, cap = series.price_eur_per_mwh.copy(), series.grid_cap_w.copy()
    taken: dict[str, NDArray[np.bool_]] = {}
    lo = max(0, -i0)  # window slots before the series' start are dropped
    idx = np.arange(i0 + lo, i0 + n_window)
    for frame in frames:
        vals = frame.on_slots(window_start, slot_s, n_window)
        for col, v in vals.items():
            v = v[lo:]
            have = np.isfinite(v) & ~taken.get(col, np.zeros(v.shape, dtype=bool))
            if not have.any():
                continue
            taken[col] = taken.get(col, np.zeros(v.shape, dtype=bool)) | have
            at = idx[have]
            if col == "wind_capacity_factor":
                wind[at] = np.clip(v[have], 0.0, 1.0) * site.wind.contract_mw * 1e6
            elif col == "carbon_g_per_kwh":
                carbon[at] = v[have]
            elif col == "price_eur_per_mwh":
                price[at] = v[have]
            elif col == "grid_cap_mw":
                cap[at] = np.minimum(cap[at], v[have] * 1e6)
    base_src = series.source.split(" + live: ")[0]
    return EnergySeries(
        start_utc=series.start_utc, slot_s=slot_s, wind_w=wind, carbon_g_per_kwh=carbon,
        price_eur_per_mwh=price, grid_cap_w=cap, site_max_w=series.site_max_w,
        source=base_src + (f" + live: {label}" if label else ""), gaps=series.gaps,
    )  # fmt: skip


class Refresher:
    """Refresh live signals every ``refresh_s`` seconds of the injected clock (Unix seconds)."""

    def __init__(
        self,
        site: Site,
        base: EnergySeries,
        sources: Sequence[CachedSource],
        clock: Clock,
        *,
        refresh_s: float = 900.0,
        lookback_s: float = 86400.0,
        horizon_s: float = 2 * 86400.0,
    ) -> None:
        if not refresh_s > 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        if lookback_s < 0 or not horizon_s > 0:
            raise ValueError(f"lookback_s must be >= 0 and horizon_s > 0, got {lookback_s} and {horizon_s}")
        self.site, self.sources, self.clock = site, list(sources), clock
        self.refresh_s, self.lookback_s, self.horizon_s = float(refresh_s), float(lookback_s), float(horizon_s)
        self.series = base
        self.last_refresh_unix_s: float | None = None
        self.refreshes = 0
        self._frames: list[EnergyFrame] = []

    def due(self) -> bool:
        return self.last_refresh_unix_s is None or self.clock() - self.last_refresh_unix_s >= self.refresh_s

    def maybe_refresh(self) -> EnergySeries | None:
        """The new series when a refresh was due (and ran), else None."""
        return self.refresh() if self.due() else None

    def announced_caps(self) -> list[tuple[datetime, datetime, float, str]]:
        """``(start, end, cap_mw, source)`` of every grid cap the sources announced at the last refresh (the
        congestion feed's events), for the service to record as congestion events (API, metrics, alerts)."""
        out = []
        for f in self._frames:
            pts = f.columns.get("grid_cap_mw")
            for a, step, v in pts.rows() if pts is not None else ():
                out.append((datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(a + step, UTC), v, f.source))
        return sorted(out)

    def staleness_s(self) -> dict[str, float]:
        """Per source, seconds since its last good fetch (``inf`` when it never had one): the metric's value."""
        return {s.name: (math.inf if (v := s.staleness_s()) is None else v) for s in self.sources}

    def refresh(self) -> EnergySeries:
        now = self.clock()
        slot_s = self.series.slot_s
        t0 = self.series.start_utc.timestamp()
        first = math.floor((now - self.lookback_s - t0) / slot_s)
        last = math.ceil((now + self.horizon_s - t0) / slot_s)
        w_start = self.series.start_utc + timedelta(seconds=first * slot_s)
        w_end = self.series.start_utc + timedelta(seconds=last * slot_s)
        frames: list[EnergyFrame] = []
        parts: list[str] = []
        for src in self.sources:
            try:
                res = src.fetch(w_start, w_end)
            except SourceError as e:
                log.warning("%s: no data and no last good forecast: %s", src.name, e)
                parts.append(f"{src.name} (no data)")
                continue
            frames.append(res.frame)
            at = datetime.fromtimestamp(res.fetched_unix_s, UTC).strftime("%Y-%m-%dT%H:%MZ")
            parts.append(f"{src.name} {at}" + ("" if res.fresh else f" (stale {now - res.fetched_unix_s:.0f} s)"))
        self.series = merge(self.series, self.site, frames, w_start, last - first, ", ".join(parts))
        self._frames = frames
        self.last_refresh_unix_s = now
        self.refreshes += 1
        log.info("live signals refreshed: %s", ", ".join(parts) or "no sources")
        return self.series
