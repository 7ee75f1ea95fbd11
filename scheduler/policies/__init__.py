"""Scheduling policies behind one interface (:mod:`scheduler.policies.base`), found by name.

``get_policy(name, **kw)`` imports the policy's module lazily, so ``windward`` (the optimiser-backed
policy in ``scheduler/policies/windward.py``) is available as soon as that module exists and the baselines
never pay for its imports.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from scheduler.errors import InputError

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
