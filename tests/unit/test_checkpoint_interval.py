"""``checkpoint_interval_s``: one bound (scheduler.models.CHECKPOINT_INTERVAL_MIN_S .. CHECKPOINT_INTERVAL_MAX_S,
argued there) at every edge that reads it: the job spec (``windward submit``, ``POST /v1/jobs``), a batch script's
``#WINDWARD --checkpoint-interval`` and the jobs CSV's extension column. Up to round 25 the spec took ``gt=0``
(1e-9 and 5e-324 were accepted) and the CSV any positive number, inf included; the simulated executor then took
``floor(work / interval) * interval`` of it: NaN for an infinite interval, inf work for a denormal one."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.errors import InputError
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.jobs import Job
from scheduler.models import CHECKPOINT_INTERVAL_MAX_S, CHECKPOINT_INTERVAL_MIN_S, JobSpec, load_site, parse_model
from scheduler.slurm import parse_script
from scheduler.traces import read_jobs_csv

LO, HI = CHECKPOINT_INTERVAL_MIN_S, CHECKPOINT_INTERVAL_MAX_S
REFUSED = [0.0, -1.0, LO - 1e-6, 0.5, 1e-9, 5e-324, HI + 1e-6, math.inf, math.nan]
ACCEPTED = [LO, LO + 1e-6, 60.0, HI]


def _spec(v: float) -> JobSpec:
    out: JobSpec = parse_model(JobSpec, {"name": "c", "gpus": 1, "duration_s": 600.0, "checkpoint_interval_s": v},
                               "job.yaml")  # fmt: skip
    return out


def _csv(tmp_path: Path, v: float) -> list[Job]:
    p = tmp_path / "jobs.csv"
    p.write_text(f"job_id,submit_s,gpus,duration_s,checkpoint_interval_s\nc,0,1,600,{v!r}\n")
    return read_jobs_csv(p)


@pytest.mark.parametrize("v", REFUSED)
def test_a_value_past_the_bound_is_refused_at_every_edge(tmp_path: Path, v: float) -> None:
    with pytest.raises(InputError, match="field checkpoint_interval_s"):
        _spec(v)
    with pytest.raises(InputError, match=r"row 2: field checkpoint_interval_s"):
        _csv(tmp_path, v)


@pytest.mark.parametrize("v", ACCEPTED)
def test_a_value_within_the_bound_is_read_the_same_at_every_edge(tmp_path: Path, v: float) -> None:
    assert _spec(v).checkpoint_interval_s == v
    (job,) = _csv(tmp_path, v)
    assert job.checkpoint_interval_s == v


def test_a_batch_scripts_shortest_interval_is_the_bound() -> None:
    """Slurm's time forms count whole seconds: ``0:01`` (one second) is the shortest a script can say, and it is
    the spec's bound; a day and a second is past the other end."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    (job,) = parse_script("#SBATCH --gpus=1 --time=10\n#WINDWARD --checkpoint-interval=0:01\n", "job.sh", now=now).jobs
    assert job.spec.checkpoint_interval_s == LO
    with pytest.raises(InputError, match="checkpoint_interval_s"):
        parse_script("#SBATCH --gpus=1 --time=10\n#WINDWARD --checkpoint-interval=1-00:00:01\n", "job.sh", now=now)


@pytest.mark.parametrize("interval", [LO, 7.0, HI])
def test_the_simulated_executor_loses_a_finite_share_below_one_interval(interval: float) -> None:
    """At either end of the bound the executor's checkpoint arithmetic is finite: a preemption after 10.5 s of
    work loses less than one interval of it, and what it keeps is a whole number of intervals."""
    site = load_site("demo")
    ex = SimulatedExecutor(site, VirtualClock())
    job = Job("c", "t", "training", 0.0, 1, 3600.0, checkpoint_interval_s=interval)
    assert ex.start(job, site.pools[0].name, 1.0, 0.0) is not None
    ex.step(10.5)
    lost = ex.preempt("c", "test")
    assert math.isfinite(lost) and 0.0 <= lost < interval + 1e-9
    kept = 10.5 - lost
    assert kept == pytest.approx(interval * math.floor(10.5 / interval))
