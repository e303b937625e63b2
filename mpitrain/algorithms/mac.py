"""MAC for a deep sigmoidal autoencoder (`mac`), and its baseline `backprop`.

Model (models/nested.py): f = f_{K+1}∘…∘f₁, fₖ(z) = σ(Wₖz + bₖ) for the hidden layers
(sizes [model] hidden), f_{K+1} linear, target y = x. `mac` minimises, for μᵢ = mu0·mu_factorⁱ,
    E_Q(W, Z; μ) = Σₙ ½‖xₙ − f_{K+1}(z_{K,n})‖² + (μ/2) Σₙ Σₖ ‖z_{k,n} − fₖ(z_{k−1,n})‖²,  z₀ = x
one iteration per μ:
  W-step: every unit of every layer is an independent submodel (least squares of σ(wᵀz+b) or
      wᵀz+b against one column of Z_k or X); they circulate round the ring of ranks
      (mac_ring.Ring: Sendrecv per hop, `epochs` SGD passes over every shard, Allgatherv).
  Z-step: per point, `zsteps` gradient steps with backtracking (never increases E_Q); no
      communication.
Z starts from a forward pass of the initial network. Stops after mu_steps, or when the
constraint violation (1/N)Σₙ Σₖ‖zₖ − fₖ(z_{k−1})‖² falls below `tol`.

Two layouts ([solver] layout), the same objective and iterations:
  ring    (default) shards and Z stay put, unit submodels circulate (above); for large N.
  layers  rank g owns a block of layers: their weights and the coordinates of ALL rows
      (mac_layers.Layers; at most one rank per layer). W-step: each rank's units do the SGD
      passes the ring does at P = 1, with the input block Z_{lo−1} received from rank g−1
      (Sendrecv); Z-step: nested.zstep by blocks, exchanging boundary blocks up and gradient
      terms down (Sendrecv) and the per-point E_Q terms (Allgatherv), so its results equal
      the ring layout's at P = 1. For nets too wide for one rank's memory. Per-step test
      error is not computed in this layout (`mpitrain eval` evaluates the final model).

`backprop` minimises the nested error E(W) = Σₙ ½‖xₙ − f(xₙ)‖² directly: data-parallel
minibatch SGD with momentum; each global minibatch is spread over the ranks (each rank's share
of the same number of minibatches per epoch), one Allreduce(SUM) of the gradient per minibatch.
Both start from the same initial weights (seed stream "mac-init"). Reported nested_error is
(1/N)Σₙ ‖xₙ − f(xₙ)‖² for both.
"""
import time

import numpy as np

from ..schema import Field
from ..errors import JobError
from ..models import nested
from ..state import Array, Int, Owned, Rows
from .base import Algorithm
from .mac_layers import Layers
from .mac_ring import Ring

NET_SCHEMA = {
    "hidden": Field("list[int]", [32, 8, 32], "hidden layer sizes (sigmoid units)"),
    "init_scale": Field(float, 1.0, "initial weights ~ N(0, scale²/fan_in)", min=0.0),
}


def _check_hidden(job, source):
    if not job["model"]["hidden"] or min(job["model"]["hidden"]) < 1:
        raise JobError(f"{source}: [model] hidden must be a non-empty list of positive sizes")


def _nested_eval(ctx, layers):
    shard = ctx.test if ctx.test is not None else ctx.train
    X = shard.X.toarray() if shard.sparse else shard.X
    e = ctx.world.allreduce_scalars(nested.nested_error(X, layers))
    return {"data": "test" if ctx.test is not None else "train",
            "nested_error": e / shard.n}


def _layers_model(layers):
    out = {}
    for k, Wb in enumerate(layers):
        out[f"model/W{k + 1}"] = Wb[:, :-1]
        out[f"model/b{k + 1}"] = Wb[:, -1]
    return out


def _model_layers(model):
    layers, k = [], 1
    while f"model/W{k}" in model:
        layers.append(np.hstack([model[f"model/W{k}"], model[f"model/b{k}"][:, None]]))
        k += 1
    return layers


class MAC(Algorithm):
    name = "mac"
    CAPS = {"mu schedule ended": ("it", "mu_steps")}
    FAMILY = "nested"  # what final.h5 describes (model_file.py)
    BLAS_THREADS = True  # GEMM-bound: bit-identical for the same thread count
    summary = "method of auxiliary coordinates, deep sigmoidal autoencoder, units on a ring " \
              "or layers owned by ranks"
    MODEL_SCHEMA = NET_SCHEMA
    SOLVER_SCHEMA = {
        "layout": Field(str, "ring", "ring: shards and Z stay, units circulate (large N); "
                        "layers: ranks own layers and their Z blocks, exchange boundary "
                        "blocks (wide nets; at most one rank per layer)",
                        choices=["ring", "layers"]),
        "mu0": Field(float, 0.5, "first penalty parameter μ", min=0.0),
        "mu_factor": Field(float, 1.5, "geometric factor of the μ schedule", min=1.0),
        "mu_steps": Field(int, 20, "length of the μ schedule (iteration cap)", min=1,
                          affects_result=False),
        "epochs": Field(int, 2, "SGD passes of every unit over every shard per W-step", min=1),
        "batch": Field(int, 32, "SGD minibatch size", min=1),
        "eta": Field(float, 0.5, "unit SGD step η₀ (layer k: c·η₀/(1 + mean‖z_{k−1}‖²), c = 4 for σ units)",
                     min=0.0),
        "decay": Field(float, 1e-3, "step schedule ηₜ = η₀/√(1 + decay·t)", min=0.0),
        "zsteps": Field(int, 5, "gradient steps per point in the Z-step", min=1),
        "tol": Field(float, 0.0, "stop when the mean constraint violation is below tol",
                     min=0.0, affects_result=False),
    }
    DATA = {"binary": False, "dtype": np.float64}

    @classmethod
    def validate_job(cls, job, source):
        _check_hidden(job, source)

    def setup(self):
        ctx, world = self.ctx, self.world
        tr = ctx.train
        self.X = tr.X.toarray() if tr.sparse else tr.X
        self.N, self.D = tr.n, tr.d
        self.sizes = [self.D] + list(ctx.model["hidden"]) + [self.D]
        self.layers = nested.init_layers(self.sizes, ctx.rng("mac-init"),
                                         ctx.model["init_scale"])
        nl = len(self.layers)
        self.counters = {f"L{k}": np.zeros(self.sizes[k + 1], dtype=np.int64)
                         for k in range(nl)}
        self.lay = self.ring = None
        if ctx.solver["layout"] == "layers":
            self._setup_layers()
        else:
            self.Z = nested.forward(self.X, self.layers)[:-1]
            self.ring = Ring(world, {f"L{k}": (self.sizes[k + 1], self.sizes[k] + 1)
                                     for k in range(nl)})
        self.it = 0
        self.finished = False
        self.reason = ""
        self.last = {}

    def _setup_layers(self):
        """Layer ownership: gather every shard's rows (Allgatherv), keep X where layer 0 or
        the last layer is owned, the owned layers, their counters and Z blocks."""
        world = self.world
        counts = np.array(world.gather_obj(self.X.shape[0]), dtype=np.int64)
        X = world.allgatherv(np.ascontiguousarray(self.X), counts)
        lay = self.lay = Layers(world, self.sizes, X.shape[0])
        K = lay.K
        self.Z, z = [None] * K, X
        for k in range(min(lay.hi, K)):
            z = nested.layer(self.layers[k], z, False)
            if lay.owns(k):
                self.Z[k] = z
        for k in range(lay.nl):
            if not lay.owns(k):
                self.layers[k] = None
                self.counters[f"L{k}"] = None
        self.X = X if lay.owns(0) or lay.owns(K) else None

    @property
    def mu(self):
        s = self.ctx.solver
        return s["mu0"] * s["mu_factor"] ** self.it

    def _train(self, name, ids, Wm, t, epoch, hop):
        s = self.ctx.solver
        k = int(name[1:])
        K = len(self.layers) - 1
        order = self.ctx.rng("mac-sgd", self.it, epoch, hop,
                             self.world.rank).permutation(self.X.shape[0])
        Zin = self.X if k == 0 else self.Z[k - 1]
        T = (self.X if k == K else self.Z[k])[:, ids]
        t0 = time.perf_counter()
        nested.unit_sgd(Wm, t, Zin, T, order, s["batch"], self.eta[k], s["decay"], k < K)
        self._t_compute += time.perf_counter() - t0

    def step(self):
        if self.lay is not None:
            return self._step_layers()
        ctx, world, s = self.ctx, self.world, self.ctx.solver
        mu = self.mu
        params = {f"L{k}": Wb for k, Wb in enumerate(self.layers)}
        # step of layer k: eta / (1 + mean‖z_{k−1}‖²) (one Allreduce of K+1 scalars)
        ins = [self.X] + self.Z
        sq = world.allreduce_scalars(*[float(np.einsum("ij,ij->", z, z)) for z in ins])
        sq = sq if isinstance(sq, tuple) else (sq,)
        # sigmoid units: 4× (σ' ≤ 1/4 bounds their curvature 4× below a linear unit's)
        K = len(self.layers) - 1
        self.eta = [s["eta"] * (1.0 if k == K else 4.0) / (1.0 + q / self.N)
                    for k, q in enumerate(sq)]
        self._t_compute = 0.0
        c0 = world.seconds
        self.ring.w_step(params, self.counters, s["epochs"], self._train)
        ctx.phase_seconds["wstep_compute"] = ctx.phase_seconds.get("wstep_compute", 0.0) \
            + self._t_compute
        ctx.phase_seconds["ring_comm"] = ctx.phase_seconds.get("ring_comm", 0.0) \
            + world.seconds - c0
        with ctx.phase("zstep"):
            acc = nested.zstep(self.X, self.Z, self.layers, mu, s["zsteps"])
        with ctx.phase("objective"):
            rec, viol = nested.per_point_eq(self.X, self.Z, self.layers, mu)
            nest = nested.nested_error(self.X, self.layers)
            rec, viol, nest, acc = world.allreduce_scalars(float(rec.sum()), float(viol.sum()),
                                                           nest, float(acc))
        info = {"ring_hops": self.ring.hops}
        if ctx.test is not None:
            info["test_nested_error"] = _nested_eval(ctx, self.layers)["nested_error"]
        return self._end_step(mu, rec, viol, nest, acc, info)

    def _end_step(self, mu, rec, viol, nest, acc, extra):
        s = self.ctx.solver
        self.it += 1
        info = {"mu": mu, "objective": rec + 0.5 * mu * viol, "nested_error": nest / self.N,
                "violation": viol / self.N, "zstep_accepted": int(acc), **extra}
        if viol / self.N < s["tol"]:
            self.finish("constraint violation below tol")
        elif self.it >= s["mu_steps"]:
            self.finish("mu schedule ended")
        self.last = info
        return info

    def _step_layers(self):
        """One MAC iteration in the layer layout. Collectives: `up` (2 Sendrecv: the
        boundary block Z_{hi−1} to rank g+1) for the W-step input; one Allreduce of the
        per-layer input norms; in the Z-step (lay.zstep) `up`/`down` Sendrecv pairs and
        Allgatherv of per-point terms per gradient step and trial; for the objective one
        `up`, the terms' Allgatherv, the forward pipeline's Sendrecv rounds and one
        Allreduce (lay.nested_error)."""
        ctx, world, s, lay = self.ctx, self.world, self.ctx.solver, self.lay
        mu, K = self.mu, lay.K
        with ctx.phase("exchange"):
            zin = lay.up(lay.top(self.Z))
        sq = np.zeros(lay.nl)
        for k in range(lay.lo, lay.hi):
            z = lay.inp(k, self.X, self.Z, zin)
            sq[k] = np.einsum("ij,ij->", z, z)
        world.allreduce(sq)
        self.eta = [s["eta"] * (1.0 if k == K else 4.0) / (1.0 + q / self.N)
                    for k, q in enumerate(sq.tolist())]
        with ctx.phase("wstep_compute"):
            for k in range(lay.lo, lay.hi):   # the SGD passes of the ring at P = 1
                Zin = lay.inp(k, self.X, self.Z, zin)
                T = self.X if k == K else self.Z[k]
                t = self.counters[f"L{k}"]
                for epoch in range(s["epochs"]):
                    order = ctx.rng("mac-sgd", self.it, epoch, 0, 0).permutation(lay.n)
                    nested.unit_sgd(self.layers[k], t, Zin, T, order, s["batch"],
                                    self.eta[k], s["decay"], k < K)
        with ctx.phase("zstep"):
            acc = lay.zstep(self.X, self.Z, self.layers, mu, s["zsteps"])
        with ctx.phase("objective"):
            zin = lay.up(lay.top(self.Z))
            r, v, _ = lay.terms(self.X, self.Z, zin, self.layers, mu)
            nest = lay.nested_error(self.X, self.layers)
        return self._end_step(mu, float(r.sum()), float(v.sum()), nest, acc,
                              {"layer_owner_ranks": lay.G})

    def state_fields(self):
        out = dict(super().state_fields(), it=Int())
        if self.lay is not None:   # each layer and its Z block saved from its owner
            for k in range(self.lay.nl):
                own = Owned(lambda alg, k=k: int(alg.lay.owner[k]))
                out[f"layers/{k}"] = own
                out[f"counters/L{k}"] = own
                if k < self.lay.K:
                    out[f"Z/{k}"] = own
            return out
        out["ring/hops"] = Int()
        for k in range(len(self.layers)):
            out[f"layers/{k}"] = Array()
            out[f"counters/L{k}"] = Array()
        for k in range(len(self.Z)):
            out[f"Z/{k}"] = Rows()
        return out

    def final_model(self):
        if self.lay is not None:   # collective: every layer from its owner (Bcast)
            return _layers_model(self.lay.replicate(self.layers))
        return _layers_model(self.layers)

    def summary_info(self):
        out = {"iterations": self.it, "stop_reason": self.reason}
        out.update({k: v for k, v in self.last.items() if isinstance(v, (int, float))})
        return out

    @classmethod
    def evaluate(cls, ctx, model):
        return _nested_eval(ctx, _model_layers(model))

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64): the data densified when CSR, the auxiliary
        coordinates Z and the forward passes over this rank's rows (measured: about
        four values per unit and row), and every layer's weights
        three times (the model, the ring's send and receive copies)."""
        sizes, rows = _sizes(job, train), int(train.rows)
        dense = rows * int(train.d) if train.sparse else 0
        return 8 * (dense + 4 * rows * sum(sizes) + 3 * _weights(sizes))


class Backprop(Algorithm):
    name = "backprop"
    FAMILY = "nested"  # what final.h5 describes (model_file.py)
    BLAS_THREADS = True
    summary = "data-parallel minibatch SGD (momentum) on the nested autoencoder objective"
    MODEL_SCHEMA = NET_SCHEMA
    SOLVER_SCHEMA = {
        "epochs": Field(int, 50, "epochs (one step = one epoch)", min=1, affects_result=False),
        "batch": Field(int, 64, "global minibatch size", min=1),
        "lr": Field(float, 0.05, "step size (on the minibatch mean gradient)", min=0.0),
        "momentum": Field(float, 0.9, "heavy-ball momentum", min=0.0),
    }
    DATA = {"binary": False, "dtype": np.float64}

    @classmethod
    def validate_job(cls, job, source):
        _check_hidden(job, source)

    def setup(self):
        ctx = self.ctx
        tr = ctx.train
        self.X = tr.X.toarray() if tr.sparse else tr.X
        self.N, self.D = tr.n, tr.d
        self.sizes = [self.D] + list(ctx.model["hidden"]) + [self.D]
        self.layers = nested.init_layers(self.sizes, ctx.rng("mac-init"),
                                         ctx.model["init_scale"])
        self.vel = [np.zeros_like(W) for W in self.layers]
        self.shapes = [W.shape for W in self.layers]
        self.nparam = sum(W.size for W in self.layers)
        self.buf = np.empty(self.nparam + 2)
        self.epoch = 0
        self.last = {}

    def step(self):
        ctx, world, s = self.ctx, self.world, self.ctx.solver
        nb = max(1, -(-self.N // s["batch"]))  # same number of minibatches on every rank
        order = ctx.rng("backprop", self.epoch, world.rank).permutation(self.X.shape[0])
        parts = np.array_split(order, nb)
        loss_sum = 0.0
        for idx in parts:
            with ctx.phase("gradient"):
                if len(idx):
                    grads, loss = nested.backprop_grad(self.X[idx], self.layers)
                    off = 0
                    for g in grads:
                        self.buf[off:off + g.size] = g.reshape(-1)
                        off += g.size
                else:
                    loss = 0.0
                    self.buf[:self.nparam] = 0.0
                self.buf[self.nparam] = loss
                self.buf[self.nparam + 1] = len(idx)
            with ctx.phase("allreduce"):
                world.allreduce(self.buf)
            with ctx.phase("update"):
                m = max(self.buf[self.nparam + 1], 1.0)
                loss_sum += self.buf[self.nparam]
                off = 0
                for k, W in enumerate(self.layers):
                    g = self.buf[off:off + W.size].reshape(W.shape) / m
                    off += W.size
                    self.vel[k] *= s["momentum"]
                    self.vel[k] -= s["lr"] * g
                    W += self.vel[k]
        self.epoch += 1
        with ctx.phase("objective"):
            nest = world.allreduce_scalars(nested.nested_error(self.X, self.layers))
        info = {"objective": 0.5 * nest, "nested_error": nest / self.N,
                "minibatch_loss": 2.0 * loss_sum / self.N, "allreduces": nb}
        if ctx.test is not None:
            info["test_nested_error"] = _nested_eval(ctx, self.layers)["nested_error"]
        self.last = info
        return info

    @property
    def done(self):
        return self.epoch >= self.ctx.solver["epochs"]

    def state_fields(self):
        out = dict(super().state_fields(), epoch=Int())
        for k in range(len(self.layers)):
            out[f"layers/{k}"] = Array()
            out[f"vel/{k}"] = Array()
        return out

    def final_model(self):
        return _layers_model(self.layers)

    def summary_info(self):
        out = {"epochs": self.epoch}
        out.update({k: v for k, v in self.last.items() if isinstance(v, (int, float))})
        return out

    @classmethod
    def evaluate(cls, ctx, model):
        return _nested_eval(ctx, _model_layers(model))

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64): the data densified when CSR, the weights with their
        velocities and the flat Allreduce buffer, a minibatch's forward and backward
        passes, and the evaluation's forward pass over this rank's rows."""
        sizes = _sizes(job, train)
        dense = int(train.rows) * int(train.d) if train.sparse else 0
        batch = int(job["solver"]["batch"])
        return 8 * (dense + 3 * _weights(sizes) + (3 * batch + 2 * int(train.rows)) * sum(sizes))


def _sizes(job, train):
    return [int(train.d)] + [int(h) for h in job["model"]["hidden"]] + [int(train.d)]


def _weights(sizes):
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


ALGORITHMS = [MAC, Backprop]
