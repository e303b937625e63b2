"""ParMAC for binary autoencoders (`parmac-ba`): MAC's W-step on a ring of ranks.

Minimises, for an increasing μ schedule μᵢ = mu0·mu_factorⁱ (i = 0 .. mu_steps−1),
    E_Q(h, f, Z; μ) = Σₙ ‖xₙ − Bzₙ − c‖² + μ‖zₙ − h(xₙ)‖²,   zₙ ∈ {0,1}^L,
    h(x) = step(Ax + a),  f(z) = Bz + c,
alternating (one iteration per μ)
  W-step (Z fixed): L hash functions (row l of [A|a]: hinge loss + (lam/2)‖aₗ‖² against bit l
      of Z) and D decoder outputs (row d of [B|c]: least squares against column d of X), all
      by SGD. The M = L + D submodels circulate round the ring (mac_ring.Ring): `epochs`
      passes over every shard, one Sendrecv per hop, one Allgatherv at the end.
  Z-step (h, f fixed): per point min_z ‖x − Bz − c‖² + μ‖z − h(x)‖² over {0,1}^L, by exact
      pruned enumeration (L ≤ enum_max_bits) or relaxed-then-alternating bit optimisation.
      No communication.
Z starts from thresholded PCA (`init = "pca"`: one Allreduce of the D×D covariance) or ITQ
(`init = "itq"`: PCA + an L×L Allreduce per rotation iteration). Stops when Z = h(X) on every
rank, or after mu_steps. With test data, retrieval precision at K (K Euclidean nearest
neighbours in the training set vs Hamming ranking of the codes, ties by row index) is
measured on the first `queries` test rows every iteration; with `validate`, the final model
is the iterate with the best precision (a μ step that lowers it is not accepted).
"""
import time

import numpy as np

from ..comm import block_range
from ..checkpoint import Sharded
from ..config import Field
from ..errors import JobError
from ..models import binary_autoencoder as ba
from .base import Algorithm
from .mac_ring import Ring

BA_MODEL_SCHEMA = {
    "bits": Field(int, 8, "L: code length (number of hash functions)", min=1),
    "lam": Field(float, 1e-4, "L2 weight of each hash function's linear SVM", min=0.0),
    "init": Field(str, "pca", "initial codes Z", choices=["pca", "itq"]),
    "itq_iters": Field(int, 50, "ITQ rotation iterations", min=1),
}

BA_SOLVER_SCHEMA = {
    "mu0": Field(float, 0.005, "first penalty parameter μ", min=0.0),
    "mu_factor": Field(float, 1.5, "geometric factor of the μ schedule", min=1.0),
    "mu_steps": Field(int, 30, "length of the μ schedule (iteration cap)", min=1,
                          affects_result=False),
    "epochs": Field(int, 2, "SGD passes of every submodel over every shard per W-step", min=1),
    "batch": Field(int, 32, "SGD minibatch size", min=1),
    "eta_enc": Field(float, 0.0, "hash-function SGD step η₀ (0 = 1/mean‖x‖²)", min=0.0),
    "eta_dec": Field(float, 0.0, "decoder SGD step η₀ (0 = 1/(L+1))", min=0.0),
    "decay": Field(float, 1e-3, "step schedule ηₜ = η₀/√(1 + decay·t)", min=0.0),
    "zstep": Field(str, "auto", "Z-step solver (auto: enumerate if L ≤ enum_max_bits)",
                   choices=["auto", "enumerate", "alternate"]),
    "enum_max_bits": Field(int, 10, "largest L solved by enumeration in auto mode", min=1),
    "max_sweeps": Field(int, 10, "alternating Z-step: sweeps over the bits", min=1),
    "queries": Field(int, 200, "test rows used as retrieval queries (0 = no precision)",
                     min=0),
    "K": Field(int, 50, "precision at K", min=1),
    "validate": Field(bool, True, "keep the iterate with the best precision as the model"),
}


def gather_queries(world, test, Q):
    """The first Q test rows, on every rank (Allgatherv)."""
    Q = min(Q, test.n)
    counts = np.array([max(0, min(b, Q) - min(a, Q))
                       for a, b in (block_range(test.n, world.size, p)
                                    for p in range(world.size))], dtype=np.int64)
    lo, hi = min(test.start, Q), min(test.stop, Q)
    local = np.ascontiguousarray(test.X[lo - test.start:hi - test.start])
    return world.allgatherv(local, counts)


def global_topk(world, dist, k, offset, n_global):
    """Indices of the k smallest entries of every row of the row-split distance matrix."""
    P = world.size
    kk = [min(k, b - a) for a, b in (block_range(n_global, P, p) for p in range(P))]
    d, i = ba.local_topk(dist, k, offset)
    D = world.allgatherv(np.ascontiguousarray(d.T.astype(np.float64)),
                         np.array(kk, dtype=np.int64)).T
    I = world.allgatherv(np.ascontiguousarray(i.T), np.array(kk, dtype=np.int64)).T
    return ba.merge_topk(D, I, k)


class RetrievalEval:
    """Precision at K of Hamming ranking vs Euclidean K-NN, queries vs the training set."""

    def __init__(self, world, train, test, Q, K):
        self.world = world
        self.train = train
        self.queries = gather_queries(world, test, Q)
        self.K = min(K, train.n)
        X = train.X
        d2 = (np.einsum("ij,ij->i", self.queries, self.queries)[:, None]
              + np.einsum("ij,ij->i", X, X)[None, :] - 2.0 * self.queries @ X.T)
        self.true = global_topk(world, d2, self.K, train.start, train.n)

    def precision(self, hash_fn):
        ham = ba.hamming_rank(hash_fn(self.queries), hash_fn(self.train.X))
        ret = global_topk(self.world, ham, self.K, self.train.start, self.train.n)
        return ba.precision(self.true, ret)


def pca_basis(world, X, n, L):
    """Mean and top-L principal directions (D × L) of the global data: one Allreduce of
    [Σx, Σxxᵀ]; the eigen-solve is identical on every rank. Signs fixed (largest |entry| > 0)."""
    D = X.shape[1]
    buf = np.empty(D + D * D)
    buf[:D] = X.sum(axis=0)
    buf[D:] = (X.T @ X).reshape(-1)
    world.allreduce(buf)
    mean = buf[:D] / n
    C = buf[D:].reshape(D, D) / n - np.outer(mean, mean)
    w, V = np.linalg.eigh(C)
    W = V[:, ::-1][:, :L].copy()
    sgn = np.sign(W[np.argmax(np.abs(W), axis=0), np.arange(L)])
    W *= np.where(sgn == 0, 1.0, sgn)
    return mean, W


def itq_rotation(world, V, iters, rng):
    """ITQ (Gong & Lazebnik): rotation R minimising ‖sign(VR) − VR‖ over the global rows; one
    L×L Allreduce per iteration."""
    L = V.shape[1]
    R, _ = np.linalg.qr(rng.standard_normal((L, L)))
    for _ in range(iters):
        Bm = np.where(V @ R >= 0, 1.0, -1.0)
        C = np.ascontiguousarray(Bm.T @ V)
        world.allreduce(C)
        U, _, Wt = np.linalg.svd(C)
        R = (U @ Wt).T
    return R


class ParMACBA(Algorithm):
    name = "parmac-ba"
    FAMILY = "binary-autoencoder"  # what final.h5 describes (model_file.py)
    summary = "ParMAC binary autoencoder: hash functions + decoder circulate round a ring"
    MODEL_SCHEMA = BA_MODEL_SCHEMA
    SOLVER_SCHEMA = BA_SOLVER_SCHEMA
    DATA = {"binary": False, "dtype": np.float64}
    RESHARDABLE = True

    @classmethod
    def validate_job(cls, job, source):
        L = job["model"]["bits"]
        if L > 62:
            raise JobError(f"{source}: [model] bits = {L}: at most 62 bits are supported")
        if job["solver"]["zstep"] == "enumerate" and L > 20:
            raise JobError(f"{source}: [solver] zstep = 'enumerate' with bits = {L} would "
                           "enumerate 2^L codes per point; use 'alternate' (or 'auto')")

    # -- setup ---------------------------------------------------------------------------
    def setup(self):
        ctx, world = self.ctx, self.world
        m, s = ctx.model, ctx.solver
        tr = ctx.train
        if tr.sparse:
            tr.X = np.ascontiguousarray(tr.X.toarray())
        self.X = tr.X
        self.L, self.D, self.N = m["bits"], tr.d, tr.n
        L, D = self.L, self.D
        with ctx.phase("init"):
            self.mean, W = pca_basis(world, self.X, self.N, L)
            Vloc = (self.X - self.mean) @ W
            R = itq_rotation(world, Vloc, m["itq_iters"], ctx.rng("itq"))
            self.pca_W, self.itq_W = W, W @ R
            self.Z = np.ascontiguousarray((Vloc @ (R if m["init"] == "itq" else np.eye(L))) > 0,
                                          dtype=np.uint8)
        sq = world.allreduce_scalars(float(np.einsum("ij,ij->", self.X, self.X)))
        self.eta_enc = s["eta_enc"] or 1.0 / (sq / self.N + 1.0)
        self.eta_dec = s["eta_dec"] or 1.0 / (L + 1.0)
        self.params = {"enc": np.zeros((L, D + 1)), "dec": np.zeros((D, L + 1))}
        self.counters = {"enc": np.zeros(L, dtype=np.int64), "dec": np.zeros(D, dtype=np.int64)}
        self.ring = Ring(world, {"enc": (L, D + 1), "dec": (D, L + 1)})
        self.it = 0
        self.finished = False
        self.reason = ""
        self.best_prec = -1.0
        self.best = None
        self.last = {}
        self.eval = None
        self.init_prec = {}
        if ctx.test is not None and s["queries"] > 0:
            with ctx.phase("eval"):
                self.eval = RetrievalEval(world, tr, ctx.test, s["queries"], s["K"])
                mu_ = self.mean
                self.init_prec = {
                    "precision_tpca": self.eval.precision(
                        lambda Q: ((Q - mu_) @ self.pca_W > 0).astype(np.uint8)),
                    "precision_itq": self.eval.precision(
                        lambda Q: ((Q - mu_) @ self.itq_W > 0).astype(np.uint8))}
        self.enumerate = (s["zstep"] == "enumerate"
                          or (s["zstep"] == "auto" and L <= s["enum_max_bits"]))

    @property
    def mu(self):
        s = self.ctx.solver
        return s["mu0"] * s["mu_factor"] ** self.it

    def _AB(self):
        E, Dm = self.params["enc"], self.params["dec"]
        return E[:, :self.D], E[:, self.D], Dm[:, :self.L], Dm[:, self.L]

    # -- one MAC iteration ----------------------------------------------------------------
    def _train(self, name, ids, Wm, t, epoch, hop):
        s = self.ctx.solver
        order = self.ctx.rng("parmac-sgd", self.it, epoch, hop,
                             self.world.rank).permutation(self.X.shape[0])
        t0 = time.perf_counter()
        if name == "enc":
            ba.hinge_sgd(Wm, t, self.X, self.Z[:, ids], order, s["batch"], self.eta_enc,
                         self.ctx.model["lam"], s["decay"])
        else:
            ba.ls_sgd(Wm, t, self.Z, self.X[:, ids], order, s["batch"], self.eta_dec,
                      s["decay"])
        self._t_compute += time.perf_counter() - t0

    def step(self):
        ctx, world, s = self.ctx, self.world, self.ctx.solver
        mu = self.mu
        # W-step: submodels round the ring (Sendrecv per hop, Allgatherv at the end)
        self._t_compute = 0.0
        c0, t0 = world.seconds, time.perf_counter()
        self.ring.w_step(self.params, self.counters, s["epochs"], self._train)
        t_w = time.perf_counter() - t0
        t_comm = world.seconds - c0
        ctx.phase_seconds["wstep_compute"] = ctx.phase_seconds.get("wstep_compute", 0.0) \
            + self._t_compute
        ctx.phase_seconds["ring_comm"] = ctx.phase_seconds.get("ring_comm", 0.0) + t_comm
        A, a, B, c = self._AB()
        # Z-step: per point, no communication
        with ctx.phase("zstep"):
            H = ba.encode(self.X, A, a)
            if self.enumerate:
                Znew, _, visited = ba.zstep_enumerate(self.X, B, c, H, mu)
                work = float(visited.sum())
            else:
                Znew, _, sweeps = ba.zstep_alternate(self.X, B, c, H, mu, s["max_sweeps"])
                work = float(sweeps.sum())
            changed = int(np.count_nonzero((Znew != self.Z).any(axis=1)))
            self.Z = Znew
        with ctx.phase("objective"):
            rec, ham = ba.objective_terms(self.X, self.Z, H, B, c)
            nest, _ = ba.objective_terms(self.X, H, H, B, c)
            rec, ham, nest, changed, work = world.allreduce_scalars(
                rec, float(ham), nest, float(changed), work)
        self.it += 1
        info = {"mu": mu, "objective": rec + mu * ham, "recon_error": rec / self.N,
                "nested_error": nest / self.N, "violation": ham / self.N,
                "bits_differ": int(ham), "codes_changed": int(changed),
                "zstep_work": work / self.N, "t_wstep": t_w, "ring_hops": self.ring.hops}
        if self.eval is not None:
            with ctx.phase("eval"):
                prec = self.eval.precision(lambda Q: ba.encode(Q, A, a))
            info["precision"] = prec
            if prec > self.best_prec:
                self.best_prec = prec
                self.best = {k: v.copy() for k, v in self.params.items()}
                self.best_it = self.it
        if ham == 0:
            self.finished, self.reason = True, "Z = h(X)"
        elif self.it >= s["mu_steps"]:
            self.finished, self.reason = True, "mu schedule ended"
        self.last = info
        return info

    # -- checkpoint -----------------------------------------------------------------------
    def state(self):
        tr = self.ctx.train
        st = {"enc": self.params["enc"], "dec": self.params["dec"],
              "t_enc": self.counters["enc"], "t_dec": self.counters["dec"],
              "Z": Sharded(self.Z, tr.start, tr.n), "it": np.int64(self.it),
              "finished": np.int64(self.finished), "reason": self.reason or "-",
              "hops": np.int64(self.ring.hops), "best_prec": np.float64(self.best_prec)}
        if self.best is not None:
            st.update({"best_enc": self.best["enc"], "best_dec": self.best["dec"],
                       "best_it": np.int64(self.best_it)})
        return st

    def load_state(self, r):
        tr = self.ctx.train
        self.params = {"enc": r.get("enc"), "dec": r.get("dec")}
        self.counters = {"enc": r.get("t_enc"), "dec": r.get("t_dec")}
        self.Z = np.ascontiguousarray(r.rows("Z", tr.start, tr.stop), dtype=np.uint8)
        self.it = int(r.get("it"))
        self.restore_finish(r, "mu schedule ended", self.it, self.ctx.solver["mu_steps"])
        self.ring.hops = int(r.get("hops"))
        self.best_prec = float(r.get("best_prec"))
        if "best_enc" in r:
            self.best = {"enc": r.get("best_enc"), "dec": r.get("best_dec")}
            self.best_it = int(r.get("best_it"))

    def final_model(self):
        p = self.best if (self.ctx.solver["validate"] and self.best is not None) \
            else self.params
        E, Dm = p["enc"], p["dec"]
        return {"model/A": E[:, :self.D], "model/a": E[:, self.D],
                "model/B": Dm[:, :self.L], "model/c": Dm[:, self.L]}

    def summary_info(self):
        out = {"iterations": self.it, "stop_reason": self.reason, "bits": self.L,
               "ring_hops": self.ring.hops}
        out.update(self.init_prec)
        out.update({k: v for k, v in self.last.items() if isinstance(v, (int, float))})
        if self.best is not None:
            out["best_precision"] = self.best_prec
            out["best_iteration"] = self.best_it
        return out

    @classmethod
    def evaluate(cls, ctx, model):
        A, a, B, c = model["model/A"], model["model/a"], model["model/B"], model["model/c"]
        world = ctx.world
        shard = ctx.test if ctx.test is not None else ctx.train
        H = ba.encode(shard.X, A, a)
        nest, _ = ba.objective_terms(shard.X, H, H, B, c)
        nest = world.allreduce_scalars(nest)
        out = {"data": "test" if ctx.test is not None else "train",
               "nested_error": nest / shard.n}
        if ctx.test is not None and ctx.solver["queries"] > 0:
            ev = RetrievalEval(world, ctx.train, ctx.test, ctx.solver["queries"],
                               ctx.solver["K"])
            out["precision"] = ev.precision(lambda Q: ba.encode(Q, A, a))
            out["K"] = ev.K
        return out


ALGORITHMS = [ParMACBA]
