"""[model] values = "float32" (the CSR kernels keep the values in single precision): lbfgs
reaches a certified optimum of the float32-rounded data that differs from float64's by a
small, non-zero amount; at P = 2 (MPI tests) lbfgs, fadl, dasvrda (both exchanges) and
psgd-mix compute on the rounded values on every rank; the memory estimates count 4 bytes less
per stored value and still bound the peak; models that do not take the kernels' path refuse
it with one line, also under mpiexec -n 2; a resume with the other value type is another
job."""
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
from mpitrain.models.linear import HOT_ROW_MULTIPLE, SplitCSR, layout_bytes
from util import cli, write_job

ROWS, L2 = 2000, 1e-4


def _job(tmp, train, values, name, algorithm="lbfgs", model=None, data=None, solver=None,
         **sections):
    return write_job(f"{tmp}/{name}.toml", dict({
        "job": {"algorithm": algorithm, "seed": 0},
        "data": dict({"train": train, "max_rows": ROWS}, **(data or {})),
        "model": dict({"l2": L2, "values": values}, **(model or {})),
        "solver": solver or {"max_iter": 500},
        "checkpoint": {"every": 0}}, **sections))


def _logistic(X, y, l2=L2):
    n = X.shape[0]

    def f(w):
        z = y * (X @ w)
        return (np.logaddexp(0, -z).sum() / n + 0.5 * l2 * w @ w,
                X.T @ (-y / (1 + np.exp(z))) / n + l2 * w)
    return f


def _certified(X, y, w, l2, l1):
    """(f(w), dist(0, ∂f(w))²/(2·l2) ≥ f(w) − f*) in NumPy: the minimal-norm subgradient,
    coordinate-wise for l1."""
    f, g = _logistic(X, y, l2)(w)
    s = np.where(w != 0, g + l1 * np.sign(w), np.sign(g) * np.maximum(np.abs(g) - l1, 0.0))
    return f + l1 * np.abs(w).sum(), float(s @ s) / (2.0 * l2)


def _rounded(X):
    """X with its values rounded to float32 (what the kernels compute with), in float64."""
    X32 = X.copy()
    X32.data = X.data.astype(np.float32).astype(np.float64)
    return X32


def _on_rank0(world, check):
    """Run check() on rank 0 only and fail every rank with its error (no rank left waiting
    in the next collective while rank 0's assertion unwinds)."""
    failed = None
    if world.rank == 0:
        try:
            check()
        except Exception as exc:   # noqa: BLE001 - reported on every rank below
            failed = repr(exc)
    failed = world.comm.bcast(failed, root=0)
    assert failed is None, failed


@pytest.mark.timeout(120)
def test_lbfgs_float32_certified_and_close_to_float64(tmp_path, rt_h5):
    """Each run is certified (‖∇f‖²/(2·l2) ≤ 1e-10·f, ∇f in NumPy) on the data it computes
    with: float64 on the file's values, float32 on the values rounded to float32. The two
    optima differ (not zero: the option really changes the data) by about the rounding
    (relative 2⁻²⁴ ≈ 6e-8 per value), and on the float64 objective the float32 result is
    within 1e-9·f of the optimum."""
    X, y = datasets.load(rt_h5)
    X, y = X[:ROWS], y[:ROWS]
    f64, f32 = _logistic(X, y), _logistic(_rounded(X), y)
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
    once, plus the hot rows' padding values), and each estimate bounds the layout actually
    kept, whose values have the type.
    (Kept bytes need not shrink: float64 with w within 1 MiB keeps the tail once, as here.)"""
    from mpitrain import data
    world = World()
    sh = data.load(world, rt_h5, group="train", max_rows=ROWS, what="train")
    e64, e32 = layout_bytes(sh, "float64"), layout_bytes(sh, "float32")
    assert e64 - e32 == 4 * (sh.nnz + (HOT_ROW_MULTIPLE - 1) * sh.rows)  # values, padding
    for values, est in (("float64", e64), ("float32", e32)):
        lay = SplitCSR(sh.X, values)
        assert lay.hval.dtype == lay.tcval.dtype == np.dtype(values)
        assert sum(a.nbytes for a in vars(lay).values() if isinstance(a, np.ndarray)) <= est


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["lbfgs", "fadl", "psgd-mix"])
def test_memory_estimate_with_float32_bounds_the_peak(name, tmp_path, rt_h5):
    """memory_bytes(job, train) with values = "float32": 4 bytes per value below float64's
    (the layout's copy of a non-zero and its padding values), and still at least the peak of setup and two steps
    (the check of test_hostile, at float32)."""
    world = World()
    cls = registry()[name]
    jobs = {v: driver.load_job(world, _job(tmp_path, rt_h5, v, v, algorithm=name))
            for v in ("float64", "float32")}
    train, test = driver.load_data(world, jobs["float32"], cls)
    est = cls.memory_bytes(jobs["float32"], train)
    assert cls.memory_bytes(jobs["float64"], train) - est == 4 * (
        train.nnz + (HOT_ROW_MULTIPLE - 1) * train.rows)
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
    the rounded data (‖∇f‖²/(2·l2) ≤ 1e-10·f), reports NumPy's objective of the rounded data
    to 1e-13·f, reaches P = 1's objective to 1e-9 (lbfgs: P = 1's iterate up to summation
    order), and the replicas are bit-identical. Rank 0's
    checks travel to every rank, so a failure there fails all ranks instead of hanging."""
    from mpi4py import MPI
    job = _job(shared_tmp, rt_h5, "float32", f"mpi-{name}", algorithm=name)
    out = f"{shared_tmp}/{name}-p"
    reported = driver.run(world, job, out=out, fresh=True, stream=io.StringIO())["objective"]
    with h5py.File(f"{out}/final.h5") as fh:
        wp = fh["model/w"][()]
    assert np.array_equal(world.comm.bcast(wp, root=0), wp)

    def check():
        one = f"{shared_tmp}/{name}-1"
        driver.run(World(MPI.COMM_SELF), job, out=one, fresh=True, stream=io.StringIO())
        with h5py.File(f"{one}/final.h5") as fh:
            w1 = fh["model/w"][()]
        X, y = datasets.load(rt_h5)
        f = _logistic(_rounded(X[:ROWS]), y[:ROWS])
        (vp, gp), (v1, g1) = f(wp), f(w1)
        assert gp @ gp / (2 * L2) <= 1e-10 * vp and g1 @ g1 / (2 * L2) <= 1e-10 * v1
        assert abs(vp - v1) <= 1e-9 * v1, (vp, v1)
        # a rank that kept float64 values: 2e-11 (fadl)
        assert abs(reported - vp) <= 1e-13 * vp, (reported, vp)
        if name == "lbfgs":
            # measured 1e-16 at P = 2, 3; a rank reading float64 instead: 1.5e-8
            assert np.linalg.norm(wp - w1) <= 1e-10 * np.linalg.norm(w1)
    _on_rank0(world, check)


# psgd-mix: the lbfgs setting, 30 rounds; dasvrda: its tests' setting (unit rows, l1 > 0),
# where 30 stages reach the optimum of the data each run computes with; its baselines (the
# same full-gradient code) 4 stages, far from it
_VR = dict(model={"l2": 1e-3, "l1": 1e-4}, data={"max_rows": 1000, "normalize": "unit_rows"})
ACROSS = {"psgd-mix": dict(model={}, data={}, solver={"max_iter": 30}),
          "dasvrda": dict(_VR, solver={"max_stages": 30}),
          "prox-svrg": dict(_VR, solver={"max_stages": 4}),
          "katyusha": dict(_VR, solver={"max_stages": 4})}


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name,comm", [("psgd-mix", None), ("dasvrda", "columns"),
                                       ("dasvrda", "sparse"), ("prox-svrg", "sparse"),
                                       ("katyusha", "dense")])
def test_float32_across_ranks_psgd_mix_vr(world, shared_tmp, rt_h5, name, comm):
    """float32 and float64 runs at P = world size. What float32 must give:
    - the replicas are bit-identical;
    - the reported objective is NumPy's on the float32-rounded data, to 1e-13·f (it differs
      from float64's by about 1e-10 (psgd-mix) and 2e-11 (dasvrda) relative, so a rank
      that kept float64 values fails it);
    - the float64 run's point up to float32's resolution: w within 1e-6 relative, f within
      1e-9 relative on the float64 data.
    dasvrda (its full gradient reads the rounded values, its inner steps the float64 rows)
    reaches the optimum: the certified bound on f(w) − f*, dist(0, ∂f)²/(2·l2) in NumPy, is
    ≤ 1e-15 on the float64 data and on the rounded data (measured 4e-17, 4e-19), and w
    differs from float64's (measured 4e-8). The others do not reach it (psgd-mix stalls at a
    certified gap of about 1e-2, the method's known bias; prox-svrg and katyusha run only 4
    stages): their bound equals the float64 run's to 1e-6 of it. psgd-mix reads the rounded
    values only to choose its step and to report f."""
    from mpi4py import MPI
    from mpitrain import data
    cfg = dict(ACROSS[name])
    if comm:
        cfg["solver"] = dict(cfg["solver"], communication=comm)
    w, reported = {}, {}
    for values in ("float64", "float32"):
        job = _job(shared_tmp, rt_h5, values, f"{name}-{comm}-{values}", algorithm=name,
                   **cfg)
        out = f"{shared_tmp}/{name}-{comm}-{values}"
        s = driver.run(world, job, out=out, fresh=True, stream=io.StringIO())
        with h5py.File(f"{out}/final.h5") as fh:
            w[values] = fh["model/w"][()]
        reported[values] = s["objective"]
        assert all(np.array_equal(a, w[values]) for a in world.comm.allgather(w[values]))
    l2, l1 = cfg["model"].get("l2", L2), cfg["model"].get("l1", 0.0)

    def check():
        sh = data.load(World(MPI.COMM_SELF), rt_h5, group="train",
                       max_rows=cfg["data"].get("max_rows", ROWS),
                       normalize=cfg["data"].get("normalize", "none"))
        X, y = sh.X, sh.y
        f32, _ = _certified(_rounded(X), y, w["float32"], l2, l1)
        assert abs(reported["float32"] - f32) <= 1e-13 * f32, (reported["float32"], f32)
        assert abs(reported["float64"] - f32) > 1e-12 * f32  # the check can tell the two
        rel = np.linalg.norm(w["float32"] - w["float64"]) / np.linalg.norm(w["float64"])
        assert rel <= 1e-6, rel
        (v32, b32), (v64, b64) = (_certified(X, y, w[v], l2, l1) for v in ("float32",
                                                                         "float64"))
        assert abs(v32 - v64) <= 1e-9 * v64, (v32, v64)
        if name != "dasvrda":
            assert abs(b32 - b64) <= 1e-6 * b64, (b32, b64)
        else:
            assert 0 < rel and b32 <= 1e-15 and b64 <= 1e-15, (rel, b32, b64)
            assert _certified(_rounded(X), y, w["float32"], l2, l1)[1] <= 1e-15
    _on_rank0(world, check)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_float32_refusals_under_mpiexec(tmp_path, rt_h5, digits_h5):
    """At P = 2 the two refusals end the job at once with one line and exit 78: an intercept
    when the job is read (naming the job file; no run directory made), a multinomial model
    at setup."""
    for train, model, name, want in (
            (rt_h5, {"intercept": True}, "icpt",
             f"{tmp_path}/icpt.toml: [model] values = 'float32' applies to models without "
             "intercept"),
            (digits_h5, None, "multi", "[model] values = 'float32' applies to binary models "
             "without intercept; this multinomial model needs \"float64\"")):
        job = _job(tmp_path, train, "float32", name, model=model)
        out = tmp_path / f"out-{name}"
        res = cli(["run", job, "--out", str(out)], nranks=2, timeout=60)
        assert res.returncode == 78, (res.returncode, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith(f"mpitrain: bad job file: {want}"), res.stderr
        assert name == "multi" or not out.exists()
