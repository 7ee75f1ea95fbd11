"""Inputs nobody typed, as a family (tests/unit/edge_family.py generates them from the models' own fields): every
field of the site file (``scheduler.models.Site`` and its pools, contracts), of a jobs CSV row (``JobRow``, the
extension columns included) and of the tenants file, every column of the energy CSV
(``scheduler.signals.ENERGY_COLUMN_RANGE``), at and past each edge, alone and a few at once (seeded), and the
whole-file shapes (empty, header only, BOM, CRLF, trailing blank lines, reordered and unknown columns).

The property, through the real ``windward plan`` (in-process, its typer app): exit 0 or 3 with a plan its own
checker passes, or exit 2 naming the field (and the row where there is one) with no plan written; never exit 1,
never a traceback. A value the field's own definition refuses (past a declared bound, NaN, inf, a wrong type,
missing while required) must be exit 2. The HTTP job spec and congestion event: tests/integration/
test_edge_family_server.py."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from edge_family import MISSING, Edge, Shape, _number_edges, apply, model_edges, sample
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.models import SITES_DIR, JobRow, Site, TenantsFile, load_tenants
from scheduler.planjson import check_plan
from scheduler.signals import ENERGY_COLUMN_RANGE
from scheduler.traces import CANONICAL_COLUMNS, EXTENSION_COLUMNS

START = "2023-03-06T00:00:00Z"
SENTINEL = "an earlier plan"
BASE_ROW = {"job_id": "t1", "tenant": "science", "kind": "training", "submit_s": "0", "gpus": "8",
            "duration_s": "3600", "deadline_s": "", "preemptible": "true", "pool": "", "priority": "0"}  # fmt: skip
DEMO_SITE = yaml.safe_load((SITES_DIR / "demo.yaml").read_text())
ENERGY_HEADER = ["timestamp_utc", *ENERGY_COLUMN_RANGE]
ENERGY_BASE = {"wind_mw": "0.5", "offshore_wind_mw": "3000", "grid_cap_mw": "10", "carbon_g_per_kwh": "300",
               "price_eur_per_mwh": "50"}  # fmt: skip


def _plan(tmp_path: Path, jobs: bytes, *, site: str = "demo", energy: bytes | None = None) -> tuple[int, str, Path,
                                                                                                    object]:
    """``windward plan`` in-process on these files; the exit code, all output, the plan path and any exception.
    The root logger's handlers are reset around the call: ``logging.basicConfig`` in the CLI's callback binds
    the first call's captured stderr, which the runner closes."""
    (tmp_path / "jobs.csv").write_bytes(jobs)
    out = tmp_path / "plan.json"
    out.write_text(SENTINEL)  # (a plan from an earlier run: a refusal must leave it as it was)
    args = ["plan", "--site", site, "--jobs", str(tmp_path / "jobs.csv"), "--start", START, "--horizon-hours", "2",
            "--out", str(out)]  # fmt: skip
    if energy is not None:
        (tmp_path / "energy.csv").write_bytes(energy)
        args += ["--energy", str(tmp_path / "energy.csv")]
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    try:
        res = CliRunner().invoke(app, args)
    finally:
        logging.root.handlers[:] = saved
    return res.exit_code, res.output, out, res.exception


def _judge(result: tuple[int, str, Path, object], names: tuple[str, ...], must_refuse: bool, what: str) -> int:
    """The property: exit 0/3 with a plan its checker passes, or 2 naming ``names`` (all of them) and the plan
    file as it was; never 1, never a traceback; exit 2 where ``must_refuse``. Returns the exit code."""
    code, output, out, exc = result
    flat = " ".join(output.split())
    assert exc is None or isinstance(exc, SystemExit), f"{what}: exception {exc!r}: {flat[-1500:]}"
    assert "Traceback" not in output, f"{what}: {output[-3000:]}"
    assert code in (0, 2, 3), f"{what}: exit {code}: {flat[-1500:]}"
    if code == 2:
        if "not UTF-8" in flat:  # (bytes that are not UTF-8 are named by file, byte and line, before any field)
            assert "(line " in flat, flat
        else:
            for n in names:
                assert n in flat, f"{what}: exit 2 without naming {n!r}: {flat[-800:]}"
        assert out.read_text() == SENTINEL, f"{what}: refused, but the plan file was written"
        return code
    assert not must_refuse, f"{what}: the field's own definition refuses it, but it planned (exit {code})"
    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"], f"{what}: {doc['status']}"
    assert check_plan(doc) == [], what
    return code


# --------------------------------------------------------------------------------------------- jobs CSV


def _cell(v: Any) -> str:
    """A value as a user's CSV cell: numbers as Python writes them (nan, inf, 1e-09), JSON for lists."""
    if v is MISSING or v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def _csv(header: list[str], rows: list[list[str]], line_end: str = "\n") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=line_end)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")  # (a lone surrogate: bytes that are not UTF-8)


def _family(items: list[Any], default_n: int, ids: Any) -> list[Any]:
    """``items`` as pytest parameters: a seeded ``default_n`` of them in the default run, the rest under
    ``-m slow`` (CI runs both), so that the default run stays short and the whole family still runs."""
    keep = {id(x) for x in sample(items, default_n, seed=26)}
    return [pytest.param(x, id=ids(x), marks=() if id(x) in keep else pytest.mark.slow) for x in items]


def _jobs_csv(edges: list[Edge]) -> bytes:
    row = dict(BASE_ROW)
    for e in edges:
        row[str(e.path[0])] = _cell(e.value)
    header = [c for c in (*CANONICAL_COLUMNS, *EXTENSION_COLUMNS) if c in row] + [c for c in row if c not in
                                                                                 (*CANONICAL_COLUMNS, *EXTENSION_COLUMNS)]  # fmt: skip
    return _csv(header, [[row[c] for c in header]])


def _csv_refuses(e: Edge) -> bool:
    """Whether a jobs CSV must refuse ``e`` as its cell text: the model's verdict, except where the text of the
    value means something else in a CSV (a wrong type's text is text; an empty cell of an optional column is its
    default; cells are stripped)."""
    if e.label.startswith("wrong-type") or e.label == "padded" or e.label == "unknown-field":
        return False  # (an unknown column is read by no one: documented, docs/contracts.md)
    if e.label in ("null", "empty", "space", "missing"):
        return JobRow.model_fields[str(e.path[0])].is_required() if e.path[0] in JobRow.model_fields else False
    return e.refuse


JOB_ROW_EDGES = list(model_edges(JobRow))


@pytest.mark.parametrize("edge", _family(JOB_ROW_EDGES, 60, lambda e: e.id))
def test_every_jobs_csv_field_at_and_past_its_edges(tmp_path: Path, edge: Edge) -> None:
    field = str(edge.path[0])
    result = _plan(tmp_path, _jobs_csv([edge]))
    names = (field,) if field in JobRow.model_fields else ()
    if _judge(result, names, _csv_refuses(edge), edge.id) == 2:
        if names:  # the row, or (the site's fit check, after the file is read: check_jobs_fit) the job's id
            assert any(w in result[1] for w in ("row 2", "job 't1'", "(line 2)")), result[1]
        return
    # planned: no slot before the job's submission (a submit_s of 1e300 was cast to slot 0 up to round 25)
    doc = json.loads(result[2].read_text())
    submit = float(_cell(edge.value)) if field == "submit_s" else float(BASE_ROW["submit_s"])
    for j in doc["jobs"]:
        assert all(t * doc["slot_s"] >= submit - doc["slot_s"] for t in j["slots"]), (edge.id, j["slots"][:5])


@pytest.mark.parametrize("seed", range(12))
def test_jobs_csv_rows_with_several_odd_fields_at_once(tmp_path: Path, seed: int) -> None:
    """Seeded: three edges on three different fields in one row, and that row among ordinary ones."""
    pick: dict[str, Edge] = {}
    for e in sample(JOB_ROW_EDGES, 12, seed):
        pick.setdefault(str(e.path[0]), e)
    edges = list(pick.values())[:3]
    must = any(_csv_refuses(e) for e in edges)
    code = _judge(_plan(tmp_path, _jobs_csv(edges)), (), must, f"seed {seed}: {[e.id for e in edges]}")
    assert code == 2 or not must


def _same_plan_as_canonical(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "a").mkdir()
    base = _plan(tmp_path / "a", _jobs_csv([]))
    other = _plan(tmp_path, text)
    _judge(base, (), False, "canonical")
    _judge(other, (), False, "shape")
    jobs = [json.loads(r[2].read_text())["jobs"] for r in (base, other)]
    assert [(j["job_id"], j["slots"], j["power_fraction"]) for j in jobs[0]] == [
        (j["job_id"], j["slots"], j["power_fraction"]) for j in jobs[1]]


HEADER = list(CANONICAL_COLUMNS)
ROW = [BASE_ROW[c] for c in HEADER]

#: Whole-file shapes that mean the same file: the same plan as the canonical one.
HARMLESS_SHAPES = {
    "bom": b"\xef\xbb\xbf" + _csv(HEADER, [ROW]),
    "crlf": _csv(HEADER, [ROW], "\r\n"),
    "trailing-blank-lines": _csv(HEADER, [ROW]) + b"\n\n  \n",
    "reordered-columns": _csv(HEADER[::-1], [ROW[::-1]]),
    "spaces-around-cells": _csv(HEADER, [[f" {c} " for c in ROW]]),
    "required-columns-only": _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]]),
    "an-unknown-column": _csv([*HEADER, "comment"], [[*ROW, "hello"]]),
}


@pytest.mark.parametrize("name", list(HARMLESS_SHAPES))
def test_jobs_csv_shapes_that_mean_the_same_file_plan_the_same(tmp_path: Path, name: str) -> None:
    _same_plan_as_canonical(tmp_path, HARMLESS_SHAPES[name])


#: Whole-file shapes refused, with what the refusal must name.
REFUSED_SHAPES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "a-required-column-missing": (_csv(HEADER[:4], [ROW[:4]]), ("missing column(s)", "gpus", "duration_s")),
    "a-column-twice": (_csv([*HEADER, "gpus"], [[*ROW, "4"]]), ("['gpus']", "each column once")),
    "more-cells-than-columns": (_csv(HEADER, [[*ROW, "x"]]), ("row 2", "11 cells")),
    "header-only-in-upper-case": (_csv([c.upper() for c in HEADER], [ROW]), ("missing column(s)",)),
    "not-utf8": (_csv(HEADER, [ROW]).replace(b"science", b"sci\xe9nce"), ("not UTF-8",)),
    "a-duplicate-row": (_csv(HEADER, [ROW, ROW]), ("row 3", "job_id", "repeats row 2")),
}


@pytest.mark.parametrize("name", list(REFUSED_SHAPES))
def test_jobs_csv_shapes_that_are_refused(tmp_path: Path, name: str) -> None:
    text, names = REFUSED_SHAPES[name]
    assert _judge(_plan(tmp_path, text), names, True, name) == 2


@pytest.mark.parametrize("text", [b"", b"\n\n", _csv(HEADER, []), b"\xef\xbb\xbf" + _csv(HEADER, [])])
def test_jobs_csv_with_no_rows(tmp_path: Path, text: bytes) -> None:
    """An empty file, blank lines, a header only (with or without a BOM): a plan of no jobs or a refusal naming
    the header."""
    _judge(_plan(tmp_path, text), ("jobs",), False, repr(text[:20]))


# ------------------------------------------------------------------------------------------ site file


SITE_EDGES = list(model_edges(Site))


@pytest.mark.parametrize("edge", _family(SITE_EDGES, 60, lambda e: e.id))
def test_every_site_field_at_and_past_its_edges(tmp_path: Path, edge: Edge) -> None:
    doc = apply(DEMO_SITE, edge)
    site = tmp_path / "site.yaml"
    site.write_bytes(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    names = (str(site), "field", str(edge.path[-1]) if isinstance(edge.path[-1], str) else "")
    _judge(_plan(tmp_path, jobs, site=str(site)), names, edge.refuse, edge.id)


@pytest.mark.parametrize("seed", range(8))
def test_site_files_with_several_odd_fields_at_once(tmp_path: Path, seed: int) -> None:
    edges = sample(SITE_EDGES, 3, seed)
    doc = DEMO_SITE
    for e in edges:
        try:
            doc = apply(doc, e)
        except (TypeError, KeyError, IndexError):  # (an earlier edge replaced the parent with a non-container)
            continue
    site = tmp_path / "site.yaml"
    site.write_bytes(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    _judge(_plan(tmp_path, jobs, site=str(site)), (str(site),), False, f"seed {seed}: {[e.id for e in edges]}")


# ----------------------------------------------------------------------------------------- energy CSV


def _energy_rows(n: int = 4) -> list[list[str]]:
    return [[f"2023-03-06T{i:02d}:00:00Z", *ENERGY_BASE.values()] for i in range(n)]


def _energy_edges() -> Iterator[tuple[str, int, str, bool]]:
    """(column, row index, cell, refused) for every value column, from its range in ENERGY_COLUMN_RANGE."""
    for c, (lo, hi, _) in ENERGY_COLUMN_RANGE.items():
        for v, _label, bad in _number_edges(Shape("float", ge=lo, le=hi)):
            yield c, 1, _cell(v), bad
        for text, bad in (("", False), ("abc", True), (" 1 ", False), ("1,5", True), ("0x10", True)):
            yield c, 1, text, bad
    for text, bad in (("", True), ("2023-03-06T01:00:00+02:00", True), ("9999-12-31T23:00:00Z", True), ("0", True),
                      ("2023-13-06T01:00:00Z", True), ("2023-03-06T01:00:00", False)):  # fmt: skip
        yield "timestamp_utc", 1, text, bad


ENERGY_EDGES = list(_energy_edges())


@pytest.mark.parametrize("case", _family(ENERGY_EDGES, 30, lambda c: f"{c[0]}={c[2]!r}"))
def test_every_energy_column_at_and_past_its_edges(tmp_path: Path, case: tuple[str, int, str, bool]) -> None:
    col, row, cell, bad = case
    rows = _energy_rows()
    rows[row][ENERGY_HEADER.index(col)] = cell
    header = ENERGY_HEADER
    if col == "offshore_wind_mw":  # (wind_mw wins where both are given: the national column alone)
        k = ENERGY_HEADER.index("wind_mw")
        header, rows = header[:k] + header[k + 1 :], [r[:k] + r[k + 1 :] for r in rows]
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    _judge(_plan(tmp_path, jobs, energy=_csv(header, rows)), ("energy.csv", col), bad, f"{col}={cell!r}")


#: Energy files that cannot be a series, with what the refusal names; the last is the worst case found: a row
#: decades from the others at a 1-second step made a grid of 846 million steps (out of memory, round 26).
ENERGY_REFUSED_SHAPES: dict[str, tuple[list[str], list[list[str]], tuple[str, ...]]] = {
    "a-column-twice": ([*ENERGY_HEADER, "wind_mw"], [[*r, "9"] for r in _energy_rows()], ("['wind_mw']",)),
    "more-cells-than-columns": (ENERGY_HEADER, [[*r, "7"] for r in _energy_rows()], ("row 2", "cells")),
    "header-only": (ENERGY_HEADER, [], ("two data rows",)),
    "one-row": (ENERGY_HEADER, _energy_rows(1), ("two data rows",)),
    "no-carbon-column": (ENERGY_HEADER[:-2], [r[:-2] for r in _energy_rows()], ("carbon_g_per_kwh",)),
    "a-row-decades-away": (ENERGY_HEADER, [["2023-03-06T00:00:00Z", *ENERGY_BASE.values()],
                                           ["2023-03-06T00:00:01Z", *ENERGY_BASE.values()],
                                           ["2050-01-01T00:00:00Z", *ENERGY_BASE.values()]],
                           ("846,547,201 time steps", "row 4", "timestamp_utc")),
}


@pytest.mark.parametrize("name", list(ENERGY_REFUSED_SHAPES))
def test_energy_csv_shapes_that_are_refused(tmp_path: Path, name: str) -> None:
    header, rows, names = ENERGY_REFUSED_SHAPES[name]
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    assert _judge(_plan(tmp_path, jobs, energy=_csv(header, rows)), ("energy.csv", *names), True, name) == 2


def test_energy_csv_reordered_with_crlf_and_a_bom_plans_as_the_canonical(tmp_path: Path) -> None:
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    a = _plan(tmp_path, jobs, energy=_csv(ENERGY_HEADER, _energy_rows()))
    _judge(a, (), False, "canonical")
    plan_a = json.loads(a[2].read_text())["timeline"]
    (tmp_path / "b").mkdir()
    text = b"\xef\xbb\xbf" + _csv(ENERGY_HEADER[::-1], [r[::-1] for r in _energy_rows()], "\r\n") + b"\r\n\r\n"
    b = _plan(tmp_path / "b", jobs, energy=text)
    _judge(b, (), False, "reordered")
    assert json.loads(b[2].read_text())["timeline"] == plan_a


# --------------------------------------------------------------------------------------- tenants file

DEMO_TENANTS = yaml.safe_load((SITES_DIR / "demo-tenants.yaml").read_text())
TENANT_EDGES = list(model_edges(TenantsFile))


@pytest.mark.parametrize("edge", _family(TENANT_EDGES, 60, lambda e: e.id))
def test_every_tenants_file_field_at_and_past_its_edges(tmp_path: Path, edge: Edge) -> None:
    """The tenants file as ``windward server --tenants`` reads it (load_tenants): a model, or an InputError
    naming the file and the field; a value past its definition is refused."""
    from scheduler.errors import InputError

    doc = apply(DEMO_TENANTS, edge)
    p = tmp_path / "tenants.yaml"
    p.write_bytes(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))
    try:
        load_tenants(p)
    except InputError as e:
        msg = str(e)
        assert str(p) in msg and ("field" in msg or "not UTF-8" in msg), msg
        last = edge.path[-1]
        if isinstance(last, str) and "not UTF-8" not in msg and last != "tenants":
            assert last in msg or "repeated" in msg or "share a token" in msg, msg
        return
    assert not edge.refuse, f"{edge.id}: the field's own definition refuses it, but it loaded"


def test_the_generator_covers_every_field_of_each_contract() -> None:
    """A field added to a model is in the family without editing a test: every field of each model appears."""
    for model, edges in ((JobRow, JOB_ROW_EDGES), (Site, SITE_EDGES), (TenantsFile, TENANT_EDGES)):
        seen = {e.path[0] for e in edges}
        assert set(model.model_fields) <= seen, (model.__name__, set(model.model_fields) - seen)
    pools = {e.path[2] for e in SITE_EDGES if e.path[:2] == ("pools", 0) and len(e.path) > 2}
    from scheduler.models import Pool

    assert set(Pool.model_fields) <= pools
    # ... and into a map's keys and values and a tuple's items: the label syntax (pool labels, tenant
    # jurisdictions) gives edges that must be refused, not only lengths
    for edges, field, kinds in ((SITE_EDGES, "pools.0.labels", ("key", "item")),
                                (TENANT_EDGES, "tenants.0.jurisdictions", ("item",))):  # fmt: skip
        for kind in kinds:
            refused = {e.label.removeprefix(f"{kind}-") for e in edges if e.field == field
                       and e.label.startswith(f"{kind}-") and e.refuse}  # fmt: skip
            assert {"nul", "newline", "bidi-override", "comma", "equals", "padded", "empty", "max-len-plus"} <= refused, (
                field, kind, refused)
    assert all(math.isfinite(float(lo)) and math.isfinite(float(hi)) for lo, hi, _ in ENERGY_COLUMN_RANGE.values())


def test_a_misspelt_jobs_column_is_said_not_read(tmp_path: Path) -> None:
    """An unknown column is allowed (a trace's own columns ride along) and planned as without it, but said on
    stderr: ``dedline_s`` for ``deadline_s`` would otherwise drop every deadline without a word."""
    text = _csv([*HEADER, "dedline_s"], [[*ROW, "1800"]])
    result = _plan(tmp_path, text)
    assert _judge(result, (), False, "misspelt") == 0
    flat = " ".join(result[1].split())
    assert "column(s) ['dedline_s'] not read; the jobs CSV reads job_id, tenant" in flat, flat[-600:]


@pytest.mark.parametrize("which", ["jobs", "site"])
def test_a_refused_edge_through_the_installed_command(tmp_path: Path, which: str) -> None:
    """The same property through ``windward plan`` as a user runs it (a subprocess of the installed entry point,
    its real stderr and exit code): one seeded edge each of the jobs CSV and the site file that must be refused."""
    import os
    import subprocess
    import sys

    jobs = tmp_path / "jobs.csv"
    site = "demo"
    if which == "jobs":
        edge = sample([e for e in JOB_ROW_EDGES if _csv_refuses(e) and e.label != "lone-surrogate"], 1, seed=26)[0]
        jobs.write_bytes(_jobs_csv([edge]))
    else:
        edge = sample([e for e in SITE_EDGES if e.refuse], 1, seed=26)[0]
        jobs.write_bytes(_csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]]))
        (tmp_path / "site.yaml").write_text(yaml.safe_dump(apply(DEMO_SITE, edge), allow_unicode=True))
        site = str(tmp_path / "site.yaml")
    out = tmp_path / "plan.json"
    r = subprocess.run([str(Path(sys.executable).parent / "windward"), "plan", "--site", site, "--jobs", str(jobs),
                        "--start", START, "--horizon-hours", "2", "--out", str(out)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "WINDWARD_LOG": "WARNING"})  # fmt: skip
    assert r.returncode == 2, (edge.id, r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "field" in r.stderr and not out.exists(), (edge.id, r.stderr[-2000:])


DEMO_SITE_TEXT = (SITES_DIR / "demo.yaml").read_text()
#: Site files as whole files: (bytes, what a refusal names, or None where it plans as the built-in demo site).
SITE_SHAPES: dict[str, tuple[bytes, tuple[str, ...] | None]] = {
    "bom-and-crlf": (b"\xef\xbb\xbf" + DEMO_SITE_TEXT.replace("\n", "\r\n").encode(), None),
    "trailing-blank-lines": (DEMO_SITE_TEXT.encode() + b"\n\n\n", None),
    "empty-file": (b"", ("(top level)",)),
    "a-list": (b"- name: x\n", ("(top level)",)),
    "a-key-twice": (DEMO_SITE_TEXT.replace("pue:", "pue: 1.2\npue:", 1).encode(), ("'pue' is given twice",
                                                                                    "allowed: each key once")),
    "a-pool-key-twice": (DEMO_SITE_TEXT.replace("tdp_w:", "tdp_w: 1\n    tdp_w:", 1).encode(),
                         ("'tdp_w' is given twice",)),
    "not-yaml": (b"name: [unclosed\n", ("not valid YAML",)),
}


@pytest.mark.parametrize("name", list(SITE_SHAPES))
def test_site_file_shapes(tmp_path: Path, name: str) -> None:
    text, names = SITE_SHAPES[name]
    site = tmp_path / "site.yaml"
    site.write_bytes(text)
    jobs = _csv(["job_id", "submit_s", "gpus", "duration_s"], [["t1", "0", "8", "3600"]])
    result = _plan(tmp_path, jobs, site=str(site))
    if names is not None:
        assert _judge(result, (str(site), *names), True, name) == 2
        return
    _judge(result, (), False, name)
    (tmp_path / "demo").mkdir()
    demo = _plan(tmp_path / "demo", jobs)
    _judge(demo, (), False, "demo")
    assert json.loads(result[2].read_text())["jobs"] == json.loads(demo[2].read_text())["jobs"]
