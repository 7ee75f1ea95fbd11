"""The prefix-sum acceptance (kernels.planner._prefix_keep*, Ops.prefix_cross), Ops.count_upto and
Ops.where's integer fast path give what their plain definitions give, on every backend, for seeded families
of cases: more rows than one block (Ops.CROSS_BLOCK) and fewer, limits below, at and above the totals, empty
groups, rows in and out of group order, whole-number and float32-watt demands, k below 0 and past the row."""

from __future__ import annotations

import numpy as np
import pytest
from _backends import TORCH_DEVICES  # noqa: E402  (tests/kernels is on sys.path)

from kernels import backend as B
from kernels import planner as P

NP = B.get_ops()
SEEDS = range(40)


def _ops(name: str) -> B.Ops:
    if name == "numpy":
        return NP
    return B.get_ops("torch", name)


BACKENDS = ["numpy"] + list(TORCH_DEVICES)


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A mask, whole-number weights and groups; sizes across the block boundary."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 7, 255, 256, 257, 700, 1500]))
    C = int(rng.integers(1, 30))
    mask = rng.random((n, C)) < rng.uniform(0.05, 0.95)
    w = rng.choice([1, 2, 4, 8, 16, 64, 256], n).astype(np.int64)
    G = int(rng.integers(1, 6))
    grp = rng.integers(0, G, n)
    return mask, w, grp, G


def _ref_keep(x: np.ndarray, lim: np.ndarray) -> np.ndarray:
    return np.cumsum(x.astype(np.float64), 0) <= lim[None, :]


def _limits(rng: np.random.Generator, tot: np.ndarray) -> np.ndarray:
    """Limits below, exactly at and above each column's total."""
    k = rng.integers(0, 3, tot.shape)
    return np.where(k == 0, np.floor(tot * rng.random(tot.shape)), np.where(k == 1, tot, tot + 1.0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_prefix_cross_counts_the_rows_a_full_prefix_keeps(backend: str, seed: int) -> None:
    xp = _ops(backend)
    mask, w, _, _ = _case(seed)
    rng = np.random.default_rng(1000 + seed)
    x = w[:, None] * mask
    lim = _limits(rng, x.sum(0).astype(np.float64))
    want = _ref_keep(x, lim).sum(0)
    got_w = xp.to_numpy(xp.prefix_cross(xp.asarray(mask), xp.asarray(lim), xp.asarray(w)))
    got_x = xp.to_numpy(xp.prefix_cross(xp.asarray(x.astype(np.float64)), xp.asarray(lim)))
    assert np.array_equal(got_w, want)
    assert np.array_equal(got_x, want)
    # float32 watts times GPU counts (what the facility acceptance sums)
    watts = (rng.uniform(50, 1500, x.shape[0]).astype(np.float32) * w.astype(np.float32))
    d = np.where(mask, watts[:, None], np.float32(0))
    limw = _limits(rng, d.astype(np.float64).sum(0))
    keep = xp.to_numpy(P._prefix_keep(xp.asarray(d), xp.asarray(limw), 0.0, xp))
    assert np.array_equal(keep, _ref_keep(d, limw))
    keep_w = xp.to_numpy(P._prefix_keep_w(xp.asarray(watts), xp.asarray(mask), xp.asarray(limw), 0.0, xp))
    assert np.array_equal(keep_w, _ref_keep(d, limw))


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_grouped_prefix_keep_is_the_prefix_per_group(backend: str, seed: int, table: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways (``table``: every group's prefix in one table, up to ``PREFIX_GROUPED_MAX_CELLS``; else one
    ``prefix_cross`` per group) keep what the plain definition keeps, group by group."""
    monkeypatch.setattr(P, "PREFIX_GROUPED_MAX_CELLS", 10**9 if table else -1)
    xp = _ops(backend)
    mask, w, grp, G = _case(seed)
    rng = np.random.default_rng(2000 + seed)
    tot = np.stack([(w[grp == k, None] * mask[grp == k]).sum(0) for k in range(G)]).astype(np.float64)
    caps = _limits(rng, tot) - 0.5 * rng.random(tot.shape)  # fractional caps: the tolerance decides
    tol = 1e-3
    want = np.ones(mask.shape, bool)
    for k in range(G):  # the plain definition, group by group
        rows = np.flatnonzero(grp == k)
        want[rows] = _ref_keep(w[rows, None] * mask[rows], caps[k] + tol)
    got = xp.to_numpy(P._prefix_keep_grouped(xp.asarray(w), xp.asarray(mask), xp.asarray(grp), xp.asarray(caps),
                                             tol, xp))
    assert np.array_equal(got, want)
    o = np.argsort(grp, kind="stable")  # the same rows given in group order
    got_s = xp.to_numpy(P._prefix_keep_grouped(xp.asarray(w[o]), xp.asarray(mask[o]), xp.asarray(grp[o]),
                                               xp.asarray(caps), tol, xp, is_sorted=True))
    assert np.array_equal(got_s, want[o])


@pytest.mark.parametrize("seed", SEEDS)
def test_where_fast_path_is_np_where(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 50)), int(rng.integers(1, 30)))
    for dt in (np.int8, np.int32, np.int64, np.uint8, np.bool_):
        a = rng.integers(-100, 100, shape).astype(dt)
        for cshape in (shape, (shape[0], 1), (1, shape[1])):
            c = rng.random(cshape) < 0.5
            for b in (0, False):
                got, want = NP.where(c, a, b), np.where(c, a, b)
                assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
            if dt in (np.int8, np.uint8):  # two byte tables (wrap-around arithmetic), any broadcast
                for bshape in (shape, (shape[0], 1), (1, shape[1])):
                    b8 = rng.integers(-128, 128, bshape).astype(np.int16).astype(dt)
                    a8 = rng.integers(-128, 128, shape).astype(np.int16).astype(dt)
                    for x, y in ((a8, b8), (b8, a8)):
                        got, want = NP.where(c, x, y), np.where(c, x, y)
                        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("seed", SEEDS)
def test_count_nonzero_by_byte_lanes_is_numpys(seed: int) -> None:
    rng = np.random.default_rng(4000 + seed)
    T = int(rng.choice([8, 16, 96, 192, 2040, 2048, 2056, 7, 100]))
    m = rng.random((int(rng.integers(1, 300)), T)) < rng.random()
    for mm in (m, m[:, ::-1], np.asfortranarray(m)):
        got, want = NP.count_nonzero(mm, 1), np.count_nonzero(mm, axis=1)
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_count_upto_is_the_running_count_within_k(backend: str, seed: int) -> None:
    """Ops.count_upto (the list schedule's first-k cells) against the float running count, k from below 0
    to past the row length, whole and fractional; on numpy by words and by bytes alike
    (``COUNT_WORDS_MIN_CELLS`` 0 and past the table: every table one way, then the other)."""
    xp = _ops(backend)
    rng = np.random.default_rng(3000 + seed)
    n, T = int(rng.integers(1, 400)), int(rng.choice([1, 5, 8, 32, 96, 192, 300]))
    m = rng.random((n, T)) < rng.uniform(0.05, 0.95)
    k = np.where(rng.random(n) < 0.8, rng.integers(-2, T + 3, n), rng.uniform(-2, T + 3, n)).astype(np.float64)
    want = np.cumsum(m, 1).astype(np.float64) <= k[:, None]
    got = xp.to_numpy(xp.count_upto(xp.asarray(m), xp.asarray(k)))
    assert np.array_equal(got, want)
    if backend == "numpy":
        for cells in (0, n * T + 1):  # every table by words; every table by bytes
            ops = B.Ops()
            ops.COUNT_WORDS_MIN_CELLS = cells
            assert np.array_equal(ops.count_upto(m, k), want), cells


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_smallest_k_is_a_stable_argsorts_first_k(backend: str, seed: int) -> None:
    """planner._smallest_k (the fill's most valuable cells) against the stable argsort's first k cells, with
    many tied keys, infinite keys and k from 0 to past the row."""
    xp = _ops(backend)
    rng = np.random.default_rng(5000 + seed)
    n, T = int(rng.integers(1, 300)), int(rng.choice([1, 4, 96, 192]))
    key = rng.integers(-5, 5, (n, T)).astype(np.float32) * rng.choice([1.0, 0.25], (n, T)).astype(np.float32)
    key[rng.random((n, T)) < 0.3] = np.inf
    k = rng.integers(0, T + 2, n).astype(np.float64)
    pos = np.empty((n, T), np.int64)
    np.put_along_axis(pos, np.argsort(key, 1, kind="stable"), np.arange(T)[None, :].repeat(n, 0), 1)
    want = pos < k[:, None]
    got = xp.to_numpy(P._smallest_k(xp, xp.asarray(key), xp.asarray(k)))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_pick_takes_on_time_cells_then_late_ones(backend: str, seed: int) -> None:
    """listsched._pick (a preemptible row's proposal and its trim) against its plain definition, row by row:
    in slot order, the first k_on on-time cells (slots before the deadline), then late cells until k_all
    are taken; rows whose deadline is the horizon end, rows with no late cell to take, k past the row and
    below 1, slot orders that are and are not the identity."""
    from kernels import listsched as L

    xp = _ops(backend)
    rng = np.random.default_rng(7000 + seed)
    n, T = int(rng.integers(1, 300)), int(rng.choice([1, 8, 96, 192]))
    ordp = np.arange(T) if seed % 3 == 0 else rng.permutation(T)
    F = rng.random((n, T)) < rng.uniform(0.05, 0.95)  # feasible cells, in slot order (column k: slot ordp[k])
    dl = np.where(rng.random(n) < 0.5, T, rng.integers(0, T + 1, n)).astype(np.int64)
    k_on = rng.integers(0, T + 2, n).astype(np.float64)
    k_all = rng.integers(0, T + 2, n).astype(np.float64)  # above or below k_on
    k_all[rng.random(n) < 0.2] = 0.0
    late = ordp[None, :] >= dl[:, None]  # the late cells, in the slot order
    take, n_late = L._pick(xp, xp.asarray(F), xp.asarray(late), xp.asarray(k_on), xp.asarray(k_all))
    want = np.zeros((n, T), bool)
    want_late = np.zeros(n)
    for j in range(n):  # rows (the definition)
        on = [k for k in range(T) if F[j, k] and ordp[k] < dl[j]][: int(k_on[j])]
        late = [k for k in range(T) if F[j, k] and ordp[k] >= dl[j]][: max(int(k_all[j]) - len(on), 0)]
        want[j, on + late] = True
        want_late[j] = len(late)
    assert np.array_equal(xp.to_numpy(take), want)
    assert np.array_equal(xp.to_numpy(n_late), want_late)
