"""The energy signal value the planner, simulator and reports share (produced by scheduler.signals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class EnergySeries:
    """Per-slot energy signals for one site, from ``start_utc`` on, one value per slot.

    ``wind_w`` is the wind delivered to the site (already through the wind contract); ``grid_cap_w`` the
    grid import allowed (firm + time blocks, or the ``grid_cap_mw`` column / congestion events where
    given); ``site_max_w`` the substation limit. ``source`` says where the numbers come from, e.g.
    ``"synthetic, calibrated to NL 2021-2023 (seed 0)"`` or the CSV path; ``gaps`` lists filled gaps.
    """

    start_utc: datetime
    slot_s: int
    wind_w: NDArray[np.float64]
    carbon_g_per_kwh: NDArray[np.float64]
    price_eur_per_mwh: NDArray[np.float64]
    grid_cap_w: NDArray[np.float64]
    site_max_w: NDArray[np.float64]
    source: str
    gaps: tuple[str, ...] = field(default=())

    @property
    def n_slots(self) -> int:
        return int(self.wind_w.shape[0])

    def slot_start(self, i: int) -> datetime:
        return self.start_utc + timedelta(seconds=i * self.slot_s)

    def window(self, i0: int, n: int) -> EnergySeries:
        """Slots ``[i0, i0 + n)``; past the end the last slot's values are held (a planning horizon may
        look beyond the data)."""
        idx = np.minimum(np.arange(i0, i0 + n), self.n_slots - 1)

        def take(a: NDArray[np.float64]) -> NDArray[np.float64]:
            return a[idx]

        return EnergySeries(
            start_utc=self.slot_start(i0),
            slot_s=self.slot_s,
            wind_w=take(self.wind_w),
            carbon_g_per_kwh=take(self.carbon_g_per_kwh),
            price_eur_per_mwh=take(self.price_eur_per_mwh),
            grid_cap_w=take(self.grid_cap_w),
            site_max_w=take(self.site_max_w),
            source=self.source,
            gaps=self.gaps,
        )
