"""FADL: parallel SGD with gradient-consistent local approximations
(Mahajan, Keerthi, Sundararajan & Bottou, arXiv 1311.0636 / 1310.8418).

Minimises f(w) = (1/n)Σᵢ ℓ(yᵢ wᵀxᵢ) + (l2/2)‖w‖²   (ℓ logistic or squared hinge, l1 = 0;
or ℓ squared with real labels: regression). Labels: two values of any kind, the larger one
+1 (models/glm.py); no intercept and no multiclass (lbfgs fits those).

Outer iteration r (w replicated on every rank; gʳ = ∇f(wʳ) known from the previous one):
 1. Local approximation of rank p, gradient consistent at wʳ (see models/fadl_local.py):
        f̂_p(w) = (l2/2)‖w‖² + σ·L_p(w) + (κ/2)‖w − wʳ‖² + cᵀ(w − wʳ),
        c = gʳ − l2·wʳ − σ∇L_p(wʳ),   σ = 1/n_p (rescale = true) or 1/n,
    so ∇f̂_p(wʳ) = gʳ. Its per-sample SGD gradient is (l2+κ)w + (c − κwʳ) + σn_p·ℓ'ᵢ·xᵢ.
 2. Local solve from wʳ: truncated Newton (tron) until ‖∇f̂_p‖ ≤ local_tol·‖∇f̂_p(wʳ)‖,
    `epochs` SGD passes (Cython kernel, O(nnz) per sparse row) or `local_iters` L-BFGS
    iterations (`auto`: tron; SGD with start = "zero" where P > 1 and rows per rank <
    features); w_p.
    Safeguard: if f̂_p(w_p) ≥ f̂_p(wʳ), d_p = −gʳ, else d_p = w_p − wʳ.
 3. dʳ = (1/P)Σ_p d_p: one Allreduce(SUM) of a d-vector. If gʳᵀdʳ ≥ 0, dʳ = −gʳ.
 4. Strong-Wolfe line search (c1 = 1e-4, c2 = ls_c2 = 0.1, first trial t = 1) on the true f
    along dʳ, with cached margins a = Xwʳ and δ = Xdʳ: one Allreduce of 2 scalars per trial.
    dʳ is an average of local minimisers, not a quasi-Newton step whose unit length is
    usually right, so the search asks for a near-stationary t (c2 = 0.1, the nonlinear-CG
    value) rather than accepting any t with a 10-fold smaller slope (0.9).
    search = "subspace" (default): then minimise f over the plane wʳ + α·dʳ + β·sʳ, sʳ the
    previous step (w^{r+1} − wʳ … of the last iteration), from (α, β) = (t, 0) by Newton steps
    on the 2×2 system with Armijo backtracking, over the cached margins a, δ and Xsʳ: one
    Allreduce of 6 scalars per trial, f never above the line search's. The previous step
    carries the curvature information the averaged direction lacks (a two-term subspace
    search, as in nonlinear CG). search = "line": the line search alone.
    w^{r+1} = wʳ + α·dʳ + β·sʳ.
 5. g^{r+1}, f(w^{r+1}): one Allreduce(SUM) of [Σ∇ℓᵢ, Σℓᵢ] (a (d+1)-vector).
So 1 + 2k d-vector Allreduces after k outer iterations (an iteration whose line search finds
no step ends after step 3: one). Steps 3 and 5 cannot share one: the directions need gʳ, and
g^{r+1} needs the combined direction and the step.

start = "mix" (the default `auto` picks it where P > 1 and rows per rank < features; else
"zero"): the first iteration is a parameter-mixing step from w⁰ = 0.
Each rank minimises its shard's own objective (c = 0: f̂_p = (l2/2)‖w‖² + σ·L_p, which needs
no gʳ; safeguard direction −σ∇L_p(0)), dʳ is their average (step 3), and the line search
starts from f(0) and φ'(0) over the cached margins (one more 2-scalar Allreduce); then step 5.
It skips the gradient Allreduce at w = 0, so k outer iterations make 2k d-vector Allreduces:
the paper's view of FADL as iterative parameter mixing, started by one plain mixing round. If
φ'(0) ≥ 0 the step is skipped (w stays 0) and FADL goes on from the gradient at 0. ‖g⁰‖ (the
reference of `tol`) is then the gradient norm after this first iteration. start = "zero": FADL
from w = 0 with g⁰ (the paper's algorithm as written; 1 + 2k). At P = 1 every start is
"zero" (the one shard's objective is f: mixing would be FADL's first iteration without g⁰).
summary.json names the start and the local solver a run used.

Stops when ‖g‖ ≤ tol·‖g⁰‖, after max_iter outer iterations, or when the line search can make
no progress (f at its floating-point floor).

SGD step size: constant; `step_size = 0` (default) tunes it on the first outer iteration by
trying η = k/L_max, k ∈ {¼, ½, 1, 2, …, 32}, for the same `epochs` on f̂_p and keeping the one
with the lowest f̂_p; the ranks then take the smallest choice (Allreduce MIN of a scalar). The
chosen η is part of the state. Row orders are random permutations drawn from the stream
(seed, "fadl-sgd", r, first global row of the shard): nothing random needs saving.

State (checkpoint): w, g, f, ‖g⁰‖, the iteration, η, the counters and the previous step sʳ
(its margins are recomputed locally); local approximations are rebuilt from w, so resuming
at another P is allowed.
"""
import numpy as np

from ..schema import Field
from ..errors import JobError
from ..models.fadl_local import LocalProblem, orders_for
from ..models import glm
from ..models.linear import layout_bytes
from ..models.linesearch import LineSearchFailed, plane_newton, wolfe
from ..state import Array, Float, Int
from .linear_family import LinearAlgorithm, certified_gap, floor_tol


class FADL(LinearAlgorithm):
    name = "fadl"
    SMOOTH_ONLY = True
    DATA = {"binary": False, "dtype": np.float64}  # labels decided by models/glm.py
    STATE = {"w": Array(), "g": Array(), "f": Float(), "g0": Float(), "it": Int(),
             "eta": Float(), "dvec": Int(), "ls_evals": Int(), "s": Array(optional=True)}
    CAPS = {"max_iter": ("it", "max_iter")}
    summary = "parallel SGD on gradient-consistent local approximations (2 d-vector " \
              "Allreduces per outer iteration)"
    SOLVER_SCHEMA = {
        "max_iter": Field(int, 200, "outer-iteration cap", min=1, affects_result=False),
        "tol": Field(float, 1e-8, "stop when ‖∇f‖ ≤ tol·‖∇f(w⁰)‖", min=0.0,
                     affects_result=False),
        "gap_tol": Field(float, 1e-10, "stop when the certified gap ‖∇f‖²/(2·l2) ≤ "
                         "gap_tol·|f| (0 = off)", min=0.0, affects_result=False),
        "local_solver": Field(str, "auto", "solver of the local approximation: 'tron' "
                              "(Newton-CG to local_tol), 'sgd' (epochs of SGD), 'lbfgs' "
                              "(local_iters iterations), 'auto' (tron, but sgd when start = "
                              "'zero', P > 1 and rows per rank < features)", choices=["auto", "tron", "sgd", "lbfgs"]),
        "local_tol": Field(float, 0.1, "tron: solve f̂_p until ‖∇f̂_p‖ ≤ local_tol·‖∇f̂_p(wʳ)‖",
                           min=0.0),
        "epochs": Field(int, 2, "SGD epochs over the local shard per outer iteration (s)",
                        min=1),
        "local_iters": Field(int, 10, "cap on Newton steps (tron) / L-BFGS iterations (lbfgs) "
                             "per outer iteration", min=1),
        "step_size": Field(float, 0.0, "constant SGD step; 0 = tune on the first outer "
                           "iteration", min=0.0),
        "variance": Field(str, "svrg", "per-sample gradient estimator of ∇f̂_p: 'plain' "
                          "(λw + ρℓ'ᵢxᵢ + c) or 'svrg' (minus its value at wʳ, plus its mean)",
                          choices=["svrg", "plain"]),
        "rescale": Field(bool, True, "local loss term (n/n_p)·L_p (true) or L_p (false)"),
        "ls_c2": Field(float, 0.1, "curvature constant of the outer strong-Wolfe line search "
                       "(|φ'(t)| ≤ ls_c2·|φ'(0)|); 0.9 = the quasi-Newton value (before 0.1 "
                       "became the default)", min=1e-3, max=0.99, hash_omits=0.9),
        "search": Field(str, "subspace", "outer step: 'subspace' (line search along dʳ, then "
                        "f minimised over the plane of dʳ and the previous step: 6-scalar "
                        "Allreduces) or 'line' (the line search alone)",
                        choices=["subspace", "line"], hash_omits="line"),
        "start": Field(str, "auto", "first iteration: 'zero' (FADL from w = 0), 'mix' "
                       "(each rank minimises its shard's own objective, c = 0, and the "
                       "averaged direction is searched: no gradient Allreduce at w = 0) or "
                       "'auto' (mix where P > 1 and rows per rank < features, else zero); at "
                       "P = 1 always zero (the shard's objective is f)",
                       choices=["auto", "zero", "mix"], hash_omits="zero"),
        "kappa": Field(float, 0.0, "proximal term (κ/2)‖w − wʳ‖² in the local approximation",
                       min=0.0),
    }

    @classmethod
    def validate_job(cls, job, source):
        s = job["solver"]
        if s["local_solver"] in ("sgd", "auto") and s["step_size"] > 0:
            lam = job["model"]["l2"] + s["kappa"]
            if s["step_size"] * lam >= 1.0:
                raise JobError(f"{source}: [solver] step_size = {s['step_size']} is too large:"
                               f" step_size·(l2 + kappa) = {s['step_size'] * lam:g} must be < 1")

    def setup(self):
        ctx = self.ctx
        sv = ctx.solver
        self.obj = glm.objective(ctx, self.name)  # two classes → ±1, or real labels
        self.lm = self.obj.lm
        self.l2 = ctx.model["l2"]
        self.n, self.d = ctx.train.n, ctx.train.d
        self.local = LocalProblem(self.lm, self.l2, sv["kappa"], sv["rescale"],
                                  sv["variance"])
        self.w = np.zeros(self.d)
        self.buf = np.empty(self.d + 1)       # Allreduce buffer [Σ∇ℓ, Σℓ]
        self.mine = np.empty(self.d + 1)      # this rank's sums at w (for c)
        # start 'auto': where shards have fewer rows than features the first FADL direction
        # from w = 0 is poor anyway, and a mixing round saves the gradient Allreduce at 0;
        # where shards pin every feature down (n/P ≥ d) the gradient-consistent first step
        # lands past the averaging bias of a mixing round (docs/fadl.md has the counts)
        P = self.world.size
        wide = P > 1 and self.n < P * self.d
        self.start = "zero" if P == 1 else sv["start"] if sv["start"] != "auto" else \
            ("mix" if wide else "zero")
        # local_solver 'auto': tron. From w = 0 (start = "zero") with far more features than
        # rows per rank, a few SGD epochs (implicitly damped) did better than an exact local
        # solve, whose averaged first direction is poor; the mix start makes that first
        # direction an average of exact shard minimisers, and tron then wins there too
        self.solver = sv["local_solver"]
        if self.solver == "auto":
            self.solver = "sgd" if wide and self.start == "zero" else "tron"
        self.dbuf = np.empty(self.d + 2)      # Allreduce buffer [d_p, halvings_p, fallback_p]
        self.dir = np.empty(self.d)
        self.local_work = 0      # epochs / Newton steps / L-BFGS iterations of the last solve
        self.margins = np.empty(ctx.train.rows)
        self.delta = np.empty(ctx.train.rows)
        self.eta = float(sv["step_size"])
        self.s = None            # the previous step w^{r} − w^{r−1} (search = "subspace")
        self.xs = np.empty(ctx.train.rows)   # its margins X·s on this rank's rows
        self.it = 0
        self.dvec = 0            # d-vector Allreduces so far
        self.ls_evals = 0        # line-search trials (2-scalar Allreduces) so far
        self.fallbacks = 0       # safeguard activations, all ranks (this run)
        self.finished, self.reason = False, ""
        if self.start == "mix":
            self.f, self.g, self.g0 = 0.0, None, 0.0
            self._local_sums()
            self._sums_valid = True
            return
        self.f, self.g = self._gradient()
        self._sums_valid = True
        self.g0 = float(np.linalg.norm(self.g))
        if self.g0 == 0.0:
            self.finish("gradient is zero at w = 0")

    # -- one Allreduce of a (d+1)-vector: f and ∇f at self.w, keeping this rank's sums ---
    def _local_sums(self):
        self.mine[:] = self.obj.sums(self.w, self.margins)

    def _gradient(self):
        self._local_sums()
        self.buf[:] = self.mine
        self.world.allreduce(self.buf)
        self.dvec += 1
        return self.obj.value_grad(self.buf, self.w)

    def _local_solve(self, c):
        """w_p and f̂_p(w_p) from wʳ = self.w; the step-size tuning (first iteration) makes
        one scalar Allreduce(MIN) so every rank uses the same η."""
        sv, ctx = self.ctx.solver, self.ctx
        lp = self.local
        lp.center(self.w, c, self.mine[self.d], self.mine[:self.d], self.margins)
        if self.solver == "tron":
            wp, fp, self.local_work, _ = lp.newton(self.w, sv["local_tol"], sv["local_iters"])
            return wp, fp, 0
        if self.solver == "lbfgs":
            wp, fp, self.local_work = lp.lbfgs(self.w, sv["local_iters"])
            return wp, fp, 0
        orders = orders_for(ctx.rng("fadl-sgd", self.it, ctx.train.start), ctx.train.rows,
                            sv["epochs"])
        self.local_work = sv["epochs"]
        if self.eta == 0.0:
            eta_p, wp, fp = lp.tune(self.w, orders)
            eta = float(self.world.allreduce_scalars(eta_p, op="min"))
            self.eta = eta
            if eta != eta_p:
                wp = lp.sgd(self.w, eta, orders)
                fp = lp.value(wp)
            return wp, fp, 0
        # safe step: an SGD pass that does not decrease f̂_p is retried with half the step
        # (locally, no collective); the ranks then halve η together (see step())
        eta, halvings = self.eta, 0
        while True:
            wp = lp.sgd(self.w, eta, orders)
            fp = lp.value(wp)
            if fp < lp.f_center or halvings == 3:
                return wp, fp, halvings
            eta *= 0.5
            halvings += 1

    def step(self):
        ctx, world = self.ctx, self.world
        if not self._sums_valid:
            self._local_sums()       # after a resume: this rank's sums at w (no collective)
        self._sums_valid = False
        f_old, g = self.f, self.g
        mix = g is None
        with ctx.phase("local"):
            if mix:
                c = np.zeros(self.d)
            else:
                c = g - self.l2 * self.w - self.local.sigma * self.mine[:self.d]
            wp, fp, halvings = self._local_solve(c)
            fallback = not fp < self.local.f_center
            buf, d = self.dbuf, self.d
            if fallback and mix:
                np.multiply(self.mine[:d], -self.local.sigma, out=buf[:d])
            elif fallback:
                np.negative(g, out=buf[:d])
            else:
                np.subtract(wp, self.w, out=buf[:d])
            buf[d], buf[d + 1] = halvings, float(fallback)
        with ctx.phase("allreduce_dir"):
            world.allreduce(buf)     # one d-vector: Σ_p d_p, and the step-rule flags
            self.dvec += 1
            np.divide(buf[:d], world.size, out=self.dir)
        fallbacks = int(buf[d + 1])
        self.fallbacks += fallbacks
        if self.eta > 0 and (buf[d] > 0 or fallbacks):
            self.eta *= 0.5          # every rank the same: the flags were summed
        t, evals = 0.0, 0
        with ctx.phase("linesearch"):
            if not mix:              # the mixing round has no ∇f(0): its slope comes from φ'(0)
                gd = float(g @ self.dir)
                if not gd < 0:
                    np.negative(g, out=self.dir)
                    gd = -float(g @ g)
            self.lm.margins(self.dir, self.delta)
            line = self.obj.line(self.margins, self.delta, self.w, self.dir)

            def phi(t):  # one Allreduce of 2 scalars over the cached margins
                lf, lg = world.allreduce_scalars(*line.local(t))
                f, d = line.value(t, lf, lg)
                return f, d, None
            if mix:          # f(0) and φ'(0) along the combined direction
                f_old, gd, _ = phi(0.0)
                evals += 1
            try:
                if gd < 0:
                    t, _, _, ev = wolfe(phi, f_old, gd, 1.0, c2=ctx.solver["ls_c2"],
                                        floor=floor_tol(f_old))
                    evals += ev
            except LineSearchFailed as exc:
                evals += exc.evals
                self.finish("converged: floating-point floor" if exc.at_floor
                            else f"line search: {exc}")
            self.ls_evals += evals
        step, alpha, beta = t * self.dir, t, 0.0
        if t > 0 and self.s is not None and ctx.solver["search"] == "subspace":
            with ctx.phase("linesearch"):
                plane = self.obj.plane(self.margins, self.delta, self.xs, self.w, self.dir,
                                       self.s)

                def psi(x):  # one Allreduce of 6 scalars over the cached margins
                    buf = plane.local(x)
                    world.allreduce(buf)
                    return plane.value(x, buf)
                (alpha, beta), trials = plane_newton(psi, t, floor=floor_tol(f_old))
                self.ls_evals += trials
                evals += trials
                step = alpha * self.dir + beta * self.s
        self.it += 1
        if t > 0 or mix:
            self.w = self.w + step
            if ctx.solver["search"] == "subspace" and t > 0:
                self.s = step
                self.lm.margins(step, self.xs)
            with ctx.phase("gradient"):
                self.f, self.g = self._gradient()
                self._sums_valid = True
            if mix:
                self.g0 = float(np.linalg.norm(self.g))
        gnorm = float(np.linalg.norm(self.g))
        gap = certified_gap(self.g, self.w, 0.0, self.l2)
        if self.finished:
            pass
        elif gap <= ctx.solver["gap_tol"] * abs(self.f):
            self.finish("certified gap")
        elif gnorm <= ctx.solver["tol"] * self.g0:
            self.finish("gradient tolerance")
        elif f_old - self.f <= floor_tol(f_old) and not (mix and t == 0):
            self.finish("converged: floating-point floor")
        elif self.it >= ctx.solver["max_iter"]:
            self.finish("max_iter")
        info = {"objective": self.f, "grad_norm": gnorm, "step_size": t, "cert_gap": gap,
                "ls_evals": evals, "local_work": self.local_work, "eta": self.eta,
                "fallback": fallbacks, "dvec_allreduces": self.dvec,
                "step_alpha": float(alpha), "step_beta": float(beta)}
        info["show_linesearch_t"] = f"{t:.3g}"
        return info

    def restored(self):
        super().restored()
        self._sums_valid = False
        if self.s is not None:
            self.lm.margins(self.s, self.xs)

    def summary_info(self):
        return {"objective": self.f, "grad_norm": float(np.linalg.norm(self.g)),
                "iterations": self.it, "dvec_allreduces": self.dvec,
                "linesearch_evals": self.ls_evals, "step_size_sgd": self.eta,
                "fallbacks": self.fallbacks,
                "cert_gap": certified_gap(self.g, self.w, 0.0, self.l2),
                "start": self.start, "local_solver": self.solver,
                "stop_reason": self.reason}

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64) of setup and the steps, as tracemalloc traces them.
        Width (36 counted): w, g, the direction, the Allreduce buffers, the mixing round's c, the
        line search's and the local solver's vectors (tron's CG x, r, p, Hp, its step and trial
        points); measured on a dense 200 × 20,000 set: 23 from w = 0, 24 with the mixing start,
        17 with SGD's step-size tuning. The previous step s: 1 more. local_solver = "lbfgs":
        30 more for scipy's history (10 pairs) and work vectors (53 measured in all).
        Rows (13 counted): 7 kept (the ±1 labels, the per-row coefficients, the cached margins
        of w, of the direction and of s, the local problem's margins and its SVRG baselines
        ℓ'ᵢ(wʳ)) and 6 transient, the larger of the plane search's (m = a + αδ + βσ, ℓ'(m),
        ℓ''(m) and the loss's temporaries) and tron's (its copy of the margins, the
        curvatures, X·s and the trial margins, or X·v in a Hessian-vector product): 5 measured
        for either where numpy reuses temporaries of 256 KiB or more in place, 6 below. SGD
        holds `epochs` int64 row orders and one more row instead (counted where local_solver
        = "sgd", or "auto" with start = "zero"). 64 KiB for a step's Python objects and small
        arrays (16 KiB measured). Plus the shard's split CSR layout (models/linear.layout_bytes)."""
        d, rows, s = int(train.d), int(train.rows), job["solver"]
        hist = 30 if s["local_solver"] == "lbfgs" else 0
        sgd = s["local_solver"] == "sgd" or (s["local_solver"] == "auto" and s["start"] == "zero")
        transient = max(6, s["epochs"] + 1) if sgd else 6
        return (8 * ((37 + hist) * d + (7 + transient) * rows) + (64 << 10)
                + layout_bytes(train, job["model"]["values"]))


ALGORITHMS = [FADL]
