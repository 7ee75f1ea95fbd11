"""Job traces: canonical CSV round trip and bad input, ITP and Azure adapters on real slices, the embedded
workload, load_workload dispatch, amplify."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from scheduler.errors import InputError
from scheduler.jobs import Job, eligible_pools
from scheduler.models import load_site
from scheduler.paths import azure_llm_csv, itp_trace_csv
from scheduler.traces import (
    ASSIGNMENT_RULE,
    CANONICAL_COLUMNS,
    SOVEREIGN_SELECTOR,
    amplify,
    azure_inference_jobs,
    embedded_workload,
    itp_jobs,
    load_workload,
    offered_gpu_hours,
    read_jobs_csv,
    write_jobs_csv,
)

DEMO = load_site("demo")
BIG = load_site("rotterdam-100k")
HEADER = ",".join(CANONICAL_COLUMNS)


def _csv(tmp_path: Path, text: str, name: str = "jobs.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------------------- canonical CSV


def test_canonical_round_trip(tmp_path: Path) -> None:
    jobs = [
        Job(
            "a",
            "science",
            "training",
            0.0,
            8,
            3600.0,
            deadline_s=7200.5,
            preemptible=True,
            pool="h100-nl-secret",
            priority=2,
        ),
        Job("b", "companies", "batch", 10.0, 1, 60.0, preemptible=False, pool="gpu=h100,jurisdiction=eu"),
        Job(
            "c",
            "public-services",
            "inference",
            900.0,
            4,
            900.0,
            preemptible=False,
            priority=5,
            checkpoint_interval_s=600.0,
            clearance="secret",
        ),
    ]
    p = tmp_path / "out.csv"
    write_jobs_csv(p, jobs)
    assert p.read_text().splitlines()[0].startswith(HEADER)
    assert read_jobs_csv(p) == jobs


def test_canonical_empty_deadline_and_pool_allowed(tmp_path: Path) -> None:
    p = _csv(
        tmp_path, f"{HEADER}\nj1,science,training,5,2,100,,true,,0\nj2,science,batch,1,1,50,80,false,,3\n"
    )
    jobs = read_jobs_csv(p)
    assert [j.job_id for j in jobs] == ["j2", "j1"]  # sorted by submit_s
    assert jobs[1].deadline_s is None and jobs[1].pool is None and jobs[1].preemptible
    assert jobs[0].deadline_s == 80 and not jobs[0].preemptible and jobs[0].priority == 3


def test_canonical_missing_column_named(tmp_path: Path) -> None:
    p = _csv(tmp_path, "job_id,tenant,submit_s,duration_s\nj1,science,0,100\n")
    with pytest.raises(InputError, match=r"jobs\.csv: missing column\(s\) \['gpus'\]"):
        read_jobs_csv(p)


def test_canonical_negative_gpus_named(tmp_path: Path) -> None:
    p = _csv(
        tmp_path, f"{HEADER}\nj1,science,training,0,2,100,,true,,0\nj2,science,training,0,-4,100,,true,,0\n"
    )
    with pytest.raises(InputError, match=r"jobs\.csv: row 3: field gpus: .*greater than 0 \(got '-4'\)"):
        read_jobs_csv(p)


@pytest.mark.parametrize("column,row", [("duration_s", "j1,science,training,0,2,inf,,true,,0"),
                                        ("submit_s", "j1,science,training,inf,2,100,,true,,0"),
                                        ("deadline_s", "j1,science,training,0,2,100,inf,true,,0"),
                                        ("duration_s", "j1,science,training,0,2,nan,,true,,0")])
def test_canonical_infinite_numbers_named(tmp_path: Path, column: str, row: str) -> None:
    # an infinite duration_s passed the row check and `windward plan` ended in a traceback (exit 1)
    p = _csv(tmp_path, f"{HEADER}\n{row}\n")
    with pytest.raises(InputError, match=rf"jobs\.csv: row 2: field {column}: .*finite"):
        read_jobs_csv(p)


def test_canonical_deadline_before_submission_refused(tmp_path: Path) -> None:
    # was read, planned and reported as on time (late_jobs 0) with windward plan exit 0
    p = _csv(tmp_path, f"{HEADER}\nj1,science,training,7200,8,3600,3600,true,,0\n")
    with pytest.raises(InputError, match=r"jobs\.csv: row 2, field deadline_s: 3600 is before submit_s 7200"):
        read_jobs_csv(p)
    p = _csv(tmp_path, f"{HEADER}\nj1,science,training,7200,8,3600,7200,true,,0\n")  # at its submission: read
    assert read_jobs_csv(p)[0].deadline_s == 7200


def test_canonical_bad_kind_and_bool_named(tmp_path: Path) -> None:
    p = _csv(tmp_path, f"{HEADER}\nj1,science,fishing,0,2,100,,true,,0\n")
    with pytest.raises(InputError, match=r"row 2: field kind: .*'training', 'batch' or 'inference'"):
        read_jobs_csv(p)
    p = _csv(tmp_path, f"{HEADER}\nj1,science,training,0,2,100,,perhaps,,0\n")
    with pytest.raises(InputError, match=r"row 2: field preemptible"):
        read_jobs_csv(p)


def test_canonical_duplicate_ids_refused(tmp_path: Path) -> None:
    p = _csv(
        tmp_path, f"{HEADER}\nj1,science,training,0,2,100,,true,,0\nj1,science,training,5,2,100,,true,,0\n"
    )
    with pytest.raises(InputError, match=r"row 3, field job_id: 'j1' repeats row 2"):
        read_jobs_csv(p)


def test_load_workload_unknown_pool_and_too_large(tmp_path: Path) -> None:
    p = _csv(tmp_path, f"{HEADER}\nj1,science,training,0,2,100,,true,a100-pool,0\n")
    with pytest.raises(
        InputError, match=r"jobs\.csv: job 'j1': unknown pool 'a100-pool'; allowed: \['h100-eu-public'"
    ):
        load_workload(str(p), DEMO, days=1)
    p = _csv(tmp_path, f"{HEADER}\nj1,science,training,0,64,100,,true,,0\n")
    with pytest.raises(InputError, match=r"job 'j1': field gpus: needs 64 GPUs, but the largest pool it may use is .* with 16 GPUs"):
        load_workload(str(p), DEMO, days=1)
    p = _csv(tmp_path, "job,when\n1,2\n")
    with pytest.raises(InputError, match="neither the canonical jobs CSV"):
        load_workload(str(p), DEMO, days=1)


def test_load_workload_canonical_window(tmp_path: Path) -> None:
    p = _csv(
        tmp_path,
        f"{HEADER}\nj1,science,training,100,2,100,500,true,,0\nj2,science,training,90000,2,100,,true,,0\n",
    )
    jobs, desc = load_workload(str(p), DEMO, days=1)
    assert [j.job_id for j in jobs] == ["j1"] and "jobs CSV" in desc
    jobs, _ = load_workload(str(p), DEMO, days=1, start_s=50)
    assert jobs[0].submit_s == 50 and jobs[0].deadline_s == 450


# ------------------------------------------------------------------------------------------ ITP


def test_itp_cluster04_first_two_days(shared_data: None) -> None:
    jobs = itp_jobs(itp_trace_csv("cluster04"), BIG, 0, 2, seed=0)
    raw = np.loadtxt(itp_trace_csv("cluster04"), delimiter=",", skiprows=1, usecols=(1, 2, 3))
    in_window = raw[raw[:, 0] < 2 * 86400]
    assert len(jobs) == len(in_window) > 50
    assert sum(j.gpus for j in jobs) == int(in_window[:, 2].sum())
    assert sorted(j.duration_s for j in jobs) == sorted(in_window[:, 1].tolist())
    assert all(0 <= j.submit_s < 2 * 86400 for j in jobs)
    assert [j.submit_s for j in jobs] == sorted(j.submit_s for j in jobs)
    assert all(eligible_pools(BIG, j) for j in jobs)
    assert {j.tenant for j in jobs} == {"science", "companies", "education", "defence"}
    sovereign = [j for j in jobs if j.pool == SOVEREIGN_SELECTOR]
    assert sovereign and all(j.tenant == "defence" for j in sovereign)
    assert 0.75 < np.mean([j.preemptible for j in jobs]) <= 1.0
    # the rule is per job: a later window assigns the same job the same way
    again = {j.job_id: j for j in itp_jobs(itp_trace_csv("cluster04"), BIG, 0, 3, seed=0)}
    assert all(again[j.job_id] == j for j in jobs)
    assert "defence" in ASSIGNMENT_RULE and "preemptible" in ASSIGNMENT_RULE


def test_itp_window_shift(shared_data: None) -> None:
    jobs = itp_jobs(itp_trace_csv("cluster04"), BIG, start_s=86400, days=1, seed=0)
    raw = np.loadtxt(itp_trace_csv("cluster04"), delimiter=",", skiprows=1, usecols=(1,))
    assert len(jobs) == int(((raw >= 86400) & (raw < 2 * 86400)).sum())
    assert all(0 <= j.submit_s < 86400 for j in jobs)


def test_itp_too_large_refused_unless_clip(shared_data: None) -> None:
    with pytest.raises(
        InputError, match=r"cluster04\.csv: row \d+, field num_gpu: 32 GPUs is more than the largest"
    ):
        itp_jobs(itp_trace_csv("cluster04"), DEMO, 0, 2)
    jobs = itp_jobs(itp_trace_csv("cluster04"), DEMO, 0, 2, clip=True)
    assert max(j.gpus for j in jobs) == 16 and all(eligible_pools(DEMO, j) for j in jobs)


def test_itp_bad_rows_named(tmp_path: Path) -> None:
    p = _csv(tmp_path, "job_id,submission_time,duration\na,0,10\n", "itp.csv")
    with pytest.raises(InputError, match=r"itp\.csv: missing column\(s\) \['num_gpu'\]"):
        itp_jobs(p, DEMO)
    p = _csv(tmp_path, "job_id,submission_time,duration,num_gpu\na,0,10,1\nb,5,10,-2\n", "itp.csv")
    with pytest.raises(
        InputError, match=r"itp\.csv: row 3, field num_gpu: '-2'; allowed: a whole number >= 1"
    ):
        itp_jobs(p, DEMO)
    p = _csv(tmp_path, "job_id,submission_time,duration,num_gpu\na,0,ten,1\n", "itp.csv")
    with pytest.raises(InputError, match=r"row 2, field duration: 'ten' is not a number"):
        itp_jobs(p, DEMO)
    p = _csv(tmp_path, "job_id,submission_time,duration,num_gpu\na,0,10,1\na,5,10,1\n", "itp.csv")
    with pytest.raises(InputError, match=r"row 3, field job_id: 'a' repeats row 2"):
        itp_jobs(p, DEMO)
    # detection by header through load_workload
    p = _csv(tmp_path, "job_id,submission_time,duration,num_gpu\na,0,10,1\nb,100,20,64\n", "itp.csv")
    jobs, desc = load_workload(str(p), DEMO, days=1)
    assert len(jobs) == 2 and jobs[1].gpus == 16 and "ITP trace" in desc


# ---------------------------------------------------------------------------------------- Azure


def test_azure_inference_service(shared_data: None) -> None:
    start = datetime(2023, 3, 1, tzinfo=UTC)
    jobs = azure_inference_jobs(azure_llm_csv(), BIG, 900, 2, seed=0, start_utc=start)
    assert len(jobs) == 192
    assert all(j.kind == "inference" and not j.preemptible and j.tenant == "public-services" for j in jobs)
    assert [j.submit_s for j in jobs] == [i * 900.0 for i in range(192)]
    assert all(j.duration_s == 900 and j.gpus >= 1 for j in jobs)
    gpus = np.array([j.gpus for j in jobs])
    assert gpus.mean() == pytest.approx(0.10 * BIG.total_gpus, rel=0.01)
    # diurnal shape: the afternoon (UTC) busier than the night
    hours = (np.arange(192) * 900 / 3600) % 24
    assert gpus[(hours >= 11) & (hours < 15)].mean() > 1.2 * gpus[(hours >= 23) | (hours < 3)].mean()
    # deterministic per seed, different across seeds
    assert azure_inference_jobs(azure_llm_csv(), BIG, 900, 2, seed=0, start_utc=start) == jobs
    assert azure_inference_jobs(azure_llm_csv(), BIG, 900, 2, seed=1, start_utc=start) != jobs


def test_azure_unscaled_demand_from_throughput(shared_data: None) -> None:
    """Without scaling, the trace's ~5.5 req/s at ~1,155 context + ~211 generated tokens need
    1.3 x (211 + 0.1 x 1155) x 5.5 / 400 ~ 6 GPUs; a 4x faster GPU needs about a quarter."""
    jobs = azure_inference_jobs(azure_llm_csv(), DEMO, 3600, 1, seed=0, share_of_site=None)
    mean = np.mean([j.gpus for j in jobs])
    assert 4 <= mean <= 9
    fast = azure_inference_jobs(
        azure_llm_csv(), DEMO, 3600, 1, seed=0, tokens_per_s_per_gpu=1600, share_of_site=None
    )
    assert np.mean([j.gpus for j in fast]) <= mean / 2


# ------------------------------------------------------------------------------------- embedded


def test_embedded_workload_scaled_and_deterministic() -> None:
    a = embedded_workload(DEMO, 7, seed=3)
    assert a == embedded_workload(DEMO, 7, seed=3)
    assert a != embedded_workload(DEMO, 7, seed=4)
    train = [j for j in a if j.kind != "inference"]
    inf = [j for j in a if j.kind == "inference"]
    assert all(j.job_id.startswith("synthetic-") for j in a)
    assert len(inf) == 7 * 96
    # offered training load ~ 50% of the site's GPU-hours (last job may overshoot)
    load = offered_gpu_hours(train) / (DEMO.total_gpus * 7 * 24)
    assert (
        0.5
        <= load
        < 0.5 + max(j.gpus * j.duration_s for j in train) / 3600 / (DEMO.total_gpus * 7 * 24) + 1e-9
    )
    assert all(eligible_pools(DEMO, j) for j in a)
    assert all(0 <= j.submit_s < 7 * 86400 for j in a)


def test_embedded_workload_distribution_matches_fit() -> None:
    jobs = [j for j in embedded_workload(BIG, 1, seed=0) if j.kind != "inference"]
    assert len(jobs) > 10_000
    share_1 = np.mean([j.gpus == 1 for j in jobs])
    assert share_1 == pytest.approx(0.743, abs=0.03)  # fitted share of 1-GPU jobs
    med_h = np.median([j.duration_s for j in jobs if j.gpus == 1]) / 3600
    assert 0.1 < med_h < 5


def test_load_workload_embedded_and_itp(shared_data: None) -> None:
    jobs, desc = load_workload(None, DEMO, 2, seed=5)
    assert desc == "synthetic workload, calibrated to ITP traces + Azure LLM inference 2023 (seed 5)"
    assert jobs == load_workload("embedded", DEMO, 2, seed=5)[0]
    jobs, desc = load_workload("itp:cluster04", DEMO, 3, seed=0)
    assert "ITP cluster04" in desc and "Azure" in desc
    kinds = Counter(j.kind for j in jobs)
    assert kinds["inference"] == 3 * 96 and kinds["training"] > 100
    assert all(eligible_pools(DEMO, j) for j in jobs)
    with pytest.raises(InputError, match="allowed: itp:cluster01"):
        load_workload("itp:cluster99", DEMO, 1)


# ---------------------------------------------------------------------------------------- amplify


def test_amplify(shared_data: None) -> None:
    base, _ = load_workload("itp:cluster04", BIG, 3, seed=0)
    train = [j for j in base if j.kind != "inference"]
    amp = amplify(base, 4.0, seed=1)
    amp_train = [j for j in amp if j.kind != "inference"]
    assert len(amp_train) == 4 * len(train)
    assert len({j.job_id for j in amp}) == len(amp)
    assert offered_gpu_hours(amp_train) == pytest.approx(4 * offered_gpu_hours(train))
    inf_b = [j for j in base if j.kind == "inference"]
    inf_a = [j for j in amp if j.kind == "inference"]
    assert [j.gpus for j in inf_a] == [max(1, round(4 * j.gpus)) for j in inf_b]
    assert amplify(base, 4.0, seed=1) == amp
    frac = [j for j in amplify(base, 2.5, seed=0) if j.kind != "inference"]
    assert 2.2 * len(train) < len(frac) < 2.8 * len(train)
    with pytest.raises(InputError, match="factor must be > 0"):
        amplify(base, 0)


# ------------------------------------------------------------- UTF-8 and gaps (issue 16)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"caf\xe9"])
def test_jobs_csv_not_utf8_names_the_file(tmp_path: Path, bad: bytes) -> None:
    p = tmp_path / "jobs.csv"
    p.write_bytes(f"{HEADER}\nj1,science,training,0,8,3600,,1,,0\nj2,".encode() + bad + b",training,0,8,3600,,1,,0\n")
    with pytest.raises(InputError, match=rf"{p.name}: not UTF-8 text: byte \d+ \(line 3\)"):
        read_jobs_csv(p)
    with pytest.raises(InputError, match="not UTF-8"):
        load_workload(str(p), DEMO, 1.0)


def test_itp_and_detect_not_utf8_named(tmp_path: Path) -> None:
    p = tmp_path / "itp.csv"
    p.write_bytes(b"job_id,submission_time,duration,num_gpu\nj\xff1,0,60,1\n")
    with pytest.raises(InputError, match=r"itp.csv: not UTF-8"):
        itp_jobs(p, DEMO)
    p.write_bytes(b"job_id,submission\xfftime,duration,num_gpu\n")
    with pytest.raises(InputError, match=r"itp.csv: not UTF-8"):
        load_workload(str(p), DEMO, 1.0)


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        (["j1,,training,0,8,3600,,1,,0"], "tenant x1"),
        (["j1,science,,0,8,3600,,1,,0", "j2,science,,5,8,3600,,1,,0"], "kind x2"),
        (["j1,science,training,0,8,3600,,,,", "j2,,training,0,8,3600,,1,,0"], "3 empty cell(s)"),
    ],
)
def test_jobs_csv_filled_cells_said_with_count_and_strict_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, rows: list[str], expect: str
) -> None:
    p = _csv(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="scheduler.traces"):
        jobs = read_jobs_csv(p)
    assert len(jobs) == len(rows)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert expect in warned and str(p) in warned, warned
    with pytest.raises(InputError, match=r"row \d, field \w+: empty \(strict"):
        read_jobs_csv(p, strict=True)
    with pytest.raises(InputError, match=r"strict"):
        load_workload(str(p), DEMO, 1.0, strict=True)


def test_jobs_csv_empty_none_cells_are_not_gaps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = _csv(tmp_path, HEADER + "\nj1,science,training,0,8,3600,,1,,0\n")  # empty deadline_s and pool: none
    with caplog.at_level("WARNING", logger="scheduler.traces"):
        assert read_jobs_csv(p, strict=True)[0].deadline_s is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_amplify_can_keep_the_inference_service(shared_data: None) -> None:
    base, _ = load_workload("itp:cluster04", BIG, 3, seed=0)
    kept = amplify(base, 4.0, seed=1, scale_inference=False)
    assert [j for j in kept if j.kind == "inference"] == [j for j in base if j.kind == "inference"]
    assert [j for j in kept if j.kind != "inference"] == [j for j in amplify(base, 4.0, seed=1) if j.kind != "inference"]
