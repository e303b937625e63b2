"""Checkpoints: declared state, atomic and verified whole, chosen by content, K kept,
damaged or foreign files skipped and never pruned, resharding by row, every bit flip caught."""
import os
import shutil

import numpy as np
import pytest

from mpitrain import checkpoint, state
from mpitrain.comm import World, block_range
from mpitrain.errors import CheckpointError

JOB = {"algorithm": "x", "job_hash": "h"}


def _save(world, d, step, extra=None, keep=3, job=JOB):
    values = {"w": np.arange(5.0) * step, "it": np.int64(step), "rng": '{"a": 1}',
              "reason": "", "Z": checkpoint.Sharded(np.arange(12.0).reshape(6, 2) + step, 0, 6)}
    values.update(extra or {})
    return checkpoint.save(world, d, step, values, job, keep)


def _names(d):
    return sorted(os.listdir(d))


def test_save_load_keep(tmp_path):
    world = World()
    d = str(tmp_path / "ck")
    for step in (1, 2, 3, 4):
        _save(world, d, step, keep=2)
    assert _names(d) == ["ckpt-000000003.h5", "ckpt-000000004.h5"]
    path, man = checkpoint.find(d, "auto", JOB)
    assert path.endswith("ckpt-000000004.h5") and man["step"] == 4 and man["world_size"] == 1
    r = checkpoint.Reader(path, man)
    np.testing.assert_array_equal(r.get("w"), np.arange(5.0) * 4)
    assert r.get("it") == 4 and r.get("rng") == '{"a": 1}' and r.get("reason") == ""
    # resharding: another P reads another row slice of the same global array
    for P in (2, 3):
        parts = [r.rows("Z", *block_range(6, P, p)) for p in range(P)]
        np.testing.assert_array_equal(np.vstack(parts), np.arange(12.0).reshape(6, 2) + 4)
    r.close()


def test_damaged_checkpoints_are_skipped(tmp_path, capsys):
    world = World()
    d = str(tmp_path / "ck")
    _save(world, d, 1)
    _save(world, d, 2)
    p3 = _save(world, d, 3)
    with open(p3, "r+b") as fh:  # truncate the newest
        fh.truncate(os.path.getsize(p3) // 2)
    p2 = os.path.join(d, "ckpt-000000002.h5")
    with open(p2, "r+b") as fh:  # one flipped bit in the middle of the second newest
        fh.seek(os.path.getsize(p2) // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0x10]))
    path, man = checkpoint.find(d, "auto", JOB)
    assert path.endswith("ckpt-000000001.h5") and man["step"] == 1
    err = capsys.readouterr().err
    assert "ckpt-000000003.h5" in err and "truncated" in err and "SHA-256" in err
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.find(d, p3, JOB)


def test_stray_files_are_neither_picked_nor_counted_nor_deleted(tmp_path):
    """A user's copy, another job's checkpoint, a renamed file and a damaged leftover with a
    higher step: --resume auto takes the highest verified step of THIS job, and keep = 1
    prunes only this job's own older checkpoints."""
    world = World()
    d = str(tmp_path / "ck")
    p1 = _save(world, d, 1, keep=1)
    shutil.copy(p1, os.path.join(d, "ckpt-backup.h5"))                # user's copy
    other = _save(world, str(tmp_path / "other"), 50, job={"algorithm": "x", "job_hash": "o"})
    shutil.copy(other, os.path.join(d, "ckpt-000000050.h5"))          # another job's
    shutil.copy(p1, os.path.join(d, "ckpt-000000040.h5"))             # renamed: says step 1
    with open(os.path.join(d, "ckpt-000000099.h5"), "wb") as fh:      # damaged leftover
        fh.write(b"\0" * 1000)
    strays = {"ckpt-backup.h5", "ckpt-000000050.h5", "ckpt-000000040.h5", "ckpt-000000099.h5"}
    for step in (2, 3):
        _save(world, d, step, keep=1)
    assert set(_names(d)) == strays | {"ckpt-000000003.h5"}
    path, man = checkpoint.find(d, "auto", JOB)
    assert path.endswith("ckpt-000000003.h5") and man["step"] == 3
    with pytest.raises(CheckpointError, match="another job"):
        checkpoint.find(d, os.path.join(d, "ckpt-000000050.h5"), JOB)


def test_incomplete_old_and_future_versions_refused(tmp_path):
    import h5py
    world = World()
    d = str(tmp_path / "ck")
    p = _save(world, d, 1)
    old = str(tmp_path / "v1.h5")
    with h5py.File(old, "w") as f:  # a plain HDF5 file, as format 1 wrote
        f.attrs["complete"] = 1
    with pytest.raises(CheckpointError, match="format version 1"):
        checkpoint.verify(old)
    with open(p, "r+b") as fh:  # a valid header around a body that says version 99
        data = bytearray(fh.read())
    body = bytes(data[checkpoint.USERBLOCK:]).replace(b"format_version", b"format_versioX")
    assert body != bytes(data[checkpoint.USERBLOCK:])
    import hashlib
    head = checkpoint.MAGIC + (f"length {len(body)}\nsha256 "
                               f"{hashlib.sha256(body).hexdigest()}\n").encode()
    with open(p, "wb") as fh:
        fh.write(head.ljust(checkpoint.USERBLOCK, b"\0") + body)
    with pytest.raises(CheckpointError, match="format version -1"):
        checkpoint.verify(p)


@pytest.mark.timeout(120)
def test_every_bit_flip_is_detected(tmp_path):
    """Fuzz: 400 random single-bit flips anywhere in a checkpoint (header, HDF5 metadata,
    data, strings, manifest): each is detected as a CheckpointError (never accepted, never
    another exception), and --resume auto falls back to the previous checkpoint."""
    world = World()
    d = str(tmp_path / "ck")
    _save(world, d, 1)
    p2 = _save(world, d, 2, extra={"rng": '{"state": {"state": 123456789, "inc": 42}}',
                                   "phase": "pretrain"})
    clean = open(p2, "rb").read()
    rng = np.random.default_rng(0)
    bits = rng.choice(len(clean) * 8, size=400, replace=False)
    bits[:8] = np.arange(8) * 8 * 61  # always some in the header
    for bit in bits:
        data = bytearray(clean)
        data[bit // 8] ^= 1 << (bit % 8)
        with open(p2, "wb") as fh:
            fh.write(data)
        with pytest.raises(CheckpointError):
            checkpoint.verify(p2, JOB)
    path, man = checkpoint.find(d, "auto", JOB)
    assert man["step"] == 1


class _Toy:
    """An algorithm-like object with every kind of declared state."""

    def __init__(self, world, start, n, total):
        self.world = world
        self.ctx = type("C", (), {})()
        self.ctx.train = type("T", (), {"start": start, "stop": start + n, "n": total})()
        self.flat = np.zeros(6)
        self.view = self.flat[2:4]  # a view that must stay valid: inplace restore
        self.w = np.zeros(3)
        self.it = 0
        self.f = 0.0
        self.done = False
        self.reason = ""
        self.rng = np.random.default_rng(1)
        self.Z = np.zeros((n, 2), dtype=np.uint8)
        self.snap = None
        self.ring = type("R", (), {"hops": 0})()
        self.mom = {}

    def state_fields(self):
        return {"flat": state.Array(inplace=True), "w": state.Array(), "it": state.Int(),
                "f": state.Float(), "done": state.Bool(), "reason": state.Str(),
                "rng": state.Rng(), "Z": state.Rows(), "snap/a": state.Array(optional=True),
                "ring/hops": state.Int(),
                "mom/L1": state.Owned(lambda a: a.world.size - 1, optional=True)}


def _toy(world, total=7, seed=0):
    lo, hi = block_range(total, world.size, world.rank)
    t = _Toy(world, lo, hi - lo, total)
    if seed:
        g = np.random.default_rng(seed)
        t.flat[:] = g.random(6)
        t.w = g.random(3)
        t.it, t.f, t.done, t.reason = 7, 0.25, True, "max_iter"
        t.rng.random(5)
        t.Z = (g.random((total, 2)) > 0.5).astype(np.uint8)[lo:hi]
        t.snap = {"a": g.random(2)}
        t.ring.hops = 11
        if world.rank == world.size - 1:
            t.mom["L1"] = g.random(4).astype(np.float32)
    return t


@pytest.mark.mpi(min_size=1)
def test_declared_state_roundtrip(world, shared_tmp):
    """collect → save → restore gives back every kind of declared state, at this P, with
    views kept valid, optional groups absent or present, and owned arrays on their owner."""
    src = _toy(world, seed=3)
    path = checkpoint.save(world, shared_tmp, 1, state.collect(src), JOB)
    path = world.bcast_obj(path)
    man = checkpoint.verify(path, JOB)
    dst = _toy(world)
    view = dst.view
    r = checkpoint.Reader(path, man)
    state.restore(dst, r)
    r.close()
    np.testing.assert_array_equal(dst.flat, src.flat)
    assert dst.view is view and np.shares_memory(dst.view, dst.flat)
    np.testing.assert_array_equal(dst.w, src.w)
    assert (dst.it, dst.f, dst.done, dst.reason) == (7, 0.25, True, "max_iter")
    assert dst.rng.random() == src.rng.random()
    np.testing.assert_array_equal(dst.Z, src.Z)
    np.testing.assert_array_equal(dst.snap["a"], src.snap["a"])
    assert dst.ring.hops == 11
    if world.rank == world.size - 1:
        np.testing.assert_array_equal(dst.mom["L1"], src.mom["L1"])
    else:
        assert dst.mom.get("L1") is None
    # absent optional group: stays None
    empty = _toy(world)
    path = world.bcast_obj(checkpoint.save(world, shared_tmp, 2, state.collect(empty), JOB))
    dst = _toy(world, seed=5)
    dst.snap = None
    r = checkpoint.Reader(path, checkpoint.verify(path, JOB))
    state.restore(dst, r)
    r.close()
    assert dst.snap is None and dst.it == 0


def test_shape_mismatch_is_a_checkpoint_error(tmp_path):
    world = World()
    src = _toy(world, seed=3)
    path = checkpoint.save(world, str(tmp_path), 1, state.collect(src), JOB)
    dst = _toy(world)
    dst.w = np.zeros(4)
    r = checkpoint.Reader(path, checkpoint.verify(path, JOB))
    with pytest.raises(CheckpointError, match="state/w has shape"):
        state.restore(dst, r)
    r.close()


def test_write_failure_leaves_earlier_checkpoints(tmp_path):
    from mpitrain.errors import OutputError
    world = World()
    d = str(tmp_path / "ck")
    _save(world, d, 1)
    os.chmod(d, 0o500)
    try:
        if os.access(d, os.W_OK):  # root ignores permissions: use a path under a file
            with pytest.raises(OutputError):
                _save(world, os.path.join(d, "ckpt-000000001.h5", "sub"), 2)
        else:
            with pytest.raises(OutputError, match="earlier checkpoints are intact"):
                _save(world, d, 2)
    finally:
        os.chmod(d, 0o700)
    assert checkpoint.find(d, "auto", JOB)[1]["step"] == 1
