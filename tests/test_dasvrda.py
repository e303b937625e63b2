"""DASVRDA, prox-svrg, katyusha: kernels vs NumPy references, optimum vs an independent FISTA,
P-independence (MPI), and SIGTERM → exit 75 → resume → bit-identical (CLI end to end)."""
import os
import signal

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from util import cli, start, wait_for, write_job
from mpitrain.algorithms import resolve_job

V = pytest.importorskip("mpitrain._kernels.vr_sparse")


# -- references --------------------------------------------------------------------------
def prox_ref(v, c, l1, l2):
    return np.sign(v) * np.maximum(np.abs(v) - c * l1, 0.0) / (1.0 + c * l2)


def dlogistic(y, m):
    return -y / (1.0 + np.exp(y * m))


def load_xy(path, max_rows=0, unit_rows=True):
    with h5py.File(path, "r") as f:
        g = f["train"] if "train" in f else f
        y = g["y"][()].astype(np.float64)
        if "X" in g:
            X = g["X"][()].astype(np.float64)
        else:
            X = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]),
                              shape=tuple(g.attrs["shape"]))
    if max_rows:
        X, y = X[:max_rows], y[:max_rows]
    if unit_rows:
        if sp.issparse(X):
            nr = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
            nr[nr == 0] = 1.0
            X = sp.diags(1.0 / nr) @ X
            X = sp.csr_matrix(X)
        else:
            nr = np.linalg.norm(X, axis=1)
            nr[nr == 0] = 1.0
            X = X / nr[:, None]
    return X, y


def objective(X, y, w, l2, l1):
    m = X @ w
    return (np.mean(np.logaddexp(0.0, -y * m)) + 0.5 * l2 * w @ w + l1 * np.abs(w).sum())


def fista(X, y, l2, l1, iters=5000):
    """Tight FISTA with adaptive restart for the logistic elastic net (the independent
    optimum). Columns without non-zeros are dropped (their optimal weight is 0)."""
    n, d = X.shape
    used = np.flatnonzero(np.asarray(abs(X).sum(axis=0)).ravel()) if sp.issparse(X) \
        else np.arange(d)
    Xu = X[:, used]
    v = np.ones(len(used))
    for _ in range(100):  # power iteration for ‖X‖², with a safety margin
        v = Xu.T @ (Xu @ v)
        s2 = np.linalg.norm(v)
        v /= s2
    L = 1.05 * 0.25 * s2 / n + l2
    w = np.zeros(len(used))
    z = w.copy()
    t = 1.0
    fold = np.inf
    for _ in range(iters):
        g = Xu.T @ dlogistic(y, Xu @ z) / n + l2 * z
        wn = prox_ref(z - g / L, 1.0 / L, l1, 0.0)
        if np.linalg.norm(wn - z) * L < 1e-13:  # prox-gradient residual
            w = wn
            break
        f = objective(Xu, y, wn, l2, l1)
        if f > fold:  # adaptive restart
            t, z = 1.0, w.copy()
            continue
        tn = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = wn + ((t - 1) / tn) * (wn - w)
        w, t, fold = wn, tn, f
    full = np.zeros(d)
    full[used] = w
    return full, objective(X, y, full, l2, l1)


# -- kernels vs NumPy --------------------------------------------------------------------
def test_row_kernels_match_numpy():
    rng = np.random.default_rng(0)
    Xd = rng.standard_normal((50, 300))
    S = sp.random(50, 300, density=0.05, random_state=1, format="csr")
    S.indptr = S.indptr.astype(np.int64)
    S.indices = S.indices.astype(np.int32)
    rows = rng.integers(0, 50, 17).astype(np.int64)
    w = rng.standard_normal(300)
    coef = rng.standard_normal(17)
    out = np.empty(17)
    V.dense_rows_margins(Xd, rows, w, out)
    np.testing.assert_allclose(out, Xd[rows] @ w, rtol=1e-13, atol=1e-13)
    V.csr_rows_margins(S.indptr, S.indices, S.data, rows, w, out)
    np.testing.assert_allclose(out, S[rows] @ w, rtol=1e-13, atol=1e-13)
    g = np.empty(300)
    V.dense_rows_rmatvec(Xd, rows, coef, g)
    np.testing.assert_allclose(g, Xd[rows].T @ coef, rtol=1e-12, atol=1e-12)
    g[:] = 0
    V.csr_rows_scatter(S.indptr, S.indices, S.data, rows, coef, g)
    np.testing.assert_allclose(g, S[rows].T @ coef, rtol=1e-12, atol=1e-13)
    # support of a scattered vector
    supp = np.empty(300, dtype=np.int64)
    c = V.support_nonzero(g, supp)
    assert list(supp[:c]) == list(np.flatnonzero(g))
    # variance-reduction coefficients (logistic, code 0)
    y = np.where(rng.random(50) < 0.5, -1.0, 1.0)
    manch = rng.standard_normal(50)
    mnew = rng.standard_normal(17)
    V.vr_coefs(0, y, rows, mnew, manch, 0.25, out)
    ref = 0.25 * (dlogistic(y[rows], mnew) - dlogistic(y[rows], manch[rows]))
    np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("P", [1, 2, 3, 5])
def test_pair_exchange_equals_serial_scatter(P):
    """The sparse exchange: each 'rank' turns its rows of the mini-batch into (column, value)
    pairs, the concatenation in rank order (what Allgatherv returns) is merged in draw order:
    bit-identical to a serial scatter of the whole batch, whatever the split."""
    rng = np.random.default_rng(P)
    n, d, b = 60, 400, 23
    S = sp.random(n, d, density=0.03, random_state=P, format="csr")
    S.indptr = S.indptr.astype(np.int64)
    S.indices = S.indices.astype(np.int32)
    batch = rng.integers(0, n, b).astype(np.int64)   # repeats allowed
    coef = rng.standard_normal(b)
    coef[3] = 0.0                                     # a zero coefficient still sends pairs
    ref = np.zeros(d)
    V.csr_rows_scatter(S.indptr, S.indices, S.data, batch, coef, ref)
    bounds = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), P - 1, replace=False)),
                             [n]]).astype(np.int64)
    rowlen = np.diff(S.indptr).astype(np.int64)
    starts, counts = np.empty(b, dtype=np.int64), np.empty(P, dtype=np.int64)
    total = V.batch_segments(batch, bounds, rowlen, starts, counts)
    assert total == rowlen[batch].sum() == counts.sum()
    parts = []
    for p in range(P):   # each rank: its rows (local numbers) in draw order
        mine = (batch >= bounds[p]) & (batch < bounds[p + 1])
        lo, hi = bounds[p], bounds[p + 1]
        local = S[lo:hi]
        local.indptr = local.indptr.astype(np.int64)
        out = np.empty((counts[p], 2))
        assert V.rows_pairs(local.indptr, local.indices, local.data,
                            (batch[mine] - lo).astype(np.int64), coef[mine], out) == counts[p]
        parts.append(out)
    pairs = np.ascontiguousarray(np.concatenate(parts))
    v = np.zeros(d)
    mark = np.zeros(d, dtype=np.uint8)
    supp = np.empty(d, dtype=np.int64)
    c = V.scatter_pairs(pairs, batch, starts, rowlen, v, mark, supp)
    assert np.array_equal(v, ref)
    assert sorted(supp[:c]) == list(np.flatnonzero(ref)) and not mark.any()


@pytest.mark.parametrize("l1,l2", [(0.3, 0.1), (0.0, 0.2), (0.5, 0.0)])
def test_prox_exact(l1, l2):
    v = np.random.default_rng(1).standard_normal(1000) * 2
    out = np.empty_like(v)
    V.enet_prox(v, 0.7, l1, l2, out)
    assert np.array_equal(out, prox_ref(v, 0.7, l1, l2))


@pytest.mark.parametrize("l1,l2", [(0.02, 0.05), (0.0, 0.05), (0.03, 0.0), (0.0, 0.0)])
def test_lazy_stage_equals_dense_recursion(l1, l2):
    """A whole inner stage: lazy kernels (just-in-time margins, support updates, final sync)
    against the literal dense recursion of ḡ, z (prox anchored at z₀) and x."""
    rng = np.random.default_rng(2)
    n, d, m, eta = 40, 200, 25, 0.3
    S = sp.random(n, d, density=0.04, random_state=3, format="csr")
    S.indptr = S.indptr.astype(np.int64)
    S.indices = S.indices.astype(np.int32)
    z0 = rng.standard_normal(d) * (rng.random(d) < 0.5)
    mu = rng.standard_normal(d) * 0.1
    # dense reference state
    x, z, gbar = z0.copy(), z0.copy(), np.zeros(d)
    # lazy state
    xl, last, H = z0.copy(), np.zeros(d, dtype=np.int64), np.zeros(d)
    S0, S1 = np.empty(m + 1), np.empty(m + 1)
    V.prefix_sums(m, eta, l2, S0, S1)
    vbuf = np.zeros(d)
    supp = np.empty(d, dtype=np.int64)
    stamp, yval = np.zeros(d, dtype=np.int64), np.empty(d)
    for k in range(1, m + 1):
        th = (k + 1) / 2
        yk = (1 - 1 / th) * x + z / th
        rows = rng.integers(0, n, 5).astype(np.int64)
        ml = np.empty(5)
        V.lazy_margins(S.indptr, S.indices, S.data, rows, k, xl, last, H, z0, mu, S0, S1,
                       eta, l1, l2, ml, k, stamp, yval)   # shared columns: evaluated once
        np.testing.assert_allclose(ml, S[rows] @ yk, rtol=1e-11, atol=1e-12)
        coef = np.tanh(ml)  # any function of the margins
        v = S[rows].T @ coef
        gbar = (1 - 1 / th) * gbar + (v + mu) / th
        c = eta * th * (k / 2)
        z = prox_ref(z0 - c * gbar, c, l1, l2)
        x = (1 - 1 / th) * x + z / th
        V.csr_rows_scatter(S.indptr, S.indices, S.data, rows, coef, vbuf)
        cnt = V.support_nonzero(vbuf, supp)
        V.lazy_update(supp[:cnt], k, vbuf, xl, last, H, z0, mu, S0, S1, eta, l1, l2)
        assert not vbuf.any()
        if k % 7 == 0:  # a sync in the middle must not change anything
            V.lazy_sync(k, xl, last, H, z0, mu, S0, S1, eta, l1, l2)
            np.testing.assert_allclose(xl, x, rtol=1e-11, atol=1e-12)
    V.lazy_sync(m, xl, last, H, z0, mu, S0, S1, eta, l1, l2)
    zl = np.empty(d)
    V.lazy_z(m, H, z0, mu, eta, l1, l2, zl)
    np.testing.assert_allclose(xl, x, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(zl, z, rtol=1e-11, atol=1e-12)
    assert np.array_equal(zl == 0, z == 0)


# -- end to end in-process ---------------------------------------------------------------
def run_job(tmp, data, algorithm="dasvrda", world=None, **kw):
    from mpitrain import driver
    from mpitrain.comm import World
    world = world or World()
    sections = {"job": {"algorithm": algorithm, "seed": 3, "log_every": 1000, "threads": 1},
                "data": {"train": data, "normalize": "unit_rows"},
                "model": {"l2": 1e-3, "l1": 1e-3},
                "solver": {"max_stages": 40},
                "checkpoint": {"every": 0}}
    for key, val in kw.items():
        sec, name = key.split("__")
        sections.setdefault(sec, {})[name] = val
    os.makedirs(tmp, exist_ok=True)
    job = write_job(os.path.join(tmp, f"job-{algorithm}.toml"), sections)
    out = os.path.join(tmp, f"out-{algorithm}-{world.size}")
    with open(os.devnull, "w") as devnull:
        summary = driver.run(world, job, out=out, fresh=True, stream=devnull)
    with h5py.File(os.path.join(out, "final.h5"), "r") as f:
        w = f["model/w"][()]
    return w, summary


@pytest.mark.timeout(120)
@pytest.mark.parametrize("l1", [1e-3, 0.0])
def test_dense_optimum_matches_fista(tmp_path, digits2_h5, l1):
    X, y = load_xy(digits2_h5)
    wstar, fstar = fista(X, y, 1e-3, l1)
    w, s = run_job(str(tmp_path), digits2_h5, model__l1=l1, solver__max_stages=30)
    f = objective(X, y, w, 1e-3, l1)
    assert abs(s["objective"] - f) <= 1e-12 * abs(f)
    assert (f - fstar) / abs(fstar) <= 1e-8, (f, fstar)
    assert s["updates"] == "dense"
    if l1:
        assert np.array_equal(w != 0, wstar != 0)
        assert 0 < np.count_nonzero(w) < w.size


@pytest.mark.timeout(120)
@pytest.mark.parametrize("l1", [1e-4, 0.0])
def test_sparse_optimum_matches_fista(tmp_path, rt_h5, l1):
    X, y = load_xy(rt_h5, max_rows=1000)
    wstar, fstar = fista(X, y, 1e-3, l1)
    w, s = run_job(str(tmp_path), rt_h5, data__max_rows=1000, model__l1=l1,
                   solver__max_stages=30)
    f = objective(X, y, w, 1e-3, l1)
    assert (f - fstar) / abs(fstar) <= 1e-8, (f, fstar)
    assert s["updates"] == "lazy" and s["communication"] == "columns"
    if l1:
        assert np.array_equal(w != 0, wstar != 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("comm", ["columns", "sparse"])
def test_float32_values_full_gradient(tmp_path, rt_h5, comm):
    """[model] values = "float32": the per-stage full gradient (the LinearShard of the row
    path, or of the columns mode's block) reads the values rounded to float32, the inner steps
    the float64 rows. The run stays certified on the float64 data (dist(0, ∂f)²/(2·l2) ≤ 1e-13,
    NumPy) and differs from the float64 run by a rounding-sized amount, not zero."""
    X, y = load_xy(rt_h5, max_rows=1000)
    kw = dict(data__max_rows=1000, model__l1=1e-4, solver__max_stages=30,
              solver__communication=comm)
    w64, _ = run_job(str(tmp_path / "f64"), rt_h5, **kw)
    w32, s = run_job(str(tmp_path / "f32"), rt_h5, model__values="float32", **kw)
    assert s["communication"] == comm
    assert certificate(X, y, w32, 1e-3, 1e-4)[1] <= 1e-13
    rel = np.linalg.norm(w32 - w64) / np.linalg.norm(w64)
    assert 0 < rel <= 1e-6, rel


@pytest.mark.timeout(120)
@pytest.mark.parametrize("alg,scale", [("prox-svrg", 4.0), ("katyusha", 1.0)])
def test_baselines_reach_optimum(tmp_path, digits2_h5, alg, scale):
    X, y = load_xy(digits2_h5)
    wstar, fstar = fista(X, y, 1e-3, 1e-3)
    w, s = run_job(str(tmp_path), digits2_h5, algorithm=alg, solver__eta_scale=scale,
                   solver__max_stages=80)
    f = objective(X, y, w, 1e-3, 1e-3)
    assert (f - fstar) / abs(fstar) <= 1e-8, (alg, f, fstar)


@pytest.mark.timeout(120)
def test_lazy_run_equals_dense_run(tmp_path, rt_h5):
    """The whole algorithm on sparse data: lazy updates vs the literal dense inner loop."""
    w1, _ = run_job(str(tmp_path / "a"), rt_h5, data__max_rows=1500, solver__max_stages=4,
                    solver__updates="lazy")
    w2, _ = run_job(str(tmp_path / "b"), rt_h5, data__max_rows=1500, solver__max_stages=4,
                    solver__updates="dense")
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-11 * np.abs(w2).max())


def build(tmp, data, algorithm="dasvrda", **kw):
    """An algorithm object after setup() (P = 1), without running it."""
    from mpitrain import config, driver
    from mpitrain.algorithms import registry
    from mpitrain.algorithms.base import Context
    from mpitrain.comm import World
    from mpi4py import MPI
    sections = {"job": {"algorithm": algorithm, "seed": 3}, "data": {"train": data},
                "model": {"l2": 1e-3, "l1": 0.0}, "solver": {}}
    for key, val in kw.items():
        sec, name = key.split("__")
        sections.setdefault(sec, {})[name] = val
    path = write_job(os.path.join(tmp, "build.toml"), sections)
    job = resolve_job(config.read_toml(path), path)
    world = World(MPI.COMM_SELF)
    cls = registry()[algorithm]
    train, test = driver.load_data(world, job, cls)
    alg = cls(Context(world, job, train, test))
    alg.setup()
    return alg


def certificate(X, y, w, l2, l1):
    """(f(w), dist(0, ∂f(w))²/(2·l2)): the objective and a certified bound on f(w) − f* (f is
    l2-strongly convex); minimal-norm subgradient, coordinate-wise for l1."""
    g = X.T @ dlogistic(y, X @ w) / X.shape[0] + l2 * w
    s = np.where(w != 0, g + l1 * np.sign(w), np.sign(g) * np.maximum(np.abs(g) - l1, 0.0))
    return objective(X, y, w, l2, l1), float(s @ s) / (2.0 * l2)


@pytest.fixture
def tiny_h5(tmp_path):
    """7 rows with very different norms (so importance sampling is not uniform), dense and CSR."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 5)) * rng.uniform(0.1, 3.0, (7, 1))
    X[rng.random(X.shape) < 0.3] = 0.0
    y = np.where(rng.random(7) < 0.5, -1.0, 1.0)
    S = sp.csr_matrix(X)
    paths = {}
    for kind in ("dense", "sparse"):
        paths[kind] = str(tmp_path / f"tiny-{kind}.h5")
        with h5py.File(paths[kind], "w") as f:
            g = f.create_group("train")
            g["y"] = y
            if kind == "dense":
                g["X"] = X
            else:
                g["data"], g["indices"], g["indptr"] = S.data, S.indices, S.indptr
                g.attrs["shape"] = S.shape
    return X, y, paths


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("sampling", ["importance", "uniform"])
def test_sampling_estimator_unbiased(tmp_path, tiny_h5, kind, sampling):
    """E_q[gᵢ] = ∇F(w) exactly, for the method's one-row estimator gᵢ = wᵢ[∇fᵢ(w) − ∇fᵢ(x̃)] + μ̃
    (wᵢ = 1/(n qᵢ)), summed over the sampling distribution q ∝ Lᵢ; the sampler draws with q."""
    X, y, paths = tiny_h5
    n = X.shape[0]
    alg = build(str(tmp_path), paths[kind], solver__batch=1, solver__sampling=sampling)
    sq = (X * X).sum(axis=1)
    q = sq / sq.sum() if sampling == "importance" else np.full(n, 1.0 / n)
    np.testing.assert_allclose(alg.q, q, rtol=1e-14)
    assert alg.L == pytest.approx(0.25 * (sq.mean() if sampling == "importance" else sq.max()))
    rng = np.random.default_rng(5)
    alg.xt = rng.standard_normal(X.shape[1])       # an anchor x̃ ≠ 0 and a point w
    alg.full_gradient()
    w = rng.standard_normal(X.shape[1])
    expect = sum(q[i] * (alg.vr_direction(w, np.array([i], dtype=np.int64)) + alg.mu)
                 for i in range(n))
    grad = X.T @ dlogistic(y, X @ w) / n
    np.testing.assert_allclose(expect, grad, rtol=1e-12, atol=1e-14)
    draws = alg.draw(40000).ravel()
    freq = np.bincount(draws, minlength=n) / draws.size
    assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / draws.size) + 1e-12)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sampling,tol", [("uniform", 1e-8), ("importance", 1e-6)])
def test_certified_gap_small_l2(tmp_path, rt_h5, sampling, tol):
    """The regime the docs make claims about (l2 = 1e-5, 3,000 rows, l1 > 0), default step,
    60 stages: the certified bound dist(0, ∂f)²/(2·l2) on f(w) − f* is below tol, so the
    objective is within tol of the true optimum (f* ≤ f(w) ≤ f* + tol), whatever f* is.
    Importance sampling runs on rt-polarity rows rescaled by factors in [0.3, 3] (unit rows
    would make it uniform sampling)."""
    l2, l1 = 1e-5, 1e-4
    X, y = load_xy(rt_h5, max_rows=3000)
    path, norm = rt_h5, "unit_rows"
    if sampling == "importance":
        X = sp.csr_matrix(sp.diags(np.random.default_rng(0).uniform(0.3, 3.0, 3000)) @ X)
        path, norm = str(tmp_path / "scaled.h5"), "none"
        with h5py.File(path, "w") as f:
            g = f.create_group("train")
            g["y"], g["data"], g["indices"], g["indptr"] = y, X.data, X.indices, X.indptr
            g.attrs["shape"] = X.shape
    w, s = run_job(str(tmp_path), path, data__max_rows=3000, data__normalize=norm,
                   model__l1=l1, model__l2=l2, solver__sampling=sampling,
                   solver__max_stages=60)
    f, bound = certificate(X, y, w, l2, l1)
    assert abs(s["objective"] - f) <= 1e-12 * abs(f)
    assert bound <= tol, (f, bound, s["stages"])
    assert 0 < np.count_nonzero(w) < w.size


@pytest.mark.timeout(120)
@pytest.mark.parametrize("restart,sc", [("gradient", "paper"), ("objective", "off")])
def test_restart_certified_on_ill_conditioned_problem(tmp_path, digits2_h5, restart, sc):
    """The defaults (the gradient restart and DASVRDA^sc's every S = 27 stages) and the
    objective restart alone on digits 2-vs-rest with l2 = 1e-6, l1 = 0 (condition number
    ~2.5e5): 150 stages end within a certified 1e-7 relative gap (dist(0, ∂f)²/(2·l2));
    without any restart (restart = "none", sc_restart = "off") the same run ends at ~1.2e-5.
    With "objective" alone every restart happens at the start of a stage s whose anchor
    objective rose: P(x̃ₛ₋₁) > P(x̃ₛ₋₂)."""
    import json
    w, s = run_job(str(tmp_path), digits2_h5, model__l1=0.0, model__l2=1e-6,
                   solver__restart=restart, solver__sc_restart=sc, solver__max_stages=150)
    X, y = load_xy(digits2_h5)
    f, bound = certificate(X, y, w, 1e-6, 0.0)
    assert abs(s["objective"] - f) <= 1e-12 * abs(f)
    assert bound <= 1e-7 * f, bound / f
    rows = [json.loads(line) for line in open(tmp_path / "out-dasvrda-1" / "metrics.jsonl")]
    rows = {r["stage"]: r for r in rows if "objective" in r}
    at = [k for k in sorted(rows)[1:] if rows[k]["restarts"] > rows[k - 1]["restarts"]]
    assert at and s["restarts"] == len(at)
    if restart == "objective":
        assert all(k >= 3 and rows[k - 1]["objective"] > rows[k - 2]["objective"]
                   for k in at), at


@pytest.mark.parametrize("restart,fires", [("gradient", (True, False)),
                                           ("adaptive", (False, True)),
                                           ("none", (False, False))])
def test_restart_tests_at_stage_start(tmp_path, tiny_h5, restart, fires):
    """begin_stage's restart tests on crafted iterates (x̃ₛ₋₁ = 0, ỹₛ₋₁ − x̃ₛ₋₁ = e₁):
    case 1, the last stage moved along e₁ (x̃ₛ₋₁ − x̃ₛ₋₂ = e₁) while the momentum point lies
    far along −e₁ (z̃ₛ₋₁ = −100e₁); case 2, both reversed. "gradient" tests the last step,
    "adaptive" the momentum direction ỹₛ − x̃ₛ₋₁; a restart starts the stage at x̃ₛ₋₁."""
    _, _, paths = tiny_h5
    alg = build(str(tmp_path), paths["dense"], solver__restart=restart)
    e1 = np.eye(alg.d)[0]
    for case, (step, z) in enumerate([(e1, -100 * e1), (-e1, 100 * e1)]):
        alg.xt, alg.xprev[:], alg.yprev[:], alg.zt[:] = np.zeros(alg.d), -step, e1, z
        alg.s_loc, alg.restarts = 1, 0
        alg.begin_stage()
        assert alg.restarts == int(fires[case]), case
        assert (np.count_nonzero(alg.z0) == 0) == fires[case], case


@pytest.mark.timeout(60)
@pytest.mark.parametrize("l2,inner,period", [(1e-6, 0, 27), (1e-6, 10, 27), (1e-4, 0, 4),
                                             (0.0, 0, None)])
def test_sc_period_is_the_papers_S(tmp_path, digits2_h5, l2, inner, period):
    """DASVRDA^sc (sc_restart = "paper"): S = 1 + ⌈√(L/l2)·(b/n + 1/√n)⌉, pinned for digits
    2-vs-rest (n = 1500, b = 38, unit rows: L = 1/4): l2 = 1e-6 gives 1 + ⌈500·0.05115⌉ = 27,
    whatever m (the paper states S in n and b), l2 = 1e-4 gives 1 + ⌈50·0.05115⌉ = 4; no
    period when l2 = 0 or with "off". begin_stage restarts (from x̃ₛ₋₁, fresh momentum) S
    stages after the last restart, not S − 1."""
    alg = build(str(tmp_path), digits2_h5, data__normalize="unit_rows", model__l2=l2,
                solver__restart="none", solver__sc_restart="paper", solver__inner=inner)
    assert (alg.n, alg.b) == (1500, 38) and alg.L == pytest.approx(0.25, rel=1e-12)
    assert alg.sc_period() == (period or np.inf)
    off = build(str(tmp_path), digits2_h5, data__normalize="unit_rows", model__l2=l2,
                solver__restart="none", solver__sc_restart="off")
    assert off.sc_period() == np.inf
    if period is None:
        return
    e1 = np.eye(alg.d)[0]
    for a, s_loc, fires in [(alg, period - 1, False), (alg, period, True), (off, period, False)]:
        a.xt, a.xprev[:], a.zt[:] = e1.copy(), -e1, 3 * e1   # momentum would move ỹ off x̃
        a.s_loc, a.restarts = s_loc, 0
        a.begin_stage()
        assert a.restarts == int(fires), (s_loc, fires)
        assert np.array_equal(a.z0, e1) == fires, (s_loc, fires)


@pytest.mark.timeout(120)
def test_sc_restart_runs_as_fixed_period(tmp_path, digits2_h5):
    """A run with sc_restart = "paper" alone (restart = "none", S = 4 at l2 = 1e-4) is the run
    with restart = "fixed", restart_every = 4 and sc_restart = "off", bit for bit (restarts at
    the starts of stages 5, 9, 13); with the defaults (the gradient restart and "paper"), no S
    stages pass without a restart."""
    import json
    common = dict(model__l1=0.0, model__l2=1e-4, solver__max_stages=13)
    w_sc, s_sc = run_job(str(tmp_path / "sc"), digits2_h5, solver__restart="none",
                         solver__sc_restart="paper", **common)
    w_fx, s_fx = run_job(str(tmp_path / "fx"), digits2_h5, solver__restart="fixed",
                         solver__restart_every=4, solver__sc_restart="off", **common)
    assert s_sc["sc_period"] == 4 and s_fx["sc_period"] is None
    assert np.array_equal(w_sc, w_fx) and s_sc["restarts"] == s_fx["restarts"] == 3
    _, s = run_job(str(tmp_path / "gr"), digits2_h5, **common)
    assert s["sc_period"] == 4
    rows = [json.loads(line)
            for line in open(tmp_path / "gr" / "out-dasvrda-1" / "metrics.jsonl")]
    rows = {r["stage"]: r["restarts"] for r in rows if "objective" in r}
    fresh = 1                      # the latest stage that started fresh (stage 1 does)
    for k in range(2, 14):
        if rows[k] > rows[k - 1]:
            fresh = k
        assert k - fresh < 4, (k, rows)


def test_old_defaults_keep_the_released_job_hash():
    """The defaults changed: restart "adaptive" → "gradient", then practical_c 4 → 8 and
    sc_restart "off" → "paper" (keys whose hash_omits is the old value): a run started before
    resumes (and its model evaluates) when its job says restart = "adaptive", practical_c = 4.0
    and sc_restart = "off", whose resolved job is the released default's, hash and all; any
    one of the three lines missing gives another hash."""
    from mpitrain.algorithms import job_hash
    raw = {"job": {"algorithm": "dasvrda"}, "data": {"train": "x.h5"}}
    lines = {"restart": "adaptive", "practical_c": 4.0, "sc_restart": "off"}
    old = {**raw, "solver": lines}
    assert job_hash(resolve_job(old, "job.toml")) == "05c9e922fc379400"
    assert job_hash(resolve_job(raw, "job.toml")) != "05c9e922fc379400"
    for key in lines:
        fewer = {**raw, "solver": {k: v for k, v in lines.items() if k != key}}
        assert job_hash(resolve_job(fewer, "job.toml")) != "05c9e922fc379400", key


def test_schema_and_bad_job(tmp_path, digits2_h5):
    r = cli(["algorithms", "dasvrda"])
    assert r.returncode == 0 and "restart" in r.stdout
    job = write_job(tmp_path / "bad.toml", {"job": {"algorithm": "dasvrda"},
                                            "data": {"train": digits2_h5},
                                            "solver": {"updates": "lazy"}})
    r = cli(["run", job, "--out", str(tmp_path / "o")])
    assert r.returncode == 78 and "lazy" in r.stderr
    r = cli(["run", job, "--out", str(tmp_path / "o"), "--set", "solver.updates='auto'",
             "--set", "solver.communication='columns'"])
    assert r.returncode == 78 and "'columns' needs sparse (CSR)" in r.stderr, r.stderr
    # a zero practical step would run every stage without moving: refused up front
    r = cli(["run", job, "--out", str(tmp_path / "o"), "--set", "solver.updates='auto'",
             "--set", "solver.practical_c=0.0"])
    assert r.returncode == 78 and "practical_c" in r.stderr and ">= 0.001" in r.stderr, r.stderr


# -- MPI: P-independence -------------------------------------------------------------------
@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("alg,data", [("dasvrda", "digits"), ("dasvrda", "rt"),
                                      ("dasvrda", "rt-sparse"),
                                      ("prox-svrg", "rt"), ("katyusha", "digits")])
def test_iterates_independent_of_P(shared_tmp, digits2_h5, rt_h5, alg, data):
    from mpi4py import MPI
    from mpitrain.comm import World
    path = digits2_h5 if data == "digits" else rt_h5
    kw = dict(algorithm=alg, solver__max_stages=4, model__l1=1e-4, data__max_rows=1000)
    if data == "rt-sparse":    # "rt": auto = columns (feature-parallel); here the pair exchange
        kw["solver__communication"] = "sparse"
    world = World()
    wp, _ = run_job(os.path.join(shared_tmp, f"p-{alg}-{data}"), path, world=world, **kw)
    # the replicas are bit-identical on every rank
    allw = world.comm.allgather(wp)
    assert all(np.array_equal(allw[0], a) for a in allw)
    if world.rank == 0:  # the same job on one rank
        w1, _ = run_job(os.path.join(shared_tmp, f"s-{alg}-{data}"), path,
                        world=World(MPI.COMM_SELF), **kw)
        rel = np.linalg.norm(wp - w1) / np.linalg.norm(w1)
        assert rel <= 1e-10, rel
    world.comm.Barrier()


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("chunk", [None, 40])
def test_world_alltoallv(monkeypatch, chunk):
    """World.alltoallv (the columns mode's redistribution): rank p sends (p + 2q) % 4 rows to
    rank q (some blocks empty) and every rank receives its blocks in rank order, in one
    counted call; `chunk` forces the large path (chunked Isend/Irecv, CHUNK_BYTES = 40: a
    block of 2 or more rows travels in several messages, at P = 2 too)."""
    from mpitrain import comm
    world = comm.World()
    if chunk:
        monkeypatch.setattr(comm, "CHUNK_BYTES", chunk)
    P, me = world.size, world.rank

    def block(src, dst):    # rows of 3 values that say where they come from and go to
        k = (src + 2 * dst) % 4
        return np.column_stack([np.full(k, src), np.full(k, dst), np.arange(k)]).astype(float)

    used = []

    class Spy:      # records the MPI calls, so each parametrisation checks the path it names
        def __getattr__(self, name):
            used.append(name)
            return getattr(world_comm, name)

    world_comm = world.comm
    monkeypatch.setattr(world, "comm", Spy())
    counts = [(me + 2 * q) % 4 for q in range(P)]
    local = np.concatenate([block(me, q) for q in range(P)])
    calls = world.calls
    got = world.alltoallv(local, counts)
    assert world.calls == calls + 1
    assert ("Alltoallv" in used) == (chunk is None) and ("Isend" in used) == bool(chunk), used
    assert np.array_equal(got, np.concatenate([block(p, me) for p in range(P)]))


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("alg", ["dasvrda", "prox-svrg"])
def test_sparse_exchange_equals_dense_allreduce(shared_tmp, rt_h5, alg):
    """At P ≥ 2 the mini-batch gradient travels as (column, value) pairs (one Allgatherv) or as
    a dense d-vector (one Allreduce): the same iterates up to summation order (1e-12), and
    the sparse exchange sends far fewer bytes."""
    from mpitrain.comm import World
    world = World()
    kw = dict(algorithm=alg, solver__max_stages=4, model__l1=1e-4, model__l2=1e-5,
              data__max_rows=2000)
    got = {}
    for comm in ("sparse", "dense"):
        w, s = run_job(os.path.join(shared_tmp, f"x-{alg}-{comm}"), rt_h5, world=world,
                       solver__communication=comm, **kw)
        got[comm] = (w, s["comm_bytes_all_ranks"])
    allw = world.comm.allgather(got["sparse"][0])
    assert all(np.array_equal(allw[0], a) for a in allw)
    (ws, bs), (wd, bd) = got["sparse"], got["dense"]
    assert np.linalg.norm(ws - wd) <= 1e-12 * np.linalg.norm(wd)
    assert bs < bd / 5


# -- SIGTERM → 75 → resume → bit-identical ----------------------------------------------------
@pytest.mark.timeout(150)
@pytest.mark.parametrize("data", ["digits", "rt"])
def test_sigterm_resume_bit_identical(tmp_path, digits2_h5, rt_h5, data):
    path = digits2_h5 if data == "digits" else rt_h5
    job = write_job(tmp_path / "job.toml", {
        "job": {"algorithm": "dasvrda", "seed": 5},
        "data": {"train": path, "normalize": "unit_rows", "max_rows": 1500},
        "model": {"l2": 1e-4, "l1": 1e-4},
        "solver": {"max_stages": 150, "inner_per_step": 3, "restart": "adaptive"},
        "checkpoint": {"every": 0}})
    ref = cli(["run", job, "--out", str(tmp_path / "ref")], nranks=2)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "cut"
    p = start(["run", job, "--out", str(out)], nranks=2)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and sum(1 for _ in open(metrics)) > 40, timeout=60)
    os.killpg(p.pid, signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 75
    latest = sorted((out / "checkpoints").glob("ckpt-*.h5"))[-1]
    with h5py.File(latest, "r") as f:
        k_at_stop = int(f["state/k"][()])
    res = cli(["run", job, "--out", str(out), "--resume", "auto"], nranks=2)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout + res.stderr
    a = h5py.File(tmp_path / "ref" / "final.h5", "r")["model/w"][()]
    b = h5py.File(out / "final.h5", "r")["model/w"][()]
    assert np.array_equal(a, b)
    print("stopped at inner step", k_at_stop)


# -- feature-parallel inner loop (communication = "columns") -------------------------------------
def test_rows_scatter_support_matches_scatter():
    """The columns mode's scatter: the same floating-point sums as csr_rows_scatter (t in
    order), and exactly the columns left non-zero, with the marks cleared."""
    rng = np.random.default_rng(7)
    S = sp.random(40, 200, density=0.05, random_state=7, format="csr")
    S.indptr = S.indptr.astype(np.int64)
    S.indices = S.indices.astype(np.int32)
    rows = rng.integers(0, 40, 19).astype(np.int64)
    coef = rng.standard_normal(19)
    coef[2] = 0.0
    ref = np.zeros(200)
    V.csr_rows_scatter(S.indptr, S.indices, S.data, rows, coef, ref)
    v, mark, supp = np.zeros(200), np.zeros(200, dtype=np.uint8), np.empty(200, dtype=np.int64)
    c = V.rows_scatter_support(S.indptr, S.indices, S.data, rows, coef, v, mark, supp)
    assert np.array_equal(v, ref)
    assert sorted(supp[:c]) == list(np.flatnonzero(ref)) and not mark.any()


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_columns_mode_equals_P1_and_resumes_elsewhere(tmp_path, rt_h5):
    """communication = "columns" at P = 2 and 3 (an odd split of the columns) gives P = 1's
    iterates up to the summation order of the partial margins (1e-10), reaches a certified gap
    (dist(0, ∂f)²/(2·l2) ≤ 1e-8), and a checkpoint it writes in the middle of a stage (the
    blocks gathered into full vectors) resumes at P = 1 and at P = 3 to the same result."""
    l2, l1, rows = 1e-5, 1e-4, 1500
    job = write_job(tmp_path / "job.toml", {
        "job": {"algorithm": "dasvrda", "seed": 5, "log_every": 1000},
        "data": {"train": rt_h5, "normalize": "unit_rows", "max_rows": rows},
        "model": {"l2": l2, "l1": l1},
        "solver": {"max_stages": 80, "inner_per_step": 20},   # m = 39: 2 steps per stage
        "checkpoint": {"every": 0}})

    def final(out):
        with h5py.File(out / "final.h5", "r") as f:
            return f["model/w"][()]

    def run(out, P, *extra):
        r = cli(["run", job, "--out", str(out), "--set", 'solver.communication="columns"']
                + list(extra), nranks=P, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    ref = cli(["run", job, "--out", str(tmp_path / "ref"), "--set",
               'solver.communication="sparse"'], timeout=120)   # P = 1, the row path
    assert ref.returncode == 0, ref.stderr
    w1 = final(tmp_path / "ref")
    X, y = load_xy(rt_h5, max_rows=rows)
    f, bound = certificate(X, y, w1, l2, l1)
    assert bound <= 1e-8, bound
    for P in (2, 3):
        run(tmp_path / f"c{P}", P)
        w = final(tmp_path / f"c{P}")
        assert np.linalg.norm(w - w1) <= 1e-10 * np.linalg.norm(w1), P
        assert certificate(X, y, w, l2, l1)[1] <= 1e-8
    # stop at P = 2 after 2 stages with a checkpoint at step 3 (stage 2, inner step 20)
    cut = tmp_path / "cut"
    run(cut, 2, "--set", "checkpoint.every=3", "--set", "solver.max_stages=2")
    ckpt = str(tmp_path / "mid.h5")
    os.replace(cut / "checkpoints" / "ckpt-000000003.h5", ckpt)
    with h5py.File(ckpt, "r") as fh:
        assert int(fh["state/k"][()]) == 20 and int(fh["state/stage"][()]) == 1
    for P in (1, 3):
        r = run(tmp_path / f"r{P}", P, "--resume", ckpt)
        assert "resumed from" in r.stdout + r.stderr
        w = final(tmp_path / f"r{P}")
        assert np.linalg.norm(w - w1) <= 1e-10 * np.linalg.norm(w1), P


@pytest.mark.timeout(30)
def test_scaling_report_reads_results(tmp_path):
    """bench elasticnet --scaling's report: ms/stage, speed-up against P = 1 sparse, the inner
    step's collective, and the first point within a certified 1e-6 of f_lower."""
    from mpitrain.bench import elasticnet as E
    flow = 1.0

    def run(times, ph):
        curve = [{"time": t, "passes": 2.0 * (i + 1), "objective": flow * (1 + g)}
                 for i, (t, g) in enumerate(times)]
        return {"curve": curve, "phases": ph}
    runs = {"dasvrda P=1 sparse": run([(0.1, 1e-3), (0.2, 1e-7)], {"t_inner": 0.15}),
            "dasvrda P=2 columns": run([(0.05, 1e-3), (0.1, 5e-7)],
                                       {"t_inner": 0.08, "t_allreduce": 0.02,
                                        "comm_seconds": 0.03, "comm_calls": 7}),
            "sklearn saga": {"curve": [{"time": 1.5, "passes": 4.0,
                                        "objective": flow * (1 + 2e-7)}]}}
    results = {"scaling": [{"dataset": "toy", "l1": 0.0, "l2": 1e-4, "f_lower": flow,
                            "certificate_width_rel": 1e-12, "runs": runs, "sampling": "uniform",
                            "shape": [4, 3], "nnz": 6}],
               "stages": 2, "repeat": 1, "load": [1.0, 1.0, 1.0], "load_after": [1.0, 1.0, 1.0]}
    text = open(E._render_scaling(results, str(tmp_path))).read()
    rows = {line.split(" | ")[1]: line.split(" | ") for line in text.splitlines()
            if line.startswith("| toy | ")}
    assert rows["dasvrda P=1 sparse"][2:4] == ["100.0", "1.00"]
    assert rows["dasvrda P=2 columns"][2:8] == ["50.0", "2.00", "0.080", "0.020", "0.030", "7"]
    assert rows["dasvrda P=2 columns"][8:10] == ["4", "0.10"]
    assert rows["sklearn saga"][8:10] == ["4", "1.50"]


@pytest.mark.timeout(60)
def test_sc_restart_and_fixed_restart_whichever_comes_first(tmp_path, digits2_h5):
    """restart = "fixed" beside sc_restart = "paper" (S = 27 at l2 = 1e-6 on digits): with
    restart_every = 40 the restart comes at s_loc = 27 (S first), with restart_every = 10 at
    s_loc = 10 (fixed first), never one stage before."""
    for every, at in ((40, 27), (10, 10)):
        alg = build(str(tmp_path), digits2_h5, data__normalize="unit_rows", model__l2=1e-6,
                    solver__restart="fixed", solver__restart_every=every,
                    solver__sc_restart="paper")
        assert alg.sc_period() == 27
        e1 = np.eye(alg.d)[0]
        for s_loc in (at - 1, at):
            alg.xt, alg.xprev[:], alg.zt[:] = e1.copy(), -e1, 3 * e1
            alg.s_loc, alg.restarts = s_loc, 0
            alg.begin_stage()
            assert alg.restarts == int(s_loc == at), (every, s_loc)
