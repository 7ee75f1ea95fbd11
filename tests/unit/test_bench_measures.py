"""The measuring tools issue 11's figures come from: benchmarks/optimizer.py's corpus mode and ``--compare``,
benchmarks/paired.py (old and new trees timed alternately) and benchmarks/warm_chains.py (warm re-plans
against the greedy). Each runs for real on a few small instances; the comparison logic also on rows built to
hit each of its cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import optimizer, paired, warm_chains

ROOT = Path(__file__).resolve().parents[2]


def _row(name: str, objective: float, *, sha: str = "p", psha: str = "i", carbon: float | None = None,
         finished: int = 10, cpu: float = 0.5) -> dict[str, object]:
    r: dict[str, object] = {"name": name, "J": 10, "T": 12, "P": 1, "objective": objective, "plan_sha": sha,
                            "problem_sha": psha, "plan_finished": finished, "plan_cpu_s": cpu}
    if carbon is not None:
        r["carbon_vs_lp"] = carbon
    return r


def test_compare_sorts_each_instance_into_what_changed() -> None:
    old = [_row("a", 100.0, carbon=1.01), _row("b", 100.0, carbon=1.03), _row("c", 100.0, carbon=1.01),
           _row("d", 100.0), _row("e", 100.0, psha="other")]
    new = [_row("a", 100.0, carbon=1.01), _row("b", 90.0, sha="q", carbon=1.015, finished=11),
           _row("c", 120.0, sha="r", carbon=1.05, cpu=1.5), _row("d", 100.0 * (1 + 1e-12), sha="s"),
           _row("e", 50.0, psha="new-instance")]
    cmp = optimizer.corpus_compare(old, new)
    assert cmp["matched"] == 4 and cmp["unmatched_new"] == 1  # e: another instance under the same name
    assert cmp["same_plan"] == 1
    assert cmp["lower"] == [("b", pytest.approx(0.9))]
    assert cmp["higher"] == [("c", pytest.approx(1.2))]  # d: within COMPARE_REL, neither
    assert cmp["carbon_within_1_02_came_in"] == ["b"] and cmp["carbon_within_1_02_fell_out"] == ["c"]
    assert (cmp["jobs_finished_old"], cmp["jobs_finished_new"]) == (40, 41)
    assert cmp["cpu_new"]["plan_cpu_max"] == pytest.approx(1.5) and cmp["cpu_new"]["plan_cpu_over_1s"] == 1
    md = optimizer.compare_markdown(cmp, "old", "new")
    assert "objective lower: 1, higher: 1" in md and "b x0.9000" in md and "c x1.2000" in md


def test_compare_matches_rows_written_before_problem_sha_by_shape() -> None:
    old = [{"name": "a", "J": 10, "T": 12, "P": 1, "objective": 5.0}, {"name": "b", "J": 9, "T": 12, "P": 1,
                                                                        "objective": 5.0}]
    new = [_row("a", 4.0), _row("b", 4.0)]  # b has 10 jobs now: not the same instance
    cmp = optimizer.corpus_compare(old, new)
    assert cmp["matched"] == 1 and [n for n, _ in cmp["lower"]] == ["a"]


def test_corpus_mode_records_cpu_and_plans_and_compares_two_runs(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert optimizer.main(["--corpus", "3", "--seed", "4", "--out", str(a)]) == 0
    rows = json.loads((a / "corpus.json").read_text())["groups"]["corpus"]
    assert len(rows) == 3 and all(r["plan_cpu_s"] > 0 and len(r["plan_sha"]) == 16 for r in rows)
    assert len({r["problem_sha"] for r in rows}) == 3
    assert optimizer.main(["--corpus", "3", "--seed", "4", "--out", str(b), "--compare", str(a / "corpus.json")]) == 0
    doc = json.loads((b / "corpus.json").read_text())
    assert doc["compare"]["matched"] == 3 and doc["compare"]["same_plan"] == 3  # kernels.plan is deterministic
    assert doc["compare"]["lower"] == [] and doc["compare"]["higher"] == []
    assert "the same plan: 3" in (b / "corpus.md").read_text()
    capsys.readouterr()
    assert optimizer.main(["--compare", str(a / "corpus.json"), str(b / "corpus.json")]) == 0
    assert "3 instances matched by name and content" in capsys.readouterr().out
    # another seed: other instances under other names, nothing matched
    assert optimizer.main(["--corpus", "2", "--seed", "5", "--out", str(tmp_path / "c"),
                           "--compare", str(a / "corpus.json")]) == 0
    assert json.loads((tmp_path / "c" / "corpus.json").read_text())["compare"]["matched"] == 0


def test_compare_refuses_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"rows": []}')
    assert optimizer.main(["--compare", str(bad), str(bad)]) == 2
    assert "not a corpus.json" in capsys.readouterr().err
    assert optimizer.main(["--compare", str(bad)]) == 2  # one file needs --corpus
    assert "OLD NEW alone" in capsys.readouterr().err
    assert optimizer.main(["--corpus", "1", "--compare", str(bad), str(bad)]) == 2
    assert "allowed: one" in capsys.readouterr().err


def test_paired_times_both_trees_alternately_and_sees_the_same_plan(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, new = tmp_path / "p.json", tmp_path / "tree"
    new.mkdir()
    for part in ("kernels", "benchmarks", "scheduler"):  # the same code under another path: which tree ran shows
        (new / part).symlink_to(ROOT / part)
    assert paired.main(["--old", str(ROOT), "--new", str(new), "--corpus", "4", "--seed", "3", "--instances", "1,2",
                        "--reps", "2", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["index"] for r in rows] == [1, 2]
    for r in rows:
        assert len(r["old_cpu_s"]) == len(r["new_cpu_s"]) == 2 and min(r["old_cpu_s"] + r["new_cpu_s"]) > 0
        assert r["same_plan"] and r["old_objective"] == r["new_objective"]
        assert r["old_kernels"] == str(ROOT / "kernels" / "__init__.py")
        assert r["new_kernels"] == str(new / "kernels" / "__init__.py")
    assert "slowest median" in capsys.readouterr().out


def test_paired_takes_the_slowest_of_a_corpus_run(tmp_path: Path) -> None:
    rows = [{"name": f"corpus-{3 * 100_003 + i}", "plan_cpu_s": t} for i, t in enumerate([0.1, 0.9, 0.3, 0.7])]
    f = tmp_path / "corpus.json"
    f.write_text(json.dumps({"groups": {"corpus": rows}}))
    assert paired.slowest(str(f), 2, 4, 3) == [1, 3]


@pytest.mark.parametrize("args, says", [
    (["--old", "/nonexistent", "--new", str(ROOT), "--instances", "1"], "not a Windward source tree"),
    (["--old", str(ROOT), "--new", str(ROOT), "--instances", "x"], "comma-separated corpus indices"),
    (["--old", str(ROOT), "--new", str(ROOT), "--instances", "200"], "allowed: indices 0..199"),
    (["--old", str(ROOT), "--new", str(ROOT), "--slowest", "3"], "--slowest needs --from"),
    (["--old", str(ROOT), "--new", str(ROOT), "--instances", "1", "--reps", "0"], "--reps"),
])
def test_paired_refuses_bad_arguments(args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert paired.main(args) == 2
    assert says in capsys.readouterr().err


def test_warm_chains_judges_every_tick_against_the_greedy(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert warm_chains.main(["--family", "2", "--ticks", "2", "--out", str(a)]) == 0
    doc = json.loads((a / "warm_chains.json").read_text())
    rows, sm = doc["rows"], doc["summary"]
    assert [(r["chain"], r["tick"], r["warm"]) for r in rows] == [
        ("family-0", 0, False), ("family-0", 1, True), ("family-0", 2, True),
        ("family-1", 0, False), ("family-1", 1, True), ("family-1", 2, True)]
    assert sm["chains"] == 2 and sm["warm_ticks"] == 4 and sm["violations"] == 0
    # the counts are the rows' own verdicts (the warm ticks only)
    assert sm["jobs_lost"] == sum(r["lost_jobs"] for r in rows if r["warm"])
    assert sm["ticks_behind_on_work"] == sum(r["behind_on_work"] for r in rows if r["warm"])
    for r in rows:
        assert r["greedy_objective"] > 0 and r["objective"] > 0 and r["cpu_s"] > 0
        assert r["behind_on_work"] == (r["unfinished_gpu_h"] > r["greedy_unfinished_gpu_h"] * (1 + 1e-6) + 1e-9)
    assert warm_chains.main(["--family", "2", "--ticks", "2", "--out", str(b),
                             "--compare", str(a / "warm_chains.json")]) == 0
    cmp = json.loads((b / "warm_chains.json").read_text())["compare"]
    assert cmp == {"matched": 6, "same_plan": 6, "lower": [], "higher": []}


def test_warm_chain_tick_behind_the_greedy_is_counted() -> None:
    """judge_tick on a plan that runs nothing: every job the greedy finishes is lost, the work is behind."""
    from dataclasses import replace

    import numpy as np

    import kernels
    from benchmarks.instances import corpus, make

    pb = make(*corpus(2, seed=5, n_jobs=(20, 40))[0])
    res = kernels.plan(pb)
    empty = replace(res, run=np.zeros_like(res.run), power_fraction=np.zeros_like(res.power_fraction))
    v = warm_chains.judge_tick(pb, empty, 0.1)
    assert v["lost_jobs"] > 0 and v["behind_on_work"]
    sm = warm_chains.summary([{"chain": "x", "tick": 0, "warm": False, **v}, {"chain": "x", "tick": 1, "warm": True, **v}])
    assert sm["jobs_lost"] == v["lost_jobs"] and sm["ticks_behind_on_work"] == 1  # the warm tick only


def test_warm_chains_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert warm_chains.main(["--ticks", "2"]) == 2  # neither --family nor --sizes
    assert warm_chains.main(["--sizes", "a"]) == 2
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert warm_chains.main(["--family", "1", "--compare", str(bad)]) == 2
    assert "not a warm_chains.json" in capsys.readouterr().err
