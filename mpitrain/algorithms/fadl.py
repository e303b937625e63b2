"""FADL: parallel SGD with gradient-consistent local approximations
(Mahajan, Keerthi, Sundararajan & Bottou, arXiv 1311.0636 / 1310.8418).

Minimises f(w) = (1/n)Σᵢ ℓ(yᵢ wᵀxᵢ) + (l2/2)‖w‖²   (ℓ logistic or squared hinge, l1 = 0).

Outer iteration r (w replicated on every rank; gʳ = ∇f(wʳ) known from the previous one):
 1. Local approximation of rank p, gradient consistent at wʳ (see models/fadl_local.py):
        f̂_p(w) = (l2/2)‖w‖² + σ·L_p(w) + (κ/2)‖w − wʳ‖² + cᵀ(w − wʳ),
        c = gʳ − l2·wʳ − σ∇L_p(wʳ),   σ = 1/n_p (rescale = true) or 1/n,
    so ∇f̂_p(wʳ) = gʳ. Its per-sample SGD gradient is (l2+κ)w + (c − κwʳ) + σn_p·ℓ'ᵢ·xᵢ.
 2. Local solve from wʳ: `epochs` SGD passes (Cython kernel, O(nnz) per sparse row) or
    `local_iters` L-BFGS iterations; w_p. Safeguard: if f̂_p(w_p) ≥ f̂_p(wʳ), d_p = −gʳ,
    else d_p = w_p − wʳ.
 3. dʳ = (1/P)Σ_p d_p: one Allreduce(SUM) of a d-vector. If gʳᵀdʳ ≥ 0, dʳ = −gʳ.
 4. Strong-Wolfe line search (c1 = 1e-4, c2 = 0.9, first trial t = 1) on the true f along dʳ,
    with cached margins a = Xwʳ and δ = Xdʳ: one Allreduce of 2 scalars per trial.
    w^{r+1} = wʳ + t·dʳ.
 5. g^{r+1}, f(w^{r+1}): one Allreduce(SUM) of [Σ∇ℓᵢ, Σℓᵢ] (a (d+1)-vector).
Stops when ‖g‖ ≤ tol·‖g⁰‖, after max_iter outer iterations, or when the line search can make
no progress (f at its floating-point floor).

SGD step size: constant; `step_size = 0` (default) tunes it on the first outer iteration by
trying η = k/L_max, k ∈ {¼, ½, 1, 2, …, 32}, for the same `epochs` on f̂_p and keeping the one
with the lowest f̂_p; the ranks then take the smallest choice (Allreduce MIN of a scalar). The
chosen η is part of the state. Row orders are random permutations drawn from the stream
(seed, "fadl-sgd", r, first global row of the shard): nothing random needs saving.

State (checkpoint): w, g, f, ‖g⁰‖, the iteration, η and the counters; local approximations are
rebuilt from w, so resuming at another P is allowed.
"""
import numpy as np

from ..config import Field
from ..errors import JobError
from ..models.fadl_local import LocalProblem, line_search_phi, orders_for
from ..models.linear import LinearShard, regularized
from ..models.linesearch import LineSearchFailed, wolfe
from .base import Algorithm
from .lbfgs import evaluate_linear


class FADL(Algorithm):
    name = "fadl"
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    SMOOTH_ONLY = True
    summary = "parallel SGD on gradient-consistent local approximations (2 d-vector " \
              "Allreduces per outer iteration)"
    SOLVER_SCHEMA = {
        "max_iter": Field(int, 200, "outer-iteration cap", min=1, affects_result=False),
        "tol": Field(float, 1e-10, "stop when ‖∇f‖ ≤ tol·‖∇f(w⁰)‖", min=0.0,
                     affects_result=False),
        "local_solver": Field(str, "sgd", "solver of the local approximation",
                              choices=["sgd", "lbfgs"]),
        "epochs": Field(int, 1, "SGD epochs over the local shard per outer iteration (s)",
                        min=1),
        "local_iters": Field(int, 10, "L-BFGS iterations per outer iteration "
                             "(local_solver = lbfgs)", min=1),
        "step_size": Field(float, 0.0, "constant SGD step; 0 = tune on the first outer "
                           "iteration", min=0.0),
        "variance": Field(str, "svrg", "per-sample gradient estimator of ∇f̂_p: 'plain' "
                          "(λw + ρℓ'ᵢxᵢ + c) or 'svrg' (minus its value at wʳ, plus its mean)",
                          choices=["svrg", "plain"]),
        "rescale": Field(bool, True, "local loss term (n/n_p)·L_p (true) or L_p (false)"),
        "kappa": Field(float, 0.0, "proximal term (κ/2)‖w − wʳ‖² in the local approximation",
                       min=0.0),
    }

    @classmethod
    def validate_job(cls, job, source):
        s = job["solver"]
        if s["local_solver"] == "sgd" and s["step_size"] > 0:
            lam = job["model"]["l2"] + s["kappa"]
            if s["step_size"] * lam >= 1.0:
                raise JobError(f"{source}: [solver] step_size = {s['step_size']} is too large:"
                               f" step_size·(l2 + kappa) = {s['step_size'] * lam:g} must be < 1")

    def setup(self):
        ctx = self.ctx
        sv = ctx.solver
        self.lm = LinearShard(ctx.train, ctx.model["loss"])
        self.l2 = ctx.model["l2"]
        self.n, self.d = ctx.train.n, ctx.train.d
        self.local = LocalProblem(self.lm, self.l2, sv["kappa"], sv["rescale"],
                                  sv["variance"])
        self.w = np.zeros(self.d)
        self.buf = np.empty(self.d + 1)       # Allreduce buffer [Σ∇ℓ, Σℓ]
        self.mine = np.empty(self.d + 1)      # this rank's sums at w (for c)
        self.dir = np.empty(self.d)
        self.margins = np.empty(ctx.train.rows)
        self.delta = np.empty(ctx.train.rows)
        self.eta = float(sv["step_size"])
        self.it = 0
        self.dvec = 0            # d-vector Allreduces so far
        self.ls_evals = 0        # line-search trials (2-scalar Allreduces) so far
        self.fallbacks = 0       # safeguard activations (this run)
        self.finished, self.reason = False, ""
        self.f, self.g = self._gradient()
        self._sums_valid = True
        self.g0 = float(np.linalg.norm(self.g))
        if self.g0 == 0.0:
            self.finished, self.reason = True, "gradient is zero at w = 0"

    # -- one Allreduce of a (d+1)-vector: f and ∇f at self.w, keeping this rank's sums ---
    def _local_sums(self):
        self.lm.loss_grad_sums(self.w, self.mine, self.margins)

    def _gradient(self):
        self._local_sums()
        self.buf[:] = self.mine
        self.world.allreduce(self.buf)
        self.dvec += 1
        g = self.buf[:self.d] / self.n + self.l2 * self.w
        return regularized(self.buf[self.d] / self.n, self.w, self.l2), g

    def _local_solve(self, c):
        """w_p and f̂_p(w_p) from wʳ = self.w; the step-size tuning (first iteration) makes
        one scalar Allreduce(MIN) so every rank uses the same η."""
        sv, ctx = self.ctx.solver, self.ctx
        lp = self.local
        lp.center(self.w, c, self.mine[self.d], self.mine[:self.d], self.margins)
        if sv["local_solver"] == "lbfgs":
            wp, fp, _ = lp.lbfgs(self.w, sv["local_iters"])
            return wp, fp
        orders = orders_for(ctx.rng("fadl-sgd", self.it, ctx.train.start), ctx.train.rows,
                            sv["epochs"])
        if self.eta == 0.0:
            eta_p, wp, fp = lp.tune(self.w, orders)
            eta = float(self.world.allreduce_scalars(eta_p, op="min"))
            self.eta = eta
            if eta != eta_p:
                wp = lp.sgd(self.w, eta, orders)
                fp = lp.value(wp)
            return wp, fp
        wp = lp.sgd(self.w, self.eta, orders)
        return wp, lp.value(wp)

    def step(self):
        ctx, world = self.ctx, self.world
        if not self._sums_valid:
            self._local_sums()       # after a resume: this rank's sums at w (no collective)
        self._sums_valid = False
        f_old, g = self.f, self.g
        with ctx.phase("local"):
            c = g - self.l2 * self.w - self.local.sigma * self.mine[:self.d]
            wp, fp = self._local_solve(c)
            fallback = not fp < self.local.f_center
            if fallback:
                self.fallbacks += 1
                np.negative(g, out=self.dir)
            else:
                np.subtract(wp, self.w, out=self.dir)
        with ctx.phase("allreduce_dir"):
            world.allreduce(self.dir)
            self.dvec += 1
            self.dir /= world.size
        gd = float(g @ self.dir)
        if not gd < 0:
            np.negative(g, out=self.dir)
            gd = -float(g @ g)
        t, evals = 0.0, 0
        with ctx.phase("linesearch"):
            self.lm.margins(self.dir, self.delta)
            phi = line_search_phi(world, self.lm, self.margins, self.delta, self.w, self.dir,
                                  self.l2, self.n)
            try:
                t, _, _, evals = wolfe(phi, f_old, gd, 1.0)
            except LineSearchFailed as exc:
                self.finished, self.reason = True, f"line search: {exc}"
            self.ls_evals += evals
        if t > 0:
            self.w = self.w + t * self.dir
        self.it += 1
        with ctx.phase("gradient"):
            self.f, self.g = self._gradient()
            self._sums_valid = True
        gnorm = float(np.linalg.norm(self.g))
        if self.finished:
            pass
        elif gnorm <= ctx.solver["tol"] * self.g0:
            self.finished, self.reason = True, "gradient tolerance"
        elif self.it >= ctx.solver["max_iter"]:
            self.finished, self.reason = True, "max_iter"
        elif f_old - self.f <= 1e-16 * abs(f_old):
            self.finished, self.reason = True, "no further decrease"
        info = {"objective": self.f, "grad_norm": gnorm, "step_size": t,
                "ls_evals": evals, "local_epochs": self._epochs(), "eta": self.eta,
                "fallback": int(fallback), "dvec_allreduces": self.dvec}
        info["show_linesearch_t"] = f"{t:.3g}"
        return info

    def _epochs(self):
        sv = self.ctx.solver
        return sv["epochs"] if sv["local_solver"] == "sgd" else 0

    def state(self):
        return {"w": self.w, "g": self.g, "f": np.float64(self.f), "g0": np.float64(self.g0),
                "it": np.int64(self.it), "eta": np.float64(self.eta),
                "dvec": np.int64(self.dvec), "ls_evals": np.int64(self.ls_evals),
                "finished": np.int64(self.finished), "reason": self.reason or "-"}

    def load_state(self, r):
        self.w, self.g = r.get("w"), r.get("g")
        if self.w.shape != (self.d,):
            raise ValueError("weight shape mismatch")  # guarded by the job hash
        self.f, self.g0, self.eta = float(r.get("f")), float(r.get("g0")), float(r.get("eta"))
        self.it, self.dvec = int(r.get("it")), int(r.get("dvec"))
        self.ls_evals = int(r.get("ls_evals"))
        self.restore_finish(r, "max_iter", self.it, self.ctx.solver["max_iter"])
        self._sums_valid = False

    def final_model(self):
        return {"model/w": self.w}

    def summary_info(self):
        return {"objective": self.f, "grad_norm": float(np.linalg.norm(self.g)),
                "iterations": self.it, "dvec_allreduces": self.dvec,
                "linesearch_evals": self.ls_evals, "step_size_sgd": self.eta,
                "stop_reason": self.reason}

    @classmethod
    def evaluate(cls, ctx, model):
        return evaluate_linear(ctx, model["model/w"])


ALGORITHMS = [FADL]
