"""The linear models people expect (issue 13 part 3, models/glm.py), solved by lbfgs and
CERTIFIED against NumPy references written here, independently of the runs judged:

- multinomial logistic (digits, 10 classes, no intercept): f is l2-strongly convex, so
  f(W) − f* ≤ ‖∇f(W)‖²/(2·l2) with ∇f recomputed here;
- one-vs-rest with intercept (wine, string class names in a CSV), binary with intercept
  (y = [x₀ > 3]) and squared loss with intercept (diabetes): f is not strongly convex in b, so
  the bound is (f(w, b) − f(w, b̂)) + ‖∇_w f(w, b̂)‖²/(2·l2) + λ²(b̂), with b̂ = argmin_b f(w, ·)
  found here by Newton and λ its final Newton decrement (h(w) = min_b f(w, b) is
  l2-strongly convex with ∇h(w) = ∇_w f(w, b̂));
- each equals scikit-learn's optimum of the same objective (C = 1/(n·l2); Ridge α = n·l2)
  within the certified bound, and the API, the scikit-learn export and eval agree with it;
- algorithms that cannot fit the labels or an intercept refuse with one line naming the label
  and lbfgs; P = 2 equals P = 1; a multiclass checkpoint resumes bit for bit.
"""
import io
import os

import h5py
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from mpitrain import datasets, driver
from mpitrain.comm import World
from util import cli, write_job

NAMES = np.array(["barolo", "grignolino", "barbera"])  # wine's classes 0, 1, 2 as strings


def _job(tmp, train, name, model, solver=None, data=None, alg="lbfgs", every=0):
    return write_job(os.path.join(tmp, f"{name}.toml"), {
        "job": {"algorithm": alg, "seed": 0, "threads": 1},
        "data": dict({"train": train}, **(data or {})),
        "model": model,
        "solver": dict({"max_iter": 2000}, **(solver or {})),
        "checkpoint": {"every": every}})


def _run(world, job, out, **kw):
    s = driver.run(world, job, out=out, fresh=not kw.get("resume"), stream=io.StringIO(), **kw)
    with h5py.File(f"{out}/final.h5") as f:
        arrays = {k: f["model"][k][()] for k in f["model"]}
        classes = f["meta/classes"][()]
    return arrays, s, classes


def _wine_csv(tmp):
    """wine, standardised, labels as strings in a CSV with a header."""
    from sklearn.datasets import load_wine
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    path = os.path.join(tmp, "wine.csv")
    if not os.path.exists(path):
        lines = ["label," + ",".join(f"f{j}" for j in range(X.shape[1]))]
        lines += [NAMES[c] + "," + ",".join(repr(float(v)) for v in row) for row, c in zip(X, y)]
        tmp_path = path + f".{os.getpid()}"
        with open(tmp_path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp_path, path)
    return path, X, NAMES[y]


def _h5(tmp, name, X, y):
    path = os.path.join(tmp, name)
    if not os.path.exists(path):
        with h5py.File(path + ".part", "w") as f:
            f["X"], f["y"] = X, y  # at the root: train and test alike
        os.replace(path + ".part", path)
    return path


# -- NumPy references -------------------------------------------------------------------
def _f(X, Y, W, b, l2, kind):
    """f and (∇_W f, ∇_b f) of the objective of models/glm.py, written independently.
    Y: class indices (multinomial), ±1 columns (ovr, binary) or real values (squared)."""
    n = X.shape[0]
    M = X @ W + b
    if kind == "multinomial":
        lse = logsumexp(M, axis=1)
        val = np.sum(lse - M[np.arange(n), Y]) / n
        G = np.exp(M - lse[:, None])
        G[np.arange(n), Y] -= 1.0
    elif kind == "squared":
        val = 0.5 * np.sum((M - Y) ** 2) / n
        G = M - Y
    else:
        val = np.sum(np.logaddexp(0.0, -Y * M)) / n
        G = -Y * expit(-Y * M)
    return val + 0.5 * l2 * np.sum(W * W), X.T @ G / n + l2 * W, G.sum(0) / n


def _certified_gap(X, Y, W, b, l2, kind):
    """An upper bound on f(W, b) − f* (see the module docstring)."""
    fb = _f(X, Y, W, b, l2, kind)[0]
    bh = np.array(b, dtype=np.float64)
    lam2 = 0.0
    for _ in range(100):  # Newton on b (diagonal Hessian: ovr, binary, squared)
        M = X @ W + bh
        _, _, gb = _f(X, Y, W, bh, l2, kind)
        if kind == "squared":
            H = np.ones_like(gb)
        else:
            s = expit(Y * M)
            H = np.mean(s * (1 - s), axis=0)
        lam2 = float(np.sum(gb * gb / H))
        bh = bh - gb / H
        if lam2 < 1e-30:
            break
    fh, gW, _ = _f(X, Y, W, bh, l2, kind)
    return max(fb - fh, 0.0) + float(np.sum(gW * gW)) / (2 * l2) + lam2, fb


def _ovr(y_idx, K):
    return np.where(y_idx[:, None] == np.arange(K)[None, :], 1.0, -1.0)


# -- multinomial -----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_multinomial_certified_matches_sklearn_api_export(tmp_path, digits_h5):
    l2 = 1e-3
    arrays, summ, classes = _run(World(), _job(tmp_path, digits_h5, "mn", {"l2": l2}),
                                 str(tmp_path / "mn"))
    X, y = datasets.load(digits_h5)
    X = X.astype(np.float64)
    W = arrays["w"]
    assert W.shape == (64, 10) and "intercept" not in arrays
    assert list(classes) == list(range(10))
    f, gW, _ = _f(X, y.astype(int), W, 0.0, l2, "multinomial")
    gap = float(np.sum(gW * gW)) / (2 * l2)   # ≥ f − f*: certified, f strongly convex
    assert gap <= 1e-10 * f
    assert summ["stop_reason"] == "certified gap"
    from sklearn.linear_model import LogisticRegression
    sk = LogisticRegression(C=1 / (len(y) * l2), fit_intercept=False, tol=1e-10,
                            max_iter=5000).fit(X, y)
    f_sk = _f(X, y.astype(int), sk.coef_.T, 0.0, l2, "multinomial")[0]
    assert f <= f_sk + gap and f_sk - f <= 1e-6 * f
    # the API and the scikit-learn export predict identically
    import mpitrain
    from mpitrain.export import sklearn_estimator
    m = mpitrain.load(str(tmp_path / "mn"))
    est = sklearn_estimator(m)
    assert np.array_equal(m.predict(X), est.predict(X))
    assert np.allclose(m.predict_proba(X), est.predict_proba(X), atol=1e-12)
    assert np.allclose(m.decision_function(X), X @ W, atol=1e-10)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_predict_cli_string_classes_any_p(tmp_path):
    """`mpitrain predict` of a one-vs-rest model with string classes at P = 1 and 2: n × K
    scores and the class names, row for row equal to the API."""
    path, X, names = _wine_csv(str(tmp_path))
    job = _job(tmp_path, path, "pr", {"l2": 1e-2, "intercept": True, "multiclass": "ovr"},
               data={"label_column": "label"})
    run = str(tmp_path / "pr")
    _run(World(), job, run)
    import mpitrain
    m = mpitrain.load(run)
    for p in (1, 2):
        out = str(tmp_path / f"pred{p}.h5")
        r = cli(["predict", run, path, "--out", out], nranks=p, timeout=120)
        assert r.returncode == 0, r.stderr
        with h5py.File(out) as f:
            score, label = f["score"][()], f["label"][()]
        assert score.shape == (len(X), 3)
        assert np.array_equal(score, m.decision_function(X))
        assert [v.decode() for v in label] == list(m.predict(X))


@pytest.mark.timeout(120)
def test_multinomial_resume_bit_identical(tmp_path, digits_h5):
    """A multiclass run stopped at a cap and resumed with the cap raised ends bit-identical to
    an uninterrupted run (the declared lbfgs state carries θ = vec(W) whatever its length)."""
    model = {"l2": 1e-2, "intercept": True}
    full, _, _ = _run(World(), _job(tmp_path, digits_h5, "full", model, {"max_iter": 30}),
                      str(tmp_path / "full"))
    job = _job(tmp_path, digits_h5, "part", model, {"max_iter": 12}, every=5)
    out = str(tmp_path / "part")
    _run(World(), job, out)
    got, summ, _ = _run(World(), job, out, resume="auto", overrides=[("solver", "max_iter", 30)])
    assert summ["iterations"] == 30
    assert np.array_equal(got["w"], full["w"]) and np.array_equal(got["intercept"],
                                                                    full["intercept"])


# -- one-vs-rest, string labels, intercept --------------------------------------------
@pytest.mark.timeout(120)
def test_ovr_intercept_string_labels_certified(tmp_path):
    l2 = 1e-2
    path, X, names = _wine_csv(str(tmp_path))
    job = _job(tmp_path, path, "ovr", {"l2": l2, "intercept": True, "multiclass": "ovr"},
               data={"label_column": "label", "test": path})
    arrays, summ, classes = _run(World(), job, str(tmp_path / "ovr"))
    assert [c.decode() if isinstance(c, bytes) else c for c in classes] == sorted(NAMES)
    W, b = arrays["w"], arrays["intercept"]
    yi = np.searchsorted(np.array(sorted(NAMES)), names)
    gap, f = _certified_gap(X, _ovr(yi, 3), W, b, l2, "ovr")
    assert gap <= 1e-9 * f, gap / f
    # scikit-learn's one-vs-rest: K independent binary problems with unregularised b
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    sk = OneVsRestClassifier(LogisticRegression(C=1 / (len(yi) * l2), tol=1e-10,
                                                max_iter=5000)).fit(X, yi)
    Wsk = np.column_stack([e.coef_.ravel() for e in sk.estimators_])
    bsk = np.array([e.intercept_[0] for e in sk.estimators_])
    f_sk = _f(X, _ovr(yi, 3), Wsk, bsk, l2, "ovr")[0]
    assert f <= f_sk + gap and f_sk - f <= 1e-6 * f
    import mpitrain
    from mpitrain.export import sklearn_estimator
    m = mpitrain.load(str(tmp_path / "ovr"))
    pred = m.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(NAMES)
    est = sklearn_estimator(m)
    assert np.array_equal(pred, est.predict(X))
    assert np.allclose(m.predict_proba(X), est.predict_proba(X), atol=1e-12)
    # eval on the run's own job: the test labels mapped through the model's classes
    r = cli(["eval", str(tmp_path / "ovr")], timeout=120)
    assert r.returncode == 0, r.stderr
    acc = float(r.stdout.split("accuracy:")[1].split()[0])
    assert acc == pytest.approx(np.mean(pred == names), abs=1e-9)


@pytest.mark.timeout(120)
def test_binary_intercept_certified(tmp_path):
    """y = [x₀ > 3]: without an intercept a linear model cannot separate it; with one the
    certified optimum does, and equals scikit-learn's."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 6, size=(400, 3))
    y = (X[:, 0] > 3).astype(np.float64)
    path = _h5(str(tmp_path), "step.h5", X, y)
    l2 = 1e-4
    accs = {}
    for icpt in (False, True):
        job = _job(tmp_path, path, f"b{icpt}", {"l2": l2, "intercept": icpt},
                   data={"test": path})
        arrays, _, classes = _run(World(), job, str(tmp_path / f"b{icpt}"))
        assert list(classes) == [0.0, 1.0]
        import mpitrain
        accs[icpt] = np.mean(mpitrain.load(str(tmp_path / f"b{icpt}")).predict(X) == y)
    w, b = arrays["w"], arrays["intercept"]
    Y = np.where(y == 1, 1.0, -1.0)[:, None]
    gap, f = _certified_gap(X, Y, w[:, None], b, l2, "binary")
    assert gap <= 1e-9 * f, gap / f
    from sklearn.linear_model import LogisticRegression
    sk = LogisticRegression(C=1 / (len(y) * l2), tol=1e-12, max_iter=10000).fit(X, y)
    f_sk = _f(X, Y, sk.coef_.T, sk.intercept_, l2, "binary")[0]
    assert f <= f_sk + gap and f_sk - f <= 1e-6 * f
    assert accs[True] >= 0.99 > accs[False]


# -- regression ----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_squared_intercept_certified_ridge_r2(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    X, y = load_diabetes(return_X_y=True)
    path = _h5(str(tmp_path), "diabetes.h5", X, y)
    l2 = 1e-3
    job = _job(tmp_path, path, "sq", {"l2": l2, "intercept": True, "loss": "squared"},
               data={"test": path})
    arrays, _, _ = _run(World(), job, str(tmp_path / "sq"))
    w, b = arrays["w"], arrays["intercept"]
    gap, f = _certified_gap(X, y[:, None], w[:, None], b, l2, "squared")
    assert gap <= 1e-9 * f, gap / f
    sk = Ridge(alpha=len(y) * l2, tol=1e-12).fit(X, y)
    f_sk = _f(X, y[:, None], sk.coef_[:, None], sk.intercept_, l2, "squared")[0]
    assert f <= f_sk + gap and f_sk - f <= 1e-6 * f
    import mpitrain
    from mpitrain.export import sklearn_estimator
    m = mpitrain.load(str(tmp_path / "sq"))
    assert np.allclose(m.predict(X), sklearn_estimator(m).predict(X), rtol=0, atol=1e-9)
    r = cli(["eval", str(tmp_path / "sq")], timeout=120)
    assert r.returncode == 0, r.stderr
    r2 = float(r.stdout.split("r2:")[1].split()[0])
    assert r2 == pytest.approx(r2_score(y, m.predict(X)), abs=1e-8)


# -- refusals ---------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_refusals_name_the_label_and_the_algorithms(tmp_path):
    path, _, _ = _wine_csv(str(tmp_path))
    job = write_job(os.path.join(tmp_path, "vr3.toml"), {
        "job": {"algorithm": "dasvrda", "seed": 0}, "data": {"train": path,
                                                             "label_column": "label"},
        "model": {"l2": 1e-2}, "solver": {"max_stages": 2}, "checkpoint": {"every": 0}})
    r = cli(["run", job, "--out", str(tmp_path / "p3")], timeout=120)
    assert r.returncode == 65, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "label barolo" in line or "label barbera" in line or "label grignolino" in line
    assert "not binary" in line and "lbfgs, fadl and psgd-mix" in line
    job = _job(tmp_path, path, "fadlmn", {"l2": 1e-2, "multiclass": "multinomial"},
               data={"label_column": "label"}, alg="fadl")
    r = cli(["run", job, "--out", str(tmp_path / "fm")], timeout=120)
    assert r.returncode == 78, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "one-vs-rest" in r.stderr \
        and "lbfgs" in r.stderr
    job = _job(tmp_path, path, "fadlb", {"l2": 1e-2, "intercept": True}, alg="fadl")
    r = cli(["run", job, "--out", str(tmp_path / "fb")], timeout=120)
    assert r.returncode == 78, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "intercept" in r.stderr \
        and "lbfgs" in r.stderr


# -- P = 2 ------------------------------------------------------------------------------
@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("which", ["multinomial", "ovr"])
def test_multiclass_across_ranks_agree(world, shared_tmp, digits_h5, which):
    from mpi4py import MPI
    if which == "multinomial":
        train, data = digits_h5, {}
        model = {"l2": 1e-3, "intercept": True}
    else:
        train, _, _ = _wine_csv(shared_tmp) if world.rank == 0 else (None, 0, 0)
        world.comm.Barrier()
        train, data = os.path.join(shared_tmp, "wine.csv"), {"label_column": "label"}
        model = {"l2": 1e-2, "intercept": True, "multiclass": "ovr"}
    job = _job(shared_tmp, train, which, model, data=data)
    got, _, classes = _run(world, job, f"{shared_tmp}/{which}-p")
    if world.rank == 0:
        one, _, classes1 = _run(World(MPI.COMM_SELF), job, f"{shared_tmp}/{which}-1")
        assert np.array_equal(classes, classes1)
        if which == "multinomial":  # W is unique, b only up to a common shift
            X, y = datasets.load(digits_h5)
            fs = [_f(X.astype(np.float64), y.astype(int), r["w"], r["intercept"], 1e-3,
                     "multinomial")[0] for r in (got, one)]
            assert abs(fs[0] - fs[1]) <= 1e-9 * fs[1]
            assert np.linalg.norm(got["w"] - one["w"]) <= 1e-3 * np.linalg.norm(one["w"])
        else:
            _, X, names = _wine_csv(shared_tmp)
            yi = np.searchsorted(np.array(sorted(NAMES)), names)
            for r in (got, one):
                gap, f = _certified_gap(X, _ovr(yi, 3), r["w"], r["intercept"], 1e-2, "ovr")
                assert gap <= 1e-9 * f
    # identical on every rank
    w0 = world.comm.bcast(got["w"], root=0)
    assert np.array_equal(w0, got["w"])


# -- FADL: regression and labels of any value --------------------------------------------
@pytest.mark.timeout(120)
def test_fadl_squared_certified_ridge_and_label_values(tmp_path):
    """FADL fits ridge regression on real labels (certified, equal to scikit-learn's Ridge
    without intercept) and a binary model on labels {2, 5}, which predict returns."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    X, y = load_diabetes(return_X_y=True)
    y = y - y.mean()  # no intercept: centred labels (the columns are centred already)
    path = _h5(str(tmp_path), "diab-c.h5", X, y)
    l2 = 1e-3
    job = _job(tmp_path, path, "fsq", {"l2": l2, "loss": "squared"}, alg="fadl",
               solver={"max_iter": 200})
    arrays, summ, _ = _run(World(), job, str(tmp_path / "fsq"))
    w = arrays["w"]
    f, gW, _ = _f(X, y[:, None], w[:, None], 0.0, l2, "squared")
    gap = float(np.sum(gW * gW)) / (2 * l2)
    assert gap <= 1e-9 * f, gap / f
    sk = Ridge(alpha=len(y) * l2, fit_intercept=False, tol=1e-12).fit(X, y)
    f_sk = _f(X, y[:, None], sk.coef_[:, None], 0.0, l2, "squared")[0]
    assert f <= f_sk + gap and f_sk - f <= 1e-6 * f
    # two label values of any kind: the larger is +1, predict returns the values themselves
    lab = np.where(X[:, 2] > 0, 5.0, 2.0)
    path = _h5(str(tmp_path), "diab-25.h5", X, lab)
    job = _job(tmp_path, path, "f25", {"l2": 1e-3}, alg="fadl", solver={"max_iter": 100},
               data={"test": path})
    arrays, _, classes = _run(World(), job, str(tmp_path / "f25"))
    assert list(classes) == [2.0, 5.0]
    import mpitrain
    m = mpitrain.load(str(tmp_path / "f25"))
    pred = m.predict(X)
    assert set(pred) <= {2.0, 5.0}
    assert np.array_equal(pred, np.where(X @ arrays["w"] > 0, 5.0, 2.0))
    r = cli(["eval", str(tmp_path / "f25")], timeout=120)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("accuracy:")[1].split()[0]) == pytest.approx(
        np.mean(pred == lab), abs=1e-9)


@pytest.mark.timeout(180)
def test_fadl_one_vs_rest_certified_and_resumed(tmp_path):
    """fadl, three string classes: K binary problems one after another (certified each, so
    their sum), equal to lbfgs's one-vs-rest; stopped at a cap and resumed with the cap
    raised, bit-identical to an uninterrupted run."""
    l2 = 1e-2
    path, X, names = _wine_csv(str(tmp_path))
    data = {"label_column": "label", "test": path}
    yi = np.searchsorted(np.array(sorted(NAMES)), names)
    runs = {}
    for alg in ("fadl", "lbfgs"):
        job = _job(tmp_path, path, alg, {"l2": l2, "multiclass": "ovr"}, data=data, alg=alg,
                   solver={"max_iter": 200})
        runs[alg] = _run(World(), job, str(tmp_path / alg))
    # fadl at P = 2 (a subprocess under mpiexec, one thread per rank)
    job = _job(tmp_path, path, "fadl2", {"l2": l2, "multiclass": "ovr"}, data=data,
               alg="fadl", solver={"max_iter": 200})
    r = cli(["run", job, "--out", str(tmp_path / "fadl2")], nranks=2, timeout=120)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "fadl2" / "final.h5") as fh:
        runs["fadl2"] = ({"w": fh["model/w"][()]}, None, None)
    (fa, summ, classes), (lb, _, _) = runs["fadl"], runs["lbfgs"]
    assert [c.decode() if isinstance(c, bytes) else c for c in classes] == sorted(NAMES)
    assert summ["problems"] == 3 and fa["w"].shape == (13, 3)
    fs = {}
    for alg, (arr, _, _) in runs.items():
        f, gW, _ = _f(X, _ovr(yi, 3), arr["w"], 0.0, l2, "ovr")
        gap = float(np.sum(gW * gW)) / (2 * l2)
        assert gap <= 1e-9 * f, (alg, gap / f)
        fs[alg] = (f, gap)
    for alg in ("fadl", "fadl2"):
        assert abs(fs[alg][0] - fs["lbfgs"][0]) <= fs[alg][1] + fs["lbfgs"][1]
    import mpitrain
    m = mpitrain.load(str(tmp_path / "fadl"))
    assert np.mean(m.predict(X) == names) > 0.95
    # stop at a cap (every problem hits it), resume with the cap raised
    job = _job(tmp_path, path, "cap", {"l2": l2, "multiclass": "ovr"}, data=data, alg="fadl",
               solver={"max_iter": 2}, every=1)
    _run(World(), job, str(tmp_path / "cap"))
    got, s2, _ = _run(World(), job, str(tmp_path / "cap"), resume="auto",
                      overrides=[("solver", "max_iter", 200)])
    assert np.array_equal(got["w"], fa["w"]), s2


@pytest.mark.timeout(120)
def test_psgd_mix_one_vs_rest_string_labels(tmp_path):
    """psgd-mix (an approximate method: no certificate) fits three string classes one-vs-rest
    and predicts the names."""
    path, X, names = _wine_csv(str(tmp_path))
    job = _job(tmp_path, path, "psgd", {"l2": 1e-2}, data={"label_column": "label"},
               alg="psgd-mix", solver={"max_iter": 20})
    arrays, summ, _ = _run(World(), job, str(tmp_path / "psgd"))
    assert arrays["w"].shape == (13, 3) and summ["problems"] == 3
    import mpitrain
    pred = mpitrain.load(str(tmp_path / "psgd")).predict(X)
    assert np.mean(pred == names) > 0.9


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_shipped_multiclass_job(tmp_path, digits_h5):
    """jobs/lbfgs-digits-multiclass.toml as shipped (data path aside) at P = 2: a certified
    stop, a d × K model with intercepts, test accuracy from eval."""
    import json
    from util import ROOT
    out = str(tmp_path / "run")
    r = cli(["run", os.path.join(ROOT, "jobs", "lbfgs-digits-multiclass.toml"), "--out", out,
             "--set", f'data.train="{digits_h5}"', "--set", f'data.test="{digits_h5}"',
             "--set", "checkpoint.every=0"], nranks=2, timeout=200)
    assert r.returncode == 0, r.stderr[-2000:]
    summ = json.load(open(os.path.join(out, "summary.json")))
    assert summ["stop_reason"] == "certified gap"
    with h5py.File(os.path.join(out, "final.h5")) as f:
        assert f["model/w"].shape == (64, 10) and f["model/intercept"].shape == (10,)
        assert f["manifest"].attrs["multiclass"] == "multinomial"
    r = cli(["eval", out], timeout=120)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("accuracy:")[1].split()[0]) > 0.9
