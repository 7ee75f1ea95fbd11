"""Pure array code: the power model and the carbon- and power-cap optimiser.

Imports nothing of scheduler/, no ray, no pydantic, no torch at import time, no I/O, no clock, no logging.
"""

from __future__ import annotations

from kernels.power import carbon_g, facility_timeline, grid_import_w, it_power_w, pool_speed, speed

__all__ = ["carbon_g", "facility_timeline", "grid_import_w", "it_power_w", "pool_speed", "speed"]
