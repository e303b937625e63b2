"""Sharded reading under MPI: each rank's rows equal the matching rows of a serial read, for
LIBSVM (byte ranges), HDF5 CSR/dense and .npy; bad data is the same clean error everywhere."""
import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain import data
from mpitrain.errors import DataError


def _libsvm(path, n=101, d=30, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        fh.write("# header comment\n")
        for i in range(n):
            idx = np.sort(rng.choice(d, size=rng.integers(0, 5), replace=False)) + 1
            fh.write(f"{rng.choice([-1, 1])} " + " ".join(f"{j}:{rng.normal():.5g}" for j in idx)
                     + ("\r\n" if i % 3 == 0 else "\n"))
    return path


@pytest.mark.mpi(min_size=2)
def test_sharded_readers_equal_serial(world, shared_tmp):
    from mpi4py import MPI
    from mpitrain.comm import World
    from sklearn.datasets import load_svmlight_file
    path = f"{shared_tmp}/a.svm"
    if world.rank == 0:
        _libsvm(path)
    world.comm.Barrier()
    Xs, ys = load_svmlight_file(path, n_features=30)
    shard = data.load(world, path, features=30, binary=True)
    assert shard.X.shape == (shard.rows, 30)
    np.testing.assert_array_equal(shard.y, ys[shard.start:shard.stop])
    assert abs(shard.X - Xs[shard.start:shard.stop]).max() == 0
    counts = world.comm.allgather(shard.rows)
    assert sum(counts) == 101 and min(counts) > 0
    # HDF5 CSR and dense, .npy: block split, same rows as serial
    import h5py
    h5 = f"{shared_tmp}/a.h5"
    npy = f"{shared_tmp}/a.npy"
    if world.rank == 0:
        Xc = sp.csr_matrix(Xs)
        with h5py.File(h5, "w") as f:
            g = f.create_group("train")
            g["indptr"], g["indices"], g["data"], g["y"] = Xc.indptr, Xc.indices, Xc.data, ys
            g.attrs["shape"] = Xc.shape
            t = f.create_group("test")
            t["X"], t["y"] = Xs.toarray(), ys
        np.save(npy, np.column_stack([ys, Xs.toarray()]))
    world.comm.Barrier()
    serial = data.load(World(MPI.COMM_SELF), h5, group="train", binary=True)
    for kw, path2 in ((dict(group="train"), h5), (dict(group="test"), h5), ({}, npy)):
        s = data.load(world, path2, binary=True, **kw)
        Xl = s.X.toarray() if s.sparse else s.X
        np.testing.assert_array_equal(Xl, serial.X.toarray()[s.start:s.stop])
        np.testing.assert_array_equal(s.y, serial.y[s.start:s.stop])


@pytest.mark.mpi(min_size=2)
def test_bad_data_same_error_on_every_rank(world, shared_tmp):
    path = f"{shared_tmp}/bad.svm"
    if world.rank == 0:
        with open(path, "w") as fh:
            fh.write("1 1:1\n" * 50 + "1 2:zz\n" + "-1 1:1\n" * 50)
    world.comm.Barrier()
    with pytest.raises(DataError) as e:
        data.load(world, path)
    assert "line 51" in str(e.value) and "malformed token" in str(e.value)
    msgs = world.comm.allgather(str(e.value))
    assert len(set(msgs)) == 1
    # more ranks than rows
    tiny = f"{shared_tmp}/tiny.svm"
    if world.rank == 0:
        with open(tiny, "w") as fh:
            fh.write("1 1:1\n")
    world.comm.Barrier()
    with pytest.raises(DataError, match="empty shard"):
        data.load(world, tiny)
