"""The binary autoencoder of ParMAC on one rank's rows (no MPI).

    encoder  h(x) = step(Ax + a) ∈ {0,1}^L        (L hash functions, each a linear SVM)
    decoder  f(z) = Bz + c ∈ R^D                   (D outputs, each a least-squares fit)
    E_Q(h, f, Z; μ) = Σₙ ‖xₙ − f(zₙ)‖² + μ‖zₙ − h(xₙ)‖²,   zₙ ∈ {0,1}^L

Submodels: encoder l = row l of [A | a] (width D+1), the L2-regularised squared-hinge SVM
    min ½‖[aₗ, aₗ₀]‖² + C Σₙ max(0, 1 − yₙₗ(aₗᵀxₙ + aₗ₀))²,   yₙₗ = 2zₙₗ − 1,
fitted by dual coordinate descent (kernels/svm_dcd.pyx; `svm_block`), the dual variables of a
shard's rows kept with the shard; decoder d = row d of [B | c] (width L+1), least squares
    min Σₙ (bᵈᵀzₙ + c_d − x_nd)²,
exactly from the normal equations (`decoder_normal`, `decoder_solve`) or by SGD (`ls_sgd`:
minibatches in a given order, step ηₜ = η₀/√(1 + decay·t), t the submodel's own batch counter).
"""
import numpy as np

from .._kernels import mac_zstep, svm_dcd


def encode(X, A, a):
    """h(X) as uint8 codes (n × L)."""
    return (X @ A.T + a > 0).astype(np.uint8)


def step_sizes(eta0, t, decay):
    return eta0 / np.sqrt(1.0 + decay * t.astype(np.float64))


def svm_relabel(Wm, bits, X, Z, Zfit, alpha):
    """Codes changed since the dual variables were fitted: for every submodel (bit l of
    `bits`) and row i with Z[i, l] ≠ Zfit[i, l], drop row i from w (w −= αᵢ yᵢ x̃ᵢ with the old
    label) and reset αᵢ = 0, so w = Σ α y x̃ holds for the new labels. Updates Wm, alpha and
    Zfit in place; returns the number of (row, bit) pairs relabelled."""
    D = X.shape[1]
    n = 0
    for j, l in enumerate(bits):
        rows = np.flatnonzero(Z[:, l] != Zfit[:, l])
        if len(rows) == 0:
            continue
        coef = alpha[rows, l] * (2.0 * Zfit[rows, l] - 1.0)
        Wm[j, :D] -= coef @ X[rows]
        Wm[j, D] -= coef.sum()
        alpha[rows, l] = 0.0
        Zfit[rows, l] = Z[rows, l]
        n += len(rows)
    return n


def svm_block(Wm, bits, X, Z, alpha, qdiag, rows, C, sweeps, tol, seed):
    """Dual CD sweeps of the encoder submodels Wm (k × D+1) for bits `bits` over this block's
    `rows`, each sweep in a fresh random order drawn from `seed` (kernels/svm_dcd.pyx).
    Returns (sweeps run, last max |PG|) per submodel."""
    k = Wm.shape[0]
    ns = np.zeros(k, dtype=np.int64)
    pg = np.zeros(k)
    order = np.array(rows, dtype=np.int64)
    svm_dcd.dcd_block(X, Z, np.ascontiguousarray(bits, dtype=np.int64), Wm, alpha, qdiag, order,
                      float(C), int(sweeps), float(tol), int(seed), ns, pg)
    return ns, pg


def decoder_normal(Z, X):
    """This block's normal equations of the decoder, flattened: [ZfᵀZf | ZfᵀX] with
    Zf = [Z, 1] ((L+1) × (L+1+D)); their sum over blocks is one Allreduce."""
    Zf = np.hstack([Z.astype(np.float64), np.ones((Z.shape[0], 1))])
    return np.hstack([Zf.T @ Zf, Zf.T @ X])


def decoder_solve(normal, L):
    """[B | c] (D × L+1) from the summed normal equations: the minimum-norm least-squares
    solution (pseudo-inverse: a bit constant over all points leaves G singular)."""
    G, R = normal[:, :L + 1], normal[:, L + 1:]
    return np.ascontiguousarray((np.linalg.pinv(G, rcond=1e-12, hermitian=True) @ R).T)


def ls_sgd(Wm, t, Zin, T, order, batch, eta0, decay):
    """One SGD pass of least-squares submodels Wm (k × L+1: weights, bias) mapping inputs Zin
    (n × L) to targets T (n × k), over the rows `order`. Updates Wm and t in place."""
    L = Zin.shape[1]
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        Zb = Zin[idx].astype(np.float64)
        R = Zb @ Wm[:, :L].T + Wm[:, L] - T[idx]                 # b × k
        lr = step_sizes(eta0, t, decay)[:, None]
        Wm[:, :L] -= lr * (R.T @ Zb) / len(idx)
        Wm[:, L] -= lr[:, 0] * R.sum(axis=0) / len(idx)
        t += 1


def objective_terms(X, Z, H, B, c):
    """(Σ‖xₙ − Bzₙ − c‖², Σ ham(zₙ, hₙ)) on these rows."""
    R = X - Z.astype(np.float64) @ B.T - c
    return float(np.einsum("ij,ij->", R, R)), int(np.count_nonzero(Z != H))


def zstep_prepare(X, B, c):
    """G = BᵀB and V = (X − c)B for the Z-step kernels."""
    G = np.ascontiguousarray(B.T @ B)
    V = np.ascontiguousarray((X - c) @ B)
    return G, V


def quad_cost(G, V, Z, H, mu):
    """q(z) + μ·ham(z, h) per point (the Z-step objective without ‖x − c‖²)."""
    Zf = Z.astype(np.float64)
    return (np.einsum("ij,jk,ik->i", Zf, G, Zf) - 2.0 * np.einsum("ij,ij->i", V, Zf)
            + mu * np.count_nonzero(Z != H, axis=1))


_MASKS = {}


def codes_to_int(Z):
    L = Z.shape[1]
    return (Z.astype(np.int64) << np.arange(L, dtype=np.int64)).sum(axis=1)


def int_to_codes(v, L):
    return ((v[:, None] >> np.arange(L, dtype=np.int64)) & 1).astype(np.uint8)


def zstep_enumerate(X, B, c, H, mu):
    """Exact Z-step (enumeration of {0,1}^L, pruned). Returns (Z, cost, codes visited)."""
    L = B.shape[1]
    if L not in _MASKS:
        _MASKS[L] = mac_zstep.popcount_masks(L)
    masks, starts = _MASKS[L]
    G, V = zstep_prepare(X, B, c)
    # lower bound of q over real z: −vᵀG⁺v (minus a safety margin for rounding)
    Gp = np.linalg.pinv(G)
    qmin = -np.einsum("ij,jk,ik->i", V, Gp, V)
    qmin -= 1e-9 * (1.0 + np.abs(qmin))
    n = X.shape[0]
    code = np.empty(n, dtype=np.int64)
    cost = np.empty(n)
    visited = np.empty(n, dtype=np.int64)
    mac_zstep.ba_enumerate(G, V, codes_to_int(H), masks, starts, np.ascontiguousarray(qmin),
                           float(mu), code, cost, visited)
    return int_to_codes(code, L), cost, visited


def zstep_alternate(X, B, c, H, mu, max_sweeps=10):
    """Z-step for large L: relaxed solution (G + μI)z = v + μh clipped and rounded, then the
    better of it and h(x) as the start of bit-by-bit alternating optimisation."""
    L = B.shape[1]
    G, V = zstep_prepare(X, B, c)
    Hf = H.astype(np.float64)
    Zr = (np.linalg.pinv(G + mu * np.eye(L), hermitian=True) @ (V + mu * Hf).T).T  # μ = 0 too
    Z0 = (np.clip(Zr, 0.0, 1.0) > 0.5).astype(np.uint8)
    use_h = quad_cost(G, V, H, H, mu) <= quad_cost(G, V, Z0, H, mu)
    Z = np.ascontiguousarray(np.where(use_h[:, None], H, Z0))
    n = X.shape[0]
    cost = np.empty(n)
    sweeps = np.empty(n, dtype=np.int64)
    GZ = np.empty((n, L))
    mac_zstep.ba_alternate(G, V, np.ascontiguousarray(H), Z, float(mu), int(max_sweeps), GZ,
                           cost, sweeps)
    return Z, cost, sweeps


def hamming_rank(qcodes, dbcodes):
    """Hamming distances (q × n) between code sets (uint8 0/1)."""
    q = qcodes.astype(np.int32)
    d = dbcodes.astype(np.int32)
    return (q.sum(1)[:, None] + d.sum(1)[None, :] - 2 * (q @ d.T)).astype(np.int64)


def local_topk(dist, k, offset):
    """The k smallest (distance, global index) per row of dist; ties by index. Returns
    (dists q × k', idx q × k') with k' = min(k, n)."""
    n = dist.shape[1]
    k = min(k, n)
    gidx = np.arange(n, dtype=np.int64) + offset
    out_d = np.empty((dist.shape[0], k), dtype=dist.dtype)
    out_i = np.empty((dist.shape[0], k), dtype=np.int64)
    for r in range(dist.shape[0]):
        o = np.lexsort((gidx, dist[r]))[:k]
        out_d[r], out_i[r] = dist[r][o], gidx[o]
    return out_d, out_i


def merge_topk(ds, idx, k):
    """Merge candidate lists (q × m) to the global k smallest, ties by index."""
    out = np.empty((ds.shape[0], k), dtype=np.int64)
    for r in range(ds.shape[0]):
        o = np.lexsort((idx[r], ds[r]))[:k]
        out[r] = idx[r][o]
    return out


def precision(true_nn, ret_nn):
    """Mean over queries of |retrieved ∩ true| / K."""
    K = true_nn.shape[1]
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(true_nn, ret_nn)]))
