# cython: language_level=3
"""SGD epochs on a gradient-consistent local approximation (FADL) or a shard's own
objective (parameter mixing). No MPI, no I/O, nogil; Python allocates every buffer.

Each step takes row i = order[t] and applies

    w ← w − η ( lam·w + b + (rho·dℓ/dm(yᵢ, wᵀxᵢ) − dl0ᵢ)·xᵢ )
      = a·w − η·b − η·(rho·ℓ'ᵢ − dl0ᵢ)·xᵢ,        a = 1 − η·lam

where `lam` is the L2 weight (plus a proximal κ), `b` a constant dense vector (FADL's
correction c_p − κ·wʳ, or gʳ − (l2+κ)wʳ in the variance-reduced form; zero for plain SGD),
`rho` the per-sample weight of the loss and dl0 optional per-row baselines (rho·ℓ'ᵢ(wʳ) for
the SVRG-style estimator; pass an empty array for none).

Sparse rows cost O(nnz of the row): w is held as scale·v, so the shrink a·w is one
multiplication of `scale`; the constant dense term −η·b is applied lazily: Q accumulates
Σ 1/scale after each step, and coordinate j, when next touched (or at a flush), receives
v_j −= η·b_j·(Q − qlast_j). When `scale` falls below 1e-9 everything is flushed into v and
the scale reset (O(d), rare). The result equals the dense recurrence up to rounding; the
tests check it step for step against a NumPy reference. SGD is sequential: there is no
OpenMP here and the result does not depend on the thread count.
"""
from losses cimport dloss_at

DEF SCALE_FLOOR = 1e-9


cdef void _flush(double[::1] w, const double[::1] b, double[::1] qlast, double eta,
                 double scale, double Q) noexcept nogil:
    cdef Py_ssize_t d = w.shape[0], j
    for j in range(d):
        w[j] = scale * (w[j] - eta * b[j] * (Q - qlast[j]))
        qlast[j] = 0.0


def sgd_csr(const long long[::1] indptr, const int[::1] indices, const double[::1] data,
            const double[::1] y, const long long[::1] order, int code, double rho,
            double eta, double lam, const double[::1] b, double[::1] w, double[::1] qlast,
            const double[::1] dl0):
    """Run len(order) SGD steps on CSR rows; w (in/out, length d); qlast: work, length d.
    dl0: empty, or per-row baselines subtracted from rho·ℓ'ᵢ (variance reduction).

    Returns the number of O(d) flushes performed (scale renormalisations + the final one)."""
    cdef Py_ssize_t T = order.shape[0], d = w.shape[0], t, j
    cdef long long i, k
    cdef double a = 1.0 - eta * lam
    cdef double scale = 1.0, Q = 0.0, m, g, inv
    cdef int flushes = 0
    cdef bint vr = dl0.shape[0] > 0
    if vr and dl0.shape[0] != indptr.shape[0] - 1:
        raise ValueError("dl0 must be empty or have one entry per row")
    if a <= 0.0:
        raise ValueError(f"step size too large: eta*lam = {eta * lam} >= 1")
    with nogil:
        for j in range(d):
            qlast[j] = 0.0
        for t in range(T):
            i = order[t]
            # catch the touched coordinates up with the lazy constant term, and the margin
            m = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                w[j] = w[j] - eta * b[j] * (Q - qlast[j])
                qlast[j] = Q
                m = m + data[k] * w[j]
            m = m * scale
            g = rho * dloss_at(code, y[i], m)
            if vr:
                g = g - dl0[i]
            scale = scale * a
            inv = 1.0 / scale
            if g != 0.0:
                g = eta * g * inv
                for k in range(indptr[i], indptr[i + 1]):
                    w[indices[k]] = w[indices[k]] - g * data[k]
            Q = Q + inv
            if scale < SCALE_FLOOR:
                _flush(w, b, qlast, eta, scale, Q)
                flushes += 1
                scale = 1.0
                Q = 0.0
        _flush(w, b, qlast, eta, scale, Q)
    return flushes + 1


def sgd_dense(const double[:, ::1] X, const double[::1] y, const long long[::1] order,
              int code, double rho, double eta, double lam, const double[::1] b,
              double[::1] w, const double[::1] dl0):
    """Run len(order) SGD steps on dense rows of X; w (in/out) updated in place."""
    cdef Py_ssize_t T = order.shape[0], d = w.shape[0], t, j
    cdef long long i
    cdef double a = 1.0 - eta * lam, m, g
    cdef bint vr = dl0.shape[0] > 0
    if vr and dl0.shape[0] != X.shape[0]:
        raise ValueError("dl0 must be empty or have one entry per row")
    if a <= 0.0:
        raise ValueError(f"step size too large: eta*lam = {eta * lam} >= 1")
    with nogil:
        for t in range(T):
            i = order[t]
            m = 0.0
            for j in range(d):
                m = m + X[i, j] * w[j]
            g = rho * dloss_at(code, y[i], m)
            if vr:
                g = g - dl0[i]
            g = eta * g
            for j in range(d):
                w[j] = a * w[j] - eta * b[j] - g * X[i, j]
    return 0


def max_row_sqnorm_csr(const long long[::1] indptr, const double[::1] data):
    """max over rows of ‖xᵢ‖² (for the step-size bound)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i
    cdef long long k
    cdef double s, best = 0.0
    with nogil:
        for i in range(n):
            s = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                s = s + data[k] * data[k]
            if s > best:
                best = s
    return best
