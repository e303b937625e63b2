"""Shared fixtures. MPI tests are marked @pytest.mark.mpi(min_size=N) and run with
`mpiexec -n 2|3 python -m pytest --with-mpi -m mpi`; serial tests run under plain pytest."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# In-process tests run one OpenMP/BLAS thread per process unless a test asks for more
# (omp.set_num_threads, or util.env(threads) for a subprocess), and idle threads sleep: under
# `mpiexec -n 3` on 2 cores, spinning threads of every rank would otherwise fight for them.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def world():
    from mpitrain.comm import World
    return World()


@pytest.fixture
def shared_tmp(world):
    """A directory every rank sees (rank 0 creates it; removed at the end)."""
    path = tempfile.mkdtemp(prefix="mpitrain-test-") if world.rank == 0 else None
    path = world.comm.bcast(path, root=0)
    yield path
    world.comm.Barrier()
    if world.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


_CACHE = os.environ.get("MPITRAIN_TEST_DATA", os.path.join(tempfile.gettempdir(),
                                                          "mpitrain-test-data"))


def _prepared(name):
    """Path of a prepared dataset file, made once per machine (all ranks wait for rank 0)."""
    from mpitrain import datasets
    os.makedirs(_CACHE, exist_ok=True)
    path = os.path.join(_CACHE, f"{name}.h5")
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    except ImportError:  # pragma: no cover
        comm = None
    if comm is None or comm.rank == 0:
        if not os.path.exists(path):
            try:
                datasets.prepare(name, path)
            except datasets.MissingPackage as exc:
                path = "missing: " + str(exc)
    if comm is not None and comm.size > 1:
        path = comm.bcast(path, root=0)
    if path.startswith("missing: "):
        pytest.skip(path)
    return path


@pytest.fixture(scope="session")
def digits_h5():
    """sklearn digits, 10 classes, dense 1500/297 × 64 in [0,1]."""
    return _prepared("digits")


@pytest.fixture(scope="session")
def digits2_h5():
    """digits '2 vs rest', ±1 labels."""
    return _prepared("digits-2vr")


@pytest.fixture(scope="session")
def rt_h5():
    """rt-polarity TF-IDF, sparse CSR, ±1 labels (needs the datasets extra)."""
    return _prepared("rt-polarity")


@pytest.fixture(scope="session")
def mnist_h5():
    """Full MNIST (needs the datasets extra)."""
    return _prepared("mnist")
