"""A source behind a local cache (a directory), with fallback to the last good forecast and its staleness.

``CachedSource(source, cache_dir, clock)``. ``fetch(start, end)``:

1. asks the source; on success the frame is kept in memory and written to ``<cache_dir>/<name>.json``
   (atomically: a temporary file renamed over the old one), and the fetch time becomes the *last good fetch*;
2. when the source fails (:class:`SourceError`), the last good frame is returned instead -- from memory, or
   from the cache file left by an earlier run -- and the failure is logged and counted;
3. when there is no last good frame at all, the SourceError propagates.

``staleness_s()`` = seconds since the last good fetch (``None`` before any), for the metric
``windward_signal_staleness_seconds{source}`` and its alert. ``min_interval_s`` (default 0) returns the last
good frame without asking the source when it is younger than that (rate-limited APIs: NED allows 200
requests per 5 minutes) and covers the window asked.

Cache file: ``{"format": "windward.signal-cache/v1", "source": name, "fetched_unix_s": ...,
"window_s": [start, end], "columns": {column: [[start_s, step_s, value], ...]}, "notes": [...]}``.
A cache file that is unreadable or of another source is ignored with a warning (never trusted half-way).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scheduler.sources.base import Clock, EnergyFrame, Points, SignalSource, SourceError, as_utc

log = logging.getLogger(__name__)

CACHE_FORMAT = "windward.signal-cache/v1"


@dataclass(frozen=True, slots=True)
class FetchResult:
    frame: EnergyFrame
    fresh: bool  # True: from the source just now; False: the last good frame (fallback or min_interval)
    fetched_unix_s: float  # when this frame was fetched from the source


class CachedSource:
    def __init__(self, source: SignalSource, cache_dir: str | Path, clock: Clock, min_interval_s: float = 0.0) -> None:
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.source = source
        self.clock = clock
        self.min_interval_s = float(min_interval_s)
        self.path = Path(cache_dir) / f"{source.name}.json"
        self.failures = 0
        self.last_error: str | None = None
        self._good: tuple[EnergyFrame, float, tuple[int, int]] | None = self._load()

    @property
    def name(self) -> str:
        return self.source.name

    # -------------------------------------------------------------------------------------- cache file
    def _load(self) -> tuple[EnergyFrame, float, tuple[int, int]] | None:
        if not self.path.exists():
            return None
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("format") != CACHE_FORMAT or doc.get("source") != self.name:
                raise ValueError(f"format {doc.get('format')!r} / source {doc.get('source')!r}")
            cols = {k: Points.of((int(a), int(s), float(v)) for a, s, v in rows) for k, rows in doc["columns"].items()}
            frame = EnergyFrame(source=self.name, columns=cols, notes=tuple(doc.get("notes", ())))
            w0, w1 = doc["window_s"]
            return frame, float(doc["fetched_unix_s"]), (int(w0), int(w1))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("signal cache %s ignored: %s", self.path, e)
            return None

    def _save(self, frame: EnergyFrame, fetched: float, window: tuple[int, int]) -> None:
        doc = {
            "format": CACHE_FORMAT, "source": self.name, "fetched_unix_s": fetched, "window_s": list(window),
            "columns": {k: p.rows() for k, p in frame.columns.items()}, "notes": list(frame.notes),
        }  # fmt: skip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk must not stop live signals; the frame is still kept in memory
            log.warning("signal cache %s not written: %s", self.path, e)

    # ------------------------------------------------------------------------------------------- fetch
    def last_good_unix_s(self) -> float | None:
        return None if self._good is None else self._good[1]

    def staleness_s(self) -> float | None:
        """Seconds since the last good fetch, ``None`` when there never was one."""
        return None if self._good is None else max(self.clock() - self._good[1], 0.0)

    def fetch(self, start: datetime, end: datetime) -> FetchResult:
        now = self.clock()
        window = (int(as_utc(start).timestamp()), int(as_utc(end).timestamp()))
        if self._good is not None and self.min_interval_s > 0:
            frame, at, (w0, w1) = self._good
            if now - at < self.min_interval_s and w0 <= window[0] and window[1] <= w1:
                return FetchResult(frame, False, at)
        try:
            frame = self.source.fetch(start, end)
        except SourceError as e:
            self.failures += 1
            self.last_error = str(e)
            if self._good is None:
                raise
            log.warning("%s: fetch failed, using the last good forecast from %.0f s ago: %s",
                        self.name, now - self._good[1], e)  # fmt: skip
            return FetchResult(self._good[0], False, self._good[1])
        self._good = (frame, now, window)
        self.last_error = None
        self._save(frame, now, window)
        return FetchResult(frame, True, now)
