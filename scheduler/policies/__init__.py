"""Scheduling policies behind one interface (:mod:`scheduler.policies.base`), found by name.

``get_policy(name, **kw)`` imports the policy's module lazily, so ``windward`` (the optimiser-backed
policy in ``scheduler/policies/windward.py``) is available as soon as that module exists and the baselines
never pay for its imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

from scheduler.errors import InputError, WindwardError

log = logging.getLogger(__name__)

#: policy name -> "module:ClassName"
POLICIES: dict[str, str] = {
    "backfill": "scheduler.policies.backfill:BackfillPolicy",
    "greedy-green": "scheduler.policies.greedy_green:GreedyGreenPolicy",
    "windward": "scheduler.policies.windward:WindwardPolicy",
    "threshold": "scheduler.policies.threshold:ThresholdPolicy",
    "cics": "scheduler.policies.cics:CicsPolicy",
}


def _load(name: str) -> Any:
    target = POLICIES[name]
    mod_name, cls_name = target.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            raise InputError(f"policy {name!r} is not available in this build (module {mod_name} missing)") from e
        raise
    return getattr(mod, cls_name)


def available_policies() -> list[str]:
    """Names whose module can be found (without importing the heavier ones' dependencies)."""
    out = []
    for name, target in POLICIES.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            out.append(name)
    return out


def get_policy(name: str, **kw: Any) -> Any:
    """A policy instance by name (``backfill``, ``greedy-green``, ``windward``, ``threshold``, ``cics``); ``kw`` go to its constructor."""
    if name not in POLICIES:
        raise InputError(f"unknown policy {name!r}; allowed: {sorted(POLICIES)}")
    return _load(name)(**kw)


class FallbackPolicy:
    """The requested policy, falling back to ``backfill`` (logged, and named in ``name``) the first time it
    fails — the demo runs while the optimiser is still being built."""

    def __init__(self, primary: Any, fallback: Any) -> None:
        self.primary, self.fallback = primary, fallback
        self.failed: str | None = None

    @property
    def name(self) -> str:
        p = getattr(self.primary, "name", "primary")
        return p if self.failed is None else f"{self.fallback.name} (fallback: {p} failed)"

    def decide(self, snapshot: Any) -> Any:
        if self.failed is None:
            try:
                return self.primary.decide(snapshot)
            except Exception as e:  # noqa: BLE001 - any failure of the primary falls back, logged
                self.failed = f"{e.__class__.__name__}: {e}"
                log.warning("policy %s failed (%s); using backfill from now on", self.primary.name, self.failed)
        return self.fallback.decide(snapshot)


def make_policy(
    name: str,
    horizon_hours: float,
    *,
    plan_kwargs: Mapping[str, Any] | None = None,
    run_end_s: float | None = None,
    fallback: bool = False,
    defer_history_days: float = 0.0,
    beyond_age_h: float | None = None,
    max_defer_h: float | None = None,
) -> Any:
    """THE way ``windward simulate``, ``windward demo`` and ``windward server`` build a policy by name.

    ``plan_kwargs`` (e.g. ``{"backend": "torch", "device": "cuda"}``) go to every ``kernels.plan`` call of the
    windward policy; ``run_end_s`` (a run that ends: the demo) lets it plan up to the run's end and value work
    left undone then at full weight. The baselines plan nothing and take neither. ``fallback``: wrap the
    policy in :class:`FallbackPolicy` (backfill from its first failure on; also when it cannot be built).
    ``defer_history_days`` > 0: the windward policy prices work left past its horizon from that many days of
    observed signals (:class:`scheduler.deferral.TrailingSignals`, empty until seeded:
    :func:`scheduler.deferral.seed_deferral`); ``beyond_age_h``, ``max_defer_h``: ``WeightSettings.beyond_age_h``
    and ``WeightSettings.max_defer_h`` (all checked by :func:`scheduler.deferral.check_deferral_options`; the
    baselines ignore them)."""
    kw: dict[str, Any] = {"horizon_hours": horizon_hours}
    if name == "windward":
        from scheduler.deferral import TrailingSignals, check_deferral_options

        days, age_h, defer_h = check_deferral_options(defer_history_days, beyond_age_h, max_defer_h)
        kw["plan_kwargs"] = dict(plan_kwargs or {})
        if run_end_s is not None:
            kw["run_end_s"] = run_end_s
        if days > 0:
            kw["deferral"] = TrailingSignals(history_days=days)
        if age_h is not None or defer_h is not None:
            from dataclasses import replace

            from scheduler.policies.windward import DEFAULT_WEIGHTS

            kw["weights"] = replace(DEFAULT_WEIGHTS,
                                    beyond_age_h=DEFAULT_WEIGHTS.beyond_age_h if age_h is None else age_h,
                                    max_defer_h=DEFAULT_WEIGHTS.max_defer_h if defer_h is None else defer_h)
    if not fallback or name == "backfill":
        return get_policy(name, **kw)
    base = get_policy("backfill", horizon_hours=horizon_hours)
    try:
        primary = get_policy(name, **kw)
    except WindwardError as e:
        log.warning("policy %s unavailable (%s); using backfill", name, e)
        return base
    return FallbackPolicy(primary, base)
