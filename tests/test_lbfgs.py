"""Distributed L-BFGS reaches a CERTIFIED optimum of f(w) = (1/n)Σℓ(yᵢwᵀxᵢ) + (l2/2)‖w‖²
(‖∇f(w)‖²/(2·l2) ≤ 1e-10·f, ∇f recomputed here in NumPy), agrees with scikit-learn, stops by
name (certified gap, floating-point floor: never a line-search failure on these problems),
makes one d-vector Allreduce per iteration with the cached-margin line search, and gives the
same result at P = 1, 2, 3."""
import io

import h5py
import numpy as np
import pytest

from mpitrain import datasets, driver
from mpitrain.comm import World
from util import write_job


def _job(tmp, train, loss, l2, max_rows=0, name="j", solver=None):
    return write_job(f"{tmp}/{name}.toml", {
        "job": {"algorithm": "lbfgs", "seed": 0},
        "data": {"train": train, "max_rows": max_rows},
        "model": {"loss": loss, "l2": l2},
        "solver": dict({"max_iter": 1000}, **(solver or {})),
        "checkpoint": {"every": 0}})


def _run(world, job, out, summary=False):
    stream = io.StringIO()
    s = driver.run(world, job, out=out, fresh=True, stream=stream)
    with h5py.File(f"{out}/final.h5") as f:
        w = f["model/w"][()]
    return (w, s, stream.getvalue()) if summary else w


def _objective(X, y, l2, loss):
    n = X.shape[0]

    def f(w):
        m = X @ w
        if loss == "logistic":
            z = y * m
            val = np.logaddexp(0, -z).sum() / n
            dl = -y / (1 + np.exp(z))
        else:
            r = np.maximum(0, 1 - y * m)
            val = (r * r).sum() / n
            dl = -2 * y * r
        return val + 0.5 * l2 * w @ w, X.T @ dl / n + l2 * w
    return f


def _certified(f, w, l2, gap=1e-10):
    val, g = f(w)
    assert (g @ g) / (2 * l2) <= gap * val, (g @ g) / (2 * l2) / val
    return val


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loss", ["logistic", "squared_hinge"])
def test_dense_certified_and_matches_sklearn(tmp_path, digits2_h5, loss):
    l2 = 1e-3
    w, summ, out = _run(World(), _job(tmp_path, digits2_h5, loss, l2), str(tmp_path / "o"),
                        summary=True)
    X, y = datasets.load(digits2_h5)
    X = X.astype(np.float64)
    f = _objective(X, y, l2, loss)
    _certified(f, w, l2)
    assert summ["stop_reason"] == "certified gap"
    assert "certified gap" in out.strip().splitlines()[-1]      # the console's last line
    # cached-margin line search: one d-vector Allreduce per iteration (+1 at w⁰)
    assert summ["dvec_allreduces"] == summ["iterations"] + 1
    if loss == "logistic":
        from sklearn.linear_model import LogisticRegression
        sk = LogisticRegression(C=1 / (len(y) * l2), fit_intercept=False, tol=1e-12,
                                max_iter=20000).fit(X, y)
        assert abs(f(sk.coef_.ravel())[0] - f(w)[0]) <= 1e-8 * f(w)[0]


@pytest.mark.timeout(120)
def test_sparse_real_certified_both_line_searches(tmp_path, rt_h5):
    l2 = 1e-4
    X, y = datasets.load(rt_h5)
    f = _objective(X[:3000], y[:3000], l2, "logistic")
    res = {}
    for ls in ("cached", "evaluate"):
        job = _job(tmp_path, rt_h5, "logistic", l2, max_rows=3000, name=ls,
                   solver={"linesearch": ls})
        w, summ, _ = _run(World(), job, str(tmp_path / ls), summary=True)
        res[ls] = (_certified(f, w, l2), summ)
    (fc, sc), (fe, se) = res["cached"], res["evaluate"]
    assert abs(fc - fe) <= 1e-10 * fc
    assert sc["dvec_allreduces"] == sc["iterations"] + 1
    # the plain search pays a d-vector Allreduce per trial
    assert se["dvec_allreduces"] == se["linesearch_evals"] + 1 > sc["dvec_allreduces"]


@pytest.mark.timeout(120)
def test_floating_point_floor_is_a_named_clean_stop(tmp_path, digits2_h5):
    """With every tolerance off, the run ends at the floating-point floor, by that name, not
    by a line-search failure, and without a tail of wasted trials."""
    l2 = 1e-4
    job = _job(tmp_path, digits2_h5, "logistic", l2, name="floor",
               solver={"tol": 0.0, "gap_tol": 0.0, "max_iter": 3000})
    w, summ, out = _run(World(), job, str(tmp_path / "floor"), summary=True)
    assert summ["stop_reason"] == "converged: floating-point floor", summ["stop_reason"]
    assert "zoom found no acceptable step" not in out
    assert "floating-point floor" in out.strip().splitlines()[-1]
    X, y = datasets.load(digits2_h5)
    _certified(_objective(X.astype(np.float64), y, l2, "logistic"), w, l2, gap=1e-11)
    import json
    recs = [json.loads(line) for line in open(tmp_path / "floor" / "metrics.jsonl")]
    assert recs[-1]["ls_evals"] <= 4        # the last iteration wasted at most a few trials
    assert summ["iterations"] < 300


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_results_across_ranks_agree(world, shared_tmp, digits2_h5, rt_h5, which):
    from mpi4py import MPI
    train, l2, rows = (digits2_h5, 1e-3, 0) if which == "dense" else (rt_h5, 1e-4, 2000)
    job = _job(shared_tmp, train, "logistic", l2, max_rows=rows, name=which)
    w_p = _run(world, job, f"{shared_tmp}/p")
    if world.rank == 0:
        w_1 = _run(World(MPI.COMM_SELF), job, f"{shared_tmp}/serial")
        X, y = datasets.load(train)
        X = X[:rows] if rows else X
        y = y[:rows] if rows else y
        f = _objective(X.astype(np.float64), y, l2, "logistic")
        _certified(f, w_p, l2)
        assert abs(f(w_p)[0] - f(w_1)[0]) <= 1e-10 * f(w_1)[0]
        assert np.linalg.norm(w_p - w_1) <= 1e-6 * np.linalg.norm(w_1)
    # identical on every rank
    w0 = world.comm.bcast(w_p, root=0)
    assert np.array_equal(w0, w_p)
