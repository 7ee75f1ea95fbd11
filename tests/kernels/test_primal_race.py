"""Past ``SEARCH_MAX_CELLS`` a cold solve races its first primal try (``kernels.planner.RACE_TRIES``): where
the try at the best prices does not dominate the greedy witness job by job and that try carried past the
witness (``kernels.complete.carry``) or, failing it, the price-order list schedule does, the try without the
quota prices is not built. The plan returned is the one every try gives, except
where that skipped try would have been returned (the documented exception: it had the lower objective and
dominated the witness)."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from benchmarks.instances import corpus, make
from kernels import planner as P

# 9 of the first 20 family instances of seed 5 (the rest add time, not cases): on 0 and 6 the try is skipped
# and the list schedule returned, on 12 skipped and the first try carried past the witness returned (the
# documented exception: every try gives the no-quota try carried, 0.4% lower); on 7 and 13 the only try is
# carried; on 3, 5, 17 and 18 the plan is the first try as built (round 8: the list schedule on 6, 7, 12, 13)
CASES = [make(*c) for i, c in enumerate(corpus(20, seed=5, n_jobs=(20, 40))) if i in (0, 3, 5, 6, 7, 12, 13, 17, 18)]


def test_a_skipped_try_leaves_the_plan_as_every_try_makes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On 9 family instances put past the search limit: the skip happens (on some: the test is not vacuous),
    only where the list schedule is returned, and the raced plan is the plan of every try, cell for cell,
    wherever that plan is not the skipped try's."""
    monkeypatch.setattr(P, "SEARCH_MAX_CELLS", 0)
    skipped = 0
    for pb in CASES:
        monkeypatch.setattr(P, "RACE_TRIES", True)
        raced = kernels.plan(pb)
        monkeypatch.setattr(P, "RACE_TRIES", False)
        full = kernels.plan(pb)
        assert full.diagnostics["primal_skipped"] == []
        miss = raced.diagnostics["primal_skipped"]
        assert miss in ([], ["no_quota"])
        assert raced.diagnostics["primal_candidates"] == full.diagnostics["primal_candidates"] - len(miss)
        skipped += bool(miss)
        if miss:  # skipped only where the first try does not dominate the witness and, carried past it
            # (kernels.complete.carry) or failing that the list schedule, a plan does
            assert raced.diagnostics["primal_variant"] in ("best+carry", "price_list")
            if full.diagnostics["primal_variant"].startswith("no_quota"):
                continue  # the documented exception
        for f in ("run", "power_fraction", "pool"):
            assert np.array_equal(np.asarray(getattr(raced, f)), np.asarray(getattr(full, f))), f
        assert raced.objective == full.objective
        assert raced.diagnostics["primal_variant"] == full.diagnostics["primal_variant"]
    assert skipped >= 2
