"""The layers of DESIGN section 3, checked on the source (every import statement, top level or inside a
function): kernels imports nothing of scheduler; only scheduler/executors/ imports ray; no module of the
scheduler imports the CLI (scheduler.cli is the entry point: ``windward = scheduler.cli:main``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``path``; relative imports resolved against the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out += [(node.lineno, mod)] + [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offenders(files: list[Path], banned: tuple[str, ...], allowed_under: tuple[str, ...] = (),
              root: Path = ROOT) -> list[str]:  # fmt: skip
    bad = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        if any(rel.startswith(a) for a in allowed_under):
            continue
        for line, mod in imports(f, root):
            if any(mod == b or mod.startswith(b + ".") for b in banned):
                bad.append(f"{rel}:{line} imports {mod}")
    return sorted(set(bad))


def test_kernels_import_nothing_of_scheduler() -> None:
    assert offenders(modules("kernels"), ("scheduler",)) == []


def test_only_executors_import_ray() -> None:
    files = modules("scheduler") + modules("kernels")
    assert offenders(files, ("ray",), allowed_under=("scheduler/executors/",)) == []


def test_nothing_of_the_scheduler_imports_the_cli() -> None:
    assert offenders(modules("scheduler") + modules("kernels"), ("scheduler.cli",),
                     allowed_under=("scheduler/cli/",)) == []  # fmt: skip


@pytest.mark.parametrize(
    ("source", "banned", "expect"),
    [
        ("import ray\n", ("ray",), True),
        ("def f():\n    from ray.util import x\n", ("ray",), True),
        ("import rayon\n", ("ray",), False),
        ("from scheduler.cli.options import parse_utc\n", ("scheduler.cli",), True),
        ("from scheduler import cli\n", ("scheduler.cli",), True),
        ("from .cli import main\n", ("scheduler.cli",), True),
        ("from scheduler.client import x\n", ("scheduler.cli",), False),
    ],
)
def test_the_check_sees_every_form_of_import(tmp_path: Path, source: str, banned: tuple[str, ...],
                                             expect: bool) -> None:  # fmt: skip
    """The checker itself can fail: each import form it must catch is caught, and look-alikes are not."""
    pkg = tmp_path / "scheduler"
    pkg.mkdir()
    f = pkg / "mod.py"
    f.write_text(source)
    assert bool(offenders([f], banned, root=tmp_path)) is expect
