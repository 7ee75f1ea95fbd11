"""Inference never misses capacity: the GPUs it is expected to need (:class:`InferenceReserve`), the
non-preemptible starts held back to keep them free (:func:`hold_for_reserve`), and the work preempted to
make room when inference finds no free GPUs (:func:`room_victims`). Pure: no executor calls, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.policies.base import Assignment
from scheduler.policies.capacity import SitePower


class InferenceReserve:
    """Expected inference GPUs per pool over the planning horizon, from the demand seen so far.

    Inference is released slot by slot (one job per slot of the service), so a policy never sees next
    slot's demand. This forecaster keeps the demand observed at each tick, per *home pool* (the first of
    :func:`~scheduler.policies.capacity.inference_pool_order`: the largest eligible pool), and predicts slot
    ``s + h`` as ``ceil((1 + margin) * max(recent, seasonal))``, where ``recent`` is the peak of the last
    ``lookback_s`` and ``seasonal`` the peak within ``+-season_window_s`` of the same time of day on the
    latest observed day (diurnal traffic). Observed slots only; pure (no clock, no I/O), so the service can
    use it as the simulator does.
    """

    def __init__(
        self,
        pool_names: Sequence[str],
        slot_s: float,
        *,
        margin: float = 0.2,
        lookback_s: float = 4 * 3600.0,
        season_s: float = 86400.0,
        season_window_s: float = 3600.0,
    ) -> None:
        if margin < 0 or lookback_s <= 0 or season_s <= 0 or season_window_s < 0 or slot_s <= 0:
            raise InputError(
                f"InferenceReserve: margin {margin} must be >= 0, lookback_s {lookback_s}, season_s {season_s} and "
                f"slot_s {slot_s} > 0, season_window_s {season_window_s} >= 0"
            )
        self.pool_names = tuple(pool_names)
        self.margin = float(margin)
        self.lookback = max(1, int(math.ceil(lookback_s / slot_s)))
        self.season = max(1, int(round(season_s / slot_s)))
        self.window = int(math.ceil(season_window_s / slot_s))
        self._keep = 3 * self.season + self.lookback + 2 * self.window
        self._origin: int | None = None
        self._hist = np.zeros((len(self.pool_names), 0))
        self._seen = np.zeros(0, dtype=bool)

    def observe(self, slot: int, demand_gpus: Mapping[str, float]) -> None:
        """Record the inference GPUs demanded at ``slot`` per home pool (missing pools: 0)."""
        if self._origin is None:
            self._origin = int(slot)
        i = int(slot) - self._origin
        if i < 0:
            return
        if i >= self._hist.shape[1]:
            grow = max(i + 1 - self._hist.shape[1], self._hist.shape[1], 64)
            self._hist = np.concatenate([self._hist, np.zeros((self._hist.shape[0], grow))], axis=1)
            self._seen = np.concatenate([self._seen, np.zeros(grow, dtype=bool)])
        self._hist[:, i] = [float(demand_gpus.get(n, 0.0)) for n in self.pool_names]
        self._seen[i] = True
        if i >= 2 * self._keep:  # forget what no forecast looks at any more
            drop = i - self._keep
            self._hist = self._hist[:, drop:]
            self._seen = self._seen[drop:]
            self._origin += drop

    def forecast(self, slot: int, horizon_slots: int) -> dict[str, NDArray[np.int64]]:
        """Pool name -> ``(horizon_slots,)`` GPUs to keep for inference, index 0 = ``slot``."""
        n = max(int(horizon_slots), 1)
        p = len(self.pool_names)
        if self._origin is None or p == 0:
            return {name: np.zeros(n, dtype=np.int64) for name in self.pool_names}
        now = int(slot) - self._origin
        hist = np.where(self._seen, self._hist, 0.0)[:, : max(now + 1, 0)]
        if hist.shape[1] == 0:
            return {name: np.zeros(n, dtype=np.int64) for name in self.pool_names}
        recent = hist[:, max(0, now + 1 - self.lookback) :].max(axis=1)  # (P,)
        # seasonal: peak around the same time of day on the latest day that is observed for each h
        h = np.arange(n)
        k = np.maximum(1, np.ceil((h + self.window) / self.season)).astype(np.int64)
        centre = now + h - k * self.season
        w = self.window
        padded = np.concatenate([np.zeros((p, w)), hist, np.zeros((p, w))], axis=1)
        if w:
            win = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1, axis=1).max(axis=2)  # (P, L)
        else:
            win = padded
        ok = (centre >= 0) & (centre < hist.shape[1])
        seasonal = np.zeros((p, n))
        seasonal[:, ok] = win[:, centre[ok]]
        expected = np.maximum(recent[:, None], seasonal)
        out = np.ceil((1.0 + self.margin) * expected - 1e-9).astype(np.int64)
        return {name: out[i] for i, name in enumerate(self.pool_names)}


def hold_for_reserve(
    power: SitePower,
    run: Mapping[str, Assignment],
    jobs: Mapping[str, Job],
    running: Mapping[str, Any],  # the jobs running now (membership only)
    healthy_gpus: Mapping[str, int],
    reserve: Mapping[str, Any],
) -> tuple[dict[str, Assignment], tuple[str, ...]]:
    """Hold back new starts of non-preemptible work that would take GPUs inference will need.

    In each pool, running and newly started non-preemptible non-inference work may hold at most
    ``healthy - max(inference now, peak of the reserve over the horizon)`` GPUs: what is left is inference's,
    plus preemptible work that inference displaces when it comes. New starts are admitted highest priority
    first (then submit time); the others stay queued. Returns (run, held ids). Pure: no executor calls.
    """
    healthy = power.healthy_array(healthy_gpus)
    need = np.zeros(len(power.names))
    for name, series in reserve.items():
        i = power.index.get(name)
        a = np.asarray(series, dtype=np.float64)
        if i is not None and a.size:
            need[i] = float(a.max())
    inf_now = np.zeros(len(power.names))
    fixed = np.zeros(len(power.names))
    new: list[str] = []
    for jid, asg in run.items():
        j = jobs[jid]
        p = power.index[asg.pool]
        if j.must_run:
            inf_now[p] += j.gpus
        elif not j.preemptible:
            if jid in running:
                fixed[p] += j.gpus
            else:
                new.append(jid)
    if not new:
        return dict(run), ()
    room = healthy - np.maximum(need, inf_now) - fixed
    held: list[str] = []
    for jid in sorted(new, key=lambda j: (-jobs[j].priority, jobs[j].submit_s, j)):
        p = power.index[run[jid].pool]
        if jobs[jid].gpus <= room[p] + 1e-9:
            room[p] -= jobs[jid].gpus
        else:
            held.append(jid)
    if not held:
        return dict(run), ()
    hs = set(held)
    return {j: a for j, a in run.items() if j not in hs}, tuple(held)


def room_victims(job: Job, free_gpus: int, running: Iterable[tuple[str, Job]]) -> list[str] | None:
    """Which running jobs of one pool to preempt so that inference ``job`` fits: preemptible non-inference
    work, lowest priority and latest submitted first, until the free GPUs plus theirs hold it (an executor
    that places a gang of whole nodes may need more than the count: never more than twice what it needs).
    None: even all of them would not make room. Pure; the loop and the service both use it."""
    victims = sorted(
        ((jid, j) for jid, j in running if j.preemptible and not j.must_run),
        key=lambda v: (v[1].priority, -v[1].submit_s, v[0]),
    )
    if free_gpus + sum(j.gpus for _, j in victims) < job.gpus:
        return None
    out: list[str] = []
    free = free_gpus
    for jid, j in victims:  # the caller tries the start after each preemption and stops once it fits
        if free >= 2 * job.gpus:
            break
        out.append(jid)
        free += j.gpus
    return out


def reserve_peaks(reserve: Mapping[str, Any]) -> dict[str, float]:
    """Pool -> the most GPUs the inference reserve keeps over the horizon."""
    out: dict[str, float] = {}
    for name, series in reserve.items():
        a = np.asarray(series, dtype=np.float64)
        out[name] = float(a.max()) if a.size else 0.0
    return out


def node_victims(job: Job, free_by_node: Sequence[int], running: Iterable[tuple[str, Job, tuple[int, ...]]],
                 gpus_per_node: int) -> list[str] | None:  # fmt: skip
    """Which running jobs of one pool to preempt so that the gang ``job`` (at most one node's GPUs) finds a
    node: on each node, preemptible non-inference work placed on that node alone, lowest priority and latest
    submitted first, until the node's free GPUs hold the gang; the node that needs the fewest GPUs preempted
    wins (the lowest index on ties). None: no node can be made to hold it (a gang wider than a node, or the
    work on every node is protected). Unlike :func:`room_victims` (inference: replicas on any nodes), it
    never preempts work that would not make the start succeed. Pure."""
    g = job.gpus
    if g > gpus_per_node:
        return None
    per: dict[int, list[tuple[str, Job]]] = {}
    for jid, j, nodes in running:
        if j.preemptible and not j.must_run and len(nodes) == 1:
            per.setdefault(nodes[0], []).append((jid, j))
    best: tuple[int, list[str]] | None = None
    for n, free in enumerate(free_by_node):
        got, cost, out = int(free), 0, []
        for jid, j in sorted(per.get(n, []), key=lambda v: (v[1].priority, -v[1].submit_s, v[0])):
            if got >= g:
                break
            out.append(jid)
            got += j.gpus
            cost += j.gpus
        if got >= g and (best is None or cost < best[0]):
            best = (cost, out)
    return best[1] if best is not None else None
