"""schemathesis against the real server's /openapi.json: no 5xx on any operation, for a tenant token, an
operator token and no token. Bounded: a few examples per operation (run as a plain pytest test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from server_process import auth, start_server

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 12


def test_openapi_fuzz_no_server_errors(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "state.sqlite", tmp_path / "server.log", "--tick-seconds", "5")
    try:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        assert len(ops) >= 10
        seen: list[tuple[str, str, int]] = []
        for op in ops:

            @given(case=op.as_strategy())
            @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)  # fmt: skip
            def check(case: schemathesis.Case) -> None:
                for headers in (auth("science"), auth("ops"), {}):
                    resp = case.call(headers=headers, base_url=srv.url)
                    seen.append((case.method, case.path, resp.status_code))
                    assert resp.status_code < 500, (case.method, case.formatted_path, resp.status_code, resp.text[:300])
                    case.validate_response(resp, checks=(not_a_server_error,))

            check()
        assert len(seen) >= len(ops) * 3
        assert srv.proc.poll() is None  # still alive
    finally:
        log = srv.log()
        srv.kill()
    assert "Traceback" not in log, log[-3000:]
