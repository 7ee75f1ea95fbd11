"""One local Ray cluster per test session (the demo site: 4 simulated 8-GPU nodes in two pools), shared by
every tests/integration/test_ray_*.py module. Started lazily by the first test that asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from scheduler.executors.ray_executor import RayExecutor
    from scheduler.models import load_site

    ex = RayExecutor(
        load_site("demo"),
        state_dir=tmp_path_factory.mktemp("ray-state"),
        time_scale=1000.0,  # a 3600 s job takes ~3.6 s of wall time
        grace_s=3.0,
        placement_timeout_s=5.0,
        poll_s=0.2,
    )
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture()
def ray_ex(ray_session: object) -> Iterator[object]:
    """The session executor, with every job stopped and pending events drained after each test."""
    yield ray_session
    ray_session.stop_all()  # type: ignore[attr-defined]
    ray_session.step(0.0)  # type: ignore[attr-defined]


def job_dir_of(ex: object, job_id: str) -> Path:
    return ex.job_dir(job_id)  # type: ignore[attr-defined,no-any-return]
