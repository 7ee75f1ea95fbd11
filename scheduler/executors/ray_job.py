"""The job actor: one detached, named Ray actor per bundle of a running job's placement group (rank k in
bundle k; a job on one node has one). Created idle, it reports where Ray put it (:meth:`JobActor.placement`:
node, IP, the GPUs Ray assigned, a free port on rank 0), then :meth:`JobActor.run` starts the workload in its
own thread (so its methods stay responsive) with the gang's rank, world size and master address. It owns no
driver but itself and outlives the scheduler process that created it (re-adopted by name).

Entrypoints: ``module:function`` runs in the actor with a :class:`JobContext`; anything else is a command
run as a subprocess with ``WINDWARD_JOB_DIR`` set (it uses ``JobContext.from_env()``; SIGTERM asks it to
checkpoint and stop). The job's log is ``<job_dir>/job.log``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import ray

from scheduler.workloads.runtime import (
    CONFIG_FILE,
    JobConfig,
    JobContext,
    atomic_write_bytes,
    read_progress,
    resolve_entrypoint,
)

log = logging.getLogger(__name__)


def _gpu_id(g: Any) -> int | str:
    s = str(g)
    return int(s) if s.isdigit() else s


class JobActor:
    def __init__(self, config_json: str, entrypoint: str, meta: dict[str, Any], rank: int = 0) -> None:
        self._config_json = config_json
        self._rank = int(rank)
        self._ctx: JobContext | None = None
        self._entrypoint = entrypoint
        self._meta = dict(meta)
        self._done = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._port_sock: socket.socket | None = None

    def placement(self) -> dict[str, Any]:
        """Where Ray put this worker: node id, node IP, the GPUs Ray assigned it, and (rank 0) a free TCP
        port on its node for the gang's rendezvous."""
        port = 0
        if self._rank == 0:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            port = int(s.getsockname()[1])
            s.close()
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "gpu_ids": [_gpu_id(g) for g in ray.get_gpu_ids()],
            "port": port,
            "rank": self._rank,
        }

    def run(self, world_size: int, master_addr: str, master_port: int, gpu_ids: list[Any]) -> None:
        """Start the workload as rank ``self._rank`` of ``world_size`` (idempotent)."""
        if self._thread is not None:
            return
        cfg = JobConfig.from_json(self._config_json).for_rank(
            self._rank, world_size, master_addr, master_port, tuple(_gpu_id(g) for g in gpu_ids)
        )
        self._ctx = JobContext(cfg)
        # every rank writes the same file (a command entrypoint reads it), so no rank waits for another
        atomic_write_bytes(self._ctx.job_dir / CONFIG_FILE, self._config_json.encode())
        log_name = "job.log" if self._rank == 0 else f"job.r{self._rank}.log"
        self._log_path = self._ctx.job_dir / log_name
        self._log_handler = logging.FileHandler(self._log_path)
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._log_handler)
        root.setLevel(logging.INFO)
        self._thread = threading.Thread(target=self._main, name=f"job-{cfg.job_id}-r{self._rank}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        assert self._ctx is not None
        cfg = self._ctx.config
        try:
            log.info("job %s: starting %s (resume from %.0f s)", cfg.job_id, self._entrypoint,
                     self._ctx.progress()["resumed_from_s"])
            if ":" in self._entrypoint and " " not in self._entrypoint:
                workdir = self._meta.get("job", {}).get("workdir")
                if workdir:  # the actor runs this job only: its working directory is the job's
                    os.chdir(workdir)
                resolve_entrypoint(self._entrypoint)(self._ctx)
            else:
                self._run_command()
            if not self._ctx.progress()["done"]:
                self._ctx.mark_stopped()
        except Exception as e:  # the workload failed: report it through the progress channel
            log.exception("job %s failed", cfg.job_id)
            self._ctx.mark_stopped(error=f"{e.__class__.__name__}: {e}")
        finally:
            self._done.set()

    def _run_command(self) -> None:
        assert self._ctx is not None
        env = {**os.environ, "WINDWARD_JOB_DIR": str(self._ctx.job_dir), **self._ctx.config.env()}
        with open(self._log_path, "ab") as out:
            job = self._meta.get("job", {})  # the spec's args follow the command; it runs in the spec's workdir
            argv = shlex.split(self._entrypoint) + [str(a) for a in job.get("args") or ()]
            self._proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=job.get("workdir") or None)
            # a command's start-up is its own business: the executor cannot see it, so the job is ready (and
            # start() returns) once its process runs; waiting for a progress report that a plain command never
            # writes held start() for ready_timeout_s
            self._ctx.mark_ready()
            signalled = False
            while self._proc.poll() is None:
                if self._ctx.should_stop() and not signalled:
                    self._proc.send_signal(signal.SIGTERM)
                    signalled = True
                time.sleep(0.05)
                self._sync_from_file()
        self._sync_from_file()
        if self._proc.returncode != 0 and not self._ctx.progress()["done"]:
            raise RuntimeError(f"command exited with status {self._proc.returncode}")

    def _sync_from_file(self) -> None:
        assert self._ctx is not None
        p = read_progress(self._ctx.job_dir, self._rank)
        if p is None:
            return
        if p.get("done"):
            self._ctx.finish(p.get("result"))
        else:
            extra = {k: v for k, v in p.items() if k not in ("work_done_s", "step", "job_id")}
            self._ctx.report(float(p.get("work_done_s", 0.0)), int(p.get("step", 0)), **extra)

    # ------------------------------------------------------------------ called by the executor

    def progress(self) -> dict[str, Any]:
        if self._ctx is None:  # created, not yet told to run
            return {"work_done_s": 0.0, "done": False, "error": None, "finished_thread": False, "started": False}
        out = self._ctx.progress()
        out["finished_thread"] = self._done.is_set()
        out["started"] = True
        return out

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the workload's start-up is over (its first progress report) or it ended, at most
        ``timeout_s``; True if it is ready. The executor starts the job's clock only then."""
        deadline = time.monotonic() + float(timeout_s)
        while True:
            if self._ctx is not None and (self._ctx.progress()["ready"] or self._done.is_set()):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.02, left))

    def set_power_fraction(self, power_fraction: float) -> None:
        if self._ctx is not None:
            self._ctx.set_power_fraction(power_fraction)

    def stop(self, grace_s: float) -> dict[str, Any]:
        """Ask the workload to checkpoint and stop; wait up to ``grace_s``; return the last progress."""
        if self._ctx is None:
            return self.progress()
        self._ctx.request_stop()
        self._done.wait(grace_s)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        return self.progress()

    def info(self) -> dict[str, Any]:
        cfg = JobConfig.from_json(self._config_json) if self._ctx is None else self._ctx.config
        return {"config": cfg.to_json(), "entrypoint": self._entrypoint, "meta": dict(self._meta),
                "job_dir": str(Path(cfg.job_dir)), "rank": self._rank, "started": self._ctx is not None}

    def set_meta(self, meta: dict[str, Any]) -> None:
        self._meta = dict(meta)
