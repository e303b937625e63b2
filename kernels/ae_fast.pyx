# cython: language_level=3
"""Elementwise kernels of the dense autoencoders (float32, OpenMP over rows).

GEMMs stay in numpy's BLAS; these fuse the elementwise work around them: bias + activation,
activation derivative, output bias + loss + loss gradient, input noise, momentum update.
Conventions: Python allocates every buffer; kernels fill them in place; no MPI, no I/O,
nogil. Every loop is a static partition over rows (or elements) with no cross-thread
reductions (per-row loss sums are written to a float64 array that Python sums in fixed
order), so results do not depend on the number of OpenMP threads.
The plain-NumPy references live in mpitrain/models/autoencoder.py (`ref_*`).
"""
from cython.parallel cimport prange
from libc.math cimport exp, log, tanhf, sqrtf

ACT_CODES = {"sigmoid": 0, "relu": 1, "tanh": 2, "linear": 3}

# The sigmoid rows: branch-free float32 code without library calls, so that the compiler
# vectorizes it (the libm expf/log1p calls it replaces cost 15-20 % of a deep network's
# epoch). exp(x) for x <= 0 by Cephes' expf (range reduction by ln 2, degree-6 polynomial,
# |relative error| < 2e-7), log1p(e) for e in [0, 1] by 2·atanh(e/(2+e)) (odd series to the
# 15th power, |relative error| < 3e-7). The loss of a row is summed in double over 8 fixed
# lanes, then the lanes in order: the result depends on neither threads nor vector width.
cdef extern from *:
    """
    #pragma GCC push_options
    /* the selects below may be if-converted (vectorized): no floating-point traps wanted */
    #pragma GCC optimize ("no-trapping-math")
    static inline float mpt_exp_neg(float x) {  /* exp(x), x <= 0; x < -87 gives exp(-87) */
        union { float f; int i; } u;
        float n, r, y;
        x = x < -87.0f ? -87.0f : x;
        n = (float)(int)(x * 1.44269504088896341f - 0.5f);  /* nearest integer (x <= 0) */
        r = x - n * 0.693359375f + n * 2.12194440e-4f;
        y = 1.9875691500e-4f;
        y = y * r + 1.3981999507e-3f;
        y = y * r + 8.3334519073e-3f;
        y = y * r + 4.1665795894e-2f;
        y = y * r + 1.6666665459e-1f;
        y = y * r + 5.0000001201e-1f;
        y = y * r * r + r + 1.0f;
        u.i = ((int)n + 127) << 23;
        return y * u.f;
    }
    static inline float mpt_log1p01(float e) {  /* log(1 + e), e in [0, 1] */
        float u = e / (2.0f + e), u2 = u * u, p;
        p = 1.0f / 15.0f;
        p = p * u2 + 1.0f / 13.0f;
        p = p * u2 + 1.0f / 11.0f;
        p = p * u2 + 1.0f / 9.0f;
        p = p * u2 + 1.0f / 7.0f;
        p = p * u2 + 1.0f / 5.0f;
        p = p * u2 + 1.0f / 3.0f;
        p = p * u2 + 1.0f;
        return 2.0f * u * p;
    }
    static inline float mpt_sigmoid(float z) {
        float e = mpt_exp_neg(z < 0.0f ? z : -z);
        return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
    }
    static void mpt_bias_sigmoid_row(float *z, const float *b, Py_ssize_t m) {
        Py_ssize_t j;
        for (j = 0; j < m; j++)
            z[j] = mpt_sigmoid(z[j] + b[j]);
    }
    static void mpt_dsigmoid_row(float *d, const float *h, Py_ssize_t m) {
        Py_ssize_t j;
        for (j = 0; j < m; j++)
            d[j] = d[j] * (h[j] * (1.0f - h[j]));
    }
    /* z <- scale·(sigmoid(z + c) − t); returns Σ softplus(a) − t·a, a = z + c */
    static double mpt_sigmoid_xent_row(float *z, const float *c, const float *t,
                                       float scale, Py_ssize_t m) {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0.0;
        Py_ssize_t j = 0;
        int l;
        for (; j + 8 <= m; j += 8) {
            for (l = 0; l < 8; l++) {
                float a = z[j + l] + c[j + l], tj = t[j + l];
                float e = mpt_exp_neg(a < 0.0f ? a : -a);
                float sp = (a > 0.0f ? a : 0.0f) + mpt_log1p01(e);
                acc[l] += (double)sp - (double)tj * (double)a;
                z[j + l] = scale * ((a >= 0.0f ? 1.0f : e) / (1.0f + e) - tj);
            }
        }
        for (l = 0; l < 8; l++)
            s += acc[l];
        for (; j < m; j++) {
            float a = z[j] + c[j], tj = t[j];
            float e = mpt_exp_neg(a < 0.0f ? a : -a);
            float sp = (a > 0.0f ? a : 0.0f) + mpt_log1p01(e);
            s += (double)sp - (double)tj * (double)a;
            z[j] = scale * ((a >= 0.0f ? 1.0f : e) / (1.0f + e) - tj);
        }
        return s;
    }
    #pragma GCC pop_options
    """
    void mpt_bias_sigmoid_row(float *z, const float *b, Py_ssize_t m) nogil
    void mpt_dsigmoid_row(float *d, const float *h, Py_ssize_t m) nogil
    double mpt_sigmoid_xent_row(float *z, const float *c, const float *t, float scale,
                                Py_ssize_t m) nogil


# The remaining activations, elementwise (sigmoid, code 0, has its own row kernels above).
cdef inline float _act(float z, int code) noexcept nogil:
    if code == 1:
        return z if z > 0 else 0.0
    elif code == 2:
        return tanhf(z)
    return z


cdef inline float _dact(float h, int code) noexcept nogil:
    # derivative of relu (1) or tanh (2) through the output h = act(z); act_backward handles
    # sigmoid (0) by its row kernel and returns at once for linear (3)
    if code == 1:
        return 1.0 if h > 0 else 0.0
    return 1.0 - h * h


def bias_act(float[:, ::1] Z, const float[::1] b, int code):
    """Z[i, j] = act(Z[i, j] + b[j]) in place."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i, j
    assert b.shape[0] == m
    if m == 0:
        return
    with nogil:
        if code == 0:
            for i in prange(n, schedule="static"):
                mpt_bias_sigmoid_row(&Z[i, 0], &b[0], m)
        else:
            for i in prange(n, schedule="static"):
                for j in range(m):
                    Z[i, j] = _act(Z[i, j] + b[j], code)


def act_backward(float[:, ::1] D, const float[:, ::1] H, int code):
    """D[i, j] *= act'(z) where H = act(z) (in place)."""
    cdef Py_ssize_t n = D.shape[0], m = D.shape[1], i, j
    assert H.shape[0] == n and H.shape[1] == m
    if code == 3 or m == 0:
        return
    with nogil:
        if code == 0:
            for i in prange(n, schedule="static"):
                mpt_dsigmoid_row(&D[i, 0], &H[i, 0], m)
        else:
            for i in prange(n, schedule="static"):
                for j in range(m):
                    D[i, j] = D[i, j] * _dact(H[i, j], code)


def sigmoid_xent(float[:, ::1] Z, const float[::1] c, const float[:, ::1] T, float scale,
                 double[::1] rowloss):
    """Output layer sigmoid + cross-entropy against targets T in [0, 1].

    On entry Z = pre-activation without bias; on exit Z = scale·(σ(Z + c) − T), the gradient
    of scale·loss w.r.t. the pre-activation. rowloss[i] = Σⱼ −[t log y + (1−t) log(1−y)]
    computed stably as softplus(a) − t·a (a = Z + c; float32 terms summed in double)."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i
    assert c.shape[0] == m and T.shape[0] == n and T.shape[1] == m and rowloss.shape[0] >= n
    if m == 0:
        rowloss[:n] = 0.0
        return
    with nogil:
        for i in prange(n, schedule="static"):
            rowloss[i] = mpt_sigmoid_xent_row(&Z[i, 0], &c[0], &T[i, 0], scale, m)


def linear_squared(float[:, ::1] Z, const float[::1] c, const float[:, ::1] T, float scale,
                   double[::1] rowloss):
    """Output layer identity + squared error: rowloss[i] = ½Σⱼ(a − t)², Z ← scale·(a − T)."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i, j
    cdef double s
    cdef float r
    with nogil:
        for i in prange(n, schedule="static"):
            s = 0.0
            for j in range(m):
                r = Z[i, j] + c[j] - T[i, j]
                s = s + 0.5 * <double>r * <double>r
                Z[i, j] = scale * r
            rowloss[i] = s


def softmax_xent(float[:, ::1] Z, const float[::1] c, const int[::1] labels, float scale,
                 double[::1] rowloss, int[::1] pred):
    """Softmax + cross-entropy with integer labels: rowloss[i] = −log softmax(a)[labels[i]],
    pred[i] = argmax a, Z ← scale·(softmax(a) − onehot)."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i, j
    cdef double mx, s, a
    cdef int arg
    with nogil:
        for i in prange(n, schedule="static"):
            mx = <double>Z[i, 0] + c[0]
            arg = 0
            for j in range(1, m):
                a = <double>Z[i, j] + c[j]
                if a > mx:
                    mx = a
                    arg = <int>j
            s = 0.0
            for j in range(m):
                s = s + exp(<double>Z[i, j] + c[j] - mx)
            rowloss[i] = log(s) + mx - (<double>Z[i, labels[i]] + c[labels[i]])
            pred[i] = arg
            for j in range(m):
                a = exp(<double>Z[i, j] + c[j] - mx) / s
                if j == labels[i]:
                    a = a - 1.0
                Z[i, j] = <float>(scale * a)


def mask_noise(const float[:, ::1] X, const float[:, ::1] U, float p, float[:, ::1] out):
    """Masking noise: out = X where U ≥ p, else 0."""
    cdef Py_ssize_t n = X.shape[0], m = X.shape[1], i, j
    with nogil:
        for i in prange(n, schedule="static"):
            for j in range(m):
                out[i, j] = X[i, j] if U[i, j] >= p else 0.0


def gauss_noise(const float[:, ::1] X, const float[:, ::1] N, float sigma, float[:, ::1] out):
    """Additive Gaussian noise: out = X + sigma·N."""
    cdef Py_ssize_t n = X.shape[0], m = X.shape[1], i, j
    with nogil:
        for i in prange(n, schedule="static"):
            for j in range(m):
                out[i, j] = X[i, j] + sigma * N[i, j]


def momentum_step(float[::1] W, float[::1] V, const float[::1] G, float lr, float mu,
                  float wd):
    """Heavy-ball SGD: V ← mu·V − lr·(G + wd·W); W ← W + V (flat arrays, in place)."""
    cdef Py_ssize_t n = W.shape[0], i
    with nogil:
        for i in prange(n, schedule="static"):
            V[i] = mu * V[i] - lr * (G[i] + wd * W[i])
            W[i] = W[i] + V[i]


def adam_step(float[::1] W, float[::1] M, float[::1] V, const float[::1] G, float lr_t,
              float b1, float b2, float eps, float wd):
    """Adam (Kingma & Ba 2015) with the bias correction folded into lr_t =
    lr·√(1−b2ᵗ)/(1−b1ᵗ): g = G + wd·W; M ← b1·M + (1−b1)·g; V ← b2·V + (1−b2)·g²;
    W ← W − lr_t·M/(√V + eps) (flat arrays, in place)."""
    cdef Py_ssize_t n = W.shape[0], i
    cdef float g
    with nogil:
        for i in prange(n, schedule="static"):
            g = G[i] + wd * W[i]
            M[i] = b1 * M[i] + (1.0 - b1) * g
            V[i] = b2 * V[i] + (1.0 - b2) * g * g
            W[i] = W[i] - lr_t * M[i] / (sqrtf(V[i]) + eps)
