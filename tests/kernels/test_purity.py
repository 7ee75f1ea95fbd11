"""kernels/ is pure array code: importing it must not pull in ray, pydantic, torch or scheduler."""

from __future__ import annotations

import subprocess
import sys


def test_import_kernels_imports_no_framework() -> None:
    code = (
        "import sys, kernels\n"
        "import kernels.power, kernels.problem\n"
        "bad = [m for m in ('ray', 'pydantic', 'torch', 'scheduler', 'fastapi', 'logging') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    bad = [m for m in out.stdout.strip().split(",") if m]
    assert bad == [], f"import kernels pulled in {bad}"


def test_kernels_source_has_no_forbidden_imports() -> None:
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "kernels"
    pat = re.compile(r"^\s*(import|from)\s+(ray|pydantic|scheduler|logging|fastapi|requests|httpx|time)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pat.search(p.read_text())]
    assert offenders == []
