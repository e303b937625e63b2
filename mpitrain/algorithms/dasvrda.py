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
Restarts reset the outer momentum (x̃ₛ₋₂ = z̃ₛ₋₁ = x̃ₛ₋₁, s = 1) at the start of stage s:
"gradient" (default) when (ỹₛ₋₁ − x̃ₛ₋₁)ᵀ(x̃ₛ₋₁ − x̃ₛ₋₂) > 0, the gradient scheme of
O'Donoghue & Candès with the stage as the step (ỹₛ₋₁ − x̃ₛ₋₁ plays the gradient mapping at
ỹₛ₋₁): the last stage moved against it; "adaptive" when (ỹₛ₋₁ − x̃ₛ₋₁)ᵀ(ỹₛ − x̃ₛ₋₁) > 0 (the
momentum direction instead of the last step); "objective" when P(x̃ₛ₋₁) > P(x̃ₛ₋₂) (their
function-value scheme; P(x̃) comes with each stage's full gradient); "fixed" every
`restart_every` stages; "none". `sc_restart = "paper"` (the default; "off" drops it) adds the
paper's DASVRDA^sc (for l2 > 0): a restart S = 1 + ⌈√(L/l2)·(b/n + 1/√n)⌉ stages after the last
one, its S = O(1 + (b/n)√(L/μ) + √(L/(nμ))) with μ = l2 and the constant 1, whichever restart
comes first.
Defaults: b = ⌊√n⌋, m = ⌊n/b⌋, η = c/L with c = `practical_c` = 8 (`step = "theory"`:
η = 1/((1 + γ(m+1)/b)·L)),
L = max Lᵢ under uniform sampling, L̄ = mean Lᵢ under importance sampling (qᵢ = Lᵢ/ΣLⱼ, each
sampled difference weighted by 1/(n qᵢ), so E[gₖ] = ∇F(yₖ)).

Distribution: data-parallel, every iterate replicated. The mini-batch of every inner step is
drawn from one RNG stream that all ranks share; a rank evaluates the sampled rows it owns and
ONE collective per inner step sums the correction Σ[∇fᵢ(y) − ∇fᵢ(x̃)]: for CSR data an
Allgatherv of every rank's (column, value) pairs merged in draw order (`exchange`: the same
floating-point sum as one rank's serial scatter, so the inner step does not depend on P), or
an Allreduce(d) (`communication = "dense"`, and always for dense data). One Allreduce(d+1) per
stage gives ∇F(x̃) and F(x̃). The margins at x̃ are cached per stage, so ∇fᵢ(x̃) costs O(1).
Iterates therefore depend on P only through summation orders of these Allreduces.

Feature-parallel (`communication = "columns"`, DASVRDA with lazy updates on CSR data; what
"auto" picks there, at any P, being the faster mode measured: docs/dasvrda.md): rank q owns a
contiguous block of columns, balanced by expected work per inner step (CATCHUP_COST), and holds
ALL rows restricted to it (redistributed at setup by an all-to-all; the data layer is unchanged).
An inner step: every rank draws the same batch, catches up its own coordinates and computes
partial margins over its columns, ONE Allreduce of the b partial margins, the loss derivatives
on every rank, then each rank scatters into and updates only its own coordinates: O(nnz of
the batch / P) per rank. A stage starts from partial margins of all n rows at x̃ (Allreduce(n))
and this block of ∇F(x̃); the blocks of μ̃, and at the stage end of x̃ and z̃, are gathered
(Allgatherv), as are x, H and `last` after a driver step that ends mid-stage, so the declared
state is full and replicated whenever a checkpoint can be taken: the format is unchanged and a
checkpoint resumes at any P in any mode. Iterates equal P = 1's up to the summation order of
the partial margins; at P = 1 the mode is bit-identical to the row path.

Sparse data ("lazy" updates, the default for CSR): the dense O(d) parts of an inner step are
done just in time (kernels/vr_sparse.pyx explains the closed form): with the sparse exchange a
step costs O(nnz of the sampled rows) at any P (the dense exchange adds the O(d) buffer and an
O(d) scan for its support). The stored lazy state changes only on that support, which is the
same on every rank, so replicas stay bit-identical.

[model] values = "float32" (linear_family.MODEL_SCHEMA): the per-stage full gradient and the
margins at x̃ read the values rounded to float32 (models/linear.SplitCSR); the inner steps read
the float64 rows, so the iterates move by a rounding-sized amount (tests/test_dasvrda.py).

One driver step = `inner_per_step` inner iterations (0 = a whole stage); a checkpoint holds
every iterate, the θ/stage/inner counters, the lazy bookkeeping and the RNG state.
"""
import abc
import math

import numpy as np

import scipy.sparse as sp

from .._kernels import linear as K
from .._kernels import vr_sparse as V
from ..schema import Field
from ..errors import JobError
from ..data import Shard
from ..models.linear import LinearShard, layout_bytes
from ..state import Array, Float, Int, Rng
from .base import Algorithm
from ..models.losses import LOSSES
from .linear_family import MODEL_SCHEMA as VR_MODEL_SCHEMA
from .linear_family import evaluate_linear


# Columns mode: the cost of a column's two lazy catch-ups in an inner step, in units of the
# work per non-zero (its margin term and its scatter), used to balance the column blocks
# (docs/dasvrda.md says how it was estimated).
CATCHUP_COST = 12.0

# What `communication = "auto"` means (without / with the columns choice).
AUTO_HELP = {False: "sparse for CSR data",
             True: "columns for CSR data with lazy updates (any P), else sparse for CSR data"}


def _common_solver(eta_help, columns=False):
    comm_help = ("inner-step exchange at P > 1: sparse (the mini-batch's (column, value) pairs "
                 "by Allgatherv, merged in draw order), dense (an Allreduce of a d-vector)")
    choices = ["auto", "sparse", "dense"]
    if columns:
        comm_help += (", columns (feature-parallel: each rank owns a block of columns and "
                      "updates only those; one Allreduce of the b margins per step; CSR data "
                      "and lazy updates)")
        choices.append("columns")
    return {
        "batch": Field(int, 0, "mini-batch size b (0 = ⌊√n⌋)", min=0),
        "inner": Field(int, 0, "inner iterations per stage m (0 = ⌊n/b⌋)", min=0),
        "eta": Field(float, 0.0, eta_help, min=0.0),
        "eta_scale": Field(float, 1.0, "multiplies the step (tuning)", min=0.0),
        "sampling": Field(str, "uniform", "mini-batch rows: uniform, or importance (qᵢ ∝ Lᵢ, "
                          "i.e. ∝ ‖aᵢ‖², reweighted by 1/(n qᵢ); L̄ = mean Lᵢ in the step)",
                          choices=["uniform", "importance"]),
        "communication": Field(str, "auto", comm_help + ", auto = " + AUTO_HELP[columns],
                               choices=choices),
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
    STATE = {"xt": Array(), "mu": Array(), "f": Float(), "stage": Int(), "k": Int(),
             "rows_sampled": Int(), "full_grads": Int(), "rng": Rng()}

    # -- setup ---------------------------------------------------------------------------
    def setup(self):
        ctx = self.ctx
        sh = ctx.train
        self.sh = sh
        self.lm = LinearShard(sh, ctx.model["loss"], ctx.model["values"])
        self.code = self.lm.code
        self.y = self.lm.y
        self.n, self.d = sh.n, sh.d
        self.l1, self.l2 = ctx.model["l1"], ctx.model["l2"]
        s = ctx.solver
        self.b = s["batch"] or max(1, int(math.isqrt(self.n)))
        self.m = s["inner"] or max(1, self.n // self.b)
        mode = self.communication(s, sh.sparse)
        if mode in ("sparse", "columns") and not sh.sparse:
            raise JobError(f"[solver] communication = '{mode}' needs sparse (CSR) training data")
        if mode == "columns" and not self.lazy_csr(s, sh.sparse):  # before setup_columns
            raise JobError("[solver] communication = 'columns' needs updates = 'lazy' (or "
                           "'auto')")
        self.comm_mode = mode
        self.columns = mode == "columns"
        self.sparse_comm = mode == "sparse"
        self.setup_sampling(s["sampling"])
        # the CSR rows the inner step reads and the slice of every d-vector it updates: this
        # rank's shard and all columns, or (columns) all rows and this rank's column block
        self.Xc, self.cs, width = (sh.X if sh.sparse else None), slice(None), self.d
        if self.columns:
            self.setup_columns()
            width = self.cs.stop - self.cs.start
        self.eta = (s["eta"] or self.default_eta()) * s["eta_scale"]
        self.rng = ctx.rng("vr-minibatch")
        self.supp = np.empty(width, dtype=np.int64)   # columns of an exchanged batch
        self.mark = np.zeros(width, dtype=np.uint8)
        self.mt = np.empty(self.n if self.columns else sh.rows)  # margins at the anchor x̃
        self.mb = np.empty(self.b)           # margins of the sampled rows
        self.coef = np.empty(self.b)
        self.vbuf = np.zeros(width)          # the inner step's direction (Allreduce buffer)
        self.gbuf = np.empty(self.d + 1)     # [Σ∇ℓᵢ, Σℓᵢ] at x̃
        self.stage = 0                       # stages completed
        self.k = 0                           # inner iterations done in the current stage
        self.rows_sampled = 0                # Σ b over inner steps (for passes)
        self.full_grads = 0
        self.finished, self.reason = False, ""
        self.mt_stale = False
        self.xt = np.zeros(self.d)           # x̃ (the anchor / output)
        self.init_state()
        self.full_gradient()

    def setup_sampling(self, sampling):
        """Row smoothness Lᵢ = c_loss·‖aᵢ‖², the sampling distribution q and L (max Lᵢ for uniform
        sampling, L̄ = mean Lᵢ for importance sampling qᵢ = Lᵢ/ΣLⱼ, whose gradient estimator is
        reweighted by 1/(n qᵢ)). Global per-row arrays are replicated: one Allgatherv each at
        setup (row norms; row lengths when the inner step sends pairs)."""
        sh, world = self.sh, self.world
        if sh.sparse:
            X = sh.X
            self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
            sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sh.rows else np.zeros(0)
        else:
            sq = np.einsum("ij,ij->i", sh.X, sh.X) if sh.rows else np.zeros(0)
        counts = world.allgatherv(np.array([sh.rows], dtype=np.int64), [1] * world.size)
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        assert self.bounds[world.rank] == sh.start   # shards are consecutive row blocks
        Li = LOSSES[self.ctx.model["loss"]].smooth * world.allgatherv(sq, counts)
        self.importance = sampling == "importance" and Li.sum() > 0
        if self.importance:
            self.q = Li / Li.sum()
            self.cdf = np.cumsum(self.q)
            with np.errstate(divide="ignore"):
                iw = np.where(self.q > 0, 1.0 / (self.n * self.q), 0.0)  # q = 0: never drawn
            self.iw = iw if self.columns else np.ascontiguousarray(iw[sh.start:sh.stop])
            self.L = max(float(Li.mean()), 1e-300)
        else:
            self.q = np.full(self.n, 1.0 / self.n)
            self.L = max(float(Li.max(initial=0.0)), 1e-300)
        if self.sparse_comm:
            lens = np.diff(self.indptr).astype(np.int64)
            self.rowlen = world.allgatherv(lens, counts)
            self.starts = np.empty(self.b, dtype=np.int64)
            self.counts = np.empty(world.size, dtype=np.int64)
            self.pairs = np.empty((0, 2))

    def setup_columns(self):
        """The feature-parallel layout (communication = "columns"): rank q owns the columns
        [c_q, c_{q+1}), contiguous blocks of about equal expected work per inner step (b·h_j
        plus CATCHUP_COST when the batch hits column j; one Allreduce(d) of the h_j), and holds
        ALL rows restricted to them, with local column numbers: every rank cuts its row shard
        into P column blocks and block q goes to rank q (one Alltoallv of the row lengths and
        one of the pairs, so a rank holds about nnz/P non-zeros, never the whole matrix).
        Labels, margins at x̃ and sampling weights cover all n rows."""
        sh, world = self.sh, self.world
        P, X = world.size, sh.X
        # h_j = P(a draw hits column j) = Σ_{i: a_ij ≠ 0} q_i; per inner step column j costs
        # b·h_j multiply-adds plus, when the batch hits it at all (probability 1 − (1 − h_j)^b),
        # CATCHUP_COST for its two lazy catch-ups
        q = np.repeat(self.q[sh.start:sh.stop], np.diff(X.indptr))
        hit = np.bincount(X.indices, weights=q, minlength=self.d).astype(np.float64)
        world.allreduce(hit)
        np.clip(hit, 0.0, 1.0, out=hit)
        with np.errstate(divide="ignore"):   # h_j = 1: log1p(−1) = −inf, P(hit) = 1
            cost = self.b * hit + CATCHUP_COST * -np.expm1(self.b * np.log1p(-hit))
        cum = np.cumsum(cost)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, P) / P, side="right")
        self.edges = np.concatenate([[0], cuts, [self.d]]).astype(np.int64)
        self.widths = np.diff(self.edges)
        rows = np.diff(self.bounds)
        self.y = world.allgatherv(self.lm.y, rows)
        if P == 1:
            Xc = X
        else:
            # this rank's rows cut into the P column blocks, side by side (block q for rank q):
            # row lengths and (local column, value) pairs, then one Alltoallv of each
            lens = np.empty((P, sh.rows), dtype=np.int64)
            pairs = np.empty((X.nnz, 2))
            nnz = np.zeros(P, dtype=np.int64)
            for q in range(P):
                piece = X[:, self.edges[q]:self.edges[q + 1]]
                lens[q] = np.diff(piece.indptr)
                at = int(nnz.sum())
                pairs[at:at + piece.nnz, 0] = piece.indices
                pairs[at:at + piece.nnz, 1] = piece.data
                nnz[q] = piece.nnz
            lens = world.alltoallv(lens.reshape(-1), [sh.rows] * P)   # all n rows, in order
            pairs = world.alltoallv(pairs, nnz)
            indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            Xc = sp.csr_matrix((np.ascontiguousarray(pairs[:, 1]),
                                pairs[:, 0].astype(np.int32), indptr),
                               shape=(self.n, int(self.widths[world.rank])))
            Xc.indptr = indptr                   # scipy may narrow it; the kernels take int64
        self.Xc = Xc
        self.cs = slice(int(self.edges[world.rank]), int(self.edges[world.rank + 1]))
        self.lmc = LinearShard(Shard(Xc, self.y, 0, self.n, self.n, Xc.shape[1], sh.path),
                               self.ctx.model["loss"], self.ctx.model["values"])
        self.dl = np.empty(self.n)           # loss derivatives at x̃ (all rows)

    def gather_blocks(self, *vecs):
        """Columns mode: every rank's block of each d-vector in `vecs` (float64 or int64) to all
        ranks, in place: ONE Allgatherv of the blocks side by side."""
        cs = self.cs
        local = np.column_stack([v[cs].astype(np.float64) for v in vecs])
        with self.ctx.phase("allgatherv"):
            full = self.world.allgatherv(local, self.widths)
        for i, v in enumerate(vecs):
            v[:] = full[:, i]

    def draw(self, steps):
        """The GLOBAL rows of `steps` mini-batches (steps × b), from the stream all ranks share."""
        if self.importance:
            u = self.rng.random(size=(steps, self.b))
            return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.n - 1)
        return self.rng.integers(0, self.n, size=(steps, self.b))

    def default_eta(self):
        """The step when [solver] eta = 0."""
        return self.theory_eta()

    @classmethod
    def lazy_csr(cls, solver, sparse):
        """Does the inner loop update lazily on CSR data (what the columns mode needs)?"""
        return False

    @classmethod
    def communication(cls, solver, sparse):
        """What [solver] communication means for this job (the one rule, used by setup and
        memory_bytes): "auto" is dense for dense data, columns where the inner loop updates
        lazily on CSR data (docs/dasvrda.md: measured faster at P = 1 and 2), else sparse."""
        mode = solver["communication"]
        if mode == "auto":
            mode = ("dense" if not sparse else "columns" if cls.lazy_csr(solver, sparse)
                    else "sparse")
        return mode

    @abc.abstractmethod
    def theory_eta(self):
        """The method's theoretical step size."""

    @abc.abstractmethod
    def init_state(self):
        """The method's iterates at the start."""

    # -- communication ---------------------------------------------------------------------
    def full_gradient(self):
        """μ̃ = ∇F(x̃) and P(x̃); caches the margins at x̃. Rows: one Allreduce(d+1). Columns:
        partial margins over this rank's columns, one Allreduce(n) (anchor_margins), the loss
        and its derivatives on every row (redundantly), this block of μ̃, and one Allgatherv
        of the blocks."""
        with self.ctx.phase("full_grad"):
            if self.columns:
                self.anchor_margins()
                loss = K.loss_dloss(self.code, self.y, self.mt, self.dl)
                blk = self.lmc.rmatvec(self.dl)
                blk /= self.n
                self.mu = np.empty(self.d)
                self.mu[self.cs] = blk
                self.gather_blocks(self.mu)
            else:
                self.lm.loss_grad_sums(self.xt, self.gbuf, margins=self.mt)
                self.world.allreduce(self.gbuf)
                self.mu = self.gbuf[:self.d] / self.n
                loss = self.gbuf[self.d]
            self.f = (loss / self.n + 0.5 * self.l2 * float(self.xt @ self.xt)
                      + self.l1 * float(np.abs(self.xt).sum()))
        self.full_grads += 1

    def anchor_margins(self):
        """Columns mode: mt = Xx̃ for all n rows (this block's partial sums, one Allreduce(n))."""
        self.lmc.margins(self.xt[self.cs], self.mt)
        self.world.allreduce(self.mt)
        self.mt_stale = False

    def local_rows(self, batch):
        """This rank's rows of a mini-batch (LOCAL numbers, in draw order)."""
        sh = self.sh
        sel = batch[(batch >= sh.start) & (batch < sh.stop)]
        return np.ascontiguousarray(sel - sh.start, dtype=np.int64)

    def coefs(self, rows, mb):
        """coef[t] = (1/b)·wᵢ·(ℓ'(yᵢ, mb[t]) − ℓ'(yᵢ, aᵢᵀx̃)) for the local sampled rows i, with
        wᵢ = 1/(n qᵢ) under importance sampling (1 otherwise)."""
        coef = self.coef[:rows.shape[0]]
        V.vr_coefs(self.code, self.y, rows, mb, self.mt, 1.0 / self.b, coef)
        if self.importance:
            coef *= self.iw[rows]
        return coef

    def exchange(self, batch, rows, coef):
        """vbuf += Σ_{t} coef_t·a_{batch[t]} over the WHOLE mini-batch, sent sparse: this rank's
        rows as (column, value) pairs, ONE Allgatherv of every rank's pairs, then a merge in
        the draw order (the same floating-point sum as a serial scatter, for any P). Leaves in
        self.supp the columns with vbuf ≠ 0; returns their count. O(nnz of the batch)."""
        total = V.batch_segments(batch, self.bounds, self.rowlen, self.starts, self.counts)
        mine = int(self.counts[self.world.rank])
        if self.pairs.shape[0] < mine:
            self.pairs = np.empty((max(mine, 2 * self.pairs.shape[0]), 2))
        local = self.pairs[:mine]
        V.rows_pairs(self.indptr, self.indices, self.data, rows, coef, local)
        if self.world.size > 1:
            with self.ctx.phase("allgatherv"):
                local = self.world.allgatherv(local, self.counts)
        assert local.shape[0] == total
        return V.scatter_pairs(local, batch, self.starts, self.rowlen, self.vbuf, self.mark,
                               self.supp)

    def vr_direction(self, w, batch):
        """vbuf = (1/b) Σ_{i∈I} wᵢ[∇fᵢ(w) − ∇fᵢ(x̃)] over the whole mini-batch: the local rows'
        part, then ONE collective (the sparse exchange, or an Allreduce(d))."""
        rows = self.local_rows(batch)
        mb = self.mb[:rows.shape[0]]
        if self.sh.sparse:
            V.csr_rows_margins(self.indptr, self.indices, self.data, rows, w, mb)
            coef = self.coefs(rows, mb)
            self.vbuf[:] = 0.0
            if self.sparse_comm:
                self.exchange(batch, rows, coef)
                return self.vbuf
            V.csr_rows_scatter(self.indptr, self.indices, self.data, rows, coef, self.vbuf)
        else:
            V.dense_rows_margins(self.sh.X, rows, w, mb)
            coef = self.coefs(rows, mb)
            V.dense_rows_rmatvec(self.sh.X, rows, coef, self.vbuf)
        with self.ctx.phase("allreduce"):
            self.world.allreduce(self.vbuf)
        return self.vbuf

    # -- the driver's step -----------------------------------------------------------------
    def step(self):
        per = self.ctx.solver["inner_per_step"] or self.m
        todo = min(per, self.m - self.k)
        if self.mt_stale:   # columns mode after a restore
            self.anchor_margins()
        if self.k == 0:
            self.begin_stage()
        batches = self.draw(todo)
        with self.ctx.phase("inner"):
            for t in range(todo):
                self.k += 1
                self.inner_step(self.k, batches[t])
        self.rows_sampled += todo * self.b
        if self.k == self.m:
            self.end_stage()
            self.stage += 1
            self.k = 0
            self.full_gradient()
            self.check_done()
        elif self.columns:  # mid-stage: the declared inner state stays full on every rank
            self.share_inner()
        return self.metrics()

    # columns mode: the inner d-vectors a rank updates only on its block (a subclass that
    # runs the columns mode names them; ProxSVRG and Katyusha never do: lazy_csr() is False)
    INNER_BLOCKS = ()

    def share_inner(self):
        """Columns mode: make the inner iterates full d-vectors again (for a checkpoint)."""
        self.gather_blocks(*(getattr(self, name) for name in self.INNER_BLOCKS))

    def passes(self):
        return self.full_grads + self.rows_sampled / self.n

    def check_done(self):
        s = self.ctx.solver
        if not np.isfinite(self.f):
            self.finish("diverged (objective not finite)")
        elif s["target"] and self.f <= s["target"]:
            self.finish("target reached")
        elif self.stage >= s["max_stages"]:
            self.finish("max_stages")
        elif s["max_passes"] and self.passes() >= s["max_passes"]:
            self.finish("max_passes")

    def metrics(self):
        return {"objective": self.f, "stage": self.stage, "inner": self.k,
                "passes": self.passes(), "eta": self.eta,
                "nnz": int(np.count_nonzero(self.xt))}

    def budget(self):
        return self.stage, self.ctx.solver["max_stages"], "stage"

    # -- checkpoint -----------------------------------------------------------------------
    def restored(self):
        if self.columns:    # the cache needs a collective: rebuilt at the next step
            self.mt_stale = True
        else:               # the cache: a per-row function of x̃, any P
            self.lm.margins(self.xt, self.mt)
        if self.finished and self.reason in ("max_stages", "max_passes"):
            self.finished, self.reason = False, ""  # the resumed job may allow more
            self.check_done()

    def final_model(self):
        return {"model/w": self.xt}

    def summary_info(self):
        return {"objective": self.f, "stages": self.stage, "passes": self.passes(),
                "batch": self.b, "inner": self.m, "eta": self.eta, "L": self.L,
                "stop_reason": self.reason, "nnz": int(np.count_nonzero(self.xt)),
                "communication": self.comm_mode}

    @classmethod
    def evaluate(cls, ctx, model):
        return evaluate_linear(ctx, model["model/w"])

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank (float64 unless said): about 26 vectors of the width (measured) (iterates,
        anchors, averages, Allreduce buffers, the column marks of an exchanged batch), the
        sampling tables over all n rows (probabilities, cdf, row bounds), this rank's cached
        margins and weights, and a minibatch's exchanged rows (at most the batch times the
        width). The columns mode (also what auto means for DASVRDA's lazy updates on CSR data)
        adds this rank's column block of all rows and its transpose (about twice the shard's
        non-zeros, 12 bytes each) and 3 vectors over all rows. Every mode adds the split CSR
        layout of the full-gradient evaluation (models/linear.layout_bytes)."""
        d, n, rows = int(train.d), int(train.n), int(train.rows)
        s = job["solver"]
        b = int(s["batch"]) or max(1, math.isqrt(n))
        extra = 24 * train.nnz + 24 * n if cls.communication(s, train.sparse) == "columns" else 0
        return (8 * (26 * d + 3 * n + 4 * rows + 3 * b * min(d, max(1, _row_width(train))))
                + extra + layout_bytes(train, job["model"]["values"]))


def _row_width(train):
    """Largest row length of this rank's shard (non-zeros for CSR, the width when dense)."""
    if train.sparse and train.rows:
        return int(np.diff(train.X.indptr).max())
    return int(train.d)


class DASVRDA(_VR):
    name = "dasvrda"
    STATE = {"xprev": Array(), "zt": Array(), "yprev": Array(), "x": Array(), "z0": Array(),
             "z": Array(), "gbar": Array(), "H": Array(), "last": Array(), "s_loc": Int(),
             "restarts": Int(), "fprev": Float(optional=True)}
    INNER_BLOCKS = ("x", "H", "last")  # columns mode: gathered whole at a mid-stage boundary
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    summary = "doubly accelerated SVRDA: √n mini-batches, one collective per inner step"
    SOLVER_SCHEMA = dict(
        _common_solver("step η (0 = the rule `step`)", columns=True),
        step=Field(str, "practical", "the step when eta = 0: practical η = practical_c/L, or "
                   "theory η = 1/((1 + γ(m+1)/b)·L); L = max Lᵢ (uniform) or L̄ (importance)",
                   choices=["practical", "theory"]),
        practical_c=Field(float, 8.0, "c of the practical step η = c/L (docs/dasvrda.md says "
                          "how it was chosen; runs written before this key used 4)", min=1e-3,
                          hash_omits=4.0),
        restart=Field(str, "gradient", "outer momentum restart (docs/dasvrda.md: the tests "
                      "and why gradient is the default)",
                      choices=["none", "gradient", "adaptive", "objective", "fixed"]),
        restart_every=Field(int, 10, "stages between restarts when restart = 'fixed'", min=1),
        sc_restart=Field(str, "paper", "DASVRDA^sc, the paper's scheme for l2 > 0: 'paper' also "
                         "restarts every S = 1 + ⌈√(L/l2)·(b/n + 1/√n)⌉ stages after the last "
                         "restart (whichever restart comes first; never when l2 = 0); 'off'",
                         choices=["off", "paper"], hash_omits="off"),
        updates=Field(str, "auto", "inner updates: lazy (sparse data, O(nnz of the batch)), "
                      "dense (O(d) per step), auto = lazy for CSR data",
                      choices=["auto", "lazy", "dense"]),
    )

    def gamma(self):
        return (3.0 + math.sqrt(9.0 + 8.0 * self.b / (self.m + 1))) / 2.0

    @classmethod
    def lazy_csr(cls, solver, sparse):
        return sparse and solver["updates"] != "dense"

    def theory_eta(self):
        return 1.0 / ((1.0 + self.gamma() * (self.m + 1) / self.b) * self.L)

    def sc_period(self):
        """DASVRDA^sc's restart period S in stages (`sc_restart = "paper"`), else ∞: the
        paper's S = O(1 + (b/n)√(L/μ) + √(L/(nμ))) with μ = l2 and the O's constant 1."""
        if self.ctx.solver["sc_restart"] == "off" or self.l2 <= 0:
            return math.inf
        return 1 + math.ceil(math.sqrt(self.L / self.l2)
                             * (self.b / self.n + 1.0 / math.sqrt(self.n)))

    def default_eta(self):
        if self.ctx.solver["step"] == "theory":
            return self.theory_eta()
        return self.ctx.solver["practical_c"] / self.L

    def init_state(self):
        if self.ctx.solver["updates"] == "lazy" and not self.sh.sparse:
            raise JobError("[solver] updates = 'lazy' needs sparse (CSR) training data")
        self.lazy = self.lazy_csr(self.ctx.solver, self.sh.sparse)
        d = self.d
        self.xprev = np.zeros(d)       # x̃ₛ₋₂
        self.zt = np.zeros(d)          # z̃ₛ₋₁
        self.yprev = np.zeros(d)       # ỹₛ₋₁ (gradient and adaptive restarts)
        self.s_loc = 0                 # stages since the last restart
        self.restarts = 0
        self.fprev = math.inf          # P(x̃ₛ₋₂) (objective restart; None: a checkpoint
                                       # written before it was declared)
        self.x = np.zeros(d)           # inner xₖ (lazy: stored at step last[j])
        self.z0 = np.zeros(d)          # ỹ of the current stage
        self.z = np.zeros(d)           # inner zₖ (dense mode)
        self.gbar = np.zeros(d)        # ḡₖ (dense mode)
        self.H = np.zeros(d)           # Σ i·vᵢ (lazy mode)
        self.last = np.zeros(d, dtype=np.int64)
        self.S0 = np.empty(self.m + 1)
        self.S1 = np.empty(self.m + 1)
        V.prefix_sums(self.m, self.eta, self.l2, self.S0, self.S1)
        if self.lazy:   # scratch of lazy_margins (not state: any values are valid on resume)
            self.tick = 0
            self.stamp = np.zeros(self.vbuf.shape[0], dtype=np.int64)
            self.yval = np.empty(self.vbuf.shape[0])

    def begin_stage(self):
        """ỹₛ from the outer momentum (with the restart rules); inner state from ỹₛ."""
        g = self.gamma()
        solver = self.ctx.solver
        every = solver["restart_every"] if solver["restart"] == "fixed" else math.inf
        if self.s_loc >= min(every, self.sc_period()):
            self._restart()
        s = self.s_loc + 1
        th, th_prev = (1 - 1 / g) * (s + 2) / 2, (1 - 1 / g) * (s + 1) / 2
        yt = (self.xt + ((th_prev - 1) / th) * (self.xt - self.xprev)
              + (th_prev / th) * (self.zt - self.xt))
        rs = solver["restart"]
        if self.s_loc > 0 and (
                rs == "gradient" and float((self.yprev - self.xt) @ (self.xt - self.xprev)) > 0
                or rs == "adaptive" and float((self.yprev - self.xt) @ (yt - self.xt)) > 0
                or rs == "objective" and self.fprev is not None and self.f > self.fprev):
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

    def inner_step(self, k, batch):
        eta, l1, l2 = self.eta, self.l1, self.l2
        if self.lazy:
            X, cs = self.Xc, self.cs   # columns: every sampled row, this rank's columns
            rows = batch if self.columns else self.local_rows(batch)
            lazy = (self.x[cs], self.last[cs], self.H[cs], self.z0[cs], self.mu[cs])
            mb = self.mb[:rows.shape[0]]
            self.tick += 1
            V.lazy_margins(X.indptr, X.indices, X.data, rows, k, *lazy, self.S0, self.S1,
                           eta, l1, l2, mb, self.tick, self.stamp, self.yval)
            if self.columns:       # partial margins → the batch's margins: Allreduce(b)
                with self.ctx.phase("allreduce"):
                    self.world.allreduce(mb)
            coef = self.coefs(rows, mb)
            if self.columns:       # O(nnz of the batch / P), no further collective
                cnt = V.rows_scatter_support(X.indptr, X.indices, X.data, rows, coef,
                                             self.vbuf, self.mark, self.supp)
            elif self.sparse_comm:  # O(nnz of the batch), one Allgatherv
                cnt = self.exchange(batch, rows, coef)
            else:                  # the reference path: Allreduce(d), then an O(d) scan
                V.csr_rows_scatter(X.indptr, X.indices, X.data, rows, coef, self.vbuf)
                with self.ctx.phase("allreduce"):
                    self.world.allreduce(self.vbuf)
                cnt = V.support_nonzero(self.vbuf, self.supp)
            V.lazy_update(self.supp[:cnt], k, self.vbuf, *lazy, self.S0, self.S1, eta, l1, l2)
            return
        th = (k + 1) / 2.0
        a = 1.0 - 1.0 / th
        yk = a * self.x + self.z / th
        v = self.vr_direction(yk, batch)
        self.gbar *= a
        self.gbar += (v + self.mu) / th
        c = eta * th * (k / 2.0)
        V.enet_prox(self.z0 - c * self.gbar, c, l1, l2, self.z)
        self.x *= a
        self.x += self.z / th

    def end_stage(self):
        m, cs = self.m, self.cs
        if self.lazy:
            V.lazy_sync(m, self.x[cs], self.last[cs], self.H[cs], self.z0[cs], self.mu[cs],
                        self.S0, self.S1, self.eta, self.l1, self.l2)
            V.lazy_z(m, self.H[cs], self.z0[cs], self.mu[cs], self.eta, self.l1, self.l2,
                     self.z[cs])
            self.H[:] = 0.0    # spent: zero, so the state at a stage end is the same on
            self.last[:] = 0   # every rank whatever the layout (begin_stage zeroes them too)
        if self.columns:   # x̃ₛ, z̃ₛ full on every rank (replicated state at stage ends)
            self.gather_blocks(self.x, self.z)
        self.yprev[:] = self.z0
        self.fprev = self.f            # P(x̃ₛ₋₁): full_gradient() then gives P(x̃ₛ)
        self.xprev[:] = self.xt
        self.xt = self.x.copy()
        self.zt[:] = self.z
        self.s_loc += 1

    def metrics(self):
        info = super().metrics()
        info["restarts"] = self.restarts
        return info

    def summary_info(self):
        period = self.sc_period()
        return dict(super().summary_info(), restarts=self.restarts, gamma=self.gamma(),
                    sc_period=None if period == math.inf else period,
                    updates="lazy" if self.lazy else "dense")


class ProxSVRG(_VR):
    name = "prox-svrg"
    STATE = {"x": Array()}
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

    def inner_step(self, k, batch):
        v = self.vr_direction(self.x, batch)
        np.add(v, self.mu, out=self.tmp)
        self.tmp *= -self.eta
        self.tmp += self.x
        V.enet_prox(self.tmp, self.eta, self.l1, self.l2, self.x)

    def end_stage(self):
        self.xt = self.x.copy()   # last iterate (the usual practical choice)


class Katyusha(_VR):
    name = "katyusha"
    STATE = {"yk": Array(), "zk": Array(), "acc": Array(), "wsum": Float()}
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

    def inner_step(self, k, batch):
        t1, t2 = self.tau1(), 0.5
        alpha = self.eta / (3.0 * t1 * self.L)
        xk = t1 * self.zk + t2 * self.xt + (1.0 - t1 - t2) * self.yk
        v = self.vr_direction(xk, batch)
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


ALGORITHMS = [DASVRDA, ProxSVRG, Katyusha]
