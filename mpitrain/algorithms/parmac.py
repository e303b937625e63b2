"""ParMAC for binary autoencoders (`parmac-ba`): MAC's W-step on a ring of ranks.

Minimises, for the μ list μ₀ = 0 (with `mu_zero_first`), then mu0·mu_factorʲ,
    E_Q(h, f, Z; μ) = Σₙ ‖xₙ − Bzₙ − c‖² + μ‖zₙ − h(xₙ)‖²,   zₙ ∈ {0,1}^L,
    h(x) = step(Ax + a),  f(z) = Bz + c,
by the authors' protocol (Carreira-Perpiñán & Raziperchikolaei's `ba.m`):
  step 0: Z₀ from ITQ (`init = "itq"`: PCA, one Allreduce of the D×D covariance, then an L×L
      Allreduce per rotation iteration) or thresholded PCA; W-step on Z₀.
  step i ≥ 1, at μ = μ_{i−1}:
    Z-step (h, f fixed): per point min_z ‖x − Bz − c‖² + μ‖z − h(x)‖² over {0,1}^L, by exact
        pruned enumeration (L ≤ enum_max_bits) or relaxed-then-alternating bit optimisation.
        No communication. If Z = h(X) on every rank the run stops (the decoder is refitted).
    W-step (Z fixed), only the bits whose codes changed somewhere:
      hash function l = the linear SVM  min ½‖[aₗ, aₗ₀]‖² + C Σₙ max(0, 1 − yₙₗ(aₗᵀxₙ + aₗ₀))²
        (yₙₗ = 2zₙₗ − 1; LIBLINEAR's L2-loss SVC with bias), by dual coordinate descent: the
        L submodels circulate round the ring (mac_ring.Ring, one Sendrecv per hop, `epochs`
        ring passes, one Allgatherv at the end); on each shard a submodel runs up to
        `svm_sweeps` sweeps over that shard's rows, whose dual variables stay on the shard and
        are warm-started across W-steps (rows whose bit changed restart from α = 0).
      decoder: exact least squares (`decoder = "lsq"`: the normal equations [Z 1]ᵀ[Z 1 | X]
        summed by one Allreduce) or, with `decoder = "sgd"`, D more submodels on the ring.
    validation (`val_size` > 0): precision at K of the new hash function on `val_size`
        training points chosen by the seed (held out of the W-step fits) as queries against
        the training set (each query excluded from its own lists). If it dropped below the
        last accepted step's, h, f, Z and the dual variables are reverted to before this step
        and the run goes on with the next μ (`ba.m`'s rule): the model is always the last
        accepted iterate, never one selected on test data.
Stops when Z = h(X), or after mu_steps μ values. The test set is used only by `evaluate`
(`mpitrain eval`): precision at K of the final model, the first `queries` test rows as
queries against the training set (Euclidean K-NN vs Hamming ranking, ties by row index).
"""
import time

import numpy as np

from ..schema import Field
from ..errors import JobError
from ..models import binary_autoencoder as ba
from ..state import Array, Float, Int, Rows
from .base import Algorithm
from .mac_ring import Ring

BA_MODEL_SCHEMA = {
    "bits": Field(int, 16, "L: code length (number of hash functions)", min=1),
    "C": Field(float, 100.0, "each hash function's SVM penalty C (LIBLINEAR -c)", min=1e-12),
    "init": Field(str, "itq", "initial codes Z", choices=["pca", "itq"]),
    "itq_iters": Field(int, 50, "ITQ rotation iterations", min=1),
}

BA_SOLVER_SCHEMA = {
    "mu_zero_first": Field(bool, True, "the μ list starts with μ = 0"),
    "mu0": Field(float, 0.005, "first positive penalty parameter μ", min=0.0),
    "mu_factor": Field(float, 1.5, "geometric factor of the μ schedule", min=1.0),
    "mu_steps": Field(int, 40, "length of the μ list (iteration cap)", min=1,
                      affects_result=False),
    "epochs": Field(int, 2, "ring passes of every hash function over every shard per W-step",
                    min=1),
    "svm_sweeps": Field(int, 20, "dual CD sweeps of a hash function per shard visit", min=1),
    "svm_tol": Field(float, 0.01, "a visit ends once every |projected gradient| < svm_tol",
                     min=0.0),
    "decoder": Field(str, "lsq", "decoder W-step: exact least squares (one Allreduce) or SGD "
                     "submodels on the ring", choices=["lsq", "sgd"]),
    "batch": Field(int, 32, "decoder SGD minibatch size", min=1),
    "eta_dec": Field(float, 0.0, "decoder SGD step η₀ (0 = 1/(L+1))", min=0.0),
    "decay": Field(float, 1e-3, "decoder SGD step schedule ηₜ = η₀/√(1 + decay·t)", min=0.0),
    "dec_epochs": Field(int, 8, "decoder SGD passes over every shard per W-step", min=1),
    "zstep": Field(str, "auto", "Z-step solver (auto: enumerate if L ≤ enum_max_bits)",
                   choices=["auto", "enumerate", "alternate"]),
    "enum_max_bits": Field(int, 10, "largest L solved by enumeration in auto mode", min=1),
    "max_sweeps": Field(int, 10, "alternating Z-step: sweeps over the bits", min=1),
    "val_size": Field(int, 300, "training points held out for validation (0 = no validation)",
                      min=0),
    "queries": Field(int, 1000, "test rows used as retrieval queries by `eval`", min=0),
    "K": Field(int, 50, "precision at K", min=1),
}


def row_counts(world, rows):
    """Every rank's row count, from the shards themselves (Allgatherv of one int each)."""
    return world.allgatherv(np.array([rows], dtype=np.int64), np.ones(world.size, np.int64))


def gather_rows(world, X, mask):
    """The rows of X selected by `mask` on every rank, in global row order (Allgatherv)."""
    local = np.ascontiguousarray(X[mask])
    return world.allgatherv(local, row_counts(world, local.shape[0]))


def global_topk(world, dist, k, offset, counts):
    """Global indices of the k smallest entries of every row of the row-split distance matrix
    (columns: this rank's rows, global offset `offset`; counts: every rank's row count)."""
    kk = np.minimum(counts, k).astype(np.int64)
    d, i = ba.local_topk(dist, k, offset)
    D = world.allgatherv(np.ascontiguousarray(d.T.astype(np.float64)), kk).T
    I = world.allgatherv(np.ascontiguousarray(i.T), kk).T
    return ba.merge_topk(D, I, k)


class Retrieval:
    """Precision at K of Hamming ranking vs Euclidean K-NN: queries (replicated) against the
    training set (row-split). `self_idx`: each query's global training row, excluded from both
    its lists (validation queries drawn from the training set), or None."""

    def __init__(self, world, train, queries, K, self_idx=None):
        self.world = world
        self.train = train
        self.queries = queries
        self.counts = row_counts(world, train.rows)
        self.K = min(K, train.n - (self_idx is not None))
        self.mine = None
        if self_idx is not None:
            own = (self_idx >= train.start) & (self_idx < train.stop)
            self.mine = (np.flatnonzero(own), self_idx[own] - train.start)
        X = train.X
        d2 = (np.einsum("ij,ij->i", queries, queries)[:, None]
              + np.einsum("ij,ij->i", X, X)[None, :] - 2.0 * queries @ X.T)
        self.true = self._topk(d2, np.inf)

    def _topk(self, dist, never):
        if self.mine is not None:
            dist[self.mine] = never
        return global_topk(self.world, dist, self.K, self.train.start, self.counts)

    def precision(self, qcodes, dbcodes):
        """Precision at K of the codes of the queries and of this rank's training rows."""
        ham = ba.hamming_rank(qcodes, dbcodes)
        return ba.precision(self.true, self._topk(ham, qcodes.shape[1] + 1))


def linear_hash(mean, W):
    """(A, a) of h(x) = step(Wᵀ(x − mean)): thresholded PCA / ITQ as a linear hash function."""
    A = np.ascontiguousarray(W.T)
    return A, -A @ mean


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
    summary = "ParMAC binary autoencoder: hash functions (linear SVMs) circulate round a ring"
    MODEL_SCHEMA = BA_MODEL_SCHEMA
    SOLVER_SCHEMA = BA_SOLVER_SCHEMA
    DATA = {"binary": False, "dtype": np.float64, "dense": True}
    RESHARDABLE = True
    # declared checkpoint state (state.py); the dual variables and the labels they were fitted
    # to are rows like Z, so a resume at another P reshards them
    STATE = {"params/enc": Array(), "params/dec": Array(), "counters/enc": Array(),
             "Z": Rows(), "Zfit": Rows(), "alpha": Rows(), "it": Int(), "ring/hops": Int(),
             "val_prec": Float(), "rejected": Int()}
    CAPS = {"mu schedule ended": ("mu_done", "mu_steps")}
    BUDGET_UNIT = "μ value"

    def state_fields(self):
        out = super().state_fields()
        if "dec" in self.counters:
            out["counters/dec"] = Array()
        return out

    @property
    def mu_done(self):
        """μ values used so far (step 0 fits the initial codes)."""
        return max(0, self.it - 1)

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
        self.X = tr.X
        self.L, self.D, self.N = m["bits"], tr.d, tr.n
        L, D = self.L, self.D
        # validation points: global training rows drawn from the seed (never fitted)
        V = min(s["val_size"], self.N - 1)
        self.val_idx = np.sort(ctx.rng("parmac-val").choice(self.N, V, replace=False)) \
            if V > 0 else np.zeros(0, dtype=np.int64)
        local = np.arange(tr.start, tr.stop)
        is_val = np.isin(local, self.val_idx)
        self.fit_rows = np.flatnonzero(~is_val).astype(np.int64)
        self.n_fit = int(world.allreduce_scalars(float(len(self.fit_rows))))
        with ctx.phase("init"):
            self.mean, W = pca_basis(world, self.X, self.N, L)
            Vloc = (self.X - self.mean) @ W
            R = itq_rotation(world, Vloc, m["itq_iters"], ctx.rng("itq"))
            self.hashes = {"tpca": linear_hash(self.mean, W), "itq": linear_hash(self.mean, W @ R)}
            self.Z = ba.encode(self.X, *self.hashes[m["init"]])
        # the SVMs see centred inputs (better conditioned dual CD; h is the same function
        # class): params["enc"] holds [A | a + A·mean], _AB() returns (A, a) for raw x
        self.Xc = self.X - self.mean
        self.qdiag = np.einsum("ij,ij->i", self.Xc, self.Xc) + 1.0
        self.eta_dec = s["eta_dec"] or 1.0 / (L + 1.0)
        self.params = {"enc": np.zeros((L, D + 1)), "dec": np.zeros((D, L + 1))}
        groups = {"enc": (L, D + 1)}
        if s["decoder"] == "sgd":
            groups["dec"] = (D, L + 1)
        self.counters = {g: np.zeros(M, dtype=np.int64) for g, (M, _) in groups.items()}
        self.ring = Ring(world, groups)
        self.alpha = np.zeros((tr.rows, L))           # the shard's SVM dual variables
        self.Zfit = self.Z.copy()                      # the labels alpha was fitted to
        self.it = 0
        self.finished = False
        self.reason = ""
        self.val_prec = -1.0                           # precision of the accepted iterate
        self.rejected = 0
        self.last = {}
        self.init_prec = {}
        self.val = None
        if V > 0:
            with ctx.phase("eval"):
                self.val = Retrieval(world, tr, gather_rows(world, self.X, is_val), s["K"],
                                     self.val_idx)
                for name, (A, a) in self.hashes.items():
                    self.init_prec[f"val_precision_{name}"] = self._precision(A, a)
        self.enumerate = (s["zstep"] == "enumerate"
                          or (s["zstep"] == "auto" and L <= s["enum_max_bits"]))

    def mu_at(self, j):
        """The j-th value of the μ list."""
        s = self.ctx.solver
        if s["mu_zero_first"]:
            return 0.0 if j == 0 else s["mu0"] * s["mu_factor"] ** (j - 1)
        return s["mu0"] * s["mu_factor"] ** j

    def _AB(self):
        E, Dm = self.params["enc"], self.params["dec"]
        A = E[:, :self.D]
        return A, E[:, self.D] - A @ self.mean, Dm[:, :self.L], Dm[:, self.L]

    def _precision(self, A, a):
        return self.val.precision(ba.encode(self.val.queries, A, a), ba.encode(self.X, A, a))

    # -- W-step ---------------------------------------------------------------------------
    def _train(self, name, ids, Wm, t, epoch, hop):
        s = self.ctx.solver
        rng = self.ctx.rng("parmac-order", self.it, epoch, hop, self.ctx.train.start)
        t0 = time.perf_counter()
        if name == "enc":
            todo = self._refit[ids]
            if todo.any():
                sub = np.ascontiguousarray(Wm[todo])
                bits = ids[todo]
                self._relabelled += ba.svm_relabel(sub, bits, self.Xc, self.Z, self.Zfit,
                                                   self.alpha)
                ns, _ = ba.svm_block(sub, bits, self.Xc, self.Z, self.alpha, self.qdiag,
                                     self.fit_rows, self.ctx.model["C"], s["svm_sweeps"],
                                     s["svm_tol"], rng.integers(2 ** 63))
                self._sweeps += int(ns.sum())
                Wm[todo] = sub
        else:
            for _ in range(s["dec_epochs"] if epoch == 0 else 0):
                ba.ls_sgd(Wm, t, self.Z, self.X[:, ids], rng.permutation(self.fit_rows),
                          s["batch"], self.eta_dec, s["decay"])
        self._t_compute += time.perf_counter() - t0

    def _w_step(self, refit):
        """Fit the hash functions of the bits `refit` (bool, L) on the ring and the decoder;
        returns the W-step's figures."""
        ctx, world, s = self.ctx, self.world, self.ctx.solver
        self._refit = refit
        self._t_compute, self._sweeps, self._relabelled = 0.0, 0, 0
        c0, t0 = world.seconds, time.perf_counter()
        if refit.any() or s["decoder"] == "sgd":
            self.ring.w_step(self.params, self.counters, s["epochs"], self._train)
        if s["decoder"] == "lsq":
            t1 = time.perf_counter()
            normal = ba.decoder_normal(self.Z[self.fit_rows], self.X[self.fit_rows])
            self._t_compute += time.perf_counter() - t1
            world.allreduce(normal)
            self.params["dec"] = ba.decoder_solve(normal, self.L)
        t_w = time.perf_counter() - t0
        t_comm = world.seconds - c0
        ctx.phase_seconds["wstep_compute"] = ctx.phase_seconds.get("wstep_compute", 0.0) \
            + self._t_compute
        ctx.phase_seconds["wstep_comm"] = ctx.phase_seconds.get("wstep_comm", 0.0) + t_comm
        A, a, _, _ = self._AB()
        with ctx.phase("objective"):
            H = ba.encode(self.X[self.fit_rows], A, a)
            wrong, sweeps, relab = world.allreduce_scalars(
                float(np.count_nonzero(H != self.Z[self.fit_rows])), float(self._sweeps),
                float(self._relabelled))
        return {"wrong_bits": wrong / self.n_fit, "bits_refit": int(refit.sum()),
                "svm_sweeps": int(sweeps), "relabelled": int(relab), "t_wstep": t_w}

    # -- one MAC iteration ----------------------------------------------------------------
    def step(self):
        ctx, world, s = self.ctx, self.world, self.ctx.solver
        if self.it == 0:                                  # fit h and f to the initial codes
            info = self._w_step(np.ones(self.L, dtype=bool))
            self._validate(info, None)
            return self._end(info)
        mu = self.mu_at(self.it - 1)
        snap = {"enc": self.params["enc"].copy(), "dec": self.params["dec"].copy(),
                "Z": self.Z, "Zfit": self.Zfit.copy(), "alpha": self.alpha.copy(),
                "counters": {k: v.copy() for k, v in self.counters.items()}}
        A, a, B, c = self._AB()
        with ctx.phase("zstep"):                          # per point, no communication
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
            buf = np.concatenate([[rec, ham, nest, changed, work],
                                  np.count_nonzero(self.Z != self.Zfit, axis=0)]).astype(float)
            world.allreduce(buf)
            rec, ham, nest, changed, work = buf[:5]
            refit = buf[5:] > 0
        info = {"mu": mu, "objective": rec + mu * ham, "recon_error": rec / self.N,
                "nested_error": nest / self.N, "violation": ham / self.N,
                "bits_differ": int(ham), "codes_changed": int(changed),
                "zstep_work": work / self.N}
        if ham == 0:                                      # Z = h(X): refit f, done
            info.update(self._w_step(np.zeros(self.L, dtype=bool)))
            self.finish("Z = h(X)")
            return self._end(info)
        info.update(self._w_step(refit))
        self._validate(info, snap)
        return self._end(info)

    def _validate(self, info, snap):
        """ba.m's rule: keep the step if the validation precision did not drop, else revert
        h, f, Z and the dual variables to `snap` (the state before this step)."""
        if self.val is None:
            return
        with self.ctx.phase("eval"):
            A, a, _, _ = self._AB()
            prec = self._precision(A, a)
        info["val_precision"] = prec
        if snap is not None and prec < self.val_prec:
            self.params = {"enc": snap["enc"], "dec": snap["dec"]}
            self.Z, self.Zfit, self.alpha = snap["Z"], snap["Zfit"], snap["alpha"]
            self.counters = snap["counters"]
            self.rejected += 1
            info["accepted"] = 0
        else:
            self.val_prec = prec
            info["accepted"] = 1
        info["rejected"] = self.rejected

    def _end(self, info):
        self.it += 1
        info["ring_hops"] = self.ring.hops
        if not self.finished and self.mu_done >= self.ctx.solver["mu_steps"]:
            self.finish("mu schedule ended")
        self.last = info
        return info

    def final_model(self):
        A, a, B, c = self._AB()
        return {"model/A": A, "model/a": a, "model/B": B, "model/c": c}

    def summary_info(self):
        out = {"iterations": self.it, "stop_reason": self.reason, "bits": self.L,
               "ring_hops": self.ring.hops, "rejected": self.rejected}
        out.update(self.init_prec)
        out.update({k: v for k, v in self.last.items() if isinstance(v, (int, float))})
        if self.val is not None:
            out["val_precision"] = self.val_prec
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
        Q = ctx.solver["queries"]
        if ctx.test is not None and Q > 0:
            test = ctx.test
            first = np.arange(test.start, test.stop) < Q
            ev = Retrieval(world, ctx.train, gather_rows(world, test.X, first), ctx.solver["K"])
            out["precision"] = ev.precision(ba.encode(ev.queries, A, a),
                                            ba.encode(ctx.train.X, A, a))
            out["K"] = ev.K
            out["queries"] = int(ev.queries.shape[0])
        return out

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64): the PCA/ITQ initialisation (the d × d covariance,
        its eigenvectors and a few centred copies of this rank's rows), this rank's codes Z and Zfit, SVM duals α and
        projections (rows × L each), the encoder and decoder with the ring's copies, the
        gathered validation rows and their distances to this rank's rows."""
        L, d, rows = int(job["model"]["bits"]), int(train.d), int(train.rows)
        val = int(job["solver"]["val_size"])
        return 8 * (3 * d * d + 6 * rows * d + 5 * rows * L + 6 * L * (d + 1)
                    + val * (d + 2 * rows))


ALGORITHMS = [ParMACBA]
