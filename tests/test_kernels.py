"""Linear kernels against NumPy references; bits identical across OpenMP thread counts."""
import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain._kernels import linear as K
from mpitrain._kernels import omp
from mpitrain.data import Shard
from mpitrain.models import linear as linear_model

CODES = K.LOSS_CODES
pytestmark = pytest.mark.timeout(120)


def ref_loss(code, y, m):
    if code == CODES["logistic"]:
        return np.logaddexp(0, -y * m), -y / (1 + np.exp(y * m))
    if code == CODES["squared_hinge"]:
        r = np.maximum(0, 1 - y * m)
        return r * r, -2 * y * r
    return 0.5 * (m - y) ** 2, m - y


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, d = 5000, 300  # more rows than one reduction block (2048), columns not a block multiple
    X = sp.random(n, d, density=0.05, format="csr", random_state=1, dtype=np.float64)
    X.indptr = X.indptr.astype(np.int64)
    X.indices = X.indices.astype(np.int32)
    X.sort_indices()
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    w = rng.normal(size=d)
    return X, y, w


def _all(X, y, w, code):
    D = np.ascontiguousarray(X.toarray())
    XT = X.T.tocsr()
    XT.indptr, XT.indices = XT.indptr.astype(np.int64), XT.indices.astype(np.int32)
    n, d = X.shape
    m_s, m_d = np.empty(n), np.empty(n)
    K.csr_margins(X.indptr, X.indices, X.data, w, m_s)
    K.dense_margins(D, w, m_d)
    dl = np.empty(n)
    f = K.loss_dloss(code, y, m_s, dl, 1.0)
    g_s, g_d = np.empty(d), np.empty(d)
    K.csr_rmatvec(XT.indptr, XT.indices, XT.data, dl, g_s)
    K.dense_rmatvec(D, dl, g_d)
    delta = X @ (w[::-1].copy())
    phi = K.line_phi(code, y, m_s, delta, 0.3)
    return m_s, m_d, f, dl, g_s, g_d, phi, K.loss_sum(code, y, m_s)


@pytest.mark.parametrize("loss", ["logistic", "squared_hinge", "squared"])
def test_kernels_match_numpy(problem, loss):
    X, y, w = problem
    code = CODES[loss]
    m_s, m_d, f, dl, g_s, g_d, phi, fsum = _all(X, y, w, code)
    m_ref = X @ w
    np.testing.assert_allclose(m_s, m_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(m_d, m_ref, rtol=1e-13, atol=1e-13)
    l_ref, dl_ref = ref_loss(code, y, m_ref)
    assert f == pytest.approx(l_ref.sum(), rel=1e-12)
    assert fsum == f
    np.testing.assert_allclose(dl, dl_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_s, X.T @ dl_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g_d, X.T @ dl_ref, rtol=1e-11, atol=1e-12)
    delta = X @ w[::-1].copy()
    lt, dlt = ref_loss(code, y, m_ref + 0.3 * delta)
    assert phi[0] == pytest.approx(lt.sum(), rel=1e-12)
    assert phi[1] == pytest.approx((delta * dlt).sum(), rel=1e-10, abs=1e-10)


def test_logistic_is_stable_for_large_margins():
    y = np.array([1.0, -1.0, 1.0, -1.0])
    m = np.array([800.0, 800.0, -800.0, -800.0])
    dl = np.empty(4)
    f = K.loss_dloss(CODES["logistic"], y, m, dl, 1.0)
    assert np.isfinite(f) and f == pytest.approx(1600.0)
    np.testing.assert_allclose(dl, [0.0, 1.0, -1.0, 0.0], atol=1e-300)


def test_logistic_loss_and_derivative_within_ulps_of_numpy():
    """One exp and one log1p per row (losses.pxd) give ℓ and dℓ/dm within a few ulps of
    NumPy's logaddexp and of -y·σ(-y m), over margins from 1e-8 to 700, both signs."""
    from scipy.special import expit
    rng = np.random.default_rng(5)
    m = np.r_[0.0, np.exp(rng.uniform(np.log(1e-8), np.log(700.0), 4000))]
    m = np.r_[m, -m]
    y = np.where(rng.random(m.size) < 0.5, -1.0, 1.0)
    dl = np.empty(m.size)
    f = K.loss_dloss(CODES["logistic"], y, m, dl, 1.0)
    ref, dref = np.logaddexp(0, -y * m), -y * expit(-y * m)
    assert np.all(np.abs(dl - dref) <= 4 * np.spacing(np.abs(dref)))
    per_row = np.array([K.loss_sum(CODES["logistic"], y[i:i + 1], m[i:i + 1])
                        for i in range(m.size)])
    assert np.all(np.abs(per_row - ref) <= 4 * np.spacing(ref))
    assert f == pytest.approx(ref.sum(), rel=1e-13)
    assert K.line_phi(CODES["logistic"], y, m, np.ones(m.size), 0.0) == (
        K.loss_sum(CODES["logistic"], y, m), pytest.approx(dl.sum(), rel=1e-13))


def test_dloss_at_matches_numpy_and_loss_dloss_at():
    """losses.pxd's dloss_at (the derivative alone, which fadl_sgd and vr_sparse use) against
    NumPy for every loss, over margins from 1e-8 to 800 of both signs: within 4 ulps of
    -y·σ(-y m) for the logistic loss, exact for the others; and bit for bit the derivative
    that loss_dloss_at gives (loss_dloss), as its docstring claims."""
    from scipy.special import expit
    rng = np.random.default_rng(6)
    m = np.r_[0.0, np.exp(rng.uniform(np.log(1e-8), np.log(700.0), 2000)), 800.0]
    m = np.r_[m, -m]
    y = np.where(rng.random(m.size) < 0.5, -1.0, 1.0)
    for loss, code in CODES.items():
        d, fused = np.empty(m.size), np.empty(m.size)
        K.dloss_values(code, y, m, d)
        K.loss_dloss(code, y, m, fused, 1.0)
        assert np.array_equal(d, fused), loss
        if loss == "logistic":
            dref = -y * expit(-y * m)
            assert np.all(np.abs(d - dref) <= 4 * np.spacing(np.abs(dref)))
        else:
            np.testing.assert_array_equal(d, ref_loss(code, y, m)[1])


def test_bits_identical_across_thread_counts(problem):
    X, y, w = problem
    results = []
    for t in (1, 2, 3, 4):
        omp.set_num_threads(t)
        results.append(_all(X, y, w, CODES["logistic"]))
    omp.set_num_threads(1)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(params=["split margins", "direct margins", "all tail", "all hot"])
def skewed(monkeypatch, request):
    """A CSR shard whose frequent columns are scattered over the index range (as in real
    data), with empty rows, and a hot block of 40 columns and ~3,000 hot non-zeros per panel,
    so that the hot block, the tail and several row panels of SplitCSR are all exercised;
    float64 margins straight from the CSR rows or through the split layout; or a hot block
    of no column (all tail) or of every column (all hot, no tail)."""
    monkeypatch.setattr(linear_model, "HOT_COLUMNS",
                        {"all tail": 0, "all hot": 1 << 16}.get(request.param, 40))
    monkeypatch.setattr(linear_model, "PANEL_NNZ", 3000)
    monkeypatch.setattr(linear_model, "DIRECT_COLUMNS", 0 if request.param == "split margins"
                        else 1 << 17)
    rng = np.random.default_rng(3)
    n, d, per_row = 3000, 700, 8
    p = 1.0 / np.arange(1, d + 1) ** 1.1
    cols = rng.permutation(d)[np.minimum(np.searchsorted(np.cumsum(p / p.sum()),
                                                         rng.random(n * per_row)), d - 1)]
    rows = np.repeat(np.arange(n), per_row)
    keep = rows % 97 != 5  # some empty rows
    X = sp.csr_matrix((rng.random(keep.sum()) + 0.1, (rows[keep], cols[keep])), shape=(n, d))
    X.sum_duplicates()
    X.sort_indices()
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return Shard(X, y, 0, n, n, d, "skewed"), rng.normal(size=d)


def _split_eval(shard, w, loss, values):
    lm = linear_model.LinearShard(shard, loss, values=values)
    buf = np.empty(shard.d + 1)
    m = lm.loss_grad_sums(w, buf)  # the fused pass
    dl = lm._coef.copy()
    coef = np.linspace(-1.0, 1.0, shard.rows)
    return lm, m, dl, lm.margins(w), buf, lm.rmatvec(coef)


@pytest.mark.parametrize("values", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["logistic", "squared_hinge", "squared"])
def test_split_layout_matches_numpy(skewed, loss, values):
    shard, w = skewed
    X, y = shard.X, shard.y
    assert np.diff(X.indptr).min() == 0  # empty rows
    lm, m, dl, m_only, buf, xtc = _split_eval(shard, w, loss, values)
    lay = lm.layout
    count = np.bincount(X.indices, minlength=shard.d)
    is_hot = np.zeros(shard.d, bool)
    is_hot[lay.hot] = True
    assert lay.part.shape[0] > 1
    if lay.hot.size:  # hot rows padded with (0, 0.0) to a multiple of 4 entries
        assert np.all(np.diff(lay.hptr) % 4 == 0) and np.diff(lay.hptr).max() > 4
        real = lay.hval != 0  # the data's values are >= 0.1
        assert real.sum() == lay.hot_nnz and np.all(lay.hidx[~real] == 0)
        row = np.repeat(np.arange(shard.rows), np.diff(lay.hptr))
        pad = np.bincount(row[~real], minlength=shard.rows)
        assert pad.max() < 4 and np.all(np.diff(lay.hptr)[pad > 0] > pad[pad > 0])
    if lay.hot.size == 0:  # all tail
        assert lay.hidx.size == 0 and lay.tcol.size == X.nnz
    elif lay.hot.size == shard.d:  # all hot
        assert lay.hot_nnz == X.nnz and lay.tcol.size == 0
    else:
        assert lay.hot.size == 40 and count[is_hot].min() >= count[~is_hot].max()  # frequent
        assert lay.tcol.size > 0 and len(lay.tcut) > 2
    Xr = X.copy()
    Xr.data = X.data.astype(values).astype(np.float64)  # the values the layout stores
    m_ref = Xr @ w
    l_ref, dl_ref = ref_loss(CODES[loss], y, m_ref)
    np.testing.assert_allclose(m, m_ref, rtol=1e-13, atol=1e-13)
    assert np.array_equal(m, m_only)
    np.testing.assert_allclose(dl, dl_ref, rtol=1e-12, atol=1e-15)
    assert buf[-1] == pytest.approx(l_ref.sum(), rel=1e-12)
    np.testing.assert_allclose(buf[:-1], Xr.T @ dl_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(xtc, Xr.T @ np.linspace(-1.0, 1.0, shard.rows), rtol=1e-11,
                               atol=1e-12)
    if values == "float32":  # the values were rounded: the float64 data gives other results
        assert np.abs(m - X @ w).max() > 1e-12


@pytest.mark.parametrize("values", ["float64", "float32"])
def test_split_layout_bits_identical_across_thread_counts(skewed, values, monkeypatch):
    shard, w = skewed
    monkeypatch.setattr(linear_model, "PANEL_NNZ", 500)  # many panels: a sum over panels
    results = []                                          # in thread order would show
    for t in (1, 2, 3, 4):
        omp.set_num_threads(t)
        shard.__dict__.pop("_split_csr", None)  # rebuilt under each thread count as well
        results.append(_split_eval(shard, w, "logistic", values)[1:])
        # margins of very different sizes: per-row losses from ~1e-13 to ~1e2, so a sum in
        # another order (a reduction whose order follows the threads) changes the last bits
        results.append(_split_eval(shard, 30.0 * w, "logistic", values)[1:])
    omp.set_num_threads(1)
    lay = linear_model.LinearShard(shard, "logistic", values=values).layout
    assert lay.part.shape[0] >= 8 or lay.hidx.size == 0
    for i in range(2, len(results)):
        for a, b in zip(results[i % 2], results[i]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("values", ["float64", "float32"])
def test_layout_bytes_bounds_the_build_peak(values):
    """layout_bytes bounds the traced peak of building a SplitCSR (kept arrays and
    temporaries), for a mostly-tail shard with w beyond 1 MiB (the split margins)."""
    import tracemalloc
    rng = np.random.default_rng(7)
    n, d, per_row = 4000, 1 << 18, 25
    X = sp.csr_matrix((rng.random(n * per_row) + 0.1,
                       (np.repeat(np.arange(n), per_row), rng.integers(0, d, n * per_row))),
                      shape=(n, d))
    X.sum_duplicates()
    shard = Shard(X, np.ones(n), 0, n, n, d, "wide")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        lay = linear_model.SplitCSR(X, values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not lay.direct and lay.tcol.size > 0.5 * X.nnz
    assert peak <= linear_model.layout_bytes(shard, values)


@pytest.mark.parametrize("direct", [0, 1 << 17])
@pytest.mark.parametrize("values", ["float64", "float32"])
@pytest.mark.parametrize("n, nnz", [(0, 0), (7, 0), (1, 15)])
def test_split_layout_empty_and_single_row_shards(monkeypatch, direct, values, n, nnz):
    """A shard of no row, of rows with no non-zero, or of one row: loss, gradient, margins and
    Xᵀcoef of the split layout equal NumPy's (no read past the empty arrays)."""
    monkeypatch.setattr(linear_model, "DIRECT_COLUMNS", direct)
    d = 50
    rng = np.random.default_rng(11)
    X = sp.csr_matrix((n, d))
    if nnz:
        X = sp.csr_matrix((rng.random(nnz) + 0.1, (np.zeros(nnz, int), rng.permutation(d)[:nnz])),
                          shape=(n, d))
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    w = rng.normal(size=d)
    lm, m, dl, m_only, buf, xtc = _split_eval(Shard(X, y, 0, n, n, d, "small"), w, "logistic",
                                              values)
    Xr = X.astype(values).astype(np.float64)
    l_ref, dl_ref = ref_loss(CODES["logistic"], y, Xr @ w)
    np.testing.assert_allclose(m, Xr @ w, rtol=1e-13, atol=1e-13)
    assert np.array_equal(m, m_only)
    np.testing.assert_allclose(dl, dl_ref, rtol=1e-12, atol=1e-15)
    assert buf[-1] == pytest.approx(l_ref.sum(), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(buf[:-1], Xr.T @ dl_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(xtc, Xr.T @ np.linspace(-1.0, 1.0, n), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("values", ["float64", "float32"])
@pytest.mark.parametrize("pieces", [1, 3, 64, 100000])
def test_split_layout_tail_pieces(skewed, monkeypatch, values, pieces):
    """The tail's margins summed in 1, 3 or 64 pieces (a column's entries split between two
    pieces; with 100,000 more pieces than tail entries, one entry each): NumPy's results, and
    the same bits at 1, 2 and 3 threads. Only the margins' summation order depends on the
    pieces (fixed by TAIL_PARTIALS and the data, never by the threads)."""
    shard, w = skewed
    monkeypatch.setattr(linear_model, "TAIL_PARTIALS", pieces)
    X, y = shard.X, shard.y
    Xr = X.copy()
    Xr.data = X.data.astype(values).astype(np.float64)
    m_ref = Xr @ w
    l_ref, dl_ref = ref_loss(CODES["logistic"], y, m_ref)
    results = []
    for t in (1, 2, 3):
        omp.set_num_threads(t)
        shard.__dict__.pop("_split_csr", None)
        lm, m, dl, m_only, buf, xtc = _split_eval(shard, w, "logistic", values)
        results.append((m, dl, m_only, buf, xtc))
    omp.set_num_threads(1)
    lay = lm.layout
    tnnz = lay.tcol.size
    assert lay.tpart.shape == ((0 if lay.direct or tnnz == 0 else min(pieces, tnnz)), shard.rows)
    if lay.tpart.shape[0] > 1:  # some column's entries are split between two pieces
        cut = lay.mcut[1:-1]
        assert np.any(lay.tcol[cut - 1] == lay.tcol[cut])
    np.testing.assert_allclose(m, m_ref, rtol=1e-13, atol=1e-13)
    assert np.array_equal(m, m_only)
    np.testing.assert_allclose(dl, dl_ref, rtol=1e-12, atol=1e-15)
    assert buf[-1] == pytest.approx(l_ref.sum(), rel=1e-12)
    np.testing.assert_allclose(buf[:-1], Xr.T @ dl_ref, rtol=1e-11, atol=1e-12)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("loss", ["logistic", "squared_hinge", "squared"])
def test_fused_loss_is_loss_dloss_bit_for_bit(skewed, loss):
    """split_fused's loss and derivative (the logistic's from the step's exps, its sign test
    made a select) are those of losses.pxd's loss_dloss_at bit for bit: the derivatives equal loss_dloss's at the same
    margins, and the loss equals the per-row losses summed in row order within each panel,
    then over the panels in order. Margins of both signs and up to |m| ~ 40."""
    shard, w = skewed
    lm, m, dl, m_only, buf, xtc = _split_eval(shard, 30.0 * w, loss, "float64")
    assert (m > 1).any() and (m < -1).any() and np.abs(m).max() > 20
    code = CODES[loss]
    ref = np.empty_like(dl)
    K.loss_dloss(code, shard.y, m, ref, 1.0)
    assert np.array_equal(dl, ref)
    per_row = [K.loss_sum(code, shard.y[i:i + 1], m[i:i + 1]) for i in range(m.size)]
    panels = lm.layout.panels
    total = 0.0
    for p in range(panels.size - 1):
        fp = 0.0
        for i in range(panels[p], panels[p + 1]):
            fp += per_row[i]
        total += fp
    assert buf[-1] == total


@pytest.mark.parametrize("values", ["float64", "float32"])
def test_hot_loops_same_bits_as_scalar_loops(skewed, values):
    """The hot block's loops (16-bit indices: SSE2 pairs where available) give the bits of the
    scalar loops: margins of the unpadded hot rows (every row length mod 4, so every
    remainder) equal csr_margins with the same indices as int32 (the scalar row_dot) and
    those of the padded rows; split_scatter's partials equal the padded layout's."""
    shard, w = skewed
    lay = linear_model.LinearShard(shard, "logistic", values=values).layout
    if lay.hot.size in (0, shard.d):
        pytest.skip("needs a hot block and a tail")
    real = lay.hval != 0
    cnt = np.array([real[a:b].sum() for a, b in zip(lay.hptr[:-1], lay.hptr[1:])])
    ptr = np.r_[0, np.cumsum(cnt)].astype(np.int64)
    idx, val = lay.hidx[real], lay.hval[real]
    assert set(cnt % 4) == {0, 1, 2, 3}
    wm = np.random.default_rng(8).normal(size=lay.hot.size)
    m16, m32, mpad = (np.empty(shard.rows) for _ in range(3))
    K.csr_margins(ptr, idx, val, wm, m16)
    K.csr_margins(ptr, idx.astype(np.int32), val, wm, m32)
    K.csr_margins(lay.hptr, lay.hidx, lay.hval, wm, mpad)
    assert np.array_equal(m16, m32) and np.array_equal(m16, mpad)
    coef = np.random.default_rng(9).normal(size=shard.rows)
    part = np.empty_like(lay.part)
    K.split_scatter(ptr, idx, val, lay.panels, part, coef)
    K.split_scatter(lay.hptr, lay.hidx, lay.hval, lay.panels, lay.part, coef)
    assert np.array_equal(part, lay.part)


@pytest.mark.parametrize("values", ["float64", "float32"])
def test_split_margins_are_the_tail_partials_in_order_plus_the_hot_rows(skewed, monkeypatch,
                                                                         values):
    """Bit for bit: each tail partial is its piece's products val·w[col] summed by row in entry
    order (numpy.bincount), and a margin is the partials added in order, then the hot row's
    row_dot (csr_margins of the padded hot rows with w's hot slice). Three pieces, so an
    order other than 0, 1, 2 shows."""
    shard, w = skewed
    monkeypatch.setattr(linear_model, "TAIL_PARTIALS", 3)
    lay = linear_model.LinearShard(shard, "logistic", values=values).layout
    if lay.tpart.shape[0] != 3:
        pytest.skip("direct margins or no tail: no partials")
    m = np.empty(shard.rows)
    lay.margins(w, m)
    prod = lay.tcval.astype(np.float64) * w[lay.tcol]
    base = np.zeros(shard.rows)
    for c in range(3):
        a, b = lay.mcut[c], lay.mcut[c + 1]
        part = np.bincount(lay.trow[a:b], weights=prod[a:b], minlength=shard.rows)
        assert np.array_equal(lay.tpart[c], part)
        base = base + part
    hot = np.empty(shard.rows)
    K.csr_margins(lay.hptr, lay.hidx, lay.hval, np.ascontiguousarray(w[lay.hot]), hot)
    assert np.array_equal(m, base + hot)
