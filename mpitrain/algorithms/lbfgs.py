"""Distributed L-BFGS ("SQM" / Terascale style, Agarwal et al.): the linear family's
baseline and reference solver.

Minimises f(w) = (1/n)Σᵢ ℓ(yᵢ, wᵀxᵢ) + (l2/2)‖w‖²  (l1 must be 0: the objective must be smooth;
ℓ from models/losses.py). With [model] intercept, more than two label values (multinomial or
one-vs-rest) or real labels (loss = "squared"), f is models/glm.py's objective (θ = [W, b],
one (d·K + K + 1)-vector Allreduce per evaluation) and the line search is the plain one (each
trial a full evaluation); labels of any value are classes in sorted order (final.h5 `classes`).

w and the L-BFGS history (m pairs s, y) are replicated on every rank; the two-loop recursion and
the strong-Wolfe line search run identically everywhere, so all ranks take the same steps.
Per iteration, with `linesearch = "cached"` (default):
 1. direction p from the two-loop recursion; this rank's margins δ = Xp (no collective);
 2. line-search trials φ(t) = f(w + t·p), φ'(t) from the cached margins a = Xw and δ: one
    Allreduce of 2 scalars per trial;
 3. at the accepted w + t·p: one Allreduce(SUM) of the (d+1)-vector [Σ∇ℓᵢ, Σℓᵢ] → f, ∇f.
So an iteration costs ONE d-vector Allreduce whatever the line search does. With
`linesearch = "evaluate"` every trial is a full evaluation (one (d+1)-vector Allreduce each):
the plain variant, kept for comparison.

Stops (reason in summary.json and the console's last line):
  "certified gap"   ‖∇f‖²/(2·l2) ≤ gap_tol·|f|: f(w) − f* ≤ gap_tol·|f| is certified
                    (f is l2-strongly convex), no reference needed;
  "gradient tolerance"  ‖∇f‖ ≤ tol·‖∇f(w⁰)‖;
  "converged: floating-point floor"  the decrease of f, or every line-search trial's change of
                    f, is below a few ulps of f: nothing more can be resolved in float64;
  "line search: ..."  a genuine line-search failure; "max_iter".
metrics.jsonl records cert_gap = ‖∇f‖²/(2·l2) at every iteration.
"""
import numpy as np

from ..schema import Field
from ..models import glm
from ..models.linear import layout_bytes
from ..models.linesearch import LineSearchFailed, wolfe
from ..state import Array, Float, Int
from .linear_family import LinearAlgorithm, certified_gap, floor_tol


class LBFGS(LinearAlgorithm):
    name = "lbfgs"
    SMOOTH_ONLY = True
    DATA = {"binary": False, "dtype": np.float64}  # labels decided by models/glm.py
    STATE = {"w": Array(), "f": Float(), "g": Array(), "g0": Float(), "S": Array(),
             "Y": Array(), "rho": Array(), "hist": Int(), "it": Int(), "evals": Int(),
             "ls_evals": Int()}
    CAPS = {"max_iter": ("it", "max_iter")}
    summary = "distributed L-BFGS, one Allreduce of (f, ∇f) per iteration (cached-margin " \
              "line search)"
    SOLVER_SCHEMA = {
        "max_iter": Field(int, 500, "iteration cap", min=1, affects_result=False),
        "tol": Field(float, 1e-8, "stop when ‖∇f‖ ≤ tol·‖∇f(w⁰)‖", min=0.0,
                     affects_result=False),
        "gap_tol": Field(float, 1e-10, "stop when the certified gap ‖∇f‖²/(2·l2) ≤ "
                         "gap_tol·|f| (0 = off)", min=0.0, affects_result=False),
        "memory": Field(int, 10, "number of (s, y) pairs kept", min=1),
        "linesearch": Field(str, "cached", "line-search trials: 'cached' (2-scalar Allreduce "
                            "on cached margins) or 'evaluate' (a full (f, ∇f) Allreduce each)",
                            choices=["cached", "evaluate"]),
    }

    @staticmethod
    def memory_bytes(job, train):
        """Replicated state: w, g, the 2·memory history vectors and a few work vectors, and
        the shard's split CSR layout (models/linear.layout_bytes)."""
        return 8 * train.d * (2 * job["solver"]["memory"] + 6) + layout_bytes(
            train, job["model"]["values"])

    def setup(self):
        ctx = self.ctx
        self.obj = glm.objective(ctx, self.name)  # binary, multiclass or regression
        self.model = self.obj.lm
        self.l2 = ctx.model["l2"]
        self.d = self.obj.d  # length of θ: d, or d·K (+ K intercepts)
        self.n = ctx.train.n
        m = ctx.solver["memory"]
        self.S = np.zeros((m, self.d))
        self.Y = np.zeros((m, self.d))
        self.rho = np.zeros(m)
        self.hist = 0  # pairs stored so far (ring buffer position = hist % m)
        self.w = np.zeros(self.d)
        self.margins = np.empty(ctx.train.rows)   # Xw of this rank's rows (cache)
        self.delta = np.empty(ctx.train.rows)     # Xp of the current direction
        self.evals = 0      # d-vector Allreduces
        self.ls_evals = 0   # line-search trials (2-scalar Allreduces with "cached")
        self.it = 0
        buf = self.obj.sums(self.w, self.margins)
        self.world.allreduce(buf)
        self.evals += 1
        self.f, self.g = self.obj.value_grad(buf, self.w)
        self.g0 = float(np.linalg.norm(self.g))
        if self.g0 == 0.0:
            self.finish("gradient is zero at w = 0")

    def restored(self):
        super().restored()
        self.model.margins(self.w, self.margins)  # the cache (no collective)

    def _direction(self, g):
        m = self.S.shape[0]
        k = min(self.hist, m)
        q = -g.copy()
        alpha = np.zeros(m)
        order = [(self.hist - 1 - j) % m for j in range(k)]
        for i in order:
            alpha[i] = self.rho[i] * (self.S[i] @ q)
            q -= alpha[i] * self.Y[i]
        if k:
            last = order[0]
            q *= (self.S[last] @ self.Y[last]) / (self.Y[last] @ self.Y[last])
        for i in reversed(order):
            beta = self.rho[i] * (self.Y[i] @ q)
            q += (alpha[i] - beta) * self.S[i]
        return q

    def step(self):
        solver, world, obj = self.ctx.solver, self.world, self.obj
        with self.ctx.phase("direction"):
            p = self._direction(self.g)
            dg = float(self.g @ p)
            if not dg < 0:
                p, dg = -self.g, -float(self.g @ self.g)
                self.hist = 0
        t1 = 1.0 if self.hist else min(1.0, 1.0 / max(np.linalg.norm(self.g), 1e-300))
        floor = floor_tol(self.f)
        cached = solver["linesearch"] == "cached" and hasattr(obj, "line")  # glm: plain
        if cached:
            self.model.margins(p, self.delta)
            line = obj.line(self.margins, self.delta, self.w, p)

            def phi(t):  # one Allreduce of 2 scalars
                lf, lg = world.allreduce_scalars(*line.local(t))
                f, d = line.value(t, lf, lg)
                return f, d, None
        else:
            def phi(t):  # one Allreduce of a (d+1)-vector
                wt = self.w + t * p
                buf = obj.sums(wt)
                world.allreduce(buf)
                self.evals += 1
                f, g = obj.value_grad(buf, wt)
                return f, float(g @ p), (wt, g)

        f_old = self.f
        t, evals = 0.0, 0
        try:
            with self.ctx.phase("linesearch"):
                t, f, aux, evals = wolfe(phi, self.f, dg, t1, floor=floor,
                                       predict=self.hist > 0)
        except LineSearchFailed as exc:
            evals = exc.evals
            self.finish("converged: floating-point floor" if exc.at_floor
                        and np.isfinite(self.g).all() else f"line search: {exc}")
        self.ls_evals += evals
        if t > 0:
            with self.ctx.phase("gradient"):
                if cached:  # one Allreduce of a (d+1)-vector at the accepted point
                    w_new = self.w + t * p
                    buf = obj.sums(w_new, self.margins)
                    world.allreduce(buf)
                    self.evals += 1
                    f, g_new = obj.value_grad(buf, w_new)
                else:
                    w_new, g_new = aux
                    self.model.margins(w_new, self.margins)
            s = w_new - self.w
            yv = g_new - self.g
            sy = float(s @ yv)
            if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)):
                i = self.hist % self.S.shape[0]
                self.S[i], self.Y[i], self.rho[i] = s, yv, 1.0 / sy
                self.hist += 1
            self.w, self.f, self.g = w_new, f, g_new
        self.it += 1
        gnorm = float(np.linalg.norm(self.g))
        gap = certified_gap(self.g, self.w, 0.0, self.l2)
        if self.finished:
            pass
        elif gap <= solver["gap_tol"] * abs(self.f):
            self.finish("certified gap")
        elif gnorm <= solver["tol"] * self.g0:
            self.finish("gradient tolerance")
        elif f_old - self.f <= floor:
            self.finish("converged: floating-point floor")
        elif self.it >= solver["max_iter"]:
            self.finish("max_iter")
        return {"objective": self.f, "grad_norm": gnorm, "step_size": t, "cert_gap": gap,
                "ls_evals": evals, "dvec_allreduces": self.evals}

    def summary_info(self):
        return {"objective": self.f, "grad_norm": float(np.linalg.norm(self.g)),
                "cert_gap": certified_gap(self.g, self.w, 0.0, self.l2),
                "iterations": self.it, "dvec_allreduces": self.evals,
                "linesearch_evals": self.ls_evals, "stop_reason": self.reason}


ALGORITHMS = [LBFGS]
