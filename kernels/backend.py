"""A small array namespace so that the planner runs THE SAME code on numpy and on torch (CPU or CUDA).

The planner (price search, certified bound AND plan construction) is written against :class:`Ops`: array
functions with numpy names and numpy semantics. ``get_ops("numpy")`` is the default; ``get_ops("torch",
device)`` imports torch lazily (``import kernels`` never imports torch). Only the operations the planner
needs are here; tests/kernels/test_backend.py checks each against numpy on random inputs. Where the best
way differs (a per-class loop of searches on numpy, one padded batched search on torch; einsum on numpy, a
matrix product on torch) the results are the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:  # np.einsum's own kernel: np.einsum without ``optimize`` or ``out`` returns exactly this call's result, after a
    # Python wrapper and a dispatch that cost about as much as the sum on the corpus's (<= 32 x 32) tables
    from numpy._core._multiarray_umath import c_einsum as _einsum
except ImportError:  # (another numpy layout: the public function, the same numbers)
    _einsum = np.einsum


# np.where's and np.concatenate's own C functions, without the __array_function__ dispatch in front of them (its
# Python-level relevant-arguments call: ~0.5-1 us of a 5-7 us call on the power search's small tables; round 19,
# H2); the same function, so the same results (another numpy without them: the public functions)
_where = getattr(np.where, "_implementation", np.where)
_concat = getattr(np.concatenate, "_implementation", np.concatenate)
_min = np.minimum.reduce  # (an array's min without ndarray.min's Python-level wrapper)
_max = np.maximum.reduce  # (and its max)


def _cumsum_rows(a: Any, dtype: Any = None) -> Any:
    """``np.cumsum(a, axis=0, dtype=dtype)`` of a 2-D array, accumulated along the rows of its transposed
    contiguous copy (numpy's accumulate along axis 0 walks strided memory: 2x slower on a 20,000 x 192 int
    prefix table here). The same sequence of additions per column: the same sums, bit for bit; the result
    is the transposed view (Fortran order)."""
    return np.cumsum(np.ascontiguousarray(a.T), axis=1, dtype=dtype).T


class Ops:
    """numpy implementation; :class:`TorchOps` overrides what differs."""

    name = "numpy"
    device = "cpu"
    f32: Any = np.float32
    f64: Any = np.float64
    i8: Any = np.int8
    i32: Any = np.int32
    i64: Any = np.int64
    bool_: Any = np.bool_

    # -- creation / transfer
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return np.zeros(shape, dtype=dtype)

    def full(self, shape: Any, value: float, dtype: Any) -> Any:
        return np.full(shape, value, dtype=dtype)

    def arange(self, n: int, dtype: Any = None) -> Any:
        return np.arange(n, dtype=dtype if dtype is not None else np.int64)

    def astype(self, a: Any, dtype: Any) -> Any:
        return a.astype(dtype, copy=False)

    def copy(self, a: Any) -> Any:
        return a.copy()

    # -- elementwise / reductions
    def where(self, c: Any, a: Any, b: Any) -> Any:
        # both fast paths below take an integer or boolean array ``a`` and a boolean mask: anything else (a
        # float table, most calls) goes to np.where after one test (the tests of both paths cost ~1-2 us a
        # call, a quarter of a small table's np.where)
        if not (isinstance(a, np.ndarray) and a.dtype.kind in "biu" and isinstance(c, np.ndarray)
                and c.dtype == np.bool_):
            return _where(c, a, b)
        # an integer or boolean array kept where a boolean mask holds, zero elsewhere: a product (the same
        # values and dtype as np.where, 5-7x faster on a (J, T) int8 table; np.where has no SIMD path)
        if type(b) in (int, bool) and not b:
            if a.dtype == np.bool_:
                if type(b) is bool:
                    return a & c
            elif np.result_type(a, b) == a.dtype:
                return a * c
        if isinstance(b, np.ndarray) and a.dtype == b.dtype and a.dtype in (np.int8, np.uint8):
            # two byte tables: b + (a - b) * c in wrap-around byte arithmetic is a or b exactly (3-4x np.where)
            return b + (a - b) * c
        return _where(c, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b)

    def cumsum(self, a: Any, axis: int) -> Any:
        ax = axis % a.ndim
        if a.ndim == 2 and ax == 0 and (a.shape[0] > 1024 or a.dtype.kind != "f"):
            return _cumsum_rows(a)
        if ax == a.ndim - 1 or a.ndim < 2 or a.shape[ax] > 1024 or a.dtype.kind != "f":
            return a.cumsum(axis=axis)  # (np.cumsum's own call, without its Python wrapper)
        # along an outer axis numpy's accumulate walks strided memory (5 ms for a 10 x 192 x 256 table on
        # these machines); adding whole slices in a loop is the same sequence of sums, 8x faster
        out = np.empty_like(a)
        o, src = np.moveaxis(out, ax, 0), np.moveaxis(a, ax, 0)
        if o.shape[0]:
            o[0] = src[0]
        for i in range(1, o.shape[0]):  # along the axis (slots: a few hundred)
            np.add(o[i - 1], src[i], out=o[i])
        return out

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return a.sum(axis=axis)

    def concatenate(self, arrs: list[Any], axis: int = 0) -> Any:
        return _concat(arrs, axis=axis)

    def stack(self, arrs: list[Any], axis: int = 0) -> Any:
        # arrays of one rank: each given the new axis as a view and joined (np.stack's Python-level checks and
        # expand_dims cost ~2x the join on the corpus's small tables; the same values and dtype)
        nd = arrs[0].ndim if arrs and isinstance(arrs[0], np.ndarray) else -1
        if nd >= 0 and all(isinstance(x, np.ndarray) and x.ndim == nd for x in arrs):  # (a handful)
            ax = axis % (nd + 1)
            at = (slice(None),) * ax + (None,)
            return _concat([x[at] for x in arrs], ax)  # (the arrays)
        return np.stack(arrs, axis=axis)

    def swapaxes(self, a: Any, i: int, j: int) -> Any:
        return np.swapaxes(a, i, j)  # (a view)

    def flip(self, a: Any, axis: int) -> Any:
        # (the reversed view np.flip returns, without its Python-level axis normalisation)
        return a[(slice(None),) * (axis % a.ndim) + (slice(None, None, -1),)]

    # -- indexing
    def searchsorted(self, sorted_1d: Any, values: Any) -> Any:
        """Number of entries of ``sorted_1d`` strictly below each value (numpy ``side='left'``)."""
        return sorted_1d.searchsorted(values, side="left")  # (np.searchsorted's call, without its wrapper)

    def take(self, a: Any, idx: Any) -> Any:
        """Flat gather: ``a.ravel()[idx]``."""
        return a.reshape(-1).take(idx)  # (np.take's call, without its wrapper)

    def scatter_add(self, n: int, idx: Any, weights: Any, dtype: Any) -> Any:
        """``out[idx] += weights`` over a flat zero array of length ``n``."""
        return np.bincount(idx, weights=weights, minlength=n).astype(dtype, copy=False)[:n]

    def argsort(self, a: Any, axis: int = -1) -> Any:
        return a.argsort(axis=axis, kind="stable")  # (np.argsort's call, without its wrapper)

    def sort(self, a: Any, axis: int = -1) -> Any:
        """The values sorted along ``axis`` (ascending)."""
        return np.sort(a, axis=axis)

    def synchronize(self) -> None:
        return None

    # -- used by the plan construction (kernels.planner._primal and its steps)
    def empty(self, shape: Any, dtype: Any) -> Any:
        return np.empty(shape, dtype=dtype)

    def ones(self, shape: Any, dtype: Any) -> Any:
        return np.ones(shape, dtype=dtype)

    def nonzero(self, m: Any) -> Any:
        """Indices of the true entries of a 1-d mask (int64)."""
        if isinstance(m, np.ndarray) and m.ndim == 1:  # (the array's own method: np.flatnonzero's ravel and
            return m.nonzero()[0]                       # Python wrapper cost ~5x its work on these masks)
        return np.flatnonzero(m)

    def index(self, a: Any) -> Any:
        """``a`` usable as an index array (numpy takes int8 indices as they are; torch needs int64)."""
        return a

    #: :meth:`take_along` gathers by flat positions from this many indices (below it the fancy index costs less
    #: than the flat positions and the check that no index is negative; round 19, H2, alternating at load ~4:
    #: (30, 180) by (30, 180) 35.9 -> 29.1 us, (30, 30, 6) by (30, 30, 1) 11.6 -> 10.0 us, (30, 30) by (30, 1)
    #: 5.3 -> 8.1 us)
    TAKE_FLAT_MIN = 128

    def take_along(self, a: Any, idx: Any, axis: int) -> Any:
        # along the last axis with the same leading shape (every call in the planner): one fancy index on
        # the (rows, m) view, the same values as np.take_along_axis at about 0.6x its cost on the small
        # tables of the power search, where its Python-level index building dominated (round 11, H1); from
        # ``TAKE_FLAT_MIN`` indices, none negative, each plus its row's first flat position, one np.take
        nd = a.ndim
        if (nd >= 2 and idx.ndim == nd and axis in (-1, nd - 1) and a.shape[:-1] == idx.shape[:-1]
                and idx.dtype.kind in "iu"):
            m = a.shape[-1]
            if idx.size >= self.TAKE_FLAT_MIN and _min(idx, None) >= 0:
                return a.reshape(-1).take(idx + np.arange(0, a.size, m).reshape(a.shape[:-1] + (1,)))
            a2 = a.reshape(-1, m)
            return a2[np.arange(a2.shape[0])[:, None], idx.reshape(a2.shape[0], idx.shape[-1])].reshape(idx.shape)
        return np.take_along_axis(a, idx, axis=axis)

    def take_cols(self, a: Any, idx: Any) -> Any:
        """``a[:, idx]`` for a 2-d ``a`` and 1-d ``idx`` (numpy's ``take`` along axis 1: 2x faster than the
        fancy index on a (48,000, 192) mask)."""
        return a.take(idx, axis=1)  # (np.take's call, without its wrapper)

    def inv_perm_rows(self, order: Any) -> Any:
        """``pos`` with ``pos[i, order[i, k]] = k`` for a ``(n, m)`` permutation per row."""
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
        return pos

    def scatter_rows(self, order: Any, vals: Any) -> Any:
        """``out`` with ``out[i, order[i, k]] = vals[i, k]`` for a ``(n, m)`` permutation per row: what
        ``take_along(vals, inv_perm_rows(order), 1)`` gives, in one pass instead of two."""
        out = np.empty(order.shape, vals.dtype)
        np.put_along_axis(out, order, vals, axis=1)
        return out

    def lexsort(self, keys: Any) -> Any:
        """numpy's ``lexsort``: the last key is the primary one; ties keep their order (stable)."""
        return np.lexsort(keys)

    def ceil(self, a: Any) -> Any:
        return np.ceil(a)

    def isfinite(self, a: Any) -> Any:
        return np.isfinite(a)

    def any(self, a: Any, axis: int | None = None) -> Any:
        if axis is None:  # the whole array: a count of its nonzero cells (0.3-0.6 us; any(): ~1.1 us a call),
            return np.True_ if np.count_nonzero(a) else np.False_  # (np.bool_(n) costs more than the count)
        return a.any(axis=axis)

    def all(self, a: Any, axis: int | None = None) -> Any:
        if axis is None:  # (as any)
            return np.True_ if np.count_nonzero(a) == np.size(a) else np.False_
        return a.all(axis=axis)

    def argmax(self, a: Any, axis: int) -> Any:
        """First index of the maximum along ``axis`` (booleans allowed)."""
        return a.argmax(axis=axis)

    def argmin(self, a: Any, axis: int) -> Any:
        return a.argmin(axis=axis)

    def min(self, a: Any, axis: int) -> Any:
        """The smallest entry along ``axis`` (the entry at :meth:`argmin`; ufunc reduce, without ndarray.min's
        Python-level wrapper)."""
        return _min(a, axis)

    def max(self, a: Any, axis: int) -> Any:
        """The largest entry along ``axis`` (the entry at :meth:`argmax`)."""
        return _max(a, axis)

    #: :meth:`count_nonzero` counts by words from this many ``(n, T)`` cells; below it numpy's count is faster (its
    #: fixed cost is lower: 320 cells 13 vs 22 us, 3,200 23 vs 35 us; even at ~10,000; the words win from ~19,000:
    #: 38,400 67 vs 53 us, 288,000 120 vs 57 us; round 15, loaded machine)
    COUNT_NONZERO_WORDS_MIN_CELLS = 12_000

    def count_nonzero(self, m: Any, axis: int) -> Any:
        # true cells per row of a C-contiguous bool (n, T) mask with T a multiple of 8: 8 cells summed per
        # uint64 word (each byte lane counts at most T / 8 <= 255 cells), then the 8 lanes (as level_counts)
        if (axis in (1, -1) and m.ndim == 2 and m.dtype == np.bool_ and m.flags.c_contiguous
                and m.shape[1] % 8 == 0 and 0 < m.shape[1] // 8 <= 255 and m.shape[0] > 0
                and m.shape[0] * m.shape[1] >= self.COUNT_NONZERO_WORDS_MIN_CELLS):
            lanes = m.view(np.uint64).sum(1, dtype=np.uint64)
            return lanes.view(np.uint8).reshape(m.shape[0], 8).sum(1, dtype=np.int64)
        if isinstance(m, np.ndarray) and m.dtype == np.bool_:  # (np.count_nonzero's own sum, without its Python
            return m.sum(axis=axis, dtype=np.intp)              # wrapper's dtype tests: 2-3 us a call)
        return np.count_nonzero(m, axis=axis)

    #: :meth:`level_counts` counts the (row, level) pairs in one ``np.bincount`` up to this many ``(n, T)``
    #: cells, by words above (round 16, process CPU on random plans of 7 levels: 32 x 32 4.8 vs 32.6 us, 137 x 32
    #: 11.0 vs 56.7 us, 300 x 48 28.9 vs 91.6 us, 700 x 48 62.9 vs 176.3 us, 170 x 192 66.7 vs 68.0 us; the words
    #: win past it at 192 slots: 256 x 192 88.4 vs 98.9 us, 1,500 x 192 385 vs 586 us). The corpus's
    #: evaluations count every plan's levels (~1,400 calls on a slow instance)
    LEVEL_COUNTS_BINCOUNT_MAX_CELLS = 32_768

    def level_counts(self, vmat: Any, V: int) -> Any:
        """``(n, V)`` int64: cells of each row of the int8 matrix ``vmat : (n, T)`` equal to each level
        ``1..V-1`` (column 0 left 0). Up to ``LEVEL_COUNTS_BINCOUNT_MAX_CELLS`` cells (bytes, every level in
        ``0..V-1``) one count of the cells' (row, level) pairs; above, one compare per level into a reused
        byte buffer padded to a multiple of 8 columns, summed 8 cells at a time as uint64 words (each byte
        lane counts at most T / 8 <= 255 cells), then the 8 lanes of each row: the same counts as
        ``count_nonzero(vmat == v, 1)`` at a fraction of its cost (NumPy's axis count is a bool-to-int64
        reduction)."""
        n, T = vmat.shape
        if (0 < n * T <= self.LEVEL_COUNTS_BINCOUNT_MAX_CELLS and vmat.dtype in (np.int8, np.uint8)
                and bool((vmat.view(np.uint8) < V).all())):
            # (a negative level reads as 128 and up as a byte: a plan with a level outside 0..V-1 counts by words)
            pairs = np.bincount((np.arange(0, n * V, V, dtype=np.intp)[:, None] + vmat).reshape(-1),
                                minlength=n * V).reshape(n, V)
            pairs[:, 0] = 0
            return pairs
        cnt = np.zeros((n, V), np.int64)
        Tp = -(-T // 8) * 8
        if n == 0 or Tp // 8 > 255:
            for v in range(1, V):  # power levels
                cnt[:, v] = np.count_nonzero(vmat == v, 1)
            return cnt
        eq = np.zeros((n, Tp), np.bool_)
        words = eq.view(np.uint64)  # (n, Tp / 8)
        for v in range(1, V):  # power levels
            np.equal(vmat, v, out=eq[:, :T])
            lanes = words.sum(1, dtype=np.uint64)
            cnt[:, v] = lanes.view(np.uint8).reshape(n, 8).sum(1, dtype=np.int64)
        return cnt

    #: :meth:`count_upto` counts by words (:meth:`_count_upto_words`) from this many ``(n, T)`` cells; below
    #: it the byte prefix count (a few calls instead of a loop of ~40 over words and bytes: 10 x 32, 41 -> 12
    #: us; 200 x 96, 84 -> 59 us; the words win from ~50,000 cells: 500 x 192, 147 vs 243 us)
    COUNT_WORDS_MIN_CELLS = 32_768

    def count_upto(self, m: Any, k: Any) -> Any:
        """``(n, T)`` bool: the running count of true cells along each row of the mask ``m`` is at most
        ``k[i]`` (whole numbers as float). The count in int16 (int32 past 32,000 columns): the same
        comparisons as a float count at a fraction of the memory traffic."""
        kf = np.floor(np.asarray(k, np.float64))
        n, T = m.shape
        if (m.dtype == np.bool_ and T % 8 == 0 and 0 < T < 32_000 and n > 0 and m.flags.c_contiguous
                and (n * T >= self.COUNT_WORDS_MIN_CELLS or T > 255)):
            return self._count_upto_words(m, kf)
        if m.shape[1] <= 255 and m.dtype == np.bool_:
            # up to 255 columns the count fits a byte: the byte cumsum runs at about 0.6x the int16 one's
            # time (48,000 x 192: 24 vs 40 ms); k below 0 (no cell) is 0 there and its rows are cleared
            cs8: Any = np.cumsum(m.view(np.uint8), 1, dtype=np.uint8)
            out = cs8 <= np.clip(kf, 0, 255).astype(np.uint8)[:, None]
            neg = np.flatnonzero(kf < 0)
            if neg.size:
                out[neg] = False
            return out
        dt: Any = np.int16 if m.shape[1] < 32_000 else np.int32
        cs: Any = np.cumsum(m, 1, dtype=dt)
        kk = np.clip(kf, -1, m.shape[1]).astype(dt)
        return cs <= kk[:, None]

    @staticmethod
    def _count_upto_words(m: Any, kf: Any) -> Any:
        """:meth:`count_upto` of a C-contiguous bool ``(n, T)`` mask, T a multiple of 8: ``cumsum(m, 1) <=
        kf`` holds exactly in the columns before the ``kf + 1``-th true cell of the row (all of them when the
        row has no more than ``kf``, none when ``kf < 0``), so only that column is found: true cells per
        8-cell uint64 word (its bytes summed by one multiply), a running count over the T / 8 words, the
        word where it reaches ``kf + 1``, then the byte inside that word; one compare of the column index
        writes the mask. The running counts run over whole columns of the transposed word counts (one
        vector add per word, per byte), not a scalar accumulate over every cell: 3-4x faster."""
        n, T = m.shape
        W = T // 8
        words = m.view(np.uint64)  # (n, W): 8 cells each, one byte per cell (0 or 1)
        wc = np.ascontiguousarray(((words * np.uint64(0x0101010101010101)) >> np.uint64(56)).T, dtype=np.int16)
        target = (np.clip(kf, -1, T) + 1).astype(np.int16)  # (n,) the running count that must not be reached
        run = np.zeros(n, np.int16)  # running count at the end of the words so far
        before = np.zeros(n, np.int16)  # ... at the start of the word where it reaches the target
        wi = np.zeros(n, np.int16)  # that word (W: never reached)
        for w in range(W):  # words (T / 8)
            np.add(run, wc[w], out=run)
            below = run < target
            wi += below
            np.copyto(before, run, where=below)
        inside = wi < W
        wj = np.minimum(wi, W - 1).astype(np.intp)
        sel = np.ascontiguousarray(m.view(np.uint8).reshape(n, W, 8)[np.arange(n), wj].T, dtype=np.int16)
        r = target - before  # the target within that word
        acc = np.zeros(n, np.int16)
        off = np.zeros(n, np.int16)
        for b in range(8):  # bytes of the word
            np.add(acc, sel[b], out=acc)
            off += acc < r
        pos = np.where(target <= 0, 0, np.where(inside, wj * 8 + off, T)).astype(np.int16)
        return np.arange(T, dtype=np.int16)[None, :] < pos[:, None]

    def cumsum64(self, a: Any, axis: int) -> Any:
        """Cumulative sum accumulated in float64."""
        if a.ndim == 2 and axis % 2 == 0:
            return _cumsum_rows(a, np.float64)
        return np.cumsum(a, axis=axis, dtype=np.float64)

    def sum64(self, a: Any, axis: int | None = None) -> Any:
        """Sum accumulated in float64."""
        return a.sum(axis=axis, dtype=np.float64)

    #: rows per block of :meth:`prefix_cross` (block sums, then one block's prefix per column)
    CROSS_BLOCK = 256

    def prefix_cross(self, x: Any, lim: Any, w: Any = None) -> Any:
        """``(C,)`` int64: per column of the non-negative demand ``x : (n, C)``, how many leading rows keep
        its running sum (float64) within ``lim : (C,)``: ``cross[c] = #{j : cumsum(x, 0)[j, c] <= lim[c]}``
        (the prefix only grows, so those rows are the leading ones). With ``w : (n,)`` the demand is
        ``w[j]`` where the mask ``x[j, c]`` holds (no (n, C) float table is made). Block sums of
        ``CROSS_BLOCK`` rows, their running sum, then a prefix only inside the block where each column
        crosses its limit: one pass over ``x`` instead of a full prefix table. The sums are those of a
        full prefix wherever float64 adds the demands exactly (whole numbers: GPU counts; float32 watts
        times GPU counts below 2^53 of their quantum)."""
        n, C = x.shape
        out = np.full(C, n, np.int64)
        if n == 0 or C == 0:
            return out
        B = self.CROSS_BLOCK
        nf, nb = n // B, -(-n // B)
        xv = x.view(np.int8) if x.dtype == np.bool_ else x
        wf = None if w is None else np.asarray(w, dtype=np.float64)
        bs = np.empty((nb, C))
        if nf:
            if wf is None:
                bs[:nf] = xv[:nf * B].reshape(nf, B, C).sum(1, dtype=np.float64)
            else:
                bs[:nf] = _einsum("bj,bjc->bc", wf[:nf * B].reshape(nf, B), xv[:nf * B].reshape(nf, B, C))
        if nb > nf:
            bs[nf] = (xv[nf * B:].sum(0, dtype=np.float64) if wf is None
                      else _einsum("j,jc->c", wf[nf * B:], xv[nf * B:]))
        cb = bs if nb == 1 else np.cumsum(bs, 0)
        lim = np.broadcast_to(np.asarray(lim, dtype=np.float64), (C,))
        cols = np.flatnonzero(cb[-1] > lim)
        if cols.size == 0:
            return out
        if nb == 1:
            # one block (every table of the corpus): its prefix per over-full column, the rows as they are
            # (the same additions in the same order as the padded block below; no gather, no padding)
            vals = xv[:, cols].astype(np.float64)
            if wf is not None:
                vals = vals * wf[:, None]
            out[cols] = (np.cumsum(vals, 0) > lim[cols][None, :]).argmax(0)
            return out
        over = cb[:, cols] > lim[cols][None, :]
        b = over.argmax(0)  # the first block whose running sum passes the limit
        base = np.where(b > 0, cb[np.maximum(b - 1, 0), cols], 0.0)
        rows = b[:, None] * B + np.arange(B)[None, :]  # (C', B) the rows of that block
        valid = rows < n
        rows = np.minimum(rows, n - 1)
        vals = xv[rows, cols[:, None]].astype(np.float64)
        if wf is not None:
            vals = vals * wf[rows]
        vals[~valid] = 0.0
        within = base[:, None] + np.cumsum(vals, 1)
        out[cols] = rows[:, 0] + (within > lim[cols][:, None]).argmax(1)
        return out

    def item(self, a: Any) -> float:
        return float(a)

    def key(self, a: Any) -> Any:
        """``a``'s values as a dict key (the search's memos, kernels.powersearch): two keys are equal exactly
        where the arrays hold the same values in the same dtype. numpy: its bytes."""
        return a.tobytes(), str(a.dtype)

    def total(self, a: Any) -> float:
        """The sum of a 1-d float array as a host float, added in numpy's order on every backend (torch
        reduces in another order: the last bits differ). Where a sum decides between alternatives (the
        dual values the price ascent compares) this keeps numpy and torch on the same side of a tie."""
        return float(np.sum(self.to_numpy(a)))

    def rowsum_w(self, w: Any, m: Any) -> Any:
        """``sum_j w[j] * m[j, :]`` in float64 for a ``(J, T)`` mask or int8 matrix (einsum: on a shared
        machine OpenBLAS's threaded gemv can be 10x slower than this single-threaded kernel)."""
        mm = m.view(np.int8) if m.dtype == np.bool_ else m
        return _einsum("j,jt->t", np.asarray(w, dtype=np.float64), mm)

    def mask_matmul(self, m: Any, b: Any) -> Any:
        """``m @ b`` for a boolean ``(J, T)`` mask and a float ``(T, P)`` matrix (float32 or float64): one
        ``jt,t->j`` einsum per column of ``b`` (a handful: pools); 5-8x faster than one ``jt,tp->jp`` einsum
        on (50,000, 192) x (192, 4), whose inner loop runs over the short ``p`` axis."""
        mm = m.view(np.int8)
        out = np.empty((m.shape[0], b.shape[1]), dtype=np.result_type(b.dtype, np.float32))
        for p in range(b.shape[1]):  # columns (pools)
            out[:, p] = _einsum("jt,t->j", mm, np.ascontiguousarray(b[:, p]))
        return out

    #: :meth:`group_rowsum` up to this many ``(J, T)`` cells: one product of the ``(n, J)`` one-hot weights
    #: and the mask (3-4x faster than the loop over groups on the corpus's <= 32 x 32 tables, 18 -> 5 us at
    #: 30 x 30 and 3 pools; 28 -> 9 us at 100 x 96); above it the loop (no float copy of the mask: 160 vs
    #: 234 us at 1,500 x 192), and no matrix product big enough for a threaded BLAS on a shared machine
    GROUP_ONEHOT_MAX_CELLS = 16_384

    def group_rowsum(self, groups: Any, n: int, w: Any, m: Any) -> Any:
        """``out[k] = sum_{j: groups[j] == k} w[j] * m[j]`` ``(n, T)`` float64; rows outside 0..n-1 count
        nowhere. ``w`` whole numbers (GPU counts; ``m`` a mask or small whole numbers): float64 adds them
        exactly in any order, so every way below (and torch's product) gives the same sums."""
        mm = m.view(np.int8) if m.dtype == np.bool_ else m
        if m.shape[0] * m.shape[1] <= self.GROUP_ONEHOT_MAX_CELLS:
            return ((groups[None, :] == np.arange(n)[:, None]) * np.asarray(w, np.float64)) @ mm
        out = np.zeros((n, m.shape[1]))
        for k in range(n):  # pools or tenants
            rows = np.flatnonzero(groups == k)
            if rows.size:
                out[k] = _einsum("j,jt->t", w[rows], mm[rows])
        return out

    def row_layout(self, bounds: Any) -> Any:
        """What :meth:`searchsorted_rows` needs to know of the class blocks ``bounds`` (host ints, E + 1),
        computed once per solve."""
        return np.asarray(bounds, dtype=np.int64)

    def searchsorted_rows(self, grid: Any, x: Any, layout: Any) -> Any:
        """Per-row ``searchsorted`` (side left) of class-sorted values: ``x[bounds[e]:bounds[e + 1]]`` are
        searched in row ``e`` of ``grid : (E, G)`` (each row sorted)."""
        out = np.empty(x.shape[0], np.int64)
        for e in range(grid.shape[0]):  # classes (a handful)
            a, z = int(layout[e]), int(layout[e + 1])
            if z > a:
                out[a:z] = np.searchsorted(grid[e], x[a:z], side="left")
        return out

    def lookup(self, tab: Any, pool: Any, v: Any) -> Any:
        """``tab[pool[j], v[j, t]]`` for a small per-pool table ``tab : (P, V)`` and a ``(J, T)`` int8 index
        matrix, without (J, T) int64 index arrays (one pass per pool)."""
        if (tab == tab[:1]).all():
            return tab[0][v]
        out = np.empty(v.shape, dtype=tab.dtype)
        for p in range(tab.shape[0]):  # pools
            rows = pool == p
            if rows.any():
                out[rows] = tab[p][v[rows]]
        return out


class _TensorKey:
    """A tensor's values as a dict key (:meth:`TorchOps.key`): equal to another where both hold the same
    values in the same dtype and shape, compared on the device."""

    __slots__ = ("t", "h")

    def __init__(self, t: Any, h: int) -> None:
        self.t, self.h = t, h

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _TensorKey):
            return NotImplemented
        a, b = self.t, other.t
        return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and bool(a.equal(b))


class TorchOps(Ops):
    """The same functions on torch tensors (``device`` ``"cpu"`` or ``"cuda"``); torch is imported here."""

    def __init__(self, device: str = "cpu") -> None:
        import torch  # lazy: only when this backend is asked for

        self.torch = torch
        self.name = "torch"
        self.device = device
        self._dev = torch.device(device)
        self.f32 = torch.float32
        self.f64 = torch.float64
        self.i8 = torch.int8
        self.i32 = torch.int32
        self.i64 = torch.int64
        self.bool_ = torch.bool
        self._np2t = {
            np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64,
            np.dtype(np.int32): torch.int32,
            np.dtype(np.int64): torch.int64,
            np.dtype(np.int8): torch.int8,
            np.dtype(np.bool_): torch.bool,
        }

    def _dt(self, dtype: Any) -> Any:
        if dtype is None or isinstance(dtype, self.torch.dtype):
            return dtype
        return self._np2t[np.dtype(dtype)]

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(device=self._dev, dtype=self._dt(dtype) or a.dtype)
        arr = np.asarray(a)
        if arr.dtype == np.uint8 or arr.dtype == np.int16:
            arr = arr.astype(np.int64)
        return t.as_tensor(np.ascontiguousarray(arr), device=self._dev, dtype=self._dt(dtype))

    def to_numpy(self, a: Any) -> np.ndarray:
        if isinstance(a, self.torch.Tensor):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return self.torch.zeros(shape, dtype=self._dt(dtype), device=self._dev)

    def full(self, shape: Any, value: float, dtype: Any) -> Any:
        return self.torch.full(shape, value, dtype=self._dt(dtype), device=self._dev)

    def arange(self, n: int, dtype: Any = None) -> Any:
        return self.torch.arange(n, dtype=self._dt(dtype) or self.torch.int64, device=self._dev)

    def astype(self, a: Any, dtype: Any) -> Any:
        return a.to(self._dt(dtype))

    def copy(self, a: Any) -> Any:
        return a.clone()

    def where(self, c: Any, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(a, t.Tensor):
            a = t.as_tensor(a, device=self._dev, dtype=b.dtype if isinstance(b, t.Tensor) else None)
        if not isinstance(b, t.Tensor):
            b = t.as_tensor(b, device=self._dev, dtype=a.dtype)
        if a.dtype != b.dtype:
            dt = t.promote_types(a.dtype, b.dtype)
            a, b = a.to(dt), b.to(dt)
        return t.where(c, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(b, t.Tensor):
            return t.clamp(a, min=b)
        if not isinstance(a, t.Tensor):
            return t.clamp(b, min=a)
        return t.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(b, t.Tensor):
            return t.clamp(a, max=b)
        if not isinstance(a, t.Tensor):
            return t.clamp(b, max=a)
        return t.minimum(a, b)

    def cumsum(self, a: Any, axis: int) -> Any:
        return self.torch.cumsum(a, dim=axis)

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return a.sum() if axis is None else a.sum(dim=axis)

    def concatenate(self, arrs: list[Any], axis: int = 0) -> Any:
        return self.torch.cat(arrs, dim=axis)

    def stack(self, arrs: list[Any], axis: int = 0) -> Any:
        return self.torch.stack(arrs, dim=axis)

    def swapaxes(self, a: Any, i: int, j: int) -> Any:
        return a.transpose(i, j)  # (a view)

    def flip(self, a: Any, axis: int) -> Any:
        return self.torch.flip(a, dims=(axis,))

    def searchsorted(self, sorted_1d: Any, values: Any) -> Any:
        return self.torch.searchsorted(sorted_1d, values.contiguous(), side="left")

    def take(self, a: Any, idx: Any) -> Any:
        return a.reshape(-1)[idx]

    def scatter_add(self, n: int, idx: Any, weights: Any, dtype: Any) -> Any:
        out = self.torch.zeros(n, dtype=self._dt(dtype), device=self._dev)
        return out.index_add_(0, idx, weights.to(out.dtype))

    def argsort(self, a: Any, axis: int = -1) -> Any:
        return self.torch.sort(a, dim=axis, stable=True).indices

    def sort(self, a: Any, axis: int = -1) -> Any:
        return self.torch.sort(a, dim=axis).values

    def synchronize(self) -> None:
        if self._dev.type == "cuda":
            self.torch.cuda.synchronize()

    def empty(self, shape: Any, dtype: Any) -> Any:
        return self.torch.empty(shape, dtype=self._dt(dtype), device=self._dev)

    def ones(self, shape: Any, dtype: Any) -> Any:
        return self.torch.ones(shape, dtype=self._dt(dtype), device=self._dev)

    def nonzero(self, m: Any) -> Any:
        return self.torch.nonzero(m).reshape(-1)

    def index(self, a: Any) -> Any:
        return a.long()

    def take_along(self, a: Any, idx: Any, axis: int) -> Any:
        return self.torch.gather(a, axis, idx.long())

    def take_cols(self, a: Any, idx: Any) -> Any:
        return a[:, idx.long()]

    def inv_perm_rows(self, order: Any) -> Any:
        src = self.torch.arange(order.shape[1], device=self._dev).expand(order.shape[0], -1).to(order.dtype)
        return self.torch.empty_like(order).scatter_(1, order, src)

    def scatter_rows(self, order: Any, vals: Any) -> Any:
        return self.torch.empty(tuple(order.shape), dtype=vals.dtype, device=self._dev).scatter_(1, order, vals)

    def lexsort(self, keys: Any) -> Any:
        t = self.torch
        keys = [k if isinstance(k, t.Tensor) else self.asarray(k) for k in keys]
        idx = t.arange(keys[0].shape[0], device=self._dev)
        for k in keys:  # least significant key first, each a stable sort
            idx = idx[t.sort(k[idx], stable=True).indices]
        return idx

    def ceil(self, a: Any) -> Any:
        return self.torch.ceil(a)

    def isfinite(self, a: Any) -> Any:
        return self.torch.isfinite(a)

    def any(self, a: Any, axis: int | None = None) -> Any:
        return a.any() if axis is None else a.any(dim=axis)

    def all(self, a: Any, axis: int | None = None) -> Any:
        return a.all() if axis is None else a.all(dim=axis)

    def argmax(self, a: Any, axis: int) -> Any:
        if a.dtype == self.torch.bool:
            a = a.to(self.torch.uint8)
        return self.torch.argmax(a, dim=axis)

    def argmin(self, a: Any, axis: int) -> Any:
        return self.torch.argmin(a, dim=axis)

    def min(self, a: Any, axis: int) -> Any:
        return self.torch.amin(a, dim=axis)

    def max(self, a: Any, axis: int) -> Any:
        return self.torch.amax(a, dim=axis)

    def count_nonzero(self, m: Any, axis: int) -> Any:
        return self.torch.count_nonzero(m, dim=axis)

    def level_counts(self, vmat: Any, V: int) -> Any:
        cnt = self.torch.zeros((vmat.shape[0], V), dtype=self.torch.int64, device=vmat.device)
        for v in range(1, V):  # power levels
            cnt[:, v] = self.torch.count_nonzero(vmat == v, dim=1)
        return cnt

    def count_upto(self, m: Any, k: Any) -> Any:
        return self.torch.cumsum(m.to(self.torch.int32), dim=1).to(self.torch.float64) <= k[:, None]

    def cumsum64(self, a: Any, axis: int) -> Any:
        return self.torch.cumsum(a, dim=axis, dtype=self.torch.float64)

    def sum64(self, a: Any, axis: int | None = None) -> Any:
        return a.sum(dtype=self.torch.float64) if axis is None else a.sum(dim=axis, dtype=self.torch.float64)

    def prefix_cross(self, x: Any, lim: Any, w: Any = None) -> Any:
        t = self.torch
        d = x.to(t.float64) if w is None else w.to(t.float64)[:, None] * x.to(t.float64)
        lim = lim if isinstance(lim, t.Tensor) else t.as_tensor(lim, dtype=t.float64, device=self._dev)
        return (t.cumsum(d, dim=0) <= lim).sum(dim=0)

    def item(self, a: Any) -> float:
        return float(a.item()) if isinstance(a, self.torch.Tensor) else float(a)

    def key(self, a: Any) -> Any:
        # a copy kept on the device (a (J, T) plan copied to the host per memo look-up is what the torch plan
        # must not do): equal where every value is (one compare there), hashed by two whole-number checksums
        # (integer sums: exact in any order, so the same on every run and device)
        t = self.torch
        v = a.reshape(-1).to(t.int64)
        w = t.arange(v.shape[0], device=self._dev) % 251 + 1
        h = t.stack([v.sum(), (v * w).sum()]).tolist()
        return _TensorKey(a.clone(), hash((str(a.dtype), tuple(a.shape), *h)))

    def rowsum_w(self, w: Any, m: Any) -> Any:
        return w.to(self.torch.float64) @ m.to(self.torch.float64)

    def mask_matmul(self, m: Any, b: Any) -> Any:
        return m.to(b.dtype) @ b

    def group_rowsum(self, groups: Any, n: int, w: Any, m: Any) -> Any:
        t = self.torch
        J = m.shape[0]
        g = t.where((groups >= 0) & (groups < n), groups.long(), n)
        W = t.zeros((n + 1, J), dtype=t.float64, device=self._dev)
        W[g, t.arange(J, device=self._dev)] = w.to(t.float64)
        return W[:n] @ m.to(t.float64)

    def row_layout(self, bounds: Any) -> Any:
        t = self.torch
        b = np.asarray(bounds, dtype=np.int64)
        cnt = np.diff(b)
        n = int(b[-1]) if b.size else 0
        cls = t.as_tensor(np.repeat(np.arange(cnt.size), cnt), device=self._dev)
        pos = t.as_tensor(np.arange(n) - np.repeat(b[:-1], cnt), device=self._dev)
        return cls, pos, int(cnt.max()) if cnt.size else 0

    def searchsorted_rows(self, grid: Any, x: Any, layout: Any) -> Any:
        # one batched search: the values padded into an (E, M) matrix, one row per class
        t = self.torch
        cls, pos, M = layout
        if x.shape[0] == 0 or M == 0:
            return t.zeros(x.shape[0], dtype=t.int64, device=self._dev)
        Q = t.full((grid.shape[0], M), math.inf, dtype=x.dtype, device=self._dev)
        Q[cls, pos] = x
        return t.searchsorted(grid.contiguous(), Q, side="left")[cls, pos]

    def lookup(self, tab: Any, pool: Any, v: Any) -> Any:
        V = tab.shape[1]
        if bool((tab == tab[:1]).all()):
            return tab[0][v.long()]
        return tab.reshape(-1)[(pool.long() * V)[:, None] + v.long()]


def get_ops(backend: str = "numpy", device: str = "cpu") -> Ops:
    """The namespace for ``backend`` (``"numpy"`` or ``"torch"``) on ``device`` (``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``). Raises ValueError naming what is wrong: an unknown backend or device, torch not installed,
    or a CUDA device torch does not see."""
    if backend == "numpy":
        if device != "cpu":
            raise ValueError(f"backend 'numpy' runs on device 'cpu' only, got device={device!r}")
        return Ops()
    if backend == "torch":
        if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        try:
            import torch
        except ImportError:
            raise ValueError("backend 'torch' needs PyTorch, which is not installed: pip install 'windward[torch]' "
                             "(or torch==2.13.0 for the CPU build)") from None
        if device != "cpu":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            idx = int(device[5:]) if ":" in device else 0
            if idx >= n:
                raise ValueError(f"device {device!r}: torch {torch.__version__} sees "
                                 f"{n} CUDA device(s){'' if n else ' (a CPU build, or no GPU or driver)'}")
        return TorchOps(device)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
