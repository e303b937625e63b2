"""`mpitrain predict`: at P = 1, 2, 3 the output equals the serial prediction of the Python
API row for row, for a linear model (bit for bit: scores summed per row by the kernels), an
autoencoder (float32 GEMM: within a few ulps at P > 1, bit for bit at P = 1) and parmac-ba
(codes bit for bit); eval of a run directory and the job-hash check."""
import io
import os

import h5py
import numpy as np
import pytest

from util import cli, write_job

TINY = {
    "lin": ({"algorithm": "lbfgs"}, {"max_iter": 15}, {}, "digits2"),
    "ae": ({"algorithm": "sae-greedy"}, {"epochs": 1, "batch": 50, "eval_every": 0},
           {"layers": [12, 5]}, "digits"),
    "ba": ({"algorithm": "parmac-ba"}, {"mu_steps": 2, "queries": 0}, {"bits": 6}, "digits"),
}


def tiny_job(tmp, which, path, **data):
    job, solver, model, _ = TINY[which]
    return write_job(os.path.join(tmp, f"{which}.toml"), {
        "job": dict(job), "data": dict({"train": path, "test": path}, **data),
        "model": dict(model), "solver": dict(solver), "checkpoint": {"every": 0}})


def _data(which, digits_h5, digits2_h5):
    return digits2_h5 if TINY[which][3] == "digits2" else digits_h5


def _outputs(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, dict(f.attrs)


def _serial(run, data_path):
    import mpitrain
    with h5py.File(data_path, "r") as f:
        X = f["test/X"][()]
    return mpitrain.load(run).outputs(X, reconstruct=False)


def _same(a, b, exact=True):
    """Equal outputs; `exact=False` for float32 network outputs of differently sized row
    blocks (BLAS sgemm may round a row differently with the block's row count: a few
    float32 ulps, never a row out of place)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        if exact or a[k].dtype != np.float32:
            assert np.array_equal(a[k], b[k]), k
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", sorted(TINY))
def test_predict_cli_equals_api(tmp_path, digits_h5, digits2_h5, which):
    """P = 1 through the CLI: predict's file equals mpitrain.load(run).outputs(X)."""
    data = _data(which, digits_h5, digits2_h5)
    job = tiny_job(str(tmp_path), which, data)
    run = str(tmp_path / "run")
    res = cli(["run", job, "--out", run])
    assert res.returncode == 0, res.stderr
    out = str(tmp_path / "p.h5")
    res = cli(["predict", run, data, "--out", out])
    assert res.returncode == 0, res.stderr
    got, attrs = _outputs(out)
    _same(got, _serial(run, data))
    assert attrs["rows"] == 297 and attrs["algorithm"] == TINY[which][0]["algorithm"]
    if which == "lin":  # labels in the data's own values; accuracy as eval reports it
        with h5py.File(data, "r") as f:
            y = f["test/y"][()]
        assert set(np.unique(got["label"])) <= {-1.0, 1.0}
        ev = cli(["eval", run])
        assert ev.returncode == 0, ev.stderr
        acc = float(ev.stdout.split("accuracy:")[1].split()[0])
        assert acc == pytest.approx(np.mean(got["label"] == y), abs=1e-12)
    if which == "ba":
        assert got["code"].dtype == np.uint8 and got["code"].shape == (297, 6)
        assert set(np.unique(got["code"])) <= {0, 1}
    if which == "ae":
        assert got["code"].dtype == np.float32 and got["code"].shape == (297, 5)
        res = cli(["predict", run, data, "--out", out, "--reconstruct"])
        assert res.returncode == 0, res.stderr
        assert _outputs(out)[0]["reconstruction"].shape == (297, 64)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_predict_rows_without_labels(tmp_path, digits2_h5):
    """New data has no labels: an HDF5 file with X only is predicted (the same scores and
    labels as the labelled file), while training on it is refused naming the missing y."""
    job = tiny_job(str(tmp_path), "lin", digits2_h5)
    run = str(tmp_path / "run")
    assert cli(["run", job, "--out", run]).returncode == 0
    bare = str(tmp_path / "bare.h5")
    with h5py.File(digits2_h5, "r") as src, h5py.File(bare, "w") as dst:
        dst["test/X"] = src["test/X"][()]
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    assert cli(["predict", run, digits2_h5, "--out", a]).returncode == 0
    res = cli(["predict", run, bare, "--out", b])
    assert res.returncode == 0, res.stderr
    got, want = _outputs(b)[0], _outputs(a)[0]
    assert np.array_equal(got["score"], want["score"])
    assert np.array_equal(got["label"], want["label"])
    bad = write_job(str(tmp_path / "bad.toml"), {
        "job": {"algorithm": "lbfgs"}, "data": {"train": bare, "train_group": "test"}})
    res = cli(["run", bad, "--out", str(tmp_path / "bad")])
    assert res.returncode == 65 and "dataset 'y' (labels) is missing" in res.stderr


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(180)
@pytest.mark.parametrize("which", sorted(TINY))
def test_predict_any_p_equals_serial(world, shared_tmp, digits_h5, digits2_h5, which):
    """Trained and predicted at P = world size: rows in input order, bit-identical to the
    serial API on the whole file."""
    from mpitrain import driver
    from mpitrain.predict import predict
    data = _data(which, digits_h5, digits2_h5)
    job = tiny_job(shared_tmp, which, data) if world.rank == 0 else None
    job = world.comm.bcast(job, root=0)
    run = os.path.join(shared_tmp, f"run-{which}")
    driver.run(world, job, out=run, fresh=True, stream=io.StringIO())
    out = os.path.join(shared_tmp, f"p-{which}.h5")
    n = predict(world, run, data, out)
    assert n == 297
    world.comm.Barrier()
    if world.rank == 0:
        got, attrs = _outputs(out)
        _same(got, _serial(run, data), exact=world.size == 1)
        assert attrs["rows"] == 297


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_eval_run_dir_and_job_hash_check(tmp_path, digits2_h5, digits_h5):
    job = tiny_job(str(tmp_path), "lin", digits2_h5)
    run = str(tmp_path / "run")
    assert cli(["run", job, "--out", run, "--set", "model.l2=1e-6"]).returncode == 0
    good = cli(["eval", run])  # the run's own job.toml: l2 = 1e-6
    assert good.returncode == 0, good.stderr
    # the job file without the run's --set: another job → exit 65, one line
    bad = cli(["eval", job, os.path.join(run, "final.h5")])
    assert bad.returncode == 65 and bad.stderr.count("\n") == 1, bad.stderr
    assert "another job" in bad.stderr and "Traceback" not in bad.stderr
    same = cli(["eval", job, os.path.join(run, "final.h5"), "--set", "model.l2=1e-6"])
    assert same.returncode == 0 and same.stdout == good.stdout
    # --data: another file, evaluated with the run's job
    other = cli(["eval", run, "--data", digits2_h5])
    assert other.returncode == 0 and other.stdout == good.stdout
    # an autoencoder job whose architecture differs from the model: one line, exit 65
    ae = tiny_job(str(tmp_path), "ae", digits_h5)
    aerun = str(tmp_path / "ae")
    assert cli(["run", ae, "--out", aerun]).returncode == 0
    arch = cli(["eval", ae, os.path.join(aerun, "final.h5"), "--set", "model.layers=[12, 5, 3]"])
    assert arch.returncode == 65 and arch.stderr.count("\n") == 1, arch.stderr
    assert "KeyError" not in arch.stderr
    missing = cli(["eval", str(tmp_path / "nope")])
    assert missing.returncode == 66 and missing.stderr.count("\n") == 1


# -- rows without labels in text formats (LIBSVM, CSV) -------------------------------------
@pytest.fixture(scope="module")
def lin_run(tmp_path_factory, digits2_h5):
    """A tiny linear model on digits '2 vs rest' and the test rows it will predict."""
    tmp = str(tmp_path_factory.mktemp("unlabeled"))
    run = os.path.join(tmp, "run")
    res = cli(["run", tiny_job(tmp, "lin", digits2_h5), "--out", run])
    assert res.returncode == 0, res.stderr
    with h5py.File(digits2_h5, "r") as f:
        X = f["test/X"][()].astype(np.float64)
    return run, X


def _predicted(tmp, run, data, *flags, nranks=1):
    out = os.path.join(tmp, "p.h5")
    if os.path.exists(out):
        os.remove(out)
    res = cli(["predict", run, data, "--out", out] + list(flags), nranks=nranks)
    assert res.returncode == 0, res.stderr
    return _outputs(out)[0]


def _h5_rows(path, X, csr=False):
    """The rows X as an HDF5 file without labels (dense X, or CSR)."""
    import scipy.sparse as sp
    with h5py.File(path, "w") as f:
        g = f.create_group("test")
        if csr:
            A = sp.csr_matrix(X)
            g["indptr"], g["indices"], g["data"] = A.indptr, A.indices, A.data
            g.attrs["shape"] = A.shape
        else:
            g["X"] = X
    return path


def _failure(res, path, line):
    """One line on stderr, exit 65, naming the file and the line."""
    assert res.returncode == 65, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"{path}: line {line}:" in res.stderr, res.stderr


@pytest.mark.timeout(10)
def test_libsvm_parse_label_modes():
    """parse(labels=...): 1 reads a label first (a leading idx:val is a malformed label), 0
    reads features only (a leading number is a malformed token), -1 decides per line by
    the first token's ':'; rows without a label get 0, the features are the same."""
    from mpitrain._kernels.libsvm import ParseError, parse
    text = b"2:0.5 4:1\n# c\n-1 1:3\n\n3:2 qid:1 1:1\n"
    y, ptr, ind, val, mx, lines = parse(text, False, -1)
    assert y.tolist() == [0.0, -1.0, 0.0] and ptr.tolist() == [0, 2, 3, 5] and mx == 3
    assert ind.tolist() == [1, 3, 0, 2, 0] and val.tolist() == [0.5, 1, 3, 2, 1] and lines == 5
    y0, ptr0, ind0, val0, _, _ = parse(b"2:0.5 4:1\n1:3\n3:2 1:1\n", False, 0)
    assert y0.tolist() == [0.0] * 3 and ptr0.tolist() == ptr.tolist()
    assert ind0.tolist() == ind.tolist() and val0.tolist() == val.tolist()
    with pytest.raises(ParseError, match="malformed label '2:0.5'") as e:
        parse(text, False)
    assert e.value.line == 0
    with pytest.raises(ParseError, match="malformed token '-1'") as e:
        parse(text, False, 0)
    assert e.value.line == 2
    with pytest.raises(ParseError, match="malformed label 'x'"):
        parse(b"1:1\nx 2:1\n", False, -1)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_predict_libsvm_without_labels(tmp_path, lin_run):
    """LIBSVM lines that start with a feature (idx:val, 1-based like the training data)
    are rows without labels: predicted at P = 1 and 2 exactly as the same rows stored as
    HDF5 CSR, with or without --no-labels, and a labelled line may sit among them. A
    malformed line is refused naming the file and its line, at P = 2 in the second rank's
    half too."""
    run, X = lin_run
    tmp = str(tmp_path)
    lines = [" ".join(f"{j + 1}:{v!r}" for j, v in enumerate(r) if v) for r in X.tolist()]
    lines[5] = "-1 " + lines[5]  # a labelled line among unlabelled ones
    svm = tmp_path / "new.svm"
    svm.write_text("# new rows\n" + "\n".join(lines) + "\n")
    want = _predicted(tmp, run, _h5_rows(str(tmp_path / "csr.h5"), X, csr=True))
    dense = _predicted(tmp, run, _h5_rows(str(tmp_path / "dense.h5"), X))
    np.testing.assert_allclose(want["score"], dense["score"], rtol=1e-12, atol=1e-12)
    assert np.array_equal(want["label"], dense["label"]) and len(set(want["label"])) == 2
    for nranks in (1, 2):
        _same(_predicted(tmp, run, str(svm), nranks=nranks), want)
    lines[5] = lines[5][3:]
    svm.write_text("\n".join(lines) + "\n")
    _same(_predicted(tmp, run, str(svm), "--no-labels"), want)
    # malformed: a token that is not idx:val (line 291 of 297: the second rank's half)
    bad = tmp_path / "bad.svm"
    bad.write_text("\n".join(lines[:290] + ["3:0.5 x:1"] + lines[291:]) + "\n")
    res = cli(["predict", run, str(bad), "--out", str(tmp_path / "b.h5")], nranks=2)
    _failure(res, bad, 291)
    assert "malformed token 'x:1'" in res.stderr
    # --no-labels: a leading label is a malformed feature
    bad.write_text("\n".join(lines[:3] + ["1 " + lines[3]] + lines[4:]) + "\n")
    res = cli(["predict", run, str(bad), "--out", str(tmp_path / "b.h5"), "--no-labels"])
    _failure(res, bad, 4)
    assert "expected index:value" in res.stderr
    assert not os.path.exists(tmp_path / "b.h5")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_predict_csv_without_labels(tmp_path, lin_run):
    """CSV rows of features only (--no-labels; a header line is allowed) are predicted
    exactly as the same rows in HDF5; a CSV with a dummy label column needs no flag. Without
    the flag, a label-less file is refused with the hint; a malformed line is refused naming
    the file and its line (blank lines counted)."""
    run, X = lin_run
    tmp = str(tmp_path)
    rows = [",".join(repr(v) for v in r) for r in X.tolist()]
    want = _predicted(tmp, run, _h5_rows(str(tmp_path / "dense.h5"), X))
    csv = tmp_path / "new.csv"
    csv.write_text(",".join(f"f{j}" for j in range(X.shape[1])) + "\n" + "\n".join(rows)
                   + "\n")
    _same(_predicted(tmp, run, str(csv), "--no-labels"), want)
    dummy = tmp_path / "dummy.csv"
    dummy.write_text("\n".join("0," + r for r in rows) + "\n")
    _same(_predicted(tmp, run, str(dummy)), want)
    res = cli(["predict", run, str(csv), "--out", str(tmp_path / "b.h5")])
    assert res.returncode == 65 and "pass --no-labels" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "63 columns but the model has 64" in res.stderr
    short = _h5_rows(str(tmp_path / "short.h5"), X[:, 1:])  # no flag helps HDF5: no hint
    res = cli(["predict", run, short, "--out", str(tmp_path / "b.h5")])
    assert res.returncode == 65 and "63 columns but the model has 64" in res.stderr
    assert "--no-labels" not in res.stderr, res.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows[:2] + ["", rows[2].replace(repr(float(X[2, 3])), "abc", 1)]
                             + rows[3:]) + "\n")
    res = cli(["predict", run, str(bad), "--out", str(tmp_path / "b.h5"), "--no-labels"])
    _failure(res, bad, 4)
    assert "feature 'abc' is not a number" in res.stderr
    bad.write_text("\n".join(rows[:6] + [rows[6] + ",1.0"] + rows[7:]) + "\n")
    res = cli(["predict", run, str(bad), "--out", str(tmp_path / "b.h5"), "--no-labels"])
    _failure(res, bad, 7)
    assert "65 fields, expected 64" in res.stderr
    npy = str(tmp_path / "rows.npy")  # column 0 of an .npy is its label: refused
    np.save(npy, X)
    res = cli(["predict", run, npy, "--out", str(tmp_path / "b.h5"), "--no-labels"])
    assert res.returncode == 65 and "keeps its labels in the array" in res.stderr
    assert not os.path.exists(tmp_path / "b.h5")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_predict_csv_label_column(tmp_path, lin_run):
    """--label-column K: a CSV whose (string) label is the last column, with a header line,
    gives the predictions of the same rows with the label first (scores bit for bit, hence
    the same labels and accuracy), as -1 and as its index, at P = 1 and 2 (without the
    option, column 0 is the label and 'dog' a malformed feature). Refused with one line
    naming the file and the column: out of range (exit 65), not a number (64); with
    --no-labels and for LIBSVM (64, naming the option)."""
    run, X = lin_run
    tmp = str(tmp_path)
    rows = [",".join(repr(v) for v in r) for r in X.tolist()]
    first = tmp_path / "first.csv"
    first.write_text("\n".join("5," + r for r in rows) + "\n")
    want = _predicted(tmp, run, str(first))
    assert len(set(want["label"])) == 2
    last = tmp_path / "last.csv"
    last.write_text(",".join(f"f{j}" for j in range(X.shape[1])) + ",kind\n"
                    + "\n".join(r + (",cat" if i % 2 else ",dog") for i, r in enumerate(rows))
                    + "\n")
    for flags, nranks in ((["--label-column", "-1"], 1), (["--label-column", "64"], 1),
                          (["--label-column=-1"], 2)):
        _same(_predicted(tmp, run, str(last), *flags, nranks=nranks), want)
    out = str(tmp_path / "b.h5")
    res = cli(["predict", run, str(last), "--out", out])   # column 0 as the label: 'dog' is
    assert res.returncode == 65 and "feature 'dog' is not a number" in res.stderr  # a feature
    for k in ("65", "-66"):
        res = cli(["predict", run, str(last), "--out", out, "--label-column", k])
        assert res.returncode == 65 and res.stderr.count("\n") == 1, res.stderr
        assert f"{last}: --label-column {k}: the rows have 65 columns" in res.stderr
    res = cli(["predict", run, str(last), "--out", out, "--label-column", "last"])
    assert res.returncode == 64 and res.stderr.count("\n") == 1, res.stderr
    assert f"{last}: --label-column last: not a column number" in res.stderr
    res = cli(["predict", run, str(last), "--out", out, "--label-column", "0", "--no-labels"])
    assert res.returncode == 64 and "contradict" in res.stderr, res.stderr
    svm = tmp_path / "rows.svm"
    svm.write_text("\n".join(" ".join(f"{j + 1}:{v!r}" for j, v in enumerate(r) if v)
                             for r in X[:4].tolist()) + "\n")
    res = cli(["predict", run, str(svm), "--out", out, "--label-column", "0"], nranks=2)
    assert res.returncode == 64 and res.stderr.count("\n") == 1, res.stderr
    assert f"{svm}: --label-column 0 applies to CSV rows only, not to libsvm" in res.stderr
    assert not os.path.exists(out)


_RANK1_FAILS = """
import sys
import mpitrain.predict as P
real = P.predict
def predict(world, *a, **k):
    if world.rank == 1:
        raise RuntimeError("a bug on rank 1")
    return real(world, *a, **k)
P.predict = predict
from mpitrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_predict_internal_error_on_one_rank_ends_the_job(tmp_path, lin_run):
    """A failure that is not a user error on one rank of predict (here a RuntimeError on
    rank 1 while rank 0 waits in a collective) ends the job: rank 1's traceback, one line
    naming it, exit 1, no output file; without the handler the job hangs."""
    import subprocess
    import sys
    from util import env, kill_group, mpiexec
    run, X = lin_run
    out = tmp_path / "p.h5"
    p = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, "-c", _RANK1_FAILS, "predict",
                          run, _h5_rows(str(tmp_path / "rows.h5"), X), "--out", str(out)],
                         env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=40)
    finally:
        kill_group(p)   # a hang must not leave ranks behind
    assert p.returncode == 1, (p.returncode, err)
    assert "RuntimeError: a bug on rank 1" in err, err
    assert "mpitrain: internal error on rank 1; aborting all ranks" in err
    assert not out.exists()


# -- evaluate_linear: the test rows as stored, no layout ------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("values", ["float64", "float32"])
def test_evaluate_linear_equals_numpy_without_a_layout(tmp_path, rt_h5, values):
    """`mpitrain eval` of a linear model on rt-polarity's test rows (CSR): mean loss,
    objective and accuracy equal NumPy's on the stored rows (loss to 1e-12; accuracy
    exactly: no margin near 0) whatever [model] values is, and the test set gets no
    SplitCSR: the pass's traced peak stays within its documented copies (32 bytes per row,
    4 per value), far below the layout it used to build (layout_bytes)."""
    import tracemalloc
    from mpitrain import driver
    from mpitrain.algorithms.base import Context
    from mpitrain.algorithms.linear_family import LinearAlgorithm, evaluate_linear
    from mpitrain.comm import World
    from mpitrain.models.linear import layout_bytes
    l2 = 1e-3
    job = driver.load_job(World(), write_job(str(tmp_path / "j.toml"), {
        "job": {"algorithm": "lbfgs"}, "data": {"train": rt_h5, "test": rt_h5},
        "model": {"l2": l2, "values": values}}))
    train, test = driver.load_data(World(), job, LinearAlgorithm)
    X, y = test.X, test.y
    w = np.random.default_rng(0).normal(size=X.shape[1])
    tracemalloc.start()
    try:
        got = evaluate_linear(Context(World(), job, train, test), w)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    m = X @ w
    assert np.abs(m).min() > 1e-9
    loss = float(np.mean(np.logaddexp(0.0, -y * m)))
    assert got["rows"] == test.rows == X.shape[0] > 1000 and got["data"] == "test"
    assert got["mean_loss"] == pytest.approx(loss, rel=1e-12)
    assert got["objective"] == pytest.approx(loss + 0.5 * l2 * (w @ w), rel=1e-12)
    assert got["accuracy"] == np.mean(np.where(m >= 0, 1.0, -1.0) == y)
    assert "_split_csr" not in vars(test)
    bound = 32 * (test.rows + 1) + 4 * test.nnz + (16 << 10)
    assert peak <= bound < layout_bytes(test, values) / 4, (peak, bound)
