"""Site, tenants and job-spec models: the shipped sites load, bad input names the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scheduler.errors import InputError
from scheduler.jobs import Job, check_jobs_fit, eligible_pools, parse_selector
from scheduler.models import JobSpec, load_job_spec, load_site, parse_model


def test_shipped_sites_load() -> None:
    demo = load_site("demo")
    assert demo.total_gpus == 32 and len(demo.pools) == 2
    secret = [p for p in demo.pools if p.labels.get("clearance") == "secret"]
    assert len(secret) == 1 and secret[0].labels["jurisdiction"] == "nl"
    big = load_site("rotterdam-100k")
    assert big.total_gpus == 100_000
    assert {p.labels["gpu"] for p in big.pools} >= {"h100", "h200", "b200"}


def test_rotterdam_grid_cap_binds_at_full_load_but_idle_fits() -> None:
    s = load_site("rotterdam-100k")
    full_w = s.pue * sum(p.gpus * (p.tdp_w + p.host_w_per_gpu) for p in s.pools)
    idle_w = s.pue * sum(p.gpus * (p.idle_w + p.host_w_per_gpu) for p in s.pools)
    firm_w = s.grid.firm_mw * 1e6
    assert idle_w < firm_w < full_w  # inference can always be served, training needs wind by day
    assert full_w <= s.site_max_mw * 1e6


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _demo_dict() -> dict:
    from scheduler.models import site_path

    return yaml.safe_load(site_path("demo").read_text())


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda d: d["pools"][0].update(gpus=-8), "pools.0.gpus"),
        (lambda d: d["pools"][0].update(gpus=12), "multiple of gpus_per_node"),
        (lambda d: d["pools"][0].update(colour="red"), "pools.0.colour"),
        (lambda d: d.update(slot_minutes=7), "slot_minutes"),
        (lambda d: d["grid"]["time_blocks"][0].update(hours="late"), "hours"),
        (lambda d: d["pools"][0].update(speed_curve=[[0.4, 0.6], [0.9, 0.95]]), "speed_curve"),
        (lambda d: d["pools"][1].update(name=d["pools"][0]["name"]), "unique"),
        (lambda d: d["pools"][0]["labels"].update(clearance="top"), "clearance"),
    ],
)
def test_bad_site_names_the_field(tmp_path: Path, mutate, expect: str) -> None:
    d = _demo_dict()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(InputError) as ei:
        load_site(p)
    assert str(p) in str(ei.value)
    assert expect in str(ei.value)


def test_missing_site_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_site(tmp_path / "nope.yaml")


def test_job_spec_refuses_unknown_fields_and_naive_deadline(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="colour"):
        parse_model(JobSpec, {"name": "a", "gpus": 1, "duration_s": 10, "colour": "x"}, "spec")
    with pytest.raises(InputError, match="deadline"):
        parse_model(JobSpec, {"name": "a", "gpus": 1, "duration_s": 10, "deadline": "2026-01-01T00:00:00"}, "spec")
    p = tmp_path / "job.yaml"
    p.write_text("name: t\nkind: training\ngpus: 8\nduration_s: 3600\nrequires: {jurisdiction: nl, clearance: secret}\n")
    spec = load_job_spec(p)
    assert spec.requires.clearance == "secret" and spec.preemptible


def test_selectors_and_eligibility() -> None:
    site = load_site("demo")
    assert parse_selector("gpu=h100, jurisdiction=nl") == {"gpu": "h100", "jurisdiction": "nl"}
    j = Job("j", "t", "training", 0, 8, 100, clearance="secret")
    assert [site.pools[i].name for i in eligible_pools(site, j)] == ["h100-nl-secret"]
    j2 = Job("j2", "t", "training", 0, 8, 100, pool="jurisdiction=eu")
    assert [site.pools[i].name for i in eligible_pools(site, j2)] == ["h100-eu-public"]
    j3 = Job("j3", "t", "training", 0, 8, 100)
    assert len(eligible_pools(site, j3)) == 2
    with pytest.raises(InputError, match="largest eligible pool has 16"):
        check_jobs_fit(site, [Job("big", "t", "training", 0, 64, 100)], "jobs.csv")
    with pytest.raises(InputError, match="unknown pool 'nowhere'"):
        check_jobs_fit(site, [Job("x", "t", "training", 0, 1, 100, pool="nowhere")], "jobs.csv")
    with pytest.raises(InputError, match="no pool matches"):
        check_jobs_fit(site, [Job("y", "t", "training", 0, 1, 100, jurisdiction="de")], "jobs.csv")
