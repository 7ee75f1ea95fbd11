"""The live-signals file: which sources to ask, how often, and where to cache (YAML, validated here).

    refresh_s: 900                 # ask every source this often (seconds)
    lookback_s: 86400              # window asked: [now - lookback_s, now + horizon_s)
    horizon_s: 172800
    cache_dir: signal-cache        # last good answers (relative: to the server's working directory)
    sources:                       # priority order: for each slot and column the first source with a value wins
      - {kind: ned, classification: forecast, granularity: 15min}
      - {kind: entsoe, zone: "10YNL----------L", offshore_capacity_mw: 4700}
      - {kind: electricitymaps, zone: NL}
      - {kind: congestion, url: "https://grid.example/windward-congestion.json"}

Keys come from the environment (ENTSOE_API_KEY, NED_API_KEY, ELECTRICITYMAPS_API_KEY, optional
WINDWARD_CONGESTION_TOKEN); :func:`build_refresher` refuses a missing one with an InputError naming the
variable, so a server started with this file fails at start-up, not at the first refresh.
``min_interval_s`` per source serves the cache without asking when the last good answer is younger
(NED allows 200 requests per 5 minutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.energy import EnergySeries
from scheduler.models import Site, parse_model, read_yaml
from scheduler.sources.base import Clock, HttpGet, SignalSource
from scheduler.sources.cache import CachedSource
from scheduler.sources.congestion import CongestionFeedSource
from scheduler.sources.electricitymaps import ElectricityMapsSource
from scheduler.sources.entsoe import NL_ZONE, EntsoeSource
from scheduler.sources.ned import (
    CLASSIFICATION_CURRENT,
    CLASSIFICATION_FORECAST,
    GRANULARITY_15_MIN,
    GRANULARITY_HOUR,
    NedSource,
)
from scheduler.sources.refresher import Refresher


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_interval_s: Annotated[float, Field(ge=0, le=86400)] = 0.0


class NedConfig(_Strict):
    kind: Literal["ned"]
    classification: Literal["forecast", "current"] = "forecast"
    granularity: Literal["15min", "hour"] = "15min"


class EntsoeConfig(_Strict):
    kind: Literal["entsoe"]
    zone: Annotated[str, Field(pattern=r"^[0-9A-Z-]{16}$")] = NL_ZONE
    offshore_capacity_mw: Annotated[float, Field(gt=0)]


class ElectricityMapsConfig(_Strict):
    kind: Literal["electricitymaps"]
    zone: Annotated[str, Field(min_length=1, max_length=32)] = "NL"
    granularity: Literal["5_minutes", "15_minutes", "hourly"] = "hourly"


class CongestionConfig(_Strict):
    kind: Literal["congestion"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]


SourceConfig = Annotated[
    NedConfig | EntsoeConfig | ElectricityMapsConfig | CongestionConfig, Field(discriminator="kind")
]


class LiveSignalsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    refresh_s: Annotated[float, Field(gt=0, le=86400)] = 900.0
    lookback_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 86400.0
    horizon_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 2 * 86400.0
    cache_dir: Annotated[str, Field(min_length=1)]
    sources: Annotated[tuple[SourceConfig, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> LiveSignalsConfig:
        kinds = [s.kind for s in self.sources]
        dupes = sorted({k for k in kinds if kinds.count(k) > 1})
        if dupes:
            raise ValueError(f"each source kind at most once (its cache file is named after it), repeated: {dupes}")
        return self


def load_live_signals(path: str | Path) -> LiveSignalsConfig:
    p = Path(path)
    cfg: LiveSignalsConfig = parse_model(LiveSignalsConfig, read_yaml(p), str(p))
    return cfg


def make_source(
    cfg: SourceConfig, http: HttpGet | None = None, environ: Mapping[str, str] | None = None
) -> SignalSource:
    """The adapter for one entry, its key read from the environment (InputError naming a missing variable)."""
    if isinstance(cfg, NedConfig):
        return NedSource.from_env(
            http=http, environ=environ,
            classification=CLASSIFICATION_FORECAST if cfg.classification == "forecast" else CLASSIFICATION_CURRENT,
            granularity=GRANULARITY_15_MIN if cfg.granularity == "15min" else GRANULARITY_HOUR,
        )  # fmt: skip
    if isinstance(cfg, EntsoeConfig):
        return EntsoeSource.from_env(cfg.offshore_capacity_mw, cfg.zone, http=http, environ=environ)
    if isinstance(cfg, ElectricityMapsConfig):
        src = ElectricityMapsSource.from_env(cfg.zone, http=http, environ=environ)
        return ElectricityMapsSource(src.token, cfg.zone, cfg.granularity, http=http)
    return CongestionFeedSource.from_env(cfg.url, http=http, environ=environ)


def build_refresher(
    cfg: LiveSignalsConfig,
    site: Site,
    base: EnergySeries,
    clock: Clock,
    http: HttpGet | None = None,
    environ: Mapping[str, str] | None = None,
) -> Refresher:
    sources = [
        CachedSource(make_source(s, http, environ), cfg.cache_dir, clock, min_interval_s=s.min_interval_s)
        for s in cfg.sources
    ]
    return Refresher(site, base, sources, clock, refresh_s=cfg.refresh_s, lookback_s=cfg.lookback_s,
                     horizon_s=cfg.horizon_s)  # fmt: skip
