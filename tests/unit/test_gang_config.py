"""A gang worker's view of its job (no Ray): rank, world size, master address and the GPUs Ray assigned
reach module entrypoints through JobConfig and command entrypoints through the torch.distributed
environment; each rank writes its own progress file and only rank 0 writes the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.errors import InputError
from scheduler.workloads.runtime import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    JobConfig,
    JobContext,
    checkpoint_work_s,
    read_progress,
)


def _cfg(tmp_path: Path) -> JobConfig:
    return JobConfig(job_id="g", kind="training", duration_s=100.0, job_dir=str(tmp_path))


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_each_rank_gets_its_place_in_the_gang(tmp_path: Path, world: int) -> None:
    base = _cfg(tmp_path)
    for rank in range(world):
        gpus = tuple(range(rank * 2, rank * 2 + 2))
        c = base.for_rank(rank, world, "10.0.0.7", 29512, gpus)
        assert JobConfig.from_json(c.to_json()) == c  # what the actor hands on survives JSON
        env = c.env()
        assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"], env["MASTER_PORT"], env["LOCAL_RANK"]) == (
            str(rank), str(world), "10.0.0.7", "29512", "0")
        assert env["WINDWARD_GPU_IDS"] == ",".join(map(str, gpus))
    for bad in (-1, world):
        with pytest.raises(InputError, match=f"rank {bad} outside 0..{world - 1}"):
            base.for_rank(bad, world, "h", 1, ())


def test_command_entrypoints_read_their_rank_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _cfg(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(base.to_json())  # the shared file is rank-free
    c = base.for_rank(1, 2, "10.0.0.7", 29512, (3, 5))
    monkeypatch.setenv("WINDWARD_JOB_DIR", str(tmp_path))
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    ctx = JobContext.from_env()
    assert (ctx.config.rank, ctx.config.world_size, ctx.config.master_addr, ctx.config.master_port) == (1, 2, "10.0.0.7", 29512)
    assert ctx.config.gpu_ids == (3, 5) and not ctx.is_leader


def test_ranks_write_their_own_progress_and_only_rank_0_checkpoints(tmp_path: Path) -> None:
    base = _cfg(tmp_path)
    r0 = JobContext(base.for_rank(0, 2, "h", 1, (0,)))
    r1 = JobContext(base.for_rank(1, 2, "h", 1, (1,)))
    r1.report(30.0, 3)
    r1.save_checkpoint({"w": np.ones(2)}, 30.0, 3)
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # rank 1 never writes the shared checkpoint
    assert read_progress(tmp_path, rank=1)["step"] == 3 and read_progress(tmp_path) is None
    r0.save_checkpoint({"w": np.ones(2)}, 30.0, 3)
    r0.report(30.0, 3)
    assert checkpoint_work_s(tmp_path) == 30.0 and read_progress(tmp_path)["rank"] == 0
    # a resumed rank 1 starts from rank 0's checkpoint
    assert JobContext(base.for_rank(1, 2, "h", 1, (1,))).progress()["resumed_from_s"] == 30.0
