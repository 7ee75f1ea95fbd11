"""Expected arrivals of deferrable work, fitted from what a policy has seen so far (never the future).

A policy calls :meth:`ArrivalModel.observe` with each snapshot; every job id seen for the first time adds
its work (``gpus * duration_s``, GPU-seconds at full speed) at its submit time. The expected arrival rate
is the mean over the trailing ``window_s`` of history (the whole history while it is shorter), so a
replay's model at time ``t`` depends only on submissions at or before ``t``. Inference (must-run) is left
out: the control loop forecasts it separately (``scheduler.control.InferenceReserve``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from scheduler.policies.base import Snapshot


@dataclass
class ArrivalModel:
    """Trailing-window rate of submitted deferrable work (GPU-seconds per second)."""

    window_s: float = 24 * 3600.0
    min_history_s: float = 3600.0  # below this much history the rate is 0 (nothing to fit yet)
    _seen: set[str] = field(default_factory=set)
    _times: list[float] = field(default_factory=list)  # submit times, sorted
    _cum: list[float] = field(default_factory=list)  # cumulative GPU-seconds up to each time
    _first_s: float | None = None

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.min_history_s < 0:
            raise ValueError(
                f"window_s must be > 0 and min_history_s >= 0, got {self.window_s}, {self.min_history_s}"
            )

    def observe(self, snapshot: Snapshot) -> None:
        """Record jobs seen for the first time (submitted at or before ``snapshot.now_s``)."""
        if self._first_s is None:
            self._first_s = float(snapshot.now_s)
        new = [js.job for js in snapshot.jobs if js.job.job_id not in self._seen and not js.job.must_run]
        for job in sorted(new, key=lambda j: j.submit_s):
            self._seen.add(job.job_id)
            t = min(float(job.submit_s), float(snapshot.now_s))
            i = bisect.bisect_right(self._times, t)
            w = float(job.gpus) * float(job.duration_s)
            self._times.insert(i, t)
            prev = self._cum[i - 1] if i > 0 else 0.0
            self._cum.insert(i, prev + w)
            for k in range(i + 1, len(self._cum)):
                self._cum[k] += w
            self._first_s = min(self._first_s, t)

    def rate_gpu_s_per_s(self, now_s: float) -> float:
        """Expected GPU-seconds of deferrable work submitted per second from ``now_s`` on."""
        if self._first_s is None:
            return 0.0
        history = float(now_s) - self._first_s
        if history < self.min_history_s:
            return 0.0
        span = min(history, self.window_s)
        lo = float(now_s) - span
        i0 = bisect.bisect_right(self._times, lo)
        i1 = bisect.bisect_right(self._times, float(now_s))
        total = (self._cum[i1 - 1] if i1 > 0 else 0.0) - (self._cum[i0 - 1] if i0 > 0 else 0.0)
        return total / span

    def expected_gpu_s(self, now_s: float, span_s: float) -> float:
        """Expected GPU-seconds of deferrable work submitted in ``(now_s, now_s + span_s]``."""
        return self.rate_gpu_s_per_s(now_s) * max(float(span_s), 0.0)
