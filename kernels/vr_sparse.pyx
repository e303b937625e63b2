# cython: language_level=3
"""Kernels for variance-reduced mini-batch methods (DASVRDA, ProxSVRG, Katyusha). No MPI, no I/O.

Python allocates every buffer; kernels fill them in place. Parallel loops write disjoint
outputs; sums are taken in a fixed order, so results do not depend on the thread count.

Sampled rows: `rows` holds LOCAL row numbers of this rank's shard (a mini-batch may repeat a
row); `batch` (the sparse exchange) holds the GLOBAL rows in draw order. Dense X is
C-contiguous float64; CSR has int64 indptr, int32 indices, float64 data.

Lazy ("just-in-time") DASVRDA inner loop on sparse data (see mpitrain/algorithms/dasvrda.py):
inside a stage with anchor z₀ = ỹ, full gradient μ, step η and θₖ = (k+1)/2, write
pₖ = k(k+1) and Hₖ = Σ_{i≤k} i·vᵢ (vᵢ = the variance-reduction correction of step i). Then

    ḡₖ = μ + (2/pₖ) Hₖ,       zₖ = prox_{ηpₖ/4·R}(z₀ − ηH/2 − (η pₖ/4) μ)
    xₖ = (pₖ₋₁ xₖ₋₁ + 2k zₖ)/pₖ,   so   xₖ = (p_a x_a + 2 Σ_{i=a+1..k} i zᵢ)/pₖ

for a coordinate whose H did not change in steps a+1..k. With A = z₀ − ηH/2, B = ημ/4,
E = η l1/4, G = η l2/4: zᵢ = (A − (B±E)pᵢ)/(1 + G pᵢ) on two index intervals (found by
bisection: the sign conditions are linear in pᵢ) and 0 elsewhere, so the sum is two
differences of the per-stage prefix sums S0[i] = Σ r/(1+G p_r), S1[i] = Σ r·p_r/(1+G p_r).
Catching a coordinate up costs O(1) (a root, checked exactly; O(log m) bisection as the
fallback), independent of how many steps it missed.
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt

from losses cimport dloss_at


# -- sampled rows ------------------------------------------------------------------------
def dense_rows_margins(const double[:, ::1] X, const long long[::1] rows, const double[::1] w,
                       double[::1] out):
    """out[t] = X[rows[t]]ᵀw."""
    cdef Py_ssize_t nt = rows.shape[0], d = X.shape[1], t, j
    cdef long long r
    cdef double s
    for t in prange(nt, nogil=True, schedule="static"):
        r = rows[t]
        s = 0.0
        for j in range(d):
            s = s + X[r, j] * w[j]
        out[t] = s


def dense_rows_rmatvec(const double[:, ::1] X, const long long[::1] rows,
                       const double[::1] coef, double[::1] out):
    """out = Σ_t coef[t]·X[rows[t]] (overwrites out); column blocks in parallel, t in order."""
    cdef Py_ssize_t nt = rows.shape[0], d = X.shape[1], nb = (d + 255) // 256
    cdef Py_ssize_t b, t, j, j0, j1
    cdef long long r
    cdef double c
    for b in prange(nb, nogil=True, schedule="static"):
        j0 = b * 256
        j1 = j0 + 256
        if j1 > d:
            j1 = d
        for j in range(j0, j1):
            out[j] = 0.0
        for t in range(nt):
            c = coef[t]
            if c != 0.0:
                r = rows[t]
                for j in range(j0, j1):
                    out[j] = out[j] + c * X[r, j]


def csr_rows_margins(const long long[::1] indptr, const int[::1] indices,
                     const double[::1] data, const long long[::1] rows, const double[::1] w,
                     double[::1] out):
    """out[t] = x_{rows[t]}ᵀw for CSR rows."""
    cdef Py_ssize_t nt = rows.shape[0], t
    cdef long long k, r
    cdef double s
    with nogil:  # O(nnz of the batch): serial (threads cost more than they save)
      for t in range(nt):
        r = rows[t]
        s = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            s = s + data[k] * w[indices[k]]
        out[t] = s


def csr_rows_scatter(const long long[::1] indptr, const int[::1] indices,
                     const double[::1] data, const long long[::1] rows,
                     const double[::1] coef, double[::1] out):
    """out[j] += Σ_t coef[t]·x_{rows[t}}[j] (t in order; serial: O(nnz of the rows))."""
    cdef Py_ssize_t nt = rows.shape[0], t
    cdef long long k, r
    cdef double c
    with nogil:
        for t in range(nt):
            c = coef[t]
            if c != 0.0:
                r = rows[t]
                for k in range(indptr[r], indptr[r + 1]):
                    out[indices[k]] += c * data[k]


def vr_coefs(int code, const double[::1] y, const long long[::1] rows,
             const double[::1] m_new, const double[::1] m_anchor, double scale,
             double[::1] out):
    """out[t] = scale·(ℓ'(y_r, m_new[t]) − ℓ'(y_r, m_anchor[r])), r = rows[t]
    (m_anchor: the cached margins of the whole shard at the anchor x̃)."""
    cdef Py_ssize_t nt = rows.shape[0], t
    cdef long long r
    with nogil:
        for t in range(nt):
            r = rows[t]
            out[t] = scale * (dloss_at(code, y[r], m_new[t]) - dloss_at(code, y[r], m_anchor[r]))


# -- elastic-net prox ------------------------------------------------------------------------
def enet_prox(const double[::1] v, double c, double l1, double l2, double[::1] out):
    """out = prox_{c·R}(v) = sign(v)·max(|v| − c·l1, 0)/(1 + c·l2), R = l1‖·‖₁ + (l2/2)‖·‖²."""
    cdef Py_ssize_t d = v.shape[0], j
    cdef double t = c * l1, den = 1.0 + c * l2, a
    for j in prange(d, nogil=True, schedule="static"):
        a = v[j]
        if a > t:
            out[j] = (a - t) / den
        elif a < -t:
            out[j] = (a + t) / den
        else:
            out[j] = 0.0


# -- lazy DASVRDA inner loop ---------------------------------------------------------------
def prefix_sums(Py_ssize_t m, double eta, double l2, double[::1] S0, double[::1] S1):
    """S0[i] = Σ_{r=1..i} r/(1+G p_r), S1[i] = Σ_{r=1..i} r p_r/(1+G p_r), G = η l2/4,
    p_r = r(r+1); S0[0] = S1[0] = 0 (length m+1)."""
    cdef Py_ssize_t r
    cdef double G = 0.25 * eta * l2, p, den
    S0[0] = 0.0
    S1[0] = 0.0
    for r in range(1, m + 1):
        p = <double>r * <double>(r + 1)
        den = 1.0 + G * p
        S0[r] = S0[r - 1] + r / den
        S1[r] = S1[r - 1] + r * p / den
    return None


cdef inline double pk(long long k) noexcept nogil:
    return <double>k * <double>(k + 1)


cdef inline double zval(double z0, double mu, double H, double p, double eta, double l1,
                        double l2) noexcept nogil:
    """zₖ from (z₀, μ, H) at p = pₖ."""
    cdef double u = (z0 - 0.5 * eta * H) - 0.25 * eta * mu * p
    cdef double t = 0.25 * eta * l1 * p
    if u > t:
        return (u - t) / (1.0 + 0.25 * eta * l2 * p)
    if u < -t:
        return (u + t) / (1.0 + 0.25 * eta * l2 * p)
    return 0.0


cdef inline bint holds(double A, double C, int sgn, long long i) noexcept nogil:
    # sgn = +1: A − C pᵢ > 0 ; sgn = −1: A − C pᵢ < 0
    cdef double f = A - C * pk(i)
    if sgn > 0:
        return f > 0.0
    return f < 0.0


cdef inline long long last_true(double A, double C, int sgn, long long lo,
                                long long hi) noexcept nogil:
    """Given that the condition differs at lo and hi, the last i in [lo, hi) where it equals
    its value at lo. First a guess from
    the root of A − C·i(i+1) = 0, checked (and moved by at most 2) with the exact test; if that
    fails, bisection. Either way the same index (the condition is monotone in i, also in
    floating point), so results do not depend on which path found it."""
    cdef bint first = holds(A, C, sgn, lo)
    cdef double r = A / C, t
    cdef long long e = lo, L = lo, R = hi, mid
    cdef int moves = 0
    if r > 0.0:
        t = (sqrt(1.0 + 4.0 * r) - 1.0) * 0.5
        if t >= <double>(hi - 1):
            e = hi - 1
        elif t > <double>lo:
            e = <long long>t
    while e > lo and holds(A, C, sgn, e) != first and moves < 2:
        e -= 1
        moves += 1
    while e + 1 < hi and holds(A, C, sgn, e + 1) == first and moves < 4:
        e += 1
        moves += 1
    if holds(A, C, sgn, e) == first and holds(A, C, sgn, e + 1) != first:
        return e
    while R - L > 1:  # invariant: holds(L) == first, holds(R) != first
        mid = L + (R - L) // 2
        if holds(A, C, sgn, mid) == first:
            L = mid
        else:
            R = mid
    return L


cdef inline double interval_sum(double A, double C, int sgn, long long lo, long long hi,
                                const double[::1] S0, const double[::1] S1) noexcept nogil:
    """Σ over i ∈ [lo, hi] where the condition holds of i(A − C pᵢ)/(1 + G pᵢ). The condition is
    monotone in i, so it holds on a prefix or a suffix of [lo, hi]."""
    cdef bint a = holds(A, C, sgn, lo), b = holds(A, C, sgn, hi)
    if a and b:
        pass
    elif not a and not b:
        return 0.0
    elif a:  # prefix [lo, last_true]
        hi = last_true(A, C, sgn, lo, hi)
    else:  # suffix [last false + 1, hi]
        lo = last_true(A, C, sgn, lo, hi) + 1
    return A * (S0[hi] - S0[lo - 1]) - C * (S1[hi] - S1[lo - 1])


cdef inline double caught_up(double x, long long a, long long k, double z0, double mu,
                             double H, double eta, double l1, double l2,
                             const double[::1] S0, const double[::1] S1) noexcept nogil:
    """x_k of a coordinate last stored at step a (value x) whose H is constant since."""
    cdef double A, B, E, s
    if a >= k:
        return x
    A = z0 - 0.5 * eta * H
    B = 0.25 * eta * mu
    E = 0.25 * eta * l1
    s = interval_sum(A, B + E, 1, a + 1, k, S0, S1) + interval_sum(A, B - E, -1, a + 1, k, S0, S1)
    return (pk(a) * x + 2.0 * s) / pk(k)


def lazy_margins(const long long[::1] indptr, const int[::1] indices, const double[::1] data,
                 const long long[::1] rows, long long k, const double[::1] x,
                 const long long[::1] last, const double[::1] H, const double[::1] z0,
                 const double[::1] mu, const double[::1] S0, const double[::1] S1,
                 double eta, double l1, double l2, double[::1] out, long long tick,
                 long long[::1] stamp, double[::1] yval):
    """out[t] = x_{rows[t]}ᵀyₖ with yₖ = (1 − 1/θₖ)xₖ₋₁ + (1/θₖ)zₖ₋₁ evaluated just in time on
    the row's columns (read-only: the stored state is not changed). A column shared by several
    sampled rows is evaluated once: yval[j] caches yₖ[j] for this call, valid where
    stamp[j] == tick (scratch arrays of length d; tick > 0 must differ between calls)."""
    cdef Py_ssize_t nt = rows.shape[0], t
    cdef long long q, r, j
    cdef double s, xv, zv, yv, wa = (<double>k - 1.0) / (<double>k + 1.0)
    cdef double wb = 2.0 / (<double>k + 1.0), pprev = pk(k - 1)
    with nogil:  # O(nnz of the batch · log m): serial
      for t in range(nt):
        r = rows[t]
        s = 0.0
        for q in range(indptr[r], indptr[r + 1]):
            j = indices[q]
            if stamp[j] == tick:
                yv = yval[j]
            else:
                xv = caught_up(x[j], last[j], k - 1, z0[j], mu[j], H[j], eta, l1, l2, S0, S1)
                zv = zval(z0[j], mu[j], H[j], pprev, eta, l1, l2)
                yv = wa * xv + wb * zv
                yval[j] = yv
                stamp[j] = tick
            s = s + data[q] * yv
        out[t] = s


def lazy_update(const long long[::1] cols, long long k, double[::1] v, double[::1] x,
                long long[::1] last, double[::1] H, const double[::1] z0,
                const double[::1] mu, const double[::1] S0, const double[::1] S1,
                double eta, double l1, double l2):
    """Step k on the support `cols` of vₖ: catch x up to k−1, Hⱼ += k·vⱼ, then
    xₖ = ((k−1)xₖ₋₁ + 2zₖ)/(k+1); vⱼ is cleared. Other coordinates stay lazy."""
    cdef Py_ssize_t nc = cols.shape[0], t
    cdef long long j
    cdef double xv, zv, p = pk(k)
    with nogil:  # O(support · log m): serial
      for t in range(nc):
        j = cols[t]
        xv = caught_up(x[j], last[j], k - 1, z0[j], mu[j], H[j], eta, l1, l2, S0, S1)
        H[j] = H[j] + <double>k * v[j]
        v[j] = 0.0
        zv = zval(z0[j], mu[j], H[j], p, eta, l1, l2)
        x[j] = ((<double>k - 1.0) * xv + 2.0 * zv) / (<double>k + 1.0)
        last[j] = k


def lazy_sync(long long k, double[::1] x, long long[::1] last, const double[::1] H,
              const double[::1] z0, const double[::1] mu, const double[::1] S0,
              const double[::1] S1, double eta, double l1, double l2):
    """Bring every coordinate of x to step k."""
    cdef Py_ssize_t d = x.shape[0], j
    for j in prange(d, nogil=True, schedule="static"):
        x[j] = caught_up(x[j], last[j], k, z0[j], mu[j], H[j], eta, l1, l2, S0, S1)
        last[j] = k


def lazy_z(long long k, const double[::1] H, const double[::1] z0, const double[::1] mu,
           double eta, double l1, double l2, double[::1] out):
    """out = zₖ for every coordinate."""
    cdef Py_ssize_t d = out.shape[0], j
    cdef double p = pk(k)
    for j in prange(d, nogil=True, schedule="static"):
        out[j] = zval(z0[j], mu[j], H[j], p, eta, l1, l2)


# -- supports --------------------------------------------------------------------------------
def support_nonzero(const double[::1] v, long long[::1] out):
    """Indices j with v[j] != 0, ascending, into out; returns their count (O(d), serial)."""
    cdef Py_ssize_t d = v.shape[0], j, c = 0
    with nogil:
        for j in range(d):
            if v[j] != 0.0:
                out[c] = j
                c += 1
    return c


def batch_segments(const long long[::1] batch, const long long[::1] bounds,
                   const long long[::1] rowlen, long long[::1] starts, long long[::1] counts):
    """Where each sampled row's pairs lie in the rank-major concatenation of every rank's
    pairs (what an Allgatherv returns). batch: the GLOBAL rows of the mini-batch in draw order;
    bounds[p] ≤ r < bounds[p+1] for the rows of rank p; rowlen[r]: non-zeros of global row r.
    Fills counts[p] (pairs rank p sends) and starts[t] (offset of batch[t]'s first pair);
    returns the total. O(b·log P)."""
    cdef Py_ssize_t nt = batch.shape[0], P = counts.shape[0], t, p, lo, hi, mid
    cdef long long r, acc = 0, tmp
    cdef long long[::1] owner = np.empty(nt, dtype=np.int64)
    with nogil:
        for p in range(P):
            counts[p] = 0
        for t in range(nt):
            r = batch[t]
            lo = 0
            hi = P
            while hi - lo > 1:  # bounds[lo] <= r < bounds[hi]
                mid = (lo + hi) // 2
                if bounds[mid] <= r:
                    lo = mid
                else:
                    hi = mid
            owner[t] = lo
            counts[lo] += rowlen[r]
        for p in range(P):  # counts -> exclusive offsets (restored below)
            tmp = counts[p]
            counts[p] = acc
            acc += tmp
        for t in range(nt):
            p = owner[t]
            starts[t] = counts[p]
            counts[p] += rowlen[batch[t]]
        for p in range(P - 1, 0, -1):  # cursors (end offsets) -> counts
            counts[p] -= counts[p - 1]
    return acc


def rows_pairs(const long long[::1] indptr, const int[::1] indices, const double[::1] data,
               const long long[::1] rows, const double[::1] coef, double[:, ::1] out):
    """The sampled rows' part of Σ_t coef[t]·x_{rows[t]} as (column, value) pairs, unmerged, in
    row order: out[q] = (j, coef[t]·x_{rows[t], j}) for every stored non-zero (zeros included,
    so the count is the rows' non-zero count). Returns that count. O(nnz of the rows)."""
    cdef Py_ssize_t nt = rows.shape[0], t, q = 0
    cdef long long k, r
    cdef double c
    with nogil:
        for t in range(nt):
            c = coef[t]
            r = rows[t]
            for k in range(indptr[r], indptr[r + 1]):
                out[q, 0] = indices[k]
                out[q, 1] = c * data[k]
                q += 1
    return q


def scatter_pairs(const double[:, ::1] pairs, const long long[::1] batch,
                  const long long[::1] starts, const long long[::1] rowlen, double[::1] v,
                  unsigned char[::1] mark, long long[::1] supp):
    """v[j] += value for every pair, merged in the fixed global draw order t = 0, 1, … (batch[t]'s
    pairs start at starts[t]), so the sum does not depend on how rows are split over ranks: it
    is the same floating-point sum as a serial scatter of the whole mini-batch. supp receives the
    columns j with v[j] != 0 afterwards, in first-seen order; returns their count. `mark`
    (length d, all 0) is left all 0. O(pairs)."""
    cdef Py_ssize_t nt = batch.shape[0], t, c = 0, cnt
    cdef long long q, q0, j
    with nogil:
        for t in range(nt):
            q0 = starts[t]
            for q in range(q0, q0 + rowlen[batch[t]]):
                j = <long long>pairs[q, 0]
                v[j] += pairs[q, 1]
                if mark[j] == 0:
                    mark[j] = 1
                    supp[c] = j
                    c += 1
        cnt = _nonzero_marked(v, mark, supp, c)
    return cnt


cdef inline Py_ssize_t _nonzero_marked(const double[::1] v, unsigned char[::1] mark,
                                       long long[::1] supp, Py_ssize_t c) noexcept nogil:
    """Keep, in order, the first c entries j of supp with v[j] != 0 and clear their marks;
    returns how many were kept."""
    cdef Py_ssize_t i, cnt = 0
    cdef long long j
    for i in range(c):
        j = supp[i]
        mark[j] = 0
        if v[j] != 0.0:
            supp[cnt] = j
            cnt += 1
    return cnt


def rows_scatter_support(const long long[::1] indptr, const int[::1] indices,
                         const double[::1] data, const long long[::1] rows,
                         const double[::1] coef, double[::1] v, unsigned char[::1] mark,
                         long long[::1] supp):
    """v[j] += Σ_t coef[t]·x_{rows[t]}[j] (t in order, like csr_rows_scatter) and supp receives
    the columns j with v[j] != 0 afterwards, in first-seen order; returns their count. `mark`
    (length of v, all 0) is left all 0. The feature-parallel inner step: rows are every
    sampled row, restricted to this rank's columns. O(nnz of the rows), serial."""
    cdef Py_ssize_t nt = rows.shape[0], t, c = 0, cnt
    cdef long long k, r, j
    cdef double a
    with nogil:
        for t in range(nt):
            a = coef[t]
            r = rows[t]
            for k in range(indptr[r], indptr[r + 1]):
                j = indices[k]
                v[j] += a * data[k]
                if mark[j] == 0:
                    mark[j] = 1
                    supp[c] = j
                    c += 1
        cnt = _nonzero_marked(v, mark, supp, c)
    return cnt
