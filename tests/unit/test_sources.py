"""Live signal sources (scheduler/sources/): parsers, the one interface, cache and fallback, the refresher.

Every HTTP answer is a recorded response from tests/fixtures/sources/ -- constructed by hand in each API's
documented shape (see the README there), not real data. No test opens a socket: sources get an injected
fetcher that serves the fixtures and records what was asked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from scheduler.errors import InputError
from scheduler.models import load_site
from scheduler.signals import embedded_energy, grid_cap_w_at
from scheduler.sources import (
    CachedSource,
    CongestionFeedSource,
    ElectricityMapsSource,
    EnergyFrame,
    EntsoeSource,
    HttpResponse,
    NedSource,
    Points,
    Refresher,
    SourceError,
    merge,
)
from scheduler.sources.base import env_key, prefer_finest
from scheduler.sources.congestion import parse_feed
from scheduler.sources.electricitymaps import parse_intensity
from scheduler.sources.entsoe import parse_document, resolution_s
from scheduler.sources.ned import parse_page

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
T0 = datetime(2026, 12, 3, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 16, tzinfo=UTC)


def fx(name: str) -> str:
    return (FIX / name).read_text()


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


class Recorder:
    """An HttpGet serving fixtures chosen by ``route(url, params) -> (status, fixture name)``."""

    def __init__(self, route: Callable[[str, Mapping[str, str]], tuple[int, str]]) -> None:
        self.route = route
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def __call__(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpResponse:
        self.calls.append((url, dict(params), dict(headers)))
        status, name = self.route(url, params)
        return HttpResponse(status, fx(name))


def entsoe_route(url: str, params: Mapping[str, str]) -> tuple[int, str]:
    return 200, {"A44": "entsoe_a44_prices.xml", "A65": "entsoe_a65_load.xml", "A69": "entsoe_a69_wind_solar.xml"}[
        params["documentType"]
    ]


def ned_route(url: str, params: Mapping[str, str]) -> tuple[int, str]:
    return 200, f"ned_offshore_page{params['page']}.json"


def em_route(url: str, params: Mapping[str, str]) -> tuple[int, str]:
    return 200, "electricitymaps_forecast.json" if url.endswith("/forecast") else "electricitymaps_history.json"


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t.timestamp()

    def __call__(self) -> float:
        return self.t


class Broken:
    """A source whose network is down after ``ok`` good fetches."""

    def __init__(self, inner: object, ok: int) -> None:
        self.inner, self.ok = inner, ok

    @property
    def name(self) -> str:
        return self.inner.name  # type: ignore[attr-defined, no-any-return]

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        if self.ok <= 0:
            raise SourceError(f"{self.name}: connection refused")
        self.ok -= 1
        return self.inner.fetch(start, end)  # type: ignore[attr-defined, no-any-return]


# ---------------------------------------------------------------------------------------------- ENTSO-E


def _xml_values(text: str, tag: str) -> list[float]:
    return [float(v) for v in re.findall(rf"<{re.escape(tag)}>([^<]+)</{re.escape(tag)}>", text)]


def test_entsoe_prices_variable_blocks_and_two_resolutions() -> None:
    text = fx("entsoe_a44_prices.xml")
    rows = parse_document(text, "price.amount")
    raw = _xml_values(text, "price.amount")
    day1, day2 = [r for r in rows if r[1] == 3600], [r for r in rows if r[1] == 900]
    assert len(day1) == 24 and len(day2) == 96
    assert day1[0][0] == ts("2026-12-02T23:00Z") and day2[0][0] == ts("2026-12-03T23:00Z")
    # curve A03: positions 5 and 6 are omitted from the file and repeat position 4
    assert len(raw) == 22 + 96
    assert day1[4][2] == day1[5][2] == day1[3][2] == raw[3]
    assert day1[6][2] == raw[4]
    assert [r[2] for r in day2] == raw[22:]


def test_entsoe_fixed_curve_missing_position_is_missing_data() -> None:
    text = fx("entsoe_a65_load.xml")
    full = parse_document(text, "quantity")
    assert len(full) == 192 and all(r[1] == 900 for r in full)
    cut = re.sub(r"\s*<Point>\s*<position>10</position>\s*<quantity>[^<]+</quantity>\s*</Point>", "", text)
    assert cut != text
    rows = parse_document(cut, "quantity")
    assert len(rows) == 191 and full[9][0] not in {r[0] for r in rows}


def test_entsoe_keeps_only_the_asked_production_type() -> None:
    text = fx("entsoe_a69_wind_solar.xml")
    b18 = parse_document(text, "quantity", psr_type="B18")
    b16 = parse_document(text, "quantity", psr_type="B16")
    assert len(b18) == len(b16) == 192
    offshore_block = text[text.index("<psrType>B18</psrType>") :]
    assert [r[2] for r in b18] == _xml_values(offshore_block, "quantity")
    assert [r[2] for r in b18] != [r[2] for r in b16]


@pytest.mark.parametrize(
    "body,needle",
    [
        (fx("entsoe_ack_no_data.xml"), "No matching data found"),
        ("<html>502 Bad Gateway</html", "not XML"),
        ("<Other_Document/>", "unexpected document Other_Document"),
        (fx("entsoe_a65_load.xml").replace("<resolution>PT15M</resolution>", "<resolution>15min</resolution>"),
         "resolution '15min'"),
        (fx("entsoe_a65_load.xml").replace("<position>3</position>", "<position>999</position>"), "position 999"),
        (fx("entsoe_a65_load.xml").replace("<quantity>", "<quantity>x", 1), "not a number"),
    ],
)  # fmt: skip
def test_entsoe_bad_answers_are_source_errors_naming_the_cause(body: str, needle: str) -> None:
    with pytest.raises(SourceError, match=re.escape(needle)):
        parse_document(body, "quantity")


@pytest.mark.parametrize("value,seconds", [("PT15M", 900), ("PT30M", 1800), ("PT60M", 3600), ("PT1H", 3600),
                                           ("P1D", 86400), ("P7D", 604800)])  # fmt: skip
def test_entsoe_resolutions(value: str, seconds: int) -> None:
    assert resolution_s(value) == seconds


def test_entsoe_source_asks_three_documents_and_turns_wind_into_a_capacity_factor() -> None:
    rec = Recorder(entsoe_route)
    src = EntsoeSource(token="tok-123", offshore_capacity_mw=4700.0, http=rec)
    frame = src.fetch(T0, T0 + timedelta(days=2))
    assert sorted(c[1]["documentType"] for c in rec.calls) == ["A44", "A65", "A69"]
    for url, params, _ in rec.calls:
        assert url == "https://web-api.tp.entsoe.eu/api"
        assert params["securityToken"] == "tok-123"
        assert (params["periodStart"], params["periodEnd"]) == ("202612030000", "202612050000")
    a69 = next(p for _, p, _ in rec.calls if p["documentType"] == "A69")
    assert a69["psrType"] == "B18" and a69["in_Domain"] == "10YNL----------L"
    mw = frame.columns["offshore_wind_mw"].value
    assert np.allclose(frame.columns["wind_capacity_factor"].value, np.clip(mw / 4700.0, 0, 1))
    assert len(frame.columns["price_eur_per_mwh"]) == 120 and len(frame.columns["load_mw"]) == 192


def test_entsoe_http_error_with_an_acknowledgement_carries_the_reason() -> None:
    src = EntsoeSource("t", 4700.0, http=Recorder(lambda u, p: (400, "entsoe_ack_no_data.xml")))
    with pytest.raises(SourceError, match="No matching data found"):
        src.fetch(T0, T0 + timedelta(days=1))
    src = EntsoeSource("t", 4700.0, http=lambda u, p, h: HttpResponse(401, "Unauthorized"))
    with pytest.raises(SourceError, match="HTTP 401"):
        src.fetch(T0, T0 + timedelta(days=1))


@pytest.mark.parametrize("seed", range(6))
def test_prefer_finest_keeps_fine_intervals_and_coarse_ones_only_where_uncovered(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hours = [(h * 3600, 3600, float(rng.normal())) for h in range(12)]
    fine_hours = sorted(rng.choice(12, size=int(rng.integers(1, 8)), replace=False).tolist())
    quarters = [(h * 3600 + q * 900, 900, float(rng.normal())) for h in fine_hours for q in range(4)]
    kept = prefer_finest(hours + quarters)
    assert [r for r in kept if r[1] == 900] == sorted(quarters)
    assert {r[0] // 3600 for r in kept if r[1] == 3600} == set(range(12)) - set(fine_hours)


# ------------------------------------------------------------------------------------------------- NED


def test_ned_follows_pages_and_reads_kw_and_percentage() -> None:
    rec = Recorder(ned_route)
    frame = NedSource(token="ned-key", http=rec).fetch(T0, T0 + timedelta(days=2))
    assert [c[1]["page"] for c in rec.calls] == ["1", "2"]
    url, params, headers = rec.calls[0]
    assert url == "https://api.ned.nl/v1/utilizations" and headers["X-AUTH-TOKEN"] == "ned-key"
    assert headers["Accept"] == "application/ld+json"
    assert (params["type"], params["point"], params["classification"]) == ("17", "0", "1")
    assert params["validfrom[after]"] == "2026-12-03T00:00:00Z"
    members = (
        json.loads(fx("ned_offshore_page1.json"))["hydra:member"]
        + json.loads(fx("ned_offshore_page2.json"))["hydra:member"]
    )
    cf = frame.columns["wind_capacity_factor"]
    assert len(cf) == 48 and set(cf.step_s.tolist()) == {3600}
    assert cf.value.tolist() == [m["percentage"] for m in members]
    assert frame.columns["offshore_wind_mw"].value.tolist() == [m["capacity"] / 1000 for m in members]


@pytest.mark.parametrize(
    "body,needle",
    [
        ("not json", "not JSON"),
        ('{"hydra:member": 3}', "no hydra:member list"),
        ('{"hydra:member": [{"validfrom": "2026-12-03T00:00:00+00:00"}]}', "hydra:member[0]"),
        ('{"hydra:member": [{"validfrom": "2026-12-03T01:00:00+00:00", "validto": "2026-12-03T00:00:00+00:00",'
         ' "capacity": 1, "percentage": 0.1}]}', "not after"),
        ('{"hydra:member": [{"validfrom": "yesterday", "validto": "2026-12-03T00:00:00+00:00",'
         ' "capacity": 1, "percentage": 0.1}]}', "'yesterday' is not an ISO 8601 time"),
    ],
)  # fmt: skip
def test_ned_bad_answers(body: str, needle: str) -> None:
    with pytest.raises(SourceError, match=re.escape(needle)):
        parse_page(body)


def test_ned_runaway_pagination_is_an_error() -> None:
    page1 = fx("ned_offshore_page1.json")
    src = NedSource("k", http=lambda u, p, h: HttpResponse(200, page1))
    with pytest.raises(SourceError, match="more than 50 pages"):
        src.fetch(T0, T0 + timedelta(days=2))


# -------------------------------------------------------------------------------------- Electricity Maps


def test_electricitymaps_history_wins_over_forecast_and_null_hours_are_skipped() -> None:
    rec = Recorder(em_route)
    frame = ElectricityMapsSource(token="em-key", http=rec).fetch(NOW - timedelta(days=1), NOW + timedelta(days=2))
    assert [c[0].rsplit("/", 1)[1] for c in rec.calls] == ["forecast", "history"]
    assert all(c[2]["auth-token"] == "em-key" and c[1]["zone"] == "NL" for c in rec.calls)
    fc = {ts(e["datetime"]): e["carbonIntensity"] for e in json.loads(fx("electricitymaps_forecast.json"))["forecast"]}
    hist = {ts(e["datetime"]): e["carbonIntensity"] for e in json.loads(fx("electricitymaps_history.json"))["history"]}
    got = dict(
        zip(frame.columns["carbon_g_per_kwh"].start_s.tolist(), frame.columns["carbon_g_per_kwh"].value.tolist())
    )
    overlap = set(fc) & set(hist)
    assert overlap and all(got[t] == hist[t] for t in overlap)  # measured beats forecast
    nulls = {t for t, v in fc.items() if v is None}
    assert nulls and not (nulls & set(got))
    assert all(got[t] == v for t, v in fc.items() if v is not None and t not in hist)


def test_electricitymaps_errors() -> None:
    src = ElectricityMapsSource("k", http=lambda u, p, h: HttpResponse(401, fx("electricitymaps_401.json")))
    with pytest.raises(SourceError, match="HTTP 401.*Invalid authentication token"):
        src.fetch(NOW, NOW + timedelta(days=1))
    with pytest.raises(SourceError, match="no 'forecast' list"):
        parse_intensity('{"zone": "NL"}', "forecast", 3600)
    with pytest.raises(SourceError, match="negative"):
        parse_intensity('{"forecast": [{"carbonIntensity": -1, "datetime": "2026-12-03T00:00:00Z"}]}', "forecast", 3600)
    with pytest.raises(ValueError, match="granularity 'daily'"):
        ElectricityMapsSource("k", granularity="daily")


# ------------------------------------------------------------------------------------------ congestion


def test_congestion_feed_events_in_the_window_and_the_lower_cap_where_they_overlap() -> None:
    src = CongestionFeedSource(
        "https://grid.example/feed", token="g", http=Recorder(lambda u, p: (200, "congestion_feed.json"))
    )
    frame = src.fetch(T0, T0 + timedelta(days=2))
    caps = frame.columns["grid_cap_mw"]
    assert caps.value.tolist() == [40.0, 25.0]  # the 2026-12-10 event lies outside the window
    slots = frame.on_slots(T0, 900, 96)["grid_cap_mw"]
    hour = lambda h: int(h * 4)  # noqa: E731
    assert np.isnan(slots[: hour(16)]).all() and np.isnan(slots[hour(20) :]).all()
    assert (slots[hour(16) : hour(18.5)] == 40.0).all() and (slots[hour(18.5) : hour(20)] == 25.0).all()


@pytest.mark.parametrize(
    "event,needle",
    [
        ({"start_utc": "2026-12-03T10:00Z", "end_utc": "2026-12-03T09:00Z", "cap_mw": 1}, "must be after start_utc"),
        ({"start_utc": "2026-12-03T10:00Z", "end_utc": "2026-12-03T11:00Z", "cap_mw": -5}, "cap_mw -5.0 must be"),
        ({"start_utc": "2026-12-03T10:00Z", "end_utc": "2026-12-03T11:00Z", "cap_mw": "lots"}, "'lots' is not a number"),
        ({"start_utc": "2026-12-03T10:00Z", "cap_mw": 3}, "field end_utc missing"),
        ({"start_utc": "soon", "end_utc": "2026-12-03T11:00Z", "cap_mw": 3}, "'soon' is not an ISO 8601"),
    ],
)  # fmt: skip
def test_congestion_feed_refuses_bad_events_naming_the_field(event: dict[str, object], needle: str) -> None:
    body = json.dumps({"format": "windward.congestion/v1", "events": [event]})
    with pytest.raises(SourceError, match=re.escape("events[0]")) as e:
        parse_feed(body)
    assert needle in str(e.value)


def test_congestion_feed_refuses_another_format() -> None:
    with pytest.raises(SourceError, match="expected 'windward.congestion/v1'"):
        parse_feed('{"format": "stedin/v2", "events": []}')
    with pytest.raises(SourceError, match="events must be a list"):
        parse_feed('{"format": "windward.congestion/v1"}')


# --------------------------------------------------------------------------------------- the slot grid


def _slow_on_slots(rows: list[tuple[int, int, float]], t0: int, slot_s: int, n: int, use_min: bool) -> list[float]:
    out = []
    for i in range(n):
        a, b = t0 + i * slot_s, t0 + (i + 1) * slot_s
        parts = [(min(b, s + d) - max(a, s), v) for s, d, v in rows if min(b, s + d) - max(a, s) > 0]
        if not parts:
            out.append(math.nan)
        elif use_min:
            out.append(min(v for _, v in parts))
        else:
            out.append(sum(w * v for w, v in parts) / sum(w for w, _ in parts))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_on_slots_is_the_overlap_weighted_mean_and_the_min_for_caps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = int(T0.timestamp())
    step = int(rng.choice([300, 900, 1800, 3600, 7200]))
    slot = int(rng.choice([300, 900, 3600]))
    n_pts = int(rng.integers(1, 40))
    keep = rng.random(n_pts) > 0.2  # holes
    offset = int(rng.integers(-3, 3)) * step
    rows = [(t0 + offset + i * step, step, float(rng.uniform(0, 500))) for i in range(n_pts) if keep[i]]
    n = int(rng.integers(1, 30))
    frame = EnergyFrame("x", {"carbon_g_per_kwh": Points.of(rows), "grid_cap_mw": Points.of(rows)})
    got = frame.on_slots(T0, slot, n)
    np.testing.assert_allclose(got["carbon_g_per_kwh"], _slow_on_slots(rows, t0, slot, n, False), rtol=1e-12)
    np.testing.assert_allclose(got["grid_cap_mw"], _slow_on_slots(rows, t0, slot, n, True), rtol=1e-12)


def test_hourly_values_are_held_over_the_quarter_hours() -> None:
    rows = [(int(T0.timestamp()) + h * 3600, 3600, 100.0 + h) for h in range(3)]
    got = EnergyFrame("x", {"price_eur_per_mwh": Points.of(rows)}).on_slots(T0, 900, 12)["price_eur_per_mwh"]
    assert got.tolist() == [100.0] * 4 + [101.0] * 4 + [102.0] * 4


def test_a_frame_refuses_an_unknown_column() -> None:
    with pytest.raises(ValueError, match="unknown columns \\['wind_mw'\\]"):
        EnergyFrame("x", {"wind_mw": Points.of([])})


# ------------------------------------------------------------------------------------------ API keys


def test_keys_come_from_the_environment_and_a_missing_one_names_the_variable() -> None:
    env = {"ENTSOE_API_KEY": "e", "NED_API_KEY": "n", "ELECTRICITYMAPS_API_KEY": "m", "WINDWARD_CONGESTION_TOKEN": "c"}
    assert EntsoeSource.from_env(4700.0, environ=env).token == "e"
    assert NedSource.from_env(environ=env).token == "n"
    assert ElectricityMapsSource.from_env(environ=env).token == "m"
    assert CongestionFeedSource.from_env("https://x", environ=env).token == "c"
    assert CongestionFeedSource.from_env("https://x", environ={}).token is None  # the feed may be open
    for var, make in [
        ("ENTSOE_API_KEY", lambda e: EntsoeSource.from_env(4700.0, environ=e)),
        ("NED_API_KEY", lambda e: NedSource.from_env(environ=e)),
        ("ELECTRICITYMAPS_API_KEY", lambda e: ElectricityMapsSource.from_env(environ=e)),
    ]:
        with pytest.raises(InputError, match=f"environment variable {var} is not set"):
            make({**env, var: "  "})
    with pytest.raises(InputError, match="FOO"):
        env_key("FOO", {})


# ---------------------------------------------------------------------------------- cache and fallback


def test_cache_falls_back_to_the_last_good_forecast_and_reports_its_staleness(tmp_path: Path) -> None:
    clock = Clock(NOW)
    src = Broken(NedSource("k", http=Recorder(ned_route)), ok=1)
    cached = CachedSource(src, tmp_path, clock)
    assert cached.staleness_s() is None
    first = cached.fetch(T0, T0 + timedelta(days=2))
    assert first.fresh and cached.staleness_s() == 0.0
    assert json.loads((tmp_path / "ned.json").read_text())["source"] == "ned"
    for dt in (60.0, 900.0, 7200.0):
        clock.t = NOW.timestamp() + dt
        again = cached.fetch(T0, T0 + timedelta(days=2))
        assert not again.fresh and again.fetched_unix_s == NOW.timestamp()
        assert (
            again.frame.columns["wind_capacity_factor"].value.tolist()
            == first.frame.columns["wind_capacity_factor"].value.tolist()
        )
        assert cached.staleness_s() == dt
    assert cached.failures == 3 and "connection refused" in (cached.last_error or "")


def test_cache_survives_a_restart_and_a_corrupt_file_is_ignored(tmp_path: Path) -> None:
    clock = Clock(NOW)
    CachedSource(NedSource("k", http=Recorder(ned_route)), tmp_path, clock).fetch(T0, T0 + timedelta(days=2))
    clock.t += 3600
    restarted = CachedSource(Broken(NedSource("k"), ok=0), tmp_path, clock)
    assert restarted.staleness_s() == 3600.0
    res = restarted.fetch(T0, T0 + timedelta(days=2))
    assert not res.fresh and len(res.frame.columns["wind_capacity_factor"]) == 48
    (tmp_path / "ned.json").write_text("{ half a file")
    fresh_start = CachedSource(Broken(NedSource("k"), ok=0), tmp_path, clock)
    assert fresh_start.staleness_s() is None
    with pytest.raises(SourceError, match="connection refused"):
        fresh_start.fetch(T0, T0 + timedelta(days=2))


def test_min_interval_serves_the_cache_without_asking(tmp_path: Path) -> None:
    clock = Clock(NOW)
    rec = Recorder(ned_route)
    cached = CachedSource(NedSource("k", http=rec), tmp_path, clock, min_interval_s=300)
    cached.fetch(T0, T0 + timedelta(days=2))
    n = len(rec.calls)
    clock.t += 299
    assert not cached.fetch(T0, T0 + timedelta(days=1)).fresh and len(rec.calls) == n
    assert cached.fetch(T0, T0 + timedelta(days=3)).fresh  # a wider window is asked for
    clock.t += 300
    assert cached.fetch(T0, T0 + timedelta(days=1)).fresh


# -------------------------------------------------------------------------------------------- refresher


def _refresher(tmp_path: Path, clock: Clock, days: float = 28.0, ok: int = 10**6) -> Refresher:
    site = load_site("rotterdam-100k")
    base = embedded_energy(site, T0, days)
    sources = [
        CachedSource(Broken(NedSource("n", http=Recorder(ned_route)), ok), tmp_path, clock),
        CachedSource(Broken(EntsoeSource("e", 4700.0, http=Recorder(entsoe_route)), ok), tmp_path, clock),
        CachedSource(Broken(ElectricityMapsSource("m", http=Recorder(em_route)), ok), tmp_path, clock),
        CachedSource(Broken(CongestionFeedSource("https://g", http=Recorder(lambda u, p: (200, "congestion_feed.json"))), ok),
                     tmp_path, clock),
    ]  # fmt: skip
    return Refresher(site, base, sources, clock, refresh_s=900, lookback_s=16 * 3600, horizon_s=32 * 3600)


def test_refresher_merges_every_source_into_the_series(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock)
    base = r.series
    s = r.maybe_refresh()
    assert s is not None and s.n_slots == base.n_slots and "live: ned" in s.source
    site = r.site
    # wind: NED first (hourly capacity factors, held over the quarters) x the wind contract
    members = (
        json.loads(fx("ned_offshore_page1.json"))["hydra:member"]
        + json.loads(fx("ned_offshore_page2.json"))["hydra:member"]
    )
    want_wind = np.repeat([m["percentage"] * site.wind.contract_mw * 1e6 for m in members], 4)
    np.testing.assert_allclose(s.wind_w[: 48 * 4], want_wind)
    # carbon: Electricity Maps (history before forecast), only where it has values
    hist = {ts(e["datetime"]): e["carbonIntensity"] for e in json.loads(fx("electricitymaps_history.json"))["history"]}
    for t, v in hist.items():
        i = (t - int(T0.timestamp())) // 900
        if i >= 0:
            assert (s.carbon_g_per_kwh[i : i + 4] == v).all()
    # price: ENTSO-E (the 2026-12-03T23:00Z day is at PT15M)
    prices = parse_document(fx("entsoe_a44_prices.xml"), "price.amount")
    q = {a: v for a, step, v in prices if step == 900}
    for a, v in q.items():
        i = (a - int(T0.timestamp())) // 900
        if i < 48 * 4:
            assert s.price_eur_per_mwh[i] == v
    # grid cap: the contract, lowered only where the congestion events hold
    contract = grid_cap_w_at(site, [s.slot_start(i) for i in range(s.n_slots)])
    i16, i185, i20 = 16 * 4, int(18.5 * 4), 20 * 4
    assert (s.grid_cap_w[i16:i185] == 40e6).all() and (s.grid_cap_w[i185:i20] == 25e6).all()
    assert (s.grid_cap_w[:i16] == contract[:i16]).all() and (s.grid_cap_w[i20:] == contract[i20:]).all()
    # the feed's events, for the service to record as congestion events
    assert r.announced_caps() == [
        (datetime(2026, 12, 3, 16, tzinfo=UTC), datetime(2026, 12, 3, 19, tzinfo=UTC), 40.0, "congestion"),
        (datetime(2026, 12, 3, 18, 30, tzinfo=UTC), datetime(2026, 12, 3, 20, tzinfo=UTC), 25.0, "congestion"),
    ]
    # outside the window the base is untouched
    far = (NOW + timedelta(days=3) - T0) // timedelta(seconds=900)
    assert s.wind_w[far:].tolist() == base.wind_w[far:].tolist()
    assert s.carbon_g_per_kwh[far:].tolist() == base.carbon_g_per_kwh[far:].tolist()


def test_refresher_runs_when_due_and_keeps_live_values_when_sources_fail(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock, ok=1)
    first = r.maybe_refresh()
    assert first is not None and r.refreshes == 1
    clock.t += 899
    assert not r.due() and r.maybe_refresh() is None
    clock.t += 1
    second = r.maybe_refresh()  # every source now fails: the cache answers
    assert second is not None and "stale 900 s" in second.source
    np.testing.assert_array_equal(second.wind_w, first.wind_w)
    np.testing.assert_array_equal(second.grid_cap_w, first.grid_cap_w)
    assert r.staleness_s() == {"ned": 900.0, "entsoe": 900.0, "electricitymaps": 900.0, "congestion": 900.0}


def test_refresher_without_any_good_fetch_keeps_the_base_and_reports_infinite_staleness(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock, ok=0)
    base = r.series
    s = r.refresh()
    assert "ned (no data)" in s.source
    np.testing.assert_array_equal(s.wind_w, base.wind_w)
    assert all(math.isinf(v) for v in r.staleness_s().values())


def test_refresher_extends_a_short_series_with_the_contract_cap(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock, days=1.0)
    base = r.series
    s = r.refresh()
    assert base.n_slots == 96 and s.n_slots == 96 + 24 * 4  # now + 32 h reaches 2026-12-05T00:00Z
    contract = grid_cap_w_at(r.site, [s.slot_start(i) for i in range(96, s.n_slots)])
    assert (s.grid_cap_w[96:] == contract).all() and (s.site_max_w[96:] == base.site_max_w[-1]).all()
    assert not np.array_equal(s.wind_w[96:], np.full(96, base.wind_w[-1]))  # live wind, not the held last slot


def test_refresher_refuses_bad_settings(tmp_path: Path) -> None:
    site = load_site("demo")
    base = embedded_energy(site, T0, 1)
    with pytest.raises(ValueError, match="refresh_s must be > 0"):
        Refresher(site, base, [], Clock(NOW), refresh_s=0)
    with pytest.raises(ValueError, match="horizon_s"):
        Refresher(site, base, [], Clock(NOW), horizon_s=0)


def test_an_announced_cap_above_the_contract_never_raises_it() -> None:
    site = load_site("rotterdam-100k")
    base = embedded_energy(site, T0, 1)
    t = int(T0.timestamp())
    frame = EnergyFrame("congestion", {"grid_cap_mw": Points.of([(t, 3600, 10_000.0), (t + 3600, 3600, 50.0)])})
    s = merge(base, site, [frame], T0, 96)
    assert (s.grid_cap_w[:4] == base.grid_cap_w[:4]).all()
    assert (s.grid_cap_w[4:8] == np.minimum(base.grid_cap_w[4:8], 50e6)).all() and (s.grid_cap_w[4:8] == 50e6).all()
    assert (s.grid_cap_w[8:] == base.grid_cap_w[8:]).all()
    with pytest.raises(ValueError, match="not on the series' 900 s slot grid"):
        merge(base, site, [frame], T0 + timedelta(seconds=60), 4)


# ------------------------------------------------------------------------------------ live-signals file


def route_any(url: str, params: Mapping[str, str]) -> tuple[int, str]:
    if "entsoe" in url:
        return entsoe_route(url, params)
    if "ned.nl" in url:
        return ned_route(url, params)
    if "electricitymap" in url:
        return em_route(url, params)
    return 200, "congestion_feed.json"


ENV = {"ENTSOE_API_KEY": "e", "NED_API_KEY": "n", "ELECTRICITYMAPS_API_KEY": "m"}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "live-signals.yaml"


def test_the_live_signals_file_builds_a_refresher_of_every_source(tmp_path: Path) -> None:
    from scheduler.sources.config import build_refresher, load_live_signals

    cfg = load_live_signals(EXAMPLE)
    cfg = cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    site = load_site("rotterdam-100k")
    rec = Recorder(route_any)
    r = build_refresher(cfg, site, embedded_energy(site, T0, 28), Clock(NOW), http=rec, environ=ENV)
    assert [s.name for s in r.sources] == ["ned", "entsoe", "electricitymaps", "congestion"]
    assert (r.refresh_s, r.lookback_s, r.horizon_s) == (900.0, 86400.0, 172800.0)
    s = r.refresh()
    assert all(f"{n} 2026-12-03T16:00Z" in s.source for n in ("ned", "entsoe", "electricitymaps", "congestion"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "congestion.json", "electricitymaps.json", "entsoe.json", "ned.json"]  # fmt: skip
    ned_call = next(c for c in rec.calls if "ned.nl" in c[0])
    assert ned_call[1]["granularity"] == "4" and ned_call[2]["X-AUTH-TOKEN"] == "n"
    assert r.sources[0].min_interval_s == 60.0


def test_the_live_signals_file_needs_every_key_at_build_time(tmp_path: Path) -> None:
    from scheduler.sources.config import build_refresher, load_live_signals

    cfg = load_live_signals(EXAMPLE).model_copy(update={"cache_dir": str(tmp_path)})
    site = load_site("rotterdam-100k")
    for var in ENV:
        with pytest.raises(InputError, match=f"environment variable {var} is not set"):
            build_refresher(
                cfg, site, embedded_energy(site, T0, 1), Clock(NOW), environ={k: v for k, v in ENV.items() if k != var}
            )


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda d: d["sources"].append({"kind": "ned"}), "each source kind at most once"),
        (lambda d: d["sources"].append({"kind": "weather"}), "field sources.4"),
        (lambda d: d["sources"][1].pop("offshore_capacity_mw"), "field sources.1.entsoe.offshore_capacity_mw"),
        (lambda d: d["sources"][3].update(url="ftp://x"), "field sources.3.congestion.url"),
        (lambda d: d["sources"][0].update(granularity="hourly"), "field sources.0.ned.granularity"),
        (lambda d: d.update(refresh_s=0), "field refresh_s"),
        (lambda d: d.update(sources=[]), "field sources"),
        (lambda d: d.update(cache_dir=""), "field cache_dir"),
        (lambda d: d.update(refresh_every=5), "field refresh_every"),
    ],
)
def test_a_bad_live_signals_file_names_the_field(tmp_path: Path, edit: Callable[[dict], None], needle: str) -> None:  # type: ignore[type-arg]
    import yaml

    from scheduler.sources.config import load_live_signals

    d = yaml.safe_load(EXAMPLE.read_text())
    edit(d)
    p = tmp_path / "live.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(InputError, match=re.escape(needle)):
        load_live_signals(p)
