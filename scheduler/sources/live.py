"""Live signals in the server: the :class:`~scheduler.sources.refresher.Refresher` on its own thread.

``windward server --live-signals FILE`` (docs/contracts.md, "Live signal sources") builds one
:class:`LiveSignals`; without the option nothing changes (the CSV or the embedded model, read once). The
thread asks the sources every ``refresh_s`` (network calls never block a tick); each tick reads the latest
merged series (:meth:`LiveSignals.series`, one reference swapped under a lock) and the metrics read
:meth:`LiveSignals.staleness_s` (``windward_signal_staleness_seconds{source}``, alert
``WindwardSignalStale``). A refresh that fails entirely is logged and retried at the next interval; the
series keeps the last good values (the cache's fallback, :mod:`scheduler.sources.cache`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from scheduler.energy import EnergySeries
from scheduler.sources.refresher import Refresher

log = logging.getLogger(__name__)


class LiveSignals:
    """The latest live series and the sources' staleness, refreshed by a daemon thread (:meth:`start`) or
    by the caller (:meth:`refresh_now`, tests and the first refresh at start-up)."""

    def __init__(self, refresher: Refresher, *, on_refresh: Callable[[EnergySeries], None] | None = None,
                 poll_s: float | None = None) -> None:  # fmt: skip
        self.refresher = refresher
        # how often the thread asks whether a refresh is due (default: a tenth of refresh_s, 1..60 s)
        self.poll_s = poll_s if poll_s is not None else min(max(refresher.refresh_s / 10.0, 1.0), 60.0)
        self.on_refresh = on_refresh
        self._lock = threading.Lock()
        self._series = refresher.series
        self._caps: list[tuple[datetime, datetime, float, str]] = []
        self._staleness: dict[str, float] = refresher.staleness_s()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0  # refreshes that raised (logged; the last good series stays)

    def series(self) -> EnergySeries:
        with self._lock:
            return self._series

    def staleness_s(self) -> dict[str, float]:
        """Per source, seconds since its last good fetch, as of now (``inf`` before any)."""
        try:
            return self.refresher.staleness_s()
        except Exception:  # noqa: BLE001 -- a metric read must not fail: the last value computed
            log.exception("live signals: staleness unavailable")
            with self._lock:
                return dict(self._staleness)

    def announced_caps(self) -> list[tuple[datetime, datetime, float, str]]:
        with self._lock:
            return list(self._caps)

    def refresh_now(self) -> EnergySeries:
        """Refresh at once (whether due or not) and publish the result."""
        try:
            s = self.refresher.refresh()
        except Exception:  # noqa: BLE001 -- a source bug must not stop the server: keep the last series
            self.errors += 1
            log.exception("live signals: refresh failed; keeping the last series")
            return self.series()
        with self._lock:
            self._series = s
            self._caps = self.refresher.announced_caps()
            self._staleness = self.refresher.staleness_s()
        if self.on_refresh is not None:
            self.on_refresh(s)
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.refresher.due():
                self.refresh_now()
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="windward-live-signals", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
