"""scheduler/slurm.py: #SBATCH / #WINDWARD batch scripts into job specs, with errors that name the line."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scheduler.errors import InputError
from scheduler.slurm import (
    IGNORED_SBATCH,
    MAX_ARRAY_TASKS,
    Dependency,
    parse_array,
    parse_dependency,
    parse_duration_s,
    parse_script,
    parse_time,
    read_script,
)

NOW = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)

TRAIN = """#!/bin/bash
#SBATCH --job-name=llama-ft          # a comment after the options
#SBATCH --gpus=h100:16
#SBATCH --time=1-12:00:00
#SBATCH --mem=512G --cpus-per-task=32
#SBATCH --dependency=afterok:4711:4712,afterany:4713
#SBATCH --begin=now+2hours
#SBATCH --deadline=2026-12-06T18:00:00Z

# Windward's own:
#WINDWARD --pool-labels=jurisdiction=nl --preemptible=yes --deadline-policy=hard
#WINDWARD --priority 5 --checkpoint-interval=30 --requires=jurisdiction=nl,clearance=secret

srun python train.py --epochs 3
#SBATCH is only a comment here? no: sbatch ignores it, and so do we not
"""


def parse(text: str) -> list:  # type: ignore[type-arg]
    return list(parse_script(text, "job.sh", now=NOW).jobs)


def test_a_full_script() -> None:
    text = TRAIN.replace("#SBATCH is only a comment here? no: sbatch ignores it, and so do we not\n", "")
    script = parse_script(text, "job.sh", now=NOW)
    (job,) = script.jobs
    s = job.spec
    assert (s.name, s.gpus, s.duration_s) == ("llama-ft", 16, 36 * 3600.0)
    assert s.pool == "gpu=h100,jurisdiction=nl"
    assert s.deadline == datetime(2026, 12, 6, 18, tzinfo=UTC)
    assert s.preemptible is True and s.priority == 5 and s.checkpoint_interval_s == 1800.0
    assert s.requires.jurisdiction == "nl" and s.requires.clearance == "secret"
    assert job.dependencies == (Dependency("afterok", ("4711", "4712")), Dependency("afterany", ("4713",)))
    assert job.begin == NOW + timedelta(hours=2)
    assert job.deadline_policy == "hard" and job.array_index is None
    assert script.body == text
    assert script.ignored == (
        "line 5: --mem=512G (Slurm option, ignored)",
        "line 5: --cpus-per-task=32 (Slurm option, ignored)",
    )


def test_a_directive_after_the_first_command_is_refused_naming_both_lines() -> None:
    with pytest.raises(InputError, match=r"job\.sh:15: #SBATCH after the first command \(line 14\)"):
        parse(TRAIN)


def test_defaults_short_options_and_the_file_name() -> None:
    (job,) = parse_script(
        "#!/bin/sh\n#SBATCH -G 2 -t 90 -p h100-eu-public\necho hi\n", "/tmp/x/eval.sbatch", now=NOW
    ).jobs
    s = job.spec
    assert (s.name, s.gpus, s.duration_s, s.pool, s.kind, s.preemptible) == (
        "eval.sbatch",
        2,
        5400.0,
        "h100-eu-public",
        "training",
        True,
    )
    assert job.deadline_policy == "soft" and job.dependencies == () and job.begin is None


@pytest.mark.parametrize(
    "value,seconds",
    [("90", 5400), ("90:30", 5430), ("1:00:00", 3600), ("2-12", 216000), ("2-12:30", 217800),
     ("2-12:30:15", 217815), ("0:0:1", 1), ("00:45", 45)],
)  # fmt: skip
def test_slurm_time_formats(value: str, seconds: int) -> None:
    assert parse_duration_s(value) == seconds


@pytest.mark.parametrize("value", ["UNLIMITED", "infinite", "0", "1:2:3:4", "1h", "-5", "1-", ""])
def test_bad_times_say_what_is_allowed(value: str) -> None:
    with pytest.raises(ValueError, match="allowed: M, M:S, H:M:S|has no end"):
        parse_duration_s(value)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2026-12-04T10:00:00", datetime(2026, 12, 4, 10, tzinfo=UTC)),
        ("2026-12-04T10:00:00+01:00", datetime(2026, 12, 4, 9, tzinfo=UTC)),
        ("2026-12-04", datetime(2026, 12, 4, tzinfo=UTC)),
        ("2026-12-04T10:00Z", datetime(2026, 12, 4, 10, tzinfo=UTC)),
        ("18:30", datetime(2026, 12, 3, 18, 30, tzinfo=UTC)),
        ("09:15:30", datetime(2026, 12, 4, 9, 15, 30, tzinfo=UTC)),  # already past today: tomorrow
        ("now+90", NOW + timedelta(seconds=90)),
        ("now+3days", NOW + timedelta(days=3)),
        ("now+1week", NOW + timedelta(weeks=1)),
        ("midnight", datetime(2026, 12, 4, tzinfo=UTC)),
        ("noon", datetime(2026, 12, 4, 12, tzinfo=UTC)),
        ("tomorrow", datetime(2026, 12, 4, tzinfo=UTC)),
    ],
)
def test_begin_and_deadline_forms(value: str, expected: datetime) -> None:
    assert parse_time(value, NOW) == expected


@pytest.mark.parametrize("value", ["next tuesday", "25:00", "now+3fortnights", "12/04/2026"])
def test_bad_time_values(value: str) -> None:
    with pytest.raises(ValueError, match=value.replace("+", r"\+")):
        parse_time(value, NOW)


@pytest.mark.parametrize(
    "value,expected",
    [("0-3", [0, 1, 2, 3]), ("1,3,5", [1, 3, 5]), ("0-15:4", [0, 4, 8, 12]), ("0-7%2", list(range(8))),
     ("7", [7]), ("1-2,5-6", [1, 2, 5, 6])],
)  # fmt: skip
def test_array_specs(value: str, expected: list[int]) -> None:
    assert parse_array(value) == expected


@pytest.mark.parametrize(
    "value,needle",
    [("5-1", "backwards"), ("0-4:0", "step must be >= 1"), ("a-b", "is not an index"), ("1,1", "twice"),
     (f"0-{MAX_ARRAY_TASKS}", f"more than {MAX_ARRAY_TASKS}")],
)  # fmt: skip
def test_bad_arrays(value: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_array(value)


def test_a_job_array_expands_to_one_spec_per_index() -> None:
    jobs = parse("#SBATCH --gpus=1 --time=10 --array=0-9:3 -J sweep\n#SBATCH --dependency=singleton\npython sweep.py\n")
    assert [j.array_index for j in jobs] == [0, 3, 6, 9]
    assert [j.spec.name for j in jobs] == ["sweep_0", "sweep_3", "sweep_6", "sweep_9"]
    assert all(j.spec.gpus == 1 and j.dependencies == (Dependency("singleton", ()),) for j in jobs)


def test_dependencies() -> None:
    assert parse_dependency("afterok:1:2") == (Dependency("afterok", ("1", "2")),)
    assert parse_dependency("after:7,afternotok:8") == (Dependency("after", ("7",)), Dependency("afternotok", ("8",)))
    for bad, needle in [("afterok:1?afterany:2", "'?'"), ("aftercorr:1", "not one of"), ("afterok", "needs job ids"),
                        ("afterok:1+10", "needs job ids")]:  # fmt: skip
        with pytest.raises(ValueError, match=needle.replace("?", r"\?")):
            parse_dependency(bad)


@pytest.mark.parametrize("seed", range(12))
def test_gpu_forms_and_times_family(seed: int) -> None:
    rng = random.Random(seed)
    nodes, per, d, h, m, s = rng.randint(1, 8), rng.choice([1, 2, 4, 8]), rng.randint(0, 3), rng.randint(0, 23), rng.randint(0, 59), rng.randint(1, 59)  # fmt: skip
    form = rng.choice(["gres", "gpus-per-node", "gpus"])
    gpu_line = {
        "gres": f"--gres=gpu:{per}",
        "gpus-per-node": f"--gpus-per-node={per}",
        "gpus": f"--gpus={nodes * per}",
    }[form]
    time_s = f"{d}-{h}:{m:02d}:{s:02d}" if d else f"{h}:{m:02d}:{s:02d}"
    n_array = rng.randint(0, 5)
    lines = ["#!/bin/bash", f"#SBATCH --nodes={nodes}", f"#SBATCH {gpu_line}", f"#SBATCH --time {time_s}"]
    if n_array:
        lines.append(f"#SBATCH --array=1-{n_array}")
    jobs = parse("\n".join(lines) + "\nsrun ./a.out\n")
    assert len(jobs) == max(n_array, 1)
    assert all(j.spec.gpus == nodes * per for j in jobs)
    assert all(j.spec.duration_s == d * 86400 + h * 3600 + m * 60 + s for j in jobs)


@pytest.mark.parametrize(
    "script,needle",
    [
        ("#SBATCH --time=10\necho\n", "job.sh: no GPUs asked"),
        ("#SBATCH --gpus=2\necho\n", "job.sh: no run time"),
        (
            "#SBATCH --gpus=2 --time=10\n#SBATCH --gres=gpu:2\n",
            "job.sh:2: --gres and --gpus (line 1) both set the GPUs",
        ),
        ("#SBATCH --gpus=0 --time=10\n", "job.sh:1: --gpus: '0' is not a GPU count"),
        ("#SBATCH --gpus=2 --time=forever\n", "job.sh:1: --time: 'forever' is not a time limit"),
        (
            "#SBATCH --gpus=2 --time=10\n#SBATCH --partition=a,b\n",
            "job.sh:2: --partition: 'a,b' lists several partitions",
        ),
        (
            "#SBATCH --gpus=2 --time=10 --wckey=x --licenses=y\n#SBATCH --frobnicate=3\n",
            "job.sh:2: #SBATCH --frobnicate: not supported",
        ),
        ("#SBATCH --gpus=2 --time=10\n#SBATCH --preemptible=no\n", "job.sh:2: --preemptible is a #WINDWARD option"),
        ("#SBATCH --gpus=2 --time=10\n#WINDWARD --mem=3\n", "job.sh:2: #WINDWARD --mem: not supported"),
        (
            "#SBATCH --gpus=2 --time=10\n#WINDWARD --preemptible=maybe\n",
            "job.sh:2: --preemptible: 'maybe' is not yes or no",
        ),
        (
            "#SBATCH --gpus=2 --time=10\n#WINDWARD --deadline-policy=hard\n",
            "job.sh:2: --deadline-policy=hard needs '#SBATCH --deadline'",
        ),
        (
            "#SBATCH --gpus=2 --time=10\n#WINDWARD --deadline-policy=strict\n",
            "job.sh:2: --deadline-policy: 'strict' is not hard or soft",
        ),
        (
            "#SBATCH --gpus=h100:2 --time=10\n#WINDWARD --pool-labels=gpu=b200\n",
            "job.sh:2: --pool-labels gpu=b200 contradicts the GPU type 'h100' of line 1",
        ),
        (
            "#SBATCH --gpus=2 --time=10 -p h100-nl\n#WINDWARD --pool-labels=jurisdiction=nl\n",
            "job.sh:1: --partition=h100-nl and pool labels",
        ),
        (
            "#SBATCH --gpus=2 --time=10\n#WINDWARD --pool-labels=nl\n",
            "job.sh:2: --pool-labels: 'nl' in 'nl' is not key=value",
        ),
        (
            "#SBATCH --gpus=2 --time=10 --begin=now+1day --deadline=now+1hour\n",
            "job.sh:1: --begin 2026-12-04T16:00:00+00:00 is not before --deadline",
        ),
        ("#SBATCH --gpus=2 --time=10 --job-name\n", "job.sh:1: --job-name needs a value"),
        ("#SBATCH --gpus=2 --time=10 -Z 3\n", "job.sh:1: #SBATCH: option -Z is not one #SBATCH understands"),
        ("#SBATCH --gpus=2 --time=10 'unterminated\n", "job.sh:1: #SBATCH: No closing quotation"),
        ("#SBATCH --gpus=2 --time=10 --array=3-1\n", "job.sh:1: --array: '3-1' in '3-1'"),
        ("#SBATCH --gpus=2 --time=10 --dependency=afterok:1?afterok:2\n", "job.sh:1: --dependency:"),
    ],
)
def test_errors_name_the_line_and_the_option(script: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        parse(script)
    assert needle in str(e.value)


def test_spec_validation_errors_name_the_field_and_the_array_index() -> None:
    with pytest.raises(InputError, match=r"job\.sh: field priority"):
        parse("#SBATCH --gpus=2 --time=10\n#WINDWARD --priority=500\n")
    with pytest.raises(InputError, match=r"job\.sh \(array index 0\): field kind"):
        parse("#SBATCH --gpus=2 --time=10 --array=0-1\n#WINDWARD --kind=service\n")
    with pytest.raises(InputError, match=r"job\.sh: field name"):
        parse("#SBATCH --gpus=2 --time=10 --job-name=" + "x" * 200 + "\n")


def test_every_ignored_option_is_accepted_and_reported() -> None:
    flags = {"exclusive", "requeue", "no-requeue", "parsable", "kill-on-invalid-dep"}
    opts = " ".join(f"--{o}" if o in flags else f"--{o}=v" for o in sorted(IGNORED_SBATCH))
    script = parse_script(f"#SBATCH --gpus=1 --time=5 {opts}\nrun\n", "job.sh", now=NOW)
    assert len(script.ignored) == len(IGNORED_SBATCH)


def test_last_value_wins_like_sbatch_and_read_script(tmp_path: Path) -> None:
    p = tmp_path / "train.sh"
    p.write_text("#SBATCH --gpus=2 --time=10\n#SBATCH --time=20\nrun\n")
    (job,) = read_script(p, now=NOW).jobs
    assert job.spec.duration_s == 1200.0
    with pytest.raises(InputError, match="cannot read the script"):
        read_script(tmp_path / "missing.sh", now=NOW)
    (tmp_path / "bin.sh").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not a text file"):
        read_script(tmp_path / "bin.sh", now=NOW)


@pytest.mark.parametrize("seed", range(6))
def test_job_specs_carry_dependencies_begin_workdir_and_the_array_index(seed: int, tmp_path: Path) -> None:
    """What `windward submit script.sh` sends (scheduler.slurm.job_specs): a family of seeded scripts."""
    from scheduler.slurm import job_specs

    rng = random.Random(seed)
    n = rng.randint(1, 4)
    deps = [f"j-{rng.randint(1, 999)}" for _ in range(rng.randint(0, 3))]
    lines = ["#!/bin/bash", "#SBATCH --job-name=fam", f"#SBATCH --gpus={rng.randint(1, 8)}", "#SBATCH --time=30"]
    if n > 1:
        lines.append(f"#SBATCH --array=0-{n - 1}")
    if deps:
        lines.append("#SBATCH --dependency=" + ",".join(f"{rng.choice(['afterok', 'afterany'])}:{d}" for d in deps))
    if rng.random() < 0.5:
        lines.append("#SBATCH --begin=now+2hours")
    entry = rng.random() < 0.3
    if entry:
        lines.append("#WINDWARD --entrypoint=train.main:run")
    script = tmp_path / "fam.sh"
    script.write_text("\n".join([*lines, "", "echo run"]) + "\n")
    parsed = parse_script(script.read_text(), str(script), now=NOW)
    specs = job_specs(parsed, script, tmp_path)
    assert len(specs) == n
    for i, (sj, spec) in enumerate(zip(parsed.jobs, specs, strict=True)):
        assert [d.job_id for d in spec.dependencies or ()] == deps
        assert spec.begin == sj.begin
        assert spec.workdir == str(tmp_path.resolve())
        assert spec.entrypoint == ("train.main:run" if entry else f"bash {script.resolve()}")
        env = spec.env or {}
        assert (env.get("SLURM_ARRAY_TASK_ID") == str(i)) if n > 1 else "SLURM_ARRAY_TASK_ID" not in env


def test_job_specs_refuse_singleton(tmp_path: Path) -> None:
    from scheduler.slurm import job_specs

    parsed = parse_script("#SBATCH --gpus=1 --time=5 --dependency=singleton\nrun\n", "job.sh", now=NOW)
    with pytest.raises(InputError, match="singleton: not supported"):
        job_specs(parsed, tmp_path / "job.sh", tmp_path)
