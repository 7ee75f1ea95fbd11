"""`/v1/plan` from a server on its default policy (``windward``, the optimiser in kernels.plan): the plan
summary carries a marginal-carbon price (g CO2-eq per GPU-hour, the optimiser's dual) for every slot of the
horizon, each finite and non-negative, and positive somewhere when the site has no wind at all."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from server_process import auth, start_server

pytestmark = pytest.mark.integration

START = datetime(2027, 3, 1, tzinfo=UTC)


def calm_energy_csv(path: Path, days: int = 30) -> Path:
    """A becalmed month (no wind at the site: every GPU-hour is drawn from the grid) with a daily carbon
    cycle of 150..450 g/kWh, in the energy CSV format of DESIGN section 7."""
    lines = ["timestamp_utc,wind_mw,carbon_g_per_kwh"]
    for h in range(days * 24):
        t = START + timedelta(hours=h)
        carbon = 300.0 + 150.0 * math.sin(2 * math.pi * (h % 24) / 24.0)
        lines.append(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},0.0,{carbon:.1f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_has_nonnegative_marginal_carbon_prices(tmp_path: Path) -> None:
    energy = calm_energy_csv(tmp_path / "calm.csv")
    srv = start_server(tmp_path / "state.sqlite", tmp_path / "server.log", "--tick-seconds", "2",
                       "--energy", str(energy), "--energy-start", START.isoformat(), policy=None)  # fmt: skip
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for i in range(6):
                r = c.post("/v1/jobs", json={"name": f"train-{i}", "gpus": 4, "duration_s": 3 * 3600},
                           headers=auth("science"))  # fmt: skip
                assert r.status_code == 201, r.text
            r = c.post("/v1/jobs", json={"name": "serve", "kind": "inference", "gpus": 2, "duration_s": 7200},
                       headers=auth("public-services"))  # fmt: skip
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + 60
            plan: dict = {}
            while time.monotonic() < deadline:
                plan = c.get("/v1/plan", headers=auth("education")).json()  # any tenant may read the plan
                if plan.get("status") not in (None, "no_plan_yet") and plan.get("carbon_g"):
                    break
                time.sleep(0.5)
    finally:
        srv.kill()
    assert plan["policy"] == "windward", "the server's default policy is the optimiser"
    assert plan["status"] in ("optimal", "feasible"), plan["status"]
    slots = plan["slots"]
    assert len(slots) == plan["n_slots"] > 0
    prices = [s["dual_price_g_per_gpu_h"] for s in slots]
    assert all(isinstance(p, float) and math.isfinite(p) and p >= 0.0 for p in prices), prices
    assert max(prices) > 0.0, "without wind the marginal GPU-hour draws from the grid: some price must be > 0"
    # consecutive slots, each with the forecast it was priced against
    assert [s["slot"] for s in slots] == list(range(plan["slot"], plan["slot"] + len(slots)))
    assert all(s["wind_w"] == 0.0 and 150.0 - 1e-6 <= s["carbon_g_per_kwh"] <= 450.0 + 1e-6 for s in slots)
