"""Issue 11, item 5, through the server's control plane: a 1 kW grid cap announced for +6 h (below the demo
site's idle floor: no schedule meets it) does not stop work now; ``/v1/plan`` keeps publishing a finite
price for every slot; when the event comes, work is shed only in its slots and runs again after it. Real
SQLite, the simulated executor, the embedded energy model, one wall second per slot (test_service_rules)."""

from __future__ import annotations

import math
from pathlib import Path

from test_service_rules import SLOT_S, service, tenant

from scheduler.models import JobSpec


def test_a_1_kw_cap_announced_for_later_sheds_only_in_its_slots(tmp_path: Path) -> None:
    svc, wall = service(tmp_path, "windward", [tenant("train")])
    try:
        for i in range(2):
            svc.submit(svc.tenants["train"], JobSpec(name=f"t{i}", gpus=8, duration_s=40 * SLOT_S), None)
        assert len(svc.tick().started) == 2
        now = svc.clock.now_unix_s()
        start, end = now + 6 * 3600.0, now + 7 * 3600.0
        svc.add_congestion(0.001, start, end, "test", "1 kW at +6 h")
        wall.t += 1.0
        out = svc.tick()
        assert not out.report.preemptions and not out.report.violations
        plan = svc.plan_summary()
        assert plan["policy"] == "windward" and plan["status"] in ("optimal", "feasible"), plan["status"]
        prices = [s["dual_price_g_per_gpu_h"] for s in plan["slots"]]
        assert len(prices) == plan["n_slots"] > 28
        assert all(p is not None and math.isfinite(p) and p >= 0.0 for p in prices), prices
        assert sum(s["grid_cap_w"] <= 1000.0 for s in plan["slots"]) == 4  # the event, as announced
        shed_at = []
        while svc.clock.now_unix_s() < end + 2 * SLOT_S:
            wall.t += 1.0
            out = svc.tick()
            if out.report.preemptions:
                shed_at.append(svc.clock.now_unix_s())
            running = {r.name for r in svc.store.list_jobs(states=("running",))}
            if svc.clock.now_unix_s() < start:
                assert running == {"t0", "t1"}, "work stopped before the event"
        assert shed_at and all(start <= t < end for t in shed_at), (shed_at, start, end)
        assert {r.name for r in svc.store.list_jobs(states=("running",))} == {"t0", "t1"}, "not resumed after it"
    finally:
        svc.stop()
