"""Fit the compact statistical model of the Dutch site-year that ships as Windward's embedded energy default.

Reads ``../shared/data/energy/nl-2021-2023-hourly.csv`` in place (never copies it) and writes only fitted
parameters to ``scheduler/data/energy_model.json``. Anyone with the data can rerun it:

    python -m benchmarks.fit_energy_model [--csv PATH] [--out PATH]

The model (what ``scheduler.signals.embedded_energy`` generates from):

* **Offshore wind capacity factor (CF)**: CF = national offshore MW / that calendar year's max (capacity grew
  2021->2023, so per-year normalisation). Per calendar month: the CF's quantile function on 21 points
  (0, 5, ..., 100 %), and the lag-1 (hour-to-hour) autocorrelation ``phi`` of the CF's normal scores
  (a Gaussian copula AR(1): z_t = phi z_{t-1} + sqrt(1 - phi^2) e_t, CF_t = Q_month(Phi(z_t))).
* **Carbon intensity** (gCO2eq/kWh, life-cycle): per month level ``mean`` and residual spread ``std`` after an
  hour-of-day profile (24 additive offsets); the correlation ``rho`` between its standardised residual and
  the wind normal score; the residual's own AR(1) ``phi``.
* **Day-ahead price** (EUR/MWh): per month level (mean over 2021-2023, which includes the 2022 crisis), a
  24-point multiplicative hour-of-day shape, a linear sensitivity to the CF anomaly (EUR/MWh per unit CF)
  and the residual spread and AR(1).

Missing cells (99 price hours) are skipped in every fit.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from datetime import datetime
from pathlib import Path
from statistics import NormalDist

import numpy as np

from scheduler.paths import REPO_ROOT, nl_energy_csv

QUANTILE_LEVELS = [i / 20 for i in range(21)]
OUT_DEFAULT = REPO_ROOT / "scheduler" / "data" / "energy_model.json"


def dump_json(obj: object) -> str:
    """Indented JSON with lists of numbers kept on one line (a readable, diff-friendly parameter file)."""
    text = json.dumps(obj, indent=1)
    return (
        re.sub(
            r"\[\s+([-0-9.eE,\s]+?)\s+\]",
            lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
            text,
        )
        + "\n"
    )


def _read(path: Path) -> dict[str, np.ndarray]:
    ts: list[datetime] = []
    cols: dict[str, list[float]] = {"offshore_wind_mw": [], "carbon_g_per_kwh": [], "price_eur_per_mwh": []}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            ts.append(datetime.fromisoformat(row["timestamp_utc"]))
            for k, v in cols.items():
                cell = row[k].strip()
                v.append(float(cell) if cell else math.nan)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    out["year"] = np.array([t.year for t in ts])
    out["month"] = np.array([t.month for t in ts])
    out["hour"] = np.array([t.hour for t in ts])
    return out


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Rank-based normal scores (ties broken by order), the Gaussian-copula transform."""
    n = x.size
    ranks = np.empty(n)
    ranks[np.argsort(x, kind="stable")] = np.arange(1, n + 1)
    nd = NormalDist()
    return np.array([nd.inv_cdf(r / (n + 1)) for r in ranks])


def _lag1(x: np.ndarray, same_run: np.ndarray) -> float:
    """Lag-1 autocorrelation using only pairs (t-1, t) that lie in the same run (same month and year)."""
    a, b = x[:-1][same_run], x[1:][same_run]
    return float(np.corrcoef(a, b)[0, 1])


def fit(path: Path) -> dict:
    d = _read(path)
    year, month, hour = d["year"], d["month"], d["hour"]
    wind = d["offshore_wind_mw"]
    cf = np.empty_like(wind)
    year_max = {}
    for y in np.unique(year):
        m = year == y
        year_max[int(y)] = float(np.nanmax(wind[m]))
        cf[m] = np.clip(wind[m] / year_max[int(y)], 0.0, 1.0)

    # same run = consecutive hours in the same (year, month): AR(1) pairs never straddle a month boundary
    run_id = year * 100 + month
    same_run = run_id[1:] == run_id[:-1]

    z_wind = np.empty_like(cf)
    months: list[dict] = []
    carbon = d["carbon_g_per_kwh"]
    price = d["price_eur_per_mwh"]

    # hour-of-day profiles over the whole period (additive for carbon, multiplicative for price)
    c_ok = np.isfinite(carbon)
    p_ok = np.isfinite(price)
    carbon_hour = np.array([np.mean(carbon[c_ok & (hour == h)]) for h in range(24)])
    carbon_hour -= carbon_hour.mean()
    price_hour = np.array([np.mean(price[p_ok & (hour == h)]) for h in range(24)])
    price_hour /= price_hour.mean()

    for m in range(1, 13):
        sel = month == m
        # normal scores per month (within each year separately, so a year's capacity shift does not leak)
        for y in np.unique(year[sel]):
            ys = sel & (year == y)
            z_wind[ys] = _normal_scores(cf[ys])
    c_resid_all = np.full_like(carbon, math.nan)
    p_resid_all = np.full_like(price, math.nan)

    for m in range(1, 13):
        sel = month == m
        q = np.quantile(cf[sel], QUANTILE_LEVELS)
        pairs = same_run & sel[1:]
        phi_w = _lag1(z_wind, pairs)

        c_sel = sel & c_ok
        c_anom = carbon - carbon_hour[hour]
        c_mean = float(np.mean(c_anom[c_sel]))
        c_std = float(np.std(c_anom[c_sel]))
        c_resid_all[c_sel] = (c_anom[c_sel] - c_mean) / c_std

        p_sel = sel & p_ok
        p_level = float(np.mean(price[p_sel]))
        base = p_level * price_hour[hour]
        cf_mean = float(np.mean(cf[sel]))
        x = cf[p_sel] - cf_mean
        y_ = price[p_sel] - base[p_sel]
        beta = float(np.dot(x, y_) / np.dot(x, x))
        resid = y_ - beta * x
        p_std = float(np.std(resid))
        p_resid_all[p_sel] = resid / p_std

        months.append(
            {
                "month": m,
                "cf_quantiles": [round(float(v), 5) for v in q],
                "cf_mean": round(cf_mean, 5),
                "cf_phi": round(phi_w, 5),
                "carbon_mean_g_per_kwh": round(c_mean, 3),
                "carbon_std_g_per_kwh": round(c_std, 3),
                "price_level_eur_per_mwh": round(p_level, 3),
                "price_beta_eur_per_mwh_per_cf": round(beta, 3),
                "price_resid_std_eur_per_mwh": round(p_std, 3),
            }
        )

    both = np.isfinite(c_resid_all)
    rho = float(np.corrcoef(z_wind[both], c_resid_all[both])[0, 1])
    # the carbon residual not explained by wind: e = (c - rho z) / sqrt(1 - rho^2); its AR(1)
    e_c = (c_resid_all - rho * z_wind) / math.sqrt(1 - rho * rho)
    ok_pairs = same_run & np.isfinite(e_c[1:]) & np.isfinite(e_c[:-1])
    phi_c = float(np.corrcoef(e_c[:-1][ok_pairs], e_c[1:][ok_pairs])[0, 1])
    ok_pairs_p = same_run & np.isfinite(p_resid_all[1:]) & np.isfinite(p_resid_all[:-1])
    phi_p = float(np.corrcoef(p_resid_all[:-1][ok_pairs_p], p_resid_all[1:][ok_pairs_p])[0, 1])

    return {
        "label": "synthetic, calibrated to NL 2021-2023",
        "description": (
            "Compact statistical model of the Dutch offshore-wind site-year: fitted parameters only, no data. "
            "Offshore wind capacity factor per month: quantile function + AR(1) of normal scores "
            "(Gaussian copula); carbon intensity: monthly level/spread + hour-of-day profile, correlated with "
            "the wind score, AR(1) residual; day-ahead price: monthly level x hour-of-day shape + "
            "CF sensitivity + AR(1) residual."
        ),
        "fitted_by": "benchmarks/fit_energy_model.py",
        "fitted_from": "energy/nl-2021-2023-hourly.csv (shared data; NED offshore wind, Electricity Maps carbon, "
        "ENTSO-E day-ahead price), hourly, 2021-01-01..2023-12-31 UTC",
        "resolution_s": 3600,
        "cf_normalisation": "per calendar year by that year's max hourly output",
        "cf_year_max_mw": {str(k): round(v, 3) for k, v in year_max.items()},
        "cf_quantile_levels": QUANTILE_LEVELS,
        "carbon_hour_offset_g_per_kwh": [round(float(v), 3) for v in carbon_hour],
        "carbon_wind_rho": round(rho, 5),
        "carbon_resid_phi": round(phi_c, 5),
        "carbon_min_g_per_kwh": round(float(np.nanmin(carbon)), 3),
        "price_hour_shape": [round(float(v), 5) for v in price_hour],
        "price_resid_phi": round(phi_p, 5),
        "months": months,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--csv", type=Path, default=None, help="energy CSV (default: the shared NL 2021-2023 file)"
    )
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT, help=f"output JSON (default {OUT_DEFAULT})")
    args = ap.parse_args(argv)
    path = args.csv or nl_energy_csv()
    model = fit(path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_json(model))
    summary = {
        "out": str(args.out),
        "carbon_wind_rho": model["carbon_wind_rho"],
        "cf_mean_by_month": [m["cf_mean"] for m in model["months"]],
        "cf_phi_by_month": [m["cf_phi"] for m in model["months"]],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
