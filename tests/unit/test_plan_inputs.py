"""`windward plan` on hand-written edge inputs (DESIGN section 7 shapes): an empty jobs CSV, a header only, an
energy CSV of one row, a horizon shorter than a slot, a job wider than the site, duplicate job ids, NaN and
negative fields, unknown pools and labels in a selector. Each exits 0 or 3 with a plan the checker passes, or 2
with a message naming the field and what is allowed; never 1, never a traceback (issue 11: any instance a user
can reach).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli import app

HEADER = "job_id,tenant,kind,submit_s,gpus,duration_s,deadline_s,preemptible,pool,priority\n"
OK_ROW = "t1,science,training,0,8,3600,,true,,0"
E_HEADER = "timestamp_utc,wind_mw,grid_cap_mw,carbon_g_per_kwh\n"


def _energy(tmp_path: Path, rows: list[str] | None = None, n: int = 12) -> Path:
    t0 = datetime(2023, 3, 6, tzinfo=UTC)
    if rows is None:
        rows = [f"{(t0 + timedelta(hours=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},0.0,10.0,{300 + i}" for i in range(n)]
    p = tmp_path / "energy.csv"
    p.write_text(E_HEADER + "".join(r + "\n" for r in rows))
    return p


def _run(tmp_path: Path, jobs_text: str, *extra: str, energy: Path | None = None, hours: str = "6") -> tuple[int, str,
                                                                                                            Path, object]:
    """Run ``windward plan`` on the demo site; the exit code, all output, the plan path and any exception."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(jobs_text)
    out = tmp_path / "plan.json"
    args = ["plan", "--site", "demo", "--jobs", str(jobs), "--start", "2023-03-06T00:00:00Z", "--horizon-hours", hours,
            "--out", str(out), *(["--energy", str(energy)] if energy else []), *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output, out, res.exception


def _assert_plan_or_refused(code: int, output: str, out: Path, exc: object, *, names: tuple[str, ...] = ()) -> None:
    """Exit 0/3 with a plan the file's checker passes, or 2 naming ``names``; never 1, never a traceback."""
    assert exc is None or isinstance(exc, SystemExit), f"exception {exc!r}: {output}"
    assert "Traceback" not in output, output
    assert code in (0, 2, 3), f"exit {code}: {output}"
    if code == 2:
        for n in names:
            assert n in output, f"exit 2 without naming {n!r}: {output}"
        return
    from scheduler.planjson import check_plan

    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"], doc["status"]
    assert check_plan(doc) == []


def test_empty_jobs_csv(tmp_path: Path) -> None:
    """A 0-byte jobs file: a plan of no jobs (exit 0) or a clear refusal naming the file's header."""
    code, output, out, exc = _run(tmp_path, "")
    _assert_plan_or_refused(code, output, out, exc, names=("jobs",))


def test_jobs_csv_with_only_the_header(tmp_path: Path) -> None:
    code, output, out, exc = _run(tmp_path, HEADER)
    _assert_plan_or_refused(code, output, out, exc)
    assert code == 0, output
    assert json.loads(out.read_text())["jobs"] == []


def test_energy_csv_with_one_row(tmp_path: Path) -> None:
    e = _energy(tmp_path, n=1)
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", energy=e, hours="1")
    _assert_plan_or_refused(code, output, out, exc, names=("energy",))


def test_energy_csv_with_only_the_header(tmp_path: Path) -> None:
    e = _energy(tmp_path, rows=[])
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", energy=e)
    _assert_plan_or_refused(code, output, out, exc, names=("energy",))


@pytest.mark.parametrize("hours", ["0.1", "0.001"])
def test_a_horizon_shorter_than_a_slot(tmp_path: Path, hours: str) -> None:
    """Less than one 15-minute slot: one slot is planned (the horizon rounds up), exit 0 or 3."""
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", hours=hours)
    _assert_plan_or_refused(code, output, out, exc)
    assert code in (0, 3), output
    assert json.loads(out.read_text())["n_slots"] == 1


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf"])
def test_a_horizon_of_nothing_or_not_a_number(tmp_path: Path, hours: str) -> None:
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", hours=hours)
    _assert_plan_or_refused(code, output, out, exc, names=("--horizon-hours",))
    assert code == 2, output


def test_a_job_wider_than_the_site(tmp_path: Path) -> None:
    code, output, out, exc = _run(tmp_path, HEADER + "huge,science,training,0,100000,3600,,true,,0\n")
    _assert_plan_or_refused(code, output, out, exc, names=("huge", "100000"))
    assert code == 2


def test_duplicate_job_ids(tmp_path: Path) -> None:
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n" + OK_ROW + "\n")
    _assert_plan_or_refused(code, output, out, exc, names=("t1", "job_id"))
    assert code == 2, output


BAD_FIELDS = {
    "gpus": ("nan", "-8", "0", "1.5"),
    "duration_s": ("nan", "-3600", "inf"),
    "submit_s": ("nan", "-900", "inf"),
    "deadline_s": ("nan", "-1", "inf"),
    "priority": ("nan", "-101", "1000000"),
    "preemptible": ("maybe",),
    "kind": ("dance",),
}


def _row(field: str, value: str) -> str:
    cols = HEADER.strip().split(",")
    vals = OK_ROW.split(",")
    vals[cols.index(field)] = value
    return ",".join(vals)


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in BAD_FIELDS.items() for v in vs])
def test_a_nan_or_negative_or_unknown_field(tmp_path: Path, field: str, value: str) -> None:
    """Exit 2 naming the field, or (where the value has a meaning: a negative submit time is a job already
    submitted, a deadline in the past is late from the start) a valid plan; never 1."""
    code, output, out, exc = _run(tmp_path, HEADER + _row(field, value) + "\n")
    _assert_plan_or_refused(code, output, out, exc, names=(field,))


@pytest.mark.parametrize("selector", ["no-such-pool", "gpu=tpu", "gpu=h100,jurisdiction=mars", "=", "gpu="])
def test_an_unknown_pool_or_label_in_a_selector(tmp_path: Path, selector: str) -> None:
    code, output, out, exc = _run(tmp_path, HEADER + f'x,science,training,0,1,900,,true,"{selector}",0\n')
    _assert_plan_or_refused(code, output, out, exc, names=("x",))
    assert code == 2, output


@pytest.mark.parametrize("row", ["2023-03-06T00:00:00Z,nan,10.0,300", "2023-03-06T00:00:00Z,0.0,-1.0,300",
                                 "2023-03-06T00:00:00Z,0.0,10.0,-5", "not-a-time,0.0,10.0,300"])
def test_a_bad_energy_row(tmp_path: Path, row: str) -> None:
    e = _energy(tmp_path, rows=[row, "2023-03-06T01:00:00Z,0.0,10.0,300"])
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", energy=e, hours="2")
    _assert_plan_or_refused(code, output, out, exc, names=("energy",))


def test_inference_its_pools_cannot_hold_together_is_shed_there_with_exit_3(tmp_path: Path) -> None:
    """Three 16-GPU inference jobs at once on the 32-GPU demo site: each fits a pool, together they do not. Up to
    round 24 the optimiser refused the whole instance ("inference needs 48 GPUs in slot 0"); now the slots of
    their window are marked for GPUs (on this site's cap for the watts too: cap+GPUs): two are served, the third (last in the serving order) is shed there, and
    the plan is valid (exit 3, the plan file's checker passes)."""
    rows = "".join(f"i{k},public,inference,0,16,3600,,false,,5\n" for k in range(3))
    code, output, out, exc = _run(tmp_path, HEADER + rows)
    _assert_plan_or_refused(code, output, out, exc)
    assert code == 3, output
    un = json.loads(out.read_text())["unfinished"]
    assert un["shed_slots"] == [0, 1, 2, 3] and all("GPUs" in c for c in un["slot_shed_cause"]), un
    assert un["slot_shed_gpus"] == [16.0] * 4 and all(j == ["i2"] for j in un["slot_shed_jobs"]), un


def test_a_plan_the_optimiser_refuses_is_written_with_null_numbers_and_exit_2(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimiser's refusal (kernels.plan patched to refuse: no input of this file reaches one since round 24)
    is written with its reason and null objective numbers, exit 2 (round 24: its objective was inf, JSON has no
    such number, and writing it raised: exit 1 with a traceback; scheduler.cli.plan.finite_or_none writes null)."""
    import kernels
    from kernels.planner import _infeasible

    monkeypatch.setattr(kernels, "plan", lambda pb, **kw: _infeasible(pb, "test: no plan in slot 0", pb.n_jobs,
                                                                      pb.n_slots, pb.n_pools))
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n")
    _assert_plan_or_refused(code, output, out, exc, names=("test: no plan in slot 0",))
    assert code == 2
    doc = json.loads(out.read_text())
    assert doc["status"] == "infeasible" and "slot 0" in doc["reason"]
    assert doc["objective"]["objective_g"] is None and doc["objective_parts"]["lower_bound_g"] is None


def test_caps_below_the_idle_floor_in_every_slot(tmp_path: Path) -> None:
    """A grid cap of 0 and no wind in every slot: no slot holds the idle site; a valid plan that runs nothing
    and names every slot (exit 3)."""
    e = _energy(tmp_path, rows=[f"2023-03-06T0{i}:00:00Z,0.0,0.0,300" for i in range(7)])
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", energy=e)
    _assert_plan_or_refused(code, output, out, exc)
    assert code == 3 and "cannot meet" in output
    doc = json.loads(out.read_text())
    assert doc["unfinished"]["infeasible_slots"] == list(range(doc["n_slots"]))
    assert all(not j["slots"] for j in doc["jobs"])


@pytest.mark.parametrize("rows", [
    "d,science,training,1800,8,3600,1800,true,,0",  # a deadline at the submit time: late from the start
    "d,science,training,999999,8,3600,,true,,0",  # submitted after the horizon
    "d,science,training,0,8,0.001,,true,,0",  # a millisecond of work
    "d,science,training,0,8,31536000,,false,,0",  # a year of non-preemptible work (JOB_DURATION_MAX_S)
    "d,science,training,0,8,3600,,true,,100",  # the highest priority (scheduler.models.JOB_PRIORITY_MAX)
    "d,science,training,0,8,3600,,true,,-1",  # a negative priority (meant: run it where it is green)
    "d,science,training,0,8,3600,,true,,-100",  # the lowest (JOB_PRIORITY_MIN)
])
def test_edge_values_that_have_a_meaning_plan(tmp_path: Path, rows: str) -> None:
    code, output, out, exc = _run(tmp_path, HEADER + rows + "\n")
    _assert_plan_or_refused(code, output, out, exc)
    assert code in (0, 3), output


#: Round 25's hand-made bad inputs (a user's typos and spreadsheet habits), each with what the refusal must name:
#: the field (or the header / row) and what is allowed. Before round 25 the ones marked (*) planned, exit 0.
REFUSED_ROWS = {
    "a priority below the range (*)": (HEADER + "x,science,training,0,8,900,,true,,-101\n",
                                       ("row 2", "field priority", "greater than or equal to -100")),
    "a priority above the range (*)": (HEADER + "x,science,training,0,8,900,,true,,101\n",
                                       ("field priority", "less than or equal to 100")),
    "a fractional priority": (HEADER + "x,science,training,0,8,900,,true,,1.5\n", ("field priority", "integer")),
    "a label given twice in a selector (*)": (HEADER + 'x,science,training,0,8,900,,true,"jurisdiction=eu,jurisdiction=nl",0\n',
                                              ("field pool", "'jurisdiction' is given twice", "jurisdiction=eu|nl")),
    "a selector in upper case": (HEADER + 'x,science,training,0,8,900,,true,"GPU=H100",0\n',
                                 ("field pool", "no pool has the label 'GPU'", "gpu=h100")),
    "a selector with ';'": (HEADER + 'x,science,training,0,8,900,,true,"gpu=h100;jurisdiction=nl",0\n',
                            ("field pool", "allowed: a pool name (h100-eu-public, h100-nl-secret)")),
    "a selector value with '='": (HEADER + 'x,science,training,0,8,900,,true,"gpu=h100=x",0\n',
                                  ("field pool", "no pool has gpu=h100=x")),
    "an unquoted selector with a comma (*)": (HEADER + "x,science,training,0,8,900,,true,gpu=h100,jurisdiction=nl,0\n",
                                              ("row 2", "11 cells", "10 columns", "quote a pool selector")),
    "a column twice in the header (*)": ("job_id,gpus,gpus,submit_s,duration_s\nx,8,4,0,900\n",
                                         ("header", "['gpus']", "each column once")),
    "an unmatched quote (*)": (HEADER + '"x,science,training,0,8,900,,true,,0\ny,science,training,0,8,900,,true,,0\n',
                               ("row 2", "field job_id", "line break", "one line per row")),
    "a job wider than every pool its selector matches": (HEADER + 'x,science,training,0,24,900,,true,"jurisdiction=nl",0\n',
                                                         ("field gpus", "needs 24 GPUs",
                                                          "the largest pool that matches pool='jurisdiction=nl' is h100-nl-secret with 16 GPUs",
                                                          "gpus <= 16")),
    "a kind in title case": (HEADER + "x,science,Training,0,8,900,,true,,0\n", ("field kind", "'training'")),
    "a gpus count in exponent notation": (HEADER + "x,science,training,0,1e1,900,,true,,0\n", ("field gpus", "integer")),
    "a jurisdiction no pool has": (HEADER.strip() + ",jurisdiction\nx,science,training,0,8,900,,true,,0,mars\n",
                                   ("jurisdiction='mars'", "h100-eu-public (gpu=h100,jurisdiction=eu,clearance=public)")),
}


@pytest.mark.parametrize("name", list(REFUSED_ROWS))
def test_a_user_s_bad_jobs_file_is_refused_naming_the_field_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    text, names = REFUSED_ROWS[name]
    code, output, out, exc = _run(tmp_path, text)
    _assert_plan_or_refused(code, output, out, exc, names=names)
    assert code == 2 and not out.exists(), output


@pytest.mark.parametrize("text", [
    HEADER + "x,science,training,0,8,900,,true,, 3 \n",  # a priority with spaces around it
    HEADER + "x,science,training,0,8,900,,true,,+5\n",  # a priority with a plus sign
    HEADER + 'x,science,training,0,8,900,,true,"gpu=h100,",0\n',  # a selector with a trailing comma
    HEADER + 'x,science,training,0,8,900,,true," gpu = h100 ",0\n',  # a selector with spaces
    HEADER.replace("\n", "\r\n") + "x,science,training,0,8,900,,true,,0\r\n",  # Windows line ends
    "\ufeff" + HEADER + "x,science,training,0,8,900,,true,,0\n",  # a byte-order mark (a spreadsheet's UTF-8 export)
    HEADER + "x,science,training,0,8,900,,true,,0,\n",  # a trailing empty cell
])
def test_a_user_s_harmless_habits_plan(tmp_path: Path, text: str) -> None:
    code, output, out, exc = _run(tmp_path, text)
    _assert_plan_or_refused(code, output, out, exc)
    assert code == 0, output
    assert [j["job_id"] for j in json.loads(out.read_text())["jobs"]] == ["x"]


def test_a_negative_seed_is_refused_by_the_option(tmp_path: Path) -> None:
    """``--seed -1 --forecast noisy`` was a numpy ValueError traceback (exit 1)."""
    code, output, out, exc = _run(tmp_path, HEADER + OK_ROW + "\n", "--seed", "-1", "--forecast", "noisy")
    _assert_plan_or_refused(code, output, out, exc, names=("--seed",))
    assert code == 2 and not out.exists(), output


def test_a_mistyped_site_name_lists_the_built_in_sites(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(HEADER + OK_ROW + "\n")
    res = CliRunner().invoke(app, ["plan", "--site", "demoo", "--jobs", str(jobs), "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 2 and "site 'demoo': cannot read file: no such file; allowed: a built-in site (demo, rotterdam-100k)" in (
        " ".join(res.output.split())), res.output


@pytest.mark.parametrize("where,bad", [("value", "nl "), ("value", "nl\u202e"), ("value", "eu,nl"), ("key", "rack=a"),
                                       ("key", "jurisdiction\n")])  # fmt: skip
def test_a_site_label_outside_the_label_syntax_exits_2_naming_the_pool_and_the_label(tmp_path: Path, where: str,
                                                                                      bad: str) -> None:
    """A pool label no selector can name (round 27): ``windward plan --site`` exits 2 naming the file, the field,
    the pool, the label and what is allowed; no plan is written."""
    import yaml

    from scheduler.models import LABEL_KEY_ALLOWED, LABEL_VALUE_ALLOWED, site_path

    doc = yaml.safe_load(site_path("demo").read_text())
    labels = doc["pools"][1]["labels"]
    if where == "value":
        labels["jurisdiction"] = bad
    else:
        labels[bad] = "x"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc, allow_unicode=True))
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(HEADER + OK_ROW + "\n")
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(app, ["plan", "--site", str(site), "--jobs", str(jobs), "--start", "2023-03-06T00:00:00Z",
                                   "--horizon-hours", "2", "--out", str(out)])  # fmt: skip
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output and not out.exists(), res.output
    what = f"labels['jurisdiction']: {bad!r} is not a label value" if where == "value" else f"{bad!r} is not a label key"
    allowed = LABEL_VALUE_ALLOWED if where == "value" else LABEL_KEY_ALLOWED
    for needed in (str(site), "field pools.1.labels", "pool 'h100-nl-secret': labels", what, f"allowed: {allowed}"):
        assert " ".join(needed.split()) in flat, (needed, flat)


def test_a_jobs_csv_jurisdiction_outside_the_label_syntax_exits_2_saying_what_is_allowed(tmp_path: Path) -> None:
    """A jurisdiction outside the label syntax (here ``nl`` and a bidi override) matches no pool's ``jurisdiction``
    label and was refused as "no pool matches"; the row's field now says what a jurisdiction may be."""
    from scheduler.models import LABEL_VALUE_ALLOWED

    code, output, out, exc = _run(tmp_path, HEADER.strip() + ',jurisdiction\nx,science,training,0,8,900,,true,,0,"nl\u202e"\n')
    flat = " ".join(output.split())
    assert code == 2 and "row 2" in flat and "field jurisdiction" in flat, flat
    assert " ".join(f"allowed: {LABEL_VALUE_ALLOWED}".split()) in flat, flat
    _assert_plan_or_refused(code, output, out, exc)
