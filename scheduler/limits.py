"""Limits an operator sets on the HTTP API (``windward server --max-queued-per-tenant ...``), and the token
bucket behind the per-tenant submission rate. Plain values and logic: the API (:mod:`scheduler.api`) enforces
them, the CLI (:mod:`scheduler.cli.options`) offers them as options with these defaults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.errors import InputError

#: Largest request body accepted by default (bytes); larger ones get 413 before parsing.
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Limits an operator sets (``windward server --max-...``); each refusal is a 4xx that names the limit.

    ``max_body_bytes``: request body (413). ``max_header_bytes``: all request header names and values
    together (431, checked before anything else, a token is never hashed past it).
    ``max_queued_per_tenant``: a tenant's queued jobs, counting submissions not yet committed (429).
    ``submit_rate_per_s`` / ``submit_burst``: a token bucket per tenant on ``POST /v1/jobs`` (429 with
    ``Retry-After``); 0 turns the rate limit off.
    Both 429 limits count new jobs only: a retry with the ``Idempotency-Key`` of a job already accepted is
    answered with that job (200) whatever the limits say, and costs no token.
    ``read_rate_per_s`` / ``read_burst``: a token bucket per caller (token) on the list pages (``GET
    /v1/queue``, ``GET /v1/jobs``, ``GET /v1/audit``; 429 with ``Retry-After``); 0 turns it off. With the
    defaults a caller reads 100 pages at once (50,000 jobs at the default page size: ``windward queue``
    follows them all) and 20 a second after that, whatever the number of its clients: operators polling
    the queue back to back do not take the interpreter from the submissions (issue 16).
    """

    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = 16 * 1024
    max_queued_per_tenant: int = 10_000
    submit_rate_per_s: float = 500.0
    submit_burst: int = 1000
    read_rate_per_s: float = 20.0
    read_burst: int = 100

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "max_queued_per_tenant", "submit_burst", "read_burst"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: {v!r}; allowed: an integer >= 1")
        for name in ("submit_rate_per_s", "read_rate_per_s"):
            r = getattr(self, name)
            if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r < 0:
                raise InputError(f"{name}: {r!r}; allowed: a finite number >= 0 (0: no rate limit)")


class TokenBuckets:
    """One token bucket per key (tenant): ``rate_per_s`` tokens a second up to ``burst``. Not thread-safe:
    used from the API's event loop only. ``clock``: monotonic seconds (injected for tests)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= 1.0 - 1e-9:  # refills are sums of float products: one token may come out as 0.99999...
            self._buckets[key] = (max(tokens - 1.0, 0.0), now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s

    def refund(self, key: str) -> None:
        """Give back one token taken by :meth:`take` for a request that turned out not to be new work (an
        idempotent retry answered with the job it created first): the rate counts new jobs only."""
        if self.rate_per_s <= 0:
            return
        got = self._buckets.get(key)
        if got is not None:
            self._buckets[key] = (min(self.burst, got[0] + 1.0), got[1])
