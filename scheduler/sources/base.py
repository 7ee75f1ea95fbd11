"""The one interface every live energy-signal source implements, and the value it returns.

A source (ENTSO-E, NED, Electricity Maps, a grid operator's congestion feed) answers
``fetch(start, end) -> EnergyFrame``: the data points it has for ``[start, end)``, per column, each point an
interval ``[start_s, start_s + step_s)`` (Unix seconds, UTC) with one value. :meth:`EnergyFrame.on_slots` puts
them onto the planner's slot grid (the shape of :class:`scheduler.energy.EnergySeries`): a slot takes the mean
of the data intervals that overlap it, weighted by the overlap (hourly data is then held constant across the
slots of the hour, as for the energy CSV), except ``grid_cap_mw``, which takes the minimum (a cap holds for the
whole slot). A slot no point touches is NaN: "this source says nothing here".

Columns (units in the names; a source fills only the ones it knows):

``price_eur_per_mwh``      day-ahead price of the bidding zone
``load_mw``                national load forecast
``offshore_wind_mw``       national offshore wind (forecast or actual)
``wind_capacity_factor``   offshore wind as a share of installed capacity, 0..1 (turned into the site's wind by
                           the wind contract: ``capacity_factor x wind.contract_mw``)
``carbon_g_per_kwh``       grid carbon intensity
``grid_cap_mw``            grid import cap announced by the grid operator (congestion)

HTTP goes through an injected :class:`HttpGet` (tests pass recorded responses; nothing here opens a socket
unless :func:`httpx_get` is used). API keys come from the environment (:func:`env_key`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from scheduler.errors import InputError, WindwardError

#: Every column a source may fill, and its unit (in the name).
COLUMNS: tuple[str, ...] = (
    "price_eur_per_mwh",
    "load_mw",
    "offshore_wind_mw",
    "wind_capacity_factor",
    "carbon_g_per_kwh",
    "grid_cap_mw",
)

#: Columns whose slot value is the minimum of the overlapping points (a cap), not the mean.
MIN_COLUMNS: frozenset[str] = frozenset({"grid_cap_mw"})


class SourceError(WindwardError):
    """A live source could not deliver data (HTTP error, an error document, a body of the wrong shape).

    The message names the source, what was asked and what came back. The caller falls back to the last good
    forecast (:class:`scheduler.sources.cache.CachedSource`)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    text: str


class HttpGet(Protocol):
    """``GET url?params`` with ``headers``; returns the status and the body. Raises :class:`SourceError` when
    no answer came (connection refused, timeout)."""

    def __call__(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpResponse: ...


def httpx_get(timeout_s: float = 30.0) -> HttpGet:
    """The real fetcher (httpx). Only servers use it; tests inject recorded responses."""
    import httpx

    def get(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpResponse:
        try:
            r = httpx.get(url, params=dict(params), headers=dict(headers), timeout=timeout_s)
        except httpx.HTTPError as e:
            raise SourceError(f"GET {url}: no answer: {e}") from e
        return HttpResponse(r.status_code, r.text)

    return get


def env_key(var: str, environ: Mapping[str, str] | None = None) -> str:
    """The API key in environment variable ``var``; an InputError naming the variable when unset or empty."""
    value = (os.environ if environ is None else environ).get(var, "").strip()
    if not value:
        raise InputError(f"environment variable {var} is not set; it must hold the API key for this source")
    return value


def check_status(source: str, what: str, resp: HttpResponse) -> None:
    if resp.status != 200:
        body = " ".join(resp.text.split())[:300]
        raise SourceError(f"{source}: {what}: HTTP {resp.status}: {body!r}")


def as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_time(value: str, source: str, what: str) -> int:
    """ISO 8601 (``Z`` or an offset; none means UTC) to Unix seconds; a SourceError naming the value."""
    s = value.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError as e:
        raise SourceError(f"{source}: {what}: {value!r} is not an ISO 8601 time") from e
    return int(as_utc(t).timestamp())


@dataclass(frozen=True, slots=True)
class Points:
    """Data intervals of one column: ``[start_s[i], start_s[i] + step_s[i])`` holds ``value[i]``."""

    start_s: NDArray[np.int64]
    step_s: NDArray[np.int64]
    value: NDArray[np.float64]

    @staticmethod
    def of(rows: Iterable[tuple[int, int, float]]) -> Points:
        rs = sorted(rows)
        return Points(
            np.array([r[0] for r in rs], dtype=np.int64),
            np.array([r[1] for r in rs], dtype=np.int64),
            np.array([r[2] for r in rs], dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.start_s.shape[0])

    def rows(self) -> list[tuple[int, int, float]]:
        return [(int(a), int(b), float(c)) for a, b, c in zip(self.start_s, self.step_s, self.value)]


def prefer_finest(rows: Iterable[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Where intervals of different lengths overlap (ENTSO-E publishes a zone at PT15M and PT60M), keep the
    finest and drop every coarser interval that overlaps a kept one."""
    kept: list[tuple[int, int, float]] = []
    for row in sorted(rows, key=lambda r: (r[1], r[0])):
        a, step, _ = row
        if not any(a < k[0] + k[1] and k[0] < a + step for k in kept if k[1] < step):
            kept.append(row)
    # equal-length duplicates: the last one published wins
    by_key: dict[tuple[int, int], tuple[int, int, float]] = {}
    for r in kept:
        by_key[(r[0], r[1])] = r
    return sorted(by_key.values())


@dataclass(frozen=True, slots=True)
class EnergyFrame:
    """What one fetch returned: per column, data intervals (see the module docstring)."""

    source: str
    columns: Mapping[str, Points]
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(COLUMNS))
        if unknown:
            raise ValueError(f"{self.source}: unknown columns {unknown}; allowed: {list(COLUMNS)}")

    @property
    def span_s(self) -> tuple[int, int] | None:
        """``(first start, last end)`` over every column, or None for an empty frame."""
        starts = [int(p.start_s.min()) for p in self.columns.values() if len(p)]
        ends = [int((p.start_s + p.step_s).max()) for p in self.columns.values() if len(p)]
        return (min(starts), max(ends)) if starts else None

    def on_slots(self, start_utc: datetime, slot_s: int, n_slots: int) -> dict[str, NDArray[np.float64]]:
        """Per column, ``n_slots`` values on the slot grid from ``start_utc``; NaN where no point overlaps."""
        t0 = int(as_utc(start_utc).timestamp())
        edges = t0 + slot_s * np.arange(n_slots + 1, dtype=np.int64)
        out: dict[str, NDArray[np.float64]] = {}
        for name, pts in self.columns.items():
            acc = np.zeros(n_slots)
            wsum = np.zeros(n_slots)
            low = np.full(n_slots, math.inf)
            for a, step, v in pts.rows():
                if not math.isfinite(v):
                    continue
                i0 = max(int(np.searchsorted(edges, a, side="right")) - 1, 0)
                i1 = min(int(np.searchsorted(edges, a + step, side="left")), n_slots)
                for i in range(i0, i1):
                    ov = min(edges[i + 1], a + step) - max(edges[i], a)
                    if ov > 0:
                        acc[i] += v * ov
                        wsum[i] += ov
                        low[i] = min(low[i], v)
            with np.errstate(invalid="ignore", divide="ignore"):
                vals = low if name in MIN_COLUMNS else acc / wsum
            out[name] = np.where(wsum > 0, vals, np.nan)
        return out


class SignalSource(Protocol):
    """One live source. ``name`` is low-cardinality and stable (a metric label and the cache file name)."""

    @property
    def name(self) -> str: ...

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        """Data for ``[start, end)`` (UTC). Raises :class:`SourceError` when the source cannot deliver."""
        ...


#: A clock: Unix seconds now (the service's wall clock, or a test's hand-moved one).
Clock = Callable[[], float]
