# cython: language_level=3
"""Scalar losses of (label y, margin m), shared by every linear kernel (cimport losses).

    code 0 logistic       ℓ = log(1 + exp(-y m))          dℓ/dm = -y / (1 + exp(y m))
    code 1 squared_hinge  ℓ = max(0, 1 - y m)²             dℓ/dm = -2 y max(0, 1 - y m)
    code 2 squared        ℓ = ½ (m - y)²                   dℓ/dm = m - y

The logistic loss costs one exp and one log1p per row: with z = y m and e = exp(-|z|),
ℓ = log1p(e) + max(-z, 0) and dℓ/dm = -y e / (1 + e) if z > 0, else -y / (1 + e)
(no overflow for any finite m).
"""
from libc.math cimport exp, fabs, log1p


cdef inline double loss_dloss_at(int code, double y, double m, double* dl) noexcept nogil:
    """ℓ(y, m); dl[0] = dℓ/dm(y, m)."""
    cdef double z, e, r
    if code == 0:
        z = y * m
        e = exp(-fabs(z))
        if z > 0:
            dl[0] = -y * e / (1.0 + e)
            return log1p(e)
        dl[0] = -y / (1.0 + e)
        return log1p(e) - z
    elif code == 1:
        r = 1.0 - y * m
        if r > 0:
            dl[0] = -2.0 * y * r
            return r * r
        dl[0] = 0.0
        return 0.0
    else:
        r = m - y
        dl[0] = r
        return 0.5 * r * r


cdef inline double loss_at(int code, double y, double m) noexcept nogil:
    """ℓ(y, m)."""
    cdef double z, r
    if code == 0:
        z = y * m
        if z > 0:
            return log1p(exp(-z))
        return log1p(exp(z)) - z
    elif code == 1:
        r = 1.0 - y * m
        return r * r if r > 0 else 0.0
    else:
        r = m - y
        return 0.5 * r * r


cdef inline double dloss_at(int code, double y, double m) noexcept nogil:
    """dℓ/dm(y, m) (the same bits as loss_dloss_at's)."""
    cdef double z, e, r
    if code == 0:
        z = y * m
        e = exp(-fabs(z))
        if z > 0:
            return -y * e / (1.0 + e)
        return -y / (1.0 + e)
    elif code == 1:
        r = 1.0 - y * m
        return -2.0 * y * r if r > 0 else 0.0
    else:
        return m - y
