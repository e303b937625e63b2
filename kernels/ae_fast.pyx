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
from libc.math cimport exp, log, log1p, fabs, expf, tanhf, sqrtf

ACT_CODES = {"sigmoid": 0, "relu": 1, "tanh": 2, "linear": 3}


cdef inline float _act(float z, int code) noexcept nogil:
    if code == 0:
        if z >= 0:
            return 1.0 / (1.0 + expf(-z))
        else:
            return expf(z) / (1.0 + expf(z))
    elif code == 1:
        return z if z > 0 else 0.0
    elif code == 2:
        return tanhf(z)
    return z


cdef inline float _dact(float h, int code) noexcept nogil:
    # derivative expressed through the output h = act(z)
    if code == 0:
        return h * (1.0 - h)
    elif code == 1:
        return 1.0 if h > 0 else 0.0
    elif code == 2:
        return 1.0 - h * h
    return 1.0


def bias_act(float[:, ::1] Z, const float[::1] b, int code):
    """Z[i, j] = act(Z[i, j] + b[j]) in place."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i, j
    with nogil:
        for i in prange(n, schedule="static"):
            for j in range(m):
                Z[i, j] = _act(Z[i, j] + b[j], code)


def act_backward(float[:, ::1] D, const float[:, ::1] H, int code):
    """D[i, j] *= act'(z) where H = act(z) (in place)."""
    cdef Py_ssize_t n = D.shape[0], m = D.shape[1], i, j
    if code == 3:
        return
    with nogil:
        for i in prange(n, schedule="static"):
            for j in range(m):
                D[i, j] = D[i, j] * _dact(H[i, j], code)


def sigmoid_xent(float[:, ::1] Z, const float[::1] c, const float[:, ::1] T, float scale,
                 double[::1] rowloss):
    """Output layer sigmoid + cross-entropy against targets T in [0, 1].

    On entry Z = pre-activation without bias; on exit Z = scale·(σ(Z + c) − T), the gradient
    of scale·loss w.r.t. the pre-activation. rowloss[i] = Σⱼ −[t log y + (1−t) log(1−y)]
    computed stably as softplus(a) − t·a (a = Z + c), in double."""
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1], i, j
    cdef double a, s, t
    cdef float y
    with nogil:
        for i in prange(n, schedule="static"):
            s = 0.0
            for j in range(m):
                a = <double>Z[i, j] + <double>c[j]
                t = T[i, j]
                if a > 0:
                    s = s + a + log1p(exp(-a)) - t * a
                else:
                    s = s + log1p(exp(a)) - t * a
                y = _act(<float>a, 0)
                Z[i, j] = scale * (y - T[i, j])
            rowloss[i] = s


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
