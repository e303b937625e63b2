"""Line search satisfying the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5/3.6).

`phi(t)` returns (φ(t), φ'(t), aux); the search returns (t, φ(t), aux, evaluations) of the
accepted point. Interpolation: safeguarded cubic, bisection as the fallback. Used by
distributed L-BFGS (each φ is one Allreduce of a d-vector) and FADL (each φ is one Allreduce
of two scalars over cached margins).

`floor` (≥ 0) is the floating-point floor of φ: a change of φ smaller than it means nothing.
When the best decrease the search can still hope for is below it (with `predict`, for a
well-scaled direction such as a quasi-Newton one: the first trial's predicted decrease
−t₁·φ'(0) ≤ floor; always: three zoom trials in a row within the floor of φ(0)), the search stops at once with LineSearchFailed(at_floor=True): converged, not a failure, and
no tail of wasted evaluations. A genuine failure (at_floor=False) means the trials moved φ
by more than the floor without meeting the Wolfe conditions.
"""
import math

import numpy as np


class LineSearchFailed(Exception):
    def __init__(self, message, at_floor=False, evals=0):
        super().__init__(message)
        self.at_floor = at_floor
        self.evals = evals


class _Trials:
    """Evaluations so far, and whether they all stayed within the floor of φ(0)."""

    def __init__(self, phi, f0, floor, max_evals):
        self.phi, self.f0, self.floor, self.max_evals = phi, f0, floor, max_evals
        self.n = 0
        self.flat = 0  # consecutive zoom trials with |φ(t) − φ(0)| ≤ floor
        self.zoom = False

    def __call__(self, t):
        if self.n >= self.max_evals:
            raise LineSearchFailed(f"no acceptable step in {self.max_evals} evaluations",
                                   evals=self.n)
        f, d, aux = self.phi(t)
        self.n += 1
        self.flat = self.flat + 1 if self.zoom and abs(f - self.f0) <= self.floor else 0
        if self.floor > 0 and self.flat >= 3:
            raise LineSearchFailed("converged: floating-point floor", at_floor=True,
                                   evals=self.n)
        return f, d, aux


def _cubic_min(a, fa, da, b, fb, db):
    """Minimiser of the cubic through (a, fa, da), (b, fb, db), or None."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0:
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0:
        return None
    return b - (b - a) * (db + d2 - d1) / denom


def wolfe(phi, f0, d0, t1=1.0, c1=1e-4, c2=0.9, max_evals=40, t_max=1e10, floor=0.0,
          predict=False):
    if not d0 < 0:
        raise LineSearchFailed("not a descent direction")
    if predict and floor > 0 and -d0 * t1 <= floor:
        raise LineSearchFailed("converged: floating-point floor", at_floor=True)
    ev = _Trials(phi, f0, floor, max_evals)
    t_prev, f_prev, d_prev = 0.0, f0, d0
    t = t1
    aux_prev = None
    while True:
        f, d, aux = ev(t)
        if f > f0 + c1 * t * d0 or (ev.n > 1 and f >= f_prev):
            return _zoom(ev, f0, d0, t_prev, f_prev, d_prev, aux_prev, t, f, d, c1, c2)
        if abs(d) <= -c2 * d0:
            return t, f, aux, ev.n
        if d >= 0:
            return _zoom(ev, f0, d0, t, f, d, aux, t_prev, f_prev, d_prev, c1, c2)
        t_prev, f_prev, d_prev, aux_prev = t, f, d, aux
        t = min(2.0 * t, t_max)


def _zoom(ev, f0, d0, lo, flo, dlo, auxlo, hi, fhi, dhi, c1, c2):
    ev.zoom = True
    try:
        while True:
            t = _cubic_min(lo, flo, dlo, hi, fhi, dhi)
            a, b = min(lo, hi), max(lo, hi)
            if t is None or not (a + 0.1 * (b - a) <= t <= b - 0.1 * (b - a)):
                t = 0.5 * (lo + hi)
            f, d, aux = ev(t)
            if f > f0 + c1 * t * d0 or f >= flo:
                hi, fhi, dhi = t, f, d
            else:
                if abs(d) <= -c2 * d0:
                    return t, f, aux, ev.n
                if d * (hi - lo) >= 0:
                    hi, fhi, dhi = lo, flo, dlo
                lo, flo, dlo, auxlo = t, f, d, aux
            if abs(hi - lo) <= 1e-16 * max(1.0, abs(lo)):
                break
    except LineSearchFailed as exc:
        if exc.at_floor:
            raise
    if lo > 0 and flo < f0:  # sufficient decrease only: accept the best point found
        return lo, flo, auxlo, ev.n
    at_floor = ev.floor > 0 and abs(flo - f0) <= ev.floor and abs(fhi - f0) <= ev.floor
    raise LineSearchFailed("converged: floating-point floor" if at_floor else
                           f"zoom found no acceptable step in {ev.n} evaluations",
                           at_floor=at_floor, evals=ev.n)


def plane_newton(psi, t, max_steps=6, c1=1e-4, floor=0.0):
    """Minimise ψ over (α, β) from (t, 0) by Newton steps on the 2×2 system, each with Armijo
    backtracking (halving, down to 1e-3); stops when a step is not a descent direction, the
    Newton model predicts a decrease of at most `floor` (the floating-point floor of ψ's
    evaluation: its rounding would then decide the Armijo test, and each rejected trial
    would cost one more Allreduce for nothing), no step is accepted, the decrease is below
    1e-12·|ψ|, or after max_steps. ψ never rises.
    Returns ((α, β), trials)."""
    x = np.array([t, 0.0])
    f, g, H = psi(x)
    trials = 1
    for _ in range(max_steps):
        if not np.all(np.isfinite(H)) or np.linalg.det(H) <= 0 or H[0, 0] <= 0:
            break
        d = -np.linalg.solve(H, g)
        gd = float(g @ d)
        if not gd < 0 or -0.5 * gd <= floor:
            break
        u = 1.0
        while u >= 1e-3:
            fn, gn, Hn = psi(x + u * d)
            trials += 1
            if fn <= f + c1 * u * gd:
                break
            u *= 0.5
        else:
            break
        x, dec = x + u * d, f - fn
        f, g, H = fn, gn, Hn
        if dec <= 1e-12 * abs(f):
            break
    return x, trials
