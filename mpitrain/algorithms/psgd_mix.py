"""Parameter-mixing SGD (Zinkevich et al. / Mann et al.): the baseline FADL improves on.

Minimises (approximately) f(w) = (1/n)Σᵢ ℓ(yᵢ wᵀxᵢ) + (l2/2)‖w‖²   (l1 = 0). Labels as
fadl's (models/glm.py): two values of any kind, real ones with loss = "squared", more than
two classes one-vs-rest (algorithms/multiclass.py).

Round r: every rank runs `epochs` SGD passes from the shared w on its own shard's objective
f_p(w) = (1/n_p)Σ_{i∈I_p} ℓᵢ(w) + (l2/2)‖w‖² (the FADL kernel with no correction term), with
step η_r = η/(1 + decay·r); then w = (1/P)Σ_p w_p: one Allreduce(SUM) of a d-vector.
f(w) for the metrics costs one Allreduce of one scalar (the local loss sums).
Because f_p's minimiser differs from f's and a constant step leaves SGD noise, the average
stalls at a neighbourhood of the optimum (the property FADL's paper points out).

η = 0 (default) tunes it on round 0 exactly as FADL does (k/L_max, lowest local objective,
Allreduce MIN over ranks). Stops after max_iter rounds. State: w, the round, η, counters;
resuming at another P is allowed.
"""
import numpy as np

from ..schema import Field
from ..errors import JobError
from ..models import glm
from ..models.fadl_local import LocalProblem, orders_for
from ..models.linear import LinearShard, layout_bytes, regularized
from ..state import Array, Float, Int
from .linear_family import LinearAlgorithm


class PSGDMix(LinearAlgorithm):
    name = "psgd-mix"
    SMOOTH_ONLY = True
    DATA = {"binary": False, "dtype": np.float64}  # labels decided by models/glm.py
    STATE = {"w": Array(), "it": Int(), "eta": Float(), "dvec": Int(),
             "f": Float(optional=True)}
    CAPS = {"max_iter": ("it", "max_iter")}
    summary = "parameter-mixing SGD: local SGD epochs, then average w (one Allreduce/round)"
    SOLVER_SCHEMA = {
        "max_iter": Field(int, 100, "number of rounds (communication rounds)", min=1,
                          affects_result=False),
        "epochs": Field(int, 1, "SGD epochs over the local shard per round", min=1),
        "step_size": Field(float, 0.0, "SGD step; 0 = tune on round 0", min=0.0),
        "decay": Field(float, 0.0, "step of round r is step_size/(1 + decay·r)", min=0.0),
    }

    @classmethod
    def validate_job(cls, job, source):
        s = job["solver"]
        if s["step_size"] * job["model"]["l2"] >= 1.0:
            raise JobError(f"{source}: [solver] step_size = {s['step_size']} is too large: "
                           f"step_size·l2 must be < 1")

    def setup(self):
        ctx = self.ctx
        self.obj = glm.objective(ctx, self.name)  # two classes → ±1, or real labels
        self.lm = LinearShard(ctx.train, ctx.model["loss"], ctx.model["values"])
        self.l2 = ctx.model["l2"]
        self.n, self.d = ctx.train.n, ctx.train.d
        self.local = LocalProblem(self.lm, self.l2, 0.0, rescale=True)
        self.local.center(np.zeros(self.d), np.zeros(self.d), 0.0)
        self.w = np.zeros(self.d)
        self.eta = float(ctx.solver["step_size"])
        self.it = 0
        self.dvec = 0
        self.f = None
        self.finished = False

    def step(self):
        ctx, world, sv = self.ctx, self.world, self.ctx.solver
        orders = orders_for(ctx.rng("psgd-mix", self.it, ctx.train.start), ctx.train.rows,
                            sv["epochs"])
        with ctx.phase("local"):
            if self.eta == 0.0:
                eta_p, wp, _ = self.local.tune(self.w, orders)
                self.eta = float(world.allreduce_scalars(eta_p, op="min"))
                if self.eta != eta_p:
                    wp = self.local.sgd(self.w, self.eta, orders)
            else:
                wp = self.local.sgd(self.w, self.eta / (1.0 + sv["decay"] * self.it), orders)
        with ctx.phase("allreduce_w"):
            world.allreduce(wp)
            self.dvec += 1
            wp /= world.size
        self.w = wp
        self.it += 1
        with ctx.phase("objective"):
            m = self.lm.margins(self.w)
            loss = world.allreduce_scalars(self.lm.loss_sum(m))
            self.f = regularized(loss / self.n, self.w, self.l2)
        if self.it >= sv["max_iter"]:
            self.finish("max_iter")
        return {"objective": self.f, "eta": self.eta / (1.0 + sv["decay"] * (self.it - 1)),
                "local_epochs": sv["epochs"], "dvec_allreduces": self.dvec}

    def summary_info(self):
        return {"objective": self.f, "rounds": self.it, "dvec_allreduces": self.dvec,
                "step_size_sgd": self.eta}

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64): w, the averaging buffer, the SGD kernel's lazy
        iterate and gradient (about 11 vectors of the width, measured), and per-row margins and orders
        of this rank's shard, and the shard's split CSR layout (models/linear.layout_bytes)."""
        return (8 * (11 * int(train.d) + 3 * int(train.rows))
                + layout_bytes(train, job["model"]["values"]))


ALGORITHMS = [PSGDMix]
