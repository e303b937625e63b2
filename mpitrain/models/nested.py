"""A nested (deep) model f = f_{K+1}∘…∘f₁ on one rank's rows, for MAC and backprop (no MPI).

Layer k maps z_{k−1} ↦ fₖ(z_{k−1}) = σ(Wₖz_{k−1} + bₖ) for k ≤ K (logistic σ), and the output
layer is linear: f_{K+1}(z_K) = W_{K+1}z_K + b_{K+1}; z₀ = x. As an autoencoder the target is
y = x. Parameters of layer k are stored as one array [Wₖ | bₖ] (out × in+1): row j is unit j,
MAC's submodel. With coordinates Z = (z₁ … z_K) per point, MAC's quadratic penalty is
    E_Q(W, Z; μ) = Σₙ ½‖yₙ − f_{K+1}(z_{K,n})‖² + (μ/2) Σₙ Σₖ ‖z_{k,n} − fₖ(z_{k−1,n})‖²
and the nested error is E(W) = Σₙ ‖yₙ − f(xₙ)‖² (reported per point).
"""
import numpy as np


def sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def init_layers(sizes, rng, scale=1.0):
    """[Wₖ | bₖ] with Wₖ ~ N(0, scale²/in), b = 0, for sizes [D, h₁, …, D]."""
    out = []
    for i in range(len(sizes) - 1):
        W = np.zeros((sizes[i + 1], sizes[i] + 1))
        W[:, :-1] = rng.standard_normal((sizes[i + 1], sizes[i])) * scale / np.sqrt(sizes[i])
        out.append(W)
    return out


def layer(Wb, Zin, last):
    a = Zin @ Wb[:, :-1].T + Wb[:, -1]
    return a if last else sigmoid(a)


def forward(X, layers):
    """Activations [z₁, …, z_K, output] of the nested model."""
    acts, z = [], X
    for k, Wb in enumerate(layers):
        z = layer(Wb, z, k == len(layers) - 1)
        acts.append(z)
    return acts


def nested_error(X, layers):
    R = X - forward(X, layers)[-1]
    return float(np.einsum("ij,ij->", R, R))


def per_point_eq(X, Z, layers, mu):
    """Per-point E_Q terms: (reconstruction ½‖x − f_{K+1}(z_K)‖², violation Σₖ‖zₖ − fₖ‖²)."""
    K = len(Z)
    prev = X
    viol = np.zeros(X.shape[0])
    for k in range(K):
        R = Z[k] - layer(layers[k], prev, False)
        viol += np.einsum("ij,ij->i", R, R)
        prev = Z[k]
    R = X - layer(layers[K], prev, True)
    return 0.5 * np.einsum("ij,ij->i", R, R), viol


def unit_sgd(Wm, t, Zin, T, order, batch, eta0, decay, sig):
    """One SGD pass of units Wm (k × in+1) on ½(g(wᵀz + b) − target)², g = σ if sig else
    identity, over rows `order` of inputs Zin and targets T (n × k). In place; t += batches."""
    d = Zin.shape[1]
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        Zb = Zin[idx]
        a = Zb @ Wm[:, :d].T + Wm[:, d]
        if sig:
            o = sigmoid(a)
            R = (o - T[idx]) * o * (1.0 - o)
        else:
            R = a - T[idx]
        lr = eta0 / np.sqrt(1.0 + decay * t.astype(np.float64))
        Wm[:, :d] -= lr[:, None] * (R.T @ Zb) / len(idx)
        Wm[:, d] -= lr * R.sum(axis=0) / len(idx)
        t += 1


def zstep(X, Z, layers, mu, steps, alpha0=1.0, max_halvings=30):
    """A few gradient steps per point on E_Q(·, Z; μ) with per-point backtracking (Armijo):
    a point's step is accepted only if its E_Q term decreases, so E_Q never increases.
    Z (list of n × h_k arrays) is updated in place; returns the number of accepted steps."""
    K = len(Z)
    n = X.shape[0]
    accepted = 0

    def energy(Zs):
        r, v = per_point_eq(X, Zs, layers, mu)
        return r + 0.5 * mu * v

    e = energy(Z)
    alpha = np.full(n, alpha0)
    for _ in range(steps):
        # gradient of every point's E_Q term w.r.t. z_1..z_K
        ins = [X] + Z[:-1]
        F = [layer(layers[k], ins[k], False) for k in range(K)]
        G = [mu * (Z[k] - F[k]) for k in range(K)]
        for k in range(K - 1):
            Fn = F[k + 1]
            G[k] -= mu * ((Z[k + 1] - Fn) * Fn * (1.0 - Fn)) @ layers[k + 1][:, :-1]
        out = layer(layers[K], Z[K - 1], True)
        G[K - 1] -= (X - out) @ layers[K][:, :-1]
        g2 = sum(np.einsum("ij,ij->i", g, g) for g in G)
        e, alpha, acc = backtrack(Z, G, range(K), g2, e, alpha, energy, max_halvings)
        accepted += acc
        alpha = np.minimum(alpha * 2.0, alpha0 * 8)
    return accepted


def backtrack(Z, G, blocks, g2, e, alpha, energy, max_halvings, accept=None):
    """Per-point Armijo backtracking along −G on the blocks Z[k], k in `blocks`: a point
    takes the trial step once energy(trial) ≤ e − 10⁻⁴·α‖g‖² (per point), else halves its α.
    `accept(ok)` (optional) is told which points took the trial just evaluated.
    Returns (e, α, number of accepted points)."""
    accepted = 0
    todo = g2 > 0
    for _h in range(max_halvings):
        if not todo.any():
            break
        trial = list(Z)
        for k in blocks:
            trial[k] = Z[k] - alpha[:, None] * G[k]
        et = energy(trial)
        ok = todo & (et <= e - 1e-4 * alpha * g2)
        for k in blocks:
            Z[k][ok] = trial[k][ok]
        if accept is not None:
            accept(ok)
        e = np.where(ok, et, e)
        accepted += int(ok.sum())
        todo &= ~ok
        alpha = np.where(todo, alpha * 0.5, alpha)
    return e, alpha, accepted


def backprop_grad(Xb, layers):
    """Gradient of ½Σ‖x − f(x)‖² over the rows Xb (list like layers) and its value."""
    acts = forward(Xb, layers)
    K = len(layers) - 1
    delta = acts[-1] - Xb
    loss = 0.5 * float(np.einsum("ij,ij->", delta, delta))
    grads = [None] * (K + 1)
    for k in range(K, -1, -1):
        inp = Xb if k == 0 else acts[k - 1]
        g = np.empty_like(layers[k])
        g[:, :-1] = delta.T @ inp
        g[:, -1] = delta.sum(axis=0)
        grads[k] = g
        if k > 0:
            delta = (delta @ layers[k][:, :-1]) * acts[k - 1] * (1.0 - acts[k - 1])
    return grads, loss
