"""Line search satisfying the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5/3.6).

`phi(t)` returns (φ(t), φ'(t), aux); the search returns (t, φ(t), aux, evaluations) of the
accepted point. Interpolation: safeguarded cubic, bisection as the fallback. Used by
distributed L-BFGS (each φ is one Allreduce of a d-vector) and FADL (each φ is one Allreduce
of two scalars over cached margins).
"""
import math


class LineSearchFailed(Exception):
    pass


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


def wolfe(phi, f0, d0, t1=1.0, c1=1e-4, c2=0.9, max_evals=40, t_max=1e10):
    if not d0 < 0:
        raise LineSearchFailed("not a descent direction")
    evals = 0
    t_prev, f_prev, d_prev = 0.0, f0, d0
    t = t1
    aux_prev = None
    while evals < max_evals:
        f, d, aux = phi(t)
        evals += 1
        if f > f0 + c1 * t * d0 or (evals > 1 and f >= f_prev):
            return _zoom(phi, f0, d0, t_prev, f_prev, d_prev, aux_prev, t, f, d, c1, c2,
                         evals, max_evals)
        if abs(d) <= -c2 * d0:
            return t, f, aux, evals
        if d >= 0:
            return _zoom(phi, f0, d0, t, f, d, aux, t_prev, f_prev, d_prev, c1, c2, evals,
                         max_evals)
        t_prev, f_prev, d_prev, aux_prev = t, f, d, aux
        t = min(2.0 * t, t_max)
    raise LineSearchFailed(f"no acceptable step in {max_evals} evaluations")


def _zoom(phi, f0, d0, lo, flo, dlo, auxlo, hi, fhi, dhi, c1, c2, evals, max_evals):
    while evals < max_evals:
        t = _cubic_min(lo, flo, dlo, hi, fhi, dhi)
        a, b = min(lo, hi), max(lo, hi)
        if t is None or not (a + 0.1 * (b - a) <= t <= b - 0.1 * (b - a)):
            t = 0.5 * (lo + hi)
        f, d, aux = phi(t)
        evals += 1
        if f > f0 + c1 * t * d0 or f >= flo:
            hi, fhi, dhi = t, f, d
        else:
            if abs(d) <= -c2 * d0:
                return t, f, aux, evals
            if d * (hi - lo) >= 0:
                hi, fhi, dhi = lo, flo, dlo
            lo, flo, dlo, auxlo = t, f, d, aux
        if abs(hi - lo) <= 1e-16 * max(1.0, abs(lo)):
            break
    if lo > 0 and flo < f0:  # sufficient decrease only: accept the best point found
        return lo, flo, auxlo, evals
    raise LineSearchFailed(f"zoom found no acceptable step in {max_evals} evaluations")
