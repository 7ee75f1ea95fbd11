"""The canonical internal job value (DESIGN section 7, jobs CSV), and pool eligibility.

A :class:`Job` is what the planner, the simulator and both executors see: frozen, units in names,
times in seconds from the simulation or plan start. An inference *service* whose demand varies over
time is represented as a chain of inference jobs, one per slot, each with the GPUs that slot needs:
the jobs CSV contract then holds inference traces unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

from scheduler.errors import InputError
from scheduler.models import CLEARANCE_LEVELS, Pool, Site


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    tenant: str
    kind: str  # "training" | "batch" | "inference"
    submit_s: float
    gpus: int
    duration_s: float  # run time at full power
    deadline_s: float | None = None
    preemptible: bool = True
    pool: str | None = None  # pool name or label selector "k=v,k=v"; None: any pool
    priority: int = 0
    checkpoint_interval_s: float = 1800.0
    jurisdiction: str | None = None  # hard requirement on the pool's `jurisdiction` label
    clearance: str | None = None  # hard requirement: pool clearance level >= this
    entrypoint: str | None = None
    # Pools the job's tenant may use at all (sovereignty: tenant clearance and jurisdictions, set by the
    # control plane); empty: no tenant restriction.
    pools_allowed: tuple[str, ...] = ()
    # how it runs (JobSpec env / args / workdir: a Ray runtime_env and the command's arguments and working
    # directory under the Ray executor) and when it may start (held by the control loop's gate,
    # scheduler.reasons.gate): dependencies (kind, job_id), not before begin_s (seconds since the epoch)
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    workdir: str | None = None
    dependencies: tuple[tuple[str, str], ...] = ()
    begin_s: float | None = None
    deadline_hard: bool = False  # JobSpec deadline_policy "hard": failed once it cannot finish by deadline_s

    @property
    def must_run(self) -> bool:
        """Inference is served when it is demanded: it is never deferred."""
        return self.kind == "inference"


def _fast_init() -> Callable[..., None]:
    """``Job.__init__`` as the dataclass writes it (the same signature, defaults and fields), storing each field
    through its slot instead of ``object.__setattr__`` by name: half the CPU per Job, and a restart builds one
    per queued job (30,000: 0.11 -> 0.06 s). Generated from the fields, so it cannot drift from them."""
    params, body, ns = [], [], {}
    for f in fields(Job):
        if f.default_factory is not MISSING:  # pragma: no cover - guards a future field
            raise TypeError(f"Job.{f.name}: a default factory needs the dataclass's own __init__")
        if f.default is MISSING:
            params.append(f.name)
        else:
            ns[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        ns[f"_s_{f.name}"] = getattr(Job, f.name).__set__
        body.append(f"    _s_{f.name}(self, {f.name})")
    src = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(src, ns)  # noqa: S102 - source built above from the dataclass's own field names
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = "Job.__init__"
    init.__doc__ = Job.__init__.__doc__
    return init


#: the dataclass's own __init__ (tests compare the two)
_dataclass_init = Job.__init__
setattr(Job, "__init__", _fast_init())  # noqa: B010 - mypy refuses a plain assignment to a method

#: What a stored spec without env, args, workdir, dependencies or begin has for them (canonical JSON,
#: scheduler.state._canonical): such a spec is not parsed again for them (most specs).
_NO_EXTRAS = ('"args":null', '"begin":null', '"deadline_policy":null', '"dependencies":null', '"env":null',
              '"workdir":null')
#: Some key of _NO_EXTRAS holding a value other than null, anywhere in a spec: one scan of the string in C
#: (0.08 -> 0.03 s over 30,000 specs at a restart) where a find per key took twelve calls per spec.
_HAS_EXTRAS = re.compile("(?:" + "|".join(re.escape(k[: -len("null")]) for k in _NO_EXTRAS) + ")(?!null)")


def job_extras(spec_json: str, epoch_unix_s: float) -> dict[str, Any]:
    """The :class:`Job` fields a stored job spec (its canonical JSON) carries beyond the table's columns:
    ``env``, ``args``, ``workdir``, ``dependencies``, ``begin_s`` and ``deadline_hard``; empty when it has none."""
    # a spec stored before a field existed lacks its key: parse only where some key holds a value (a restart
    # reads every active row through here)
    if _HAS_EXTRAS.search(spec_json) is None:
        return {}
    import json
    from datetime import datetime

    spec = json.loads(spec_json)
    out: dict[str, Any] = {}
    if spec.get("env"):
        out["env"] = tuple(sorted((str(k), str(v)) for k, v in spec["env"].items()))
    if spec.get("args"):
        out["args"] = tuple(str(a) for a in spec["args"])
    if spec.get("workdir"):
        out["workdir"] = str(spec["workdir"])
    if spec.get("dependencies"):
        out["dependencies"] = tuple((str(d["kind"]), str(d["job_id"])) for d in spec["dependencies"])
    if spec.get("deadline_policy") == "hard":
        out["deadline_hard"] = True
    if spec.get("begin"):
        out["begin_s"] = datetime.fromisoformat(str(spec["begin"]).replace("Z", "+00:00")).timestamp() - epoch_unix_s
    return out


def parse_selector(selector: str) -> dict[str, str]:
    """``"gpu=h100,jurisdiction=nl"`` -> ``{"gpu": "h100", "jurisdiction": "nl"}``."""
    out: dict[str, str] = {}
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise InputError(f"pool selector {selector!r}: {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()  # (a key given twice: the last; the edges refuse it, selector_error)
    return out


def pool_matches(pool: Pool, job: Job) -> bool:
    """Does ``pool`` satisfy the job's pool field and its jurisdiction / clearance requirements?"""
    if job.pools_allowed and pool.name not in job.pools_allowed:
        return False
    if job.pool:
        if "=" in job.pool:
            sel = parse_selector(job.pool)
            if any(pool.labels.get(k) != v for k, v in sel.items()):
                return False
        elif job.pool != pool.name:
            return False
    if job.jurisdiction is not None and pool.labels.get("jurisdiction") != job.jurisdiction:
        return False
    if job.clearance is not None:
        have = pool.labels.get("clearance", "public")
        if CLEARANCE_LEVELS.index(have) < CLEARANCE_LEVELS.index(job.clearance):
            return False
    return True


def eligibility_key(job: Job) -> tuple[Any, ...]:
    """What :func:`pool_matches` and the pool-size check read of a job: jobs with equal keys have the same
    eligible pools on any site (callers look eligibility up once per key)."""
    return (job.pool, job.jurisdiction, job.clearance, job.pools_allowed, job.gpus)


def eligible_pools(site: Site, job: Job) -> list[int]:
    """Indices of the site's pools that may hold ``job`` (labels) and are large enough for it."""
    return [i for i, p in enumerate(site.pools) if pool_matches(p, job) and p.gpus >= job.gpus]


def site_labels(site: Site) -> dict[str, list[str]]:
    """Each label key of the site's pools with the values its pools carry (sorted): what a pool selector may
    name on this site."""
    out: dict[str, set[str]] = {}
    for p in site.pools:
        for k, v in p.labels.items():
            out.setdefault(k, set()).add(v)
    return {k: sorted(v) for k, v in sorted(out.items())}


def allowed_pool_text(site: Site) -> str:
    """What a job's ``pool`` field may say on ``site``: a pool name or ``key=value`` of its pools' labels."""
    labels = "; ".join(f"{k}={'|'.join(vs)}" for k, vs in site_labels(site).items()) or "(its pools have none)"
    return (f"allowed: a pool name ({', '.join(p.name for p in site.pools)}) or a selector key=value,... of "
            f"this site's labels: {labels}")


def selector_error(site: Site, selector: str) -> str | None:
    """Why the pool selector ``selector`` is no selector of ``site``'s labels (a part that is not key=value, an
    empty key or value, a key given twice, a key no pool has, a value no pool has for that key), with what is
    allowed (:func:`allowed_pool_text`); None when each of its key=value pairs is a label some pool carries (the
    pairs together may still match no pool: :func:`fit_error` says so). The edges' check: :func:`pool_matches`
    stays lenient, so a job stored before a rule here was added still plans."""
    labels = site_labels(site)
    try:
        sel = parse_selector(selector)
    except InputError as e:
        return f"{e}; {allowed_pool_text(site)}"
    keys = [part.split("=", 1)[0].strip() for part in selector.split(",") if part.strip()]
    for k, v in sel.items():
        if keys.count(k) > 1:  # (parse_selector keeps the last: "jurisdiction=eu,jurisdiction=nl" would read nl)
            what = f"the label {k!r} is given twice"
        elif not k or not v:
            what = "an empty key" if not k else f"an empty value for {k!r}"
        elif k not in labels:
            what = f"no pool has the label {k!r}"
        elif v not in labels[k]:
            what = f"no pool has {k}={v}"
        else:
            continue
        return f"pool selector {selector!r}: {what}; {allowed_pool_text(site)}"
    return None


def _asked(job: Job) -> str:
    """The fields of ``job`` that choose its pools, as ``pool='gpu=h100', clearance='secret'``."""
    fields_ = (("pool", job.pool), ("jurisdiction", job.jurisdiction), ("clearance", job.clearance))
    return ", ".join(f"{k}={v!r}" for k, v in fields_ if v is not None)


def fit_error(site: Site, job: Job) -> str | None:
    """Why no pool of ``site`` can ever hold ``job``, naming the field and what is allowed (None: one can):
    a selector that is no selector of the site's labels (:func:`selector_error`: an empty key or value, a label
    given twice, a label or value no pool has; refused even where a pool matches), an unknown pool name, no pool that
    matches its pool field and requirements, or a job wider than the largest pool that does (named, with its
    GPUs: :func:`eligible_pools` drops pools too small, so "no eligible pool" would hide that)."""
    if job.pool and "=" in job.pool and (bad := selector_error(site, job.pool)) is not None:
        return f"field pool: {bad}"  # (before the pools: a selector may match one and still be wrong)
    if eligible_pools(site, job):
        return None
    if job.pool and "=" not in job.pool and job.pool not in {p.name for p in site.pools}:
        return f"unknown pool {job.pool!r}; allowed: {sorted(p.name for p in site.pools)}"
    matching = [p for p in site.pools if pool_matches(p, job)]
    if matching:
        big = max(matching, key=lambda p: p.gpus)
        which = f"the largest pool that matches {_asked(job)}" if _asked(job) else "the largest pool it may use"
        return (f"field gpus: needs {job.gpus} GPUs, but {which} is {big.name} with {big.gpus} GPUs; allowed: gpus "
                f"<= {big.gpus}, or a pool field that matches a larger pool")
    pools = ", ".join(f"{p.name} ({','.join(f'{k}={v}' for k, v in p.labels.items()) or 'no labels'})"
                      for p in site.pools if not job.pools_allowed or p.name in job.pools_allowed)
    return f"no pool matches {_asked(job) or 'it'}; the pools it may use: {pools or 'none'}"


def check_jobs_fit(site: Site, jobs: Sequence[Job], source: str) -> None:
    """Raise InputError for the first job that no pool of ``site`` can ever hold (:func:`fit_error` says why)."""
    seen: set[tuple[Any, ...]] = set()
    for job in jobs:
        key = eligibility_key(job)
        if key in seen:  # (a key that fits once fits every time)
            continue
        why = fit_error(site, job)
        if why is not None:
            raise InputError(f"{source}: job {job.job_id!r}: {why}")
        seen.add(key)
