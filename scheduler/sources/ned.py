"""NED (Nationaal Energie Dashboard, https://api.ned.nl): Dutch offshore wind, forecast or actual.

``GET https://api.ned.nl/v1/utilizations`` with header ``X-AUTH-TOKEN: <key>`` and ``Accept:
application/ld+json``, query ``point`` (0 = the Netherlands), ``type`` (the energy type; 17 = offshore wind),
``granularity`` (4 = 15 minutes, 5 = hour), ``granularitytimezone`` (0 = UTC), ``classification`` (1 = forecast,
2 = current), ``activity`` (1 = providing), ``validfrom[after]`` / ``validfrom[strictly_before]`` (the window),
``page``. The answer is a JSON-LD collection: ``hydra:member`` is a list of utilizations, each with
``validfrom`` / ``validto`` (ISO 8601 with offset), ``capacity`` (kW: the average power in the interval),
``volume`` (kWh), ``percentage`` (the share of installed capacity, 0..1) and ``lastupdate``; ``hydra:view`` /
``hydra:next`` links the next page when the window holds more rows than one page.

-> ``offshore_wind_mw`` = capacity / 1000 and ``wind_capacity_factor`` = percentage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

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

API_URL = "https://api.ned.nl/v1/utilizations"
KEY_ENV = "NED_API_KEY"
TYPE_WIND_OFFSHORE = 17
GRANULARITY_15_MIN = 4
GRANULARITY_HOUR = 5
CLASSIFICATION_FORECAST = 1
CLASSIFICATION_CURRENT = 2
#: Pages followed at most per fetch (a runaway ``hydra:next`` chain is an error, not a hang).
MAX_PAGES = 50


def parse_page(body: str) -> tuple[list[tuple[int, int, float, float]], int | None]:
    """Rows ``(start_s, step_s, offshore_wind_mw, capacity_factor)`` of one answer, and the next page number
    (None on the last page). A body of the wrong shape is a SourceError naming the field."""
    try:
        doc: Any = json.loads(body)
    except json.JSONDecodeError as e:
        raise SourceError(f"NED: answer is not JSON ({e}): {body[:200]!r}") from e
    members = doc.get("hydra:member") if isinstance(doc, dict) else doc
    if not isinstance(members, list):
        raise SourceError("NED: answer has no hydra:member list (ask for Accept: application/ld+json)")
    rows = []
    for i, m in enumerate(members):
        try:
            t0 = parse_time(str(m["validfrom"]), "NED", f"hydra:member[{i}].validfrom")
            t1 = parse_time(str(m["validto"]), "NED", f"hydra:member[{i}].validto")
            kw = float(m["capacity"])
            pct = float(m["percentage"])
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(f"NED: hydra:member[{i}]: field {e} missing or not a number: {m!r}"[:300]) from e
        if t1 <= t0:
            raise SourceError(f"NED: hydra:member[{i}]: validto {m['validto']} is not after validfrom {m['validfrom']}")
        rows.append((t0, t1 - t0, kw / 1000.0, min(max(pct, 0.0), 1.0)))
    nxt = None
    view = doc.get("hydra:view") if isinstance(doc, dict) else None
    if isinstance(view, dict) and view.get("hydra:next"):
        page = parse_qs(urlsplit(str(view["hydra:next"])).query).get("page")
        if not page:
            raise SourceError(f"NED: hydra:next {view['hydra:next']!r} names no page")
        nxt = int(page[0])
    return rows, nxt


def _iso(t: datetime) -> str:
    return as_utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NedSource:
    """Offshore wind of the Netherlands (``classification`` 1: forecast, 2: current)."""

    token: str
    classification: int = CLASSIFICATION_FORECAST
    granularity: int = GRANULARITY_15_MIN
    energy_type: int = TYPE_WIND_OFFSHORE
    point: int = 0
    http: HttpGet | None = None
    url: str = API_URL

    @property
    def name(self) -> str:
        return "ned"

    @staticmethod
    def from_env(http: HttpGet | None = None, environ: Mapping[str, str] | None = None, **kw: Any) -> NedSource:
        return NedSource(env_key(KEY_ENV, environ), http=http, **kw)

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        http = self.http or httpx_get()
        headers = {"X-AUTH-TOKEN": self.token, "Accept": "application/ld+json"}
        rows: list[tuple[int, int, float, float]] = []
        page: int | None = 1
        for _ in range(MAX_PAGES):
            params = {
                "point": str(self.point), "type": str(self.energy_type), "granularity": str(self.granularity),
                "granularitytimezone": "0", "classification": str(self.classification), "activity": "1",
                "validfrom[after]": _iso(start), "validfrom[strictly_before]": _iso(end), "page": str(page),
            }  # fmt: skip
            resp = http(self.url, params, headers)
            check_status("NED", f"utilizations page {page}", resp)
            got, page = parse_page(resp.text)
            rows += got
            if page is None:
                break
        else:
            raise SourceError(f"NED: more than {MAX_PAGES} pages for {_iso(start)}..{_iso(end)}; ask a shorter window")
        return EnergyFrame(
            source=self.name,
            columns={
                "offshore_wind_mw": Points.of((a, s, mw) for a, s, mw, _ in rows),
                "wind_capacity_factor": Points.of((a, s, cf) for a, s, _, cf in rows),
            },
        )
