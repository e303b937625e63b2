"""The loss table of the linear family: one entry per loss ℓ(y, m) of the margin m = wᵀx.

Every linear algorithm, benchmark and test looks a loss up here by name:

    LOSSES[name].code        the kernels' integer code (kernels/losses.pxd)
    LOSSES[name].value(y, m)  ℓ(y, m)           (NumPy reference, vectorised)
    LOSSES[name].deriv(y, m)  dℓ/dm(y, m)
    LOSSES[name].curv(y, m)   d²ℓ/dm² (the generalised one, 2·[y m < 1], for squared_hinge)
    LOSSES[name].smooth       L: |dℓ/dm(y, a) − dℓ/dm(y, b)| ≤ L·|a − b| for y ∈ {−1, +1}
    LOSSES[name].conj(y, u)   the convex conjugate ℓ*(y, u) = sup_m (u·m − ℓ(y, m)), +inf
                              outside its domain (for duality-gap certificates)

    logistic       ℓ = log(1 + exp(−y m))     dℓ/dm = −y / (1 + exp(y m))      L = 1/4
    squared_hinge  ℓ = max(0, 1 − y m)²        dℓ/dm = −2y·max(0, 1 − y m)       L = 2
    squared        ℓ = ½(m − y)²               dℓ/dm = m − y                     L = 1

Conjugates, with v = −y·u:  logistic v·log v + (1 − v)·log(1 − v) on v ∈ [0, 1];
squared_hinge v²/4 − v on v ≥ 0; squared u²/2 + u·y.

So a sample's gradient ℓ'ᵢ·xᵢ is (L·‖xᵢ‖²)-Lipschitz in w. The kernels compute the same
formulas in C; tests/test_linear_family.py checks table, kernels and finite differences agree.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._kernels import linear as K


def _logistic(y, m):
    return np.logaddexp(0.0, -y * m)


def _logistic_d(y, m):
    return -y * np.exp(-np.logaddexp(0.0, y * m))


def _logistic_c(y, m):
    s = np.exp(-np.logaddexp(0.0, y * m))   # σ(−y m)
    return s * (1.0 - s)


def _sqhinge(y, m):
    r = np.maximum(0.0, 1.0 - y * m)
    return r * r


def _sqhinge_d(y, m):
    return -2.0 * y * np.maximum(0.0, 1.0 - y * m)


def _xlogx(v):
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def _logistic_conj(y, u):
    v = -y * u
    ok = (v >= 0) & (v <= 1)
    return np.where(ok, _xlogx(np.clip(v, 0, 1)) + _xlogx(np.clip(1 - v, 0, 1)), np.inf)


def _sqhinge_c(y, m):
    return np.where(y * m < 1.0, 2.0, 0.0)


def _sqhinge_conj(y, u):
    v = -y * u
    return np.where(v >= 0, 0.25 * v * v - v, np.inf)


def _squared_conj(y, u):
    return 0.5 * u * u + u * y


def _squared(y, m):
    return 0.5 * (m - y) ** 2


def _squared_d(y, m):
    return m - y


def _squared_c(y, m):
    return np.ones_like(np.asarray(m, dtype=np.float64))


@dataclass(frozen=True)
class Loss:
    name: str
    code: int
    value: Callable
    deriv: Callable
    smooth: float
    conj: Callable
    curv: Callable


LOSSES = {
    "logistic": Loss("logistic", K.LOSS_CODES["logistic"], _logistic, _logistic_d, 0.25,
                     _logistic_conj, _logistic_c),
    "squared_hinge": Loss("squared_hinge", K.LOSS_CODES["squared_hinge"], _sqhinge,
                          _sqhinge_d, 2.0, _sqhinge_conj, _sqhinge_c),
    "squared": Loss("squared", K.LOSS_CODES["squared"], _squared, _squared_d, 1.0,
                    _squared_conj, _squared_c),
}
BY_CODE = {v.code: v for v in LOSSES.values()}

