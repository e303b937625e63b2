"""mpitrain.load(...): self-describing final.h5, numpy in/out without MPI, predictions that
agree with `mpitrain eval`'s figures, the label mapping, and the exports (npz, scikit-learn
estimators that predict identically)."""
import io
import json
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest

from util import cli, env, write_job
from mpitrain.algorithms import job_hash, resolve_job

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_h5, digits2_h5):
    """Tiny trained runs: linear on 0/1 labels (.npy), linear with unit_rows, an
    autoencoder, backprop, parmac-ba (trained in this process, one rank)."""
    from mpitrain import driver
    from mpitrain.comm import World
    tmp = str(tmp_path_factory.mktemp("api"))
    with h5py.File(digits2_h5, "r") as f:
        Xtr, ytr = f["train/X"][()], f["train/y"][()]
        Xte, yte = f["test/X"][()], f["test/y"][()]
    npy = os.path.join(tmp, "d01.npy")
    np.save(npy, np.column_stack([(ytr > 0).astype(float), Xtr]))
    npy_test = os.path.join(tmp, "d01-test.npy")
    np.save(npy_test, np.column_stack([(yte > 0).astype(float), Xte]))
    jobs = {
        "lin01": ({"algorithm": "lbfgs"}, {"train": npy, "test": npy_test}, {},
                  {"max_iter": 30}),
        "linunit": ({"algorithm": "lbfgs"}, {"train": digits2_h5, "test": digits2_h5,
                                              "normalize": "unit_rows"},
                    {"loss": "squared_hinge"}, {"max_iter": 30}),
        "ae": ({"algorithm": "sae-greedy"}, {"train": digits_h5, "test": digits_h5},
               {"layers": [12, 5]}, {"epochs": 1, "batch": 50, "eval_every": 0}),
        "bp": ({"algorithm": "backprop"}, {"train": digits_h5, "test": digits_h5},
               {"hidden": [10, 4, 10]}, {"epochs": 2}),
        "ba": ({"algorithm": "parmac-ba"}, {"train": digits_h5, "test": digits_h5},
               {"bits": 6}, {"mu_steps": 2, "queries": 0}),
    }
    world = World()
    out = {}
    for name, (j, d, m, s) in jobs.items():
        path = write_job(os.path.join(tmp, f"{name}.toml"),
                         {"job": j, "data": d, "model": m, "solver": s,
                          "checkpoint": {"every": 0}})
        run = os.path.join(tmp, name)
        driver.run(world, path, out=run, fresh=True, stream=io.StringIO())
        res = driver.evaluate(world, os.path.join(run, "job.toml"),
                              os.path.join(run, "final.h5"))
        out[name] = (run, res)
    out["X01"], out["y01"] = Xte, (yte > 0).astype(float)
    return out


def _test_X(path):
    with h5py.File(path, "r") as f:
        return f["test/X"][()]


def test_label_classes_recorded_in_original_values():
    from mpitrain.model_file import _label_classes

    class S:
        def __init__(self, v):
            self.label_values = np.array(v, dtype=float)
    assert _label_classes(None, S([0, 1]), [])[0].tolist() == [0, 1]
    assert _label_classes(None, S([-1, 1]), [])[0].tolist() == [-1, 1]
    assert _label_classes(None, S([3, 7]), [7.0])[0].tolist() == [3, 7]
    assert _label_classes(None, S([7, 3]), [3.0])[0].tolist() == [7, 3]  # class 1 = positive
    cl, rule = _label_classes(None, S(range(10)), [2.0])
    assert cl.tolist() == [-1, 1] and rule == "positive"  # nine values are "not 2"


def test_linear_model_metadata_labels_and_proba(runs):
    import mpitrain
    from mpitrain import config
    run, res = runs["lin01"]
    m = mpitrain.load(run)
    assert (m.family, m.algorithm, m.features) == ("linear", "lbfgs", 64)
    meta = m.meta
    assert meta["fit_intercept"] == 0 and meta["intercept"] == 0.0
    assert meta["normalize"] == "none" and meta["train_rows"] == 1500
    job = resolve_job(config.read_toml(os.path.join(run, "job.toml")), "job.toml")
    assert meta["job_hash"] == job_hash(job)
    assert "lbfgs" in meta["job_toml"]
    assert m.classes.tolist() == [0.0, 1.0]
    X = runs["X01"]
    pred = m.predict(X)
    s = m.decision_function(X)
    assert set(np.unique(pred)) <= {0.0, 1.0}
    assert np.array_equal(pred, np.where(s > 0, 1.0, 0.0))
    assert np.mean(pred == runs["y01"]) == pytest.approx(res["accuracy"], abs=1e-12)
    w = np.asarray(h5py.File(os.path.join(run, "final.h5"), "r")["model/w"])
    np.testing.assert_allclose(s, X @ w, rtol=1e-12, atol=1e-12)
    p = m.predict_proba(X)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-s)), rtol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0)
    # a single row, a sparse matrix, and a bad width
    import scipy.sparse as sp
    assert m.predict(X[0]).shape == (1,)
    # sparse rows are summed by the CSR kernel (four interleaved partial sums), dense rows in
    # feature order: equal to rounding; a row's score does not depend on the rows around it
    ss = m.decision_function(sp.csr_matrix(X))
    np.testing.assert_allclose(ss, s, rtol=1e-13, atol=1e-13)
    assert np.array_equal(m.decision_function(sp.csr_matrix(X[7:19])), ss[7:19])
    from mpitrain.errors import DataError
    with pytest.raises(DataError, match="64 features"):
        m.predict(X[:, :10])


def test_sklearn_export_predicts_identically(runs, digits2_h5):
    for name in ("lin01", "linunit"):
        run, _ = runs[name]
        res = cli(["export", run, "--format", "sklearn"])
        assert res.returncode == 0, res.stderr
        with open(os.path.join(run, "model.pkl"), "rb") as fh:
            est = pickle.load(fh)
        import mpitrain
        m = mpitrain.load(run)
        # float64 rows (scikit-learn's Normalizer would work in float32 on float32 input)
        X = (runs["X01"] if name == "lin01" else _test_X(digits2_h5)).astype(np.float64)
        assert np.array_equal(est.predict(X), m.predict(X))
        np.testing.assert_allclose(est.decision_function(X), m.decision_function(X),
                                   rtol=1e-12, atol=1e-12)
        if name == "lin01":
            np.testing.assert_allclose(est.predict_proba(X), m.predict_proba(X),
                                       rtol=1e-12, atol=1e-15)
            assert type(est).__name__ == "LogisticRegression"
        else:  # unit_rows → Normalizer + LinearSVC (squared hinge)
            assert [type(s).__name__ for s in est] == ["Normalizer", "LinearSVC"]
    ae, _ = runs["ae"]
    refused = cli(["export", ae, "--format", "sklearn"])
    assert refused.returncode == 64 and refused.stderr.count("\n") == 1
    assert "npz" in refused.stderr


def test_npz_export_round_trip(runs):
    run, _ = runs["ae"]
    res = cli(["export", run, "--format", "npz", "--out", os.path.join(run, "x.npz")])
    assert res.returncode == 0, res.stderr
    z = np.load(os.path.join(run, "x.npz"))
    meta = json.loads(z["metadata"].item())
    assert meta["family"] == "autoencoder" and meta["layers"] == [64, 12, 5]
    with h5py.File(os.path.join(run, "final.h5"), "r") as f:
        for k in ("W1", "b1", "V2", "c2"):
            assert np.array_equal(z[k], f[f"model/{k}"][()])


def test_networks_encode_and_reconstruct_agree_with_eval(runs, digits_h5):
    """Reconstructions through the API give back eval's own error figures (a wrong layer
    order, activation or bias would not)."""
    import mpitrain
    X = _test_X(digits_h5)
    run, res = runs["ae"]
    m = mpitrain.load(run)
    code = m.encode(X)
    assert code.dtype == np.float32 and code.shape == (297, 5)
    R = m.reconstruct(X).astype(np.float64)
    R = np.clip(R, 1e-12, 1 - 1e-12)
    xent = -(X * np.log(R) + (1 - X) * np.log(1 - R)).sum(1).mean()
    assert xent == pytest.approx(res["recon"], rel=2e-4)
    run, res = runs["bp"]
    m = mpitrain.load(run)
    assert m.encode(X).shape == (297, 4) and m.meta["code_layer"] == 2
    err = ((X - m.reconstruct(X)) ** 2).sum(1).mean()
    assert err == pytest.approx(res["nested_error"], rel=1e-10)
    run, res = runs["ba"]
    m = mpitrain.load(run)
    Z = m.codes(X)
    assert Z.dtype == np.uint8 and Z.shape == (297, 6) and set(np.unique(Z)) <= {0, 1}
    err = ((X - m.reconstruct(X)) ** 2).sum(1).mean()
    assert err == pytest.approx(res["nested_error"], rel=1e-10)


@pytest.mark.e2e
def test_load_needs_no_mpi(runs):
    run, _ = runs["lin01"]
    code = ("import sys, numpy as np, mpitrain; m = mpitrain.load(sys.argv[1]); "
            "m.predict(np.zeros((3, 64))); assert 'mpi4py' not in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code, run], env=env(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
