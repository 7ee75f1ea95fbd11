"""Pydantic models for every input at the edges: site file, tenants file, job specs, jobs CSV rows.

Types only (the Kueue habit): validation of shapes and ranges lives here, logic lives elsewhere.
Loading helpers at the bottom turn YAML files into these models and wrap every failure in an
:class:`~scheduler.errors.InputError` that names the file and the field.

Units are in the field names (DESIGN section 1).
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from scheduler.errors import InputError

#: Clearance levels in increasing order; a pool's ``clearance`` label and a tenant's ``clearance`` use these.
CLEARANCE_LEVELS: tuple[str, ...] = ("public", "internal", "confidential", "secret")

#: Default speed curve for H100-class GPUs: (power fraction, throughput relative to full power).
DEFAULT_SPEED_CURVE: tuple[tuple[float, float], ...] = ((0.4, 0.62), (0.6, 0.82), (0.8, 0.95), (1.0, 1.0))

_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

#: Upper bounds of the site file's physical quantities, far above any real site but finite after every product
#: the model takes of them (MW x 1e6, GPUs x watts x PUE, summed over pools and slots): past them a value is a
#: typo or an overflow (``1e308`` MW was an inf cap and exit 1), never a site. MW: 1 TW, also the bound of a
#: congestion event's ``cap_mw`` (scheduler.api.CongestionIn); watts per GPU: 100 kW, some 70x the largest
#: accelerator's TDP; GPUs: a million per pool (and per job: JobSpec.gpus).
MW_MAX = 1e6
W_PER_GPU_MAX = 1e5
GPUS_MAX = 1_000_000


def no_bool(v: Any) -> Any:
    """A number in a file is never a YAML boolean (``true`` was read as 1: ``slot_minutes: true`` planned 1-minute
    slots, ``pue: yes`` a PUE of 1.0)."""
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is a boolean; allowed: a number")
    return v


#: Numbers in the site and tenants files: never a boolean (see :func:`no_bool`); floats must be finite.
FileNumber = BeforeValidator(no_bool)


#: Bidirectional-text controls (Trojan Source, CVE-2021-42574): refused in every text field of a request.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Unicode categories refused in text fields: controls, format characters (bidi, zero-width), lone
#: surrogates, private use, unassigned, line and paragraph separators.
_UNPRINTABLE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def check_printable(v: str) -> str:
    """Refuse text with a character that is not printable (category in ``_UNPRINTABLE_CATEGORIES``, which
    covers NUL, newlines, bidi overrides and lone surrogates), naming its position and code point."""
    if v.isprintable():  # the common case, in C: no category of "Other" or "Separator" but the ASCII space
        return v
    for i, ch in enumerate(v):
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES:
            raise ValueError(
                f"character {i} is U+{ord(ch):04X} ({unicodedata.name(ch, unicodedata.category(ch))}); "
                "allowed: printable text without control, format (bidi, zero-width) or surrogate characters"
            )
    return v


def check_not_blank(v: str) -> str:
    """Refuse text of spaces only (a job named " " lists, logs and reads as no name: round 25, H3)."""
    if not v.strip():
        raise ValueError("blank; allowed: text with at least one character that is not a space")
    return v


#: Text at the API's edges: printable (see :func:`check_printable`).
PrintableText = Annotated[str, AfterValidator(check_printable)]


# ----------------------------------------------------------------------------------------- labels

#: The one label syntax of the project: Kubernetes' (kubernetes.io/docs/concepts/overview/working-with-objects/
#: labels, "Syntax and character set"), as the pools are node labels on a KubeRay cluster
#: (scheduler.executors.manifests) and Ray node labels (scheduler.executors.ray_cluster; Ray checks the same
#: syntax, ``ray._private.label_utils``).
#:
#: * a **value** is 1 to 63 characters: ASCII letters, digits, ``-``, ``_`` and ``.``, beginning and ending with a
#:   letter or digit. (Kubernetes also takes an empty value; it is refused here: no pool selector can name one,
#:   ``scheduler.jobs.selector_error`` refuses ``gpu=``.)
#: * a **key** is a name of the value's form, optionally after a prefix and ``/``; the prefix is a DNS subdomain
#:   (RFC 1123: lower-case letters, digits, ``-`` and ``.``, each part between dots beginning and ending with a
#:   letter or digit) of at most 253 characters, e.g. ``example.com/rack``. The prefix ``ray.io/`` is refused:
#:   Ray keeps it for its own labels and refuses it on a node.
#:
#: What it keeps out: text no pool selector can name (``scheduler.jobs.parse_selector`` splits on ``,`` and ``=``
#: and strips spaces: a value ``"nl "`` matched no job, silently) and text that prints as something else in logs,
#: the Prometheus labels and the plan JSON (NUL, newlines, bidi overrides). It applies to a pool's ``labels`` (keys
#: and values), a tenant's ``jurisdictions`` and a job's ``jurisdiction`` (the job spec's ``requires``, the jobs
#: CSV's column): each is compared with a pool's ``jurisdiction`` label value.
LABEL_VALUE_MAX_CHARS = 63
LABEL_PREFIX_MAX_CHARS = 253
LABEL_KEY_MAX_CHARS = LABEL_PREFIX_MAX_CHARS + 1 + LABEL_VALUE_MAX_CHARS
_LABEL_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"  # (RFC 1123, lower case)
#: The syntax as regular expressions (whole text: ``fullmatch``); the checks below decide by them.
LABEL_VALUE_RE = re.compile(_LABEL_NAME)
LABEL_KEY_RE = re.compile(rf"(?:(?=[^/]{{1,{LABEL_PREFIX_MAX_CHARS}}}/){_DNS_SUBDOMAIN}/)?{_LABEL_NAME}")
#: Key prefixes refused (Ray refuses custom node labels under ``ray.io/``).
LABEL_RESERVED_PREFIXES = ("ray.io/",)
#: The Ray node label that carries a node's pool name (every pool node has it; placement selects nodes by it):
#: reserved, a pool's own labels may not set it.
POOL_LABEL = "windward.pool"
LABEL_RESERVED_KEYS = (POOL_LABEL,)
LABEL_VALUE_ALLOWED = (
    f"1 to {LABEL_VALUE_MAX_CHARS} characters: ASCII letters, digits, '-', '_' and '.', beginning and ending with a "
    "letter or digit (the Kubernetes label syntax), e.g. 'h100' or 'eu-west-1'"
)
LABEL_KEY_ALLOWED = (
    f"a name of 1 to {LABEL_VALUE_MAX_CHARS} characters (ASCII letters, digits, '-', '_' and '.', beginning and "
    "ending with a letter or digit), optionally after a prefix and '/': a DNS subdomain of at most "
    f"{LABEL_PREFIX_MAX_CHARS} characters (lower-case letters, digits, '-' and '.', each part between dots beginning "
    f"and ending with a letter or digit), not {' '.join(LABEL_RESERVED_PREFIXES)} (the Kubernetes label syntax) and "
    f"not {', '.join(LABEL_RESERVED_KEYS)}, e.g. 'gpu' or 'example.com/rack'"
)


def _shown(v: str) -> str:
    return repr(v) if len(v) <= 80 else f"{v[:80]!r}... ({len(v)} characters)"


def _name_problem(text: str) -> str:
    """What in ``text`` breaks the label value's form (for the message; :data:`LABEL_VALUE_RE` decides)."""
    if not text:
        return "empty"
    if len(text) > LABEL_VALUE_MAX_CHARS:
        return f"{len(text)} characters"
    for i, ch in enumerate(text):
        if not (ch.isascii() and (ch.isalnum() or ch in "-_.")):
            code = f" (U+{ord(ch):04X})" if not ch.isascii() else ""
            return f"character {i} is {ch!r}{code}"
    return f"it begins with {text[0]!r}" if not text[0].isalnum() else f"it ends with {text[-1]!r}"


def check_label_value(v: str) -> str:
    """A label value (see :data:`LABEL_VALUE_RE`), or ValueError saying what is wrong and what is allowed."""
    if LABEL_VALUE_RE.fullmatch(v):
        return v
    raise ValueError(f"{_shown(v)} is not a label value ({_name_problem(v)}); allowed: {LABEL_VALUE_ALLOWED}")


def check_label_key(v: str) -> str:
    """A label key (see :data:`LABEL_KEY_RE`), or ValueError saying what is wrong and what is allowed."""
    reserved = next((p for p in LABEL_RESERVED_PREFIXES if v.startswith(p)), None)
    if LABEL_KEY_RE.fullmatch(v) and reserved is None and v not in LABEL_RESERVED_KEYS:
        return v
    prefix, slash, name = v.rpartition("/")
    if reserved is not None:
        why = f"the prefix {reserved!r} is Ray's own"
    elif v in LABEL_RESERVED_KEYS:
        why = "the key is Windward's own: it carries the pool's name on every node of the pool"
    elif "/" in prefix:
        why = "more than one '/'"
    elif slash and not prefix:
        why = "an empty prefix before '/'"
    elif len(prefix) > LABEL_PREFIX_MAX_CHARS:
        why = f"a prefix of {len(prefix)} characters"
    elif slash and not re.fullmatch(_DNS_SUBDOMAIN, prefix):
        why = f"the prefix {_shown(prefix)} is not a DNS subdomain"
    else:
        why = ("its name: " if slash else "") + _name_problem(name)
    raise ValueError(f"{_shown(v)} is not a label key ({why}); allowed: {LABEL_KEY_ALLOWED}")


#: A label value and a label key (see :data:`LABEL_VALUE_RE`): the check comes first, so its message is the one
#: given; the lengths declare the bounds (the JSON schema, the edge-value family of the tests).
LabelValue = Annotated[str, AfterValidator(check_label_value), Field(min_length=1, max_length=LABEL_VALUE_MAX_CHARS)]
LabelKey = Annotated[str, AfterValidator(check_label_key), Field(min_length=1, max_length=LABEL_KEY_MAX_CHARS)]


def name_the_owner(owner: str, field: str, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Run ``handler`` (pydantic's validation of ``field``) on ``v``; a refusal is raised again naming ``owner``
    (``pool 'h100-nl'``) and, for each item refused, its key or index: a site file's error then says which pool
    and which label, not only ``pools.0.labels``."""
    try:
        return handler(v)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            key = "[key]" in err["loc"]  # (a key refused: its message shows it; a value or an item: its key or index)
            at = "" if key else "".join(f"[{_shown(x) if isinstance(x, str) else x}]" for x in err["loc"])
            parts.append(f"{field}{at}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ValueError(f"{owner}: {'; '.join(parts)}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------- site


class Pool(_Strict):
    """A set of identical GPU nodes with the same labels."""

    name: Annotated[str, Field(pattern=_NAME_RE)]
    gpus: Annotated[int, Field(gt=0, le=GPUS_MAX), FileNumber]
    gpus_per_node: Annotated[int, Field(gt=0, le=GPUS_MAX), FileNumber] = 8
    tdp_w: Annotated[float, Field(gt=0, le=W_PER_GPU_MAX), FileNumber]
    idle_w: Annotated[float, Field(ge=0, le=W_PER_GPU_MAX), FileNumber]
    host_w_per_gpu: Annotated[float, Field(ge=0, le=W_PER_GPU_MAX), FileNumber] = 0.0
    min_power_fraction: Annotated[float, Field(gt=0, le=1), FileNumber] = 0.4
    speed_curve: tuple[tuple[float, float], ...] = DEFAULT_SPEED_CURVE
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)  # (the label syntax: LABEL_KEY_RE, LABEL_VALUE_RE)

    @field_validator("speed_curve")
    @classmethod
    def _check_curve(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if len(v) < 1:
            raise ValueError("speed_curve needs at least one [fraction, speed] point")
        fs = [p[0] for p in v]
        ss = [p[1] for p in v]
        if any(b <= a for a, b in zip(fs, fs[1:])):
            raise ValueError(f"speed_curve fractions must increase strictly, got {fs}")
        if any(b < a for a, b in zip(ss, ss[1:])):
            raise ValueError(f"speed_curve speeds must not decrease, got {ss}")
        if abs(fs[-1] - 1.0) > 1e-9 or abs(ss[-1] - 1.0) > 1e-9:
            raise ValueError(f"speed_curve must end at [1.0, 1.0], got {list(v[-1])}")
        if not all(0 < f <= 1 and 0 < s <= 1 for f, s in v):
            raise ValueError("speed_curve fractions and speeds must lie in (0, 1]")
        return v

    @field_validator("labels", mode="wrap")
    @classmethod
    def _name_the_pool(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        return name_the_owner(f"pool {info.data.get('name')!r}", "labels", v, handler)

    @model_validator(mode="after")
    def _check_pool(self) -> Pool:
        if self.gpus % self.gpus_per_node:
            raise ValueError(
                f"pool {self.name!r}: gpus ({self.gpus}) must be a multiple of gpus_per_node ({self.gpus_per_node})"
            )
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"pool {self.name!r}: idle_w ({self.idle_w}) must be below tdp_w ({self.tdp_w})")
        if self.min_power_fraction < self.speed_curve[0][0] - 1e-9:
            raise ValueError(
                f"pool {self.name!r}: min_power_fraction ({self.min_power_fraction}) lies below the first "
                f"speed_curve point ({self.speed_curve[0][0]})"
            )
        clearance = self.labels.get("clearance")
        if clearance is not None and clearance not in CLEARANCE_LEVELS:
            raise ValueError(
                f"pool {self.name!r}: label clearance={clearance!r} is not one of {list(CLEARANCE_LEVELS)}"
            )
        return self

    @property
    def nodes(self) -> int:
        return self.gpus // self.gpus_per_node


class TimeBlock(_Strict):
    """Extra grid import allowed in a window of UTC hours (a time-bound transport right).

    ``hours`` is ``"A-B"`` with A, B in 0..24: the block covers hours h with A <= h < B, wrapping over
    midnight when B <= A (``"22-06"`` covers 22:00-06:00).
    """

    hours: str
    extra_mw: Annotated[float, Field(ge=0, le=MW_MAX), FileNumber]

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", v)
        if not m or not (0 <= int(m.group(1)) <= 24 and 0 <= int(m.group(2)) <= 24) or m.group(1) == m.group(2):
            raise ValueError(f'hours must look like "22-06" (two different hours 0..24), got {v!r}')
        return v

    @property
    def hour_range(self) -> tuple[int, int]:
        a, b = self.hours.split("-")
        return int(a) % 24, int(b) % 24


class GridContract(_Strict):
    firm_mw: Annotated[float, Field(ge=0, le=MW_MAX), FileNumber]
    time_blocks: tuple[TimeBlock, ...] = ()


class WindContract(_Strict):
    contract_mw: Annotated[float, Field(ge=0, le=MW_MAX), FileNumber]


class Site(_Strict):
    """The site file (DESIGN section 7)."""

    name: Annotated[PrintableText, Field(min_length=1, max_length=128), AfterValidator(check_not_blank)]
    slot_minutes: Annotated[int, Field(gt=0, le=60), FileNumber] = 15
    pue: Annotated[float, Field(ge=1.0, le=3.0), FileNumber] = 1.15
    site_max_mw: Annotated[float, Field(gt=0, le=MW_MAX), FileNumber]
    grid: GridContract
    wind: WindContract
    pools: tuple[Pool, ...]

    @field_validator("slot_minutes")
    @classmethod
    def _check_slot(cls, v: int) -> int:
        if 60 % v:
            # (the value itself: parse_model's "(got ...)"; round 24's message said it twice)
            allowed = ", ".join(str(d) for d in range(1, 61) if 60 % d == 0)
            raise ValueError(f"slot_minutes must divide 60; allowed: {allowed}")
        return v

    @field_validator("pools")
    @classmethod
    def _check_pools(cls, v: tuple[Pool, ...]) -> tuple[Pool, ...]:
        if not v:
            raise ValueError("a site needs at least one pool")
        names = [p.name for p in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique, repeated: {dupes}")
        return v

    @property
    def slot_s(self) -> int:
        return self.slot_minutes * 60

    @property
    def total_gpus(self) -> int:
        return sum(p.gpus for p in self.pools)

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise InputError(f"unknown pool {name!r}; this site has {[p.name for p in self.pools]}")


# ------------------------------------------------------------------------------------------ tenants


#: A job's ``priority`` (within its tenant's class; higher first), at every edge that takes one: the jobs CSV
#: (``windward plan`` / ``simulate``), the job spec (``windward submit``, ``POST /v1/jobs``, ``#WINDWARD
#: --priority``). The planner weighs a job's unfinished and late work at ``weight_margin`` (2) times the dearest
#: carbon one GPU-second can cost in the horizon, times ``priority_base ** (priority + class)`` (2 ** ..., clipped
#: at +-``max_priority_exponent``, scheduler.planner.job_weights). A negative priority is meant: below an exponent
#: of -1 the weight falls under the dearest slot's carbon, so the job runs where the grid is cleaner than its work
#: is worth and may be left undone where every slot it could use is dirtier ("run it when it is green"; reported
#: as unfinished, never hidden). -100..100 is the API's bound since it was written and, since round 25, the jobs
#: CSV's too (it took any integer); the clip (8) sits well inside it, where only the serving order still reads it.
JOB_PRIORITY_MIN, JOB_PRIORITY_MAX = -100, 100
#: A tenant's priority class (the tenants file), added to each of its jobs' priorities.
TENANT_PRIORITY_MIN, TENANT_PRIORITY_MAX = 0, 10


class Tenant(_Strict):
    name: Annotated[str, Field(pattern=_NAME_RE)]
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    priority: Annotated[int, Field(ge=TENANT_PRIORITY_MIN, le=TENANT_PRIORITY_MAX), FileNumber] = 1
    quota_gpus: Annotated[int, Field(ge=0), FileNumber] | None = None
    commitment_gpu_hours_per_day: Annotated[float, Field(ge=0), FileNumber] = 0.0
    commitment_gpu_hours_per_week: Annotated[float, Field(ge=0), FileNumber] = 0.0
    fair_share_weight: Annotated[float, Field(gt=0), FileNumber] = 1.0
    clearance: Literal["public", "internal", "confidential", "secret"] = "public"
    jurisdictions: tuple[LabelValue, ...] = ()  # (each compared with a pool's label jurisdiction: LABEL_VALUE_RE)

    @field_validator("jurisdictions", mode="wrap")
    @classmethod
    def _name_the_tenant(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        return name_the_owner(f"tenant {info.data.get('name')!r}", "jurisdictions", v, handler)


class Operator(_Strict):
    name: Annotated[str, Field(pattern=_NAME_RE)]
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class TenantsFile(_Strict):
    tenants: tuple[Tenant, ...] = ()
    operators: tuple[Operator, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> TenantsFile:
        names = [t.name for t in self.tenants] + [o.name for o in self.operators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tenant and operator names must be unique, repeated: {dupes}")
        tokens = [t.token_sha256 for t in self.tenants] + [o.token_sha256 for o in self.operators]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two tenants or operators share a token_sha256")
        return self


# --------------------------------------------------------------------------------------------- jobs

JobKind = Literal["training", "batch", "inference"]

#: Deadlines are refused before this instant (a year-1 or year-2000 deadline is a typo, not a plan).
DEADLINE_MIN_UTC = datetime(2020, 1, 1, tzinfo=UTC)
#: ... and more than this far after submission (the API checks it against the service clock).
DEADLINE_MAX_AHEAD_S = 10 * 365 * 86400

#: ``module:function`` entrypoints (called with a JobContext); anything with whitespace or no colon is a
#: command (``shlex.split``, run as a subprocess) -- the same split as ``scheduler.executors.ray_job``.
ENTRYPOINT_FUNCTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
ENTRYPOINT_MAX_CHARS = 1024


def check_entrypoint(v: str) -> str:
    """``module:function`` (dotted identifiers) or a command line that ``shlex.split`` reads as at least one
    word; printable, at most ``ENTRYPOINT_MAX_CHARS``."""
    check_printable(v)
    if ":" in v and not any(c.isspace() for c in v):
        if not ENTRYPOINT_FUNCTION_RE.match(v):
            raise ValueError(
                f"{v[:80]!r} is neither 'module:function' (dotted Python identifiers, e.g. "
                "'scheduler.workloads.train:main') nor a command with arguments"
            )
        return v
    try:
        words = shlex.split(v)
    except ValueError as e:
        raise ValueError(f"not a command line shlex can read ({e}); allowed: 'module:function' or a command") from e
    if not words:
        raise ValueError("empty command; allowed: 'module:function' or a command")
    return v


_ISO_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def iso_time_only(v: Any) -> Any:
    """A time is an ISO 8601 string (or a datetime, as YAML reads one), never a number or a numeric string
    (pydantic would read ``"2"`` as 1970-01-01T00:00:02Z); and not before ``DEADLINE_MIN_UTC``."""
    if isinstance(v, datetime):
        t = v
    elif isinstance(v, str) and _ISO_TIME_RE.match(v):
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"{v[:40]!r} is not an ISO 8601 time such as 2026-12-01T18:00:00Z") from e
    else:
        shown = repr(v[:40]) if isinstance(v, str) else f"a {type(v).__name__}"
        raise ValueError(f"{shown} is not an ISO 8601 time such as 2026-12-01T18:00:00Z")
    if t.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. 2026-12-01T18:00:00Z")
    if t < DEADLINE_MIN_UTC:
        raise ValueError(f"{t.isoformat()} is before {DEADLINE_MIN_UTC.isoformat()}; allowed: a current time")
    return t


#: A time at the API's edges: ISO 8601 with a zone, after ``DEADLINE_MIN_UTC`` (see :func:`iso_time_only`).
IsoTime = Annotated[datetime, BeforeValidator(iso_time_only)]

def no_text_or_bool(v: Any) -> Any:
    """A number must be a JSON number: text (``"2"``) and booleans (``true``) are refused, never read as one.
    (An integral float such as ``2.0`` is an integer in JSON Schema and is taken as one.)"""
    if isinstance(v, str | bytes | bool):
        raise ValueError(f"{v!r} is a {type(v).__name__}; allowed: a JSON number")
    return v


#: Numbers at the API's edges: JSON numbers only (see :func:`no_text_or_bool`); floats must be finite.
Number = BeforeValidator(no_text_or_bool)

#: A job's priority at every edge (:data:`JOB_PRIORITY_MIN` .. :data:`JOB_PRIORITY_MAX`).
JobPriority = Annotated[int, Field(ge=JOB_PRIORITY_MIN, le=JOB_PRIORITY_MAX)]

#: A job's work at full power, at every edge (the job spec, the jobs CSV): more than 0, at most a year. Past a
#: year a duration is a typo or an overflow (the jobs CSV took 1.8e308 s, and the plan's GPU-hours were inf: exit
#: 1); a job of a year is already far past any horizon the planner takes (14 days).
JOB_DURATION_MAX_S = 365 * 86400.0
JobDuration = Annotated[float, Field(gt=0, le=JOB_DURATION_MAX_S)]

#: A job's checkpoint interval (full-speed seconds of work between checkpoints), at every edge that takes one
#: (the job spec, ``#WINDWARD --checkpoint-interval``, the jobs CSV's extension column): 1 s to a day. What the
#: model does with it: a preemption loses the work since the last checkpoint (the simulated executor's
#: ``floor(work / interval) * interval``, the planner's ``preempt_loss_s``), and the training workload checkpoints
#: every ``max(1, interval // step)`` steps. Below a second the loss it models is below anything the loop can
#: act on (a tick is at least a minute; the planner's restart overhead is seconds), no real job writes its
#: state that often (per-step in-memory checkpointing runs at one step, about a second and up, for large
#: models), and the arithmetic breaks: ``gt=0`` took 5e-324, where ``work / interval`` is inf and the checkpoint
#: a NaN. A day: a job that checkpoints less often is one whose preemption loses up to a day of work.
CHECKPOINT_INTERVAL_MIN_S = 1.0
CHECKPOINT_INTERVAL_MAX_S = 86400.0
CheckpointInterval = Annotated[float, Field(ge=CHECKPOINT_INTERVAL_MIN_S, le=CHECKPOINT_INTERVAL_MAX_S)]


class Requires(_Strict):
    jurisdiction: LabelValue | None = None  # (compared with a pool's label jurisdiction: LABEL_VALUE_RE)
    clearance: Literal["public", "internal", "confidential", "secret"] | None = None


#: Environment variable names a job spec may set (portable shell names), and the limits on env and args.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_VARS = 256
MAX_ARGS = 1024
ARG_MAX_CHARS = 4096


def check_env_name(v: str) -> str:
    if not ENV_NAME_RE.match(v):
        raise ValueError(f"{v[:64]!r} is not an environment variable name; allowed: letters, digits and _, "
                         "not starting with a digit")  # fmt: skip
    return v


def check_workdir(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError(f"{v[:80]!r} is not an absolute path; allowed: a directory such as /home/me/run")
    return v


EnvName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(check_env_name)]
ArgText = Annotated[PrintableText, Field(max_length=ARG_MAX_CHARS)]

#: Dependency kinds (Slurm's ``--dependency``): ``afterok`` waits for the job to finish OK (and fails the
#: dependent job if it failed or was cancelled), ``afternotok`` for it to fail or be cancelled (and fails
#: the dependent job if it finished OK), ``afterany`` for it to end either way, ``after`` for it to start.
DependencyKind = Literal["after", "afterany", "afterok", "afternotok"]


class JobDependency(_Strict):
    """One dependency of a job: wait on ``job_id`` (an earlier job of the same tenant) as ``kind`` says."""

    kind: DependencyKind = "afterok"
    job_id: Annotated[PrintableText, Field(min_length=1, max_length=64)]


class JobSpec(_Strict):
    """A job as a tenant submits it (YAML for the CLI, JSON for the API). Unknown fields are refused.

    Strict: numbers are never parsed from strings or booleans (``"gpus": "2"`` and ``"gpus": true`` are
    refused; ``2.0`` is an integer, as in JSON Schema, ``2.5`` is not), floats must be finite, text must be printable, a deadline must carry a time
    zone and lie after ``DEADLINE_MIN_UTC`` (the API also refuses one before submission or more than
    ``DEADLINE_MAX_AHEAD_S`` after it), an entrypoint is ``module:function`` or a command.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Annotated[PrintableText, Field(min_length=1, max_length=128), AfterValidator(check_not_blank)]
    kind: JobKind = "training"
    gpus: Annotated[int, Field(gt=0, le=GPUS_MAX), Number]
    duration_s: Annotated[JobDuration, Number]
    deadline: IsoTime | None = None
    preemptible: Annotated[bool, Field(strict=True)] = True
    checkpoint_interval_s: Annotated[CheckpointInterval, Number] = 1800.0
    pool: Annotated[PrintableText, Field(min_length=1, max_length=256)] | None = None
    requires: Requires = Requires()
    entrypoint: (
        Annotated[str, Field(min_length=1, max_length=ENTRYPOINT_MAX_CHARS), AfterValidator(check_entrypoint)] | None
    ) = None
    priority: Annotated[JobPriority, Number] = 0
    # how the job runs (a Ray runtime_env under the Ray executor): environment, arguments appended to a
    # command entrypoint, the working directory (absolute)
    env: Annotated[dict[EnvName, ArgText], Field(max_length=MAX_ENV_VARS)] | None = None
    args: Annotated[tuple[ArgText, ...], Field(max_length=MAX_ARGS)] | None = None
    workdir: Annotated[PrintableText, Field(min_length=1, max_length=1024), AfterValidator(check_workdir)] | None = None
    # when it may start: after its dependencies (held by the control loop) and not before ``begin``
    dependencies: Annotated[tuple[JobDependency, ...], Field(max_length=64)] | None = None
    begin: IsoTime | None = None
    # hard: the control loop fails the job, naming why, once it can no longer finish by its deadline (at full
    # power from now); soft (default): the deadline weighs in the plan, late work still runs
    deadline_policy: Literal["soft", "hard"] | None = None

    @model_validator(mode="after")
    def _args_need_a_command(self) -> JobSpec:
        if self.deadline_policy == "hard" and self.deadline is None:
            raise ValueError("deadline_policy: 'hard' needs a deadline; allowed: soft without one")
        if self.begin is not None and self.deadline is not None and self.begin >= self.deadline:
            # (as `#WINDWARD --begin` / `--deadline`, scheduler.slurm: a job held until after its deadline was
            # accepted, held, and could only be late)
            raise ValueError(f"begin: {self.begin.isoformat()} is not before the deadline "
                             f"{self.deadline.isoformat()}; allowed: a begin before the deadline")  # fmt: skip
        if self.args and (self.entrypoint is None or ENTRYPOINT_FUNCTION_RE.match(self.entrypoint)):
            raise ValueError(f"args: given {len(self.args)} argument(s), but the entrypoint "
                             f"{self.entrypoint!r} is not a command; allowed: args with a command entrypoint "
                             "such as 'python train.py'")  # fmt: skip
        return self


class JobRow(_Strict):
    """One row of the jobs CSV (DESIGN section 7): the canonical columns, then the extension columns
    (``scheduler.traces.EXTENSION_COLUMNS``), each with the job spec's rule for the same field. Numbers must be
    finite (``inf`` is refused like ``nan``: an infinite duration or time is no plan input); text printable (a
    job id with a NUL, a newline or a bidi override lists, logs and audits as something else)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    job_id: Annotated[PrintableText, Field(min_length=1, max_length=256), AfterValidator(check_not_blank)]
    tenant: Annotated[PrintableText, Field(min_length=1, max_length=256), AfterValidator(check_not_blank)] = "default"
    kind: JobKind = "training"
    # (times: at most DEADLINE_MAX_AHEAD_S from the start, the API's furthest deadline: a submit_s of 1e300 was
    # cast to a negative slot and the job planned from slot 0)
    submit_s: Annotated[float, Field(ge=0, le=DEADLINE_MAX_AHEAD_S)]
    gpus: Annotated[int, Field(gt=0, le=GPUS_MAX)]
    duration_s: JobDuration
    deadline_s: Annotated[float, Field(ge=0, le=DEADLINE_MAX_AHEAD_S)] | None = None
    preemptible: bool = True
    pool: Annotated[PrintableText, Field(max_length=256)] | None = None
    priority: JobPriority = 0
    # extension columns
    checkpoint_interval_s: CheckpointInterval = 1800.0
    jurisdiction: LabelValue | None = None  # (compared with a pool's label jurisdiction: LABEL_VALUE_RE)
    clearance: Literal["public", "internal", "confidential", "secret"] | None = None
    entrypoint: (
        Annotated[str, Field(min_length=1, max_length=ENTRYPOINT_MAX_CHARS), AfterValidator(check_entrypoint)] | None
    ) = None


# ------------------------------------------------------------------------------------------ loading


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{source}: field {loc}: {e['msg']}{got_s}")
    return "\n".join(parts)


def parse_model(model: type[BaseModel], data: Any, source: str) -> Any:
    """Validate ``data`` against ``model``; on failure raise InputError naming ``source`` and each field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(_format_validation_error(source, e)) from e


def refuse_repeated_columns(src: object, header: list[str]) -> None:
    """A CSV header naming a column twice is refused (which of the two would be read is no rule a user can see):
    the jobs CSV's and the energy CSV's one rule."""
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:
        raise InputError(f"{src}: header: column(s) {twice} appear more than once; allowed: each column once")


def decode_utf8(data: bytes, source: str | Path) -> str:
    """``data`` as UTF-8 text (a BOM is dropped); bytes that are not UTF-8 raise InputError naming ``source``,
    the byte offset and its line (every file reader decodes through here)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{source}: not UTF-8 text: byte {e.start} (line {line}) is {data[e.start : e.start + 1]!r} ({e.reason}); "
            "save the file as UTF-8"
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently: a site
    file with ``site_max_mw`` twice was read with the second, a rule no user can see; the CSV readers' rule)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # (an unhashable key: the base class says so)
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {first} and {key_node.start_mark.line + 1}); "
                    "allowed: each key once", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read file: {e.strerror}") from e
    text = decode_utf8(data, p)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # (a SafeLoader)
    except yaml.YAMLError as e:
        raise InputError(f"{p}: not valid YAML: {e}") from e


SITES_DIR = Path(__file__).parent / "sites"
BUILTIN_SITES = ("demo", "rotterdam-100k")


def site_path(name_or_path: str | Path) -> Path:
    """A built-in site name (``demo``, ``rotterdam-100k``) or a path to a site YAML file."""
    s = str(name_or_path)
    if s in BUILTIN_SITES:
        return SITES_DIR / f"{s}.yaml"
    return Path(s)


def load_site(name_or_path: str | Path = "demo") -> Site:
    p = site_path(name_or_path)
    if not p.exists():  # (a mistyped built-in name read as a path said only "No such file or directory")
        raise InputError(f"site {str(name_or_path)!r}: cannot read file: no such file; allowed: a built-in site "
                         f"({', '.join(BUILTIN_SITES)}) or the path of a site YAML file")
    return parse_model(Site, read_yaml(p), str(p))


def load_tenants(path: str | Path | None = None) -> TenantsFile:
    p = Path(path) if path is not None else SITES_DIR / "demo-tenants.yaml"
    return parse_model(TenantsFile, read_yaml(p), str(p))


def load_job_spec(path: str | Path) -> JobSpec:
    p = Path(path)
    return parse_model(JobSpec, read_yaml(p), str(p))
