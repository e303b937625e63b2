"""DASVRDA (Murata & Suzuki, NeurIPS 2017) and its baselines prox-svrg and katyusha.

All three minimise the elastic-net regularised ERM objective (mean convention, no intercept)

    P(x) = F(x) + R(x),  F(x) = (1/n) Σᵢ ℓ(yᵢ, xᵀaᵢ),  R(x) = (l2/2)‖x‖² + l1‖x‖₁

with ℓ logistic, squared (½(m − y)²) or squared hinge. n is the GLOBAL row count.

DASVRDA (outer acceleration, θ̃ indexing "(s+2)/2": θ̃ₛ = (1 − 1/γ)(s + 2)/2 for s ≥ 0, so
θ̃₀ = 1 − 1/γ and ỹ₁ = x̃₀; γ = (3 + √(9 + 8b/(m+1)))/2):

    ỹₛ = x̃ₛ₋₁ + ((θ̃ₛ₋₁ − 1)/θ̃ₛ)(x̃ₛ₋₁ − x̃ₛ₋₂) + (θ̃ₛ₋₁/θ̃ₛ)(z̃ₛ₋₁ − x̃ₛ₋₁)
    one stage from x₀ = z₀ = ỹₛ, anchor x̃ₛ₋₁, μ̃ = ∇F(x̃ₛ₋₁), θₖ = (k+1)/2, for k = 1..m:
        yₖ = (1 − 1/θₖ)xₖ₋₁ + zₖ₋₁/θₖ
        gₖ = (1/b) Σ_{i∈Iₖ} [∇fᵢ(yₖ) − ∇fᵢ(x̃)] + μ̃          (Iₖ: b uniform i.i.d. draws)
        ḡₖ = (1 − 1/θₖ)ḡₖ₋₁ + gₖ/θₖ
        zₖ = prox_{ηθₖθₖ₋₁R}(z₀ − ηθₖθₖ₋₁ḡₖ)                   (anchored at z₀)
        xₖ = (1 − 1/θₖ)xₖ₋₁ + zₖ/θₖ
    (x̃ₛ, z̃ₛ) = (xₘ, zₘ)
Restarts: "adaptive" resets the outer momentum (x̃ₛ₋₂ = z̃ₛ₋₁ = x̃ₛ₋₁, s = 1) when
(ỹₛ₋₁ − x̃ₛ₋₁)ᵀ(ỹₛ − x̃ₛ₋₁) > 0; "fixed" resets every `restart_every` stages.
Defaults: b = ⌊√n⌋, m = ⌊n/b⌋, η = 1/((1 + γ(m+1)/b)·L) with L = max Lᵢ (uniform sampling).

Distribution: data-parallel, every iterate replicated. The mini-batch of every inner step is
drawn from one RNG stream that all ranks share; a rank evaluates the sampled rows it owns and
ONE Allreduce(d) per inner step sums the correction Σ[∇fᵢ(y) − ∇fᵢ(x̃)]; one Allreduce(d+1)
per stage gives ∇F(x̃) and F(x̃). The margins at x̃ are cached per stage, so ∇fᵢ(x̃) costs
O(1). Iterates therefore depend on P only through the summation order of the Allreduce.

Sparse data ("lazy" updates, the default for CSR): the dense O(d) parts of an inner step are
done just in time (kernels/vr_sparse.pyx explains the closed form): a step costs the non-zeros
of the sampled rows, plus, at P > 1, the O(d) Allreduce buffer and an O(d) scan for its
support. The stored lazy state changes only on that support, which is the same on every
rank, so replicas stay bit-identical.

One driver step = `inner_per_step` inner iterations (0 = a whole stage); a checkpoint holds
every iterate, the θ/stage/inner counters, the lazy bookkeeping and the RNG state.
"""
import abc
import math

import numpy as np

from .._kernels import vr_sparse as V
from ..config import Field
from ..errors import JobError
from ..models.linear import LinearShard
from .base import Algorithm, rng_state, set_rng_state
from .lbfgs import evaluate_linear

LOSS_SMOOTHNESS = {"logistic": 0.25, "squared": 1.0, "squared_hinge": 2.0}

VR_MODEL_SCHEMA = {
    "loss": Field(str, "logistic", "loss of the margin xᵀa (squared: ½(m − y)²)",
                  choices=["logistic", "squared", "squared_hinge"]),
    "l2": Field(float, 1e-4, "L2 weight: (l2/2)‖x‖²", min=0.0),
    "l1": Field(float, 0.0, "L1 weight: l1‖x‖₁", min=0.0),
}


def _common_solver(eta_help):
    return {
        "batch": Field(int, 0, "mini-batch size b (0 = ⌊√n⌋)", min=0),
        "inner": Field(int, 0, "inner iterations per stage m (0 = ⌊n/b⌋)", min=0),
        "eta": Field(float, 0.0, eta_help, min=0.0),
        "eta_scale": Field(float, 1.0, "multiplies the step (tuning)", min=0.0),
        "inner_per_step": Field(int, 0, "inner iterations per driver step, i.e. between "
                                "checkpoint opportunities (0 = one whole stage)", min=0),
        "max_stages": Field(int, 50, "stage (epoch) cap", min=1, affects_result=False),
        "max_passes": Field(float, 0.0, "stop after this many passes over the data (0 = no "
                            "cap)", min=0.0, affects_result=False),
        "target": Field(float, 0.0, "stop when the objective at x̃ is ≤ target (0 = off)",
                        affects_result=False),
    }


class _VR(Algorithm):
    """What the three methods share: data, constants, sampling, the per-stage full gradient,
    the sampled variance-reduction direction, the stage/step bookkeeping and the checkpoint."""

    MODEL_SCHEMA = VR_MODEL_SCHEMA
    RESHARDABLE = True

    # -- setup ---------------------------------------------------------------------------
    def setup(self):
        ctx = self.ctx
        sh = ctx.train
        self.sh = sh
        self.lm = LinearShard(sh, ctx.model["loss"])
        self.code = self.lm.code
        self.y = self.lm.y
        self.n, self.d = sh.n, sh.d
        self.l1, self.l2 = ctx.model["l1"], ctx.model["l2"]
        s = ctx.solver
        self.b = s["batch"] or max(1, int(math.isqrt(self.n)))
        self.m = s["inner"] or max(1, self.n // self.b)
        if sh.sparse:
            X = sh.X
            self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
            sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sh.rows else np.zeros(0)
        else:
            sq = np.einsum("ij,ij->i", sh.X, sh.X) if sh.rows else np.zeros(0)
        rmax = self.world.allreduce_scalars(float(sq.max(initial=0.0)), op="max")
        self.L = LOSS_SMOOTHNESS[ctx.model["loss"]] * max(rmax, 1e-300)
        self.eta = (s["eta"] or self.theory_eta()) * s["eta_scale"]
        self.rng = ctx.rng("vr-minibatch")
        self.mt = np.empty(sh.rows)          # margins at the anchor x̃ (cached per stage)
        self.mb = np.empty(self.b)           # margins of the sampled rows
        self.coef = np.empty(self.b)
        self.vbuf = np.zeros(self.d)         # the Allreduce buffer of the inner step
        self.gbuf = np.empty(self.d + 1)     # [Σ∇ℓᵢ, Σℓᵢ] at x̃
        self.stage = 0                       # stages completed
        self.k = 0                           # inner iterations done in the current stage
        self.rows_sampled = 0                # Σ b over inner steps (for passes)
        self.full_grads = 0
        self.finished, self.reason = False, ""
        self.xt = np.zeros(self.d)           # x̃ (the anchor / output)
        self.init_state()
        self.full_gradient()

    @abc.abstractmethod
    def theory_eta(self):
        """The method's theoretical step size."""

    @abc.abstractmethod
    def init_state(self):
        """The method's iterates at the start."""

    # -- communication ---------------------------------------------------------------------
    def full_gradient(self):
        """μ̃ = ∇F(x̃) and P(x̃): one Allreduce(d+1); caches the margins at x̃."""
        with self.ctx.phase("full_grad"):
            self.lm.loss_grad_sums(self.xt, self.gbuf, margins=self.mt)
            self.world.allreduce(self.gbuf)
            self.mu = self.gbuf[:self.d] / self.n
            self.f = (self.gbuf[self.d] / self.n + 0.5 * self.l2 * float(self.xt @ self.xt)
                      + self.l1 * float(np.abs(self.xt).sum()))
        self.full_grads += 1

    def local_rows(self, idx):
        sh = self.sh
        sel = idx[(idx >= sh.start) & (idx < sh.stop)]
        return np.ascontiguousarray(sel - sh.start, dtype=np.int64)

    def vr_direction(self, w, rows):
        """vbuf = (1/b) Σ_{i∈I} [∇fᵢ(w) − ∇fᵢ(x̃)] over the whole mini-batch: the local rows'
        part, then ONE Allreduce(d)."""
        nt = rows.shape[0]
        mb, coef = self.mb[:nt], self.coef[:nt]
        if self.sh.sparse:
            V.csr_rows_margins(self.indptr, self.indices, self.data, rows, w, mb)
            V.vr_coefs(self.code, self.y, rows, mb, self.mt, 1.0 / self.b, coef)
            self.vbuf[:] = 0.0
            V.csr_rows_scatter(self.indptr, self.indices, self.data, rows, coef, self.vbuf)
        else:
            V.dense_rows_margins(self.sh.X, rows, w, mb)
            V.vr_coefs(self.code, self.y, rows, mb, self.mt, 1.0 / self.b, coef)
            V.dense_rows_rmatvec(self.sh.X, rows, coef, self.vbuf)
        with self.ctx.phase("allreduce"):
            self.world.allreduce(self.vbuf)
        return self.vbuf

    # -- the driver's step -----------------------------------------------------------------
    def step(self):
        per = self.ctx.solver["inner_per_step"] or self.m
        todo = min(per, self.m - self.k)
        if self.k == 0:
            self.begin_stage()
        batches = self.rng.integers(0, self.n, size=(todo, self.b))
        with self.ctx.phase("inner"):
            for t in range(todo):
                self.k += 1
                self.inner_step(self.k, self.local_rows(batches[t]))
        self.rows_sampled += todo * self.b
        if self.k == self.m:
            self.end_stage()
            self.stage += 1
            self.k = 0
            self.full_gradient()
            self.check_done()
        return self.metrics()

    def passes(self):
        return self.full_grads + self.rows_sampled / self.n

    def check_done(self):
        s = self.ctx.solver
        if not np.isfinite(self.f):
            self.finished, self.reason = True, "diverged (objective not finite)"
        elif s["target"] and self.f <= s["target"]:
            self.finished, self.reason = True, "target reached"
        elif self.stage >= s["max_stages"]:
            self.finished, self.reason = True, "max_stages"
        elif s["max_passes"] and self.passes() >= s["max_passes"]:
            self.finished, self.reason = True, "max_passes"

    def metrics(self):
        return {"objective": self.f, "stage": self.stage, "inner": self.k,
                "passes": self.passes(), "eta": self.eta,
                "nnz": int(np.count_nonzero(self.xt))}

    # -- checkpoint -----------------------------------------------------------------------
    def state(self):
        st = {"xt": self.xt, "mu": self.mu, "f": np.float64(self.f),
              "stage": np.int64(self.stage), "k": np.int64(self.k),
              "rows_sampled": np.int64(self.rows_sampled),
              "full_grads": np.int64(self.full_grads), "rng": rng_state(self.rng),
              "finished": np.int64(self.finished), "reason": self.reason or "-"}
        st.update(self.extra_state())
        return st

    def load_state(self, r):
        self.xt = np.ascontiguousarray(r.get("xt"), dtype=np.float64)
        if self.xt.shape != (self.d,):
            raise ValueError("state shape mismatch")  # guarded by the job hash
        self.mu = np.ascontiguousarray(r.get("mu"))
        self.f = float(r.get("f"))
        self.stage, self.k = int(r.get("stage")), int(r.get("k"))
        self.rows_sampled, self.full_grads = int(r.get("rows_sampled")), int(r.get("full_grads"))
        set_rng_state(self.rng, r.get("rng"))
        self.finished = bool(r.get("finished"))
        self.reason = "" if r.get("reason") == "-" else r.get("reason")
        self.lm.margins(self.xt, self.mt)  # the cache: a per-row function of x̃, any P
        self.load_extra(r)
        if self.finished and self.reason in ("max_stages", "max_passes"):
            self.finished = False
            self.check_done()

    def final_model(self):
        return {"model/w": self.xt}

    def summary_info(self):
        return {"objective": self.f, "stages": self.stage, "passes": self.passes(),
                "batch": self.b, "inner": self.m, "eta": self.eta, "L": self.L,
                "stop_reason": self.reason, "nnz": int(np.count_nonzero(self.xt))}

    @classmethod
    def evaluate(cls, ctx, model):
        return evaluate_linear(ctx, model["model/w"])


class DASVRDA(_VR):
    name = "dasvrda"
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    summary = "doubly accelerated SVRDA: √n mini-batches, one Allreduce per inner step"
    SOLVER_SCHEMA = dict(
        _common_solver("step η (0 = theoretical 1/((1 + γ(m+1)/b)·L))"),
        restart=Field(str, "adaptive", "outer momentum restart",
                      choices=["none", "adaptive", "fixed"]),
        restart_every=Field(int, 10, "stages between restarts when restart = 'fixed'", min=1),
        updates=Field(str, "auto", "inner updates: lazy (sparse data, O(nnz of the batch)), "
                      "dense (O(d) per step), auto = lazy for CSR data",
                      choices=["auto", "lazy", "dense"]),
    )

    @classmethod
    def validate_job(cls, job, source):
        pass

    def gamma(self):
        return (3.0 + math.sqrt(9.0 + 8.0 * self.b / (self.m + 1))) / 2.0

    def theory_eta(self):
        return 1.0 / ((1.0 + self.gamma() * (self.m + 1) / self.b) * self.L)

    def init_state(self):
        mode = self.ctx.solver["updates"]
        if mode == "auto":
            mode = "lazy" if self.sh.sparse else "dense"
        if mode == "lazy" and not self.sh.sparse:
            raise JobError("[solver] updates = 'lazy' needs sparse (CSR) training data")
        self.lazy = mode == "lazy"
        d = self.d
        self.xprev = np.zeros(d)       # x̃ₛ₋₂
        self.zt = np.zeros(d)          # z̃ₛ₋₁
        self.yprev = np.zeros(d)       # ỹₛ₋₁ (adaptive restart)
        self.s_loc = 0                 # stages since the last restart
        self.restarts = 0
        self.x = np.zeros(d)           # inner xₖ (lazy: stored at step last[j])
        self.z0 = np.zeros(d)          # ỹ of the current stage
        self.z = np.zeros(d)           # inner zₖ (dense mode)
        self.gbar = np.zeros(d)        # ḡₖ (dense mode)
        self.H = np.zeros(d)           # Σ i·vᵢ (lazy mode)
        self.last = np.zeros(d, dtype=np.int64)
        self.S0 = np.empty(self.m + 1)
        self.S1 = np.empty(self.m + 1)
        V.prefix_sums(self.m, self.eta, self.l2, self.S0, self.S1)
        if self.lazy:
            self.supp = np.empty(d, dtype=np.int64)
            self.mark = np.zeros(d, dtype=np.uint8)

    def begin_stage(self):
        """ỹₛ from the outer momentum (with the restart rules); inner state from ỹₛ."""
        g = self.gamma()
        solver = self.ctx.solver
        if solver["restart"] == "fixed" and self.s_loc >= solver["restart_every"]:
            self._restart()
        s = self.s_loc + 1
        th, th_prev = (1 - 1 / g) * (s + 2) / 2, (1 - 1 / g) * (s + 1) / 2
        yt = (self.xt + ((th_prev - 1) / th) * (self.xt - self.xprev)
              + (th_prev / th) * (self.zt - self.xt))
        if (solver["restart"] == "adaptive" and self.s_loc > 0
                and float((self.yprev - self.xt) @ (yt - self.xt)) > 0):
            self._restart()
            yt = self.xt.copy()
        self.z0[:] = yt
        self.x[:] = yt
        if self.lazy:
            self.H[:] = 0.0
            self.last[:] = 0
        else:
            self.z[:] = yt
            self.gbar[:] = 0.0

    def _restart(self):
        self.xprev[:] = self.xt
        self.zt[:] = self.xt
        self.s_loc = 0
        self.restarts += 1

    def inner_step(self, k, rows):
        eta, l1, l2 = self.eta, self.l1, self.l2
        if self.lazy:
            nt = rows.shape[0]
            mb, coef = self.mb[:nt], self.coef[:nt]
            V.lazy_margins(self.indptr, self.indices, self.data, rows, k, self.x, self.last,
                           self.H, self.z0, self.mu, self.S0, self.S1, eta, l1, l2, mb)
            V.vr_coefs(self.code, self.y, rows, mb, self.mt, 1.0 / self.b, coef)
            V.csr_rows_scatter(self.indptr, self.indices, self.data, rows, coef, self.vbuf)
            with self.ctx.phase("allreduce"):
                self.world.allreduce(self.vbuf)
            if self.world.size > 1:   # the support of the summed vector: an O(d) scan
                cnt = V.support_nonzero(self.vbuf, self.supp)
            else:                     # the columns of the sampled rows
                cnt = V.support_rows(self.indptr, self.indices, rows, self.vbuf, self.mark,
                                     self.supp)
            V.lazy_update(self.supp[:cnt], k, self.vbuf, self.x, self.last, self.H, self.z0,
                          self.mu, self.S0, self.S1, eta, l1, l2)
            return
        th = (k + 1) / 2.0
        a = 1.0 - 1.0 / th
        yk = a * self.x + self.z / th
        v = self.vr_direction(yk, rows)
        self.gbar *= a
        self.gbar += (v + self.mu) / th
        c = eta * th * (k / 2.0)
        V.enet_prox(self.z0 - c * self.gbar, c, l1, l2, self.z)
        self.x *= a
        self.x += self.z / th

    def end_stage(self):
        m = self.m
        if self.lazy:
            V.lazy_sync(m, self.x, self.last, self.H, self.z0, self.mu, self.S0, self.S1,
                        self.eta, self.l1, self.l2)
            V.lazy_z(m, self.H, self.z0, self.mu, self.eta, self.l1, self.l2, self.z)
        self.yprev[:] = self.z0
        self.xprev[:] = self.xt
        self.xt = self.x.copy()
        self.zt[:] = self.z
        self.s_loc += 1

    def metrics(self):
        info = super().metrics()
        info["restarts"] = self.restarts
        return info

    def extra_state(self):
        return {"xprev": self.xprev, "zt": self.zt, "yprev": self.yprev, "x": self.x,
                "z0": self.z0, "z": self.z, "gbar": self.gbar, "H": self.H,
                "last": self.last, "s_loc": np.int64(self.s_loc),
                "restarts": np.int64(self.restarts), "lazy": np.int64(self.lazy)}

    def load_extra(self, r):
        for k in ("xprev", "zt", "yprev", "x", "z0", "z", "gbar", "H"):
            setattr(self, k, np.ascontiguousarray(r.get(k), dtype=np.float64))
        self.last = np.ascontiguousarray(r.get("last"), dtype=np.int64)
        self.s_loc, self.restarts = int(r.get("s_loc")), int(r.get("restarts"))

    def summary_info(self):
        return dict(super().summary_info(), restarts=self.restarts, gamma=self.gamma(),
                    updates="lazy" if self.lazy else "dense")


class ProxSVRG(_VR):
    name = "prox-svrg"
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    summary = "mini-batch proximal SVRG (baseline of dasvrda)"
    SOLVER_SCHEMA = _common_solver("step η (0 = 1/(4L))")

    def theory_eta(self):
        return 1.0 / (4.0 * self.L)

    def init_state(self):
        self.x = np.zeros(self.d)
        self.tmp = np.empty(self.d)

    def begin_stage(self):
        self.x[:] = self.xt

    def inner_step(self, k, rows):
        v = self.vr_direction(self.x, rows)
        np.add(v, self.mu, out=self.tmp)
        self.tmp *= -self.eta
        self.tmp += self.x
        V.enet_prox(self.tmp, self.eta, self.l1, self.l2, self.x)

    def end_stage(self):
        self.xt = self.x.copy()   # last iterate (the usual practical choice)

    def extra_state(self):
        return {"x": self.x}

    def load_extra(self, r):
        self.x = np.ascontiguousarray(r.get("x"), dtype=np.float64)


class Katyusha(_VR):
    name = "katyusha"
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    summary = "mini-batch Katyusha (baseline of dasvrda)"
    SOLVER_SCHEMA = _common_solver("scales the steps: α = eta/(3τ₁L)·…, 0 = the paper's "
                                   "α = 1/(3τ₁L) and 1/(3L)")

    def theory_eta(self):
        return 1.0  # a multiplier of the paper's steps (α = 1/(3τ₁L), 1/(3L))

    def tau1(self):
        if self.l2 > 0:   # strongly convex Katyusha; n sampled rows per epoch
            return min(math.sqrt(self.m * self.b * self.l2 / (3.0 * self.L)), 0.5)
        return 2.0 / (self.stage + 4.0)   # Katyusha^ns

    def init_state(self):
        d = self.d
        self.yk = np.zeros(d)
        self.zk = np.zeros(d)
        self.acc = np.zeros(d)    # Σ wⱼ yⱼ of the epoch
        self.wsum = 0.0
        self.tmp = np.empty(d)
        self.znew = np.empty(d)

    def begin_stage(self):
        self.acc[:] = 0.0
        self.wsum = 0.0

    def inner_step(self, k, rows):
        t1, t2 = self.tau1(), 0.5
        alpha = self.eta / (3.0 * t1 * self.L)
        xk = t1 * self.zk + t2 * self.xt + (1.0 - t1 - t2) * self.yk
        v = self.vr_direction(xk, rows)
        g = v + self.mu
        np.subtract(self.zk, alpha * g, out=self.tmp)
        V.enet_prox(self.tmp, alpha, self.l1, self.l2, self.znew)
        # option II: y = x + τ₁(z_new − z)
        self.yk = xk + t1 * (self.znew - self.zk)
        self.zk[:] = self.znew
        w = (1.0 + alpha * self.l2) ** (k - 1) if self.l2 > 0 else 1.0
        self.acc += w * self.yk
        self.wsum += w

    def end_stage(self):
        self.xt = self.acc / self.wsum

    def extra_state(self):
        return {"yk": self.yk, "zk": self.zk, "acc": self.acc, "wsum": np.float64(self.wsum)}

    def load_extra(self, r):
        for k in ("yk", "zk", "acc"):
            setattr(self, k, np.ascontiguousarray(r.get(k), dtype=np.float64))
        self.wsum = float(r.get("wsum"))


ALGORITHMS = [DASVRDA, ProxSVRG, Katyusha]
