"""Scheduling policies behind one interface (:mod:`scheduler.policies.base`), found by name.

``POLICIES`` is the one list of policy names: the ``--policy`` help of ``windward simulate``, ``windward
server`` and ``windward demo`` is generated from it (:func:`policy_help`), and every name is checked against it
(:func:`check_policy`). Each entry says which of the options that :func:`make_policy` shares among policies its
constructor takes (``SHARED_OPTIONS``), so every policy is built the same way and none is handed an argument it
has no parameter for (``cics`` took ``horizon_hours`` and crashed; a test checks each entry against its
constructor's signature).

``get_policy(name, **kw)`` imports the policy's module lazily, so ``windward`` (the optimiser-backed
policy in ``scheduler/policies/windward.py``) is available as soon as that module exists and the baselines
never pay for its imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.errors import InputError, WindwardError

log = logging.getLogger(__name__)

#: The options of :func:`make_policy` that more than one policy could take: ``horizon_hours`` (the policy's
#: planning horizon), ``plan_kwargs`` (its optimiser's backend and device), ``run_end_s`` (a run that ends: the
#: demo), ``deferral`` (work priced past the horizon: ``defer_history_days``, ``beyond_age_h``,
#: ``max_defer_h``). A policy that does not take one is built without it.
SHARED_OPTIONS: tuple[str, ...] = ("horizon_hours", "plan_kwargs", "run_end_s", "deferral")


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One registered policy: where its class is, what it does (for help texts), the shared options it takes."""

    target: str  #: "module:ClassName"
    summary: str  #: a few words for the --policy help
    takes: tuple[str, ...]  #: the SHARED_OPTIONS its constructor takes


#: policy name -> its spec. The one list of policy names.
POLICIES: dict[str, PolicySpec] = {
    "windward": PolicySpec("scheduler.policies.windward:WindwardPolicy", "the optimiser",
                           ("horizon_hours", "plan_kwargs", "run_end_s", "deferral")),
    "backfill": PolicySpec("scheduler.policies.backfill:BackfillPolicy", "EASY backfill, carbon-blind",
                           ("horizon_hours",)),
    "greedy-green": PolicySpec("scheduler.policies.greedy_green:GreedyGreenPolicy",
                               "each job in the greenest window its deadline allows", ("horizon_hours",)),
    "threshold": PolicySpec("scheduler.policies.threshold:ThresholdPolicy",
                            "starts work in slots below a carbon quantile", ("horizon_hours",)),
    "cics": PolicySpec("scheduler.policies.cics:CicsPolicy",
                       "a CICS-style virtual capacity curve over its own 24-hour day", ()),
}


#: The policy of ``windward simulate``, ``server`` and ``demo`` without ``--policy`` (and of ServiceConfig,
#: DemoConfig).
DEFAULT_POLICY = "windward"


def check_policy(name: str, option: str = "policy") -> PolicySpec:
    """The spec of policy ``name``; an unknown name is an :class:`InputError` naming ``option`` (a command's
    ``--policy``) and the allowed names."""
    spec = POLICIES.get(name)
    if spec is None:
        raise InputError(f"{option}: unknown policy {name!r}; allowed: {', '.join(POLICIES)}")
    return spec


def policy_help(lead: str = "Scheduling policy") -> str:
    """``--policy``'s help, generated from ``POLICIES``: every name with what it does."""
    return f"{lead}: " + "; ".join(f"{n} ({s.summary})" for n, s in POLICIES.items()) + "."


def takers(option: str) -> list[str]:
    """The policies that take shared option ``option`` (for the help of the options behind it)."""
    if option not in SHARED_OPTIONS:
        raise ValueError(f"option {option!r}: allowed: {', '.join(SHARED_OPTIONS)}")
    return [n for n, s in POLICIES.items() if option in s.takes]


def _load(name: str) -> Any:
    target = check_policy(name).target
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
    for name, spec in POLICIES.items():
        if importlib.util.find_spec(spec.target.split(":")[0]) is not None:
            out.append(name)
    return out


def get_policy(name: str, **kw: Any) -> Any:
    """A policy instance by name (one of ``POLICIES``); ``kw`` go to its constructor."""
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
    """THE way ``windward simulate``, ``windward demo`` and ``windward server`` build a policy by name. A
    policy is handed the shared options its ``POLICIES`` entry takes, and built without the others (``cics``
    draws its curve over its own 24-hour day: it takes no ``horizon_hours``, and the horizon still bounds the
    forecast it sees).

    ``plan_kwargs`` (e.g. ``{"backend": "torch", "device": "cuda"}``) go to every ``kernels.plan`` call of the
    windward policy; ``run_end_s`` (a run that ends: the demo) lets it plan up to the run's end and value work
    left undone then at full weight (the baselines plan nothing and take neither). ``fallback``: wrap the
    policy in :class:`FallbackPolicy` (backfill from its first failure on; also when it cannot be built).
    ``defer_history_days`` > 0: the windward policy prices work left past its horizon from that many days of
    observed signals (:class:`scheduler.deferral.TrailingSignals`, empty until seeded:
    :func:`scheduler.deferral.seed_deferral`); ``beyond_age_h``, ``max_defer_h``: ``WeightSettings.beyond_age_h``
    and ``WeightSettings.max_defer_h`` (all checked by :func:`scheduler.deferral.check_deferral_options`; the
    baselines ignore them)."""
    takes = check_policy(name).takes
    kw: dict[str, Any] = {}
    if "horizon_hours" in takes:
        kw["horizon_hours"] = horizon_hours
    if "plan_kwargs" in takes:
        kw["plan_kwargs"] = dict(plan_kwargs or {})
    if "run_end_s" in takes and run_end_s is not None:
        kw["run_end_s"] = run_end_s
    if "deferral" in takes:
        kw.update(_deferral_kwargs(defer_history_days, beyond_age_h, max_defer_h))
    if not fallback or name == "backfill":
        return get_policy(name, **kw)
    base = make_policy("backfill", horizon_hours)
    try:
        primary = get_policy(name, **kw)
    except WindwardError as e:
        log.warning("policy %s unavailable (%s); using backfill", name, e)
        return base
    return FallbackPolicy(primary, base)


def _deferral_kwargs(defer_history_days: float, beyond_age_h: float | None, max_defer_h: float | None) -> dict[str, Any]:
    """The constructor arguments behind the shared option ``deferral`` (the windward policy's): its
    :class:`scheduler.deferral.TrailingSignals` and its weights' ``beyond_age_h`` and ``max_defer_h``."""
    from scheduler.deferral import TrailingSignals, check_deferral_options

    days, age_h, defer_h = check_deferral_options(defer_history_days, beyond_age_h, max_defer_h)
    kw: dict[str, Any] = {}
    if days > 0:
        kw["deferral"] = TrailingSignals(history_days=days)
    if age_h is not None or defer_h is not None:
        from dataclasses import replace

        from scheduler.policies.windward import DEFAULT_WEIGHTS

        kw["weights"] = replace(DEFAULT_WEIGHTS,
                                beyond_age_h=DEFAULT_WEIGHTS.beyond_age_h if age_h is None else age_h,
                                max_defer_h=DEFAULT_WEIGHTS.max_defer_h if defer_h is None else defer_h)
    return kw
