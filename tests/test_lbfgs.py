"""Distributed L-BFGS reaches an independent optimum (scipy / scikit-learn) of
f(w) = (1/n)Σℓ(yᵢwᵀxᵢ) + (l2/2)‖w‖², and gives the same result at P = 1, 2, 3."""
import io

import h5py
import numpy as np
import pytest
import scipy.optimize as so

from mpitrain import datasets, driver
from mpitrain.comm import World
from util import write_job


def _job(tmp, train, loss, l2, max_rows=0, name="j"):
    return write_job(f"{tmp}/{name}.toml", {
        "job": {"algorithm": "lbfgs", "seed": 0},
        "data": {"train": train, "max_rows": max_rows},
        "model": {"loss": loss, "l2": l2},
        "solver": {"max_iter": 1000, "tol": 1e-12},
        "checkpoint": {"every": 0}})


def _run(world, job, out):
    driver.run(world, job, out=out, fresh=True, stream=io.StringIO())
    with h5py.File(f"{out}/final.h5") as f:
        return f["model/w"][()]


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


def _reference(X, y, l2, loss):
    f = _objective(X, y, l2, loss)
    w, fv, info = so.fmin_l_bfgs_b(f, np.zeros(X.shape[1]), factr=1.0, pgtol=1e-14,
                                   maxiter=20000, m=30)
    return w, fv, f


@pytest.mark.parametrize("loss", ["logistic", "squared_hinge"])
def test_dense_matches_scipy_and_sklearn(tmp_path, digits2_h5, loss):
    l2 = 1e-3
    w = _run(World(), _job(tmp_path, digits2_h5, loss, l2), str(tmp_path / "o"))
    X, y = datasets.load(digits2_h5)
    X = X.astype(np.float64)
    w_ref, f_ref, f = _reference(X, y, l2, loss)
    assert f(w)[0] <= f_ref * (1 + 1e-8)
    assert abs(f(w)[0] - f_ref) <= 1e-8 * abs(f_ref)
    if loss == "logistic":
        from sklearn.linear_model import LogisticRegression
        sk = LogisticRegression(C=1 / (len(y) * l2), fit_intercept=False, tol=1e-12,
                                max_iter=20000).fit(X, y)
        assert abs(f(sk.coef_.ravel())[0] - f(w)[0]) <= 1e-8 * f(w)[0]


def test_sparse_real_matches_scipy(tmp_path, rt_h5):
    l2 = 1e-4
    w = _run(World(), _job(tmp_path, rt_h5, "logistic", l2, max_rows=3000), str(tmp_path / "o"))
    X, y = datasets.load(rt_h5)
    X, y = X[:3000], y[:3000]
    w_ref, f_ref, f = _reference(X, y, l2, "logistic")
    assert abs(f(w)[0] - f_ref) <= 1e-8 * abs(f_ref)
    assert np.linalg.norm(f(w)[1]) < 1e-7


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
        assert abs(f(w_p)[0] - f(w_1)[0]) <= 1e-10 * f(w_1)[0]
        assert np.linalg.norm(w_p - w_1) <= 1e-6 * np.linalg.norm(w_1)
    # identical on every rank
    w0 = world.comm.bcast(w_p, root=0)
    assert np.array_equal(w0, w_p)
