"""[model] values = "float32" (the CSR kernels keep the values in single precision): lbfgs
reaches a certified optimum of the float32-rounded data that differs from float64's by a
small, non-zero amount; the memory estimates count 4 bytes less per stored value and still
bound the peak; models that do not take the kernels' path refuse it with one line; a resume
with the other value type is another job."""
import io
import tracemalloc

import h5py
import numpy as np
import pytest

from mpitrain import datasets, driver
from mpitrain.algorithms import registry
from mpitrain.algorithms.base import Context
from mpitrain.comm import World
from mpitrain.errors import CheckpointError, JobError
from mpitrain.models.linear import SplitCSR, layout_bytes
from util import write_job

ROWS, L2 = 2000, 1e-4


def _job(tmp, train, values, name, algorithm="lbfgs", model=None, **sections):
    return write_job(f"{tmp}/{name}.toml", dict({
        "job": {"algorithm": algorithm, "seed": 0},
        "data": {"train": train, "max_rows": ROWS},
        "model": dict({"l2": L2, "values": values}, **(model or {})),
        "solver": {"max_iter": 500},
        "checkpoint": {"every": 0}}, **sections))


def _logistic(X, y):
    n = X.shape[0]

    def f(w):
        z = y * (X @ w)
        return (np.logaddexp(0, -z).sum() / n + 0.5 * L2 * w @ w,
                X.T @ (-y / (1 + np.exp(z))) / n + L2 * w)
    return f


@pytest.mark.timeout(120)
def test_lbfgs_float32_certified_and_close_to_float64(tmp_path, rt_h5):
    """Each run is certified (‖∇f‖²/(2·l2) ≤ 1e-10·f, ∇f in NumPy) on the data it computes
    with: float64 on the file's values, float32 on the values rounded to float32. The two
    optima differ (not zero: the option really changes the data) by about the rounding
    (relative 2⁻²⁴ ≈ 6e-8 per value), and on the float64 objective the float32 result is
    within 1e-9·f of the optimum."""
    X, y = datasets.load(rt_h5)
    X, y = X[:ROWS], y[:ROWS]
    X32 = X.copy()
    X32.data = X.data.astype(np.float32).astype(np.float64)
    f64, f32 = _logistic(X, y), _logistic(X32, y)
    w = {}
    for values in ("float64", "float32"):
        s = driver.run(World(), _job(tmp_path, rt_h5, values, values),
                       out=str(tmp_path / values), fresh=True, stream=io.StringIO())
        assert s["stop_reason"] == "certified gap", s
        with h5py.File(tmp_path / values / "final.h5") as fh:
            w[values] = fh["model/w"][()]
    for values, f in (("float64", f64), ("float32", f32)):
        val, g = f(w[values])
        assert g @ g / (2 * L2) <= 1e-10 * val, (values, g @ g / (2 * L2) / val)
    rel = np.linalg.norm(w["float32"] - w["float64"]) / np.linalg.norm(w["float64"])
    assert 0 < rel <= 1e-6, rel
    val, g = f64(w["float32"])   # f64(w32) − f64* ≤ ‖∇f64(w32)‖²/(2·l2)
    assert g @ g / (2 * L2) <= 1e-9 * val, g @ g / (2 * L2) / val
    assert abs(val - f64(w["float64"])[0]) <= 1e-9 * val


def test_layout_bytes_counts_the_value_type(rt_h5):
    """4 bytes less per stored value in the estimate (its all-tail worst case keeps every value
    twice), and each estimate bounds the layout actually kept, whose values have the type.
    (Kept bytes need not shrink: float64 with w within 1 MiB keeps the tail once, as here.)"""
    from mpitrain import data
    world = World()
    sh = data.load(world, rt_h5, group="train", max_rows=ROWS, what="train")
    e64, e32 = layout_bytes(sh, "float64"), layout_bytes(sh, "float32")
    assert e64 - e32 == 2 * 4 * sh.nnz   # all-tail worst case: every value kept twice
    for values, est in (("float64", e64), ("float32", e32)):
        lay = SplitCSR(sh.X, values)
        assert lay.hval.dtype == lay.tcval.dtype == np.dtype(values)
        assert sum(a.nbytes for a in vars(lay).values() if isinstance(a, np.ndarray)) <= est


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["lbfgs", "fadl", "psgd-mix"])
def test_memory_estimate_with_float32_bounds_the_peak(name, tmp_path, rt_h5):
    """memory_bytes(job, train) with values = "float32": 8 bytes per non-zero below float64's
    (the layout's two copies of a value), and still at least the peak of setup and two steps
    (the check of test_hostile, at float32)."""
    world = World()
    cls = registry()[name]
    jobs = {v: driver.load_job(world, _job(tmp_path, rt_h5, v, v, algorithm=name))
            for v in ("float64", "float32")}
    train, test = driver.load_data(world, jobs["float32"], cls)
    est = cls.memory_bytes(jobs["float32"], train)
    assert cls.memory_bytes(jobs["float64"], train) - est == 8 * train.nnz
    tracemalloc.start()
    try:
        alg = cls(Context(world, jobs["float32"], train, test))
        alg.setup()
        for _ in range(2):
            if not alg.done:
                alg.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= est <= 3 * peak + (2 << 20), (est, peak)


@pytest.mark.timeout(60)
def test_float32_refused_where_the_kernels_are_not_used(tmp_path, digits_h5):
    """lbfgs's multinomial model (scipy products, not the CSR kernels): a JobError naming the
    key, raised alike on every rank (one line)."""
    job = _job(tmp_path, digits_h5, "float32", "multi")
    with pytest.raises(JobError, match=r"\[model\] values = 'float32' applies to binary "
                                       r"models without intercept; this multinomial") as e:
        driver.run(World(), job, out=str(tmp_path / "m"), fresh=True, stream=io.StringIO())
    assert getattr(e.value, "collective", False)


@pytest.mark.timeout(120)
def test_resume_with_the_other_value_type_is_refused(tmp_path, rt_h5):
    """values is part of the job hash: a checkpoint of the float64 run does not resume a
    float32 run (it would continue another problem)."""
    job = _job(tmp_path, rt_h5, "float64", "r", checkpoint={"every": 1})
    out = str(tmp_path / "r")
    driver.run(World(), job, out=out, fresh=True, stream=io.StringIO(),
               overrides=[("solver", "max_iter", 2)])
    with pytest.raises(CheckpointError, match="checkpoint of another job"):
        driver.run(World(), job, out=out, resume="auto", stream=io.StringIO(),
                   overrides=[("model", "values", "float32")])


@pytest.mark.timeout(120)
def test_float32_run_resumes_bit_identical(tmp_path, rt_h5):
    """values are data, not state (the checkpoint holds none): a float32 run cut after 3
    iterations and resumed ends with the bits of the uninterrupted float32 run."""
    job = _job(tmp_path, rt_h5, "float32", "c", checkpoint={"every": 1})
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    driver.run(World(), job, out=whole, fresh=True, stream=io.StringIO())
    driver.run(World(), job, out=cut, fresh=True, stream=io.StringIO(),
               overrides=[("solver", "max_iter", 3)])
    s = driver.run(World(), job, out=cut, resume="auto", stream=io.StringIO())
    assert s["stop_reason"] == "certified gap" and s["iterations"] > 3, s
    w = []
    for out in (whole, cut):
        with h5py.File(f"{out}/final.h5") as fh:
            w.append(fh["model/w"][()])
    assert np.array_equal(w[0], w[1])


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["lbfgs", "fadl"])
def test_float32_across_ranks(world, shared_tmp, rt_h5, name):
    """float32 at P = 2, 3: every rank's shard is rounded alike, so the run is certified on
    the rounded data (‖∇f‖²/(2·l2) ≤ 1e-10·f) and reaches P = 1's objective to 1e-9 (lbfgs:
    P = 1's iterate up to summation order), and the replicas are bit-identical. Rank 0's
    checks travel to every rank, so a failure there fails all ranks instead of hanging."""
    from mpi4py import MPI
    job = _job(shared_tmp, rt_h5, "float32", f"mpi-{name}", algorithm=name)
    out = f"{shared_tmp}/{name}-p"
    driver.run(world, job, out=out, fresh=True, stream=io.StringIO())
    with h5py.File(f"{out}/final.h5") as fh:
        wp = fh["model/w"][()]
    assert np.array_equal(world.comm.bcast(wp, root=0), wp)
    failed = None
    if world.rank == 0:
        try:
            one = f"{shared_tmp}/{name}-1"
            driver.run(World(MPI.COMM_SELF), job, out=one, fresh=True, stream=io.StringIO())
            with h5py.File(f"{one}/final.h5") as fh:
                w1 = fh["model/w"][()]
            X, y = datasets.load(rt_h5)
            X32 = X[:ROWS]
            X32.data = X32.data.astype(np.float32).astype(np.float64)
            f = _logistic(X32, y[:ROWS])
            (vp, gp), (v1, g1) = f(wp), f(w1)
            assert gp @ gp / (2 * L2) <= 1e-10 * vp and g1 @ g1 / (2 * L2) <= 1e-10 * v1
            assert abs(vp - v1) <= 1e-9 * v1, (vp, v1)
            if name == "lbfgs":
                # measured 1e-16 at P = 2, 3; a rank reading float64 instead: 1.5e-8
                assert np.linalg.norm(wp - w1) <= 1e-10 * np.linalg.norm(w1)
        except Exception as exc:   # noqa: BLE001 - reported on every rank below
            failed = repr(exc)
    failed = world.comm.bcast(failed, root=0)
    assert failed is None, failed
