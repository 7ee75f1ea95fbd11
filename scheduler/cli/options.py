"""Parsing of option values shared by the command modules (not itself a command module)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduler.backends import planner_backend  # noqa: F401 (one definition, re-exported for the commands)
from scheduler.errors import InputError


def parse_utc(value: str, option: str) -> datetime:
    """An ISO 8601 time given on the command line, as an aware UTC datetime. ``Z`` is accepted; a time
    without a zone is taken as UTC (every time at Windward's edges is UTC)."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{option}: {value!r} is not an ISO 8601 time such as 2023-03-01T00:00:00Z") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def policy_option(note: str = "") -> Any:
    """``--policy`` of ``windward simulate``, ``windward server`` and ``windward demo``: its default and its help
    (every registered name with what it does, then ``note``) from the registry, :data:`scheduler.policies.POLICIES`."""
    import typer

    from scheduler.policies import DEFAULT_POLICY, policy_help

    return typer.Option(DEFAULT_POLICY, "--policy", help=policy_help() + (f" {note}" if note else ""))


def seed_option(help_: str) -> Any:
    """``--seed`` of ``windward plan``, ``simulate`` and ``demo``: a non-negative integer (numpy's generators
    refuse a negative seed: ``--seed -1`` was a ValueError traceback, exit 1)."""
    import typer

    return typer.Option(0, "--seed", min=0, help=help_ + " A non-negative integer.")


#: The shortest ``--horizon-hours``: one 15-minute slot (a policy needs at least the slot it decides; 0 gave
#: ``windward server --policy backfill`` a ValueError traceback and ``--policy cics`` a one-slot forecast).
MIN_HORIZON_HOURS = 0.25


def horizon_hours_option(default: float) -> Any:
    """``--horizon-hours`` of ``windward simulate`` and ``windward server``: at least MIN_HORIZON_HOURS, the
    policies that take a horizon named from the registry (:func:`scheduler.policies.takers`)."""
    import typer

    from scheduler.policies import POLICIES, takers

    have = takers("horizon_hours")
    rest = [n for n in POLICIES if n not in have]
    return typer.Option(default, "--horizon-hours", min=MIN_HORIZON_HOURS, help=(
        "Planning horizon: the hours of forecast each tick sees, and the horizon of " + ", ".join(have)
        + (f" ({', '.join(rest)}: within it, over {'its' if len(rest) == 1 else 'their'} own span)" if rest else "")
        + "."))


#: ``windward server`` options for :class:`scheduler.limits.ApiLimits` fields: (option, help).
_API_LIMIT_OPTIONS: dict[str, tuple[str, str]] = {
    "max_queued_per_tenant": ("--max-queued-per-tenant", "Queued jobs a tenant may have (429 beyond)."),
    "submit_rate_per_s": ("--submit-rate", "Submissions per second per tenant (token bucket; 429 beyond; 0: off)."),
    "submit_burst": ("--submit-burst", "Submissions a tenant may send at once before --submit-rate applies."),
    "read_rate_per_s": ("--read-rate", "List pages (queue, jobs, audit) per second per caller (token bucket; "
                        "429 beyond; 0: off)."),
    "read_burst": ("--read-burst", "List pages a caller may read at once before --read-rate applies."),
    "max_body_bytes": ("--max-body-bytes", "Largest request body (413 beyond, before parsing)."),
    "max_header_bytes": ("--max-header-bytes", "Largest request headers, all together (431 beyond, before any "
                         "work: a token is never hashed past it)."),
}


def api_limit_option(field: str) -> Any:
    """The typer option of an :class:`~scheduler.limits.ApiLimits` field, its default taken from ApiLimits."""
    import typer

    from scheduler.limits import ApiLimits

    name, help_ = _API_LIMIT_OPTIONS[field]
    return typer.Option(getattr(ApiLimits(), field), name, help=help_)


def api_limits(**values: Any) -> Any:
    """:class:`~scheduler.limits.ApiLimits` from option values; a bad one raises InputError naming the option."""
    from scheduler.limits import ApiLimits

    try:
        return ApiLimits(**values)
    except InputError as e:
        field = str(e).split(":", 1)[0]
        raise InputError(f"{_API_LIMIT_OPTIONS.get(field, (field,))[0]}: {str(e).split(':', 1)[1].strip()}") from e


def takers_lead(option: str) -> str:
    """The lead of the help of an option behind shared policy option ``option`` (``deferral``...): the policies
    whose registry entry takes it (:func:`scheduler.policies.takers`), e.g. "windward policy only:"."""
    from scheduler.policies import takers

    names = takers(option)
    if not names:
        return "No registered policy takes this:"
    return f"{', '.join(names)} polic{'y' if len(names) == 1 else 'ies'} only:"


def defer_history_days_option() -> Any:
    """``--defer-history-days`` of ``windward simulate`` and ``windward server`` (the policies that take ``deferral``)."""
    import typer

    return typer.Option(
        0.0, "--defer-history-days",
        help=takers_lead("deferral") + " price work that may wait past the planning horizon from the last DAYS of "
             "observed wind and carbon (scheduler.deferral; 0: off, the default; else 1 to 365). simulate "
             "seeds the history with the DAYS before --start from --energy; a server with the DAYS of its "
             "--energy before now, and keeps what it observes in --state, so a restart resumes with it.",
    )  # fmt: skip


def beyond_age_h_option() -> Any:
    """``--beyond-age-h`` of ``windward simulate`` and ``windward server`` (the policies that take ``deferral``)."""
    import typer

    return typer.Option(
        None, "--beyond-age-h",
        help=takers_lead("deferral") + " work priced past the horizon ages over HOURS instead of the default 24 "
             "(0 < HOURS <= 8760; meant with --defer-history-days: the study's setting is 7 days and 72 h).",
    )  # fmt: skip


def max_defer_h_option() -> Any:
    """``--max-defer-h`` of ``windward simulate`` and ``windward server`` (the policies that take ``deferral``)."""
    import typer

    return typer.Option(
        None, "--max-defer-h",
        help=takers_lead("deferral") + " work priced past the horizon that has been held back HOURS (since submission, "
             "less the work it has done) is priced like work due inside it, so it waits at most about HOURS plus "
             "one horizon (0 < HOURS <= 8760; meant with --defer-history-days; default no bound).",
    )  # fmt: skip


def deferral_options(history_days: float, beyond_age_h: float | None, max_defer_h: float | None = None
                     ) -> tuple[float, float | None, float | None]:
    """The three options checked (:func:`scheduler.deferral.check_deferral_options`): InputError naming one."""
    from scheduler.deferral import check_deferral_options

    return check_deferral_options(history_days, beyond_age_h, max_defer_h)
