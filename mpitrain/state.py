"""State declared once: what an algorithm's checkpoint holds, and nothing else to write.

An algorithm names its state as a dict {name: kind} (class attribute `STATE`, merged along the
class hierarchy, or `state_fields()` when names depend on the instance, e.g. one entry per
layer). Saving, restoring, verifying and resharding are generic (this module and
checkpoint.py); no algorithm writes a save/load pair.

A name is the path of an attribute: "w" is `alg.w`; "P/L1" is `alg.P["L1"]`; "layers/0" is
`alg.layers[0]` (list index); "ring/hops" is `alg.ring.hops`. Kinds:

    Array()      an ndarray identical on every rank (rank 0 writes it). When the live
                 attribute is an array, the restored one must have its shape and gets its
                 dtype; `inplace=True` copies into it (views into it stay valid, e.g.
                 parameters that are views of one flat block); `optional=True` allows None
                 (absent from the file).
    Int() Float() Bool() Str()   Python scalars.
    Rng()        a numpy Generator, restored in place (its bit-generator state).
    Rows()       this rank's rows [train.start, train.stop) of an array indexed by global
                 training row (ParMAC's codes Z): gathered to one global dataset, so a
                 resume at another P reads other slices.
    Owned(rank, holds=None)  an ndarray that lives on some ranks only (a layer's group):
                 `rank(alg)` is the rank whose copy is saved (gathered to rank 0), and
                 `holds(alg)` (default: this rank is `rank(alg)`) says which ranks read it
                 when restored (None elsewhere), so the layout may change between runs.

After a restore the driver calls `alg.restored()` (rebuild caches; a run that stopped at
its cap goes on when the resumed job raised the cap: see Algorithm.CAPS).
"""
import json

import numpy as np

from .errors import CheckpointError


class Kind:
    optional = False
    inplace = False

    def __init__(self, optional=False):
        self.optional = optional


class Array(Kind):
    def __init__(self, optional=False, inplace=False):
        super().__init__(optional)
        self.inplace = inplace


class Int(Kind):
    cast = int


class Float(Kind):
    cast = float


class Bool(Kind):
    cast = bool


class Str(Kind):
    cast = str


class Rng(Kind):
    pass


class Rows(Kind):
    pass


class Owned(Kind):
    def __init__(self, rank, optional=False, holds=None):
        super().__init__(optional)
        self.rank = rank
        self.holds = holds or (lambda alg: alg.world.rank == rank(alg))


class Sharded:
    """Rows [start, start + len(local)) of a global array with `total` rows (what a Rows
    field becomes in the dict checkpoint.save writes)."""

    def __init__(self, local, start, total):
        self.local = np.ascontiguousarray(local)
        self.start = int(start)
        self.total = int(total)


class OwnedValue:
    """An Owned field on its way to the file: `value` on rank `rank`, None elsewhere."""

    def __init__(self, value, rank):
        self.value = value
        self.rank = int(rank)


def _parts(name):
    return [int(p) if p.isdigit() else p for p in name.split("/")]


def _child(cur, p):
    if isinstance(cur, dict):
        return cur.get(p)
    return cur[p] if isinstance(cur, list) else getattr(cur, p)


def get(obj, name):
    """The value at `name`; None when a container on the way is None (an optional group
    such as a snapshot that does not exist yet)."""
    cur = obj
    for p in _parts(name):
        if cur is None:
            return None
        cur = _child(cur, p)
    return cur


def _set(cur, p, value):
    if isinstance(cur, (dict, list)):
        cur[p] = value
    else:
        setattr(cur, p, value)


def put(obj, name, value):
    """Set the value at `name`; a None container on the way becomes a dict (and stays None
    when the value is None)."""
    parts = _parts(name)
    cur = obj
    for p in parts[:-1]:
        nxt = _child(cur, p)
        if nxt is None:
            if value is None:
                return
            nxt = {}
            _set(cur, p, nxt)
        cur = nxt
    _set(cur, parts[-1], value)


def fields(alg):
    """The algorithm's declared state {name: kind}."""
    return alg.state_fields()


def collect(alg):
    """The checkpoint dict of `alg`'s declared state (values for checkpoint.save)."""
    out = {}
    for name, kind in fields(alg).items():
        if isinstance(kind, Owned):
            rank = kind.rank(alg)
            value = get(alg, name) if alg.world.rank == rank else None
            if value is None and alg.world.rank == rank and not kind.optional:
                raise RuntimeError(f"state {name!r}: missing on its owner, rank {rank}")
            out[name] = OwnedValue(value, rank)
            continue
        value = get(alg, name)
        if value is None:
            if not kind.optional:
                raise RuntimeError(f"state {name!r} is None but not declared optional")
            continue
        if isinstance(kind, Array):
            out[name] = np.asarray(value)
        elif isinstance(kind, Rows):
            tr = alg.ctx.train
            out[name] = Sharded(value, tr.start, tr.n)
        elif isinstance(kind, Rng):
            out[name] = json.dumps(value.bit_generator.state, sort_keys=True)
        elif isinstance(kind, Str):
            out[name] = str(value)
        elif isinstance(kind, Bool):
            out[name] = np.int64(bool(value))
        elif isinstance(kind, Int):
            out[name] = np.int64(value)
        else:
            out[name] = np.float64(value)
    return out


def restore(alg, reader):
    """Set `alg`'s declared state from a checkpoint.Reader (every rank)."""
    for name, kind in fields(alg).items():
        if isinstance(kind, Owned) and not kind.holds(alg):
            put(alg, name, None)
            continue
        if name not in reader:
            if kind.optional:
                put(alg, name, None)
                continue
            raise CheckpointError(f"{reader.path}: state/{name} is missing")
        if isinstance(kind, Rows):
            tr = alg.ctx.train
            cur = get(alg, name)
            value = reader.rows(name, tr.start, tr.stop)
            put(alg, name, _fit(reader, name, cur, value, kind.inplace))
        elif isinstance(kind, (Array, Owned)):
            cur = get(alg, name)
            value = np.asarray(reader.get(name))
            put(alg, name, _fit(reader, name, cur, value, kind.inplace))
        elif isinstance(kind, Rng):
            gen = get(alg, name)
            try:
                gen.bit_generator.state = json.loads(reader.get(name))
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"{reader.path}: state/{name}: not a random-generator "
                                      f"state ({exc})")
        else:
            value = reader.get(name)
            try:
                put(alg, name, kind.cast(value))
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{reader.path}: state/{name}: {exc}")


def _fit(reader, name, cur, value, inplace):
    """The restored array: checked against the live array `cur` when there is one (its shape
    and dtype are what this job needs), copied into it when `inplace`."""
    if isinstance(cur, np.ndarray):
        if cur.shape != value.shape:
            raise CheckpointError(f"{reader.path}: state/{name} has shape {value.shape}, this "
                                  f"job needs {cur.shape}")
        if inplace:
            cur[...] = value
            return cur
        return np.array(value, dtype=cur.dtype, order="C")
    return np.array(value, order="C")
