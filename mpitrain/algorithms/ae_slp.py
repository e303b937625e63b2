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
  2. each group brings the inputs hₖ₋₁ of its active layers up to the encoders of the last
     synchronisation (only when a lower layer changed): streamed rows are already there
     (step 4), the rest is regenerated locally, no communication;
  3. each group trains its active layers τ epochs (min with what is left of E);
  4. codes ([solver] codes): with "regenerate" every group computes its inputs from x
     itself; with "stream" / "split" the group owning layer 1 (layers 1..a), whose input x
     never changes, encodes h_a = enc_a∘…∘enc₁(x) of its rows with the weights it is about
     to publish (all of them, or the share `stream_share` that balances the layout's cost
     model) and sends them point to point (Isend, float32 or float16, in messages of at
     most comm.CHUNK_BYTES) to every group with an active layer next round; the receivers
     regenerate only the rest;
  5. synchronisation (all ranks): a passive wait for every rank (Ibarrier polled with
     sleeps: no busy-waiting), then for each active layer its group's first rank Bcasts
     the layer's parameters (encoder and decoder), the streamed codes arrive (passive wait
     on the point-to-point requests, all completed within the round: nothing is in flight
     between steps, so a checkpoint holds no codes and a resumed run regenerates them),
     then one Allreduce(SUM) of the per-layer maturity summary (epochs done, training
     error) and of every rank's time table (AEBase.rank_times);
  6. the unrolled test error enc₁..enc_k, dec_k..dec₁ of the started layers is evaluated
     (Allreduce of the sums); pre-training stops when every layer has done E epochs or when
     the K-layer error reaches [solver] target_error.
Because every layer trains on inputs from the last synchronisation, the result does not
depend on the layout (up to float32 summation order in the data-parallel groups), and with
one rank per layer layer 1 is bit-identical to sae-greedy's layer 1 at P = 1. Codes are
computed in chunks cut at fixed global rows (multiples of CODE_CHUNK and the layer-1
group's shard and publication bounds), so a row's code does not depend on who computes it:
float32 streaming gives the bits of "regenerate" wherever every receiving group's shard
holds whole chunks (groups of one rank: P = 2, P = K), else agrees to float32 GEMM rounding.
"""
import time

import numpy as np
from mpi4py import MPI

from .. import comm as C
from ..comm import ACTIVITY
from ..schema import Field
from ..models import autoencoder as AE
from ..state import Array, Int, Owned
from .ae_common import SOLVER_SCHEMA, AEBase, Trainer, load_group_train

F32 = np.float32
WAIT_POLL = 5e-4  # seconds between tests of a passive wait
CODE_CHUNK = 1024  # codes are computed in chunks cut at multiples of this global row
CODES_TAG = 1401  # point-to-point tag of the streamed codes


def passive_wait(world, reqs, name):
    """Complete the MPI requests `reqs` without spinning: Testall, then sleep WAIT_POLL s
    until they complete (a busy-polling blocking call takes a core from the ranks still
    computing). Marked as collective `name` for the stall monitor."""
    if not reqs:
        return
    t0 = time.perf_counter()
    ACTIVITY.collective, ACTIVITY.since = name, time.monotonic()
    try:
        while not MPI.Request.Testall(reqs):
            time.sleep(WAIT_POLL)
    finally:
        ACTIVITY.collective, ACTIVITY.since = None, time.monotonic()
    world._account(0, t0)


def passive_barrier(world):
    """Wait for every rank of `world` without spinning (Ibarrier + passive_wait)."""
    if world.size > 1:
        passive_wait(world, [world.comm.Ibarrier()], "Ibarrier")


def byte_pieces(arr):
    """The bytes of the contiguous array `arr` as consecutive views of at most
    comm.CHUNK_BYTES each: one message per piece keeps every MPI count below 2³¹ however
    large a layer's codes (sender and receiver cut the same byte count the same way, and
    messages between two ranks with one tag arrive in order)."""
    flat = arr.reshape(-1).view(np.uint8)
    step = C.CHUNK_BYTES
    return [flat[s:s + step] for s in range(0, flat.size, step)]


def group_cost(dims, layers, tau=1):
    """Multiply-adds per training row of one round for a group owning `layers` (contiguous),
    inputs regenerated: τ epochs of 5 GEMMs per layer (encoder and decoder forward,
    decoder-weight gradient, back-propagation to the code, encoder-weight gradient; none to
    the frozen input) plus one regeneration of the group's inputs, enc₁..enc_{top−1} once
    (the inputs of the upper layers are the lower ones' codes, computed on the way)."""
    c = [dims[k - 1] * dims[k] for k in range(1, len(dims))]
    return 5 * tau * sum(c[k - 1] for k in layers) + sum(c[:max(layers) - 1])


def stream_costs(dims, groups, tau=1, share=0.0):
    """Per-rank multiply-adds per training row of a steady round, for each group of
    `groups`, when the layer-1 group (layers 1..a) publishes its codes h_a for a `share` of
    its rows: it encodes them (share·Σ_{j≤a} c_j more; cⱼ = dⱼ₋₁dⱼ), every other group
    regenerates enc₁..enc_a only for the rest ((1 − share)·Σ_{j≤a} c_j) and
    enc_{a+1}..enc_{top−1} for all its rows. share = 0 is group_cost / group size."""
    c = [dims[k - 1] * dims[k] for k in range(1, len(dims))]
    a = max(groups[0][2])
    low = sum(c[:a])
    out = []
    for gi, (_, n, layers) in enumerate(groups):
        cost = group_cost(dims, layers, tau)
        cost += share * low if gi == 0 else -share * low
        out.append(cost / n)
    return out


def stream_share(dims, groups, tau=1):
    """The share of its rows the layer-1 group publishes ([solver] codes = "split"): the one
    of 0, 0.01, …, 1 that minimises the largest per-rank cost of stream_costs."""
    if len(groups) < 2:
        return 0.0
    return min((i / 100 for i in range(101)),
               key=lambda s: (max(stream_costs(dims, groups, tau, s)), -s))


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
    """Synchronized layer-wise pre-training: ranks own layers, weights travel every τ epochs,
    the layer-1 group's codes optionally too."""
    name = "slp"
    FAMILY = "autoencoder"  # what final.h5 describes (model_file.py)
    summary = "synchronized layer-wise autoencoder pre-training (ranks own layers)"
    SOLVER_SCHEMA = dict(
        SOLVER_SCHEMA,
        sync_every=Field(int, 1, "τ: epochs between synchronisations", min=1),
        codes=Field(str, "split", "inputs of the upper groups: each group regenerates "
                    "them from x (regenerate), or the layer-1 group publishes its codes of "
                    "all its rows after each round (stream) or of the share that balances "
                    "the layout's cost model (split, measured fastest at P = 2 by bench "
                    "slp; the receivers regenerate the rest)",
                    choices=["regenerate", "stream", "split"]),
        code_dtype=Field(str, "float32", "precision of the streamed codes (float16 halves "
                         "the transfer; the receivers train on the rounded codes)",
                         choices=["float32", "float16"]),
        target_error=Field(float, 0.0, "stop pre-training when the unrolled K-layer test "
                           "reconstruction error is ≤ this (0 = run E epochs per layer)",
                           min=0.0, affects_result=False))

    def setup(self):
        super().setup()
        ctx = self.ctx
        s = ctx.solver
        tau = s["sync_every"]
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
        self.ghi = self.glo + self.GX.shape[0]
        self._codes_setup(s["codes"], tau)
        self.epochs = [0] * self.K
        self.errs = [float("nan")] * self.K
        self.round = 0
        self.trainers = {}
        self.H, self.Hver = {}, {}
        self.codes_rows = 0  # rows of streamed codes this rank received (all rounds)
        self.fill = False  # h_a holds received rows, the others still to regenerate
        self.summary_buf = np.zeros(2 * self.K)

    def _codes_setup(self, mode, tau):
        """Who publishes which rows: self.a = top layer of the layer-1 group, self.share,
        self.senders = [(rank, lo, e, hi)]: layer-1 group member `rank` holds global rows
        [lo, hi) and publishes [lo, e); self.bounds = every rank's group rows; self.cuts =
        the global rows where code chunks are cut."""
        self.a = max(self.groups[0][2])
        multi = len(self.groups) > 1
        self.share = 0.0 if not multi else {
            "regenerate": 0.0, "stream": 1.0,
            "split": stream_share(self.dims, self.groups, tau)}[mode]
        # the cuts hold every mode's publishing boundary, so that a row's code comes from a
        # GEMM of the same shape whichever mode runs (BLAS's bits for a row can depend on
        # the number of rows in the call: seen with OpenBLAS on an Intel Xeon)
        split = stream_share(self.dims, self.groups, tau) if multi else 0.0
        self.bounds = self.world.gather_obj((self.glo, self.ghi))
        f0, n0, _ = self.groups[0]
        self.senders, cuts = [], set()
        for q in range(f0, f0 + n0):
            lo, hi = self.bounds[q]
            e = lo + int(round(self.share * (hi - lo)))
            self.senders.append((q, lo, e, hi))
            cuts.update((lo, e, hi, lo + int(round(split * (hi - lo)))))
        self.cuts = np.array(sorted(cuts | set(range(0, self.ctx.train.n, CODE_CHUNK))))
        self.f16 = self.ctx.solver["code_dtype"] == "float16"

    def _encode(self, src, a, b, ks):
        """Codes of global rows [a, b) through the encoders ks, `src` holding this group's
        rows (from global row self.glo on); one GEMM chain per chunk between consecutive
        self.cuts, so a row's code does not depend on which rank computes it."""
        ks = list(ks)
        out = np.empty((b - a, self.dims[ks[-1]]), F32)
        i = int(np.searchsorted(self.cuts, a, side="right"))
        pts = [a] + [int(c) for c in self.cuts[i:] if c < b] + [b]
        for u, v in zip(pts, pts[1:]):
            if u < v:
                out[u - a:v - a] = AE.encode(self.P, src[u - self.glo:v - self.glo], ks,
                                             self.act, chunk=v - u)
        return out

    def _published(self, lo, hi, sender=None, rest=False):
        """[(sender rank, u, v)]: the published rows [u, v) within global rows [lo, hi)
        (only those of layer-1 group member `sender` when given; with `rest`, the rows of
        the layer-1 group's shards that are not published instead)."""
        out = []
        for q, slo, e, shi in self.senders:
            u, v = (max(e, lo), min(shi, hi)) if rest else (max(slo, lo), min(e, hi))
            if u < v and sender in (None, q):
                out.append((q, u, v))
        return out

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
        """The inputs h_{k−1} of layer k on this group's rows, current with the last
        synchronisation: from the highest current cached input below k, else from x. Above
        the layer-1 group, h_a comes first (the published rows rounded as streamed), so a
        regenerated input equals the streamed one: a resumed run needs no codes."""
        ver = tuple(self.epochs[:k - 1])
        if self.Hver.get(k) == ver:
            return
        if k == 1:
            self.H[1] = self.GX
        else:
            j = k - 1
            while j > 1 and self.Hver.get(j) != tuple(self.epochs[:j - 1]):
                j -= 1
            floor = self.a + 1 if self.gi > 0 else 1
            if j < floor < k:
                self._regen(floor)
                j = floor
            src = self.GX if j == 1 else self.H[j]
            H = self._encode(src, self.glo, self.ghi, range(j, k))
            if k == self.a + 1 and self.f16:
                for _, u, v in self._published(self.glo, self.ghi):
                    H[u - self.glo:v - self.glo] = H[u - self.glo:v - self.glo].astype(
                        np.float16)
            self.H[k] = H
        self.Hver[k] = ver

    def _publish(self, active, todo):
        """Start the transfer of the layer-1 group's codes h_a (with the weights it is about
        to publish) to every group with an active layer next round, when they changed this
        round. Returns (requests, receive buffer or None, bytes)."""
        if not self.share or not any(k <= self.a for k in active):
            return [], None, 0
        nxt = set(self._active(self.round + 1, [e + todo.get(k, 0) for k, e in
                                                zip(range(1, self.K + 1), self.epochs)]))
        dest = [q for gi, (f, n, ls) in enumerate(self.groups) if gi > 0 and nxt & set(ls)
                for q in range(f, f + n)]
        comm, reqs, nbytes = self.world.comm, [], 0
        if self.gi == 0:
            me, lo, e, _ = self.senders[self.gworld.rank]
            with self.ctx.phase("regen"):
                codes = self._encode(self.GX, lo, e, range(1, self.a + 1))
                self._sendbuf = codes.astype(np.float16) if self.f16 else codes
            with self.ctx.phase("exchange"):
                for q in dest:
                    for _, u, v in self._published(*self.bounds[q], sender=me):
                        part = self._sendbuf[u - lo:v - lo]
                        reqs += [comm.Isend([b, MPI.BYTE], dest=q, tag=CODES_TAG)
                                 for b in byte_pieces(part)]
                        nbytes += part.nbytes
            return reqs, None, nbytes
        if self.world.rank not in dest:
            return [], None, 0
        buf = np.empty((self.ghi - self.glo, self.dims[self.a]),
                       np.float16 if self.f16 else F32)
        for q, u, v in self._published(self.glo, self.ghi):
            reqs += [comm.Irecv([b, MPI.BYTE], source=q, tag=CODES_TAG)
                     for b in byte_pieces(buf[u - self.glo:v - self.glo])]
        return reqs, buf, 0

    def _received(self, buf):
        """Keep the received codes as this group's h_a (after the weights' synchronisation
        and epoch update); the rows not published are filled in at the start of the next
        round (_fill), so no rank waits for this one in the evaluation's collective."""
        H = buf.astype(F32) if self.f16 else buf
        self.codes_rows += sum(v - u for _, u, v in self._published(self.glo, self.ghi))
        k = self.a + 1
        self.H[k], self.Hver[k], self.fill = H, tuple(self.epochs[:k - 1]), True

    def _fill(self):
        """The rows of h_a nobody published, regenerated from x."""
        H = self.H.get(self.a + 1)
        for _, u, v in self._published(self.glo, self.ghi, rest=True) if H is not None else ():
            H[u - self.glo:v - self.glo] = self._encode(self.GX, u, v, range(1, self.a + 1))
        self.fill = False

    def _active(self, r, epochs):
        """The layers active in round r with `epochs` done per layer (step 1)."""
        E = self.ctx.solver["epochs"]
        return [k for k in range(1, self.K + 1) if r >= k - 1 and epochs[k - 1] < E]

    def step(self):
        if self.phase_name != "pretrain":
            return self.post_step()
        s = self.ctx.solver
        E, tau = s["epochs"], s["sync_every"]
        active = self._active(self.round, self.epochs)
        todo = {k: min(tau, E - self.epochs[k - 1]) for k in active}
        mine = [k for k in active if k in self.mine]
        with self.ctx.phase("regen"):
            if self.fill:
                self._fill()
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
        # codes leave the layer-1 group before the synchronisation (its weights are final
        # for the round), so the transfer overlaps the slower ranks' training
        reqs, buf, nbytes = self._publish(active, todo)
        # synchronisation. A rank that finished its round early waits passively for the
        # others (Ibarrier, tested every WAIT_POLL s, sleeping in between: its core goes to
        # the bottleneck rank instead of spinning in a blocking collective), then the
        # owners Bcast their layers (all ranks present: a fast transfer), the codes arrive
        # (passive wait), then one Allreduce carries the layer-maturity summaries with
        # every rank's time table.
        with self.ctx.phase("wait"):
            passive_barrier(self.world)
        with self.ctx.phase("exchange"):
            for k in active:
                self.world.bcast(self.blocks[f"L{k}"].flat, root=self.owner[k])
            passive_wait(self.world, reqs, "codes")
        self.world.bytes += nbytes
        self._sendbuf = None
        times = self.rank_times(extra=self.summary_buf)
        for k in active:
            self.epochs[k - 1] = int(self.summary_buf[k - 1])
            self.errs[k - 1] = float(self.summary_buf[self.K + k - 1])
        if buf is not None:
            self._received(buf)
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
            self.fill = False
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
        self.trainers, self.H, self.Hver, self.fill = {}, {}, {}, False

    def summary_info(self):
        out = super().summary_info()
        out["layout"] = "; ".join(f"ranks {f}..{f + n - 1}: layers {ls}"
                                  for f, n, ls in self.groups)
        out["codes"] = f"{self.ctx.solver['codes']} (share {self.share:.2f}, " \
                       f"{self.ctx.solver['code_dtype']})"
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
