"""The optimiser's array backend (numpy or torch, on cpu or cuda), checked once at the edge.

Used by every entry that takes a backend choice (``windward plan``, ``simulate``, ``server`` and
:class:`scheduler.service.Service` used as a library), so that a backend that cannot run is refused before
anything is created, with one message. Lives outside ``scheduler.cli`` so that no module of the scheduler
imports the CLI (tests/unit/test_layering.py).
"""

from __future__ import annotations

from scheduler.errors import InputError


def planner_backend(backend: str, device: str, option: str = "--planner-backend") -> dict[str, str]:
    """The optimiser's array backend, checked, as ``kernels.plan`` keyword arguments
    ``{"backend": ..., "device": ...}``.

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
