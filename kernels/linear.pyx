# cython: language_level=3
"""Kernels for linear models on one rank's shard (dense or CSR). No MPI, no I/O.

Conventions (lightning style): Python allocates every buffer, kernels fill them in place.
Every parallel loop writes disjoint outputs, each computed by one thread in a fixed order, and
every reduction is summed over fixed blocks then in block order, so results are bit-identical
for any OpenMP thread count and schedule.

Losses are functions of the label y and the margin m = wᵀx:
    logistic       ℓ = log(1 + exp(-y m))          dℓ/dm = -y / (1 + exp(y m))
    squared_hinge  ℓ = max(0, 1 - y m)²             dℓ/dm = -2 y max(0, 1 - y m)
    squared        ℓ = ½ (m - y)²                   dℓ/dm = m - y
"""
from cython.parallel cimport prange
from libc.stdint cimport uint16_t

from losses cimport loss_at, dloss_at

ctypedef fused real:  # stored values (float32 as an option); every sum is in double
    float
    double

ctypedef fused index:  # column indices: global, or local to a block of ≤ 65,536 columns
    int
    uint16_t

LOSS_CODES = {"logistic": 0, "squared_hinge": 1, "squared": 2}

# Reductions are summed over blocks of this many rows, block partials then in order.
DEF RBLOCK = 2048
DEF CBLOCK = 64


def csr_margins(const long long[::1] indptr, const index[::1] indices, const real[::1] data,
                const double[::1] w, double[::1] out, bint add=False):
    """out[i] = x_iᵀw for the CSR rows (indptr, indices, data); with add, out[i] += x_iᵀw
    (the terms added to out[i] one by one, in order). Sums in double for float32 data."""
    cdef Py_ssize_t n = out.shape[0], i
    cdef long long k
    cdef double s
    for i in prange(n, nogil=True, schedule="dynamic", chunksize=256):
        s = out[i] if add else 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s = s + data[k] * w[indices[k]]
        out[i] = s


def split_rmatvec(const long long[::1] hptr, const uint16_t[::1] hidx, const real[::1] hval,
                  const int[::1] hot, const long long[::1] panels, double[:, ::1] part,
                  const long long[::1] tcut, const int[::1] tcol, const int[::1] trow,
                  const real[::1] tval, const double[::1] coef, double[::1] out):
    """out = Xᵀcoef for a shard split into a hot CSR part (columns hot[0..H), local uint16
    indices) and a tail of the other columns (models/linear.py SplitCSR).

    Hot part: the rows of panel p (panels[p] ≤ i < panels[p+1]) scatter into their own
    partial part[p] (H doubles: it stays in cache), then out[hot[j]] = Σ_p part[p, j] in
    panel order. Tail part: entries (tcol, trow, tval) sorted by column then row, cut into
    chunks at column boundaries (tcut), so each column is summed by one thread in row order.
    The panels and chunks are fixed by the data, so the bits do not depend on the threads."""
    cdef Py_ssize_t d = out.shape[0], H = part.shape[1], P = part.shape[0]
    cdef Py_ssize_t nc = tcut.shape[0] - 1, c, p, i, j
    cdef long long k
    cdef double a, s
    for j in prange(d, nogil=True, schedule="static"):
        out[j] = 0.0
    for c in prange(nc, nogil=True, schedule="dynamic", chunksize=1):
        for k in range(tcut[c], tcut[c + 1]):
            out[tcol[k]] += tval[k] * coef[trow[k]]
    for p in prange(P, nogil=True, schedule="dynamic", chunksize=1):
        for j in range(H):
            part[p, j] = 0.0
        for i in range(panels[p], panels[p + 1]):
            a = coef[i]
            for k in range(hptr[i], hptr[i + 1]):
                part[p, hidx[k]] += hval[k] * a
    for j in prange(H, nogil=True, schedule="static"):
        s = part[0, j]
        for p in range(1, P):
            s = s + part[p, j]
        out[hot[j]] = s
    return None


def dense_margins(const double[:, ::1] X, const double[::1] w, double[::1] out):
    """out[i] = X[i]ᵀw for a C-contiguous dense X."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, j
    cdef double s
    for i in prange(n, nogil=True, schedule="static"):
        s = 0.0
        for j in range(d):
            s = s + X[i, j] * w[j]
        out[i] = s


def csr_rmatvec(const long long[::1] t_indptr, const int[::1] t_indices,
                const double[::1] t_data, const double[::1] coef, double[::1] out):
    """out = Xᵀcoef, given Xᵀ in CSR form (the shard's transpose, built once).

    Each output coordinate is one thread's sum in row order, so any schedule gives the same
    bits; a dynamic schedule balances the skewed column lengths of real sparse data."""
    cdef Py_ssize_t d = out.shape[0], j
    cdef long long k
    cdef double s
    for j in prange(d, nogil=True, schedule="dynamic", chunksize=256):
        s = 0.0
        for k in range(t_indptr[j], t_indptr[j + 1]):
            s = s + t_data[k] * coef[t_indices[k]]
        out[j] = s


def dense_rmatvec(const double[:, ::1] X, const double[::1] coef, double[::1] out):
    """out = Xᵀcoef for a C-contiguous dense X; column blocks in parallel, rows in order."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], nb = (d + CBLOCK - 1) // CBLOCK
    cdef Py_ssize_t b, i, j, j0, j1
    cdef double c
    for b in prange(nb, nogil=True, schedule="static"):
        j0 = b * CBLOCK
        j1 = j0 + CBLOCK
        if j1 > d:
            j1 = d
        for j in range(j0, j1):
            out[j] = 0.0
        for i in range(n):
            c = coef[i]
            if c != 0.0:
                for j in range(j0, j1):
                    out[j] = out[j] + X[i, j] * c
    return None


def loss_dloss(int code, const double[::1] y, const double[::1] margins,
               double[::1] dloss, double scale=1.0):
    """Return Σᵢ ℓ(yᵢ, mᵢ) and fill dloss[i] = scale·dℓ/dm(yᵢ, mᵢ).

    The sum is taken over fixed blocks of rows, then the block partials in order."""
    cdef Py_ssize_t n = y.shape[0], nb = (n + RBLOCK - 1) // RBLOCK, b, i, i1
    cdef double[::1] part
    cdef double s, total = 0.0
    if nb == 0:
        return 0.0
    import numpy as np
    part = np.empty(nb, dtype=np.float64)
    for b in prange(nb, nogil=True, schedule="static"):
        s = 0.0
        i1 = (b + 1) * RBLOCK
        if i1 > n:
            i1 = n
        for i in range(b * RBLOCK, i1):
            s = s + loss_at(code, y[i], margins[i])
            dloss[i] = scale * dloss_at(code, y[i], margins[i])
        part[b] = s
    for b in range(nb):
        total += part[b]
    return total


def loss_sum(int code, const double[::1] y, const double[::1] margins):
    """Σᵢ ℓ(yᵢ, mᵢ), summed over fixed blocks in order."""
    cdef Py_ssize_t n = y.shape[0], nb = (n + RBLOCK - 1) // RBLOCK, b, i, i1
    cdef double[::1] part
    cdef double s, total = 0.0
    if nb == 0:
        return 0.0
    import numpy as np
    part = np.empty(nb, dtype=np.float64)
    for b in prange(nb, nogil=True, schedule="static"):
        s = 0.0
        i1 = (b + 1) * RBLOCK
        if i1 > n:
            i1 = n
        for i in range(b * RBLOCK, i1):
            s = s + loss_at(code, y[i], margins[i])
        part[b] = s
    for b in range(nb):
        total += part[b]
    return total


def line_phi(int code, const double[::1] y, const double[::1] a, const double[::1] delta,
             double t):
    """(Σᵢ ℓ(yᵢ, aᵢ + t δᵢ), Σᵢ δᵢ dℓ/dm(yᵢ, aᵢ + t δᵢ)): the data part of φ(t) and φ'(t)
    along a direction whose margins δ were cached. Fixed-order block sums."""
    cdef Py_ssize_t n = y.shape[0], nb = (n + RBLOCK - 1) // RBLOCK, b, i, i1
    cdef double[::1] pf, pg
    cdef double s, sg, m, f = 0.0, g = 0.0
    if nb == 0:
        return 0.0, 0.0
    import numpy as np
    pf = np.empty(nb, dtype=np.float64)
    pg = np.empty(nb, dtype=np.float64)
    for b in prange(nb, nogil=True, schedule="static"):
        s = 0.0
        sg = 0.0
        i1 = (b + 1) * RBLOCK
        if i1 > n:
            i1 = n
        for i in range(b * RBLOCK, i1):
            m = a[i] + t * delta[i]
            s = s + loss_at(code, y[i], m)
            sg = sg + delta[i] * dloss_at(code, y[i], m)
        pf[b] = s
        pg[b] = sg
    for b in range(nb):
        f += pf[b]
        g += pg[b]
    return f, g
