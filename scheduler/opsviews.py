"""What an operator looks at beside the queue: the pools (``GET /v1/pools``, ``windward pools``, like
``sinfo``) and a job's output (``GET /v1/jobs/{id}/logs``, ``windward logs [-f]``). Pure functions over what
the server already has (the site, the executor's healthy GPUs, the running jobs of the store), plus one file
read for the logs.

Pool view (one entry per pool of the site)::

    {"name", "labels": {k: v}, "nodes", "gpus_per_node",
     "gpus": {"total", "running", "free", "down"},        # running + free + down == total
     "power": {"tdp_w", "min_power_fraction", "min_gpu_w", "limit_w", "set_w"},
     "jobs_running"}

``limit_w`` is the pool's GPU power at full power (healthy GPUs x ``tdp_w``), ``set_w`` the GPU power limits the
scheduler set on its running jobs (sum of gpus x fraction x ``tdp_w``), ``min_gpu_w`` one GPU's lowest limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from scheduler.models import Site

#: The most bytes one ``/v1/jobs/{id}/logs`` reply carries (``windward logs`` asks again from ``next_offset``).
MAX_LOG_CHUNK_BYTES = 1 << 20


def pools_view(site: Site, healthy_gpus: Mapping[str, int], running: Iterable[tuple[str | None, int, float]]) -> dict[str, Any]:
    """``running``: (pool, gpus, power_fraction) of every running job. Returns ``{"pools": [...], "site":
    {"site_max_w", "pue"}}`` (module docstring)."""
    busy: dict[str, int] = {}
    set_f: dict[str, float] = {}
    n_jobs: dict[str, int] = {}
    for pool, gpus, frac in running:
        if pool is None:
            continue
        busy[pool] = busy.get(pool, 0) + int(gpus)
        set_f[pool] = set_f.get(pool, 0.0) + int(gpus) * float(frac)
        n_jobs[pool] = n_jobs.get(pool, 0) + 1
    out = []
    for p in site.pools:
        healthy = int(healthy_gpus.get(p.name, 0))
        run = min(busy.get(p.name, 0), healthy)
        out.append({
            "name": p.name,
            "labels": dict(p.labels),
            "nodes": p.nodes,
            "gpus_per_node": p.gpus_per_node,
            "gpus": {"total": p.gpus, "running": run, "free": healthy - run, "down": p.gpus - healthy},
            "power": {"tdp_w": p.tdp_w, "min_power_fraction": p.min_power_fraction,
                      "min_gpu_w": p.min_power_fraction * p.tdp_w, "limit_w": healthy * p.tdp_w,
                      "set_w": set_f.get(p.name, 0.0) * p.tdp_w},
            "jobs_running": n_jobs.get(p.name, 0),
        })  # fmt: skip
    return {"pools": out, "site": {"name": site.name, "site_max_w": site.site_max_mw * 1e6, "pue": site.pue}}


def job_log_path(executor: object, job_id: str) -> Path | None:
    """Where the executor writes the job's output (``executor.log_path(job_id)``), None where it runs no
    processes (the simulated executor)."""
    fn = getattr(executor, "log_path", None)
    return fn(job_id) if fn is not None else None


def read_log(path: Path | None, offset: int, max_bytes: int = MAX_LOG_CHUNK_BYTES) -> dict[str, Any]:
    """A chunk of a job's output from byte ``offset``: ``{"available", "detail", "offset", "next_offset",
    "size", "text"}`` (``text`` decoded as UTF-8 with replacement; a chunk never splits a character)."""
    if path is None:
        return {"available": False, "detail": "this executor runs no processes (simulated): there is no output",
                "offset": offset, "next_offset": offset, "size": 0, "text": ""}  # fmt: skip
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            start = min(max(offset, 0), size)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return {"available": False, "detail": "no output yet (the job has not started here)", "offset": offset,
                "next_offset": offset, "size": 0, "text": ""}  # fmt: skip
    if len(data) == max_bytes:  # do not split a UTF-8 sequence: end before a continuation-byte run
        cut = len(data)
        while cut > 0 and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1
        data = data[:cut] if cut > 0 else data
    return {"available": True, "detail": "", "offset": start, "next_offset": start + len(data), "size": size,
            "text": data.decode("utf-8", errors="replace")}  # fmt: skip
