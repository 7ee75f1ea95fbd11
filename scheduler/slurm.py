"""Slurm batch scripts as Windward job specs: ``#SBATCH`` lines, and ``#WINDWARD`` lines for what Slurm lacks.

``windward submit script.sh`` reads the script the way ``sbatch`` does: directives are the ``#SBATCH`` (and
``#WINDWARD``) lines *before the first command* (blank lines and other comments may sit between them; a
directive after the first command is ignored by sbatch, so it is refused here rather than silently dropped).
Each directive line holds one or more options in shell syntax (``--opt=value``, ``--opt value`` or a short
``-t 30``); a trailing ``# comment`` is allowed; a repeated option takes its last value (as sbatch).

``#SBATCH`` options read
-----------------------
=====================================  =========================================================================
``-J, --job-name=NAME``                ``name`` (default: the script's file name)
``-G, --gpus=[TYPE:]N``                ``gpus`` = N for the whole job; TYPE adds the pool label ``gpu=TYPE``
``--gres=gpu[:TYPE]:N``                N GPUs *per node* (as in Slurm): ``gpus`` = N x ``--nodes``
``--gpus-per-node=[TYPE:]N``           the same, per node
``-N, --nodes=N``                      nodes (for the per-node forms; default 1; a range ``2-4`` is refused)
``-t, --time=T``                       ``duration_s``: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``
``-p, --partition=POOL``               ``pool`` (one pool name; a list is refused)
``-d, --dependency=LIST``              dependencies (``after``, ``afterany``, ``afterok``, ``afternotok``, each
                                       ``:ID[:ID...]``, joined by ``,`` (all) -- ``?`` (any) is refused;
                                       ``singleton``)
``-a, --array=SPEC``                   job array: ``0-15``, ``1,3,5``, ``0-15:4``, a ``%N`` limit: one spec per
                                       index, named ``NAME_INDEX``
``-b, --begin=TIME``                   earliest start
``--deadline=TIME``                    ``deadline``
=====================================  =========================================================================

TIME (``--begin``, ``--deadline``): ISO 8601 (``2026-12-04T10:00:00``, ``2026-12-04``; no zone means UTC: the
site runs in UTC, where sbatch would use the login node's local time), ``HH:MM[:SS]`` (today, or tomorrow
when already past), ``now+N[seconds|minutes|hours|days|weeks]``, ``midnight``, ``noon``, ``tomorrow``.

Options that only matter to Slurm's own allocator or to its output files are accepted and listed in
:attr:`SlurmScript.ignored` (with their line) so the CLI can say so: :data:`IGNORED_SBATCH`. Any other option
is an error naming the line.

``#WINDWARD`` options
---------------------
``--pool-labels=k=v,k=v`` (a label selector, e.g. ``gpu=h100,jurisdiction=nl``), ``--preemptible=yes|no``,
``--deadline-policy=hard|soft`` (hard: refuse to start work that cannot finish by the deadline; soft: the
deadline weighs in the objective, the default), ``--kind=training|batch|inference``, ``--priority=N``,
``--checkpoint-interval=T`` (``--time`` syntax), ``--requires=jurisdiction=nl,clearance=secret``,
``--entrypoint=CMD`` (default: none, the CLI runs the script itself).

Every error is an :class:`~scheduler.errors.InputError` of the form ``script.sh:LINE: --option: what was given;
what is allowed``, and the resulting spec is validated by :class:`scheduler.models.JobSpec` (its errors name
the field). What ``JobSpec`` has no field for -- dependencies, begin time, array index, deadline policy, the
script body -- is returned beside the spec in :class:`SlurmJob`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from scheduler.errors import InputError
from scheduler.models import JobSpec, parse_model

#: The most specs one ``--array`` may expand to (Slurm's default MaxArraySize is 1001).
MAX_ARRAY_TASKS = 10_000

#: sbatch options accepted and ignored (Slurm allocator and I/O details that Windward decides itself).
IGNORED_SBATCH: frozenset[str] = frozenset({
    "account", "qos", "output", "error", "input", "mail-type", "mail-user", "ntasks", "ntasks-per-node",
    "cpus-per-task", "cpus-per-gpu", "mem", "mem-per-cpu", "mem-per-gpu", "exclusive", "requeue", "no-requeue",
    "export", "chdir", "open-mode", "comment", "constraint", "nice", "signal", "time-min", "hint", "distribution",
    "wckey", "reservation", "licenses", "exclude", "nodelist", "kill-on-invalid-dep", "parsable",
})  # fmt: skip

_SHORT = {"J": "job-name", "G": "gpus", "N": "nodes", "t": "time", "p": "partition", "d": "dependency",
          "a": "array", "b": "begin", "A": "account", "q": "qos", "o": "output", "e": "error", "n": "ntasks",
          "c": "cpus-per-task", "w": "nodelist", "x": "exclude", "C": "constraint", "D": "chdir"}  # fmt: skip
_FLAGS = {"exclusive", "requeue", "no-requeue", "parsable", "kill-on-invalid-dep"}  # take no value
_SBATCH = {"job-name", "gpus", "gres", "gpus-per-node", "nodes", "time", "partition", "dependency", "array",
           "begin", "deadline"}  # fmt: skip
_WINDWARD = {"pool-labels", "preemptible", "deadline-policy", "kind", "priority", "checkpoint-interval",
             "requires", "entrypoint"}  # fmt: skip

DependencyKind = Literal["after", "afterany", "afterok", "afternotok", "singleton"]
DeadlinePolicy = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class Dependency:
    """``kind`` on every job in ``job_ids`` (empty for ``singleton``)."""

    kind: DependencyKind
    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job of the script (one per array index)."""

    spec: JobSpec
    array_index: int | None = None
    dependencies: tuple[Dependency, ...] = ()
    begin: datetime | None = None
    deadline_policy: DeadlinePolicy = "soft"


@dataclass(frozen=True, slots=True)
class SlurmScript:
    jobs: tuple[SlurmJob, ...]
    body: str  # the script itself (what the job runs)
    ignored: tuple[str, ...] = field(default=())  # "line 4: --mem=64G (Slurm allocator option, ignored)"


# ------------------------------------------------------------------------------------------ value parsers


def parse_duration_s(value: str) -> float:
    """Slurm's ``--time`` forms in seconds; ValueError saying what is allowed."""
    v = value.strip()
    allowed = "allowed: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 90, 1:30:00, 2-12)"
    if v.upper() in ("UNLIMITED", "INFINITE"):
        raise ValueError(f"{value!r} has no end; Windward needs a run time to plan with ({allowed})")
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", v)
    if not m:
        raise ValueError(f"{value!r} is not a time limit; {allowed}")
    d, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if d is not None:  # D-H, D-H:M, D-H:M:S
        h, mi, s = (nums + [0, 0])[:3]
        total = int(d) * 86400 + h * 3600 + mi * 60 + s
    elif len(nums) == 1:
        total = nums[0] * 60
    elif len(nums) == 2:
        total = nums[0] * 60 + nums[1]
    else:
        total = nums[0] * 3600 + nums[1] * 60 + nums[2]
    if total <= 0:
        raise ValueError(f"{value!r} is zero; {allowed}")
    return float(total)


_UNITS_S = {"second": 1, "seconds": 1, "sec": 1, "s": 1, "minute": 60, "minutes": 60, "min": 60, "m": 60,
            "hour": 3600, "hours": 3600, "h": 3600, "day": 86400, "days": 86400, "d": 86400,
            "week": 604800, "weeks": 604800, "w": 604800}  # fmt: skip


def parse_time(value: str, now: datetime) -> datetime:
    """``--begin``/``--deadline`` forms (module docstring) as an aware UTC datetime."""
    v = value.strip()
    allowed = ("allowed: ISO 8601 (2026-12-04T10:00:00, UTC when no zone), HH:MM[:SS], now+N[minutes|hours|days|"
               "weeks], midnight, noon, tomorrow")  # fmt: skip
    now = now.astimezone(UTC)
    today = datetime.combine(now.date(), time(0), UTC)
    lv = v.lower()
    if lv == "now":
        return now
    if lv in ("midnight", "tomorrow"):
        return today + timedelta(days=1)
    if lv == "noon":
        t = today + timedelta(hours=12)
        return t if t > now else t + timedelta(days=1)
    m = re.fullmatch(r"now\+(\d+)\s*([a-z]*)", lv)
    if m:
        unit = m.group(2) or "seconds"
        if unit not in _UNITS_S:
            raise ValueError(f"{value!r}: unit {unit!r} is not one of seconds, minutes, hours, days, weeks")
        return now + timedelta(seconds=int(m.group(1)) * _UNITS_S[unit])
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", v)
    if m:
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if h > 23 or mi > 59 or s > 59:
            raise ValueError(f"{value!r} is not a time of day; {allowed}")
        t = today + timedelta(hours=h, minutes=mi, seconds=s)
        return t if t > now else t + timedelta(days=1)
    try:
        t = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith("Z") else v)
    except ValueError:
        raise ValueError(f"{value!r} is not a time; {allowed}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_array(value: str) -> list[int]:
    """``0-15``, ``1,3,5``, ``0-15:4``, with an optional ``%N`` limit (ignored: Windward plans all at once)."""
    spec = value.split("%", 1)[0].strip()
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise ValueError(
                f"{part!r} in {value!r} is not an index, A-B or A-B:STEP; allowed e.g. 0-15, 1,3,5, 0-15:4%2"
            )
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a or step < 1:
            raise ValueError(f"{part!r} in {value!r}: the range must not run backwards and the step must be >= 1")
        if len(out) + (b - a) // step + 1 > MAX_ARRAY_TASKS:
            raise ValueError(f"{value!r} has more than {MAX_ARRAY_TASKS} tasks")
        out += range(a, b + 1, step)
    dupes = sorted({i for i in out if out.count(i) > 1})
    if dupes:
        raise ValueError(f"{value!r} lists indices {dupes} twice")
    return sorted(out)


def parse_dependency(value: str) -> tuple[Dependency, ...]:
    if "?" in value:
        raise ValueError(f"{value!r}: '?' (any of) is not supported; allowed: conditions joined by ',' (all of)")
    out = []
    for part in value.split(","):
        p = part.strip()
        if p == "singleton":
            out.append(Dependency("singleton", ()))
            continue
        kind, _, rest = p.partition(":")
        if kind not in ("after", "afterany", "afterok", "afternotok"):
            raise ValueError(f"{p!r}: condition {kind!r} is not one of after, afterany, afterok, afternotok, singleton")
        ids = tuple(x for x in rest.split(":") if x)
        if not ids or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", x) for x in ids):
            raise ValueError(f"{p!r}: needs job ids after the condition, e.g. afterok:1234:1235 (no '+time')")
        out.append(Dependency(kind, ids))  # type: ignore[arg-type]
    return tuple(out)


def _count(value: str, what: str) -> tuple[str | None, int]:
    """``[TYPE:]N`` -> (TYPE, N)."""
    m = re.fullmatch(r"(?:([A-Za-z0-9_.-]+):)?(\d+)", value.strip())
    if not m or int(m.group(2)) <= 0:
        raise ValueError(f"{value!r} is not {what}; allowed: N or TYPE:N with N >= 1 (e.g. 8, h100:8)")
    return m.group(1), int(m.group(2))


def _gres(value: str) -> tuple[str | None, int]:
    gpu = [g for g in value.split(",") if g.strip().startswith("gpu")]
    other = [g for g in value.split(",") if not g.strip().startswith("gpu")]
    if other or len(gpu) != 1:
        raise ValueError(f"{value!r}: only one gpu resource is supported; allowed: gpu:N or gpu:TYPE:N")
    parts = gpu[0].strip().split(":")
    if parts[0] != "gpu" or len(parts) not in (2, 3):
        raise ValueError(f"{value!r} is not gpu:N or gpu:TYPE:N")
    return _count(":".join(parts[1:]), "a GPU count")


def _labels(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in value.split(","):
        k, eq, v = kv.partition("=")
        if not eq or not re.fullmatch(r"[a-z0-9_.-]+", k.strip()) or not v.strip():
            raise ValueError(f"{kv!r} in {value!r} is not key=value; allowed e.g. gpu=h100,jurisdiction=nl")
        out[k.strip()] = v.strip()
    return out


def _yes_no(value: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "true", "1", "on"):
        return True
    if v in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"{value!r} is not yes or no")


# ------------------------------------------------------------------------------------------ the script


def _options(words: list[str], prefix: str) -> list[tuple[str, str | None]]:
    """Shell words of one directive line -> (long option name, value or None)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("--"):
            name, eq, val = w[2:].partition("=")
            if not eq and name not in _FLAGS and i + 1 < len(words) and not words[i + 1].startswith("-"):
                val, i = words[i + 1], i + 1
            out.append((name, val if (eq or val) else None))
        elif w.startswith("-") and len(w) >= 2:
            short, val = w[1], w[2:]
            if short not in _SHORT:
                raise ValueError(f"option -{short} is not one {prefix} understands")
            if not val and i + 1 < len(words):
                val, i = words[i + 1], i + 1
            out.append((_SHORT[short], val or None))
        else:
            raise ValueError(f"{w!r} is not an option (options start with - or --)")
        i += 1
    return out


def parse_script(text: str, source: str = "script.sh", *, now: datetime) -> SlurmScript:
    """Read a batch script into job specs (one per array index). ``now`` resolves relative times."""
    name_default = Path(source).name or "job"
    opts: dict[str, tuple[int, str | None]] = {}
    wopts: dict[str, tuple[int, str | None]] = {}
    ignored: list[str] = []
    in_header, first_cmd = True, 0
    lines = text.splitlines()
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if n == 1 and line.startswith("#!"):
            continue
        m = re.match(r"#(SBATCH|WINDWARD)(\s|$)", line)
        if m and not in_header:
            raise InputError(f"{source}:{n}: #{m.group(1)} after the first command (line {first_cmd}); "
                             f"sbatch would ignore it: move it above the first command")  # fmt: skip
        if not line or (line.startswith("#") and not m):
            continue
        if not m:
            if in_header:
                in_header, first_cmd = False, n
            continue
        kind = m.group(1)
        try:
            words = shlex.split(line[len(kind) + 1 :], comments=True)
            parsed = _options(words, f"#{kind}")
        except ValueError as e:
            raise InputError(f"{source}:{n}: #{kind}: {e}") from e
        for name, val in parsed:
            if kind == "SBATCH":
                if name in _SBATCH:
                    opts[name] = (n, val)
                elif name in IGNORED_SBATCH:
                    ignored.append(f"line {n}: --{name}{'' if val is None else '=' + val} (Slurm option, ignored)")
                elif name in _WINDWARD:
                    raise InputError(f"{source}:{n}: --{name} is a #WINDWARD option; write it on a #WINDWARD line")
                else:
                    raise InputError(f"{source}:{n}: #SBATCH --{name}: not supported; supported: "
                                     f"{', '.join('--' + o for o in sorted(_SBATCH))} (and ignored: "
                                     f"{', '.join('--' + o for o in sorted(IGNORED_SBATCH))})")  # fmt: skip
            else:
                if name not in _WINDWARD:
                    raise InputError(f"{source}:{n}: #WINDWARD --{name}: not supported; supported: "
                                     f"{', '.join('--' + o for o in sorted(_WINDWARD))}")  # fmt: skip
                wopts[name] = (n, val)

    spec: dict[str, Any] = {"name": name_default}
    extra: dict[str, Any] = {}

    def take(table: dict[str, tuple[int, str | None]], name: str, fn: Callable[[str], Any]) -> Any:
        if name not in table:
            return None
        n, val = table[name]
        if val is None or val == "":
            raise InputError(f"{source}:{n}: --{name} needs a value")
        try:
            return fn(val)
        except ValueError as e:
            raise InputError(f"{source}:{n}: --{name}: {e}") from e

    def line_of(name: str) -> int:
        return (opts.get(name) or wopts.get(name) or (0, None))[0]

    if (v := take(opts, "job-name", str)) is not None:
        spec["name"] = v
    nodes = take(opts, "nodes", lambda s: _count(s, "a node count")[1]) or 1
    gpu_forms = [k for k in ("gpus", "gres", "gpus-per-node") if k in opts]
    if len(gpu_forms) > 1:
        raise InputError(f"{source}:{line_of(gpu_forms[1])}: --{gpu_forms[1]} and --{gpu_forms[0]} (line "
                         f"{line_of(gpu_forms[0])}) both set the GPUs; use one")  # fmt: skip
    gpu_type: str | None = None
    if "gpus" in opts:
        gpu_type, spec["gpus"] = take(opts, "gpus", lambda s: _count(s, "a GPU count"))
    elif "gres" in opts:
        gpu_type, per = take(opts, "gres", _gres)
        spec["gpus"] = per * nodes
    elif "gpus-per-node" in opts:
        gpu_type, per = take(opts, "gpus-per-node", lambda s: _count(s, "a GPU count"))
        spec["gpus"] = per * nodes
    else:
        raise InputError(f"{source}: no GPUs asked; add e.g. '#SBATCH --gpus=8' or '#SBATCH --gres=gpu:8'")
    if (v := take(opts, "time", parse_duration_s)) is not None:
        spec["duration_s"] = v
    else:
        raise InputError(f"{source}: no run time; add e.g. '#SBATCH --time=4:00:00' (Windward plans with it)")

    def one_pool(s: str) -> str:
        if "," in s:
            raise ValueError(f"{s!r} lists several partitions; allowed: one pool name (or #WINDWARD --pool-labels)")
        return s.strip()

    partition = take(opts, "partition", one_pool)
    labels = take(wopts, "pool-labels", _labels) or {}
    if gpu_type is not None:
        if labels.get("gpu", gpu_type) != gpu_type:
            raise InputError(f"{source}:{line_of('pool-labels')}: --pool-labels gpu={labels['gpu']} contradicts "
                             f"the GPU type {gpu_type!r} of line {line_of(gpu_forms[0])}")  # fmt: skip
        labels = {"gpu": gpu_type, **labels}
    if partition is not None and labels:
        raise InputError(f"{source}:{line_of('partition')}: --partition={partition} and pool labels "
                         f"{labels} both choose the pool; use one")  # fmt: skip
    if partition is not None:
        spec["pool"] = partition
    elif labels:
        spec["pool"] = ",".join(f"{k}={v}" for k, v in labels.items())
    if (v := take(opts, "deadline", lambda s: parse_time(s, now))) is not None:
        spec["deadline"] = v
    begin = take(opts, "begin", lambda s: parse_time(s, now))
    deps = take(opts, "dependency", parse_dependency) or ()
    indices = take(opts, "array", parse_array)

    if (v := take(wopts, "preemptible", _yes_no)) is not None:
        spec["preemptible"] = v
    if (v := take(wopts, "kind", str)) is not None:
        spec["kind"] = v
    if (v := take(wopts, "priority", int)) is not None:
        spec["priority"] = v
    if (v := take(wopts, "checkpoint-interval", parse_duration_s)) is not None:
        spec["checkpoint_interval_s"] = v
    if (v := take(wopts, "requires", _labels)) is not None:
        spec["requires"] = v
    if (v := take(wopts, "entrypoint", str)) is not None:
        spec["entrypoint"] = v

    def policy(s: str) -> str:
        if s not in ("hard", "soft"):
            raise ValueError(f"{s!r} is not hard or soft")
        return s

    extra["deadline_policy"] = take(wopts, "deadline-policy", policy) or "soft"
    if extra["deadline_policy"] == "hard" and "deadline" not in spec:
        raise InputError(f"{source}:{line_of('deadline-policy')}: --deadline-policy=hard needs '#SBATCH --deadline'")
    if begin is not None and "deadline" in spec and begin >= spec["deadline"]:
        raise InputError(f"{source}:{line_of('begin')}: --begin {begin.isoformat()} is not before --deadline "
                         f"{spec['deadline'].isoformat()}")  # fmt: skip

    jobs = []
    for idx in indices if indices is not None else [None]:
        s = dict(spec)
        if idx is not None:
            s["name"] = f"{spec['name']}_{idx}"
        job_spec = parse_model(JobSpec, s, source + ("" if idx is None else f" (array index {idx})"))
        jobs.append(SlurmJob(job_spec, idx, deps, begin, extra["deadline_policy"]))
    return SlurmScript(tuple(jobs), text, tuple(ignored))


def read_script(path: str | Path, *, now: datetime) -> SlurmScript:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"{p}: cannot read the script: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not a text file ({e.reason} at byte {e.start})") from e
    return parse_script(text, str(p), now=now)


def job_specs(script: SlurmScript, path: str | Path, workdir: str | Path) -> list[JobSpec]:
    """The job specs ``windward submit script.sh`` sends, one per array index: the script's spec with its
    dependencies and ``begin`` (held by the server's control loop), the working directory (sbatch's default:
    where it is submitted from) and, without ``#WINDWARD --entrypoint``, ``bash <the script>`` as the
    command (the script must be readable where the job runs, as with sbatch on a shared file system). An
    array task gets ``SLURM_ARRAY_TASK_ID`` (and ``WINDWARD_ARRAY_TASK_ID``) in its environment.
    ``singleton`` is refused: the server has no per-name dependency."""
    script_path = Path(path).resolve()
    out = []
    for sj in script.jobs:
        deps = []
        for d in sj.dependencies:
            if d.kind == "singleton":
                raise InputError(f"{path}: --dependency=singleton: not supported by the Windward server; allowed: "
                                 "after, afterany, afterok, afternotok with job ids")  # fmt: skip
            deps += [{"kind": d.kind, "job_id": j} for j in d.job_ids]
        data = sj.spec.model_dump(mode="json", exclude_none=True)
        if deps:
            data["dependencies"] = deps
        if sj.begin is not None:
            data["begin"] = sj.begin.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if sj.deadline_policy == "hard":
            data["deadline_policy"] = "hard"
        data.setdefault("entrypoint", f"bash {shlex.quote(str(script_path))}")
        data.setdefault("workdir", str(Path(workdir).resolve()))
        if sj.array_index is not None:
            data["env"] = {**data.get("env", {}), "SLURM_ARRAY_TASK_ID": str(sj.array_index),
                           "WINDWARD_ARRAY_TASK_ID": str(sj.array_index)}  # fmt: skip
        src = f"{path}" + ("" if sj.array_index is None else f" (array index {sj.array_index})")
        out.append(parse_model(JobSpec, data, src))
    return out
