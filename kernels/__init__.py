"""Pure array code: the power model and the carbon- and power-cap optimiser.

Imports nothing of scheduler/, no ray, no pydantic, no torch at import time, no I/O, no clock, no logging.
``plan`` (kernels.planner) solves a :class:`~kernels.problem.PlanProblem`; ``check_result`` re-verifies every
hard constraint of any plan; ``evaluate`` gives the objective parts of any plan (``OBJECTIVE``).
"""

from __future__ import annotations

from kernels.check import check_result, evaluate
from kernels.listsched import greedy_plan
from kernels.planner import OBJECTIVE, carbon_bound, plan
from kernels.power import carbon_g, facility_timeline, grid_import_w, it_power_w, pool_speed, speed
from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult

__all__ = [
    "NO_DEADLINE",
    "OBJECTIVE",
    "PlanProblem",
    "PlanResult",
    "carbon_bound",
    "carbon_g",
    "check_result",
    "evaluate",
    "facility_timeline",
    "greedy_plan",
    "grid_import_w",
    "it_power_w",
    "plan",
    "pool_speed",
    "speed",
]
