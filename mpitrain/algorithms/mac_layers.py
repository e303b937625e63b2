"""MAC's layer-parallel layout (`[solver] layout = "layers"`): ranks own layers and exchange
auxiliary coordinates.

With K+1 layers (sizes h₀ = D, h₁ … h_K, h_{K+1} = D) and G ranks (G ≤ K+1), rank g owns the
contiguous layers k ∈ block_range(K+1, G, g) = [lo, hi): their weights [Wₖ | bₖ], their unit
step counters and, for k < K, the coordinates Zₖ = z_{k+1}-block (output of layer k) of EVERY
training row (N rows: the training shards are gathered once at setup, and X is kept only by
the owners of the first and the last layer). The layout is for nets too wide for one rank's
memory: a rank holds its layers' weights and coordinates, never the whole net.

A rank needs two things it does not own: the input of its lowest layer, Z_{lo−1} (owned by
rank g−1), and, in the Z-step, the term that layer hi contributes to the gradient of its top
block Z_{hi−1} (computed by rank g+1, which owns W_hi and Z_hi). Both travel between
neighbours (`up`: Zₖ blocks to g+1; `down`: gradient terms to g−1), each as two Sendrecv
rounds (even ranks send, then odd ranks send), so every message pair has one size. The
per-point E_Q terms of every layer are gathered with one Allgatherv, so every rank takes the
same accept/reject decision per point and sums the terms in the order nested.zstep does:
the results equal the ring layout at P = 1 bit for bit (same SGD orders, same Z-step), with
the objective computed from the same per-point terms.

W-step: every owned layer's units do `epochs` SGD passes over all N rows, in the order the
ring layout uses at P = 1 (no communication: a layer's input and target are at hand after
`up`). Z-step: nested.zstep distributed by blocks (see zstep below).

Bytes per MAC iteration, per rank (float64; s = zsteps, b = halvings tried per step, about
1–2, h = the block width at the rank's boundary, L = K+1):
    up    N·h·(1 + s·(1 + b))      the boundary block, each gradient step and each trial
    down  N·h·s                    the gradient term of the boundary block
    terms N·L·(1 + s·b) + N·K·s    per-point E_Q terms (Allgatherv, received), ‖gradient‖²
    final (on finish)  the weights, Bcast from their owners
The ring layout sends per rank e·P − 1 packets of about |W|/P (|W| = all weights) plus one
Allgatherv of |W|: it moves weights (independent of N); this layout moves coordinates
(independent of |W|, linear in N). Both fit t(P) = t_comp·w(P) + α·c(P) + β·bytes(P), w(P)
the largest rank's share of the compute (1/P for the ring, the heaviest layer block here).
"""
import numpy as np
from mpi4py import MPI

from ..comm import block_range
from ..errors import JobError
from ..models import nested


class Layers:
    """The layer ownership of a World of G ranks over a net with `sizes` [D, h₁ … h_K, D]."""

    def __init__(self, world, sizes, n):
        self.world = world
        self.sizes = list(sizes)
        self.nl = len(sizes) - 1
        self.K = self.nl - 1
        G, g = world.size, world.rank
        if G > self.nl:
            raise JobError(f"mac: layout = \"layers\" needs at most one rank per layer "
                           f"({self.nl} layers, {G} ranks); use layout = \"ring\"")
        self.G, self.g, self.n = G, g, int(n)
        self.owner = np.empty(self.nl, dtype=np.int64)
        for p in range(G):
            a, b = block_range(self.nl, G, p)
            self.owner[a:b] = p
        self.lo, self.hi = block_range(self.nl, G, g)
        self.counts = np.bincount(self.owner, minlength=G)            # layers per rank
        self.zcounts = np.bincount(self.owner[:self.K], minlength=G)   # Z blocks per rank

    def owns(self, k):
        return self.lo <= k < self.hi

    # -- neighbour exchanges -------------------------------------------------------------
    def _pairs(self, send, recv, to, frm):
        """Two Sendrecv rounds: ranks of parity 0 send to `to` while `frm` receives, then
        parity 1; `to`/`frm` are None where there is no neighbour."""
        world, empty = self.world, np.empty(0)
        for parity in (0, 1):
            sending = self.g % 2 == parity and to is not None
            receiving = frm is not None and frm % 2 == parity
            world.sendrecv(send if sending else empty, to if sending else MPI.PROC_NULL,
                           recv if receiving else empty, frm if receiving else MPI.PROC_NULL)

    def up(self, top):
        """Send this rank's top coordinate block Z_{hi−1} to rank g+1 and return Z_{lo−1}
        from rank g−1 (None on rank 0 and when G = 1)."""
        if self.G == 1:
            return None
        to = self.g + 1 if self.g + 1 < self.G else None
        frm = self.g - 1 if self.g > 0 else None
        recv = np.empty((self.n, self.sizes[self.lo])) if frm is not None else None
        self._pairs(np.ascontiguousarray(top) if to is not None else None, recv, to, frm)
        return recv

    def down(self, term):
        """Send the gradient term of layer lo on Z_{lo−1} to rank g−1 and return the term of
        layer hi on Z_{hi−1} from rank g+1 (None on the last rank and when G = 1)."""
        if self.G == 1:
            return None
        to = self.g - 1 if self.g > 0 else None
        frm = self.g + 1 if self.g + 1 < self.G else None
        recv = np.empty((self.n, self.sizes[self.hi])) if frm is not None else None
        self._pairs(np.ascontiguousarray(term) if to is not None else None, recv, to, frm)
        return recv

    def gather(self, local, counts):
        """Every rank's per-point rows (counts[p] × n on rank p) on every rank (Allgatherv)."""
        return self.world.allgatherv(np.ascontiguousarray(local).reshape(-1, self.n), counts)

    # -- the distributed pieces of MAC ---------------------------------------------------
    def inp(self, k, X, Z, zin):
        """Input of owned layer k: X, an owned block, or the received Z_{lo−1}."""
        if k == 0:
            return X
        return Z[k - 1] if self.owns(k - 1) else zin

    def terms(self, X, Z, zin, layers, mu):
        """Per-point E_Q terms of every layer, gathered (nl × n on every rank); returns
        (reconstruction r, violation v, E_Q) per point, summed as nested.per_point_eq does."""
        loc = np.empty((self.hi - self.lo, self.n))
        for i, k in enumerate(range(self.lo, self.hi)):
            if k < self.K:
                R = Z[k] - nested.layer(layers[k], self.inp(k, X, Z, zin), False)
                loc[i] = np.einsum("ij,ij->i", R, R)
            else:
                R = X - nested.layer(layers[k], self.inp(k, X, Z, zin), True)
                loc[i] = 0.5 * np.einsum("ij,ij->i", R, R)
        T = self.gather(loc, self.counts)
        v = np.zeros(self.n)
        for k in range(self.K):
            v += T[k]
        return T[self.K], v, T[self.K] + 0.5 * mu * v

    def top(self, Z):
        return Z[self.hi - 1] if self.hi - 1 < self.K else None

    def zstep(self, X, Z, layers, mu, steps, alpha0=1.0, max_halvings=30):
        """nested.zstep distributed by layer blocks: the same gradient, the same per-point
        backtracking on the gathered E_Q, so the same accepted steps. Z (list, owned blocks
        set, others None) is updated in place; returns the number of accepted steps."""
        K, n = self.K, self.n
        own_z = [k for k in range(self.lo, min(self.hi, K))]
        zin = self.up(self.top(Z))
        e = self.terms(X, Z, zin, layers, mu)[2]
        alpha = np.full(n, alpha0)
        accepted = 0
        for _ in range(steps):
            F, G = {}, {}
            for k in range(self.lo, self.hi):
                if k < K:
                    F[k] = nested.layer(layers[k], self.inp(k, X, Z, zin), False)
                    G[k] = mu * (Z[k] - F[k])
            send = None
            for j in range(max(self.lo, 1), self.hi):   # layer j's term on Z_{j−1}
                if j < K:
                    Fn = F[j]
                    B = mu * ((Z[j] - Fn) * Fn * (1.0 - Fn)) @ layers[j][:, :-1]
                else:
                    out = nested.layer(layers[K], self.inp(K, X, Z, zin), True)
                    B = (X - out) @ layers[K][:, :-1]
                if self.owns(j - 1):
                    G[j - 1] -= B
                else:
                    send = B
            back = self.down(send)
            if back is not None:
                G[self.hi - 1] -= back
            g2l = np.empty((len(own_z), n))
            for i, k in enumerate(own_z):
                g2l[i] = np.einsum("ij,ij->i", G[k], G[k])
            g2 = sum(self.gather(g2l, self.zcounts))
            tin = []

            def energy(trial):   # the trial's boundary block up, its terms gathered
                tin[:] = [self.up(self.top(trial))]
                return self.terms(X, trial, tin[0], layers, mu)[2]

            def accept(ok):      # the received block follows its owner's accepted points
                if zin is not None:
                    zin[ok] = tin[0][ok]
            e, alpha, acc = nested.backtrack(Z, G, own_z, g2, e, alpha, energy, max_halvings,
                                             accept)
            accepted += acc
            alpha = np.minimum(alpha * 2.0, alpha0 * 8)
        return accepted

    def nested_error(self, X, layers):
        """Σₙ‖xₙ − f(xₙ)‖² on every rank: the forward pass as a pipeline (G−1 Sendrecv
        rounds, rank j to j+1), the last rank's residual summed by one Allreduce."""
        z = X
        for j in range(self.G - 1):
            if self.g == j:
                for k in range(self.lo, self.hi):
                    z = nested.layer(layers[k], z, False)
                self._pairs(np.ascontiguousarray(z), None, j + 1, None)
            elif self.g == j + 1:
                z = np.empty((self.n, self.sizes[self.lo]))
                self._pairs(None, z, None, j)
            else:
                self._pairs(None, None, None, None)
        if self.g == self.G - 1:
            for k in range(self.lo, self.hi):
                z = nested.layer(layers[k], z, k == self.K)
            R = X - z
            loc = float(np.einsum("ij,ij->", R, R))
        else:
            loc = 0.0
        return self.world.allreduce_scalars(loc)

    def replicate(self, layers):
        """All layers on every rank (Bcast from each owner): the final model."""
        out = []
        for k in range(self.nl):
            buf = layers[k] if self.owns(k) else np.empty((self.sizes[k + 1], self.sizes[k] + 1))
            out.append(self.world.bcast(np.ascontiguousarray(buf), root=int(self.owner[k])))
        return out
