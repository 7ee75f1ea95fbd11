"""Example inference service: answers glyph-classification requests at a rate replayed from the Azure LLM
inference trace.

The request rate is an array of requests per second, one value per ``rate_period_s`` of (virtual) time,
replayed cyclically; :func:`azure_request_rates_per_s` builds it from the real trace (per-minute arrival
counts). Each tick the service draws the requests that arrived, classifies them with a small MLP (trained
at start-up on the synthetic glyph data set, see :mod:`scheduler.workloads.training`) and counts what it answered.
Its capacity scales with the speed of its GPUs at their power fraction (DESIGN speed curve): requests above
capacity are counted as ``dropped``. Work done is seconds of service; counters are checkpointed so a
restarted service continues its totals.

Params: ``rates_per_s`` (list), ``rate_period_s`` (default 60), ``capacity_rps`` (at full power, default
50), ``tick_s`` (virtual seconds per tick, default ``duration_s / 100``).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.errors import DataNotFoundError, InputError
from scheduler.workloads import training
from scheduler.workloads.runtime import JobContext

log = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 5.0


def azure_request_rates_per_s(path: str | Path, bin_s: float = 60.0) -> np.ndarray:
    """Requests per second in consecutive ``bin_s`` bins of the Azure LLM trace (``TIMESTAMP`` column)."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "TIMESTAMP" not in reader.fieldnames:
                raise InputError(f"{p}: no TIMESTAMP column (got {reader.fieldnames})")
            stamps = []
            for i, row in enumerate(reader, start=2):
                ts = row["TIMESTAMP"].strip()
                try:
                    stamps.append(datetime.fromisoformat(ts[:26]).timestamp())
                except ValueError as e:
                    raise InputError(f"{p}: row {i}: TIMESTAMP {ts!r} is not an ISO date-time") from e
    except OSError as e:
        raise DataNotFoundError(f"{p}: cannot read Azure trace: {e.strerror}") from e
    if not stamps:
        raise InputError(f"{p}: no requests")
    t = np.asarray(stamps) - min(stamps)
    counts = np.bincount((t // bin_s).astype(np.int64))
    return counts.astype(np.float64) / bin_s


def run(ctx: JobContext) -> dict[str, Any] | None:
    cfg = ctx.config
    rates = np.asarray(cfg.params.get("rates_per_s", [DEFAULT_RATE_PER_S]), dtype=np.float64)
    if rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise InputError(f"job {cfg.job_id}: params.rates_per_s must be finite and >= 0")
    period_s = float(cfg.params.get("rate_period_s", 60.0))
    capacity_rps = float(cfg.params.get("capacity_rps", 50.0))
    tick_s = float(cfg.params.get("tick_s", max(cfg.duration_s / 100.0, 1.0)))
    data = training.load_data()
    w = training.init_weights(cfg.seed, 32)
    for k in range(150):  # a quick model to serve (~0.05 s of CPU)
        training.sgd_step(w, data, cfg.seed, k, 64, 0.3)
    restored = ctx.load_checkpoint()
    counters = {"served": 0.0, "correct": 0.0, "dropped": 0.0}
    t_s = 0.0
    if restored is not None:
        arr, meta = restored
        counters.update({k: float(v) for k, v in zip(("served", "correct", "dropped"), arr["counters"])})
        t_s = float(meta["work_done_s"])
    rng = np.random.default_rng([cfg.seed, int(t_s)])
    ctx.report(t_s, int(counters["served"]), **counters)  # start-up done (model trained): serving starts now
    carry = 0.0
    latencies_ms: list[float] = []
    while t_s < cfg.duration_s:
        if ctx.should_stop():
            break
        next_change_s = (math.floor(t_s / period_s + 1e-9) + 1) * period_s  # ticks never straddle a rate change
        dt_s = min(tick_s, cfg.duration_s - t_s, next_change_s - t_s)
        rate = float(rates[int(math.floor(t_s / period_s + 1e-9)) % rates.size])
        carry += rate * dt_s
        n = int(carry)
        carry -= n
        cap = int(capacity_rps * ctx.speed() * dt_s)
        n_served = min(n, cap)
        t0 = time.perf_counter()
        if n_served:
            idx = rng.integers(0, data.x_test.shape[0], size=n_served)
            pred = training.predict(w, data.x_test[idx])
            counters["correct"] += float((pred == data.y_test[idx]).sum())
            latencies_ms.append((time.perf_counter() - t0) * 1000.0 / max(n_served, 1))
        counters["served"] += n_served
        counters["dropped"] += n - n_served
        ctx.wait_virtual(dt_s)
        t_s += dt_s
        ctx.report(t_s, int(counters["served"]), **counters, rate_per_s=rate)
    ctx.save_checkpoint({"counters": np.array([counters["served"], counters["correct"], counters["dropped"]])}, t_s, 0)
    if t_s < cfg.duration_s:
        return None
    result = {
        **counters,
        "accuracy": counters["correct"] / counters["served"] if counters["served"] else None,
        "mean_latency_ms_per_request": float(np.mean(latencies_ms)) if latencies_ms else None,
    }
    ctx.finish(result)
    return result
