# cython: language_level=3
"""Scalar losses of (label y, margin m), shared by every linear kernel (cimport losses).

    code 0 logistic       ℓ = log(1 + exp(-y m))          dℓ/dm = -y / (1 + exp(y m))
    code 1 squared_hinge  ℓ = max(0, 1 - y m)²             dℓ/dm = -2 y max(0, 1 - y m)
    code 2 squared        ℓ = ½ (m - y)²                   dℓ/dm = m - y
"""
from libc.math cimport exp, log1p


cdef inline double loss_at(int code, double y, double m) noexcept nogil:
    cdef double z, r
    if code == 0:
        z = y * m
        if z > 0:
            return log1p(exp(-z))
        return -z + log1p(exp(z))
    elif code == 1:
        r = 1.0 - y * m
        return r * r if r > 0 else 0.0
    else:
        r = m - y
        return 0.5 * r * r


cdef inline double dloss_at(int code, double y, double m) noexcept nogil:
    cdef double z, r
    if code == 0:
        z = y * m
        if z > 0:
            r = exp(-z)
            return -y * r / (1.0 + r)
        return -y / (1.0 + exp(z))
    elif code == 1:
        r = 1.0 - y * m
        return -2.0 * y * r if r > 0 else 0.0
    else:
        return m - y
