# cython: language_level=3
"""Dual coordinate descent for L2-regularised squared-hinge linear SVMs (Hsieh et al. 2008,
LIBLINEAR `-s 1`), one block of rows at a time. No MPI, no I/O.

For each submodel j (bit l = bits[j]) the problem is
    min_w  ½‖w‖² + C Σᵢ max(0, 1 − yᵢ wᵀx̃ᵢ)²,   x̃ᵢ = [xᵢ, 1],  yᵢ = 2zᵢₗ − 1,
whose dual is  min_{α ≥ 0} ½ αᵀ(Q + I/(2C))α − eᵀα,  Qᵢₖ = yᵢyₖ x̃ᵢᵀx̃ₖ,  w = Σᵢ αᵢ yᵢ x̃ᵢ.
`dcd_block` runs coordinate sweeps over the rows `order` of one block (a rank's shard): the
dual variables of those rows (alpha[i, l]) live with the block, w (row j of W: weights, then
the bias weight) carries every other block's contribution Σ αy x̃. Every sweep visits the
rows in a fresh random order (Fisher–Yates with an xorshift stream seeded by `seed`, as
LIBLINEAR permutes each pass); the visit ends once the largest projected gradient of a sweep
is below `tol` for every submodel.
"""
cdef inline double _dot(const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    """aᵀb with four partial sums (a fixed order: the same bits at any thread count)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t c = 0
    while c + 4 <= n:
        s0 = s0 + a[c] * b[c]
        s1 = s1 + a[c + 1] * b[c + 1]
        s2 = s2 + a[c + 2] * b[c + 2]
        s3 = s3 + a[c + 3] * b[c + 3]
        c = c + 4
    while c < n:
        s0 = s0 + a[c] * b[c]
        c = c + 1
    return (s0 + s1) + (s2 + s3)


def dcd_block(const double[:, ::1] X, const unsigned char[:, ::1] Z, const long long[::1] bits,
              double[:, ::1] W, double[:, ::1] alpha, const double[::1] qdiag,
              long long[::1] order, double C, int sweeps, double tol,
              unsigned long long seed, long long[::1] out_sweeps, double[::1] out_pg):
    """Sweeps of dual CD for the submodels W (k × D+1) over the block's rows `order` of X
    (n × D), shuffled in place before every sweep.

    Row-outer: each row xᵢ is read once per sweep for all k submodels (it stays in cache),
    which the submodels' independence allows. qdiag[i] = ‖xᵢ‖² + 1. Updates W and alpha
    (n × L) in place; out_sweeps[j] = sweeps run (the same for all), out_pg[j] = largest
    |projected gradient| of submodel j in the last sweep. Serial, so the result does not
    depend on the thread count."""
    cdef Py_ssize_t k = W.shape[0], D = X.shape[1], m = order.shape[0]
    cdef Py_ssize_t j, t, i, c, u
    cdef long long l, tmp
    cdef int s, ns = 0
    cdef unsigned long long st = seed * 6364136223846793005ULL + 1442695040888963407ULL
    cdef double dii = 0.5 / C, y, g, pg, a_old, a_new, d, worst
    if st == 0:
        st = 88172645463325252ULL
    with nogil:
        for s in range(sweeps):
            ns = ns + 1
            for j in range(k):
                out_pg[j] = 0.0
            for t in range(m - 1, 0, -1):                 # Fisher–Yates, xorshift64
                st = st ^ (st << 13)
                st = st ^ (st >> 7)
                st = st ^ (st << 17)
                u = <Py_ssize_t>(st % <unsigned long long>(t + 1))
                tmp = order[t]
                order[t] = order[u]
                order[u] = tmp
            for t in range(m):
                i = order[t]
                for j in range(k):
                    l = bits[j]
                    y = 2.0 * Z[i, l] - 1.0
                    a_old = alpha[i, l]
                    g = y * (_dot(&W[j, 0], &X[i, 0], D) + W[j, D]) - 1.0 + dii * a_old
                    pg = g
                    if a_old == 0.0 and g > 0.0:
                        pg = 0.0
                    if pg < 0.0:
                        pg = -pg
                    if pg > out_pg[j]:
                        out_pg[j] = pg
                    if pg > 1e-12:
                        a_new = a_old - g / (qdiag[i] + dii)
                        if a_new < 0.0:
                            a_new = 0.0
                        alpha[i, l] = a_new
                        d = (a_new - a_old) * y
                        for c in range(D):
                            W[j, c] = W[j, c] + d * X[i, c]
                        W[j, D] = W[j, D] + d
            worst = 0.0
            for j in range(k):
                if out_pg[j] > worst:
                    worst = out_pg[j]
            if worst < tol:
                break
    for j in range(k):
        out_sweeps[j] = ns
