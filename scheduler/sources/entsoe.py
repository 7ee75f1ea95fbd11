"""ENTSO-E Transparency Platform (https://web-api.tp.entsoe.eu/api): day-ahead prices, load and wind forecasts.

Three requests per fetch, each ``GET /api?securityToken=...&periodStart=yyyyMMddHHmm&periodEnd=...`` (UTC):

* ``documentType=A44`` (day-ahead prices, ``in_Domain`` = ``out_Domain`` = the bidding zone): a
  ``Publication_MarketDocument``; points carry ``price.amount`` (EUR/MWh) -> ``price_eur_per_mwh``.
* ``documentType=A65&processType=A01`` (day-ahead total load forecast, ``outBiddingZone_Domain``): a
  ``GL_MarketDocument``; points carry ``quantity`` (MW) -> ``load_mw``.
* ``documentType=A69&processType=A01&psrType=B18`` (day-ahead wind and solar forecast, offshore wind only,
  ``in_Domain``): a ``GL_MarketDocument`` -> ``offshore_wind_mw``, and ``wind_capacity_factor`` =
  MW / ``offshore_capacity_mw`` (the zone's installed offshore capacity, given by the operator: ENTSO-E
  publishes it as a separate yearly document).

Document shape (both kinds, namespaces differ by version and are ignored): ``TimeSeries`` elements, each with
one or more ``Period`` = ``timeInterval/start``, ``timeInterval/end``, ``resolution`` (ISO 8601 duration:
PT15M, PT30M, PT60M, P1D) and ``Point`` = ``position`` (1-based) plus the value. ``curveType`` A01 lists every
position; A03 ("variable sized block") omits a position whose value equals the previous one, so a missing
position repeats the last value up to the period's end. A GL document's ``TimeSeries`` names its production
type in ``MktPSRType/psrType`` (B18 = wind offshore). When nothing matches the query the API answers an
``Acknowledgement_MarketDocument`` with a ``Reason/text`` (e.g. "No matching data found"): a SourceError.

Where the zone publishes the same hours at two resolutions (PT15M and PT60M), the finest is kept.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from scheduler.sources.base import (
    EnergyFrame,
    HttpGet,
    Points,
    SourceError,
    as_utc,
    check_status,
    env_key,
    httpx_get,
    parse_time,
    prefer_finest,
)

API_URL = "https://web-api.tp.entsoe.eu/api"
#: Environment variable holding the security token.
KEY_ENV = "ENTSOE_API_KEY"
#: EIC code of the Dutch bidding zone.
NL_ZONE = "10YNL----------L"
#: psrType of offshore wind.
PSR_WIND_OFFSHORE = "B18"

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, path: str, what: str) -> str:
    cur: ET.Element | None = el
    for part in path.split("/"):
        cur = _child(cur, part) if cur is not None else None
    if cur is None or cur.text is None:
        raise SourceError(f"ENTSO-E: {what}: element {path} missing")
    return cur.text.strip()


def resolution_s(value: str) -> int:
    """An ISO 8601 duration of the ENTSO-E kind (PT15M, PT60M, P1D) in seconds."""
    m = _DURATION.match(value.strip())
    if not m or not any(m.groups()):
        raise SourceError(f"ENTSO-E: resolution {value!r} is not an ISO 8601 duration such as PT15M or PT60M")
    d, h, mi = (int(x) if x else 0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60


def parse_document(xml_text: str, value_tag: str, psr_type: str | None = None) -> list[tuple[int, int, float]]:
    """Data intervals ``(start_s, step_s, value)`` of an ENTSO-E market document.

    ``value_tag``: ``price.amount`` (Publication_MarketDocument) or ``quantity`` (GL_MarketDocument).
    ``psr_type``: keep only TimeSeries of this production type (GL documents). An Acknowledgement document
    or a body that is not XML is a SourceError carrying the reason.
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise SourceError(f"ENTSO-E: answer is not XML ({e}): {xml_text[:200]!r}") from e
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reasons = [" ".join((_text(r, "text", "reason") if _child(r, "text") is not None else "").split())
                   for r in _children(root, "Reason")]  # fmt: skip
        raise SourceError(f"ENTSO-E: request refused: {'; '.join(reasons) or 'no reason given'}")
    if kind not in ("Publication_MarketDocument", "GL_MarketDocument"):
        raise SourceError(f"ENTSO-E: unexpected document {kind}; expected Publication_ or GL_MarketDocument")
    rows: list[tuple[int, int, float]] = []
    for ts in _children(root, "TimeSeries"):
        if psr_type is not None:
            psr = _child(ts, "MktPSRType")
            got = _text(psr, "psrType", "TimeSeries") if psr is not None else None
            if got != psr_type:
                continue
        curve = _child(ts, "curveType")
        variable = curve is not None and (curve.text or "").strip() == "A03"
        for period in _children(ts, "Period"):
            t0 = parse_time(_text(period, "timeInterval/start", "Period"), "ENTSO-E", "timeInterval/start")
            t1 = parse_time(_text(period, "timeInterval/end", "Period"), "ENTSO-E", "timeInterval/end")
            step = resolution_s(_text(period, "resolution", "Period"))
            n = (t1 - t0) // step
            if n <= 0 or (t1 - t0) % step:
                raise SourceError(f"ENTSO-E: Period {t0}..{t1} is not a whole number of {step} s steps")
            values: dict[int, float] = {}
            for pt in _children(period, "Point"):
                pos_s = _text(pt, "position", "Point")
                val_s = _text(pt, value_tag, f"Point {pos_s}")
                try:
                    pos, val = int(pos_s), float(val_s)
                except ValueError as e:
                    raise SourceError(f"ENTSO-E: Point position {pos_s!r} / {value_tag} {val_s!r} not a number") from e
                if not 1 <= pos <= n:
                    raise SourceError(f"ENTSO-E: Point position {pos} outside the period's 1..{n}")
                values[pos] = val
            last: float | None = None
            for pos in range(1, n + 1):
                if pos in values:
                    last = values[pos]
                elif not variable or last is None:
                    continue  # A01: a missing position is missing data
                rows.append((t0 + (pos - 1) * step, step, last))
    return prefer_finest(rows)


def _stamp(t: datetime) -> str:
    return as_utc(t).strftime("%Y%m%d%H%M")


@dataclass(frozen=True)
class EntsoeSource:
    """Day-ahead prices, load forecast and offshore wind forecast of one bidding zone."""

    token: str
    offshore_capacity_mw: float
    zone: str = NL_ZONE
    http: HttpGet | None = None
    url: str = API_URL

    def __post_init__(self) -> None:
        if not self.offshore_capacity_mw > 0:
            raise ValueError(f"offshore_capacity_mw must be > 0, got {self.offshore_capacity_mw}")

    @property
    def name(self) -> str:
        return "entsoe"

    @staticmethod
    def from_env(offshore_capacity_mw: float, zone: str = NL_ZONE, http: HttpGet | None = None,
                 environ: Mapping[str, str] | None = None) -> EntsoeSource:  # fmt: skip
        return EntsoeSource(env_key(KEY_ENV, environ), offshore_capacity_mw, zone, http)

    def _get(self, what: str, params: dict[str, str], start: datetime, end: datetime) -> str:
        http = self.http or httpx_get()
        q = {"securityToken": self.token, "periodStart": _stamp(start), "periodEnd": _stamp(end), **params}
        resp = http(self.url, q, {"Accept": "application/xml"})
        if resp.status != 200 and "Acknowledgement_MarketDocument" in resp.text:
            parse_document(resp.text, "quantity")  # raises with the reason
        check_status("ENTSO-E", what, resp)
        return resp.text

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        z = self.zone
        prices = parse_document(
            self._get("day-ahead prices (A44)", {"documentType": "A44", "in_Domain": z, "out_Domain": z}, start, end),
            "price.amount",
        )
        load = parse_document(
            self._get("load forecast (A65)",
                      {"documentType": "A65", "processType": "A01", "outBiddingZone_Domain": z}, start, end),
            "quantity",
        )  # fmt: skip
        wind = parse_document(
            self._get("wind forecast (A69)",
                      {"documentType": "A69", "processType": "A01", "in_Domain": z, "psrType": PSR_WIND_OFFSHORE},
                      start, end),
            "quantity", psr_type=PSR_WIND_OFFSHORE,
        )  # fmt: skip
        cap = self.offshore_capacity_mw
        return EnergyFrame(
            source=self.name,
            columns={
                "price_eur_per_mwh": Points.of(prices),
                "load_mw": Points.of(load),
                "offshore_wind_mw": Points.of(wind),
                "wind_capacity_factor": Points.of((a, s, min(max(v / cap, 0.0), 1.0)) for a, s, v in wind),
            },
        )
