"""Synchronized layer-wise pre-training of a stacked autoencoder (SLP, Santara et al. 2016).

Objective of layer k (as in sae-greedy): min (1/n)Σᵢ ℓₖ(out(act(h̃ₖ₋₁,ᵢWₖ + bₖ)Vₖ + cₖ), hₖ₋₁,ᵢ)
with hₖ₋₁ = encₖ₋₁∘…∘enc₁(x) computed from the CURRENT lower encoders, which keep changing
while layer k trains (that is the method).

Layout: ranks own layers. `layout()` gives every layer (group of layers) a contiguous block of
ranks with a cost model per round (`group_cost`: 5τ·dₖ₋₁dₖ for τ epochs of training + one
regeneration of the group's inputs, Σⱼ<top dⱼ₋₁dⱼ): P ≥ K: one rank per layer, the extra ranks go one by one to the layer
with the largest cost per rank (they train it data-parallel on a sub-communicator,
Allreduce of its gradients there); P < K: contiguous runs of layers, partitioned to minimise
the largest group cost (one rank trains several light layers). Every group holds the whole
training set, block-split over its members.

Round r (one step()):
  1. layer k is active when r ≥ k−1 (pipeline fill: it starts after layer k−1's first τ
     epochs) and it has done fewer than E epochs;
  2. each group regenerates the inputs hₖ₋₁ of its active layers from the encoders of the
     last synchronisation (only when a lower layer changed), locally, no communication;
  3. each group trains its active layers τ epochs (min with what is left of E);
  4. synchronisation (all ranks): a passive wait for every rank (Ibarrier polled with
     sleeps: no busy-waiting), then for each active layer its group's first rank Bcasts
     the layer's parameters (encoder and decoder: weights travel, not representations),
     then one Allreduce(SUM) of the per-layer maturity summary (epochs done, training error)
     and of every rank's time table (AEBase.rank_times);
  5. the unrolled test error enc₁..enc_k, dec_k..dec₁ of the started layers is evaluated
     (Allreduce of the sums); pre-training stops when every layer has done E epochs or when
     the K-layer error reaches [solver] target_error.
Because every layer trains on inputs from the last synchronisation, the result does not
depend on the layout (up to float32 summation order in the data-parallel groups), and with
one rank per layer layer 1 is bit-identical to sae-greedy's layer 1 at P = 1.
"""
import time

import numpy as np

from ..comm import ACTIVITY
from ..schema import Field
from ..models import autoencoder as AE
from ..state import Array, Int, Owned
from .ae_common import SOLVER_SCHEMA, AEBase, Trainer, load_group_train


WAIT_POLL = 5e-4  # seconds between tests of a passive wait


def passive_barrier(world):
    """Wait for every rank of `world` without spinning: Ibarrier, then Test and sleep
    WAIT_POLL s until it completes (a busy-polling blocking collective takes a core from
    the ranks still computing). Marked as a collective for the stall monitor."""
    if world.size == 1:
        return
    t0 = time.perf_counter()
    req = world.comm.Ibarrier()
    ACTIVITY.collective, ACTIVITY.since = "Ibarrier", time.monotonic()
    try:
        while not req.Test():
            time.sleep(WAIT_POLL)
    finally:
        ACTIVITY.collective, ACTIVITY.since = None, time.monotonic()
    world._account(0, t0)


def group_cost(dims, layers, tau=1):
    """Multiply-adds per training row of one round for a group owning `layers` (contiguous):
    τ epochs of 5 GEMMs per layer (encoder and decoder forward, decoder-weight gradient,
    back-propagation to the code, encoder-weight gradient; none to the frozen input) plus
    one regeneration of the group's inputs, enc₁..enc_{top−1} once (the inputs of the upper
    layers are the lower ones' codes, computed on the way)."""
    c = [dims[k - 1] * dims[k] for k in range(1, len(dims))]
    return 5 * tau * sum(c[k - 1] for k in layers) + sum(c[:max(layers) - 1])


def layout(dims, P, tau=1):
    """[(first_rank, nranks, [layers])] for a stack of widths `dims` on P ranks, minimising
    the largest per-rank group_cost (a data-parallel group of r ranks divides it by r)."""
    K = len(dims) - 1
    cost = [group_cost(dims, [k + 1], tau) for k in range(K)]
    if P >= K:
        ranks = [1] * K
        for _ in range(P - K):
            j = max(range(K), key=lambda i: (cost[i] / ranks[i], -i))
            ranks[j] += 1
        out, first = [], 0
        for k in range(K):
            out.append((first, ranks[k], [k + 1]))
            first += ranks[k]
        return out
    # P < K: contiguous partition of the layers into P groups minimising the max group cost
    inf = float("inf")
    best = [[inf] * (K + 1) for _ in range(P + 1)]
    cut = [[0] * (K + 1) for _ in range(P + 1)]
    best[0][0] = 0.0
    for p in range(1, P + 1):
        for j in range(1, K + 1):
            for i in range(p - 1, j):
                v = max(best[p - 1][i], group_cost(dims, range(i + 1, j + 1), tau))
                if v < best[p][j]:
                    best[p][j], cut[p][j] = v, i
    bounds, j = [], K
    for p in range(P, 0, -1):
        i = cut[p][j]
        bounds.append((i, j))
        j = i
    bounds.reverse()
    return [(p, 1, list(range(i + 1, j + 1))) for p, (i, j) in enumerate(bounds)]


class SLP(AEBase):
    """Synchronized layer-wise pre-training: ranks own layers, weights travel every τ epochs."""
    name = "slp"
    FAMILY = "autoencoder"  # what final.h5 describes (model_file.py)
    summary = "synchronized layer-wise autoencoder pre-training (ranks own layers)"
    SOLVER_SCHEMA = dict(
        SOLVER_SCHEMA,
        sync_every=Field(int, 1, "τ: epochs between synchronisations", min=1),
        target_error=Field(float, 0.0, "stop pre-training when the unrolled K-layer test "
                           "reconstruction error is ≤ this (0 = run E epochs per layer)",
                           min=0.0, affects_result=False))

    def setup(self):
        super().setup()
        ctx = self.ctx
        tau = ctx.solver["sync_every"]
        self.groups = layout(self.dims, self.world.size, tau)
        self.owner = {}
        for gi, (first, size, layers) in enumerate(self.groups):
            for k in layers:
                self.owner[k] = first
            if first <= self.world.rank < first + size:
                self.gi = gi
        first, size, self.mine = self.groups[self.gi]
        if len(self.groups) == 1:
            self.gworld, self.GX, self.glo = self.world, self.X, ctx.train.start
        else:
            self.gworld = self.world.split(self.gi)
            shard = load_group_train(ctx, self.gworld)
            self.GX, self.glo = AE.as_input(shard.X), shard.start
        self.epochs = [0] * self.K
        self.errs = [float("nan")] * self.K
        self.round = 0
        self.trainers = {}
        self.H, self.Hver = {}, {}
        self.summary_buf = np.zeros(2 * self.K)

    def _trainer(self, k):
        tr = self.trainers.get(k)
        if tr is None:
            net = AE.layer_net(k, self.act, self.loss, self.tied)
            tr = Trainer(self, (k,), net, self.layer_names(k), self.gworld, self.H[k],
                         self.glo, self.ntrain, mom=f"L{k}")
            self.trainers[k] = tr
        tr.X = self.H[k]
        return tr

    def _regen(self, k):
        ver = tuple(self.epochs[:k - 1])
        if self.Hver.get(k) == ver:
            return
        prev = k - 1
        if prev in self.H and self.Hver.get(prev) == tuple(self.epochs[:prev - 1]):
            self.H[k] = AE.encode(self.P, self.H[prev], [prev], self.act)
        else:
            self.H[k] = AE.encode(self.P, self.GX, list(range(1, k)), self.act)
        self.Hver[k] = ver

    def step(self):
        if self.phase_name != "pretrain":
            return self.post_step()
        s = self.ctx.solver
        E, tau, r = s["epochs"], s["sync_every"], self.round
        active = [k for k in range(1, self.K + 1) if r >= k - 1 and self.epochs[k - 1] < E]
        todo = {k: min(tau, E - self.epochs[k - 1]) for k in active}
        mine = [k for k in active if k in self.mine]
        with self.ctx.phase("regen"):
            for k in mine:
                self._regen(k)
        self.summary_buf[:] = 0.0
        with self.ctx.phase("train"):
            for k in mine:
                tr = self._trainer(k)
                for e in range(todo[k]):
                    loss = tr.run(self.epochs[k - 1] + e, 0, tr.batches) / self.ntrain
                if self.gworld.rank == 0:
                    self.summary_buf[k - 1] = self.epochs[k - 1] + todo[k]
                    self.summary_buf[self.K + k - 1] = loss
        # synchronisation. A rank that finished its round early waits passively for the
        # others (Ibarrier, tested every WAIT_POLL s, sleeping in between: its core goes to
        # the bottleneck rank instead of spinning in a blocking collective), then the
        # owners Bcast their layers (all ranks present: a fast transfer), then one
        # Allreduce carries the layer-maturity summaries with every rank's time table.
        with self.ctx.phase("wait"):
            passive_barrier(self.world)
        with self.ctx.phase("exchange"):
            for k in active:
                self.world.bcast(self.blocks[f"L{k}"].flat, root=self.owner[k])
        times = self.rank_times(extra=self.summary_buf)
        for k in active:
            self.epochs[k - 1] = int(self.summary_buf[k - 1])
            self.errs[k - 1] = float(self.summary_buf[self.K + k - 1])
        for k in list(self.H):  # inputs of finished layers are not needed any more
            if self.epochs[k - 1] >= E:
                del self.H[k], self.Hver[k]
        self.round += 1
        started = min(self.K, self.round)
        info = {"round": self.round, "recon_layers": started,
                "show_epochs": " ".join(f"{e}" for e in self.epochs)}
        info.update(times)
        for k in range(1, self.K + 1):
            info[f"epochs_L{k}"] = self.epochs[k - 1]
            info[f"err_L{k}"] = self.errs[k - 1]
        finished = min(self.epochs) >= E
        target = s["target_error"]
        ev = s["eval_every"]
        if finished or target > 0 or (ev and self.round % ev == 0):
            info["recon"] = self.recon_error(AE.stack_net(started, self.act, self.loss,
                                                          self.tied))
            if target > 0 and started == self.K and info["recon"] <= target:
                finished = True
                info["reached_target"] = 1
        if finished:
            self.after_pretrain(info)
            self.H.clear()
            self.Hver.clear()
        self.last.update({k2: v for k2, v in info.items() if not k2.startswith("show_")})
        return info

    STATE = {"round": Int(), "epochs": Array(), "errs": Array()}

    def state_fields(self):
        out = super().state_fields()
        for k in range(1, self.K + 1):  # layer k's momentum lives on its group's ranks
            out[f"mom/L{k}"] = Owned(lambda alg, k=k: alg.owner[k], optional=True,
                                     holds=lambda alg, k=k: k in alg.mine)
        return out

    def restored(self):
        super().restored()
        self.epochs = [int(e) for e in self.epochs]
        self.errs = [float(e) for e in self.errs]
        self.trainers, self.H, self.Hver = {}, {}, {}

    def summary_info(self):
        out = super().summary_info()
        out["layout"] = "; ".join(f"ranks {f}..{f + n - 1}: layers {ls}"
                                  for f, n, ls in self.groups)
        return out

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank: bounded by the layer-wise estimate (a rank holds at most every
        layer, with the same buffers); see Greedy.memory_bytes."""
        from .ae_layerwise import Greedy
        return Greedy.memory_bytes(job, train)


def pipeline_ceiling(dims, E, tau=1):
    """The speed-up ceiling with one rank per layer: (Σtₖ/max tₖ)·E/(E + (K−1)τ)."""
    K = len(dims) - 1
    t = [dims[k - 1] * dims[k] for k in range(1, K + 1)]
    return sum(t) / max(t) * E / (E + (K - 1) * tau) if K else 1.0

