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
