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


def planner_backend(backend: str, device: str, option: str = "--planner-backend") -> dict[str, str]:
    """The optimiser's array backend chosen on the command line, checked, as ``kernels.plan`` keyword
    arguments ``{"backend": ..., "device": ...}``.

    ``option`` names the backend option (``--backend`` for ``windward plan``, ``--planner-backend`` for
    ``simulate`` and ``server``); its device option is the same name with ``device`` for ``backend``. A value
    ``kernels.backend.get_ops`` refuses (unknown backend or device, torch not installed, a CUDA device torch
    does not see) raises :class:`InputError` naming both options, the values, get_ops's reason and what is
    allowed."""
    from kernels.backend import get_ops

    device_option = option.replace("backend", "device")
    try:
        get_ops(backend, device)
    except ValueError as e:
        raise InputError(
            f"{option} {backend!r} {device_option} {device!r}: {e}; allowed: {option} numpy|torch, "
            f"{device_option} cpu|cuda|cuda:N (numpy runs on cpu only; cuda needs a CUDA build of torch that "
            "sees the GPU)"
        ) from e
    return {"backend": backend, "device": device}
