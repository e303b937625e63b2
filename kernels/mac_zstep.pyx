# cython: language_level=3
"""Z-step kernels of the binary autoencoder (ParMAC). No MPI, no I/O.

For one point with decoder f(z) = Bz + c, the Z-step minimises over z ∈ {0,1}^L
    e(z) = ‖x − Bz − c‖² + μ‖z − h‖²  =  ‖x − c‖² + q(z) + μ·ham(z, h),
    q(z) = zᵀGz − 2vᵀz,   G = BᵀB,  v = Bᵀ(x − c),
where h = h(x) is the encoder's code. The constant ‖x − c‖² is left out: kernels return
q(z) + μ·ham(z, h). Every point is independent (prange over points, disjoint outputs), so
results do not depend on the thread count.
"""
from cython.parallel cimport prange

import numpy as np


cdef inline double _quad(const double[:, ::1] G, const double[:, ::1] V, Py_ssize_t i,
                         long long code, Py_ssize_t L) noexcept nogil:
    """q(z) = zᵀGz − 2vᵢᵀz for the bits of `code`."""
    cdef double s = 0.0, t
    cdef Py_ssize_t a, b
    for a in range(L):
        if (code >> a) & 1:
            t = G[a, a] - 2.0 * V[i, a]
            for b in range(a):
                if (code >> b) & 1:
                    t = t + 2.0 * G[a, b]
            s = s + t
    return s


def ba_enumerate(const double[:, ::1] G, const double[:, ::1] V, const long long[::1] hcode,
                 const long long[::1] masks, const long long[::1] starts,
                 const double[::1] qmin, double mu, long long[::1] out_code,
                 double[::1] out_cost, long long[::1] out_visited):
    """Exact Z-step by enumeration of {0,1}^L in order of Hamming distance from h, pruned.

    masks: all 2^L bit masks sorted by popcount (ties by value); masks[starts[k]:starts[k+1]]
    are those with k bits. qmin[i] ≤ min over real z of q(z) (a lower bound), so no code at
    distance ≥ k can beat the best so far once qmin + μk ≥ best: the search stops there.
    Ties keep the first code found (nearest h, then smallest mask), as brute force in that
    order would. out_visited[i] = codes evaluated."""
    cdef Py_ssize_t n = V.shape[0], L = V.shape[1], i, k, m
    cdef double best, q
    cdef long long code, bestcode, visited
    for i in prange(n, nogil=True, schedule="static"):
        best = 1e308
        bestcode = hcode[i]
        visited = 0
        for k in range(L + 1):
            if qmin[i] + mu * k >= best:
                break
            for m in range(starts[k], starts[k + 1]):
                code = hcode[i] ^ masks[m]
                q = _quad(G, V, i, code, L) + mu * k
                visited = visited + 1
                if q < best:
                    best = q
                    bestcode = code
        out_code[i] = bestcode
        out_cost[i] = best
        out_visited[i] = visited


def ba_alternate(const double[:, ::1] G, const double[:, ::1] V, const unsigned char[:, ::1] H,
                 unsigned char[:, ::1] Z, double mu, int max_sweeps, double[:, ::1] GZ,
                 double[::1] out_cost, long long[::1] out_sweeps):
    """Bit-by-bit alternating optimisation from the codes in Z (updated in place).

    Each sweep visits bits 0..L−1 and sets bit j to its best value given the others (flip when
    that lowers q + μ·ham strictly), so the per-point objective never increases. Stops after a
    sweep without a flip or after max_sweeps. GZ is scratch (n × L)."""
    cdef Py_ssize_t n = V.shape[0], L = V.shape[1], i, j, a, b
    cdef double delta, dq, dpen, s, t
    cdef int sweep, changed, nsw
    for i in prange(n, nogil=True, schedule="static"):
        for a in range(L):
            s = 0.0
            for b in range(L):
                if Z[i, b]:
                    s = s + G[a, b]
            GZ[i, a] = s
        nsw = 0
        for sweep in range(max_sweeps):
            changed = 0
            nsw = nsw + 1
            for j in range(L):
                delta = 1.0 - 2.0 * Z[i, j]
                dq = 2.0 * delta * GZ[i, j] + G[j, j] - 2.0 * delta * V[i, j]
                dpen = mu if Z[i, j] == H[i, j] else -mu
                if dq + dpen < 0.0:
                    Z[i, j] = 1 - Z[i, j]
                    for a in range(L):
                        GZ[i, a] = GZ[i, a] + delta * G[a, j]
                    changed = 1
            if changed == 0:
                break
        s = 0.0
        for a in range(L):
            if Z[i, a]:
                s = s + GZ[i, a] - 2.0 * V[i, a]
            if Z[i, a] != H[i, a]:
                s = s + mu
        out_cost[i] = s
        out_sweeps[i] = nsw


def popcount_masks(int L):
    """All 2^L masks sorted by (popcount, value) and the start of each popcount class."""
    masks = np.arange(1 << L, dtype=np.int64)
    pc = np.array([bin(int(m)).count("1") for m in masks], dtype=np.int64)
    order = np.lexsort((masks, pc))
    starts = np.searchsorted(pc[order], np.arange(L + 2)).astype(np.int64)
    return np.ascontiguousarray(masks[order]), starts
