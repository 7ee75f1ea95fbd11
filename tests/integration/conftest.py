"""One local Ray cluster per test session (the demo site: 4 simulated 8-GPU nodes in two pools), shared by
every tests/integration/test_ray_*.py module. Started lazily by the first test that asks for it, and shut down
right after the last test that asks for it (not at the end of the session: idle, its head and four raylets
still burn ~0.14 s of CPU per second through every later test)."""

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
    _SESSION.append(ex)
    try:
        yield ex
    finally:
        ex.close()  # a no-op where pytest_runtest_teardown closed it after its last user


#: the session's executor once ray_session has started it
_SESSION: list[object] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the last test (of those selected) that uses ray_session: close the session's cluster."""
    yield
    if not _SESSION or "ray_session" not in getattr(item, "fixturenames", ()):
        return
    if hasattr(item.config, "workerinput"):  # a pytest-xdist worker need not run its items in this order
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    if not any("ray_session" in getattr(it, "fixturenames", ()) for it in later):
        _SESSION[0].close()  # type: ignore[attr-defined]


@pytest.fixture()
def ray_ex(ray_session: object) -> Iterator[object]:
    """The session executor, with every job stopped and pending events drained after each test."""
    yield ray_session
    ray_session.stop_all()  # type: ignore[attr-defined]
    ray_session.step(0.0)  # type: ignore[attr-defined]


def job_dir_of(ex: object, job_id: str) -> Path:
    return ex.job_dir(job_id)  # type: ignore[attr-defined,no-any-return]
