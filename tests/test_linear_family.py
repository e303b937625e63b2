"""The linear family's shared pieces: the loss table (vs finite differences and the kernels),
the cached-margin line (vs a full evaluation), the certified gap and the duality gap (vs a
tightly solved optimum: they must bound the true gap and be tight near the optimum), and the
line search's floating-point-floor stop."""
import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from mpitrain import data
from mpitrain._kernels import linear as K
from mpitrain.algorithms.linear_family import (LinearObjective, certified_gap, conj_sum,
                                               dual_scale, duality_gap, floor_tol,
                                               min_norm_subgradient)
from mpitrain.models.linesearch import LineSearchFailed, wolfe
from mpitrain.models.losses import LOSSES

pytestmark = pytest.mark.timeout(60)


def _shard(sparse, rows=80, d=12, seed=0):
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random(rows, d, density=0.4, random_state=seed, format="csr")
        X.data += 0.1
        X.sort_indices()
        X.indptr = X.indptr.astype(np.int64)
        X.indices = X.indices.astype(np.int32)
    else:
        X = rng.standard_normal((rows, d))
    w_true = rng.standard_normal(d)
    Xd = X.toarray() if sparse else X
    y = np.where(Xd @ w_true + 0.5 * rng.standard_normal(rows) > 0, 1.0, -1.0)
    return data.Shard(X, y, 0, rows, rows, d, "test"), Xd, y


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_table_derivatives_smoothness_conjugates_and_kernels(name):
    L = LOSSES[name]
    m = np.linspace(-4, 4, 161) + 0.0123  # off the squared hinge's kink at y·m = 1
    for y in (-1.0, 1.0):
        yy = np.full_like(m, y)
        h = 1e-6
        fd = (L.value(yy, m + h) - L.value(yy, m - h)) / (2 * h)
        np.testing.assert_allclose(L.deriv(yy, m), fd, rtol=1e-6, atol=1e-8)
        fd2 = (L.deriv(yy, m + h) - L.deriv(yy, m - h)) / (2 * h)
        np.testing.assert_allclose(L.curv(yy, m), fd2, rtol=1e-5, atol=1e-7)
        assert L.curv(yy, m).max() <= L.smooth
        # L is the Lipschitz constant of dℓ/dm, and it is attained (sup of the slopes)
        slopes = np.abs(np.diff(L.deriv(yy, m)) / np.diff(m))
        assert slopes.max() <= L.smooth * (1 + 1e-9)
        assert slopes.max() >= 0.95 * L.smooth
        # Fenchel–Young with equality at u = ℓ'(m): ℓ(m) + ℓ*(u) = u·m
        u = L.deriv(yy, m)
        np.testing.assert_allclose(L.value(yy, m) + L.conj(yy, u), u * m, atol=1e-10)
        # and ≥ elsewhere
        u2 = u * 0.7
        assert np.all(L.value(yy, m) + L.conj(yy, u2) >= u2 * m - 1e-12)
        # the kernels compute the same loss and derivative
        dl = np.empty_like(m)
        total = K.loss_dloss(L.code, yy, m, dl)
        assert total == pytest.approx(L.value(yy, m).sum(), rel=1e-12)
        np.testing.assert_allclose(dl, L.deriv(yy, m), rtol=1e-12, atol=1e-15)
    assert K.LOSS_CODES == {k: v.code for k, v in LOSSES.items()}


@pytest.mark.parametrize("sparse", [False, True])
def test_objective_and_cached_line_match_a_full_evaluation(sparse):
    sh, X, y = _shard(sparse)
    obj = LinearObjective(sh, "logistic", 0.03)
    rng = np.random.default_rng(1)
    w, p = rng.standard_normal(sh.d), rng.standard_normal(sh.d)
    a = np.empty(sh.rows)
    f, g = obj.value_grad(obj.sums(w, a).copy(), w)
    ref = np.logaddexp(0, -y * (X @ w)).mean() + 0.015 * w @ w
    assert f == pytest.approx(ref, rel=1e-13)
    np.testing.assert_allclose(a, X @ w, rtol=1e-13, atol=1e-13)
    line = obj.line(a, obj.lm.margins(p), w, p)
    for t in (0.0, 0.3, 2.0):
        ft, gt = obj.value_grad(obj.sums(w + t * p).copy(), w + t * p)
        phi, dphi = line.value(t, *line.local(t))
        assert phi == pytest.approx(ft, rel=1e-12)
        assert dphi == pytest.approx(gt @ p, rel=1e-10, abs=1e-12)


def _solve(X, y, l1, l2):
    """A tight reference optimum (L-BFGS-B on the split w = u − v for l1 > 0)."""
    n, d = X.shape

    def f(z):
        w = z[:d] - z[d:] if l1 else z
        m = X @ w
        val = np.logaddexp(0, -y * m).mean() + 0.5 * l2 * w @ w
        gw = X.T @ (-y / (1 + np.exp(y * m))) / n + l2 * w
        if not l1:
            return val, gw
        return val + l1 * z.sum(), np.concatenate([gw + l1, -gw + l1])
    z0 = np.zeros(2 * d if l1 else d)
    bounds = [(0, None)] * (2 * d) if l1 else None
    z = so.fmin_l_bfgs_b(f, z0, bounds=bounds, factr=1.0, pgtol=1e-15, maxiter=50000)[0]
    w = z[:d] - z[d:] if l1 else z
    return w, f(z)[0]


@pytest.mark.parametrize("l1,l2", [(0.0, 1e-2), (2e-3, 1e-2), (5e-3, 0.0)])
def test_certified_and_duality_gaps_bound_the_true_gap(l1, l2):
    sh, X, y = _shard(False, rows=120, d=10, seed=3)
    obj = LinearObjective(sh, "logistic", l2, l1)
    w_star, f_star = _solve(X, y, l1, l2)
    rng = np.random.default_rng(5)
    a = np.empty(sh.rows)
    for scale in (1.0, 1e-1, 1e-2, 1e-3):
        w = w_star + scale * rng.standard_normal(sh.d) * np.linalg.norm(w_star)
        buf = obj.sums(w, a).copy()
        f, g = obj.value_grad(buf, w)
        true_gap = f - f_star
        s = dual_scale(buf, sh.n, l1, l2)
        dgap = duality_gap(buf, conj_sum(obj, a, s), s, w, sh.n, l1, l2)
        bound = certified_gap(g, w, l1, l2, dual=dgap)
        assert true_gap <= bound * (1 + 1e-9) + 1e-14, (scale, true_gap, bound)
        assert true_gap <= dgap * (1 + 1e-9) + 1e-14
        if l2 > 0:
            assert true_gap <= certified_gap(g, w, l1, l2) * (1 + 1e-9) + 1e-14
    # near the optimum the certificate is tight (not merely an upper bound)
    buf = obj.sums(w_star, a).copy()
    f, g = obj.value_grad(buf, w_star)
    s = dual_scale(buf, sh.n, l1, l2)
    assert duality_gap(buf, conj_sum(obj, a, s), s, w_star, sh.n, l1, l2) < 1e-7
    if l2 > 0:
        assert certified_gap(g, w_star, l1, l2) < 1e-9
    else:
        assert certified_gap(g, w_star, l1, l2) == np.inf


def test_min_norm_subgradient_is_coordinatewise():
    g = np.array([0.5, -0.5, 0.05, -0.2, 0.3])
    w = np.array([1.0, -2.0, 0.0, 0.0, 0.0])
    s = min_norm_subgradient(g, w, 0.1)
    np.testing.assert_allclose(s, [0.6, -0.6, 0.0, -0.1, 0.2])
    assert min_norm_subgradient(g, w, 0.0) is g


def test_line_search_stops_at_the_floor_and_names_it():
    f0 = 0.7
    floor = floor_tol(f0)
    calls = []

    def flat(t):  # the function is constant up to rounding noise: nothing to gain
        calls.append(t)
        return f0 + (1e-17 if len(calls) % 2 else -1e-17) * 0 + 2e-17 * t, -1e-18, None
    with pytest.raises(LineSearchFailed) as e:
        wolfe(flat, f0, -1e-18, 1.0, floor=floor, predict=True)
    assert e.value.at_floor and "floating-point floor" in str(e.value)
    assert calls == []          # predicted decrease below the floor: no evaluation at all
    calls.clear()
    # φ rises by noise above the floor-free search: zoom ends within a few trials
    with pytest.raises(LineSearchFailed) as e:
        wolfe(lambda t: (calls.append(t) or f0 + 1e-16 * (t > 0), 1e-3, None), f0, -1e-9,
              1.0, floor=floor)
    assert e.value.at_floor and len(calls) <= 4
    # a genuine failure (φ rises far above the floor at every t > 0) is not the floor
    calls.clear()
    with pytest.raises(LineSearchFailed) as e:
        wolfe(lambda t: (calls.append(t) or f0 + 1.0 * (t > 0), 1.0, None), f0, -1.0, 1.0,
              floor=floor)
    assert not e.value.at_floor and "zoom found no acceptable step" in str(e.value)
