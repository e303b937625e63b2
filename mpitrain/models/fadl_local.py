"""FADL's local approximation on one rank's shard, and its local solvers (no MPI).

Mean-form objective (the foundation's convention), n global rows, n_p = rows of shard p:

    f(w) = (1/n) Σᵢ ℓᵢ(w) + (l2/2)‖w‖²,      L_p(w) = Σ_{i∈I_p} ℓᵢ(w),  ℓᵢ(w) = ℓ(yᵢ, wᵀxᵢ)

Local approximation of rank p around wʳ, with the global gradient gʳ = ∇f(wʳ):

    f̃_p(w) = (l2/2)‖w‖² + σ·L_p(w),   σ = 1/n_p ("rescale", = (n/n_p)·(1/n)) or 1/n
    f̂_p(w) = f̃_p(w) + (κ/2)‖w − wʳ‖² + cᵀ(w − wʳ),   c = gʳ − l2·wʳ − σ·∇L_p(wʳ)

so ∇f̂_p(wʳ) = l2·wʳ + σ∇L_p(wʳ) + c = gʳ exactly (gradient consistency). Drawing i
uniformly from the n_p local rows, the per-sample SGD gradient of f̂_p is

    (l2 + κ)·w + (c − κ·wʳ) + ρ·ℓ'(yᵢ, wᵀxᵢ)·xᵢ,     ρ = σ·n_p  (1 with rescale, n_p/n without)

(in ALGORITHMS.md's sum form, scaled by n: λw + n∇ℓᵢ(w) + c_p). Plain SGD on a shard's own
objective (parameter mixing) is the case c = 0, κ = 0, σ = 1/n_p.

Variance-reduced estimator (`variance = "svrg"`): the same f̂_p, the same expectation, but the
per-sample gradient subtracts its value at wʳ and adds back its mean:

    (l2 + κ)·w + (gʳ − (l2 + κ)·wʳ) + ρ·(ℓ'(yᵢ, wᵀxᵢ) − ℓ'(yᵢ, wʳᵀxᵢ))·xᵢ

using c + σ∇L_p(wʳ) = gʳ − l2·wʳ. Its variance vanishes as w → wʳ, so a constant step does
not leave a noise floor (plain SGD's floor makes the safeguard fall back to −gʳ near the
optimum). The baselines ℓ'(yᵢ, wʳᵀxᵢ) come from the margins cached with the gradient.
"""
import numpy as np
from scipy.optimize import minimize

from .._kernels import fadl_sgd as S
from .._kernels import linear as K
from .linear import LinearShard
from .losses import BY_CODE


class LocalProblem:
    def __init__(self, lm: LinearShard, l2, kappa=0.0, rescale=True, variance="plain"):
        self.lm = lm
        self.variance = variance
        self.dl0 = np.empty(0)
        s = lm.shard
        self.rows = s.rows
        self.l2 = float(l2)
        self.kappa = float(kappa)
        self.sigma = 1.0 / s.rows if rescale else 1.0 / s.n
        self.rho = self.sigma * s.rows
        if s.sparse:
            self.max_sq = S.max_row_sqnorm_csr(s.X.indptr, s.X.data)
        else:
            self.max_sq = float(np.max(np.einsum("ij,ij->i", s.X, s.X))) if s.rows else 0.0
        self.d = lm.d
        self._m = np.empty(s.rows)
        self._buf = np.empty(self.d + 1)
        self._q = np.empty(self.d)
        self.wr = np.zeros(self.d)
        self.c = np.zeros(self.d)
        self.b = np.zeros(self.d)
        self.f_center = 0.0

    def center(self, wr, c, loss_sum_r, grad_sum_r=None, margins_r=None):
        """Set the expansion point wʳ, the correction c and L_p(wʳ) (known from the gradient
        evaluation). For the svrg estimator also ∇L_p(wʳ) = Σℓ'ᵢxᵢ and the margins Xwʳ."""
        self.wr = wr
        self.c = c
        self.b = c - self.kappa * wr
        self.f_center = 0.5 * self.l2 * float(wr @ wr) + self.sigma * loss_sum_r
        if self.variance == "svrg" and margins_r is not None:
            self.b = self.b + self.sigma * grad_sum_r
            self.dl0 = np.empty(self.rows)
            K.loss_dloss(self.lm.code, self.lm.y, margins_r, self.dl0, self.rho)
        else:
            self.dl0 = np.empty(0)

    # -- values ----------------------------------------------------------------------
    def value(self, w):
        """f̂_p(w)."""
        m = self.lm.margins(w, self._m)
        dw = w - self.wr
        return (0.5 * self.l2 * float(w @ w) + 0.5 * self.kappa * float(dw @ dw)
                + self.sigma * self.lm.loss_sum(m) + float(self.c @ dw))

    def value_grad(self, w):
        """(f̂_p(w), ∇f̂_p(w))."""
        self.lm.loss_grad_sums(w, self._buf, self._m)
        dw = w - self.wr
        f = (0.5 * self.l2 * float(w @ w) + 0.5 * self.kappa * float(dw @ dw)
             + self.sigma * self._buf[self.d] + float(self.c @ dw))
        g = self.l2 * w + self.kappa * dw + self.sigma * self._buf[:self.d] + self.c
        return f, g

    # -- solvers ---------------------------------------------------------------------
    def eta_bound(self):
        """1/L_max: the inverse of the largest per-sample curvature."""
        L = self.rho * BY_CODE[self.lm.code].smooth * self.max_sq + self.l2 + self.kappa
        return 1.0 / L if L > 0 else 1.0

    def sgd(self, w0, eta, orders):
        """SGD on f̂_p from w0 over the given row orders (one int64 array per epoch)."""
        w = np.array(w0, dtype=np.float64, copy=True)
        sh = self.lm.shard
        lam = self.l2 + self.kappa
        for order in orders:
            if sh.sparse:
                S.sgd_csr(sh.X.indptr, sh.X.indices, sh.X.data, self.lm.y, order,
                          self.lm.code, self.rho, eta, lam, self.b, w, self._q, self.dl0)
            else:
                S.sgd_dense(sh.X, self.lm.y, order, self.lm.code, self.rho, eta, lam,
                            self.b, w, self.dl0)
        return w

    def tune(self, w0, orders, factors=(0.25, 0.5, 1, 2, 4, 8, 16, 32)):
        """Constant step chosen by trying eta = factor/L_max (capped so that η(l2+κ) ≤ 0.5)
        for the given epochs and keeping the one with the lowest f̂_p. Returns (eta, w, f̂)."""
        base = self.eta_bound()
        lam = self.l2 + self.kappa
        best = (np.inf, None, None)
        tried = set()
        for fac in factors:
            eta = base * fac
            if lam > 0:
                eta = min(eta, 0.5 / lam)
            if eta in tried:
                continue
            tried.add(eta)
            with np.errstate(over="ignore", invalid="ignore"):
                w = self.sgd(w0, eta, orders)
                f = self.value(w)
            if np.isfinite(f) and f < best[0]:
                best = (f, eta, w)
        if best[1] is None:  # every candidate diverged: the smallest, whatever it gives
            eta = base * min(factors)
            w = self.sgd(w0, eta, orders)
            return eta, w, self.value(w)
        return best[1], best[2], best[0]

    def hess_vec(self, curv, v):
        """∇²f̂_p·v = (l2 + κ)·v + σ·Xᵀ(curv ∘ Xv), curv = ℓ''(yᵢ, mᵢ) at the current w."""
        return (self.l2 + self.kappa) * v + self.sigma * self.lm.rmatvec(curv * self.lm.margins(v))

    def newton(self, w0, rel_tol, max_iter, cg_iters=50):
        """Truncated Newton on f̂_p from w0 (the local solver of the FADL paper, TRON's model:
        Newton-CG; here with an Armijo backtracking line search instead of a trust region).
        Each Newton step solves ∇²f̂_p·s = −∇f̂_p by conjugate gradients to a residual
        ≤ 0.1·‖∇f̂_p‖ (at most cg_iters Hessian-vector products, two passes over the shard
        each); trials along s reuse the margins Xw + t·Xs. Stops when
        ‖∇f̂_p(w)‖ ≤ rel_tol·‖∇f̂_p(w0)‖ or after max_iter Newton steps: the local problem is
        solved to a relative accuracy, not for a fixed amount of work.
        Returns (w, f̂_p(w), Newton steps, Hessian-vector products)."""
        L = BY_CODE[self.lm.code]
        y = self.lm.y
        w = np.array(w0, dtype=np.float64, copy=True)
        f, g = self.value_grad(w)
        target = rel_tol * float(np.linalg.norm(g))
        steps = hvs = 0
        while steps < max_iter and float(np.linalg.norm(g)) > target:
            m = self._m.copy()
            curv = L.curv(y, m)
            s, k = _cg(lambda v: self.hess_vec(curv, v), -g, 0.1 * float(np.linalg.norm(g)),
                       cg_iters)
            hvs += k
            xs = self.lm.margins(s)
            gs = float(g @ s)
            if not gs < 0:
                break
            t, accepted = 1.0, False
            for _ in range(30):
                wt = w + t * s
                dw = wt - self.wr
                ft = (0.5 * self.l2 * float(wt @ wt) + 0.5 * self.kappa * float(dw @ dw)
                      + self.sigma * self.lm.loss_sum(m + t * xs) + float(self.c @ dw))
                if ft <= f + 1e-4 * t * gs:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                break
            w = wt
            f, g = self.value_grad(w)
            steps += 1
        return w, f, steps, hvs

    def lbfgs(self, w0, iters, memory=10):
        """A few L-BFGS iterations on f̂_p (scipy, deterministic)."""
        res = minimize(self.value_grad, np.array(w0, copy=True), jac=True, method="L-BFGS-B",
                       options={"maxiter": int(iters), "maxcor": int(memory), "gtol": 0.0,
                                "ftol": 0.0})
        return np.ascontiguousarray(res.x), float(res.fun), int(res.nit)


def _cg(hv, b, tol, max_iter):
    """Conjugate gradients for H x = b (H symmetric positive definite via hv), from x = 0,
    until ‖b − Hx‖ ≤ tol or max_iter products. Returns (x, products)."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    k = 0
    while k < max_iter and rr ** 0.5 > tol:
        hp = hv(p)
        k += 1
        php = float(p @ hp)
        if php <= 0:
            break
        a = rr / php
        x += a * p
        r -= a * hp
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, k


def orders_for(rng, rows, epochs):
    """Row orders of `epochs` SGD passes: one random permutation per epoch."""
    return [rng.permutation(rows).astype(np.int64) for _ in range(epochs)]

