"""The job actor: one detached, named Ray actor per running job, placed in bundle 0 of the job's
placement group. It runs the workload in its own thread (so its methods stay responsive), owns no
driver but itself, and outlives the scheduler process that created it (re-adopted by name).

Entrypoints: ``module:function`` runs in the actor with a :class:`JobContext`; anything else is a command
run as a subprocess with ``WINDWARD_JOB_DIR`` set (it uses ``JobContext.from_env()``; SIGTERM asks it to
checkpoint and stop). The job's log is ``<job_dir>/job.log``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from scheduler.workloads.runtime import (
    CONFIG_FILE,
    JobConfig,
    JobContext,
    atomic_write_bytes,
    read_progress,
    resolve_entrypoint,
)

log = logging.getLogger(__name__)


class JobActor:
    def __init__(self, config_json: str, entrypoint: str, meta: dict[str, Any]) -> None:
        cfg = JobConfig.from_json(config_json)
        self._ctx = JobContext(cfg)
        self._entrypoint = entrypoint
        self._meta = dict(meta)
        self._done = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        atomic_write_bytes(self._ctx.job_dir / CONFIG_FILE, config_json.encode())
        self._log_handler = logging.FileHandler(self._ctx.job_dir / "job.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._log_handler)
        root.setLevel(logging.INFO)
        self._thread = threading.Thread(target=self._main, name=f"job-{cfg.job_id}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        cfg = self._ctx.config
        try:
            log.info("job %s: starting %s (resume from %.0f s)", cfg.job_id, self._entrypoint,
                     self._ctx.progress()["resumed_from_s"])
            if ":" in self._entrypoint and " " not in self._entrypoint:
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
        env = {**os.environ, "WINDWARD_JOB_DIR": str(self._ctx.job_dir)}
        with open(self._ctx.job_dir / "job.log", "ab") as out:
            self._proc = subprocess.Popen(shlex.split(self._entrypoint), env=env, stdout=out, stderr=out)
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
        p = read_progress(self._ctx.job_dir)
        if p is None:
            return
        if p.get("done"):
            self._ctx.finish(p.get("result"))
        else:
            extra = {k: v for k, v in p.items() if k not in ("work_done_s", "step", "job_id")}
            self._ctx.report(float(p.get("work_done_s", 0.0)), int(p.get("step", 0)), **extra)

    # ------------------------------------------------------------------ called by the executor

    def progress(self) -> dict[str, Any]:
        out = self._ctx.progress()
        out["finished_thread"] = self._done.is_set()
        return out

    def set_power_fraction(self, power_fraction: float) -> None:
        self._ctx.set_power_fraction(power_fraction)

    def stop(self, grace_s: float) -> dict[str, Any]:
        """Ask the workload to checkpoint and stop; wait up to ``grace_s``; return the last progress."""
        self._ctx.request_stop()
        self._done.wait(grace_s)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        return self.progress()

    def info(self) -> dict[str, Any]:
        return {"config": self._ctx.config.to_json(), "entrypoint": self._entrypoint, "meta": dict(self._meta),
                "job_dir": str(Path(self._ctx.job_dir))}

    def set_meta(self, meta: dict[str, Any]) -> None:
        self._meta = dict(meta)
