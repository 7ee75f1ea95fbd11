"""A grid operator's congestion feed: announced import caps for the site's connection.

There is no single standard for this (each Dutch grid operator publishes congestion management its own way),
so Windward reads one documented JSON shape, ``windward.congestion/v1``, that an operator or a small adapter
publishes at a URL (``GET``, optional ``Authorization: Bearer <WINDWARD_CONGESTION_TOKEN>``)::

    {"format": "windward.congestion/v1",
     "operator": "Stedin",                       # who announces (free text)
     "connection": "EAN 871687400000000000",     # which connection (free text)
     "published_utc": "2026-12-03T12:00:00Z",
     "events": [
       {"id": "ST-2026-1203-01", "start_utc": "2026-12-03T16:00:00Z", "end_utc": "2026-12-03T19:00:00Z",
        "cap_mw": 40.0, "reason": "evening peak, Maasvlakte 150 kV"}]}

``events`` may be empty (no congestion). Each event caps grid import at ``cap_mw`` over
``[start_utc, end_utc)``; overlapping events take the lower cap; the site's contract cap still applies (the
merge takes the minimum). -> ``grid_cap_mw``. An event with ``end_utc <= start_utc``, a negative cap or an
unknown ``format`` is refused with a SourceError naming the event and the field.
"""

from __future__ import annotations

import json
import math
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
    httpx_get,
    parse_time,
)

FORMAT = "windward.congestion/v1"
KEY_ENV = "WINDWARD_CONGESTION_TOKEN"


@dataclass(frozen=True, slots=True)
class CongestionEvent:
    id: str
    start_s: int
    end_s: int
    cap_mw: float
    reason: str


def parse_feed(body: str) -> list[CongestionEvent]:
    try:
        doc: Any = json.loads(body)
    except json.JSONDecodeError as err:
        raise SourceError(f"congestion feed: not JSON ({err}): {body[:200]!r}") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SourceError(f"congestion feed: format {got!r}; expected {FORMAT!r}")
    events = doc.get("events")
    if not isinstance(events, list):
        raise SourceError("congestion feed: field events must be a list (empty when there is no congestion)")
    out = []
    for i, e in enumerate(events):
        where = f"congestion feed: events[{i}]"
        if not isinstance(e, dict):
            raise SourceError(f"{where}: must be an object, got {e!r}")
        for k in ("start_utc", "end_utc", "cap_mw"):
            if k not in e:
                raise SourceError(f"{where}: field {k} missing")
        t0 = parse_time(str(e["start_utc"]), "congestion feed", f"events[{i}].start_utc")
        t1 = parse_time(str(e["end_utc"]), "congestion feed", f"events[{i}].end_utc")
        try:
            cap = float(e["cap_mw"])
        except (TypeError, ValueError) as err:
            raise SourceError(f"{where}: field cap_mw {e['cap_mw']!r} is not a number") from err
        if not (math.isfinite(cap) and cap >= 0):
            raise SourceError(f"{where}: field cap_mw {cap} must be a finite number >= 0")
        if t1 <= t0:
            raise SourceError(f"{where}: end_utc {e['end_utc']} must be after start_utc {e['start_utc']}")
        out.append(CongestionEvent(str(e.get("id", i)), t0, t1, cap, str(e.get("reason", ""))))
    return out


@dataclass(frozen=True)
class CongestionFeedSource:
    url: str
    token: str | None = None
    http: HttpGet | None = None

    @property
    def name(self) -> str:
        return "congestion"

    @staticmethod
    def from_env(url: str, http: HttpGet | None = None,
                 environ: Mapping[str, str] | None = None) -> CongestionFeedSource:  # fmt: skip
        import os

        token = (os.environ if environ is None else environ).get(KEY_ENV, "").strip() or None
        return CongestionFeedSource(url, token, http)

    def fetch(self, start: datetime, end: datetime) -> EnergyFrame:
        http = self.http or httpx_get()
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        resp = http(self.url, {}, headers)
        check_status("congestion feed", self.url, resp)
        t0, t1 = int(as_utc(start).timestamp()), int(as_utc(end).timestamp())
        rows = [
            (e.start_s, e.end_s - e.start_s, e.cap_mw) for e in parse_feed(resp.text) if e.start_s < t1 and e.end_s > t0
        ]
        return EnergyFrame(source=self.name, columns={"grid_cap_mw": Points.of(rows)},
                           notes=tuple(f"congestion {r[2]:g} MW from {r[0]} for {r[1]} s" for r in rows))  # fmt: skip
