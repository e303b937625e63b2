"""Dense (float32) autoencoders on one rank's rows: layers, losses, gradients, noise, SGD.

A network is a chain of dense maps hₗ = actₗ(hₗ₋₁ Wₗ + bₗ), where Wₗ is a parameter or the
transpose of one (tied weights). The last map's activation is implied by the loss:

    xent     sigmoid output, ℓ(x, t) = −Σⱼ [tⱼ log yⱼ + (1−tⱼ) log(1−yⱼ)]   (t in [0,1])
    squared  identity output, ℓ(x, t) = ½ Σⱼ (yⱼ − tⱼ)²
    softmax  softmax output, ℓ(x, c) = −log softmax(a)_c                 (fine-tuning)

A batch objective is (1/B)Σᵢ ℓᵢ with B the GLOBAL batch size, so gradients computed on
each rank's part of a batch simply add up over ranks (one Allreduce).

Parameter names: encoder k (1-based) `W{k}` (d_{k-1} × d_k), `b{k}`; its decoder `V{k}`
(d_k × d_{k-1}), `c{k}` (V{k} = W{k}ᵀ when tied, no V{k} then); the gradual DAE's direct
decoder of stage k `D{k}` (d_k × d_0), `e{k}`; the fine-tuning softmax `S`, `s`.
GEMMs are numpy (single-threaded BLAS calls, split over `set_gemm_threads` threads by
`gemm`); the elementwise work is in kernels/ae_fast.pyx. `ref_*` are the plain-NumPy
references the tests compare the kernels against.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.special import xlogy

from .._kernels import ae_fast as K

ACT = K.ACT_CODES
F32 = np.float32


_GEMM = {"threads": 1, "pool": None}


def set_gemm_threads(n):
    """Split every GEMM of the networks over n threads (BLAS itself limited to one thread).
    OpenBLAS's own threads spin-wait for each other inside a GEMM: on a shared 2-core machine
    a 2-thread epoch took 3-30x as long as a 1-thread one. These threads wait passively."""
    n = max(1, int(n))
    if n != _GEMM["threads"]:
        if _GEMM["pool"] is not None:
            _GEMM["pool"].shutdown()
        _GEMM.update(threads=n, pool=ThreadPoolExecutor(n - 1) if n > 1 else None)


def gemm(a, b, out):
    """out = a @ b in float32: with T gemm threads, T single-threaded BLAS calls on column
    blocks of out (multiples of 16 columns; fewer threads for narrow outputs). The blocks
    depend only on T, so the result is deterministic for a given thread count."""
    n = out.shape[1]
    T = min(_GEMM["threads"], n // 64)
    if T <= 1:
        return np.matmul(a, b, out=out)
    cut = [0] + [(n * i // T) // 16 * 16 for i in range(1, T)] + [n]
    futs = [_GEMM["pool"].submit(np.matmul, a, b[:, cut[i]:cut[i + 1]],
                                 out=out[:, cut[i]:cut[i + 1]]) for i in range(1, T)]
    np.matmul(a, b[:, :cut[1]], out=out[:, :cut[1]])
    for f in futs:
        f.result()
    return out


def as_input(X):
    """Training/evaluation rows as kept by the algorithms: float32 CSR stays CSR (densified
    per minibatch or chunk by `dense`), anything else becomes dense C-contiguous float32."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=F32)
    return np.ascontiguousarray(X, dtype=F32)


def dense(X):
    """A block of rows as dense C-contiguous float32 (a CSR block is densified)."""
    return np.ascontiguousarray(X.toarray() if sp.issparse(X) else X, dtype=F32)


def out_act(loss):
    return {"xent": "sigmoid", "squared": "linear", "softmax": "softmax"}[loss]


def layer_loss(k, act, loss):
    """Loss of autoencoder layer k: the model's loss for layer 1 (it reconstructs x); above,
    cross-entropy when the hidden units are sigmoid (codes in (0,1)), else squared error."""
    if k == 1:
        return loss
    return "xent" if act == "sigmoid" else "squared"


class Layer:
    __slots__ = ("w", "t", "b", "act")

    def __init__(self, w, b, act, t=False):
        self.w, self.b, self.act, self.t = w, b, act, t


class Net:
    """A chain of dense layers with a loss on the last one; buffers are reused across calls."""

    def __init__(self, layers, loss):
        self.layers = list(layers)
        self.loss = loss
        self._rows = 0
        self._H = self._D = None
        self._rowloss = None
        self._pred = None
        self._tmp = {}

    def W(self, P, layer):
        w = P[layer.w]
        return w.T if layer.t else w

    def dims(self, P):
        return [self.W(P, ly).shape for ly in self.layers]

    def _ensure(self, P, rows):
        if rows <= self._rows:
            return
        rows = max(rows, 1)
        self._H = [np.empty((rows, s[1]), F32) for s in self.dims(P)]
        self._D = [np.empty((rows, s[1]), F32) for s in self.dims(P)]
        self._rowloss = np.empty(rows, np.float64)
        self._pred = np.empty(rows, np.int32)
        self._rows = rows

    def forward(self, P, X):
        """Hidden activations of every layer but the last, and the last pre-activation
        (without bias). Views into reused buffers."""
        r = X.shape[0]
        self._ensure(P, r)
        hs = []
        h = X
        for ly, buf in zip(self.layers, self._H):
            z = buf[:r]
            gemm(h, self.W(P, ly), z)
            if ly is not self.layers[-1]:
                K.bias_act(z, P[ly.b], ACT[ly.act])
            hs.append(z)
            h = z
        return hs

    def _head(self, P, z, T, labels, scale):
        r = z.shape[0]
        c = P[self.layers[-1].b]
        if self.loss == "xent":
            K.sigmoid_xent(z, c, T, F32(scale), self._rowloss[:r])
        elif self.loss == "squared":
            K.linear_squared(z, c, T, F32(scale), self._rowloss[:r])
        else:
            K.softmax_xent(z, c, labels, F32(scale), self._rowloss[:r], self._pred[:r])
        return float(np.sum(self._rowloss[:r]))

    def loss_sum(self, P, X, T=None, labels=None, chunk=2048):
        """(Σᵢ ℓᵢ, number of correct argmax predictions or 0) over the rows of X (clean
        reconstruction target T, default X)."""
        total, correct = 0.0, 0
        for s in range(0, X.shape[0], chunk):
            x = dense(X[s:s + chunk])
            t = None if T is None else T[s:s + chunk]
            lab = None if labels is None else labels[s:s + chunk]
            hs = self.forward(P, x)
            total += self._head(P, hs[-1], x if t is None and self.loss != "softmax" else t,
                                lab, 1.0)
            if self.loss == "softmax":
                correct += int(np.count_nonzero(self._pred[:x.shape[0]] == lab))
        return total, correct

    def loss_grad(self, P, X, T, G, trainable, scale, labels=None):
        """Σᵢ ℓᵢ over the rows of X; fills G[name] (for every name in `trainable`) with the
        gradient of scale·Σᵢ ℓᵢ. Backpropagation stops below the lowest trainable layer."""
        r = X.shape[0]
        if r == 0:
            for name in trainable:
                G[name][...] = 0
            return 0.0
        hs = self.forward(P, X)
        loss = self._head(P, hs[-1], T, labels, scale)
        lowest = min(i for i, ly in enumerate(self.layers)
                     if ly.w in trainable or ly.b in trainable)
        written = set()
        dz = hs[-1]  # now holds d(scale·loss)/d(pre-activation)
        for i in range(len(self.layers) - 1, lowest - 1, -1):
            ly = self.layers[i]
            hin = X if i == 0 else hs[i - 1]
            if ly.w in trainable:
                g = G[ly.w]
                if ly.t:  # gradient w.r.t. W where the layer uses Wᵀ: dZᵀ·H
                    self._accum(g, ly.w, written, lambda o: gemm(dz.T, hin, o))
                else:
                    self._accum(g, ly.w, written, lambda o: gemm(hin.T, dz, o))
            if ly.b in trainable:
                self._accum(G[ly.b], ly.b, written, lambda o: np.sum(dz, axis=0, out=o))
            if i > lowest:
                dh = self._D[i - 1][:r]
                gemm(dz, self.W(P, ly).T, dh)
                K.act_backward(dh, hs[i - 1], ACT[self.layers[i - 1].act])
                dz = dh
        for name in trainable:
            if name not in written:
                G[name][...] = 0
        return loss

    def _accum(self, g, name, written, fn):
        if name not in written:
            fn(g)
            written.add(name)
        else:
            tmp = self._tmp.get(name)
            if tmp is None or tmp.shape != g.shape:
                tmp = self._tmp[name] = np.empty_like(g)
            fn(tmp)
            g += tmp


# -- the networks of the four algorithms ------------------------------------------------------
def enc(k, act):
    return Layer(f"W{k}", f"b{k}", act)


def dec(k, act, tied):
    return Layer(f"W{k}" if tied else f"V{k}", f"c{k}", act, t=tied)


def layer_net(k, act, loss, tied):
    """Autoencoder k alone: h = act(x W_k + b_k), reconstruction through its decoder."""
    lk = layer_loss(k, act, loss)
    return Net([enc(k, act), dec(k, out_act(lk), tied)], lk)


def stack_net(K_, act, loss, tied):
    """The unrolled stack enc₁..enc_K, dec_K..dec₁ reconstructing x."""
    layers = [enc(k, act) for k in range(1, K_ + 1)]
    for k in range(K_, 0, -1):
        layers.append(dec(k, out_act(layer_loss(k, act, loss)), tied))
    return Net(layers, loss)


def direct_net(k, act, loss):
    """Gradual DAE stage k as printed: enc₁..enc_k, then one decoder D_k from h_k to x."""
    return Net([enc(j, act) for j in range(1, k + 1)]
               + [Layer(f"D{k}", f"e{k}", out_act(loss))], loss)


def finetune_net(K_, act):
    return Net([enc(j, act) for j in range(1, K_ + 1)] + [Layer("S", "s", "softmax")],
               "softmax")


def encode(P, X, ks, act, chunk=4096):
    """Codes of X through the encoders ks (e.g. range(1, k)), in float32."""
    if not len(ks):
        return X
    out = np.empty((X.shape[0], P[f"W{ks[-1]}"].shape[1]), F32)
    for s in range(0, X.shape[0], chunk):
        h = dense(X[s:s + chunk])
        for k in ks:
            z = gemm(h, P[f"W{k}"], np.empty((h.shape[0], P[f"W{k}"].shape[1]), F32))
            K.bias_act(z, P[f"b{k}"], ACT[act])
            h = z
        out[s:s + h.shape[0]] = h
    return out


def net_params(net):
    """The parameter names a network uses, in layer order, each once (a tied weight once)."""
    return list(dict.fromkeys(n for ly in net.layers for n in (ly.w, ly.b)))


# -- calibration baselines (mean image, PCA) ---------------------------------------------------
def pca_fit(S, C, n, k):
    """Mean and the top-k principal directions (d × k, columns by decreasing variance) from
    the sums Σx (d) and Σxxᵀ (d × d) of n rows, by numpy.linalg.eigh of the covariance."""
    mu = S / n
    cov = C / n - np.outer(mu, mu)
    _, U = np.linalg.eigh(cov)
    return mu, np.ascontiguousarray(U[:, ::-1][:, :k])


def baseline_loss_sums(X, mu, U, loss, eps, chunk=4096):
    """Σᵢ ℓ(yᵢ, xᵢ) in float64 for three predictors of x: the mean image y = mu, the PCA
    reconstruction y = mu + (x − mu)UUᵀ, and the target itself (y = x: the floor, the entropy
    of the targets under cross-entropy, 0 under squared error). Cross-entropy clips y to
    [eps, 1 − eps] (PCA and the mean can leave (0, 1)). Returns [mean, pca, floor]."""
    out = np.zeros(3)
    for s in range(0, X.shape[0], chunk):
        x = dense(X[s:s + chunk]).astype(np.float64)
        xc = x - mu
        for j, y in enumerate((np.broadcast_to(mu, x.shape), mu + (xc @ U) @ U.T)):
            if loss == "xent":
                y = np.clip(y, eps, 1.0 - eps)
                out[j] += -np.sum(x * np.log(y) + (1.0 - x) * np.log1p(-y))
            else:
                out[j] += 0.5 * np.sum((y - x) ** 2)
        if loss == "xent":  # entropy of the targets, 0·log 0 = 0
            out[2] += -np.sum(xlogy(x, x) + xlogy(1.0 - x, 1.0 - x))
    return out


def glorot(rng, din, dout, act):
    r = np.sqrt(6.0 / (din + dout)) * (4.0 if act == "sigmoid" else 1.0)
    return rng.uniform(-r, r, size=(din, dout)).astype(F32)


# -- plain-NumPy references (tests) ---------------------------------------------------------
def ref_act(z, act):
    z = z.astype(np.float64)
    return {"sigmoid": lambda: 1 / (1 + np.exp(-z)), "relu": lambda: np.maximum(z, 0),
            "tanh": lambda: np.tanh(z), "linear": lambda: z}[act]()


def ref_dact(h, act):
    h = h.astype(np.float64)
    return {"sigmoid": lambda: h * (1 - h), "relu": lambda: (h > 0).astype(float),
            "tanh": lambda: 1 - h * h, "linear": lambda: np.ones_like(h)}[act]()


def ref_head(a, T, loss, labels=None):
    """(row losses, gradient of Σ losses w.r.t. a) in float64; a includes the bias."""
    a = a.astype(np.float64)
    if loss == "xent":
        y = 1 / (1 + np.exp(-a))
        return (np.logaddexp(0, a) - T * a).sum(1), y - T
    if loss == "squared":
        return 0.5 * ((a - T) ** 2).sum(1), a - T
    m = a.max(1, keepdims=True)
    p = np.exp(a - m)
    p /= p.sum(1, keepdims=True)
    rows = np.arange(a.shape[0])
    loss_ = -np.log(p[rows, labels])
    g = p.copy()
    g[rows, labels] -= 1
    return loss_, g


def ref_momentum(W, V, G, lr, mu, wd):
    V2 = mu * V - lr * (G + wd * W)
    return W + V2, V2


def ref_adam(W, M, V, G, lr_t, b1, b2, eps, wd):
    g = G + wd * W
    M2 = b1 * M + (1 - b1) * g
    V2 = b2 * V + (1 - b2) * g * g
    return W - lr_t * M2 / (np.sqrt(V2) + eps), M2, V2
