"""Job traces: the canonical jobs CSV, adapters for the real ITP and Azure LLM traces, the embedded synthetic
workload, and trace amplification.

Every function returns :class:`scheduler.jobs.Job` values with ``submit_s`` in seconds from the simulation
start, sorted by (submit_s, job_id).

Assignment rule (what the traces do not say)
--------------------------------------------
ITP and synthetic training jobs carry only a submission time, a duration and a GPU count. The rest is
assigned per job from a seeded hash of ``(seed, job_id, field)`` -- so a job gets the same assignment
whatever slice of the trace it is read in -- by :data:`ASSIGNMENT_RULE`:

* tenant: from the fixed mix :data:`TENANT_MIX` (science 35 %, companies 35 %, education 15 %,
  defence 15 %: the training tenants of scheduler/sites/demo-tenants.yaml); priority = that tenant's
  priority there (defence 3, science 2, education 2, companies 0);
* pool: jobs of ``defence`` require the sovereign pool (selector
  ``jurisdiction=nl,clearance=secret``) when the site has such a pool and the job fits in it; every other
  job may run in any pool;
* deadline: 30 % of jobs get ``deadline_s = submit_s + slack * duration_s`` with slack uniform in [1.5, 4];
* preemptible: 90 % of jobs (checkpointing every 30 min); the others run unbroken once started;
* kind ``training``.

A GPU count larger than every eligible pool is an InputError (file, row, field) unless ``clip=True``, which
lowers it to the largest eligible pool and logs how many jobs were clipped.

Inference service (Azure LLM trace)
-----------------------------------
Requests become GPU demand per slot through a stated serving throughput: a GPU serving a ~70B-parameter
model (tensor parallel on H100-class nodes, continuous batching) produces :data:`TOKENS_PER_S_PER_GPU`
generated tokens per second, and a prompt (context) token costs :data:`CONTEXT_TOKEN_COST` of a generated
one (prefill is batched and compute-bound). Demand is provisioned with :data:`INFERENCE_HEADROOM` (30 %
above the mean rate, for bursts and latency targets) and rounded up to whole GPUs, at least 1.
The trace covers one hour (2023-11-16 18:15-19:15 UTC). It is extended over ``days`` by block bootstrap:
each slot takes the token rate of a seeded, randomly placed ``slot_s``-long window of that hour (windows
wrap around the hour), times a diurnal shape :func:`inference_diurnal` (a cosine with +-30 % swing, peak at
13:00 UTC, normalised to 1 at the trace's own hour). Then the whole service is scaled (the trace's traffic
times a factor F, reported) so that its mean demand is ``share_of_site`` of the site's GPUs (default 10 %).
The service is one inference job per slot (``duration_s = slot_s``, not preemptible, tenant
``public-services``), so the canonical CSV holds it unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scheduler.errors import InputError
from scheduler.jobs import Job, check_jobs_fit, pool_matches
from scheduler.models import JobRow, Site, decode_utf8, parse_model, refuse_repeated_columns
from scheduler.paths import azure_llm_csv, itp_trace_csv

log = logging.getLogger(__name__)

WORKLOAD_MODEL_PATH = Path(__file__).parent / "data" / "workload_model.json"
EMBEDDED_LABEL = "synthetic workload, calibrated to ITP traces + Azure LLM inference 2023"

#: (tenant, share of training jobs, priority): the tenants and priorities of scheduler/sites/demo-tenants.yaml.
#: ``public-services`` (priority 4) owns the inference service.
TENANT_MIX: tuple[tuple[str, float, int], ...] = (
    ("science", 0.35, 2),
    ("companies", 0.35, 0),
    ("education", 0.15, 2),
    ("defence", 0.15, 3),
)
SOVEREIGN_TENANT = "defence"
SOVEREIGN_SELECTOR = "jurisdiction=nl,clearance=secret"
DEADLINE_SHARE = 0.30
DEADLINE_SLACK = (1.5, 4.0)
PREEMPTIBLE_SHARE = 0.90

#: Generated tokens per second per GPU for a ~70B model class on H100-class GPUs (order of magnitude of
#: public vLLM / TensorRT-LLM serving benchmarks at large batch: a few thousand tokens/s per 8-GPU node).
TOKENS_PER_S_PER_GPU = 400.0
#: Cost of one prompt token relative to one generated token.
CONTEXT_TOKEN_COST = 0.1
#: Provisioned capacity over the mean token rate.
INFERENCE_HEADROOM = 1.3
INFERENCE_TENANT = "public-services"
INFERENCE_PRIORITY = 4
#: Diurnal swing of inference traffic (relative amplitude) and its peak hour (UTC).
INFERENCE_DIURNAL_AMPLITUDE = 0.30
INFERENCE_PEAK_HOUR_UTC = 13.0
#: Offered training load of the embedded workload, as a share of the site's GPU-hours.
EMBEDDED_TRAINING_LOAD = 0.5
#: Seeded submit-time jitter of the copies that :func:`amplify` makes.
AMPLIFY_JITTER_S = 3600.0

ASSIGNMENT_RULE = (
    "tenant by seeded hash of job_id into science 35% / companies 35% / education 15% / defence 15% "
    "(priority 2/0/2/3); defence jobs require the sovereign pool (jurisdiction=nl,clearance=secret) "
    "when the site has one and the job fits it; 30% of jobs get deadline = submit + U(1.5,4) x duration; "
    "90% preemptible; GPU counts above the largest eligible pool are clipped to it (clip=True) or refused; "
    f"inference: {TOKENS_PER_S_PER_GPU:g} generated tokens/s per GPU, a context token costs "
    f"{CONTEXT_TOKEN_COST:g} of one, {INFERENCE_HEADROOM:g}x headroom, the one-hour Azure trace block-"
    f"bootstrapped over the days with a +-{INFERENCE_DIURNAL_AMPLITUDE:.0%} diurnal cosine peaking "
    f"{INFERENCE_PEAK_HOUR_UTC:g}:00 UTC, scaled to a share of the site's GPUs"
)

CANONICAL_COLUMNS: tuple[str, ...] = (
    "job_id",
    "tenant",
    "kind",
    "submit_s",
    "gpus",
    "duration_s",
    "deadline_s",
    "preemptible",
    "pool",
    "priority",
)
#: Optional extension columns of the jobs CSV (read when present, written when any job needs them).
EXTENSION_COLUMNS: tuple[str, ...] = ("checkpoint_interval_s", "jurisdiction", "clearance", "entrypoint")
_REQUIRED = ("job_id", "submit_s", "gpus", "duration_s")
_ITP_COLUMNS = ("job_id", "submission_time", "duration", "num_gpu")


# ------------------------------------------------------------------------------------------ helpers


def _u(seed: int, job_id: str, field: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, job_id, field)."""
    h = hashlib.blake2b(f"{seed}|{job_id}|{field}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _sorted(jobs: Iterable[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.submit_s, j.job_id))


class _Utf8Rows:
    """``csv.reader`` over a file opened as strict UTF-8: bytes that are not UTF-8 raise InputError naming the
    file and the line (not a UnicodeDecodeError traceback). ``line_num`` as csv.reader's."""

    def __init__(self, f: Any, path: Path, what: str) -> None:
        self._reader = csv.reader(f)
        self._path = path
        self._what = what

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> _Utf8Rows:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self._reader)
        except UnicodeDecodeError as e:
            # the text layer decodes ahead in blocks, so csv's line_num is where the block began (a bad byte on
            # line 2 of a small file said "near line 1"): the bytes again, for the byte offset and its line
            try:
                data = self._path.read_bytes()
            except OSError:
                data = None
            if data is not None:
                decode_utf8(data, self._path)  # raises InputError naming the byte and its line
            raise InputError(
                f"{self._path}: not UTF-8 text near line {self._reader.line_num + 1} ({e.reason}: "
                f"{e.object[e.start : e.start + 1]!r}); save the {self._what} as UTF-8"
            ) from None


def _open_csv(path: Path, what: str) -> tuple[Any, list[str]]:
    try:
        f = path.open(newline="", encoding="utf-8-sig", errors="strict")
    except OSError as e:
        raise InputError(f"{path}: cannot read {what}: {e.strerror}") from e
    reader = _Utf8Rows(f, path, what)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        f.close()
        raise InputError(f"{path}: empty file; a {what} needs a header row") from None
    except InputError:
        f.close()
        raise
    return (f, reader), header


def _one_line(path: Path, row: list[str], header: list[str], line: int, end: int) -> None:
    """Refuse a row whose quoted cell holds a line break (rows ``line``..``end`` read as one): an unmatched
    quote swallows the rows after it into one cell, and the error said only that a later field was empty."""
    broken = next((header[i] if i < len(header) else f"cell {i + 1}" for i, c in enumerate(row)
                   if "\n" in c or "\r" in c), None)
    if broken is not None:
        raise InputError(f"{path}: row {line}, field {broken}: a line break inside a quoted cell (rows {line}-{end} "
                         f"read as one: a quote with no closing quote?); allowed: one line per row")


def offered_gpu_hours(jobs: Iterable[Job]) -> float:
    """Total GPU-hours the jobs ask for at full power."""
    return sum(j.gpus * j.duration_s for j in jobs) / 3600.0


def _sovereign_max_gpus(site: Site) -> int:
    """GPUs of the largest sovereign pool (0 when the site has none)."""
    probe = Job("probe", "", "training", 0.0, 1, 1.0, pool=SOVEREIGN_SELECTOR)
    return max((p.gpus for p in site.pools if pool_matches(p, probe)), default=0)


def _assign(
    site: Site,
    job_id: str,
    submit_s: float,
    gpus: int,
    duration_s: float,
    seed: int,
    kind: str = "training",
    *,
    sovereign_max_gpus: int | None = None,
) -> Job:
    """The documented assignment rule (module docstring) for one trace job. ``sovereign_max_gpus``
    (from :func:`_sovereign_max_gpus`) saves recomputing it per job."""
    h = hashlib.blake2b(f"{seed}|{job_id}".encode(), digest_size=16).digest()
    u_tenant, u_deadline, u_slack, u_preempt = (
        int.from_bytes(h[i : i + 4], "big") / 2.0**32 for i in range(0, 16, 4)
    )
    acc = 0.0
    tenant, prio = TENANT_MIX[-1][0], TENANT_MIX[-1][2]
    for name, share, p in TENANT_MIX:
        acc += share
        if u_tenant < acc:
            tenant, prio = name, p
            break
    if sovereign_max_gpus is None:
        sovereign_max_gpus = _sovereign_max_gpus(site)
    pool = SOVEREIGN_SELECTOR if tenant == SOVEREIGN_TENANT and 0 < gpus <= sovereign_max_gpus else None
    deadline = None
    if u_deadline < DEADLINE_SHARE:
        lo, hi = DEADLINE_SLACK
        deadline = submit_s + (lo + (hi - lo) * u_slack) * duration_s
    return Job(
        job_id=job_id,
        tenant=tenant,
        kind=kind,
        submit_s=float(submit_s),
        gpus=int(gpus),
        duration_s=float(duration_s),
        deadline_s=deadline,
        preemptible=u_preempt < PREEMPTIBLE_SHARE,
        pool=pool,
        priority=prio,
    )


def _largest_eligible(site: Site, job: Job) -> int:
    sizes = [p.gpus for p in site.pools if pool_matches(p, job)]
    return max(sizes) if sizes else 0


# ------------------------------------------------------------------------------------ canonical CSV


#: Columns whose empty cell is a gap filled with JobRow's default (an empty deadline_s, pool, jurisdiction,
#: clearance or entrypoint means "none" by the contract, and is not a gap).
FILLED_COLUMNS: tuple[str, ...] = ("tenant", "kind", "preemptible", "priority")


def read_jobs_csv(path: str | Path, *, strict: bool = False) -> list[Job]:
    """Read the canonical jobs CSV (DESIGN section 7). Each row is validated with :class:`JobRow`; errors name
    the file, the row (file line number) and the field. Required columns: job_id, submit_s, gpus,
    duration_s; the other canonical columns default as in JobRow; empty ``deadline_s`` / ``pool`` cells mean
    none; extension columns (checkpoint_interval_s, jurisdiction, clearance, entrypoint) are read when present, each
    by the job spec's rule for the same field (JobRow).
    Duplicate job ids are refused, and so is a deadline before its submission. Bytes that are not UTF-8 are refused naming the file.

    An empty cell in a present column of :data:`FILLED_COLUMNS` is a gap: it takes JobRow's default and the
    gaps are logged as one WARNING with their count per column (the CLI shows it on stderr); ``strict``
    refuses the first one (InputError naming the row and the column)."""
    p = Path(path)
    filled: dict[str, int] = {}
    (f, reader), header = _open_csv(p, "jobs CSV")
    with f:
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise InputError(
                f"{p}: missing column(s) {missing}; the jobs CSV needs {list(CANONICAL_COLUMNS)} "
                f"(required: {list(_REQUIRED)}); header has {header}"
            )
        refuse_repeated_columns(p, header)
        cols = {c: header.index(c) for c in (*CANONICAL_COLUMNS, *EXTENSION_COLUMNS) if c in header}
        unread = [c for c in header if c and c not in cols]
        if unread:  # (allowed: a trace's own columns ride along; said, because a misspelt one reads as absent)
            log.warning("%s: column(s) %s not read; the jobs CSV reads %s", p, unread,
                        ", ".join((*CANONICAL_COLUMNS, *EXTENSION_COLUMNS)))  # fmt: skip
        jobs: list[Job] = []
        seen: dict[str, int] = {}
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # (the row's first line; a quoted cell may span several)
            if not row or all(not c.strip() for c in row):
                continue
            _one_line(p, row, header, line, end)
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                raise InputError(  # (cells no column names: an unquoted selector "gpu=h100,jurisdiction=nl" shifts
                    # every cell after it, and the row would be read with the wrong values)
                    f"{p}: row {line}: {len(row)} cells, but the header has {len(header)} columns; allowed: at most "
                    f"one cell per column (quote a pool selector with commas: \"gpu=h100,jurisdiction=nl\")"
                )
            cell = {c: (row[i].strip() if i < len(row) else "") for c, i in cols.items()}
            data: dict[str, Any] = {}
            for c in (*CANONICAL_COLUMNS, *EXTENSION_COLUMNS):
                if c in cell and cell[c] != "":
                    data[c] = cell[c]
                elif c in cell and c in FILLED_COLUMNS:
                    if strict:
                        raise InputError(
                            f"{p}: row {line}, field {c}: empty (strict: gaps are not filled); allowed: a value, "
                            f"or no --strict to take the default {JobRow.model_fields[c].default!r}"
                        )
                    filled[c] = filled.get(c, 0) + 1
            for c in _REQUIRED:
                if c not in data:
                    raise InputError(f"{p}: row {line}, field {c}: empty; a value is required")
            jr: JobRow = parse_model(JobRow, data, f"{p}: row {line}")
            if jr.job_id in seen:
                raise InputError(
                    f"{p}: row {line}, field job_id: {jr.job_id!r} repeats row {seen[jr.job_id]}; job ids must be unique"
                )
            seen[jr.job_id] = line
            if jr.deadline_s is not None and jr.deadline_s < jr.submit_s:
                raise InputError(
                    f"{p}: row {line}, field deadline_s: {jr.deadline_s:g} is before submit_s {jr.submit_s:g}; "
                    f"allowed: empty (no deadline) or >= submit_s"
                )
            jobs.append(
                Job(
                    job_id=jr.job_id,
                    tenant=jr.tenant,
                    kind=jr.kind,
                    submit_s=jr.submit_s,
                    gpus=jr.gpus,
                    duration_s=jr.duration_s,
                    deadline_s=jr.deadline_s,
                    preemptible=jr.preemptible,
                    pool=jr.pool or None,
                    priority=jr.priority,
                    checkpoint_interval_s=jr.checkpoint_interval_s,
                    jurisdiction=jr.jurisdiction,
                    clearance=jr.clearance,
                    entrypoint=jr.entrypoint,
                )
            )
    if filled:
        log.warning(
            "%s: %d empty cell(s) filled with defaults: %s", p, sum(filled.values()),
            ", ".join(f"{c} x{n} (-> {JobRow.model_fields[c].default!r})" for c, n in filled.items()),
        )  # fmt: skip
    return _sorted(jobs)


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def write_jobs_csv(path: str | Path, jobs: Sequence[Job]) -> None:
    """Write the canonical jobs CSV; extension columns only when some job needs them. Round-trips with
    :func:`read_jobs_csv`."""
    ext = [
        c
        for c in EXTENSION_COLUMNS
        if any(getattr(j, c) != (1800.0 if c == "checkpoint_interval_s" else None) for j in jobs)
    ]
    p = Path(path)
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*CANONICAL_COLUMNS, *ext])
        for j in jobs:
            row = [
                j.job_id,
                j.tenant,
                j.kind,
                _num(j.submit_s),
                str(j.gpus),
                _num(j.duration_s),
                "" if j.deadline_s is None else _num(j.deadline_s),
                "true" if j.preemptible else "false",
                j.pool or "",
                str(j.priority),
            ]
            for c in ext:
                v = getattr(j, c)
                row.append("" if v is None else (_num(v) if isinstance(v, float) else str(v)))
            w.writerow(row)


# --------------------------------------------------------------------------------------------- ITP


def itp_jobs(
    path: str | Path,
    site: Site,
    start_s: float = 0.0,
    days: float | None = None,
    seed: int = 0,
    *,
    clip: bool = False,
) -> list[Job]:
    """Jobs of an ITP trace (``job_id,submission_time,duration,num_gpu``) submitted in
    ``[start_s, start_s + days * 86400)``, with ``submit_s`` relative to ``start_s``; tenants, pools,
    deadlines, preemptibility and priority by :data:`ASSIGNMENT_RULE`."""
    p = Path(path)
    end_s = math.inf if days is None else start_s + days * 86400.0
    (f, reader), header = _open_csv(p, "ITP trace")
    jobs: list[Job] = []
    n_clipped = 0
    seen: dict[str, int] = {}
    with f:
        missing = [c for c in _ITP_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{p}: missing column(s) {missing}; an ITP trace needs {list(_ITP_COLUMNS)}; header has {header}"
            )
        ix = {c: header.index(c) for c in _ITP_COLUMNS}
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # (the row's first line; a quoted cell may span several)
            if not row or all(not c.strip() for c in row):
                continue
            _one_line(p, row, header, line, end)
            vals: dict[str, float] = {}
            for c in ("submission_time", "duration", "num_gpu"):
                cell = row[ix[c]].strip() if ix[c] < len(row) else ""
                try:
                    vals[c] = float(cell)
                except ValueError:
                    raise InputError(f"{p}: row {line}, field {c}: {cell!r} is not a number") from None
            job_id = row[ix["job_id"]].strip()
            if not job_id:
                raise InputError(f"{p}: row {line}, field job_id: empty; a job id is required")
            if job_id in seen:
                raise InputError(
                    f"{p}: row {line}, field job_id: {job_id!r} repeats row {seen[job_id]}; job ids must be unique"
                )
            seen[job_id] = line
            g = vals["num_gpu"]
            if not (g >= 1 and g.is_integer()):
                raise InputError(
                    f"{p}: row {line}, field num_gpu: {row[ix['num_gpu']]!r}; allowed: a whole number >= 1"
                )
            if not vals["duration"] > 0:
                raise InputError(
                    f"{p}: row {line}, field duration: {vals['duration']:g}; allowed: seconds > 0"
                )
            if not vals["submission_time"] >= 0:
                raise InputError(
                    f"{p}: row {line}, field submission_time: {vals['submission_time']:g}; allowed: seconds >= 0"
                )
            sub = vals["submission_time"]
            if not (start_s <= sub < end_s):
                continue
            job = _assign(site, job_id, sub - start_s, int(g), vals["duration"], seed)
            biggest = _largest_eligible(site, job)
            if job.gpus > biggest:
                if not clip:
                    raise InputError(
                        f"{p}: row {line}, field num_gpu: {int(g)} GPUs is more than the largest eligible pool of "
                        f"site {site.name!r} ({biggest} GPUs); allowed: at most {biggest} (or pass clip=True)"
                    )
                n_clipped += 1
                job = replace(job, gpus=biggest)
            jobs.append(job)
    if n_clipped:
        log.warning("%s: %d job(s) clipped to the largest eligible pool of site %s", p, n_clipped, site.name)
    return _sorted(jobs)


# ------------------------------------------------------------------------------------------- Azure


def inference_diurnal(hour_utc: ArrayLike) -> NDArray[np.float64]:
    """Relative inference traffic by UTC hour: ``1 + A cos(2 pi (h - peak) / 24)`` (mean 1 over a day)."""
    h = np.asarray(hour_utc, dtype=np.float64)
    return 1.0 + INFERENCE_DIURNAL_AMPLITUDE * np.cos(2.0 * np.pi * (h - INFERENCE_PEAK_HOUR_UTC) / 24.0)


def _read_azure(path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64], datetime]:
    """(seconds since the first request, weighted tokens per request, first request time)."""
    (f, reader), header = _open_csv(path, "Azure LLM trace")
    need = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
    with f:
        missing = [c for c in need if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; the Azure LLM trace needs {list(need)}")
        it, ic, ig = (header.index(c) for c in need)
        ts: list[str] = []
        tok: list[float] = []
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            try:
                ctx = int(row[ic])
                gen = int(row[ig])
            except (ValueError, IndexError):
                raise InputError(
                    f"{path}: row {line}, fields ContextTokens/GeneratedTokens: {row!r}; allowed: whole numbers >= 0"
                ) from None
            if ctx < 0 or gen < 0:
                raise InputError(f"{path}: row {line}: negative token count; allowed: >= 0")
            ts.append(row[it].strip().replace(" ", "T"))
            tok.append(gen + CONTEXT_TOKEN_COST * ctx)
    try:
        t = np.array(ts, dtype="datetime64[ns]")
    except ValueError as e:
        raise InputError(f"{path}: field TIMESTAMP: {e}; allowed: 'YYYY-MM-DD HH:MM:SS.fffffff' (UTC)") from e
    if t.size < 2:
        raise InputError(f"{path}: needs at least two requests, found {t.size}")
    if (np.diff(t) < np.timedelta64(0, "ns")).any():
        i = int(np.flatnonzero(np.diff(t) < np.timedelta64(0, "ns"))[0]) + 2
        raise InputError(f"{path}: row {i}, field TIMESTAMP: goes back in time; timestamps must not decrease")
    sec = (t - t[0]).astype(np.int64) / 1e9
    first = datetime.fromtimestamp(int(t[0].astype("datetime64[s]").astype(np.int64)), UTC)
    return sec, np.asarray(tok), first


def _inference_jobs(
    demand_tokens_per_s: NDArray[np.float64],
    site: Site,
    slot_s: int,
    share_of_site: float | None,
    id_prefix: str,
) -> tuple[list[Job], float]:
    """Token rate per slot -> one inference job per slot; returns (jobs, traffic scale factor)."""
    raw_gpus = INFERENCE_HEADROOM * demand_tokens_per_s / TOKENS_PER_S_PER_GPU
    scale = 1.0
    if share_of_site is not None:
        if not 0 < share_of_site <= 1:
            raise InputError(f"share_of_site must lie in (0, 1], got {share_of_site}")
        mean = float(raw_gpus.mean())
        scale = share_of_site * site.total_gpus / mean if mean > 0 else 1.0
    biggest = max(p.gpus for p in site.pools)
    gpus = np.clip(np.ceil(raw_gpus * scale - 1e-9), 1, biggest).astype(np.int64)
    if (raw_gpus * scale > biggest).any():
        log.warning(
            "inference demand capped at the largest pool (%d GPUs) in %d slot(s)",
            biggest,
            int((raw_gpus * scale > biggest).sum()),
        )
    jobs = [
        Job(
            job_id=f"{id_prefix}-{i:06d}",
            tenant=INFERENCE_TENANT,
            kind="inference",
            submit_s=float(i * slot_s),
            gpus=int(g),
            duration_s=float(slot_s),
            deadline_s=float((i + 1) * slot_s),
            preemptible=False,
            priority=INFERENCE_PRIORITY,
        )
        for i, g in enumerate(gpus)
    ]
    return jobs, scale


def azure_inference_jobs(
    path: str | Path,
    site: Site,
    slot_s: int,
    days: float,
    seed: int = 0,
    tokens_per_s_per_gpu: float = TOKENS_PER_S_PER_GPU,
    *,
    share_of_site: float | None = 0.10,
    start_utc: datetime | None = None,
) -> list[Job]:
    """The Azure LLM trace as an inference service over ``days`` (module docstring: throughput, headroom,
    extension by block bootstrap with a diurnal shape, scaling to ``share_of_site``; ``None``: unscaled).
    ``start_utc`` (default 00:00 UTC) places slot 0 on the diurnal shape."""
    if not days > 0 or slot_s <= 0:
        raise InputError(f"days and slot_s must be > 0, got days={days}, slot_s={slot_s}")
    if not tokens_per_s_per_gpu > 0:
        raise InputError(f"tokens_per_s_per_gpu must be > 0, got {tokens_per_s_per_gpu}")
    sec, tok, first = _read_azure(Path(path))
    span = float(max(3600.0, math.ceil(sec[-1])))  # the trace hour
    cum = np.concatenate([[0.0], np.cumsum(tok)])
    n_slots = round(days * 86400 / slot_s)
    rng = np.random.default_rng([int(seed), 0x415A55])
    w = min(float(slot_s), span)
    offsets = rng.uniform(0.0, span, size=n_slots)

    def tokens_before(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return cum[np.searchsorted(sec, x, side="left")]

    a, b = offsets, offsets + w
    wrapped = b > span
    tokens = np.where(
        wrapped,
        tokens_before(np.full(n_slots, span)) - tokens_before(a) + tokens_before(np.maximum(b - span, 0.0)),
        tokens_before(np.minimum(b, span)) - tokens_before(a),
    )
    rate: NDArray[np.float64] = np.asarray(tokens, dtype=np.float64) / w
    t0 = start_utc.astimezone(UTC) if start_utc is not None and start_utc.tzinfo else start_utc
    h0 = 0.0 if t0 is None else t0.hour + t0.minute / 60.0 + t0.second / 3600.0
    hours = (h0 + (np.arange(n_slots) + 0.5) * slot_s / 3600.0) % 24.0
    trace_hour = first.hour + first.minute / 60.0 + span / 7200.0
    rate = rate * inference_diurnal(hours) / float(inference_diurnal(trace_hour))
    jobs, scale = _inference_jobs(
        rate * (TOKENS_PER_S_PER_GPU / tokens_per_s_per_gpu), site, slot_s, share_of_site, "azure-inf"
    )
    log.info(
        "azure inference: %d slots, traffic scale x%.1f, mean %.1f GPUs",
        n_slots,
        scale,
        float(np.mean([j.gpus for j in jobs])),
    )
    return jobs


# ---------------------------------------------------------------------------------------- embedded


@lru_cache(maxsize=1)
def workload_model() -> dict[str, Any]:
    """The fitted distributions of the embedded workload (scheduler/data/workload_model.json)."""
    try:
        return json.loads(WORKLOAD_MODEL_PATH.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{WORKLOAD_MODEL_PATH}: cannot load the embedded workload model: {e}") from e


def embedded_workload(
    site: Site,
    days: float,
    seed: int = 0,
    *,
    load: float = EMBEDDED_TRAINING_LOAD,
    share_of_site: float | None = 0.10,
    start_utc: datetime | None = None,
) -> list[Job]:
    """A seeded synthetic workload from the fitted ITP / Azure distributions, scaled to the site.

    Training jobs are drawn (GPU count from the fitted distribution, clipped to the largest pool; duration
    from that GPU class's ln-duration quantile function; submit time: a uniform day, an hour by the fitted
    hour-of-day weights, a uniform second) until their GPU-hours reach ``load`` x the site's GPU-hours over
    ``days``; tenants etc. by :data:`ASSIGNMENT_RULE`. The inference service has the fitted Azure mean rate
    and per-minute variability (AR(1) on the per-minute rate), the same diurnal shape, throughput and
    scaling as :func:`azure_inference_jobs`. Job ids start with ``synthetic-``."""
    if not days > 0:
        raise InputError(f"days must be > 0, got {days}")
    if not 0 < load <= 10:
        raise InputError(f"load must lie in (0, 10], got {load}")
    m = workload_model()
    tr = m["training"]
    rng = np.random.default_rng([int(seed), 0x574B4C44])
    values = np.asarray(tr["gpu_values"], dtype=np.int64)
    probs = np.asarray(tr["gpu_probs"], dtype=np.float64)
    probs = probs / probs.sum()
    levels = np.asarray(tr["duration_quantile_levels"], dtype=np.float64)
    classes = tr["duration_by_gpu_class"]
    hour_w = np.asarray(tr["arrival_hour_weights"], dtype=np.float64)
    hour_p = hour_w / hour_w.sum()
    biggest = max(p.gpus for p in site.pools)
    target_gpu_h = load * site.total_gpus * days * 24.0

    sov_max = _sovereign_max_gpus(site)
    horizon_s = days * 86400.0
    mean_gpu_h = (
        sum(
            p
            * min(int(v), biggest)
            * next(c for c in classes if c["min_gpus"] <= v <= c["max_gpus"])["mean_duration_s"]
            for v, p in zip(values, probs)
        )
        / 3600.0
    )
    jobs: list[Job] = []
    total = 0.0
    while total < target_gpu_h:
        n = int(min(max(256, 1.2 * (target_gpu_h - total) / mean_gpu_h), 2_000_000))
        g_raw = rng.choice(values, size=n, p=probs)  # the duration class follows the drawn GPU count
        g = np.minimum(g_raw, biggest)
        u = rng.uniform(size=n)
        day = rng.integers(0, max(1, math.ceil(days)), size=n)
        hour = rng.choice(24, size=n, p=hour_p)
        sec = rng.uniform(0, 3600, size=n)
        ln_dur = np.empty(n)
        for c in classes:
            sel = (g_raw >= c["min_gpus"]) & (g_raw <= c["max_gpus"])
            ln_dur[sel] = np.interp(u[sel], levels, c["ln_duration_s_quantiles"])
        dur = np.round(np.maximum(np.exp(ln_dur), 60.0), 1)
        submit = np.round(day * 86400.0 + hour * 3600.0 + sec, 1)
        keep = submit < horizon_s
        g, dur, submit = g[keep], dur[keep], submit[keep]
        cum = total + np.cumsum(g * dur / 3600.0)
        stop = int(np.searchsorted(cum, target_gpu_h, side="left"))
        take = min(stop + 1, g.size)
        for k in range(take):
            job_id = f"synthetic-train-{len(jobs):06d}"
            jobs.append(
                _assign(
                    site, job_id, float(submit[k]), int(g[k]), float(dur[k]), seed, sovereign_max_gpus=sov_max
                )
            )
        total = float(cum[take - 1]) if take else total

    inf = m["inference"]
    slot_s = site.slot_s
    n_slots = round(days * 86400 / slot_s)
    n_min = math.ceil(n_slots * slot_s / 60.0)
    phi = float(inf["per_minute_rate_phi"])
    e = rng.standard_normal(n_min)
    z = np.empty(n_min)
    z[0] = e[0]
    s = math.sqrt(1 - phi * phi)
    for t in range(1, n_min):
        z[t] = phi * z[t - 1] + s * e[t]
    per_min = np.maximum(inf["mean_rate_per_s"] * (1.0 + inf["per_minute_rate_cv"] * z), 0.0)
    tok_per_req = inf["mean_generated_tokens"] + CONTEXT_TOKEN_COST * inf["mean_context_tokens"]
    minute_tokens_rate = per_min * tok_per_req
    slot_min = slot_s / 60.0
    # mean of the minutes that each slot covers (slot_s is a whole number of minutes for every valid site)
    edges = (np.arange(n_slots + 1) * slot_min).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(minute_tokens_rate)])
    rate = (csum[edges[1:]] - csum[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1)
    t0 = start_utc.astimezone(UTC) if start_utc is not None and start_utc.tzinfo else start_utc
    h0 = 0.0 if t0 is None else t0.hour + t0.minute / 60.0
    hours = (h0 + (np.arange(n_slots) + 0.5) * slot_s / 3600.0) % 24.0
    rate = rate * inference_diurnal(hours)
    inf_jobs, _ = _inference_jobs(rate, site, slot_s, share_of_site, "synthetic-inf")
    return _sorted([*jobs, *inf_jobs])


# --------------------------------------------------------------------------------------- load, amplify


def _detect_kind(path: Path) -> str:
    (f, _), header = _open_csv(path, "jobs or trace CSV")
    f.close()
    if all(c in header for c in _ITP_COLUMNS):
        return "itp"
    if all(c in header for c in _REQUIRED):
        return "canonical"
    raise InputError(
        f"{path}: header {header} is neither the canonical jobs CSV ({list(CANONICAL_COLUMNS)}) nor an ITP trace "
        f"({list(_ITP_COLUMNS)})"
    )


def load_workload(
    spec: str | None,
    site: Site,
    days: float,
    seed: int = 0,
    start_s: float = 0.0,
    *,
    clip: bool = True,
    share_of_site: float | None = 0.10,
    start_utc: datetime | None = None,
    strict: bool = False,
) -> tuple[list[Job], str]:
    """Jobs and a one-line description of where they come from (``strict``: a canonical jobs CSV with an
    empty cell that would take a default is refused, :func:`read_jobs_csv`).

    * ``None`` / ``"embedded"``: :func:`embedded_workload`;
    * ``"itp:clusterNN"``: that real ITP trace from the shared data (jobs submitted in
      ``[start_s, start_s + days)``) plus the Azure LLM inference service;
    * a path: an ITP trace (detected by its header) or the canonical jobs CSV (jobs submitted in the same
      window, shifted by ``start_s``).

    ITP GPU counts above the largest eligible pool are clipped when ``clip`` (the default: real traces come
    from other clusters); canonical jobs are never changed, and a job that no pool can hold is an InputError.
    """
    if spec is None or spec == "embedded":
        jobs = embedded_workload(site, days, seed, share_of_site=share_of_site, start_utc=start_utc)
        desc = f"{EMBEDDED_LABEL} (seed {seed})"
        check_jobs_fit(site, jobs, desc)
        return jobs, desc
    if spec.startswith("itp:"):
        cluster = spec[4:]
        path = itp_trace_csv(cluster)
        if not path.is_file():
            raise InputError(
                f"workload {spec!r}: no ITP trace {path}; allowed: itp:cluster01 .. itp:cluster06"
            )
        train = itp_jobs(path, site, start_s, days, seed, clip=clip)
        inf = azure_inference_jobs(
            azure_llm_csv(), site, site.slot_s, days, seed, share_of_site=share_of_site, start_utc=start_utc
        )
        jobs = _sorted([*train, *inf])
        desc = (
            f"ITP {cluster} (real trace, {len(train)} jobs submitted {start_s / 86400:g}-{(start_s / 86400) + days:g} "
            f"d) + Azure LLM inference 2023 service ({len(inf)} slots, {share_of_site or 0:.0%} of site); "
            f"tenants, deadlines, pools assigned by rule (seed {seed})"
        )
        check_jobs_fit(site, jobs, spec)
        return jobs, desc
    path = Path(spec)
    kind = _detect_kind(path)
    if kind == "itp":
        jobs = itp_jobs(path, site, start_s, days, seed, clip=clip)
        desc = f"ITP trace {path} ({len(jobs)} jobs; tenants, deadlines, pools assigned by rule, seed {seed})"
    else:
        end = start_s + days * 86400.0
        jobs = [
            replace(
                j,
                submit_s=j.submit_s - start_s,
                deadline_s=None if j.deadline_s is None else j.deadline_s - start_s,
            )
            for j in read_jobs_csv(path, strict=strict)
            if start_s <= j.submit_s < end
        ]
        desc = f"jobs CSV {path} ({len(jobs)} jobs)"
    check_jobs_fit(site, jobs, str(path))
    return _sorted(jobs), desc


def amplify(jobs: Sequence[Job], factor: float, seed: int = 0, *, scale_inference: bool = True) -> list[Job]:
    """Make a trace match a bigger site: each non-inference job appears ``floor(factor)`` times plus once
    more with probability ``frac(factor)`` (fixed per job by a seeded hash). The first copy keeps the job's
    id and time; copy k gets id ``<id>~k`` and a seeded submit jitter uniform in +-``AMPLIFY_JITTER_S``
    (clamped at 0; its deadline moves with it). Inference jobs keep their slots and get
    ``max(1, round(gpus * factor))`` GPUs, or, with ``scale_inference=False``, are kept as they are: a
    workload from :func:`load_workload` has its inference service sized to the site already (scaling it
    again asks for more GPUs than the site has). Offered training GPU-hours grow by ``factor`` in
    expectation."""
    if not factor > 0:
        raise InputError(f"amplify factor must be > 0, got {factor}")
    out: list[Job] = []
    whole = math.floor(factor)
    frac = factor - whole
    for j in jobs:
        if j.kind == "inference":
            out.append(replace(j, gpus=max(1, round(j.gpus * factor))) if scale_inference else j)
            continue
        n = whole + (1 if _u(seed, j.job_id, "amplify") < frac else 0)
        for k in range(n):
            if k == 0:
                out.append(j)
                continue
            jitter = (2.0 * _u(seed, j.job_id, f"jitter{k}") - 1.0) * AMPLIFY_JITTER_S
            sub = max(0.0, j.submit_s + jitter)
            dl = None if j.deadline_s is None else j.deadline_s + (sub - j.submit_s)
            out.append(replace(j, job_id=f"{j.job_id}~{k}", submit_s=sub, deadline_s=dl))
    return _sorted(out)
