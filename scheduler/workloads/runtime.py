"""The job-side runtime every Windward workload runs inside: checkpoint directory, progress channel,
preemption signal, and the pace of a (simulated) GPU under a power cap.

No ray import: the Ray job actor (``scheduler.executors.ray_executor``) builds a :class:`JobContext` and
calls the workload's ``module:function`` with it; a command entrypoint gets the same context through
:func:`JobContext.from_env` and stops on SIGTERM.

Files in a job's directory (all written atomically: temp file + ``os.replace``):

    config.json        the job's config (written by the executor)
    checkpoint.npz     arrays of the workload + ``__meta__`` (JSON: work_done_s, step, ...); written by rank 0
    progress.json      {"work_done_s", "checkpoint_work_s", "step", "done", "result", ...} (rank 0;
                       rank k > 0 writes progress.r<k>.json)
    stop               present: the scheduler asks the job to checkpoint and stop (preemption)

and in the executor's state directory, for a control loop that drives time (the demo's slot clock):

    clock.json         the jobs' clock (:func:`publish_clock`): virtual time runs from ``v0`` at wall time
                       ``wall`` at ``rate`` virtual seconds per wall second and stands still at ``v1``, the
                       end of the slot the loop has stepped; a job paces on it (``JobConfig.clock_path``)

A job over several nodes (a *gang*) runs one worker per placement-group bundle: ``rank`` 0..``world_size``-1,
all reaching each other at ``master_addr:master_port`` (rank 0's node), each on the GPUs Ray assigned to its
bundle (``gpu_ids``, from ``ray.get_gpu_ids()``). The job directory lies on a file system every node shares
(deploy/kuberay mounts a ReadWriteMany volume there), so every rank resumes from rank 0's checkpoint.

Work is measured in *full-speed seconds* (DESIGN section 2): a job is done when its work reaches its
``duration_s``. ``time_scale`` is virtual seconds per wall second (1 on a real cluster; ~500 in the demo,
where one 15-minute slot passes in under 2 s): a workload that has done ``w`` full-speed seconds of work
at power fraction f has spent ``w / (time_scale * speed(f))`` wall seconds. With a published clock
(``clock_path``) those are seconds of the published virtual time over ``time_scale``: a job works only while
the loop's slot runs, never between its slots (the loop's tick, a job's start-up), however long that takes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels.power import speed as speed_of
from scheduler.errors import InputError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.npz"
PROGRESS_FILE = "progress.json"
STOP_FILE = "stop"
CLOCK_FILE = "clock.json"
#: pacing: work due within this share of its due time counts as due (a due time summed over many paces rounds;
#: on a published clock standing at the slot's end the slot's last work is then done, not left for the next)
DUE_REL_TOL = 1e-12
_META_KEY = "__meta__"


@dataclass(frozen=True, slots=True)
class JobConfig:
    """What a workload needs to know about its job (JSON-serialisable)."""

    job_id: str
    kind: str
    duration_s: float  # work to do, full-speed seconds
    job_dir: str
    checkpoint_interval_s: float = 1800.0  # full-speed seconds of work between checkpoints
    time_scale: float = 1.0  # virtual seconds per wall second
    speed_curve: tuple[tuple[float, float], ...] = ((0.4, 0.62), (0.6, 0.82), (0.8, 0.95), (1.0, 1.0))
    power_fraction: float = 1.0
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    # the gang: this worker's rank, how many there are, where rank 0 listens, and this worker's GPUs
    rank: int = 0
    world_size: int = 1
    master_addr: str = ""
    master_port: int = 0
    gpu_ids: tuple[int | str, ...] = ()
    # where the executor publishes the jobs' clock (module docstring; ``publish_clock``); "": the wall clock
    clock_path: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        d["params"] = dict(self.params)
        d["gpu_ids"] = list(self.gpu_ids)
        return json.dumps(d)

    @staticmethod
    def from_json(text: str) -> JobConfig:
        d = json.loads(text)
        d["speed_curve"] = tuple(tuple(p) for p in d.get("speed_curve", ()))
        d["gpu_ids"] = tuple(d.get("gpu_ids", ()))
        return JobConfig(**d)

    def for_rank(self, rank: int, world_size: int, master_addr: str, master_port: int,
                 gpu_ids: tuple[int | str, ...]) -> JobConfig:  # fmt: skip
        from dataclasses import replace

        if not 0 <= rank < world_size:
            raise InputError(f"rank {rank} outside 0..{world_size - 1}")
        return replace(self, rank=rank, world_size=world_size, master_addr=master_addr, master_port=master_port,
                       gpu_ids=tuple(gpu_ids))  # fmt: skip

    def env(self) -> dict[str, str]:
        """The torch.distributed environment of this worker (also given to command entrypoints)."""
        return {
            "RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": "0",
            "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port),
            "WINDWARD_RANK": str(self.rank), "WINDWARD_WORLD_SIZE": str(self.world_size),
            "WINDWARD_GPU_IDS": ",".join(str(g) for g in self.gpu_ids),
        }  # fmt: skip


def progress_file(rank: int) -> str:
    return PROGRESS_FILE if rank == 0 else f"progress.r{rank}.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_clock(path: Path, v0_s: float, v1_s: float, rate: float, wall: float | None = None) -> None:
    """Publish the jobs' clock: virtual time ``v0_s`` at wall time ``wall`` (``time.time()``: every process
    and, on a real cluster, every host reads the same), running at ``rate`` virtual seconds per wall second
    up to ``v1_s``, where it stands still until the next publication."""
    d = {"wall": time.time() if wall is None else float(wall), "v0": float(v0_s), "v1": float(v1_s),
         "rate": float(rate)}  # fmt: skip
    atomic_write_bytes(path, json.dumps(d).encode())


class PublishedClock:
    """A job's clock read from :func:`publish_clock`'s file, in wall-equivalent seconds (virtual seconds over
    ``time_scale``, what the pacing schedule counts). Keeps the last value it read if the file cannot be read,
    and never goes back."""

    def __init__(self, path: str | Path, time_scale: float, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.time_scale = float(time_scale)
        self._wall = wall
        self._last = 0.0

    def __call__(self) -> float:
        try:
            d = json.loads(self.path.read_text())
            v = min(float(d["v0"]) + (self._wall() - float(d["wall"])) * float(d["rate"]), float(d["v1"]))
            self._last = max(self._last, v / self.time_scale)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return self._last


def read_progress(job_dir: str | Path, rank: int = 0) -> dict[str, Any] | None:
    """The last progress the job (its worker ``rank``) wrote, or None (none yet, or the file is unreadable)."""
    p = Path(job_dir) / progress_file(rank)
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return None


def read_checkpoint_meta(job_dir: str | Path) -> dict[str, Any] | None:
    p = Path(job_dir) / CHECKPOINT_FILE
    try:
        with np.load(p, allow_pickle=False) as z:
            return dict(json.loads(str(z[_META_KEY])))
    except (OSError, ValueError, KeyError):
        return None


def checkpoint_work_s(job_dir: str | Path) -> float:
    meta = read_checkpoint_meta(job_dir)
    return float(meta.get("work_done_s", 0.0)) if meta else 0.0


class JobContext:
    """A running job's view of the world. Thread-safe: the executor sets the power fraction and the
    stop request from other threads while the workload runs."""

    def __init__(self, config: JobConfig, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.config = config
        self.job_dir = Path(config.job_dir)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self._sleep = sleep
        # the executor's published clock where there is one (module docstring), else the wall clock
        if clock is None:
            clock = PublishedClock(config.clock_path, config.time_scale) if config.clock_path else time.monotonic
        self._clock = clock
        # Pacing keeps to an absolute schedule: the wall time by which the work paced so far is due, from the
        # first report (ready) on. Overheads between paces (compute, progress writes, checkpoints, a late
        # wake-up) are absorbed instead of added, so the job's work follows the executor's clock.
        self._due: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._power_fraction = float(config.power_fraction)
        self._curve_f = np.array([p[0] for p in config.speed_curve])
        self._curve_s = np.array([p[1] for p in config.speed_curve])
        self._progress_path = self.job_dir / progress_file(config.rank)
        ck = read_checkpoint_meta(self.job_dir)
        self._progress: dict[str, Any] = {
            "job_id": config.job_id,
            "rank": config.rank,
            "work_done_s": float(ck["work_done_s"]) if ck else 0.0,
            "checkpoint_work_s": float(ck["work_done_s"]) if ck else 0.0,
            "step": int(ck.get("step", 0)) if ck else 0,
            "done": False,
            "stopped": False,
            "result": None,
            "error": None,
            "resumed_from_s": float(ck["work_done_s"]) if ck else 0.0,
            # False until the workload's first report: its start-up (imports, data, model) is over
            "ready": False,
        }

    # ------------------------------------------------------------------ control from the executor

    @property
    def power_fraction(self) -> float:
        with self._lock:
            return self._power_fraction

    def set_power_fraction(self, power_fraction: float) -> None:
        with self._lock:
            self._power_fraction = float(power_fraction)

    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        """True once the scheduler asked for a checkpoint-and-stop (event, stop file, or SIGTERM)."""
        if not self._stop.is_set() and (self.job_dir / STOP_FILE).exists():
            self._stop.set()
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT -> checkpoint and stop (for command entrypoints, which run in the main thread)."""

        def _handler(signum: int, _frame: Any) -> None:
            log.info("job %s: signal %d, will checkpoint and stop", self.config.job_id, signum)
            self._stop.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    @staticmethod
    def from_env() -> JobContext:
        """For a command entrypoint: ``$WINDWARD_JOB_DIR/config.json`` describes the job."""
        d = os.environ.get("WINDWARD_JOB_DIR")
        if not d:
            raise InputError("WINDWARD_JOB_DIR is not set: a command entrypoint must be started by Windward")
        cfg = JobConfig.from_json((Path(d) / CONFIG_FILE).read_text())
        if "WINDWARD_RANK" in os.environ:  # a gang's worker: the shared config.json is rank 0's
            gpu_s = os.environ.get("WINDWARD_GPU_IDS", "")
            cfg = cfg.for_rank(
                int(os.environ["WINDWARD_RANK"]), int(os.environ["WINDWARD_WORLD_SIZE"]),
                os.environ.get("MASTER_ADDR", ""), int(os.environ.get("MASTER_PORT", "0")),
                tuple(int(g) if g.isdigit() else g for g in gpu_s.split(",") if g),
            )
        ctx = JobContext(cfg)
        ctx.install_signal_handlers()
        return ctx

    # ------------------------------------------------------------------ pacing and progress

    @property
    def is_leader(self) -> bool:
        return self.config.rank == 0

    def speed(self) -> float:
        return float(speed_of(self._curve_f, self._curve_s, self.power_fraction))

    def pace(self, work_s: float) -> None:
        """Spend the wall time ``work_s`` full-speed seconds take at the current power fraction (a simulated
        GPU's speed; on a real GPU the power limit itself slows the job and ``time_scale`` is 1), on the
        absolute schedule (the work's compute and the job's overheads count inside it). Wakes early on a
        stop request."""
        self._wait_until_due(work_s / (self.config.time_scale * max(self.speed(), 1e-6)))

    def wait_virtual(self, virtual_s: float) -> None:
        """Let ``virtual_s`` seconds of (scaled) time pass whatever the power fraction (a service answers
        requests as they arrive; the power cap changes its capacity, not the clock), on the absolute
        schedule. Wakes on a stop."""
        self._wait_until_due(virtual_s / self.config.time_scale)

    def _wait_until_due(self, wall_s: float) -> None:
        if self._due is None:
            self._due = self._clock()
        self._due += max(wall_s, 0.0)
        while not self.should_stop():
            left = self._due - self._clock()
            if left <= DUE_REL_TOL * abs(self._due):
                break
            self._sleep(min(left, 0.05))

    def report(self, work_done_s: float, step: int, **extra: Any) -> None:
        """Record progress (in memory for the executor, and atomically in progress.json). The first report
        also says the workload is ready: its start-up is over and its work begins (a workload reports once
        before its first step; the executor counts the job as started on its clock from then on)."""
        if self._due is None:  # ready: the pacing schedule starts now
            self._due = self._clock()
        with self._lock:
            self._progress.update(extra, work_done_s=float(work_done_s), step=int(step), ready=True)
            snap = dict(self._progress)
        atomic_write_bytes(self._progress_path, json.dumps(snap).encode())

    def mark_ready(self) -> None:
        """Say the workload is ready without reporting work: for a command entrypoint, whose start-up the
        executor cannot see, its process having started is its readiness (a command that speaks the progress
        protocol reports its work on top of that)."""
        if self._due is None:
            self._due = self._clock()
        with self._lock:
            self._progress["ready"] = True

    def progress(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._progress)

    def finish(self, result: Any) -> None:
        with self._lock:
            self._progress.update(done=True, result=result)
            snap = dict(self._progress)
        atomic_write_bytes(self._progress_path, json.dumps(snap).encode())

    def mark_stopped(self, error: str | None = None) -> None:
        with self._lock:
            self._progress.update(stopped=True, error=error)
            snap = dict(self._progress)
        atomic_write_bytes(self._progress_path, json.dumps(snap).encode())

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, arrays: Mapping[str, np.ndarray], work_done_s: float, step: int, **meta: Any) -> None:
        """Write arrays + meta atomically; after this, preempting loses nothing done before it. In a gang only
        rank 0 writes (every rank holds the same state); the others just note that it was written."""
        import io

        if self.config.rank != 0:
            with self._lock:
                self._progress["checkpoint_work_s"] = float(work_done_s)
            return

        buf = io.BytesIO()
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        payload[_META_KEY] = np.array(json.dumps({"work_done_s": float(work_done_s), "step": int(step), **meta}))
        np.savez(buf, **payload)  # type: ignore[arg-type]
        atomic_write_bytes(self.job_dir / CHECKPOINT_FILE, buf.getvalue())
        with self._lock:
            self._progress["checkpoint_work_s"] = float(work_done_s)
        log.debug("job %s: checkpoint at step %d (%.0f s of work)", self.config.job_id, step, work_done_s)

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        p = self.job_dir / CHECKPOINT_FILE
        if not p.exists():
            return None
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in z.files if k != _META_KEY}
            meta = dict(json.loads(str(z[_META_KEY])))
        return arrays, meta


def resolve_entrypoint(entrypoint: str) -> Callable[[JobContext], Any]:
    """``"package.module:function"`` -> the function. Commands are run by the executor, not here."""
    import importlib

    if ":" not in entrypoint:
        raise InputError(f"entrypoint {entrypoint!r}: expected 'module:function'")
    mod_name, fn_name = entrypoint.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise InputError(f"entrypoint {entrypoint!r}: cannot import {mod_name!r}: {e}") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise InputError(f"entrypoint {entrypoint!r}: {mod_name!r} has no function {fn_name!r}")
    return fn
