"""Energy signals: the CSV contract on real NL data and on bad input, the embedded model, forecasts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from scheduler.errors import InputError
from scheduler.models import load_site
from scheduler.paths import nl_energy_csv
from scheduler.signals import (
    EMBEDDED_LABEL,
    FORECAST_KINDS,
    embedded_energy,
    energy_model,
    grid_cap_w_at,
    load_energy,
    make_forecaster,
    read_energy_csv,
)

DEMO = load_site("demo")
BIG = load_site("rotterdam-100k")
T0 = datetime(2023, 3, 1, tzinfo=UTC)


def _csv(tmp_path: Path, text: str, name: str = "e.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _hours(n: int, start: datetime = datetime(2023, 1, 1, tzinfo=UTC)) -> list[str]:
    return [(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)]


# --------------------------------------------------------------------------------- contract cap


def test_grid_cap_follows_time_blocks() -> None:
    times = [datetime(2023, 1, 1, h, tzinfo=UTC) for h in range(24)]
    cap = grid_cap_w_at(BIG, times)
    night = {22, 23, 0, 1, 2, 3, 4, 5}
    for h in range(24):
        assert cap[h] == pytest.approx((80 + (40 if h in night else 0)) * 1e6)
    # numpy datetimes give the same answer
    np_times = np.datetime64("2023-01-01T00:00") + np.arange(24) * np.timedelta64(1, "h")
    np.testing.assert_array_equal(grid_cap_w_at(BIG, np_times), cap)


# ------------------------------------------------------------------------------------ real data


def test_real_nl_slice_resampled_to_slots(shared_data: None) -> None:
    s = read_energy_csv(nl_energy_csv(), BIG, start=T0, days=3)
    assert s.n_slots == 3 * 96 and s.slot_s == 900 and s.start_utc == T0
    # hourly values held across the hour's four slots
    for a in (s.wind_w, s.carbon_g_per_kwh, s.price_eur_per_mwh):
        blocks = a.reshape(-1, 4)
        assert (blocks == blocks[:, :1]).all()
    # wind = capacity factor (per year) x contract; capacity factor within [0, 1]
    assert 0 <= s.wind_w.min() and s.wind_w.max() <= 250e6 + 1e-6
    assert np.all(s.site_max_w == 150e6)
    assert set(np.unique(s.grid_cap_w)) == {80e6, 120e6}
    assert 50 < s.carbon_g_per_kwh.mean() < 800
    assert s.gaps == ()  # no gaps in these days


def test_real_nl_capacity_factor_normalised_per_year(shared_data: None) -> None:
    s = read_energy_csv(nl_energy_csv(), BIG)
    assert s.n_slots == 26_280 * 4
    year = (np.datetime64("2021-01-01") + np.arange(s.n_slots) * np.timedelta64(900, "s")).astype(
        "datetime64[Y]"
    )
    for y in np.unique(year):
        assert s.wind_w[year == y].max() == pytest.approx(250e6)  # each year's max is the full contract


def test_real_nl_gaps_reported_and_filled(shared_data: None) -> None:
    s = read_energy_csv(nl_energy_csv(), BIG)
    price_gaps = [g for g in s.gaps if g.startswith("price_eur_per_mwh")]
    hours = sum(float(g.split("(")[1].split(" h)")[0]) for g in price_gaps)
    assert hours == 99  # SOURCES.md: 99 missing price hours
    assert any("previous day" in g for g in price_gaps) and any("interpolation" in g for g in price_gaps)
    assert all(np.isfinite(a).all() for a in (s.wind_w, s.carbon_g_per_kwh, s.price_eur_per_mwh))
    # a slice over a filled day reports only the gaps it touches, and its values are the previous day's
    day = read_energy_csv(nl_energy_csv(), BIG, start=datetime(2021, 9, 29, tzinfo=UTC), days=2)
    assert len(day.gaps) == 1 and "2021-09-29T22:00Z" in day.gaps[0]
    np.testing.assert_allclose(day.price_eur_per_mwh[96 + 8 : 96 + 80], day.price_eur_per_mwh[8:80])


def test_slice_outside_file_refused(shared_data: None) -> None:
    with pytest.raises(InputError, match="outside the file"):
        read_energy_csv(nl_energy_csv(), BIG, start=datetime(2030, 1, 1, tzinfo=UTC), days=1)
    with pytest.raises(InputError, match="past the end of the file"):
        read_energy_csv(nl_energy_csv(), BIG, start=datetime(2023, 12, 30, tzinfo=UTC), days=5)


# ----------------------------------------------------------------------------------- bad input


def test_missing_columns_named(tmp_path: Path) -> None:
    p = _csv(tmp_path, "time,wind_mw,carbon_g_per_kwh\n2023-01-01T00:00:00Z,1,100\n")
    with pytest.raises(InputError, match=r"e\.csv: missing column timestamp_utc"):
        read_energy_csv(p, DEMO)
    p = _csv(tmp_path, "timestamp_utc,carbon_g_per_kwh\n2023-01-01T00:00:00Z,100\n")
    with pytest.raises(InputError, match="missing wind column.*offshore_wind_mw"):
        read_energy_csv(p, DEMO)
    p = _csv(tmp_path, "timestamp_utc,wind_mw\n2023-01-01T00:00:00Z,1\n")
    with pytest.raises(InputError, match="missing column carbon_g_per_kwh"):
        read_energy_csv(p, DEMO)


def test_non_monotonic_and_duplicate_timestamps_named(tmp_path: Path) -> None:
    ts = _hours(4)
    rows = [ts[0], ts[1], ts[3], ts[2]]
    p = _csv(tmp_path, "timestamp_utc,wind_mw,carbon_g_per_kwh\n" + "".join(f"{t},0.01,100\n" for t in rows))
    with pytest.raises(InputError, match=r"e\.csv: row 5, column timestamp_utc: 2023-01-01T02:00Z goes back"):
        read_energy_csv(p, DEMO)
    rows = [ts[0], ts[1], ts[1], ts[2]]
    p = _csv(tmp_path, "timestamp_utc,wind_mw,carbon_g_per_kwh\n" + "".join(f"{t},0.01,100\n" for t in rows))
    with pytest.raises(InputError, match=r"row 4, column timestamp_utc: .* repeats"):
        read_energy_csv(p, DEMO)


def test_unparsable_and_negative_values_named(tmp_path: Path) -> None:
    ts = _hours(3)
    p = _csv(
        tmp_path, f"timestamp_utc,wind_mw,carbon_g_per_kwh\n{ts[0]},1,100\n{ts[1]},abc,100\n{ts[2]},1,100\n"
    )
    with pytest.raises(InputError, match=r"row 3, column wind_mw: 'abc' is not a number"):
        read_energy_csv(p, DEMO)
    p = _csv(
        tmp_path, f"timestamp_utc,wind_mw,carbon_g_per_kwh\n{ts[0]},1,100\n{ts[1]},1,100\n{ts[2]},-0.5,100\n"
    )
    with pytest.raises(InputError, match=r"row 4, column wind_mw: -0.5 is negative; allowed: >= 0"):
        read_energy_csv(p, DEMO)
    p = _csv(tmp_path, f"timestamp_utc,wind_mw,carbon_g_per_kwh\nyesterday,1,100\n{ts[1]},1,100\n")
    with pytest.raises(InputError, match=r"row 2, column timestamp_utc: 'yesterday' is not an ISO 8601"):
        read_energy_csv(p, DEMO)


def test_small_file_gaps_grid_cap_and_wind_mw(tmp_path: Path) -> None:
    """A hand-made 2-day file: wind_mw used as is, an empty carbon cell and a missing row interpolated,
    a long price gap taken from the previous day, grid_cap_mw overriding the contract where given."""
    ts = _hours(48)
    lines = ["timestamp_utc,wind_mw,carbon_g_per_kwh,price_eur_per_mwh,grid_cap_mw,extra"]
    for i, t in enumerate(ts):
        if i == 30:
            continue  # a missing row
        carbon = "" if i == 5 else f"{100 + i}"
        price = "" if 24 + 8 <= i < 24 + 20 else f"{i % 24}"
        cap = "0.02" if i == 10 else ""
        lines.append(f"{t},{0.001 * i:.3f},{carbon},{price},{cap},ignored")
    p = _csv(tmp_path, "\n".join(lines) + "\n")
    s = read_energy_csv(p, DEMO)
    assert s.n_slots == 48 * 4
    assert s.wind_w[4 * 7] == pytest.approx(0.007e6)  # wind_mw as is, MW -> W
    assert s.carbon_g_per_kwh[4 * 5] == pytest.approx(105.0)  # linear interpolation of 104 and 106
    assert s.carbon_g_per_kwh[4 * 30] == pytest.approx(130.0)  # missing row interpolated
    assert s.wind_w[4 * 30] == pytest.approx(0.030e6)
    np.testing.assert_allclose(s.price_eur_per_mwh[4 * 32 : 4 * 44], s.price_eur_per_mwh[4 * 8 : 4 * 20])
    assert s.grid_cap_w[4 * 10] == pytest.approx(0.02e6)  # override
    assert s.grid_cap_w[4 * 11] == pytest.approx(0.025e6)  # contract (firm, 11:00 UTC)
    assert s.grid_cap_w[4 * 23] == pytest.approx(0.035e6)  # contract (firm + night block)
    kinds = sorted(g.split(":")[0] for g in s.gaps)
    assert kinds == [
        "carbon_g_per_kwh",
        "carbon_g_per_kwh",
        "price_eur_per_mwh",
        "price_eur_per_mwh",
        "wind_mw",
    ]
    assert any("price_eur_per_mwh" in g and "previous day" in g for g in s.gaps)


def test_finer_data_averaged_into_slots(tmp_path: Path) -> None:
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    lines = ["timestamp_utc,wind_mw,carbon_g_per_kwh"]
    for i in range(12):
        t = (t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{t},{i},{100 + i}")
    s = read_energy_csv(_csv(tmp_path, "\n".join(lines) + "\n"), DEMO)
    assert s.n_slots == 4
    np.testing.assert_allclose(s.wind_w, np.array([1, 4, 7, 10]) * 1e6)


# ---------------------------------------------------------------------------------- embedded


def test_embedded_deterministic_per_seed_and_labelled() -> None:
    a = embedded_energy(DEMO, T0, 3, seed=7)
    b = embedded_energy(DEMO, T0, 3, seed=7)
    c = embedded_energy(DEMO, T0, 3, seed=8)
    np.testing.assert_array_equal(a.wind_w, b.wind_w)
    np.testing.assert_array_equal(a.carbon_g_per_kwh, b.carbon_g_per_kwh)
    assert not np.array_equal(a.wind_w, c.wind_w)
    assert a.source == f"{EMBEDDED_LABEL} (seed 7)" == "synthetic, calibrated to NL 2021-2023 (seed 7)"
    assert a.n_slots == 288 and (a.wind_w >= 0).all() and (a.wind_w <= DEMO.wind.contract_mw * 1e6).all()
    assert (a.carbon_g_per_kwh > 0).all()
    blocks = a.wind_w.reshape(-1, 4)
    assert (blocks == blocks[:, :1]).all()  # hourly values held across slots, like hourly CSV data
    np.testing.assert_array_equal(
        a.grid_cap_w, grid_cap_w_at(DEMO, [a.slot_start(i) for i in range(a.n_slots)])
    )


def test_embedded_monthly_capacity_factor_matches_fit() -> None:
    """Over many synthetic years each month's mean CF is close to the fitted monthly mean."""
    site = load_site("demo").model_copy(update={"slot_minutes": 60})
    cfs = []
    for seed in range(12):
        s = embedded_energy(site, datetime(2023, 1, 1, tzinfo=UTC), 365, seed=seed)
        cfs.append(s.wind_w / (site.wind.contract_mw * 1e6))
    cf = np.concatenate(cfs)
    months = np.tile(
        (np.datetime64("2023-01-01T00") + np.arange(8760)).astype("datetime64[M]").astype(np.int64) % 12, 12
    )
    fitted = [m["cf_mean"] for m in energy_model()["months"]]
    for m in range(12):
        assert cf[months == m].mean() == pytest.approx(fitted[m], abs=0.05), m
    # persistence: hour-to-hour correlation as strong as the fit says (~0.97 on normal scores)
    assert np.corrcoef(cf[:-1], cf[1:])[0, 1] > 0.9


def test_embedded_carbon_anticorrelated_with_wind() -> None:
    s = embedded_energy(BIG, T0, 120, seed=1)
    assert np.corrcoef(s.wind_w, s.carbon_g_per_kwh)[0, 1] < -0.3
    assert energy_model()["carbon_wind_rho"] < -0.3  # fitted on NL data


def test_load_energy_dispatch(tmp_path: Path, shared_data: None) -> None:
    assert load_energy(None, DEMO, T0, 1).source.startswith("synthetic")
    assert load_energy("embedded", DEMO, T0, 1, seed=3).source.endswith("(seed 3)")
    s = load_energy(str(nl_energy_csv()), DEMO, T0, 1)
    assert s.n_slots == 96 and str(nl_energy_csv()) in s.source


# --------------------------------------------------------------------------------- forecasts


def test_unknown_forecast_kind_lists_allowed() -> None:
    s = embedded_energy(DEMO, T0, 1)
    with pytest.raises(
        InputError, match=r"unknown forecast kind 'oracle'; allowed: \['perfect', 'persistence', 'noisy'\]"
    ):
        make_forecaster("oracle", s)
    assert FORECAST_KINDS == ("perfect", "persistence", "noisy")


def test_perfect_and_persistence() -> None:
    s = embedded_energy(DEMO, T0, 4, seed=2)
    f = make_forecaster("perfect", s).forecast(10, 96)
    np.testing.assert_array_equal(f.wind_w, s.wind_w[10:106])
    assert f.start_utc == s.slot_start(10)
    p = make_forecaster("persistence", s).forecast(100, 200)
    assert (p.wind_w == s.wind_w[100]).all()
    assert p.carbon_g_per_kwh[0] == s.carbon_g_per_kwh[100]
    np.testing.assert_array_equal(p.carbon_g_per_kwh[1:97], s.carbon_g_per_kwh[100 + 1 - 96 : 100 + 97 - 96])
    np.testing.assert_array_equal(p.grid_cap_w, s.grid_cap_w[100:300])  # caps are contract values, exact
    np.testing.assert_array_equal(p.price_eur_per_mwh, s.price_eur_per_mwh[100:300])


def test_noisy_deterministic_caps_exact() -> None:
    s = embedded_energy(DEMO, T0, 4, seed=2)
    f1 = make_forecaster("noisy", s, seed=5).forecast(20, 96)
    f2 = make_forecaster("noisy", s, seed=5).forecast(20, 96)
    f3 = make_forecaster("noisy", s, seed=6).forecast(20, 96)
    np.testing.assert_array_equal(f1.wind_w, f2.wind_w)
    assert not np.array_equal(f1.wind_w, f3.wind_w)
    assert f1.wind_w[0] == s.wind_w[20]  # lead 0 is known
    np.testing.assert_array_equal(f1.grid_cap_w, s.grid_cap_w[20:116])
    np.testing.assert_array_equal(f1.site_max_w, s.site_max_w[20:116])


def test_noisy_error_grows_and_day_ahead_nmae_in_published_range(shared_data: None) -> None:
    """On real NL wind: the wind error grows with lead time, and the 24 h-lead NMAE (share of capacity) lies
    in the 5-8 % band published for offshore wind (sources in scheduler.signals.NOISY_WIND_NMAE_24H)."""
    s = read_energy_csv(nl_energy_csv(), BIG, start=datetime(2022, 1, 1, tzinfo=UTC), days=400)
    cap_w = BIG.wind.contract_mw * 1e6
    f = make_forecaster("noisy", s, seed=0, wind_capacity_w=cap_w)
    errs = []
    c_errs = []
    for slot in range(0, s.n_slots - 100, 97):
        fc = f.forecast(slot, 97)
        errs.append(np.abs(fc.wind_w - s.wind_w[slot : slot + 97]) / cap_w)
        c_errs.append(np.abs(fc.carbon_g_per_kwh / s.carbon_g_per_kwh[slot : slot + 97] - 1))
    nmae = np.mean(errs, axis=0)
    leads = [0, 4, 12, 24, 48, 96]
    assert nmae[0] == 0
    assert all(nmae[a] < nmae[b] for a, b in itertools.pairwise(leads))
    assert 0.05 <= nmae[96] <= 0.08
    mape = np.mean(c_errs, axis=0)
    assert mape[4] < mape[96] and 0.05 <= mape[96] <= 0.12


def test_noisy_longer_horizon_extends_shorter() -> None:
    s = embedded_energy(DEMO, T0, 4, seed=2)
    f = make_forecaster("noisy", s, seed=9, wind_capacity_w=DEMO.wind.contract_mw * 1e6)
    short, long = f.forecast(30, 48), f.forecast(30, 96)
    np.testing.assert_array_equal(short.wind_w, long.wind_w[:48])
    np.testing.assert_array_equal(short.carbon_g_per_kwh, long.carbon_g_per_kwh[:48])


def test_timestamps_with_offsets_converted_to_utc(tmp_path: Path) -> None:
    lines = ["timestamp_utc,wind_mw,carbon_g_per_kwh"]
    lines += [f"2023-01-01T0{h + 1}:00:00+01:00,{h},100" for h in range(3)]  # = 00:00..02:00 UTC
    s = read_energy_csv(_csv(tmp_path, "\n".join(lines) + "\n"), DEMO)
    assert s.start_utc == datetime(2023, 1, 1, tzinfo=UTC) and s.n_slots == 12
    assert s.wind_w[4] == pytest.approx(1e6)


# ------------------------------------------------------------- UTF-8 and gaps (issue 16)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\x80abc"])
def test_energy_csv_not_utf8_names_the_file_and_line(tmp_path: Path, bad: bytes) -> None:
    ts = _hours(3)
    p = tmp_path / "energy.csv"
    p.write_bytes(f"timestamp_utc,wind_mw,carbon_g_per_kwh\n{ts[0]},1,100\n".encode() + bad + b"\n")
    with pytest.raises(InputError, match=rf"{p.name}: not UTF-8 text: byte \d+ \(line 3\)"):
        read_energy_csv(p, DEMO)


@pytest.mark.parametrize("missing", [[3], [3, 4, 5], [1, 7]])
def test_energy_gaps_are_said_with_their_count_and_strict_refuses_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, missing: list[int]
) -> None:
    ts = _hours(12)
    rows = [f"{t},1.0,{100 + i}" for i, t in enumerate(ts) if i not in missing]
    p = _csv(tmp_path, "timestamp_utc,wind_mw,carbon_g_per_kwh\n" + "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="scheduler.signals"):
        s = read_energy_csv(p, DEMO)
    runs = len([i for i in missing if i - 1 not in missing])
    assert len(s.gaps) == 2 * runs  # both columns of each missing run
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{2 * runs} gap(s) filled" in m and str(p) in m for m in warned), warned
    with pytest.raises(InputError, match=rf"{2 * runs} gap\(s\) in the data \(strict"):
        read_energy_csv(p, DEMO, strict=True)


def test_energy_without_gaps_says_nothing_and_passes_strict(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ts = _hours(6)
    p = _csv(tmp_path, "timestamp_utc,wind_mw,carbon_g_per_kwh\n" + "\n".join(f"{t},1,100" for t in ts) + "\n")
    with caplog.at_level("WARNING", logger="scheduler.signals"):
        s = read_energy_csv(p, DEMO, strict=True)
    assert s.gaps == () and not [r for r in caplog.records if r.levelname == "WARNING"]
