# cython: language_level=3
"""Dual coordinate descent for L2-regularised squared-hinge linear SVMs (Hsieh et al. 2008,
LIBLINEAR `-s 1`), one block of rows at a time. No MPI, no I/O.

For each submodel j (bit l = bits[j]) the problem is
    min_w  ½‖w‖² + C Σᵢ max(0, 1 − yᵢ wᵀx̃ᵢ)²,   x̃ᵢ = [xᵢ, 1],  yᵢ = 2zᵢₗ − 1,
whose dual is  min_{α ≥ 0} ½ αᵀ(Q + I/(2C))α − eᵀα,  Qᵢₖ = yᵢyₖ x̃ᵢᵀx̃ₖ,  w = Σᵢ αᵢ yᵢ x̃ᵢ.
`dcd_block` runs coordinate sweeps over the rows `order` of one block (a rank's shard): the
dual variables of those rows (alpha[i, l]) live with the block, w (row j of W: weights, then
the bias weight) carries every other block's contribution Σ αy x̃. Every sweep visits the
rows in a fresh random order (Fisher–Yates with a per-submodel xorshift stream seeded by
`seed` and the bit, as LIBLINEAR permutes each pass); the visit ends once the largest
projected gradient of a sweep is below `tol`. Submodels are independent (prange over j,
disjoint outputs), so results do not depend on the thread count.
"""
from cython.parallel cimport prange


def dcd_block(const double[:, ::1] X, const unsigned char[:, ::1] Z, const long long[::1] bits,
              double[:, ::1] W, double[:, ::1] alpha, const double[::1] qdiag,
              long long[:, ::1] order, double C, int sweeps, double tol,
              unsigned long long seed, long long[::1] out_sweeps, double[::1] out_pg):
    """Sweeps of dual CD for the submodels W (k × D+1) on the block's rows listed in each
    row of `order` (k × m scratch, all rows equal on entry, shuffled in place) of X (n × D).

    qdiag[i] = ‖xᵢ‖² + 1. Updates W and alpha (n × L) in place; out_sweeps[j] = sweeps run,
    out_pg[j] = largest |projected gradient| seen in the last sweep."""
    cdef Py_ssize_t k = W.shape[0], D = X.shape[1], m = order.shape[1]
    cdef Py_ssize_t j, t, i, c, u
    cdef long long l, tmp
    cdef int s, ns
    cdef unsigned long long st
    cdef double dii = 0.5 / C, y, g, pg, a_old, a_new, d, maxpg
    for j in prange(k, nogil=True, schedule="static"):
        l = bits[j]
        st = seed * 6364136223846793005ULL + <unsigned long long>(l + 1) * 1442695040888963407ULL
        if st == 0:
            st = 88172645463325252ULL
        ns = 0
        maxpg = 0.0
        for s in range(sweeps):
            ns = ns + 1
            maxpg = 0.0
            for t in range(m - 1, 0, -1):             # Fisher–Yates, xorshift64
                st = st ^ (st << 13)
                st = st ^ (st >> 7)
                st = st ^ (st << 17)
                u = <Py_ssize_t>(st % <unsigned long long>(t + 1))
                tmp = order[j, t]
                order[j, t] = order[j, u]
                order[j, u] = tmp
            for t in range(m):
                i = order[j, t]
                y = 2.0 * Z[i, l] - 1.0
                g = W[j, D]
                for c in range(D):
                    g = g + W[j, c] * X[i, c]
                a_old = alpha[i, l]
                g = y * g - 1.0 + dii * a_old
                pg = g
                if a_old == 0.0 and g > 0.0:
                    pg = 0.0
                if pg < 0.0:
                    pg = -pg
                if pg > maxpg:
                    maxpg = pg
                if pg > 1e-12:
                    a_new = a_old - g / (qdiag[i] + dii)
                    if a_new < 0.0:
                        a_new = 0.0
                    alpha[i, l] = a_new
                    d = (a_new - a_old) * y
                    for c in range(D):
                        W[j, c] = W[j, c] + d * X[i, c]
                    W[j, D] = W[j, D] + d
            if maxpg < tol:
                break
        out_sweeps[j] = ns
        out_pg[j] = maxpg
