"""Where the shared real data lives. It is read in place and never copied into the project."""

from __future__ import annotations

import os
from pathlib import Path

from scheduler.errors import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """``$WINDWARD_DATA_DIR`` if set, else the first ``shared/data`` beside the repository or above it."""
    env = os.environ.get("WINDWARD_DATA_DIR")
    if env:
        p = Path(env)
        if not p.is_dir():
            raise DataNotFoundError(f"WINDWARD_DATA_DIR={env!r} is not a directory")
        return p
    for base in [REPO_ROOT, *REPO_ROOT.parents]:
        cand = base / "shared" / "data"
        if cand.is_dir():
            return cand
    raise DataNotFoundError(
        "shared data not found: set WINDWARD_DATA_DIR or place the data at ../shared/data beside the checkout"
    )


def shared_data_available() -> bool:
    try:
        shared_data_dir()
    except DataNotFoundError:
        return False
    return True


def nl_energy_csv() -> Path:
    return shared_data_dir() / "energy" / "nl-2021-2023-hourly.csv"


def itp_trace_csv(cluster: str = "cluster04") -> Path:
    return shared_data_dir() / "traces" / "itp" / f"{cluster}.csv"


def azure_llm_csv() -> Path:
    return shared_data_dir() / "traces" / "azure-llm" / "AzureLLMInferenceTrace_conv.csv"
