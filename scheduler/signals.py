"""Energy signals for one site: the energy CSV contract, the embedded synthetic default, and forecasts.

Everything here returns :class:`scheduler.energy.EnergySeries` (per-slot arrays, units in names).

Energy CSV (DESIGN sections 5 and 7)
------------------------------------
``timestamp_utc`` (ISO 8601, start of the interval; a time zone other than UTC is converted, none means UTC)
plus

* ``wind_mw`` -- wind delivered to the site, used as is; or ``offshore_wind_mw`` -- national offshore output,
  turned into a capacity factor by dividing by *that calendar year's* maximum in the file (offshore capacity
  grew between years) and multiplied by the site's ``wind.contract_mw``. ``wind_mw`` wins if both are given.
* ``carbon_g_per_kwh`` (required), ``price_eur_per_mwh`` (optional; 0 when absent), ``grid_cap_mw``
  (optional; a non-empty cell overrides the contract cap for that interval, an empty cell keeps the contract).
* extra columns are ignored.

Refused with an :class:`InputError` naming file, row (file line number), column, value and what is allowed:
a missing ``timestamp_utc`` / wind / carbon column, an unparsable timestamp or number, timestamps that do not
increase strictly (duplicates included) or that are off the file's time step, negative wind, carbon or
grid cap, a value past its column's bound (:data:`ENERGY_COLUMN_RANGE`), rows that span more than
:data:`ENERGY_MAX_STEPS` time steps, and a ``start``/``days`` window outside the file.

Gap rule (documented contract): a *gap* is a run of missing values in one column -- empty cells, or whole
rows missing from the regular time grid (then every column of those rows is missing).

* runs of up to :data:`MAX_INTERP_GAP_S` (6 h) with data on both sides: linear interpolation in time;
* longer runs: the value at the same time of day on the previous day (24 h earlier, itself already
  filled), or on the next day when the gap starts in the file's first day;
* a run at the start or end of the file that is not longer than 6 h: the nearest value is held.

Every filled gap is reported in ``EnergySeries.gaps`` as one line: column, first and last missing interval,
length, and the rule used. ``grid_cap_mw`` is never gap-filled (an empty cell means "the contract").

Resampling: data at step ``D`` and slots of length ``S``. When ``D`` is a multiple of ``S`` (hourly data,
15-min slots) each slot takes the value of the data interval that contains the slot's start ("held
constant across the slots of the hour"). When ``S`` is a multiple of ``D`` a slot takes the mean of the data
intervals it covers (the grid cap takes their minimum: a cap holds for the whole slot).

Caps: ``grid_cap_w`` = (firm + every time block active at that UTC hour) x 1e6 unless the CSV gives
``grid_cap_mw``; ``site_max_w`` = ``site.site_max_mw`` x 1e6. They are contract values, known exactly: the
forecasters copy them, never perturb them.

Forecasts (``make_forecaster``)
-------------------------------
``perfect``: the actuals. ``persistence``: wind held at the current slot's actual for the whole horizon;
carbon at the same time of day of the most recent day (lead k takes the actual ``k`` slots ahead minus
whole days, never later than now); price is a day-ahead market result, published the day before, and is
taken as known. ``noisy``: the actuals plus a seeded error that grows with lead time (see
:class:`NoisyForecaster` for the calibration and its sources).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.models import MW_MAX, Site, refuse_repeated_columns

log = logging.getLogger(__name__)

#: Longest gap (seconds) filled by linear interpolation; longer gaps take the previous day's values.
MAX_INTERP_GAP_S = 6 * 3600

ENERGY_MODEL_PATH = Path(__file__).parent / "data" / "energy_model.json"
EMBEDDED_LABEL = "synthetic, calibrated to NL 2021-2023"

FORECAST_KINDS: tuple[str, ...] = ("perfect", "persistence", "noisy")

_WIND_COLS = ("wind_mw", "offshore_wind_mw")
_VALUE_COLS = ("wind_mw", "offshore_wind_mw", "carbon_g_per_kwh", "price_eur_per_mwh", "grid_cap_mw")

#: What each value column allows: (lowest, highest, why the highest). Finite and far above any real value, so
#: that every product the model takes stays finite (``1e300`` g/kWh was a NaN in the optimiser's prices and
#: ``1.8e308`` MW an inf wind: exit 1). Power columns share the site file's MW bound (scheduler.models.MW_MAX).
CARBON_MAX_G_PER_KWH = 1e4
PRICE_MAX_EUR_PER_MWH = 1e6
ENERGY_COLUMN_RANGE: dict[str, tuple[float, float, str]] = {
    "wind_mw": (0.0, MW_MAX, "1 TW, the site file's MW bound"),
    "offshore_wind_mw": (0.0, MW_MAX, "1 TW, the site file's MW bound"),
    "grid_cap_mw": (0.0, MW_MAX, "1 TW, the site file's MW bound"),
    "carbon_g_per_kwh": (0.0, CARBON_MAX_G_PER_KWH, "some ten times the dirtiest fuel's intensity"),
    "price_eur_per_mwh": (-PRICE_MAX_EUR_PER_MWH, PRICE_MAX_EUR_PER_MWH, "a hundred times the EU price caps"),
}
#: The most time steps a file may span from its first row to its last (gaps included: they are filled on the
#: grid): 5,000,000 is 58 days of 1-second data, 140 years of hourly data. A row far from the others (a typo in
#: a year) made a grid of billions of steps and ran the machine out of memory.
ENERGY_MAX_STEPS = 5_000_000


# ------------------------------------------------------------------------------------------ helpers


def _as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: datetime) -> str:
    return _as_utc(t).strftime("%Y-%m-%dT%H:%MZ")


def _utc_hours(datetimes: Sequence[datetime] | NDArray[Any]) -> NDArray[np.int64]:
    """UTC hour of day of each datetime (python datetimes or numpy datetime64)."""
    arr = np.asarray(datetimes)
    if arr.dtype.kind == "M":
        secs = arr.astype("datetime64[s]").astype(np.int64)
        return (secs // 3600) % 24
    return np.array([_as_utc(t).hour for t in arr.ravel()], dtype=np.int64).reshape(arr.shape)


def grid_cap_w_at(site: Site, datetimes: Sequence[datetime] | NDArray[Any]) -> NDArray[np.float64]:
    """The contract grid import cap in watts at each datetime: firm + every time block active at that UTC hour.

    A block ``"A-B"`` covers hours ``A <= h < B``, wrapping over midnight when ``B <= A`` (``"0-24"``: all day).
    """
    hours = _utc_hours(datetimes)
    cap_mw = np.full(hours.shape, float(site.grid.firm_mw))
    for block in site.grid.time_blocks:
        a, b = block.hour_range
        active = (hours >= a) & (hours < b) if a < b else (hours >= a) | (hours < b)
        cap_mw = cap_mw + np.where(active, block.extra_mw, 0.0)
    return cap_mw * 1e6


def _slot_times(start: datetime, slot_s: int, n: int) -> NDArray[Any]:
    t0 = np.datetime64(_as_utc(start).replace(tzinfo=None), "s")
    return t0 + np.arange(n, dtype=np.int64) * np.timedelta64(slot_s, "s")


# ------------------------------------------------------------------------------------ CSV reading


@dataclass(frozen=True, slots=True)
class _RawEnergy:
    """The parsed file on its regular time grid; NaN where a value is missing."""

    path: str
    t0_s: int  # epoch seconds of the first interval
    step_s: int
    cols: dict[str, NDArray[np.float64]]
    lines: NDArray[np.int64]  # file line of each grid point (0 where the row is missing)


def _parse_ts(cell: str, path: str, line: int) -> int:
    s = cell.strip()
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise InputError(
            f"{path}: row {line}, column timestamp_utc: {cell!r} is not an ISO 8601 time "
            f"(allowed e.g. 2023-01-01T00:00:00Z)"
        ) from None
    return int(_as_utc(t).timestamp())


def _read_raw(src: str, text: str) -> _RawEnergy:
    f = io.StringIO(text, newline="")
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"{src}: empty file; an energy CSV needs a header with timestamp_utc") from None
        refuse_repeated_columns(src, header)
        if "timestamp_utc" not in header:
            raise InputError(
                f"{src}: missing column timestamp_utc (header has {header}); required: timestamp_utc, "
                f"one of {list(_WIND_COLS)}, carbon_g_per_kwh"
            )
        if not any(c in header for c in _WIND_COLS):
            raise InputError(
                f"{src}: missing wind column: need wind_mw (site wind, MW) or offshore_wind_mw (national, MW); "
                f"header has {header}"
            )
        if "carbon_g_per_kwh" not in header:
            raise InputError(f"{src}: missing column carbon_g_per_kwh (gCO2eq/kWh); header has {header}")
        wind_col = "wind_mw" if "wind_mw" in header else "offshore_wind_mw"
        wanted = [
            c for c in (wind_col, "carbon_g_per_kwh", "price_eur_per_mwh", "grid_cap_mw") if c in header
        ]
        i_ts = header.index("timestamp_utc")
        idx = [header.index(c) for c in wanted]
        ncol = len(header)
        times: list[int] = []
        lines: list[int] = []
        vals: list[list[float]] = [[] for _ in wanted]
        nan = math.nan
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < ncol:
                row = row + [""] * (ncol - len(row))
            elif len(row) > ncol and any(c.strip() for c in row[ncol:]):
                raise InputError(f"{src}: row {line}: {len(row)} cells, but the header has {ncol} columns; allowed: "
                                 "at most one cell per column")  # fmt: skip
            times.append(_parse_ts(row[i_ts], src, line))
            lines.append(line)
            for k, j in enumerate(idx):
                cell = row[j]
                if not cell or not cell.strip():
                    vals[k].append(nan)
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    raise InputError(
                        f"{src}: row {line}, column {wanted[k]}: {cell!r} is not a number (allowed: a decimal "
                        f"number, or an empty cell for a gap)"
                    ) from None
                if not math.isfinite(v):
                    raise InputError(
                        f"{src}: row {line}, column {wanted[k]}: {cell!r} is not finite (allowed: a decimal "
                        f"number, or an empty cell for a gap)"
                    )
                vals[k].append(v)
    if len(times) < 2:
        raise InputError(f"{src}: needs at least two data rows to know its time step, found {len(times)}")
    t = np.asarray(times, dtype=np.int64)
    ln = np.asarray(lines, dtype=np.int64)
    d = np.diff(t)
    bad = np.flatnonzero(d <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        what = "repeats" if d[i - 1] == 0 else "goes back from"
        raise InputError(
            f"{src}: row {ln[i]}, column timestamp_utc: {_iso(datetime.fromtimestamp(int(t[i]), UTC))} {what} "
            f"the previous row ({_iso(datetime.fromtimestamp(int(t[i - 1]), UTC))}); timestamps must increase "
            f"strictly"
        )
    steps, counts = np.unique(d, return_counts=True)
    step = int(steps[np.argmax(counts)])
    off = np.flatnonzero((t - t[0]) % step)
    if off.size:
        i = int(off[0])
        raise InputError(
            f"{src}: row {ln[i]}, column timestamp_utc: {_iso(datetime.fromtimestamp(int(t[i]), UTC))} is off "
            f"the file's {step} s time grid starting at {_iso(datetime.fromtimestamp(int(t[0]), UTC))}"
        )
    n = int((t[-1] - t[0]) // step) + 1
    if n > ENERGY_MAX_STEPS:
        i = int(np.argmax(d)) + 1
        raise InputError(
            f"{src}: the rows span {n:,} time steps of {step} s from {_iso(datetime.fromtimestamp(int(t[0]), UTC))} to "
            f"{_iso(datetime.fromtimestamp(int(t[-1]), UTC))}; allowed: at most {ENERGY_MAX_STEPS:,} (the longest "
            f"jump is to row {ln[i]}, column timestamp_utc: {_iso(datetime.fromtimestamp(int(t[i]), UTC))})"
        )
    pos = (t - t[0]) // step
    cols: dict[str, NDArray[np.float64]] = {}
    for k, c in enumerate(wanted):
        a = np.full(n, np.nan)
        a[pos] = np.asarray(vals[k], dtype=np.float64)
        cols[c] = a
        lo, hi, why = ENERGY_COLUMN_RANGE[c]
        out = np.flatnonzero((a < lo) | (a > hi))
        if out.size:
            g = int(out[0])
            v = float(a[g])
            what = (f"is negative; allowed: >= 0, at most {hi:g} ({why})" if v < 0 and lo == 0
                    else f"is outside {lo:g} to {hi:g} ({why})")  # fmt: skip
            raise InputError(f"{src}: row {ln[np.searchsorted(pos, g)]}, column {c}: {v:g} {what}")
    grid_lines = np.zeros(n, dtype=np.int64)
    grid_lines[pos] = ln
    return _RawEnergy(path=src, t0_s=int(t[0]), step_s=step, cols=cols, lines=grid_lines)


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[(first, last+1)] of the True runs of ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _fill_gaps(
    a: NDArray[np.float64], name: str, t0_s: int, step_s: int
) -> tuple[NDArray[np.float64], list[tuple[int, int, str]]]:
    """Fill NaN runs of ``a`` by the module's gap rule; returns the filled copy and one report line per gap."""
    a = a.copy()
    n = a.size
    day = 86400 // step_s if 86400 % step_s == 0 else None
    max_interp = MAX_INTERP_GAP_S // step_s
    reports: list[tuple[int, int, str]] = []
    for i0, i1 in _runs(np.isnan(a)):
        length = i1 - i0
        first = datetime.fromtimestamp(t0_s + i0 * step_s, UTC)
        last = datetime.fromtimestamp(t0_s + (i1 - 1) * step_s, UTC)
        if length <= max_interp and i0 > 0 and i1 < n:
            x = np.arange(i0, i1)
            a[i0:i1] = np.interp(x, [i0 - 1, i1], [a[i0 - 1], a[i1]])
            rule = "linear interpolation"
        elif day is not None and i0 >= day:
            a[i0:i1] = a[i0 - day : i1 - day]
            rule = "same time on the previous day"
        elif day is not None and i1 + day <= n and not np.isnan(a[i0 + day : i1 + day]).any():
            a[i0:i1] = a[i0 + day : i1 + day]
            rule = "same time on the next day"
        elif length <= max_interp and (i0 > 0 or i1 < n):
            a[i0:i1] = a[i0 - 1] if i0 > 0 else a[i1]
            rule = "nearest value held"
        else:
            raise InputError(
                f"{name}: {length * step_s / 3600:g} h of missing values from {_iso(first)} to {_iso(last)} "
                f"cannot be filled (needs data on the day before or after, or a gap of at most "
                f"{MAX_INTERP_GAP_S // 3600} h)"
            )
        text = f"{name}: {_iso(first)}..{_iso(last)} ({length * step_s / 3600:g} h) filled by {rule}"
        reports.append((t0_s + i0 * step_s, t0_s + i1 * step_s, text))
    return a, reports


def _read_filled(path: Path) -> tuple[_RawEnergy, tuple[tuple[int, int, str], ...]]:
    """Parse, validate and gap-fill the whole file (cached by path and content hash: a rewritten file is
    always read again)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read energy CSV: {e.strerror}") from e
    key = (str(path), hashlib.blake2b(data, digest_size=16).hexdigest())
    hit = _PARSED.get(key)
    if hit is None:
        hit = _parse_filled(str(path), data)
        if len(_PARSED) >= 4:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = hit
    return hit


#: Parsed, gap-filled files by (path, content hash); arrays in here are never modified.
_PARSED: dict[tuple[str, str], tuple[_RawEnergy, tuple[tuple[int, int, str], ...]]] = {}


def _parse_filled(path_s: str, data: bytes) -> tuple[_RawEnergy, tuple[tuple[int, int, str], ...]]:
    from scheduler.models import decode_utf8

    raw = _read_raw(path_s, decode_utf8(data, path_s))
    gaps: list[tuple[int, int, str]] = []
    cols = dict(raw.cols)
    for c in ("wind_mw", "offshore_wind_mw", "carbon_g_per_kwh", "price_eur_per_mwh"):
        if c in cols:
            try:
                cols[c], rep = _fill_gaps(cols[c], c, raw.t0_s, raw.step_s)
            except InputError as e:
                raise InputError(f"{path_s}: column {e}") from None
            gaps.extend(rep)
    for g in gaps:
        log.info("%s: gap %s", path_s, g[2])
    return _RawEnergy(raw.path, raw.t0_s, raw.step_s, cols, raw.lines), tuple(gaps)


def _capacity_factor_per_year(mw: NDArray[np.float64], t0_s: int, step_s: int) -> NDArray[np.float64]:
    years = (np.datetime64(t0_s, "s") + np.arange(mw.size) * np.timedelta64(step_s, "s")).astype(
        "datetime64[Y]"
    )
    cf = np.zeros_like(mw)
    for y in np.unique(years):
        m = years == y
        ymax = float(mw[m].max())
        cf[m] = mw[m] / ymax if ymax > 0 else 0.0
    return cf


def read_energy_csv(
    path: str | Path, site: Site, start: datetime | None = None, days: float | None = None, *, strict: bool = False
) -> EnergySeries:
    """Read an energy CSV (module docstring: contract, gap rule, resampling) into per-slot site signals.

    ``start`` (default: the file's first timestamp) and ``days`` (default: to the end of the file) cut a
    slice; a slice that leaves the file is an InputError. Gaps filled in the slice are logged as one WARNING
    with their count (the CLI shows it on stderr) and listed in ``EnergySeries.gaps``; ``strict`` refuses them
    (InputError naming the file, the count and each gap).
    """
    p = Path(path)
    raw, gaps = _read_filled(p)
    slot_s = site.slot_s
    step = raw.step_s
    if step % slot_s and slot_s % step:
        raise InputError(
            f"{p}: time step {step} s and the site's slot of {slot_s} s do not divide one another; allowed: "
            f"data at a multiple or a divisor of the slot length"
        )
    file_start = raw.t0_s
    n_data = raw.lines.size
    file_end = file_start + n_data * step
    start_s = file_start if start is None else int(_as_utc(start).timestamp())
    if start_s < file_start or start_s >= file_end:
        raise InputError(
            f"{p}: start {_iso(datetime.fromtimestamp(start_s, UTC))} lies outside the file "
            f"({_iso(datetime.fromtimestamp(file_start, UTC))} to {_iso(datetime.fromtimestamp(file_end, UTC))})"
        )
    if days is None:
        n_slots = (file_end - start_s) // slot_s
    else:
        if not days > 0:
            raise InputError(f"days must be > 0, got {days}")
        n_slots = round(days * 86400 / slot_s)
        if start_s + n_slots * slot_s > file_end:
            raise InputError(
                f"{p}: {days:g} days from {_iso(datetime.fromtimestamp(start_s, UTC))} run past the end of the "
                f"file ({_iso(datetime.fromtimestamp(file_end, UTC))}); allowed: at most "
                f"{(file_end - start_s) / 86400:.4g} days"
            )
    if n_slots < 1:
        raise InputError(
            f"{p}: the slice from {_iso(datetime.fromtimestamp(start_s, UTC))} holds no whole slot"
        )

    if "wind_mw" in raw.cols:
        wind_mw = raw.cols["wind_mw"]
        wind_how = "wind_mw as is"
    else:
        cf = _capacity_factor_per_year(raw.cols["offshore_wind_mw"], raw.t0_s, step)
        wind_mw = cf * site.wind.contract_mw
        wind_how = f"offshore_wind_mw as capacity factor per year x {site.wind.contract_mw:g} MW"
    carbon = raw.cols["carbon_g_per_kwh"]
    price = raw.cols.get("price_eur_per_mwh", np.zeros(n_data))
    cap_col = raw.cols.get("grid_cap_mw")

    slot_starts = start_s + np.arange(n_slots, dtype=np.int64) * slot_s
    times = _slot_times(datetime.fromtimestamp(start_s, UTC), slot_s, n_slots)
    contract_cap_w = grid_cap_w_at(site, times)
    if step >= slot_s:
        di = (slot_starts - file_start) // step

        def res(a: NDArray[np.float64]) -> NDArray[np.float64]:
            return a[di]

        cap_override = cap_col[di] if cap_col is not None else None
    else:
        k = slot_s // step
        first = (start_s - file_start + step - 1) // step  # data aligned inside the slot
        if (start_s - file_start) % step:
            raise InputError(
                f"{p}: start must fall on the file's {step} s grid when the data is finer than a slot"
            )
        sl = slice(first, first + n_slots * k)

        def res(a: NDArray[np.float64]) -> NDArray[np.float64]:
            return a[sl].reshape(n_slots, k).mean(axis=1)

        if cap_col is not None:
            blk = cap_col[sl].reshape(n_slots, k)
            cap_override = np.where(
                np.isnan(blk).all(axis=1), np.nan, np.nanmin(np.where(np.isnan(blk), np.inf, blk), axis=1)
            )
        else:
            cap_override = None

    grid_cap_w = contract_cap_w
    if cap_override is not None:
        grid_cap_w = np.where(np.isnan(cap_override), contract_cap_w, cap_override * 1e6)

    # Only report gaps that touch the slice.
    slice_end = start_s + n_slots * slot_s
    in_slice = tuple(text for a, b, text in gaps if a < slice_end and b > start_s)
    if in_slice and strict:
        raise InputError(
            f"{p}: {len(in_slice)} gap(s) in the data (strict: none is filled): " + "; ".join(in_slice)
            + "; allowed with --strict: a file with a value in every column for every time step"
        )  # fmt: skip
    if in_slice:
        log.warning("%s: %d gap(s) filled: %s", p, len(in_slice), "; ".join(in_slice))
    return EnergySeries(
        start_utc=datetime.fromtimestamp(start_s, UTC),
        slot_s=slot_s,
        wind_w=res(wind_mw) * 1e6,
        carbon_g_per_kwh=res(carbon),
        price_eur_per_mwh=res(price),
        grid_cap_w=np.asarray(grid_cap_w, dtype=np.float64),
        site_max_w=np.full(n_slots, site.site_max_mw * 1e6),
        source=f"{p} ({wind_how})",
        gaps=in_slice,
    )


# ---------------------------------------------------------------------------------- embedded model


@lru_cache(maxsize=1)
def energy_model() -> dict[str, Any]:
    """The fitted parameters of the embedded energy model (scheduler/data/energy_model.json)."""
    try:
        return json.loads(ENERGY_MODEL_PATH.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{ENERGY_MODEL_PATH}: cannot load the embedded energy model: {e}") from e


def _phi_cdf(z: NDArray[np.float64]) -> NDArray[np.float64]:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + np.asarray(erf(z / math.sqrt(2.0)), dtype=np.float64))


def _ar1(rng: np.random.Generator, phi: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """Stationary unit-variance AR(1) with a per-step coefficient ``phi[t]``."""
    e = rng.standard_normal(n)
    z = np.empty(n)
    z[0] = e[0]
    s = np.sqrt(1.0 - phi * phi)
    for t in range(1, n):
        z[t] = phi[t] * z[t - 1] + s[t] * e[t]
    return z


def embedded_energy(site: Site, start: datetime, days: float, seed: int = 0) -> EnergySeries:
    """A seeded synthetic series from the compact NL model (scheduler/data/energy_model.json).

    Hourly values are generated (wind CF through a per-month Gaussian-copula AR(1), carbon and price as in
    benchmarks/fit_energy_model.py) from a 10-day burn-in before ``start`` and held constant across the
    slots of each hour, exactly as hourly CSV data is. The same (seed, start, days) gives the same series.
    """
    if not days > 0:
        raise InputError(f"days must be > 0, got {days}")
    model = energy_model()
    slot_s = site.slot_s
    start = _as_utc(start)
    n_slots = round(days * 86400 / slot_s)
    hour0 = start.replace(minute=0, second=0, microsecond=0)
    burn_h = 240
    last_slot_end = start + timedelta(seconds=n_slots * slot_s)
    n_hours = burn_h + math.ceil((last_slot_end - hour0).total_seconds() / 3600)
    h_times = np.datetime64(hour0.replace(tzinfo=None), "h") + np.arange(-burn_h, n_hours - burn_h)
    months = (h_times.astype("datetime64[M]").astype(np.int64) % 12).astype(np.int64)  # 0..11
    hours = (h_times.astype(np.int64) % 24).astype(np.int64)

    mm = model["months"]
    q_levels = np.asarray(model["cf_quantile_levels"], dtype=np.float64)
    q_table = np.asarray([m["cf_quantiles"] for m in mm], dtype=np.float64)  # (12, Q)
    cf_phi = np.asarray([m["cf_phi"] for m in mm])[months]
    cf_mean = np.asarray([m["cf_mean"] for m in mm])[months]
    c_mean = np.asarray([m["carbon_mean_g_per_kwh"] for m in mm])[months]
    c_std = np.asarray([m["carbon_std_g_per_kwh"] for m in mm])[months]
    p_level = np.asarray([m["price_level_eur_per_mwh"] for m in mm])[months]
    p_beta = np.asarray([m["price_beta_eur_per_mwh_per_cf"] for m in mm])[months]
    p_std = np.asarray([m["price_resid_std_eur_per_mwh"] for m in mm])[months]

    rng = np.random.default_rng([int(seed), 0x57494E44])
    z_w = _ar1(rng, cf_phi, n_hours)
    u = np.clip(_phi_cdf(z_w), 0.0, 1.0)
    cf = np.empty(n_hours)
    for m in range(12):
        sel = months == m
        if sel.any():
            cf[sel] = np.interp(u[sel], q_levels, q_table[m])

    rho = float(model["carbon_wind_rho"])
    e_c = _ar1(rng, np.full(n_hours, float(model["carbon_resid_phi"])), n_hours)
    z_c = rho * z_w + math.sqrt(1.0 - rho * rho) * e_c
    c_hour = np.asarray(model["carbon_hour_offset_g_per_kwh"])[hours]
    carbon = np.maximum(c_mean + c_hour + c_std * z_c, float(model["carbon_min_g_per_kwh"]))

    e_p = _ar1(rng, np.full(n_hours, float(model["price_resid_phi"])), n_hours)
    p_shape = np.asarray(model["price_hour_shape"])[hours]
    price = p_level * p_shape + p_beta * (cf - cf_mean) + p_std * e_p

    # hold each hour's values across its slots
    offset_s = int((start - hour0).total_seconds()) + np.arange(n_slots, dtype=np.int64) * slot_s
    hi = burn_h + offset_s // 3600
    times = _slot_times(start, slot_s, n_slots)
    return EnergySeries(
        start_utc=start,
        slot_s=slot_s,
        wind_w=cf[hi] * site.wind.contract_mw * 1e6,
        carbon_g_per_kwh=carbon[hi],
        price_eur_per_mwh=price[hi],
        grid_cap_w=grid_cap_w_at(site, times),
        site_max_w=np.full(n_slots, site.site_max_mw * 1e6),
        source=f"{EMBEDDED_LABEL} (seed {seed})",
        gaps=(),
    )


def load_energy(
    spec: str | None, site: Site, start: datetime, days: float, seed: int = 0, *, strict: bool = False
) -> EnergySeries:
    """``None`` or ``"embedded"``: the synthetic NL series; anything else: a path to an energy CSV (``strict``:
    refuse gaps instead of filling them, :func:`read_energy_csv`)."""
    if spec is None or spec == "embedded":
        return embedded_energy(site, start, days, seed=seed)
    return read_energy_csv(spec, site, start=start, days=days, strict=strict)


# ---------------------------------------------------------------------------------------- forecasts


class Forecaster(Protocol):
    @property
    def kind(self) -> str: ...

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:
        """The forecast made at the start of ``slot`` for slots ``[slot, slot + horizon_slots)``."""
        ...


def _with(
    actual: EnergySeries, slot: int, wind_w: NDArray[np.float64], carbon: NDArray[np.float64], source: str
) -> EnergySeries:
    win = actual.window(slot, wind_w.size)
    return EnergySeries(
        start_utc=win.start_utc,
        slot_s=win.slot_s,
        wind_w=wind_w,
        carbon_g_per_kwh=carbon,
        price_eur_per_mwh=win.price_eur_per_mwh,
        grid_cap_w=win.grid_cap_w,
        site_max_w=win.site_max_w,
        source=source,
        gaps=win.gaps,
    )


def _check_window(actual: EnergySeries, slot: int, horizon_slots: int) -> None:
    if not 0 <= slot < actual.n_slots:
        raise InputError(f"forecast slot {slot} outside the series (0..{actual.n_slots - 1})")
    if horizon_slots < 1:
        raise InputError(f"forecast horizon_slots must be >= 1, got {horizon_slots}")


@dataclass(frozen=True, slots=True)
class PerfectForecaster:
    actual: EnergySeries
    kind: str = "perfect"

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:
        _check_window(self.actual, slot, horizon_slots)
        return self.actual.window(slot, horizon_slots)


@dataclass(frozen=True, slots=True)
class PersistenceForecaster:
    """Wind: the current slot's actual held; carbon: same time of day on the most recent day."""

    actual: EnergySeries
    kind: str = "persistence"

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:
        _check_window(self.actual, slot, horizon_slots)
        a = self.actual
        wind = np.full(horizon_slots, a.wind_w[slot])
        day = max(1, 86400 // a.slot_s)
        k = np.arange(horizon_slots)
        back = day * np.ceil(k / day).astype(np.int64)
        idx = slot + k - back
        carbon = np.where(idx >= 0, a.carbon_g_per_kwh[np.maximum(idx, 0)], a.carbon_g_per_kwh[slot])
        return _with(a, slot, wind, carbon, f"persistence forecast of {a.source}")


#: Target day-ahead (24 h lead) normalised mean absolute error of the wind forecast, as a share of wind
#: capacity. Published day-ahead errors for offshore / aggregated wind lie around 5-8 % of capacity (Giebel &
#: Kariniotakis, "Wind power forecasting -- a review of the state of the art", in Renewable Energy
#: Forecasting, Woodhead 2017; Zsiboracs et al., "Wind Power Generation Scheduling Accuracy in Europe: An
#: Overview of ENTSO-E Countries", Sustainability 14(24):16446, 2022, day-ahead schedules of offshore wind).
NOISY_WIND_NMAE_24H = 0.065
#: Lead-time constant of the wind error growth (hours): std(lead) = s_inf * (1 - exp(-lead / tau)).
NOISY_WIND_TAU_H = 12.0
#: Target 24 h-lead mean absolute percentage error of the carbon-intensity forecast. Day-ahead carbon
#: intensity forecasts report MAPEs of roughly 5-15 % by region (Maji et al., "CarbonCast", BuildSys 2022).
NOISY_CARBON_MAPE_24H = 0.08
#: Correlation of the forecast error between consecutive slots of one forecast (smooth error paths).
NOISY_ERROR_PHI = 0.98


def _noisy_sigma(lead_h: NDArray[np.float64], at_24h: float) -> NDArray[np.float64]:
    """Error std growing with lead: 0 at lead 0, ``at_24h`` at 24 h, saturating with ``NOISY_WIND_TAU_H``."""
    g = (1.0 - np.exp(-lead_h / NOISY_WIND_TAU_H)) / (1.0 - math.exp(-24.0 / NOISY_WIND_TAU_H))
    return at_24h * g


#: CF error std at 24 h lead that gives NOISY_WIND_NMAE_24H after clipping the forecast CF to [0, 1]
#: (solved numerically on the NL 2021-2023 CF distribution; for an unclipped Gaussian it would be
#: NMAE / sqrt(2 / pi)). Checked by tests/unit/test_signals.py on real data.
NOISY_WIND_SIGMA_24H = 0.090


@dataclass(frozen=True, slots=True)
class NoisyForecaster:
    """The actuals plus a seeded error that grows with lead time.

    Wind: an additive error on the capacity factor ``cf = wind_w / wind_capacity_w``, std
    ``NOISY_WIND_SIGMA_24H * g(lead)`` with ``g(0) = 0``, ``g(24 h) = 1``, saturating with a 12 h time
    constant; the error path along the horizon is a unit-variance AR(1) (``NOISY_ERROR_PHI`` per slot), the
    forecast CF is clipped to [0, 1]. Day-ahead NMAE ~ ``NOISY_WIND_NMAE_24H`` (6.5 % of capacity), inside the
    5-8 % band published for offshore wind (sources at :data:`NOISY_WIND_NMAE_24H`).
    Carbon: multiplicative log-normal error with the same growth, 24 h MAPE ~ ``NOISY_CARBON_MAPE_24H``.
    Price (a day-ahead market result) and the caps (contract values) are exact.

    Deterministic: the forecast made at ``slot`` depends only on (seed, slot, horizon) and the actuals.
    ``wind_capacity_w`` defaults to the site's contract when the series knows it, else the series' max wind.
    """

    actual: EnergySeries
    seed: int = 0
    wind_capacity_w: float = 0.0
    kind: str = "noisy"

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:
        _check_window(self.actual, slot, horizon_slots)
        a = self.actual
        win = a.window(slot, horizon_slots)
        cap_w = self.wind_capacity_w if self.wind_capacity_w > 0 else float(max(a.wind_w.max(), 1.0))
        lead_h = np.arange(horizon_slots) * a.slot_s / 3600.0
        # one generator per signal, so a longer horizon extends (never changes) a shorter one's errors
        phi = np.full(horizon_slots, NOISY_ERROR_PHI)
        z_w = _ar1(np.random.default_rng([int(self.seed), int(slot), 1]), phi, horizon_slots)
        z_c = _ar1(np.random.default_rng([int(self.seed), int(slot), 2]), phi, horizon_slots)
        cf = np.clip(win.wind_w / cap_w + _noisy_sigma(lead_h, NOISY_WIND_SIGMA_24H) * z_w, 0.0, 1.0)
        sigma_c = math.sqrt(math.pi / 2.0) * NOISY_CARBON_MAPE_24H
        carbon = win.carbon_g_per_kwh * np.exp(_noisy_sigma(lead_h, sigma_c) * z_c)
        wind = cf * cap_w
        wind[0], carbon[0] = win.wind_w[0], win.carbon_g_per_kwh[0]  # lead 0 is observed, exactly
        return _with(a, slot, wind, carbon, f"noisy forecast (seed {self.seed}) of {a.source}")


def make_forecaster(
    kind: str, actual: EnergySeries, seed: int = 0, *, wind_capacity_w: float | None = None
) -> Forecaster:
    """A forecaster over ``actual``: ``perfect``, ``persistence`` or ``noisy`` (module docstring).

    ``wind_capacity_w`` (noisy only) is the capacity the wind error is scaled to; pass
    ``site.wind.contract_mw * 1e6``. Default: the series' maximum wind.
    """
    if kind == "perfect":
        return PerfectForecaster(actual)
    if kind == "persistence":
        return PersistenceForecaster(actual)
    if kind == "noisy":
        return NoisyForecaster(actual, seed=seed, wind_capacity_w=float(wind_capacity_w or 0.0))
    raise InputError(f"unknown forecast kind {kind!r}; allowed: {list(FORECAST_KINDS)}")
