"""Example training workload: a small numpy MLP trained on scikit-learn's bundled digits data set.

Real training (forward, backward, SGD) on real data that ships with a package, on CPU. It checkpoints its
weights every ``checkpoint_interval_s`` of work and when asked to stop, and resumes from the last
checkpoint. Minibatch k is drawn from ``default_rng([seed, k])``, so a run that is preempted and resumed
ends with *exactly* the weights of an uninterrupted run (tests compare :func:`reference_result`).

Params (``JobConfig.params``): ``steps`` (default 200), ``hidden`` (32), ``batch`` (64), ``lr`` (0.3).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scheduler.workloads.runtime import JobContext

log = logging.getLogger(__name__)

_F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Digits:
    x_train: _F64
    y_train: NDArray[np.int64]
    x_test: _F64
    y_test: NDArray[np.int64]


def load_data() -> Digits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.asarray(d.data, dtype=np.float64) / 16.0
    y = np.asarray(d.target, dtype=np.int64)
    n_train = 1400  # fixed split: the first 1400 images train, the remaining 397 test
    return Digits(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def init_weights(seed: int, hidden: int) -> dict[str, _F64]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0.0, 1.0 / math.sqrt(64), (64, hidden)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(0.0, 1.0 / math.sqrt(hidden), (hidden, 10)),
        "b2": np.zeros(10),
    }


def predict(w: dict[str, _F64], x: _F64) -> NDArray[np.int64]:
    h = np.maximum(x @ w["w1"] + w["b1"], 0.0)
    return np.argmax(h @ w["w2"] + w["b2"], axis=1)


def sgd_step(w: dict[str, _F64], data: Digits, seed: int, k: int, batch: int, lr: float) -> float:
    """One minibatch SGD step (in place) on batch k; returns the batch's cross-entropy loss."""
    idx = np.random.default_rng([seed, k]).choice(data.x_train.shape[0], size=batch, replace=False)
    x, y = data.x_train[idx], data.y_train[idx]
    z1 = x @ w["w1"] + w["b1"]
    h = np.maximum(z1, 0.0)
    logits = h @ w["w2"] + w["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(batch), y] + 1e-12).mean())
    g = p
    g[np.arange(batch), y] -= 1.0
    g /= batch
    gw2 = h.T @ g
    gb2 = g.sum(axis=0)
    gh = (g @ w["w2"].T) * (z1 > 0)
    gw1 = x.T @ gh
    gb1 = gh.sum(axis=0)
    w["w1"] -= lr * gw1
    w["b1"] -= lr * gb1
    w["w2"] -= lr * gw2
    w["b2"] -= lr * gb2
    return loss


def weights_digest(w: dict[str, _F64]) -> str:
    h = hashlib.sha256()
    for k in sorted(w):
        h.update(np.ascontiguousarray(w[k]).tobytes())
    return h.hexdigest()


def _result(w: dict[str, _F64], data: Digits, steps: int) -> dict[str, Any]:
    acc = float((predict(w, data.x_test) == data.y_test).mean())
    return {"accuracy": acc, "weights_sha256": weights_digest(w), "steps": steps}


def _params(params: Any) -> tuple[int, int, int, float]:
    return (
        int(params.get("steps", 200)),
        int(params.get("hidden", 32)),
        int(params.get("batch", 64)),
        float(params.get("lr", 0.3)),
    )


def reference_result(seed: int = 0, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result of an uninterrupted run, computed in-process (what any preempted run must also reach)."""
    steps, hidden, batch, lr = _params(params or {})
    data = load_data()
    w = init_weights(seed, hidden)
    for k in range(steps):
        sgd_step(w, data, seed, k, batch, lr)
    return _result(w, data, steps)


def run(ctx: JobContext) -> dict[str, Any] | None:
    """Train until done or asked to stop; returns the result when done, None when stopped."""
    cfg = ctx.config
    steps, hidden, batch, lr = _params(cfg.params)
    work_per_step_s = cfg.duration_s / steps
    ckpt_every = max(1, int(cfg.checkpoint_interval_s // work_per_step_s))
    data = load_data()
    restored = ctx.load_checkpoint()
    if restored is not None:
        w, meta = restored
        k = int(meta["step"])
        log.info("job %s: resuming from checkpoint at step %d/%d", cfg.job_id, k, steps)
    else:
        w, k = init_weights(cfg.seed, hidden), 0
    ctx.report(k * work_per_step_s, k)
    loss = float("nan")
    while k < steps:
        if ctx.should_stop():
            ctx.save_checkpoint(w, k * work_per_step_s, k)
            ctx.report(k * work_per_step_s, k, loss=loss)
            return None
        t0 = time.perf_counter()
        loss = sgd_step(w, data, cfg.seed, k, batch, lr)
        ctx.pace(work_per_step_s, time.perf_counter() - t0)
        k += 1
        if k % ckpt_every == 0 or k == steps:
            ctx.save_checkpoint(w, k * work_per_step_s, k)
        ctx.report(k * work_per_step_s, k, loss=loss)
    result = _result(w, data, steps)
    ctx.finish(result)
    return result
