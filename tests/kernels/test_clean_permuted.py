"""kernels.plan checks its inputs once and permutes the checked values into the canonical job order
(planner._CLEAN_JOB_FIELDS): that must equal checking the permuted problem, field by field, on a seeded family
of instances (every knob of the family) and on make_problem."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.instances import corpus, make, make_problem
from kernels import planner as P

CASES = [("family", s, k) for s, k in corpus(40, seed=21)] + [("make_problem", 2000 + i, None) for i in range(3)]


@pytest.mark.parametrize("kind,seed,knobs", CASES, ids=[f"{k}-{s}" for k, s, _ in CASES])
def test_permuted_checked_inputs_equal_the_checked_permuted_problem(kind: str, seed: int, knobs: object) -> None:
    pb = make(seed, knobs) if kind == "family" else make_problem(500, 48, seed=seed)
    perm = P.canonical_job_order(pb)
    if perm is None:
        perm = np.arange(np.shape(pb.gpus)[0])[::-1].copy()  # the test still permutes
    c = P._clean_inputs(pb)
    cq = P._clean_inputs(P.permute_jobs(pb, perm))
    assert not isinstance(c, str) and not isinstance(cq, str)
    cp = dataclasses.replace(c, **{f: getattr(c, f)[perm] for f in P._CLEAN_JOB_FIELDS})
    for f in dataclasses.fields(c):
        a, b = np.asarray(getattr(cq, f.name)), np.asarray(getattr(cp, f.name))
        assert a.dtype == b.dtype and np.array_equal(a, b), f.name
