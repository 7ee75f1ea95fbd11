"""The client CLI (``windward submit / status / queue / cancel / usage / congestion``) run as real
subprocesses against a real ``windward server`` on loopback: token from ``WINDWARD_TOKEN`` and from a
config file, ``--json`` output parsed, readable tables, bad specs refused with exit code 2 naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import REPO, ServerProcess, start_server

pytestmark = pytest.mark.integration

WINDWARD = str(Path(sys.executable).parent / "windward")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("cli-srv")
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "3")
    yield s
    s.kill()


def run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``windward ARGS`` with only the environment given (no token leaks in from the caller's shell)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WINDWARD_")}
    full = base | {"COLUMNS": "220", "NO_COLOR": "1", "HOME": str(cwd)} | env
    return subprocess.run([WINDWARD, *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=60)


def tenant_env(server: ServerProcess, tenant: str) -> dict[str, str]:
    return {"WINDWARD_SERVER": server.url, "WINDWARD_TOKEN": f"windward-dev-{tenant}"}


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_submit_status_queue_cancel_with_env_token(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "science")
    # 30 days: the server's clock runs 300x (--tick-seconds 3), and a 2-hour job (24 s of wall time) finished
    # before the last of the CLI calls below on a loaded machine (each starts a Python process: seconds)
    spec = write_spec(tmp_path / "job.yaml", "name: cli-train\nkind: training\ngpus: 2\nduration_s: 2592000\n")
    r = run(["submit", str(spec), "--json"], env)
    assert r.returncode == 0, r.stderr
    sub = json.loads(r.stdout)
    jid = sub["id"]
    assert sub["created"] is True and sub["job"]["name"] == "cli-train" and sub["job"]["gpus"] == 2
    # the same key twice: one job
    r1 = run(["submit", str(spec), "--idempotency-key", "cli-k1"], env)
    r2 = run(["submit", str(spec), "--idempotency-key", "cli-k1"], env)
    assert r1.returncode == r2.returncode == 0
    assert r1.stdout.split()[0] == r2.stdout.split()[0] and "already submitted" in r2.stdout

    st = run(["status", jid, "--json"], env)
    assert st.returncode == 0, st.stderr
    view = json.loads(st.stdout)
    assert view["id"] == jid and view["tenant"] == "science" and view["state"] in ("queued", "running")
    table = run(["status", jid], env).stdout
    assert jid in table and all(col in table for col in ("tenant", "state", "gpus", "progress", "kg CO2"))

    q = run(["queue", "--json"], env)
    assert q.returncode == 0, q.stderr
    qd = json.loads(q.stdout)
    ids = {j["id"] for j in qd["running"] + qd["queued"]}
    assert jid in ids and qd["counts"]["running"] + qd["counts"]["queued"] == len(ids)
    assert all(j["tenant"] == "science" for j in qd["running"] + qd["queued"])  # only its own jobs
    qt = run(["queue"], env).stdout
    assert "queue:" in qt and jid in qt

    c = run(["cancel", jid, "--json"], env)
    assert c.returncode == 0, c.stderr
    cv = json.loads(c.stdout)
    assert cv["id"] == jid and (cv["state"] == "cancelled" or cv["cancel_requested"])
    ct = run(["cancel", jid], env)
    assert ct.returncode == 0 and ct.stdout.startswith(f"{jid}: ")

    # another tenant cannot see it: 404, exit code 3 (rejected by the server), the id not confirmed to exist
    other = run(["status", jid], tenant_env(server, "companies"))
    assert other.returncode == 3 and "HTTP 404" in other.stderr


def test_usage_and_congestion_with_config_file_token(server: ServerProcess, tmp_path: Path) -> None:
    ops_cfg = tmp_path / "ops.toml"
    ops_cfg.write_text(f'server = "{server.url}"\ntoken = "windward-dev-ops"\n')
    ops = {"WINDWARD_CONFIG": str(ops_cfg)}
    u = run(["usage", "--json"], ops)
    assert u.returncode == 0, u.stderr
    tenants = {t["tenant"]: t for t in json.loads(u.stdout)["tenants"]}
    assert set(tenants) == {"defence", "science", "education", "public-services", "companies"}
    assert tenants["science"]["commitment"]["period"] == "day"
    ut = run(["usage"], ops).stdout
    assert "usage as of" in ut and "science" in ut and "fair share" in ut

    # the default config file (~/.config/windward/config.toml) is read too: HOME is tmp_path
    home_cfg = tmp_path / ".config" / "windward" / "config.toml"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text(f'server = "{server.url}"\ntoken = "windward-dev-education"\n')
    mine = run(["usage", "--json"], {}, cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    assert [t["tenant"] for t in json.loads(mine.stdout)["tenants"]] == ["education"]
    # the environment wins over the config file
    env_wins = run(["usage", "--json"], {"WINDWARD_TOKEN": "windward-dev-science"}, cwd=tmp_path)
    assert [t["tenant"] for t in json.loads(env_wins.stdout)["tenants"]] == ["science"]

    # congestion: the operator announces one (far in the future: it does not disturb other tests)
    r = run(["congestion", "--cap-mw", "0.02", "--from", "2099-01-01T00:00:00Z", "--to", "2099-01-01T06:00:00Z",
             "--reason", "cli test", "--json"], ops)  # fmt: skip
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["cap_mw"] == 0.02 and ev["created_by"] == "ops" and ev["start_utc"].startswith("2099-01-01T00:00")
    lst = run(["congestion", "--json"], ops)
    assert any(e["id"] == ev["id"] for e in json.loads(lst.stdout)["events"])
    table = run(["congestion"], ops).stdout
    assert "congestion events" in table and "cli test" in table
    # a tenant may list, not announce: 403, exit code 3
    t = run(["congestion", "--cap-mw", "1", "--from", "2099-01-01T00:00:00Z", "--to", "2099-01-02T00:00:00Z"],
            tenant_env(server, "science"))  # fmt: skip
    assert t.returncode == 3 and "HTTP 403" in t.stderr
    # a missing --to is refused before anything is sent
    m = run(["congestion", "--cap-mw", "1", "--from", "2099-01-01T00:00:00Z"], ops)
    assert m.returncode == 2 and "--to" in m.stderr


def test_bad_spec_exits_2_and_refusals_by_the_server_exit_3(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "companies")
    before = json.loads(run(["status", "--json"], env).stdout)["jobs"]
    cases = {
        "gpus": "name: bad\ngpus: -1\nduration_s: 60\n",
        "duration_s": "name: bad\ngpus: 1\nduration_s: soon\n",
        "colour": "name: bad\ngpus: 1\nduration_s: 60\ncolour: blue\n",
        "kind": "name: bad\nkind: mining\ngpus: 1\nduration_s: 60\n",
        # round 25: a priority outside JOB_PRIORITY_MIN..JOB_PRIORITY_MAX is refused here
        "priority": "name: bad\ngpus: 1\nduration_s: 60\npriority: 101\n",
    }
    for fieldname, text in cases.items():
        spec = write_spec(tmp_path / f"bad-{fieldname}.yaml", text)
        r = run(["submit", str(spec)], env)
        assert r.returncode == 2, (fieldname, r.stdout, r.stderr)
        assert fieldname in r.stderr and str(spec) in r.stderr, (fieldname, r.stderr)
    # refused by the server (sovereignty): exit code 3 and the field named once
    spec = write_spec(tmp_path / "secret.yaml", "name: s\ngpus: 1\nduration_s: 60\nrequires: {clearance: secret}\n")
    r = run(["submit", str(spec)], env)
    assert r.returncode == 3 and "HTTP 422" in r.stderr and "requires.clearance" in r.stderr
    assert "requires.clearance: requires.clearance" not in r.stderr
    # over the tenant's quota: the message names the field once (it was "gpus: gpus: 64 is above ...")
    spec = write_spec(tmp_path / "wide.yaml", "name: w\ngpus: 64\nduration_s: 60\n")
    r = run(["submit", str(spec)], env)
    assert r.returncode == 3 and "gpus: 64 is above" in r.stderr and "gpus: gpus" not in r.stderr, r.stderr
    # a selector no pool's labels hold: the server names the field and this site's labels (round 25)
    spec = write_spec(tmp_path / "tpu.yaml", "name: t\ngpus: 1\nduration_s: 60\npool: gpu=tpu\n")
    r = run(["submit", str(spec)], env)
    assert r.returncode == 3 and "HTTP 422" in r.stderr and "no pool has gpu=tpu" in r.stderr, r.stderr
    assert "gpu=h100" in r.stderr and "jurisdiction=eu|nl" in " ".join(r.stderr.split()), r.stderr
    # nothing was half-applied
    assert json.loads(run(["status", "--json"], env).stdout)["jobs"] == before
    # a wrong token, and no token at all
    ok = write_spec(tmp_path / "ok.yaml", "name: ok\ngpus: 1\nduration_s: 60\n")
    r = run(["submit", str(ok)], {"WINDWARD_SERVER": server.url, "WINDWARD_TOKEN": "nope"})
    assert r.returncode == 3 and "HTTP 401" in r.stderr
    r = run(["queue"], {"WINDWARD_SERVER": server.url, "WINDWARD_CONFIG": str(tmp_path / "absent.toml")})
    assert r.returncode == 2 and "no token" in r.stderr


def test_exit_codes_server_down_usage_version_and_help(tmp_path: Path) -> None:
    """0 ok, 1 server unreachable, 2 usage (bad flag, no token), documented in --help; --version."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = {"WINDWARD_SERVER": f"http://127.0.0.1:{port}", "WINDWARD_TOKEN": "windward-dev-science"}
    for args in (["queue"], ["status"], ["usage"], ["pools"]):
        r = run(args, down)
        assert r.returncode == 1 and "cannot reach" in r.stderr, (args, r.returncode, r.stderr)
    r = run(["queue", "--no-such-flag"], down)
    assert r.returncode == 2, r.stderr
    v = run(["--version"], {})
    from scheduler import __version__

    assert v.returncode == 0 and v.stdout.strip() == f"windward {__version__}"
    h = run(["--help"], {})
    text = " ".join(h.stdout.replace("│", " ").split())  # the help box wraps lines
    assert h.returncode == 0 and all(code in text for code in ("0 ok;", "1 server", "2 usage", "3 rejected", "4 a waited"))
