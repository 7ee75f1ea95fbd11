"""Every example file under examples/ loads through the real loader of its contract (docs/contracts.md), and
docs/contracts.md names every example. A new example without a loader here fails the suite."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scheduler.api import CongestionIn
from scheduler.errors import WindwardError
from scheduler.jobs import check_jobs_fit
from scheduler.models import JobSpec, load_job_spec, load_site, load_tenants, parse_model
from scheduler.planjson import check_plan, recompute_timeline
from scheduler.signals import read_energy_csv
from scheduler.slurm import read_script
from scheduler.sources.config import load_live_signals
from scheduler.sources.congestion import parse_feed
from scheduler.traces import read_jobs_csv

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
CONTRACTS = ROOT / "docs" / "contracts.md"

#: DESIGN section 7's plan JSON keys (extend, never rename).
PLAN_KEYS = {"status", "start_utc", "slot_s", "n_slots", "pue", "solve_s", "objective", "pools", "timeline", "jobs"}
TIMELINE_KEYS = {"facility_w", "wind_w", "grid_import_w", "grid_cap_w", "site_max_w", "carbon_g_per_kwh", "carbon_g",
                 "busy_gpus"}  # fmt: skip
JOB_KEYS = {"job_id", "pool", "gpus", "slots", "power_fraction", "work_done_s", "duration_s", "finished"}


def check_site(p: Path) -> None:
    site = load_site(p)
    assert [x.name for x in site.pools] == ["h100-eu-public", "h100-nl-secret"] and site.total_gpus == 64


def check_tenants(p: Path) -> None:
    tf = load_tenants(p)
    # the file's comment promises the tokens behind the hashes are "example-token-<name>"
    for t in (*tf.tenants, *tf.operators):
        assert t.token_sha256 == hashlib.sha256(f"example-token-{t.name}".encode()).hexdigest(), t.name
    assert {t.name for t in tf.tenants} == {"science", "defence"} and [o.name for o in tf.operators] == ["ops"]


def check_energy(p: Path) -> None:
    site = load_site(EX / "site.yaml")
    e = read_energy_csv(p, site)
    assert e.n_slots == 48 * 4 and e.slot_s == 900
    assert e.start_utc == datetime(2026, 6, 1, tzinfo=UTC)
    assert any("carbon_g_per_kwh" in g for g in e.gaps)  # the documented gap rule at work (one empty cell)
    assert (e.grid_cap_w[17 * 4 : 20 * 4] == 0.03e6).all()  # grid_cap_mw cells override the contract
    assert e.wind_w.max() == pytest.approx(site.wind.contract_mw * 1e6)  # capacity factor x contract


def check_jobs(p: Path) -> None:
    jobs = read_jobs_csv(p)
    assert [j.job_id for j in jobs][:1] and len(jobs) == 5
    assert {j.kind for j in jobs} == {"training", "batch", "inference"}
    check_jobs_fit(load_site(EX / "site.yaml"), jobs, str(p))


def check_job_spec(p: Path) -> None:
    spec = load_job_spec(p)
    assert spec.deadline == datetime(2026, 6, 2, 18, tzinfo=UTC)
    assert spec == parse_model(JobSpec, json.loads((EX / "api" / "submit-job.json").read_text()), "submit-job.json")


def check_submit(p: Path) -> None:
    spec = parse_model(JobSpec, json.loads(p.read_text()), str(p))
    assert spec.name == "llama-finetune"


def check_congestion_api(p: Path) -> None:
    ev = CongestionIn.model_validate(json.loads(p.read_text()))
    assert ev.cap_mw == 0.03 and ev.end > ev.start


def check_plan_json(p: Path) -> None:
    plan = json.loads(p.read_text())
    assert PLAN_KEYS <= set(plan) and TIMELINE_KEYS <= set(plan["timeline"])
    assert all(JOB_KEYS <= set(j) for j in plan["jobs"])
    assert check_plan(plan) == []  # every cap holds, recomputed from the file alone
    tl = recompute_timeline(plan)
    np.testing.assert_allclose(tl["facility_w"], plan["timeline"]["facility_w"], rtol=1e-6)
    assert {j["job_id"] for j in plan["jobs"]} == {j.job_id for j in read_jobs_csv(EX / "jobs.csv")}


def check_slurm(p: Path) -> None:
    script = read_script(p, now=datetime(2026, 5, 31, tzinfo=UTC))
    assert [j.spec.name for j in script.jobs] == [f"llama-sweep_{i}" for i in range(4)]
    assert all(j.spec.gpus == 8 and j.spec.duration_s == 6 * 3600 for j in script.jobs)
    assert len(script.ignored) == 1


def check_live_signals(p: Path) -> None:
    cfg = load_live_signals(p)
    assert [s.kind for s in cfg.sources] == ["ned", "entsoe", "electricitymaps", "congestion"]


def check_feed(p: Path) -> None:
    (ev,) = parse_feed(p.read_text())
    assert ev.cap_mw == 0.03


LOADERS: dict[str, Callable[[Path], None]] = {
    "site.yaml": check_site,
    "tenants.yaml": check_tenants,
    "energy.csv": check_energy,
    "jobs.csv": check_jobs,
    "job.yaml": check_job_spec,
    "plan.json": check_plan_json,
    "slurm-train.sh": check_slurm,
    "congestion-feed.json": check_feed,
    "live-signals.yaml": check_live_signals,
    "api/submit-job.json": check_submit,
    "api/congestion.json": check_congestion_api,
}


def _examples() -> list[str]:
    return sorted(str(p.relative_to(EX)) for p in EX.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_example_loads_through_its_real_loader(name: str) -> None:
    LOADERS[name](EX / name)


def test_every_example_has_a_loader_and_is_documented() -> None:
    assert _examples() == sorted(LOADERS), "an example file without a loader in this test (or a loader without a file)"
    doc = CONTRACTS.read_text()
    for name in LOADERS:
        assert f"examples/{name}" in doc, f"docs/contracts.md does not mention examples/{name}"


def test_readme_points_to_the_contracts() -> None:
    assert "docs/contracts.md" in (ROOT / "README.md").read_text()


def _break(text: str, name: str) -> str:
    if name == "congestion-feed.json":  # the feed ignores extra fields (other operators add their own)
        return text.replace('"cap_mw": 0.03', '"cap_mw": -1')
    if name.endswith((".yaml", ".json")) and name != "plan.json":
        return text.rstrip().rstrip("}") + (', "bogus_field": 1}' if name.endswith(".json") else "\nbogus_field: 1\n")
    if name == "plan.json":
        plan = json.loads(text)
        plan["timeline"]["grid_cap_w"] = [0.0] * plan["n_slots"]
        return json.dumps(plan)
    if name.endswith(".csv"):
        lines = text.splitlines()
        return "\n".join([lines[0], lines[1].replace(",", ",not-a-number,", 1), *lines[2:]]) + "\n"
    return text.replace("--time=6:00:00", "--time=forever")


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_broken_copy_of_each_example_fails(name: str, tmp_path: Path) -> None:
    """The loaders above are not vacuous: a broken copy of each file is refused (or fails its checks)."""
    src = EX / name
    for other in EX.rglob("*"):  # loaders read siblings (site.yaml, jobs.csv): copy them all
        if other.is_file():
            dst = tmp_path / other.relative_to(EX)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(other.read_text())
    broken = tmp_path / name
    broken.write_text(_break(src.read_text(), name))
    assert broken.read_text() != src.read_text()
    fn = LOADERS[name]
    g: dict[str, Any] = fn.__globals__
    old = g["EX"]
    g["EX"] = tmp_path
    try:
        with pytest.raises((WindwardError, AssertionError, ValueError)):
            fn(broken)
    finally:
        g["EX"] = old


def _shape(v: Any) -> Any:
    """The keys of a JSON value, nested (dicts by key; lists by the union of their items' shapes)."""
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        shapes = [_shape(x) for x in v if isinstance(x, dict | list)]
        out: dict[str, Any] = {}
        for s in shapes:
            if isinstance(s, dict):
                out.update(s)
        return [out] if out else []
    return None


def test_the_plan_example_has_the_shape_the_documented_command_writes_today(tmp_path: Path) -> None:
    """docs/contracts.md names the command that wrote examples/plan.json; run it (the real CLI) and compare the
    nested key shape of what it writes with the example's, so a field the command gains (the ``unfinished``
    block, a job's ``late``) shows in the example too (it lacked both until round 23)."""
    from typer.testing import CliRunner

    from scheduler.cli import app

    line = next(ln for ln in CONTRACTS.read_text().splitlines() if ln.startswith("`windward plan ") and
                "--out examples/plan.json" in ln)
    args = line.strip("`.").split()[1:]
    out = tmp_path / "plan.json"
    args[args.index("--out") + 1] = str(out)
    args = [str(ROOT / a) if a.startswith("examples/") else a for a in args]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    want = _shape(json.loads(out.read_text()))
    have = _shape(json.loads((EX / "plan.json").read_text()))
    assert have == want, "examples/plan.json is older than what its documented command writes: run it again"
