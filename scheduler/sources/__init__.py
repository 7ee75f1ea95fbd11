"""Live energy-signal sources behind one interface (``fetch(start, end) -> EnergyFrame``), a local cache with
fallback to the last good forecast, and a :class:`Refresher` that merges them into the site's EnergySeries.

The CSV and the embedded model stay the defaults (scheduler.signals); these only overlay live values.
"""

from __future__ import annotations

from scheduler.sources.base import COLUMNS, EnergyFrame, HttpGet, HttpResponse, Points, SignalSource, SourceError
from scheduler.sources.cache import CachedSource, FetchResult
from scheduler.sources.congestion import CongestionFeedSource
from scheduler.sources.electricitymaps import ElectricityMapsSource
from scheduler.sources.entsoe import EntsoeSource
from scheduler.sources.ned import NedSource
from scheduler.sources.refresher import Refresher, extend, merge

__all__ = [
    "COLUMNS", "CachedSource", "CongestionFeedSource", "ElectricityMapsSource", "EnergyFrame", "EntsoeSource",
    "FetchResult", "HttpGet", "HttpResponse", "NedSource", "Points", "Refresher", "SignalSource", "SourceError",
    "extend", "merge",
]  # fmt: skip
