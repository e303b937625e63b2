"""Distributed L-BFGS ("SQM" / Terascale style, Agarwal et al.).

Minimises f(w) = (1/n)Σᵢ ℓ(yᵢ wᵀxᵢ) + (l2/2)‖w‖²  (l1 must be 0: the objective must be smooth).

w and the L-BFGS history (m pairs s, y) are replicated on every rank. Each evaluation of
(f, ∇f) is one Allreduce(SUM) of a (d+1)-vector [Σ∇ℓᵢ, Σℓᵢ] over the ranks' shards; the
two-loop recursion and the strong-Wolfe line search run identically everywhere, so all ranks
take the same steps. Stops when ‖∇f‖ ≤ tol·‖∇f(w⁰)‖, after max_iter iterations, or when the
line search can make no more progress (f is then at its floating-point floor).
This is also the reference solver for f* in the linear benchmarks.
"""
import numpy as np

from ..config import Field
from ..models.linear import LinearShard, regularized
from ..models.linesearch import LineSearchFailed, wolfe
from .base import Algorithm


class LBFGS(Algorithm):
    name = "lbfgs"
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    SMOOTH_ONLY = True
    summary = "distributed L-BFGS, one Allreduce of (f, ∇f) per evaluation"
    SOLVER_SCHEMA = {
        "max_iter": Field(int, 500, "iteration cap", min=1, affects_result=False),
        "tol": Field(float, 1e-10, "stop when ‖∇f‖ ≤ tol·‖∇f(w⁰)‖", min=0.0,
                     affects_result=False),
        "memory": Field(int, 10, "number of (s, y) pairs kept", min=1),
    }

    @staticmethod
    def memory_bytes(job, train):
        """Replicated state: w, g, the 2·memory history vectors and a few work vectors."""
        return 8 * train.d * (2 * job["solver"]["memory"] + 6)

    def setup(self):
        ctx = self.ctx
        self.model = LinearShard(ctx.train, ctx.model["loss"])
        self.l2 = ctx.model["l2"]
        self.d = ctx.train.d
        self.n = ctx.train.n
        m = ctx.solver["memory"]
        self.S = np.zeros((m, self.d))
        self.Y = np.zeros((m, self.d))
        self.rho = np.zeros(m)
        self.hist = 0  # pairs stored so far (ring buffer position = hist % m)
        self.w = np.zeros(self.d)
        self.buf = np.empty(self.d + 1)
        self.evals = 0
        self.it = 0
        self.finished = False
        self.reason = ""
        self.f, self.g = self._eval(self.w)
        self.g0 = float(np.linalg.norm(self.g))

    # one evaluation = one Allreduce of a (d+1)-vector
    def _eval(self, w):
        self.model.loss_grad_sums(w, self.buf)
        self.world.allreduce(self.buf)
        self.evals += 1
        g = self.buf[:self.d] / self.n + self.l2 * w
        f = regularized(self.buf[self.d] / self.n, w, self.l2)
        return f, g

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
        solver = self.ctx.solver
        with self.ctx.phase("direction"):
            p = self._direction(self.g)
            dg = float(self.g @ p)
            if not dg < 0:
                p, dg = -self.g, -float(self.g @ self.g)
                self.hist = 0
        t1 = 1.0 if self.hist else min(1.0, 1.0 / max(np.linalg.norm(self.g), 1e-300))

        def phi(t):
            wt = self.w + t * p
            f, g = self._eval(wt)
            return f, float(g @ p), (wt, g)

        f_old = self.f
        try:
            with self.ctx.phase("linesearch"):
                t, f, (w_new, g_new), _ = wolfe(phi, self.f, dg, t1)
        except LineSearchFailed as exc:
            self.finished, self.reason = True, f"line search: {exc}"
            t, f, w_new, g_new = 0.0, self.f, self.w, self.g
        else:
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
        if gnorm <= solver["tol"] * self.g0:
            self.finished, self.reason = True, "gradient tolerance"
        elif self.it >= solver["max_iter"]:
            self.finished, self.reason = True, "max_iter"
        elif f_old - self.f <= 1e-16 * abs(f_old) and t > 0:
            self.finished, self.reason = True, "no further decrease"
        return {"objective": self.f, "grad_norm": gnorm, "step_size": t,
                "dvec_allreduces": self.evals}

    def state(self):
        return {"w": self.w, "f": np.float64(self.f), "g": self.g, "g0": np.float64(self.g0),
                "S": self.S, "Y": self.Y, "rho": self.rho, "hist": np.int64(self.hist),
                "it": np.int64(self.it), "evals": np.int64(self.evals),
                "finished": np.int64(self.finished), "reason": self.reason or "-"}

    def load_state(self, r):
        self.w, self.g, self.S, self.Y, self.rho = (r.get(k) for k in ("w", "g", "S", "Y", "rho"))
        if self.S.shape != (self.ctx.solver["memory"], self.d):
            raise ValueError("history shape mismatch")  # guarded by the job hash
        self.f, self.g0 = float(r.get("f")), float(r.get("g0"))
        self.hist, self.it, self.evals = int(r.get("hist")), int(r.get("it")), int(r.get("evals"))
        self.restore_finish(r, "max_iter", self.it, self.ctx.solver["max_iter"])

    def final_model(self):
        return {"model/w": self.w}

    def summary_info(self):
        return {"objective": self.f, "grad_norm": float(np.linalg.norm(self.g)),
                "iterations": self.it, "dvec_allreduces": self.evals,
                "stop_reason": self.reason}

    @classmethod
    def evaluate(cls, ctx, model):
        return evaluate_linear(ctx, model["model/w"])


def evaluate_linear(ctx, w):
    """Objective and accuracy of a linear model on the test data (or train if none)."""
    shard = ctx.test if ctx.test is not None else ctx.train
    lm = LinearShard(shard, ctx.model["loss"])
    m = lm.margins(w)
    correct, rows = lm.accuracy_counts(w)
    loss, correct = ctx.world.allreduce_scalars(lm.loss_sum(m), float(correct))
    l1 = ctx.model.get("l1", 0.0)
    return {"data": "test" if ctx.test is not None else "train", "rows": shard.n,
            "objective": regularized(loss / shard.n, w, ctx.model["l2"], l1),
            "mean_loss": loss / shard.n, "accuracy": correct / shard.n}


ALGORITHMS = [LBFGS]
