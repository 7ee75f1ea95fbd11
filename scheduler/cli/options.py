"""Parsing of option values shared by the command modules (not itself a command module)."""

from __future__ import annotations

from datetime import UTC, datetime

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
