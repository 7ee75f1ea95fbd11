"""Suite-wide settings. Ray's token auth and usage stats are turned off before anything imports Ray."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from scheduler.paths import shared_data_available  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> None:
    """Skip a test when ../shared/data is absent (CI and every developer machine have it)."""
    if not shared_data_available():
        pytest.skip("shared data (../shared/data or $WINDWARD_DATA_DIR) not present")
