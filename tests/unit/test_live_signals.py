"""LiveSignals: the Refresher on its own thread in the server (recorded responses, no network)."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import numpy as np

from scheduler.sources.live import LiveSignals

# the recorded responses and the four-source refresher of test_sources.py (the suite imports by path)
_spec = importlib.util.spec_from_file_location("_test_sources", Path(__file__).with_name("test_sources.py"))
assert _spec is not None and _spec.loader is not None
_ts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ts)
NOW, Clock, _refresher = _ts.NOW, _ts.Clock, _ts._refresher


def _wait(cond, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_the_thread_refreshes_when_due_and_ticks_read_the_latest_series(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock, ok=1)
    base = r.series
    seen: list[str] = []
    live = LiveSignals(r, on_refresh=lambda s: seen.append(s.source), poll_s=0.02)
    assert live.series() is base and all(math.isinf(v) for v in live.staleness_s().values())
    live.start()
    try:
        # due at once: the first refresh. Wait for its publication (on_refresh runs after the series is swapped
        # in), not the refresher's count, which rises before LiveSignals stores the series.
        _wait(lambda: len(seen) == 1)
        assert r.refreshes == 1
        s1 = live.series()
        assert "live: ned" in s1.source and not np.array_equal(s1.wind_w, base.wind_w)
        assert live.staleness_s() == {"ned": 0.0, "entsoe": 0.0, "electricitymaps": 0.0, "congestion": 0.0}
        assert [c[2] for c in live.announced_caps()] == [40.0, 25.0]
        time.sleep(0.2)
        assert r.refreshes == 1  # not due again until refresh_s of the clock has passed
        clock.t += 4 * 3600  # every source now fails: the cache answers, staleness grows past the alert's 3 h
        _wait(lambda: r.refreshes == 2)
        _wait(lambda: len(seen) == 2)
        assert live.staleness_s() == dict.fromkeys(("ned", "entsoe", "electricitymaps", "congestion"), 4 * 3600.0)
        np.testing.assert_array_equal(live.series().wind_w, s1.wind_w)  # the last good values stay
    finally:
        live.stop()
    assert live._thread is None


def test_a_refresh_that_raises_keeps_the_last_series(tmp_path: Path) -> None:
    clock = Clock(NOW)
    r = _refresher(tmp_path, clock)
    live = LiveSignals(r)
    s1 = live.refresh_now()

    def boom() -> None:
        raise RuntimeError("a bug in a source")

    r.refresh = boom  # type: ignore[method-assign,assignment]
    assert live.refresh_now() is s1 and live.series() is s1 and live.errors == 1
