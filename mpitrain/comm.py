"""The MPI world as algorithms see it: buffer collectives on numpy arrays, counted and timed.

Every collective an algorithm calls goes through `World`, which counts calls and bytes
(`comm_calls`, `comm_bytes`, this rank's share) and the seconds spent inside MPI, so the
metrics can say where the time goes. Arrays travel with the upper-case buffer methods, never
pickled; transfers larger than `CHUNK_BYTES` are split.

Every collective also records, in `ACTIVITY`, that this process's main thread is inside it and
since when; the runtime's monitor thread (runtime.StopSignals) reads that to tell a rank that
waits for its peers from one that computes, and so to name a stalled rank.
"""
import functools
import time

import numpy as np
from mpi4py import MPI

CHUNK_BYTES = 1 << 30  # 1 GiB: stays below MPI's 2 GiB count limit for every dtype


def block_range(n, size, rank):
    """Rows [start, stop) of block `rank` when n rows are split over `size` ranks.

    The first n % size blocks get one extra row (divmod block distribution)."""
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


_MPI_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


class Activity:
    """What the main thread of this process is doing, for the monitor thread. Plain attribute
    writes (atomic under the GIL); `collective` is the World collective it is inside (None:
    computing or doing I/O), `since` when it entered or left the last one, `phase` the driver's
    phase (load, step, checkpoint, ...) and `step` the iteration."""

    def __init__(self):
        self.collective = None
        self.since = time.monotonic()
        self.phase = "start"
        self.step = 0

    def snapshot(self):
        """(collective, seconds in it or since the last one, phase, step)."""
        return self.collective, time.monotonic() - self.since, self.phase, self.step


ACTIVITY = Activity()


def _tracked(name):
    """Mark the main thread as inside collective `name` while the method runs (the outermost
    call only: allgatherv may call bcast)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            act = ACTIVITY
            if act.collective is not None or self.size == 1:
                return fn(self, *args, **kwargs)
            act.collective, act.since = name, time.monotonic()
            try:
                return fn(self, *args, **kwargs)
            finally:
                act.collective, act.since = None, time.monotonic()
        return wrapper
    return deco


class World:
    """A communicator with counted, timed buffer collectives."""

    def __init__(self, comm=None):
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.calls = 0
        self.bytes = 0
        self.seconds = 0.0

    # -- bookkeeping -------------------------------------------------------------------
    def _account(self, nbytes, t0):
        self.calls += 1
        self.bytes += int(nbytes)
        self.seconds += time.perf_counter() - t0

    def counters(self):
        return {"comm_calls": self.calls, "comm_bytes": self.bytes,
                "comm_seconds": self.seconds}

    def restore_counters(self, calls, nbytes):
        self.calls, self.bytes = int(calls), int(nbytes)

    # -- collectives on numpy buffers ------------------------------------------------
    @_tracked("Allreduce")
    def allreduce(self, buf, op="sum"):
        """In-place Allreduce of a contiguous numpy array; returns it."""
        assert buf.flags.c_contiguous
        t0 = time.perf_counter()
        if self.size > 1:
            flat = buf.reshape(-1)
            step = max(1, CHUNK_BYTES // max(1, flat.itemsize))
            for s in range(0, flat.size, step):
                self.comm.Allreduce(MPI.IN_PLACE, flat[s:s + step], op=_MPI_OPS[op])
        self._account(buf.nbytes, t0)
        return buf

    def allreduce_scalars(self, *values, op="sum"):
        """Allreduce a few float64 scalars; returns a tuple (or one float)."""
        buf = np.array(values, dtype=np.float64)
        self.allreduce(buf, op)
        return tuple(buf.tolist()) if len(values) > 1 else float(buf[0])

    @_tracked("Bcast")
    def bcast(self, buf, root=0):
        """In-place Bcast of a contiguous numpy array from `root`; returns it."""
        t0 = time.perf_counter()
        if self.size > 1:
            flat = buf.reshape(-1)
            step = max(1, CHUNK_BYTES // max(1, flat.itemsize))
            for s in range(0, flat.size, step):
                self.comm.Bcast(flat[s:s + step], root=root)
        self._account(buf.nbytes, t0)
        return buf

    @_tracked("Sendrecv")
    def sendrecv(self, sendbuf, dest, recvbuf, source, tag=0):
        """Send `sendbuf` to `dest` while receiving `recvbuf` from `source` (ring shifts)."""
        t0 = time.perf_counter()
        if self.size > 1:
            s = sendbuf.reshape(-1)
            r = recvbuf.reshape(-1)
            step = max(1, CHUNK_BYTES // max(1, s.itemsize))
            for k in range(0, max(s.size, r.size), step):
                self.comm.Sendrecv(s[k:k + step], dest=dest, sendtag=tag,
                                   recvbuf=r[k:k + step], source=source, recvtag=tag)
        else:
            recvbuf[...] = sendbuf
        self._account(sendbuf.nbytes, t0)
        return recvbuf

    def ring_shift(self, sendbuf, recvbuf, shift=1):
        """Pass `sendbuf` to rank (p + shift) mod P and receive from (p − shift) mod P."""
        return self.sendrecv(sendbuf, (self.rank + shift) % self.size, recvbuf,
                             (self.rank - shift) % self.size)

    @_tracked("Allgatherv")
    def allgatherv(self, local, counts):
        """Concatenate every rank's `local` rows (counts[p] rows on rank p) on all ranks.

        `local` is a contiguous array whose first axis is rows; returns the global array."""
        counts = np.asarray(counts, dtype=np.int64)
        inner = int(np.prod(local.shape[1:])) if local.ndim > 1 else 1
        out = np.empty((int(counts.sum()),) + local.shape[1:], dtype=local.dtype)
        t0 = time.perf_counter()
        if self.size > 1:
            sizes = counts * inner
            if int(sizes.max(initial=0)) * local.itemsize >= CHUNK_BYTES:
                # Large: one Bcast per rank's block (chunked inside bcast).
                displ = np.concatenate([[0], np.cumsum(counts)])
                for p in range(self.size):
                    blk = out[displ[p]:displ[p + 1]]
                    if p == self.rank:
                        blk[...] = local
                    self.bcast(blk, root=p)
                    self.calls -= 1
            else:
                displ = np.concatenate([[0], np.cumsum(sizes)[:-1]])
                self.comm.Allgatherv(np.ascontiguousarray(local).reshape(-1),
                                     [out.reshape(-1), (sizes, displ)])
        else:
            out[...] = local
        self._account(local.nbytes, t0)
        return out

    @_tracked("Gatherv")
    def gather_rows(self, local, counts, root=0):
        """Gatherv of row blocks to `root` (returns the global array there, None elsewhere)."""
        counts = np.asarray(counts, dtype=np.int64)
        inner = int(np.prod(local.shape[1:])) if local.ndim > 1 else 1
        t0 = time.perf_counter()
        if self.size == 1:
            self._account(local.nbytes, t0)
            return np.array(local, copy=True)
        out = None
        sizes = counts * inner
        if int(sizes.max(initial=0)) * local.itemsize >= CHUNK_BYTES:
            out = np.empty((int(counts.sum()),) + local.shape[1:], dtype=local.dtype) \
                if self.rank == root else None
            displ = np.concatenate([[0], np.cumsum(counts)])
            for p in range(self.size):
                if p == root:
                    if self.rank == root:
                        out[displ[p]:displ[p + 1]] = local
                    continue
                if self.rank == p:
                    self._send_chunked(np.ascontiguousarray(local), root)
                elif self.rank == root:
                    self._recv_chunked(out[displ[p]:displ[p + 1]], p)
        else:
            if self.rank == root:
                out = np.empty((int(counts.sum()),) + local.shape[1:], dtype=local.dtype)
                displ = np.concatenate([[0], np.cumsum(sizes)[:-1]])
                recv = [out.reshape(-1), (sizes, displ)]
            else:
                recv = None
            self.comm.Gatherv(np.ascontiguousarray(local).reshape(-1), recv, root=root)
        self._account(local.nbytes, t0)
        return out

    @_tracked("Alltoallv")
    def alltoallv(self, local, counts):
        """Personalised exchange of row blocks: rank p sends counts[q] consecutive rows of
        `local` (its rows grouped by destination, in rank order) to rank q; returns the rows
        every rank sent here, concatenated in rank order.

        The counts travel first (one Allgather of every rank's P counts, so every rank knows
        every size and takes the same path), then the rows in one Alltoallv, or, when a rank
        would send or receive CHUNK_BYTES or more, in P − 1 rounds of chunked Isend/Irecv."""
        t0 = time.perf_counter()
        out = (self._exchange_blocks(np.ascontiguousarray(local),
                                     np.ascontiguousarray(counts, dtype=np.int64))
               if self.size > 1 else np.array(local, copy=True))
        self._account(local.nbytes, t0)
        return out

    def _exchange_blocks(self, send, counts):
        """alltoallv's transfer (P > 1)."""
        P, me = self.size, self.rank
        inner = int(np.prod(send.shape[1:])) if send.ndim > 1 else 1
        table = np.empty(P * P, dtype=np.int64)      # table[p, q]: rows p sends to q
        self.comm.Allgather(counts, table)
        table = table.reshape(P, P)
        recv = table[:, me]
        out = np.empty((int(recv.sum()),) + send.shape[1:], dtype=send.dtype)
        sdispl = np.concatenate([[0], np.cumsum(counts)])
        rdispl = np.concatenate([[0], np.cumsum(recv)])
        most = max(int(table.sum(axis=0).max()), int(table.sum(axis=1).max()))
        if most * inner * send.itemsize >= CHUNK_BYTES:
            out[rdispl[me]:rdispl[me + 1]] = send[sdispl[me]:sdispl[me + 1]]
            for shift in range(1, P):
                dest, src = (me + shift) % P, (me - shift) % P
                s = send[sdispl[dest]:sdispl[dest + 1]].reshape(-1)
                r = out[rdispl[src]:rdispl[src + 1]].reshape(-1)
                step = max(1, CHUNK_BYTES // max(1, send.itemsize))  # chunks in order
                reqs = [self.comm.Irecv(r[k:k + step], source=src, tag=8)
                        for k in range(0, r.size, step)]
                reqs += [self.comm.Isend(s[k:k + step], dest=dest, tag=8)
                         for k in range(0, s.size, step)]
                MPI.Request.Waitall(reqs)
        else:
            self.comm.Alltoallv([send.reshape(-1), (counts * inner, sdispl[:-1] * inner)],
                                [out.reshape(-1), (recv * inner, rdispl[:-1] * inner)])
        return out

    def _send_chunked(self, arr, dest):
        flat = arr.reshape(-1)
        step = max(1, CHUNK_BYTES // max(1, flat.itemsize))
        for s in range(0, flat.size, step):
            self.comm.Send(flat[s:s + step], dest=dest, tag=7)

    def _recv_chunked(self, arr, source):
        flat = arr.reshape(-1)
        step = max(1, CHUNK_BYTES // max(1, flat.itemsize))
        for s in range(0, flat.size, step):
            self.comm.Recv(flat[s:s + step], source=source, tag=7)

    # -- small control messages: counted like the rest (calls, seconds; bytes where known) --
    @_tracked("the iteration-boundary agreement")
    def agree(self, codes):
        """Element-wise maximum over the ranks of a few non-negative ints (one Allreduce MAX):
        the iteration-boundary agreement on stop, stop reason and divergence."""
        t0 = time.perf_counter()
        buf = np.array(codes, dtype=np.int64)
        if self.size > 1:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        self._account(buf.nbytes, t0)
        return buf

    @_tracked("allreduce")
    def reduce_obj(self, value, op="sum"):
        """Allreduce of a small Python number (control messages)."""
        t0 = time.perf_counter()
        out = self.comm.allreduce(value, op=_MPI_OPS[op]) if self.size > 1 else value
        self._account(8, t0)
        return out

    @_tracked("allgather")
    def gather_obj(self, value):
        """Allgather of a small Python object (per-rank counts, offsets): a list by rank."""
        t0 = time.perf_counter()
        out = self.comm.allgather(value) if self.size > 1 else [value]
        self._account(8, t0)
        return out

    @_tracked("bcast")
    def bcast_obj(self, obj, root=0):
        """Broadcast a small Python object (messages, manifests); not for arrays."""
        t0 = time.perf_counter()
        out = self.comm.bcast(obj, root=root) if self.size > 1 else obj
        self._account(0, t0)
        return out

    def split(self, color, key=None):
        """A sub-World of the ranks with the same color (e.g. ranks sharing a layer)."""
        return World(self.comm.Split(color, self.rank if key is None else key))
