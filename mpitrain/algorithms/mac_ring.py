"""ParMAC's ring: submodels circulate round the ranks while data and coordinates stay put.

A W-step of MAC fits M independent submodels (one per layer unit / hash function / decoder
output). ParMAC (Carreira-Perpiñán & Alizadeh) keeps every rank's shard X_p and coordinates
Z_p in place and moves the submodels instead:

    submodels of group g are dealt out by `block_range(M_g, P, p)` (divmod: when M_g is not a
    multiple of P the first M_g mod P ranks hold one more, so loads differ by ≤ 1 per group);
    for epoch in 1..e:  for hop in 1..P:
        train(the submodels now here, on this rank's shard)   (one SGD pass each)
        Sendrecv them to rank p+1, receive from rank p−1         (skipped after the last pass)
    Allgatherv: every rank gets every submodel (replicated for the Z-step).

After P hops a submodel is back home, so each epoch it passes over every shard exactly once:
e passes per W-step. Only submodel parameters and their SGD state (a step counter) travel;
no data, no coordinates. Each rank's packet is a fixed-size float64 buffer: per group,
`cap_g = ceil(M_g / P)` slots of [global id (−1 = empty), step counter, parameters...].
"""
import numpy as np

from ..comm import block_range


class Ring:
    """Circulation of the submodel groups {name: (M_g, width_g)} round a World's ranks."""

    def __init__(self, world, groups):
        self.world = world
        self.groups = list(groups.items())
        P = world.size
        self.layout = []   # (name, M, width, cap, offset in the flat packet)
        off = 0
        for name, (M, width) in self.groups:
            cap = -(-M // P)
            self.layout.append((name, M, width, cap, off))
            off += cap * (2 + width)
        self.size = off
        self.send = np.zeros(self.size)
        self.recv = np.zeros(self.size)
        self.visits = {name: np.zeros(M, dtype=np.int64) for name, (M, _) in self.groups}
        self.hops = 0

    def _views(self, buf):
        return {name: buf[off:off + cap * (2 + w)].reshape(cap, 2 + w)
                for name, M, w, cap, off in self.layout}

    def w_step(self, params, counters, epochs, train):
        """Run `epochs` ring epochs; params[name] (M_g × width) and counters[name] (M_g int64)
        are the replicated submodels, updated in place on every rank at the end.

        train(name, ids, P, t, epoch, hop) trains the submodels `ids` (global indices in the
        group) on this rank's shard: P (k × width) parameters and t (k,) step counters, both
        modified in place."""
        world = self.world
        P, rank = world.size, world.rank
        for v in self.visits.values():
            v[:] = 0
        self.send[:] = 0.0
        views = self._views(self.send)
        for name, M, w, cap, off in self.layout:
            lo, hi = block_range(M, P, rank)
            slot = views[name]
            slot[:, 0] = -1.0
            slot[:hi - lo, 0] = np.arange(lo, hi)
            slot[:hi - lo, 1] = counters[name][lo:hi]
            slot[:hi - lo, 2:] = params[name][lo:hi]
        total = epochs * P
        for k in range(total):
            epoch, hop = divmod(k, P)
            views = self._views(self.send)
            for name, M, w, cap, off in self.layout:
                slot = views[name]
                ok = slot[:, 0] >= 0
                if not ok.any():
                    continue
                ids = slot[ok, 0].astype(np.int64)
                Pm = np.ascontiguousarray(slot[ok, 2:])
                t = slot[ok, 1].astype(np.int64)
                train(name, ids, Pm, t, epoch, hop)
                slot[ok, 2:] = Pm
                slot[ok, 1] = t
                self.visits[name][ids] += 1
            if k < total - 1:
                world.ring_shift(self.send, self.recv)
                self.send, self.recv = self.recv, self.send
                self.hops += 1
        # every rank needs every submodel: one Allgatherv of the packets
        allp = world.allgatherv(self.send.reshape(1, -1), np.ones(P, dtype=np.int64))
        for p in range(P):
            views = self._views(allp[p])
            for name, M, w, cap, off in self.layout:
                slot = views[name]
                ok = slot[:, 0] >= 0
                ids = slot[ok, 0].astype(np.int64)
                params[name][ids] = slot[ok, 2:]
                counters[name][ids] = slot[ok, 1].astype(np.int64)
