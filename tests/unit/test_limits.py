"""Issue 16: the per-tenant token bucket, the limits' own validation, and the error echo that can never fail
(logic only: the real server's behaviour is in tests/integration/test_server_limits.py)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.api import safe_echo
from scheduler.errors import InputError
from scheduler.limits import ApiLimits, TokenBuckets


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("rate", "burst"), [(1.0, 1), (5.0, 10), (200.0, 400), (0.5, 3)])
def test_token_bucket_burst_then_rate(rate: float, burst: int) -> None:
    clock = _Clock()
    b = TokenBuckets(rate, burst, clock)
    assert all(b.take("a") == 0.0 for _ in range(burst))  # a full bucket
    wait = b.take("a")
    assert wait == pytest.approx(1.0 / rate)  # empty: the wait for one token
    assert b.take("other") == 0.0  # per key
    clock.t += 1.0 / rate
    assert b.take("a") == 0.0  # refilled by one
    clock.t += 1e6
    assert sum(b.take("a") == 0.0 for _ in range(burst + 5)) == burst  # never above the burst


def test_token_bucket_rate_zero_is_off() -> None:
    b = TokenBuckets(0.0, 1, _Clock())
    assert all(b.take("a") == 0.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_body_bytes", 0), ("max_header_bytes", -1), ("max_queued_per_tenant", True), ("submit_burst", 1.5),
     ("submit_rate_per_s", math.nan), ("submit_rate_per_s", -1.0), ("submit_rate_per_s", math.inf)],
)  # fmt: skip
def test_limits_refuse_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        ApiLimits(**{field: value})  # type: ignore[arg-type]


_any = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()),
    lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner), st.tuples(inner)),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(v=st.one_of(_any, st.integers(min_value=10**30, max_value=10**500), st.sampled_from([math.nan, math.inf])))
def test_safe_echo_always_encodes(v: object) -> None:
    out = safe_echo(v)
    text = json.dumps(out, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate survives
    assert len(text) < 20_000


def test_safe_echo_deep_and_huge() -> None:
    deep: list = []
    cur = deep
    for _ in range(10_000):
        cur.append([])
        cur = cur[0]
    assert json.dumps(safe_echo(deep))
    assert "bits" in safe_echo(10**400)
    assert safe_echo(float("nan")) == "nan" and safe_echo("\ud800") == "\\ud800"


@pytest.mark.parametrize(("rate", "burst", "seed"), [(1.0, 1, 0), (5.0, 10, 1), (0.5, 3, 2), (200.0, 400, 3)])
def test_token_bucket_refund_gives_back_a_taken_token_never_above_the_burst(rate: float, burst: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    clock = _Clock()
    b = TokenBuckets(rate, burst, clock)
    taken = rng.randint(1, burst)
    assert all(b.take("a") == 0.0 for _ in range(taken))
    for _ in range(taken):
        b.refund("a")  # each taken token comes back (retries of accepted jobs are not new work)
    assert sum(b.take("a") == 0.0 for _ in range(burst + 3)) == burst  # a full bucket again, not more
    for _ in range(burst + 5):
        b.refund("a")
    assert sum(b.take("a") == 0.0 for _ in range(burst + 3)) == burst  # refunds never exceed the burst
    b.refund("never-taken")  # a key that took nothing has nothing to get back
    assert sum(b.take("never-taken") == 0.0 for _ in range(burst + 3)) == burst
    TokenBuckets(0.0, 1, clock).refund("a")  # off: a no-op
