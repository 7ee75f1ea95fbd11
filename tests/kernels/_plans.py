"""One plan per instance and settings per test process: ``plan`` and ``greedy_plan`` are ``kernels.plan`` and
``kernels.greedy_plan`` computed once for the same problem, arguments (a warm start by its content) and kernels
settings, where several tests read the same plan (the plans are deterministic: tests/kernels/test_determinism.py,
test_planner.py's test_deterministic). Each caller gets its own deep copy: a test that changes what it got changes
nothing another test reads. A test that monkeypatches a kernels setting or function gets the plans of those
settings: the key holds every module-level setting and function of the kernels modules a plan runs (their
values; functions, classes and their methods by identity). A cold plan (no warm start) leaves out of its key
the planner's names that only a warm re-plan reads (:data:`WARM_ONLY`; tests/kernels/test_plans_cache.py holds
a cold plan to that).

Tests that check determinism itself, time a plan, or spy on what a plan calls plan directly, not through here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from types import ModuleType
from typing import Any

import numpy as np

import kernels
from kernels import backend, check, complete, listsched, planner, powersearch
from kernels.problem import PlanProblem, PlanResult

_MODULES: tuple[ModuleType, ...] = (planner, powersearch, complete, listsched, check, backend)

#: kernels.planner's names read only where ``warm_start`` is given (the tick check against the witness and its
#: carries, the warm carry past the previous plan, the witness's age rule): a cold plan is the same whatever
#: they hold
WARM_ONLY = frozenset({
    "WITNESS_EVERY_TICK_MAX_CELLS", "WITNESS_TICK_FULL", "TICK_CARRY_ROUNDS", "TICK_CARRY_WORK", "TICK_CARRY_MORE",
    "TICK_FALLBACK", "TICK_HOLD_MUST", "TICK_MUST_FULL", "TICK_HOLD_TOTAL", "WARM_CARRY", "WARM_FULL_MAX_CELLS",
    "WARM_ROUNDS_PAST", "_tick_work_carry", "_loses_jobs",
})

_PLANS: dict[tuple[Any, ...], PlanResult] = {}


def _feed(h: Any, x: Any) -> None:
    """Hash ``x`` by content: arrays by dtype, shape and bytes, containers item by item, dataclasses by field."""
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        a = np.ascontiguousarray(x)
        h.update(f"a{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(x, dict):
        h.update(b"{")
        for k in sorted(x, key=repr):
            h.update(repr(k).encode())
            _feed(h, x[k])
        h.update(b"}")
    elif isinstance(x, (list, tuple)):
        h.update(f"({type(x).__name__}{len(x)}".encode())
        for v in x:
            _feed(h, v)
        h.update(b")")
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        h.update(type(x).__name__.encode())
        for f in dataclasses.fields(x):
            h.update(f.name.encode())
            _feed(h, getattr(x, f.name))
    elif x is None or isinstance(x, (bool, int, float, str, bytes)):
        h.update(f"{type(x).__name__}:{x!r};".encode())
    else:
        raise TypeError(f"_plans: cannot key a plan on a {type(x).__name__} ({x!r:.80})")


def digest(x: Any) -> str:
    """A content hash of a problem, a result or an argument (what the cache is keyed by)."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, x)
    return h.hexdigest()


def _setting(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str, bytes, tuple, frozenset)):
        return v
    if isinstance(v, type):  # a class: by identity, with its own functions (a monkeypatched method)
        return ("class", id(v), tuple((k, id(f)) for k, f in vars(v).items() if callable(f)))
    return ("id", id(v))


def settings(*, cold: bool) -> tuple[Any, ...]:
    """Every module-level name of the kernels modules a plan runs, with its value (or identity); a cold plan's
    without :data:`WARM_ONLY`."""
    out = []
    for m in _MODULES:
        skip = WARM_ONLY if (cold and m is planner) else frozenset()
        out.append(tuple((k, _setting(v)) for k, v in vars(m).items()
                         if not k.startswith("__") and k not in skip and not isinstance(v, ModuleType)))
    return tuple(out)


def _cached(name: str, fn: Any, problem: PlanProblem, kw: dict[str, Any]) -> PlanResult:
    warm = kw.get("warm_start")
    key = (name, digest(problem), digest(sorted(kw.items())), settings(cold=warm is None))
    if key not in _PLANS:
        _PLANS[key] = fn(problem, **kw)
    return copy.deepcopy(_PLANS[key])


def plan(problem: PlanProblem, **kw: Any) -> PlanResult:
    """``kernels.plan(problem, **kw)``, computed once per problem, arguments and settings in this process."""
    return _cached("plan", kernels.plan, problem, kw)


def greedy_plan(problem: PlanProblem, **kw: Any) -> PlanResult:
    """``kernels.greedy_plan(problem, **kw)``, computed once per problem, arguments and settings in this process."""
    return _cached("greedy_plan", kernels.greedy_plan, problem, kw)
