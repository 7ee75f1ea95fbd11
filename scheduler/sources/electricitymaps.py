"""Electricity Maps (https://api.electricitymap.org/v3): grid carbon intensity, forecast and recent history.

``GET /v3/carbon-intensity/forecast?zone=NL`` and ``GET /v3/carbon-intensity/history?zone=NL`` with header
``auth-token: <key>``. Answers::

    {"zone": "NL", "forecast": [{"carbonIntensity": 312, "datetime": "2026-12-03T17:00:00.000Z"}, ...],
     "updatedAt": "2026-12-03T16:41:09.123Z"}
    {"zone": "NL", "history": [{"carbonIntensity": 298, "datetime": "...", "updatedAt": "...",
                                "isEstimated": false, ...}, ...]}

Each entry is one interval starting at ``datetime`` (gCO2eq/kWh, hourly unless ``temporal_granularity`` asks
otherwise; other granularities are asked with ``temporalGranularity``) -> ``carbon_g_per_kwh``. Where history and forecast overlap, the history (measured) wins. An error
answers ``{"error": "..."}`` with a 4xx status: a SourceError carrying it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
)

API_URL = "https://api.electricitymap.org/v3"
KEY_ENV = "ELECTRICITYMAPS_API_KEY"

_GRANULARITY_S = {"5_minutes": 300, "15_minutes": 900, "hourly": 3600}


def parse_intensity(body: str, key: str, step_s: int) -> list[tuple[int, int, float]]:
    """Rows ``(start_s, step_s, g_per_kwh)`` of a forecast (``key="forecast"``) or history answer."""
    try:
        doc: Any = json.loads(body)
    except json.JSONDecodeError as err:
        raise SourceError(f"Electricity Maps: answer is not JSON ({err}): {body[:200]!r}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise SourceError(f"Electricity Maps: answer has no {key!r} list: {body[:200]!r}")
    rows = []
    for i, e in enumerate(doc[key]):
        ci = e.get("carbonIntensity") if isinstance(e, dict) else None
        if ci is None:  # the API sends null for an hour it has no estimate for
            continue
        try:
            t = parse_time(str(e["datetime"]), "Electricity Maps", f"{key}[{i}].datetime")
            v = float(ci)
        except (KeyError, TypeError, ValueError) as err:
            raise SourceError(f"Electricity Maps: {key}[{i}]: {err}: {e!r}"[:300]) from err
        if v < 0:
            raise SourceError(f"Electricity Maps: {key}[{i}].carbonIntensity {v} is negative")
        rows.append((t, step_s, v))
    return rows


@dataclass(frozen=True)
class ElectricityMapsSource:
    token: str
    zone: str = "NL"
    granularity: str = "hourly"
    with_history: bool = True
    http: HttpGet | None = None
    url: str = API_URL

    def __post_init__(self) -> None:
        if self.granularity not in _GRANULARITY_S:
            raise ValueError(f"granularity {self.granularity!r} is not one of {list(_GRANULARITY_S)}")

    @property
    def name(self) -> str:
        return "electricitymaps"

    @staticmethod
    def from_env(zone: str = "NL", http: HttpGet | None = None,
                 environ: Mapping[str, str] | None = None) -> ElectricityMapsSource:  # fmt: skip
        return ElectricityMapsSource(env_key(KEY_ENV, environ), zone=zone, http=http)

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        http = self.http or httpx_get()
        headers = {"auth-token": self.token}
        step = _GRANULARITY_S[self.granularity]
        params = {"zone": self.zone}
        if self.granularity != "hourly":
            params["temporalGranularity"] = self.granularity
        resp = http(f"{self.url}/carbon-intensity/forecast", params, headers)
        check_status("Electricity Maps", "carbon-intensity/forecast", resp)
        rows = {(a, s): (a, s, v) for a, s, v in parse_intensity(resp.text, "forecast", step)}
        if self.with_history:
            resp = http(f"{self.url}/carbon-intensity/history", params, headers)
            check_status("Electricity Maps", "carbon-intensity/history", resp)
            rows.update({(a, s): (a, s, v) for a, s, v in parse_intensity(resp.text, "history", step)})
        t0, t1 = int(as_utc(start).timestamp()), int(as_utc(end).timestamp())
        kept = [r for r in rows.values() if r[0] < t1 and r[0] + r[1] > t0]
        return EnergyFrame(source=self.name, columns={"carbon_g_per_kwh": Points.of(kept)})
