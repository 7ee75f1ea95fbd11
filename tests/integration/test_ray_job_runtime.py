"""A job spec's env, args and workdir reach the process on real Ray (env as the actor's runtime_env, args
after the command, the working directory as its cwd), and its output is what ``/v1/jobs/{id}/logs`` reads
(RayExecutor.log_path, scheduler.opsviews.read_log)."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import step_until

from scheduler.jobs import Job
from scheduler.opsviews import job_log_path, read_log

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"


@pytest.mark.parametrize("seed", range(2))
def test_env_args_and_workdir_reach_the_command_and_its_output_is_readable(ray_ex, tmp_path: Path, seed: int) -> None:
    workdir = tmp_path / f"wd{seed}"
    workdir.mkdir()
    jid = f"rt-{seed}"
    cmd = "sh -c 'echo \"A=$WW_A B=$WW_B args=$1,$2 pwd=$(pwd)\"; sleep 30' sh"
    job = Job(jid, "acme", "batch", 0.0, 1, 3600.0, entrypoint=cmd, env=(("WW_A", f"a{seed}"), ("WW_B", "b c")),
              args=(f"x{seed}", "y z"), workdir=str(workdir))  # fmt: skip
    assert ray_ex.start(job, POOL, 1.0, 0.0) is not None
    want = f"A=a{seed} B=b c args=x{seed},y z pwd={workdir}"
    path = job_log_path(ray_ex, jid)
    assert path is not None

    def seen(_events: list) -> bool:
        return want in read_log(path, 0)["text"]

    step_until(ray_ex, seen, max_steps=120, dt_s=1.0)
    chunk = read_log(path, 0)
    assert chunk["available"] and chunk["next_offset"] == chunk["size"] > 0
    # a follower that starts at the end reads nothing new; one byte before the end reads that byte
    assert read_log(path, chunk["size"])["text"] == ""
    assert read_log(path, chunk["size"] - 1)["text"] == chunk["text"][-1]


def test_the_simulated_executor_says_it_has_no_output() -> None:
    from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
    from scheduler.models import load_site

    ex = SimulatedExecutor(load_site("demo"), VirtualClock())
    got = read_log(job_log_path(ex, "j"), 0)
    assert got["available"] is False and "simulated" in got["detail"] and got["text"] == ""
