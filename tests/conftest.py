"""Suite-wide settings. Ray's token auth and usage stats are turned off before anything imports Ray."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# One thread per numeric library (torch's intra-op pool, OpenBLAS), in this process and every subprocess a
# test starts (servers, the gpu_check script), unless the caller chose otherwise. The test instances are
# small, so a second thread has nothing to split; on 2 cores shared with servers and Ray nodes its workers
# spin for their share and the torch tests took several times their CPU time (J = 120, T = 24, torch, a cold
# solve and two warm re-plans under load 10: 130 s CPU with 2 threads, 18 s with 1). Set before anything
# imports numpy or torch, which read it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from scheduler.paths import shared_data_available  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> None:
    """Skip a test when ../shared/data is absent (CI and every developer machine have it)."""
    if not shared_data_available():
        pytest.skip("shared data (../shared/data or $WINDWARD_DATA_DIR) not present")
