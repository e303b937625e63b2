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

from libc.math cimport exp, fabs, log1p

from losses cimport dloss_at, loss_at, loss_dloss_at

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
# split_fused's steps: up to FROWS rows and FNNZ hot non-zeros (about 320 KB of float64 data,
# still in L2 when their scatter reads them again); a step's size changes no result.
DEF FROWS = 512
DEF FNNZ = 32768
# Random reads (w by a global column index in row_dot, coef by row in split_gather) are
# prefetched this many entries ahead.
DEF PF = 64


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* a if c else b, without a branch: by bit masks, so no misprediction when c is random */
    static inline double mpt_select(int c, double a, double b) {
        uint64_t ua, ub, m = (uint64_t)0 - (uint64_t)(c != 0);
        memcpy(&ua, &a, 8);
        memcpy(&ub, &b, 8);
        ua = (ua & m) | (ub & ~m);
        memcpy(&a, &ua, 8);
        return a;
    }

    /* The hot block's loops (16-bit indices): mpt_dot_S is row_dot's sum, in its order and
       bits (four running sums s0..s3 over the terms k0 + 4j, k0 + 4j + 1, ...; the remainder
       into s0, s1, s2; then (s0 + s1) + (s2 + s3)); mpt_scatter_S(a, g) adds val[k]·a to
       g[idx[k]] in order. With SSE2 (every x86-64) the sums s0, s1 and s2, s3 are the two
       lanes of two vectors, and two values are converted and multiplied at once: the same
       IEEE operations on each lane, so the same bits as the scalar loops used elsewhere. */
    #ifdef __SSE2__
    #include <emmintrin.h>
    #define MPT_PAIR_f(p) _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(p))))
    #define MPT_PAIR_d(p) _mm_loadu_pd(p)
    #define MPT_W2(k) _mm_loadh_pd(_mm_load_sd(&w[idx[k]]), &w[idx[(k) + 1]])
    #define MPT_DOT4(S)                                                                    \
        __m128d a01 = _mm_setzero_pd(), a23 = _mm_setzero_pd();                           \
        for (; k + 4 <= k1; k += 4) {                                                     \
            a01 = _mm_add_pd(a01, _mm_mul_pd(MPT_PAIR_##S(&val[k]), MPT_W2(k)));          \
            a23 = _mm_add_pd(a23, _mm_mul_pd(MPT_PAIR_##S(&val[k + 2]), MPT_W2(k + 2)));  \
        }                                                                                 \
        s0 = _mm_cvtsd_f64(a01);                                                          \
        s1 = _mm_cvtsd_f64(_mm_unpackhi_pd(a01, a01));                                    \
        s2 = _mm_cvtsd_f64(a23);                                                          \
        s3 = _mm_cvtsd_f64(_mm_unpackhi_pd(a23, a23));
    #define MPT_SCATTER4(S)                                                                \
        __m128d av = _mm_set1_pd(a), p01, p23;                                            \
        for (; k + 4 <= k1; k += 4) {                                                     \
            p01 = _mm_mul_pd(MPT_PAIR_##S(&val[k]), av);                                  \
            p23 = _mm_mul_pd(MPT_PAIR_##S(&val[k + 2]), av);                              \
            g[idx[k]] += _mm_cvtsd_f64(p01);                                              \
            g[idx[k + 1]] += _mm_cvtsd_f64(_mm_unpackhi_pd(p01, p01));                    \
            g[idx[k + 2]] += _mm_cvtsd_f64(p23);                                          \
            g[idx[k + 3]] += _mm_cvtsd_f64(_mm_unpackhi_pd(p23, p23));                    \
        }
    #else
    #define MPT_DOT4(S)                                                                    \
        for (; k + 4 <= k1; k += 4) {                                                     \
            s0 = s0 + (double)val[k] * w[idx[k]];                                         \
            s1 = s1 + (double)val[k + 1] * w[idx[k + 1]];                                 \
            s2 = s2 + (double)val[k + 2] * w[idx[k + 2]];                                 \
            s3 = s3 + (double)val[k + 3] * w[idx[k + 3]];                                 \
        }
    #define MPT_SCATTER4(S)                                                                \
        for (; k + 4 <= k1; k += 4) {                                                     \
            g[idx[k]] += (double)val[k] * a;                                              \
            g[idx[k + 1]] += (double)val[k + 1] * a;                                      \
            g[idx[k + 2]] += (double)val[k + 2] * a;                                      \
            g[idx[k + 3]] += (double)val[k + 3] * a;                                      \
        }
    #endif
    #define MPT_HOT_LOOPS(T, S)                                                            \
    static inline double mpt_dot_##S(long long k, long long k1, const uint16_t* idx,       \
                                     const T* val, const double* w) {                     \
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                    \
        MPT_DOT4(S)                                                                       \
        if (k < k1) {                                                                     \
            s0 = s0 + (double)val[k] * w[idx[k]];                                         \
            if (k + 1 < k1) {                                                             \
                s1 = s1 + (double)val[k + 1] * w[idx[k + 1]];                             \
                if (k + 2 < k1)                                                           \
                    s2 = s2 + (double)val[k + 2] * w[idx[k + 2]];                         \
            }                                                                             \
        }                                                                                 \
        return (s0 + s1) + (s2 + s3);                                                     \
    }                                                                                     \
    static inline void mpt_scatter_##S(long long k, long long k1, const uint16_t* idx,     \
                                       const T* val, double a, double* g) {               \
        MPT_SCATTER4(S)                                                                   \
        for (; k < k1; k++)                                                               \
            g[idx[k]] += (double)val[k] * a;                                              \
    }
    MPT_HOT_LOOPS(float, f)
    MPT_HOT_LOOPS(double, d)
    """
    void __builtin_prefetch(const void* p) nogil
    double mpt_select(int c, double a, double b) nogil
    double mpt_dot_f(long long k0, long long k1, const uint16_t* idx, const float* val,
                     const double* w) nogil
    double mpt_dot_d(long long k0, long long k1, const uint16_t* idx, const double* val,
                     const double* w) nogil
    void mpt_scatter_f(long long k0, long long k1, const uint16_t* idx, const float* val,
                       double a, double* g) nogil
    void mpt_scatter_d(long long k0, long long k1, const uint16_t* idx, const double* val,
                       double a, double* g) nogil


cdef inline double logistic_from_e(double y, double m, double* dl) noexcept nogil:
    """The logistic ℓ(y, m), given e = exp(-|y m|) in dl[0], which becomes dℓ/dm: the
    operations and bits of losses.pxd's loss_dloss_at, with its sign test (z = y m > 0,
    random early in training) made a select instead of a branch: dℓ/dm = -y·t / (1 + e) and
    ℓ = log1p(e) - u with t = e or 1 and u = 0 or z (-y·1 = -y and x - 0 = x exactly)."""
    cdef double z = y * m, e = dl[0]
    cdef int pos = z > 0
    dl[0] = -y * mpt_select(pos, e, 1.0) / (1.0 + e)
    return log1p(e) - mpt_select(pos, 0.0, z)


cdef inline double row_dot(long long k0, long long k1, const index* idx, const real* val,
                           const double* w, long long kmax) noexcept nogil:
    """Σ_{k0 ≤ k < k1} val[k]·w[idx[k]] in double, in a fixed order: four running sums
    (terms k0, k0+4, ... in the first, k0+1, ... in the second, and so on), then
    (s0 + s1) + (s2 + s3), so that four additions are in flight instead of one chain.
    With global (int) indices, w[idx[k + PF]] is prefetched while k + PF < kmax (the
    length of idx): w is then too large for the L2 cache. With 16-bit indices (the hot
    block), the same sum by mpt_dot_f / mpt_dot_d (SSE2 pairs, the same bits)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef long long k = k0
    if index is uint16_t:
        if real is float:
            return mpt_dot_f(k0, k1, idx, val, w)
        else:
            return mpt_dot_d(k0, k1, idx, val, w)
    while k + 4 <= k1:
        if index is int:
            if k + PF + 4 <= kmax:
                __builtin_prefetch(&w[idx[k + PF]])
                __builtin_prefetch(&w[idx[k + PF + 1]])
                __builtin_prefetch(&w[idx[k + PF + 2]])
                __builtin_prefetch(&w[idx[k + PF + 3]])
        s0 = s0 + val[k] * w[idx[k]]
        s1 = s1 + val[k + 1] * w[idx[k + 1]]
        s2 = s2 + val[k + 2] * w[idx[k + 2]]
        s3 = s3 + val[k + 3] * w[idx[k + 3]]
        k = k + 4
    if k < k1:
        s0 = s0 + val[k] * w[idx[k]]
        if k + 1 < k1:
            s1 = s1 + val[k + 1] * w[idx[k + 1]]
            if k + 2 < k1:
                s2 = s2 + val[k + 2] * w[idx[k + 2]]
    return (s0 + s1) + (s2 + s3)


def csr_margins(const long long[::1] indptr, const index[::1] indices, const real[::1] data,
                const double[::1] w, double[::1] out):
    """out[i] = x_iᵀw for the CSR rows (indptr, indices, data), summed by row_dot. Sums in
    double for float32 data."""
    cdef Py_ssize_t n = out.shape[0], i
    cdef const index* ip = &indices[0]
    cdef const real* vp = &data[0]
    for i in prange(n, nogil=True, schedule="dynamic", chunksize=256):
        out[i] = row_dot(indptr[i], indptr[i + 1], ip, vp, &w[0], indptr[n])


def tail_margins(const long long[::1] mcut, const int[::1] tcol, const int[::1] trow,
                 const real[::1] tcval, const double[::1] w, double[:, ::1] tpart):
    """tpart[c, i] = Σ_{mcut[c] ≤ k < mcut[c+1], trow[k] = i} tcval[k]·w[tcol[k]]: the tail's
    margins of SplitCSR (models/linear.py) as C = tpart.shape[0] partial sums, one per piece
    of its entries sorted by column then row (each piece one thread's, in entry order). w is
    read in column order (streamed, not at random); the random writes go to a partial of n
    doubles, which stays in cache. The pieces are fixed by the data, so the bits do not depend
    on the threads; split_margins and split_fused add the partials up in order."""
    cdef Py_ssize_t C = tpart.shape[0], n = tpart.shape[1], c, i
    cdef long long k
    cdef double* mp
    for c in prange(C, nogil=True, schedule="dynamic", chunksize=1):
        mp = &tpart[c, 0]
        for i in range(n):
            mp[i] = 0.0
        for k in range(mcut[c], mcut[c + 1]):
            mp[trow[k]] += tcval[k] * w[tcol[k]]


def take(const double[::1] w, const int[::1] idx, double[::1] out):
    """out[j] = w[idx[j]] (numpy.take, split over the threads: a copy, so the same bits)."""
    cdef Py_ssize_t n = out.shape[0], j
    for j in prange(n, nogil=True, schedule="static"):
        out[j] = w[idx[j]]


cdef inline double base_sum(const double[:, ::1] tpart, Py_ssize_t i) noexcept nogil:
    """Σ_c tpart[c, i] in order (0.0 when there is no partial)."""
    cdef Py_ssize_t c
    cdef double t = 0.0
    for c in range(tpart.shape[0]):
        t = t + tpart[c, i]
    return t


cdef inline double split_margin(const double[:, ::1] tpart, Py_ssize_t i,
                                const long long* mptr, const index* mi, const real* mv,
                                const double* wm, long long kmax) noexcept nogil:
    """Margin i of SplitCSR: the tail's partials summed in order, plus row_dot of margin row
    i (no partial to add, not even 0.0, when the margin rows are the whole rows)."""
    if tpart.shape[0] > 0:
        return base_sum(tpart, i) + row_dot(mptr[i], mptr[i + 1], mi, mv, wm, kmax)
    return row_dot(mptr[i], mptr[i + 1], mi, mv, wm, kmax)


def split_margins(const double[:, ::1] tpart, const long long[::1] mptr,
                  const index[::1] midx, const real[::1] mval, const double[::1] wm,
                  double[::1] out):
    """out[i] = (Σ_c tpart[c, i] in order) + row_dot(row i of mptr/midx/mval, wm): the
    margins of SplitCSR from its tail's partial margins (tail_margins; none when the margin
    rows are the shard's whole rows) and its margin rows, the bits of split_fused's."""
    cdef Py_ssize_t n = out.shape[0], i
    cdef const index* mi = &midx[0]
    cdef const real* mv = &mval[0]
    for i in prange(n, nogil=True, schedule="dynamic", chunksize=256):
        out[i] = split_margin(tpart, i, &mptr[0], mi, mv, &wm[0], mptr[n])


cdef inline void scatter_rows(Py_ssize_t i0, Py_ssize_t i1, const long long* hptr,
                              const uint16_t* hidx, const real* hval, const double* coef,
                              double* g) noexcept nogil:
    """g[hidx[k]] += hval[k]·coef[i] for the hot rows i0 ≤ i < i1, in order (g: a panel's
    row of part), by mpt_scatter_f / mpt_scatter_d (unrolled by four, products in SSE2
    pairs: the same additions in the same order)."""
    cdef Py_ssize_t i
    for i in range(i0, i1):
        if real is float:
            mpt_scatter_f(hptr[i], hptr[i + 1], hidx, hval, coef[i], g)
        else:
            mpt_scatter_d(hptr[i], hptr[i + 1], hidx, hval, coef[i], g)


def split_fused(int code, const double[::1] y, const double[:, ::1] tpart,
                const long long[::1] mptr, const index[::1] midx, const real[::1] mval,
                const double[::1] wm, const long long[::1] hptr, const uint16_t[::1] hidx,
                const real[::1] hval, const long long[::1] panels, double[:, ::1] part,
                double[::1] ploss, double[::1] margins, double[::1] coef):
    """The fused pass of a loss + gradient over the hot block of a SplitCSR shard
    (models/linear.py). Fills margins[i] = mᵢ, the bits of split_margins (the tail's partial
    margins tpart summed in order, plus row_dot of row i of mptr/midx/mval with wm);
    coef[i] = dℓ/dm(yᵢ, mᵢ); and part[p, j] = Σ_{i in panel p} coef[i]·(hot row i of
    hptr/hidx/hval)[j], the partials of Xᵀcoef that split_gather adds up. Returns
    Σᵢ ℓ(yᵢ, mᵢ).

    The margin rows are the hot rows with wm the hot slice of w, or the shard's whole CSR
    rows with wm = w and no partial (tpart.shape[0] = 0). Each row panel p
    (panels[p] ≤ i < panels[p+1]) is one thread's, in steps of at most FROWS rows and FNNZ
    hot non-zeros: the step's margins, then its losses and derivatives (losses.pxd's
    loss_dloss_at, bit for bit; the logistic loss as logistic_from_e after the step's exps),
    then its hot rows scattered into part[p] while they are still in cache (the hot data is
    read once from memory). The loss is summed in row order within a panel (ploss[p]), then over the panels
    in order; the panels depend only on the data, so the bits do not depend on the
    threads."""
    cdef Py_ssize_t P = part.shape[0], H = part.shape[1], n = y.shape[0], p, i, i0, i1, j
    cdef const index* mi = &midx[0]
    cdef const real* mv = &mval[0]
    cdef double f, total = 0.0
    for p in prange(P, nogil=True, schedule="dynamic", chunksize=1):
        for j in range(H):
            part[p, j] = 0.0
        f = 0.0
        i0 = panels[p]
        while i0 < panels[p + 1]:
            i1 = i0 + 1
            while (i1 < panels[p + 1] and i1 - i0 < FROWS
                   and hptr[i1 + 1] - hptr[i0] <= FNNZ):
                i1 = i1 + 1
            for i in range(i0, i1):
                margins[i] = split_margin(tpart, i, &mptr[0], mi, mv, &wm[0], mptr[n])
            if code == 0:  # the step's exps first, then the rest: each libm routine in a loop
                for i in range(i0, i1):
                    coef[i] = exp(-fabs(y[i] * margins[i]))
                for i in range(i0, i1):
                    f = f + logistic_from_e(y[i], margins[i], &coef[i])
            else:
                for i in range(i0, i1):
                    f = f + loss_dloss_at(code, y[i], margins[i], &coef[i])
            scatter_rows(i0, i1, &hptr[0], &hidx[0], &hval[0], &coef[0], &part[p, 0])
            i0 = i1
        ploss[p] = f
    for p in range(P):
        total += ploss[p]
    return total


def split_scatter(const long long[::1] hptr, const uint16_t[::1] hidx, const real[::1] hval,
                  const long long[::1] panels, double[:, ::1] part, const double[::1] coef):
    """part[p, j] = Σ_{i in panel p} coef[i]·(hot row i)[j], each panel one thread's, rows in
    order (the hot block's share of Xᵀcoef, as split_fused leaves it; split_gather adds it
    up)."""
    cdef Py_ssize_t P = part.shape[0], H = part.shape[1], p, j
    for p in prange(P, nogil=True, schedule="dynamic", chunksize=1):
        for j in range(H):
            part[p, j] = 0.0
        scatter_rows(panels[p], panels[p + 1], &hptr[0], &hidx[0], &hval[0], &coef[0],
                     &part[p, 0])


def split_gather(const int[::1] hot, const double[:, ::1] part, const long long[::1] tcut,
                 const int[::1] tcol, const int[::1] trow, const real[::1] tcval,
                 const double[::1] coef, double[::1] out):
    """out = Xᵀcoef from the hot block's panel partials (split_fused or split_scatter) and
    the tail: out[hot[j]] = Σ_p part[p, j] in panel order; the tail entries (tcol, trow,
    tcval), sorted by column then row and cut into chunks at column boundaries (tcut), so
    that each column is summed by one thread in row order (coef[trow[k + PF]] prefetched);
    every other column 0. The chunks are fixed by the data, so the bits do not depend on the
    threads."""
    cdef Py_ssize_t d = out.shape[0], H = part.shape[1], P = part.shape[0]
    cdef Py_ssize_t nc = tcut.shape[0] - 1, c, p, j
    cdef long long k, kmax = tcut[nc]
    cdef double s
    for j in prange(d, nogil=True, schedule="static"):
        out[j] = 0.0
    for c in prange(nc, nogil=True, schedule="dynamic", chunksize=1):
        for k in range(tcut[c], tcut[c + 1]):
            if k + PF < kmax:
                __builtin_prefetch(&coef[trow[k + PF]])
            out[tcol[k]] += tcval[k] * coef[trow[k]]
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
    cdef double s, g, total = 0.0
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
            s = s + loss_dloss_at(code, y[i], margins[i], &g)
            dloss[i] = scale * g
        part[b] = s
    for b in range(nb):
        total += part[b]
    return total


def dloss_values(int code, const double[::1] y, const double[::1] margins, double[::1] out):
    """out[i] = dℓ/dm(yᵢ, mᵢ) by losses.pxd's dloss_at, the derivative alone that the SGD and
    variance-reduced kernels use (exposed for its tests)."""
    cdef Py_ssize_t i
    for i in range(y.shape[0]):
        out[i] = dloss_at(code, y[i], margins[i])


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
    cdef double s, sg, m, gi, f = 0.0, g = 0.0
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
            s = s + loss_dloss_at(code, y[i], m, &gi)
            sg = sg + delta[i] * gi
        pf[b] = s
        pg[b] = sg
    for b in range(nb):
        f += pf[b]
        g += pg[b]
    return f, g
