"""Example training workload: a small numpy MLP trained on a synthetic 8x8 glyph data set (10 classes).

The data are *synthetic*, not the UCI handwritten digits: :func:`load_data` draws 1797 images from a fixed
seed, each one of the ten constant 8x8 bitmaps of :data:`GLYPHS` (digit shapes 0-9) with some stroke
pixels dropped, a random stroke intensity, a shift of at most one pixel in each direction and Gaussian
pixel noise, clipped to [0, 1]. The same seed gives the same images on every node, so nothing is
downloaded or shipped. The noise is set so the default run (200 steps) lands near 0.93 test accuracy, a
task about as hard for this network as the UCI digits (0.89), not a solved one.

Real training (forward, backward, SGD) on CPU, no data set package needed. It checkpoints its
weights every ``checkpoint_interval_s`` of work and when asked to stop, and resumes from the last
checkpoint. Minibatch k is drawn from ``default_rng([seed, k])``, so a run that is preempted and resumed
ends with *exactly* the weights of an uninterrupted run (tests compare :func:`reference_result`).

Params (``JobConfig.params``): ``steps`` (default 200), ``hidden`` (32), ``batch`` (64), ``lr`` (0.3).

A gang (``world_size > 1``: one worker per node) trains data-parallel with ``torch.distributed``: every rank
draws the same minibatch, computes the gradient of its shard (rows ``rank::world_size``) and one
``all_reduce`` sums the shards' gradients (gloo on CPU, NCCL when Ray assigned the rank GPUs and CUDA is
there). The same ``all_reduce`` carries each rank's stop flag, so all ranks stop at the same step, rank 0
writes the checkpoint and every rank resumes from it. The summed gradient equals the single-process one up
to float rounding, so a gang reaches the reference accuracy, not its exact weights.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scheduler.workloads.runtime import JobContext

log = logging.getLogger(__name__)

_F64 = NDArray[np.float64]


#: The ten glyphs (class k is row k), 8x8, '#' a stroke pixel. The bottom row and the outer columns are empty,
#: so a one-pixel shift keeps almost every stroke in the frame.
GLYPHS: tuple[tuple[str, ...], ...] = (
    ("..####..", ".##..##.", ".##..##.", ".##..##.", ".##..##.", ".##..##.", "..####..", "........"),
    ("...##...", "..###...", ".####...", "...##...", "...##...", "...##...", ".######.", "........"),
    ("..####..", ".##..##.", ".....##.", "....##..", "...##...", "..##....", ".######.", "........"),
    ("..####..", ".##..##.", ".....##.", "...###..", ".....##.", ".##..##.", "..####..", "........"),
    ("....##..", "...###..", "..####..", ".##.##..", ".######.", "....##..", "....##..", "........"),
    (".######.", ".##.....", ".#####..", ".....##.", ".....##.", ".##..##.", "..####..", "........"),
    ("..####..", ".##.....", ".#####..", ".##..##.", ".##..##.", ".##..##.", "..####..", "........"),
    (".######.", ".....##.", "....##..", "...##...", "..##....", "..##....", "..##....", "........"),
    ("..####..", ".##..##.", ".##..##.", "..####..", ".##..##.", ".##..##.", "..####..", "........"),
    ("..####..", ".##..##.", ".##..##.", "..#####.", ".....##.", "....##..", "..###...", "........"),
)
N_CLASSES = 10
DATA_SEED = 1797  # one fixed data set for every job and node (the job's seed only draws weights and batches)
N_IMAGES = 1797
N_TRAIN = 1400  # fixed split: the first 1400 images train, the remaining 397 test
STROKE_DROP_P = 0.05  # each stroke pixel is blanked with this probability
MIN_INTENSITY = 0.7  # an image's strokes have one intensity, uniform in [MIN_INTENSITY, 1]
NOISE_SIGMA = 0.1  # Gaussian noise on every pixel before clipping to [0, 1]


@dataclass(frozen=True, slots=True)
class Digits:
    """Train and test split of the synthetic glyph images: ``x_*`` (n, 64) float64 in [0, 1] (row-major 8x8),
    ``y_*`` (n,) int64 class labels 0..9."""

    x_train: _F64
    y_train: NDArray[np.int64]
    x_test: _F64
    y_test: NDArray[np.int64]


def _glyph_bitmaps() -> _F64:
    """(10, 8, 8) float64 of 0/1 from :data:`GLYPHS`."""
    return np.array([[[c == "#" for c in row] for row in g] for g in GLYPHS], dtype=np.float64)


def synthetic_glyphs(n_images: int, seed: int) -> tuple[_F64, NDArray[np.int64]]:
    """``n_images`` noisy glyph images and their labels, drawn from ``default_rng(seed)`` (module docstring).

    Returns ``x`` (n_images, 64) float64 in [0, 1] and ``y`` (n_images,) int64; every class has
    ``n_images // 10`` or one more images, in a seeded random order."""
    if n_images < 1:
        raise ValueError(f"n_images={n_images}: must be >= 1")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_images, dtype=np.int64) % N_CLASSES)
    img = _glyph_bitmaps()[y]
    img *= rng.random(img.shape) >= STROKE_DROP_P
    img *= rng.uniform(MIN_INTENSITY, 1.0, (n_images, 1, 1))
    # shift by (dy, dx) in {-1, 0, 1}^2 with zeros shifted in: read the zero-padded image at an offset window
    padded = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    dy = rng.integers(-1, 2, n_images)
    dx = rng.integers(-1, 2, n_images)
    r = np.arange(8)
    rows = (1 - dy)[:, None, None] + r[None, :, None]
    cols = (1 - dx)[:, None, None] + r[None, None, :]
    img = padded[np.arange(n_images)[:, None, None], rows, cols]
    img += rng.normal(0.0, NOISE_SIGMA, img.shape)
    return np.clip(img, 0.0, 1.0).reshape(n_images, 64), y


def load_data() -> Digits:
    """The fixed synthetic data set (:data:`DATA_SEED`): :data:`N_TRAIN` training and 397 test images."""
    x, y = synthetic_glyphs(N_IMAGES, DATA_SEED)
    return Digits(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])


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


def _shard_grads(
    w: dict[str, _F64], x: _F64, y: NDArray[np.int64], batch: int
) -> tuple[dict[str, _F64], float]:
    """Gradients of the mean cross-entropy over a full batch of ``batch`` rows, from the rows ``x, y`` (a
    shard of it): shard gradients sum to the full batch's. Returns (gradients, the shard's loss sum)."""
    z1 = x @ w["w1"] + w["b1"]
    h = np.maximum(z1, 0.0)
    logits = h @ w["w2"] + w["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss_sum = float(-np.log(p[np.arange(n), y] + 1e-12).sum())
    g = p
    g[np.arange(n), y] -= 1.0
    g /= batch
    gh = (g @ w["w2"].T) * (z1 > 0)
    return {"w1": x.T @ gh, "b1": gh.sum(axis=0), "w2": h.T @ g, "b2": g.sum(axis=0)}, loss_sum


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


class _Gang:
    """torch.distributed for one gang worker: one all_reduce per step of [gradients..., loss, stop flag]."""

    def __init__(self, ctx: JobContext, w: dict[str, _F64]) -> None:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        cfg = ctx.config
        self.torch, self.dist = torch, dist
        use_cuda = bool(cfg.gpu_ids) and torch.cuda.is_available()
        self.device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")  # Ray set CUDA_VISIBLE_DEVICES
        self.backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(
            self.backend, init_method=f"tcp://{cfg.master_addr}:{cfg.master_port}", rank=cfg.rank,
            world_size=cfg.world_size, timeout=timedelta(seconds=float(cfg.params.get("dist_timeout_s", 600))),
        )  # fmt: skip
        self.keys = sorted(w)
        self.shapes = [w[k].shape for k in self.keys]
        log.info("job %s: rank %d/%d joined %s:%d (%s, GPUs %s)", cfg.job_id, cfg.rank, cfg.world_size,
                 cfg.master_addr, cfg.master_port, self.backend, list(cfg.gpu_ids))  # fmt: skip

    def all_reduce(self, grads: dict[str, _F64], loss_sum: float, stop: bool) -> tuple[dict[str, _F64], float, bool]:
        flat = np.concatenate([grads[k].ravel() for k in self.keys] + [np.array([loss_sum, 1.0 if stop else 0.0])])
        t = self.torch.from_numpy(flat).to(self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        out = t.cpu().numpy()
        g, i = {}, 0
        for k, shp in zip(self.keys, self.shapes):
            n = int(np.prod(shp))
            g[k] = out[i : i + n].reshape(shp)
            i += n
        return g, float(out[i]), bool(out[i + 1] > 0)

    def barrier(self) -> None:
        """Wait until every rank gets here (an all_reduce of one number: works on gloo and NCCL alike)."""
        self.dist.all_reduce(self.torch.zeros(1, dtype=self.torch.float64, device=self.device))

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def _run_gang(ctx: JobContext, steps: int, hidden: int, batch: int, lr: float) -> dict[str, Any] | None:
    cfg = ctx.config
    work_per_step_s = cfg.duration_s / steps
    ckpt_every = max(1, int(cfg.checkpoint_interval_s // work_per_step_s))
    data = load_data()
    restored = ctx.load_checkpoint()
    w, k = (restored[0], int(restored[1]["step"])) if restored is not None else (init_weights(cfg.seed, hidden), 0)
    ctx.report(k * work_per_step_s, k, world_size=cfg.world_size)
    gang = _Gang(ctx, w)
    try:
        loss = float("nan")
        while k < steps:
            idx = np.random.default_rng([cfg.seed, k]).choice(data.x_train.shape[0], size=batch, replace=False)
            mine = idx[cfg.rank :: cfg.world_size]
            g, loss_sum = _shard_grads(w, data.x_train[mine], data.y_train[mine], batch)
            g, loss_sum, stop = gang.all_reduce(g, loss_sum, ctx.should_stop())
            if stop:  # every rank saw the same flag: all stop before this step, rank 0 keeps the state
                ctx.save_checkpoint(w, k * work_per_step_s, k)
                ctx.report(k * work_per_step_s, k, loss=loss)
                return None
            for key in w:
                w[key] -= lr * g[key]
            loss = loss_sum / batch
            ctx.pace(work_per_step_s)
            k += 1
            if k % ckpt_every == 0 or k == steps:
                ctx.save_checkpoint(w, k * work_per_step_s, k)
            ctx.report(k * work_per_step_s, k, loss=loss)
        result = {**_result(w, data, steps), "world_size": cfg.world_size, "backend": gang.backend}
        # the executor tears the whole gang down once rank 0 reports done: every other rank writes its result
        # first, and rank 0 writes its own only after the barrier says they all have
        if cfg.rank != 0:
            ctx.finish(result)
        gang.barrier()
        if cfg.rank == 0:
            ctx.finish(result)
    finally:
        gang.close()
    return result


def run(ctx: JobContext) -> dict[str, Any] | None:
    """Train until done or asked to stop; returns the result when done, None when stopped."""
    cfg = ctx.config
    if cfg.world_size > 1:
        return _run_gang(ctx, *_params(cfg.params))
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
        loss = sgd_step(w, data, cfg.seed, k, batch, lr)
        ctx.pace(work_per_step_s)
        k += 1
        if k % ckpt_every == 0 or k == steps:
            ctx.save_checkpoint(w, k * work_per_step_s, k)
        ctx.report(k * work_per_step_s, k, loss=loss)
    result = _result(w, data, steps)
    ctx.finish(result)
    return result
