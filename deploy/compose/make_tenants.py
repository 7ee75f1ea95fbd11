"""Make a tenants file with fresh random tokens for deploy/compose (or any first deployment).

    python deploy/compose/make_tenants.py deploy/compose/secrets

writes ``tenants.yaml`` (the demo tenants' names, quotas and clearances, each with the sha256 of a new
random token: DESIGN section 7, what ``windward server --tenants`` reads) and ``tokens.env`` (``NAME=token``
lines, mode 0600: hand each tenant its own). The plain tokens are never written into tenants.yaml.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "scheduler" / "sites" / "demo-tenants.yaml"


def make(out_dir: Path, template: Path = TEMPLATE) -> dict[str, str]:
    """Write ``out_dir/tenants.yaml`` and ``out_dir/tokens.env``; return name -> token."""
    doc = yaml.safe_load(template.read_text())
    tokens: dict[str, str] = {}
    for section in ("tenants", "operators"):
        for entry in doc.get(section) or []:
            tok = secrets.token_urlsafe(32)
            tokens[entry["name"]] = tok
            entry["token_sha256"] = hashlib.sha256(tok.encode()).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tenants.yaml").write_text(
        "# Made by deploy/compose/make_tenants.py: sha256 of random tokens (the tokens are in tokens.env).\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    env = out_dir / "tokens.env"
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for name, tok in tokens.items():
            f.write(f"{name.upper().replace('-', '_')}_TOKEN={tok}\n")
    return tokens


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, help="directory for tenants.yaml and tokens.env (created)")
    a = ap.parse_args(argv)
    tokens = make(a.out_dir)
    sys.stdout.write(f"wrote {a.out_dir / 'tenants.yaml'} and {a.out_dir / 'tokens.env'} ({len(tokens)} tokens)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
