"""Hostile inputs (issue 7, part 5), each at 1 and 2 ranks through the CLI: the documented exit
code, exactly one `mpitrain: ...` line on stderr naming the file / key / line, no traceback,
every process out within 10 s, and no checkpoint damaged (the run directory's checkpoints
verify afterwards, byte for byte unchanged).
"""
import os
import shutil

import numpy as np
import pytest

from test_faults import (CASES, assert_checkpoints_intact, dense_h5, one_line_error,  # noqa
                         ops_dir, run)
from util import reseal_checkpoint, write_job

CASE = CASES[0]  # any algorithm: these are rejected before training starts


def _job(tmp, train, **sections):
    job = CASE.build(train, str(tmp / "run"))
    for sec, kv in sections.items():
        job.setdefault(sec, {}).update(kv)
    return write_job(str(tmp / "job.toml"), job)


def _text(tmp, name, body):
    path = tmp / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(path)


def _raw_job(tmp, body):
    return _text(tmp, "job.toml", body)


def _h5(tmp, name, fill):
    import h5py
    path = str(tmp / name)
    with h5py.File(path, "w") as f:
        fill(f)
    return path


LIBSVM_OK = "".join(f"{1 if i % 2 else -1} 1:{i / 10:.1f} 3:1\n" for i in range(8))


# Each entry: id → (builder(tmp) → argv after `run`, exit code, error kind, [strings in the
# message]). Builders write whatever files they need into tmp.
def _libsvm_case(body, **data):
    def build(tmp):
        path = _text(tmp, "train.svm", body)
        return [_job(tmp, path, data=data)], path
    return build


HOSTILE = {
    "libsvm-malformed": (_libsvm_case(LIBSVM_OK + "1 2:abc\n"), 65, "bad input data",
                         ["train.svm", "line 9"]),
    "libsvm-truncated": (_libsvm_case(LIBSVM_OK + "-1 2:"), 65, "bad input data",
                         ["train.svm", "line 9"]),
    "libsvm-nan": (_libsvm_case(LIBSVM_OK + "1 1:nan\n"), 65, "bad input data",
                   ["train.svm", "line 9"]),
    "libsvm-inf": (_libsvm_case("1 1:inf\n" + LIBSVM_OK), 65, "bad input data",
                   ["train.svm", "line 1"]),
    "libsvm-binary-garbage": (_libsvm_case(LIBSVM_OK + "\x00\xff\xfe garbage\n"), 65,
                              "bad input data", ["train.svm", "line 9"]),
    # lbfgs fits any number of classes (models/glm.py), but a real value is no class
    "libsvm-wrong-label": (_libsvm_case(LIBSVM_OK + "0.5 1:1\n"), 65, "bad input data",
                           ["train.svm", "row 8", "label 0.5"]),
    "libsvm-index-beyond-width": (_libsvm_case(LIBSVM_OK + "1 9:1\n", features=5), 65,
                                  "bad input data", ["train.svm", "9 features", "features = 5"]),
    "libsvm-index-zero-one-based": (_libsvm_case(LIBSVM_OK + "1 0:1\n"), 65, "bad input data",
                                    ["train.svm", "line 9"]),
    "libsvm-empty": (_libsvm_case(""), 65, "bad input data", ["train.svm", "empty"]),
    "huge-declared-width": (_libsvm_case(LIBSVM_OK + "-1 2000000000:1\n"), 65, "bad input data",
                            ["train.svm", "features", "GiB"]),
    "libsvm-index-overflow": (_libsvm_case(LIBSVM_OK + "-1 3000000000:1\n"), 65,
                              "bad input data", ["train.svm", "line 9", "out of range"]),
    "huge-features-key": (_libsvm_case(LIBSVM_OK, features=4_000_000_000), 65,
                          "bad input data", ["train.svm", "4000000000 features", "GiB"]),
    "dense-nan": (lambda tmp: ([_job(tmp, _h5(tmp, "nan.h5", lambda f: (
        f.create_dataset("train/X", data=np.array([[1.0, np.nan], [0.0, 1.0]])),
        f.create_dataset("train/y", data=np.array([1.0, -1.0])))))], None),
        65, "bad input data", ["nan.h5", "row 0", "NaN"]),
    "h5-missing-y": (lambda tmp: ([_job(tmp, _h5(tmp, "noy.h5", lambda f: f.create_dataset(
        "train/X", data=np.ones((4, 2)))))], None), 65, "bad input data", ["noy.h5", "'y'"]),
    "h5-misshaped-X": (lambda tmp: ([_job(tmp, _h5(tmp, "shape.h5", lambda f: (
        f.create_dataset("train/X", data=np.ones((3, 2))),
        f.create_dataset("train/y", data=np.ones(4)))))], None),
        65, "bad input data", ["shape.h5", "/train/X", "(3, 2)"]),
    "h5-not-hdf5": (lambda tmp: ([_job(tmp, _text(tmp, "fake.h5", "not hdf5"))], None), 65,
                    "bad input data", ["fake.h5", "HDF5"]),
    "data-missing": (lambda tmp: ([_job(tmp, str(tmp / "nope.h5"))], None), 66,
                     "input missing", ["nope.h5"]),
    "job-missing": (lambda tmp: ([str(tmp / "nojob.toml")], None), 66, "input missing",
                    ["nojob.toml"]),
    "job-typo-key": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[data]\n'
                                            'trian = "x.h5"\n')], None),
                     78, "bad job file", ["job.toml", "[data]", "'trian'", "'train'"]),
    "job-typo-section": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[dta]\n'
                                                'train = "x.h5"\n')], None),
                         78, "bad job file", ["job.toml", "[dta]", "[data]"]),
    "job-wrong-type": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[data]\n'
                                              'train = "x.h5"\n[solver]\nmax_iter = "10"\n')],
                                    None),
                       78, "bad job file", ["job.toml", "[solver] max_iter", "int"]),
    "job-unknown-algorithm": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbgfs"\n[data]'
                                                     '\ntrain = "x.h5"\n')], None),
                              78, "bad job file", ["job.toml", "lbgfs", "'lbfgs'"]),
    "job-bad-toml": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[data\n')], None),
                     78, "bad job file", ["job.toml", "line 3"]),
    "job-bad-choice": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[data]\n'
                                              'train = "x.h5"\n[model]\nloss = "hinge"\n')],
                                    None),
                       78, "bad job file", ["job.toml", "[model] loss", "'logistic'"]),
}


# -- issue 10 §5: no silent reinterpretation of bad data or job values --------------------------
def _h5_case(name, fill, **data):
    def build(tmp):
        return [_job(tmp, _h5(tmp, name, fill), data=data)], None
    return build


def _csr(f, indices, data=None, n=4, d=10, y=None, group="train"):
    g = f.create_group(group)
    k = len(indices)
    g.create_dataset("indptr", data=np.linspace(0, k, n + 1).astype(np.int64))
    g.create_dataset("indices", data=indices)
    g.create_dataset("data", data=np.ones(k) if data is None else data)
    g.create_dataset("y", data=np.array([1.0, -1.0] * (n // 2)) if y is None else y)
    g.attrs["shape"] = np.array([n, d])


def _dense(f, X=None, y=None, group="train"):
    f.create_dataset(f"{group}/X", data=np.ones((4, 3)) if X is None else X)
    f.create_dataset(f"{group}/y", data=np.array([1.0, -1.0, 1.0, -1.0]) if y is None else y)


def _job_value(line):
    return lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n' + line + '[data]\n'
                                  'train = "x.h5"\n')], None)


def _model_value(line):
    return lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "lbfgs"\n[data]\ntrain = "x.h5"\n'
                                  '[model]\n' + line)], None)


HOSTILE.update({
    "csr-index-int64-overflow": (_h5_case("ovf.h5", lambda f: _csr(
        f, np.array([1, 2**32 + 1, 3, 4], dtype=np.int64))), 65, "bad input data",
        ["ovf.h5", "row 1", "4294967297"]),
    "csr-width-beyond-int32": (_h5_case("wide.h5", lambda f: _csr(
        f, np.array([1, 2**32 + 1, 3, 4], dtype=np.int64), d=2**32 + 5)), 65, "bad input data",
        ["wide.h5", "4294967301", "int32"]),
    "csr-index-not-integer": (_h5_case("fidx.h5", lambda f: _csr(
        f, np.array([1.0, 2.5, 3.0, 4.0]))), 65, "bad input data",
        ["fidx.h5", "indices", "float64", "integer"]),
    "csr-complex-values": (_h5_case("cplx.h5", lambda f: _csr(
        f, np.arange(4), data=np.ones(4) * (1 + 1j))), 65, "bad input data",
        ["cplx.h5", "data", "complex"]),
    "dense-complex-values": (_h5_case("cplxd.h5", lambda f: _dense(
        f, X=np.ones((4, 3)) * (1 + 2j))), 65, "bad input data", ["cplxd.h5", "X", "complex"]),
    "complex-labels": (_h5_case("cplxy.h5", lambda f: _dense(
        f, y=np.array([1, -1, 1, -1]) * (1 + 0.5j))), 65, "bad input data",
        ["cplxy.h5", "y", "complex"]),
    "X-y-lengths-differ": (_h5_case("len.h5", lambda f: _dense(f, X=np.ones((6, 3)))), 65,
                           "bad input data", ["len.h5", "6 rows", "4 labels"]),
    "dense-zero-columns": (_h5_case("zcol.h5", lambda f: _dense(f, X=np.ones((4, 0)))), 65,
                           "bad input data", ["zcol.h5", "no features"]),
    "csr-zero-columns": (_h5_case("zcsr.h5", lambda f: _csr(
        f, np.zeros(0, dtype=np.int32), d=0)), 65, "bad input data", ["zcsr.h5", "no features"]),
    "libsvm-no-features": (_libsvm_case("1\n-1\n1\n-1\n"), 65, "bad input data",
                           ["train.svm", "no features"]),
    # a binary-only method (lbfgs, fadl, psgd-mix take {-1, 0, 1} as three classes): rank 0
    # holds 0/1 rows, rank 1 +1/-1 rows at P = 2
    "labels-mixed-across-shards": (lambda tmp: ([write_job(str(tmp / "job.toml"), {
        "job": {"algorithm": "dasvrda", "seed": 1, "out": str(tmp / "run")},
        "data": {"train": _h5(tmp, "mix.h5", lambda f: _dense(
            f, X=np.ones((8, 3)), y=np.array([0.0, 1.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0])))},
        "solver": {"max_stages": 3}})], None), 65, "bad input data",
        ["mix.h5", "row 4", "label -1", "label 0"]),
    "labels-strings-and-numbers": (lambda tmp: (
        _h5(tmp, "mixed-1.h5", lambda f: _dense(f)),
        [_job(tmp, _h5(tmp, "mixed-2.h5", lambda f: _dense(
            f, y=np.array([b"yes", b"no", b"yes", b"no"]))).replace("-2.h5", "-*.h5"))])[1:]
        + (None,), 65, "bad input data", ["mixed-*.h5", "numbers in some rows and strings"]),
    "labels-group": (_h5_case("ygrp.h5", lambda f: (
        f.create_dataset("train/X", data=np.ones((4, 3))), f.create_group("train/y"))), 65,
        "bad input data", ["ygrp.h5", "/train/y", "group"]),
    "train-is-a-dataset": (_h5_case("tds.h5", lambda f: f.create_dataset(
        "train", data=np.ones((4, 3)))), 65, "bad input data",
        ["tds.h5", "'train'", "dataset", "group"]),
    "job-binary-garbage": (lambda tmp: ([_text(tmp, "job.toml", bytes(range(256)) * 4)], None),
                           78, "bad job file", ["job.toml"]),
    "job-threads-1e30": (_job_value("threads = 1e30\n"), 78, "bad job file",
                         ["job.toml", "[job] threads"]),
    "job-threads-huge-int": (_job_value("threads = 1000000000000\n"), 78, "bad job file",
                             ["job.toml", "[job] threads", "at most"]),
    "job-seed-2^64": (_job_value("seed = 18446744073709551616\n"), 78, "bad job file",
                      ["job.toml", "[job] seed"]),
    "job-l2-nan": (_model_value("l2 = nan\n"), 78, "bad job file",
                   ["job.toml", "[model] l2", "finite"]),
    "job-l2-inf": (_model_value("l2 = inf\n"), 78, "bad job file",
                   ["job.toml", "[model] l2", "finite"]),
    "job-batch-1e12": (lambda tmp: ([_raw_job(tmp, '[job]\nalgorithm = "dasvrda"\n[data]\n'
                                              'train = "x.h5"\n[solver]\nbatch = 1e12\n')],
                                    None), 78, "bad job file", ["job.toml", "[solver] batch"]),
})


# job values are checked by config.resolve, the same on every rank: these run at P = 1 only
# (the job cases above exercise the P = 2 path of a job error)
P1_ONLY = {"job-binary-garbage", "job-threads-1e30", "job-threads-huge-int", "job-seed-2^64",
           "job-l2-nan", "job-l2-inf", "job-batch-1e12"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,nranks", [(n, p) for n in sorted(HOSTILE) for p in (1, 2)
                                         if p == 1 or n not in P1_ONLY])
def test_hostile_input(name, nranks, tmp_path):
    build, code, kind, needles = HOSTILE[name]
    argv, _ = build(tmp_path)
    p, t = run(["run"] + argv, nranks, timeout=30)
    assert p.returncode == code, (p.returncode, p.stderr[-3000:])
    line = one_line_error(p.stderr, kind)
    for s in needles:
        assert s in line, f"{s!r} not in: {line}"
    assert t < 10, f"took {t:.1f}s"


def test_more_ranks_than_rows(tmp_path):
    path = _text(tmp_path, "one.svm", "1 1:1\n")
    p, t = run(["run", _job(tmp_path, path)], 2, timeout=30)
    assert p.returncode == 65, p.stderr
    line = one_line_error(p.stderr, "bad input data")
    assert "one.svm" in line and "empty shard" in line and "fewer ranks" in line
    assert t < 10


# -- hostile checkpoints: a good run directory, then bad files offered to --resume ------------
@pytest.fixture(scope="module")
def good_run(dense_h5, ops_dir):
    """A finished 2-rank run stopped at step 5 (checkpoints 1..5), copied per test."""
    out = os.path.join(ops_dir, "good-run")
    job = write_job(os.path.join(ops_dir, "good.toml"), CASE.build(dense_h5, out))
    p, _ = run(["run", job, "--fresh", "--set", f"{CASE.cap}=5"], 2)
    assert p.returncode == 0, p.stderr
    return job, out


def _copy_run(good_run, tmp):
    job, out = good_run
    dst = str(tmp / "run")
    shutil.copytree(out, dst)
    return job, dst


def _snapshot(out):
    files = assert_checkpoints_intact(out)
    return {f: open(f, "rb").read() for f in files}


def _bad_ckpt_truncated(src, dst):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:len(data) // 3])


def _bad_ckpt_newer(src, dst):
    import h5py
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f["manifest"].attrs["format_version"] = 99
    reseal_checkpoint(dst)


def _bad_ckpt_other_job(src, dst):
    import h5py
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f["manifest"].attrs["job_hash"] = "0123456789abcdef"
    reseal_checkpoint(dst)


def _bad_ckpt_flipped(src, dst):
    data = bytearray(open(src, "rb").read())
    data[len(data) // 2] ^= 0x04  # one bit in the middle of the file
    open(dst, "wb").write(data)


BAD_CKPTS = {
    "truncated": (_bad_ckpt_truncated, 65, ["truncated"]),
    "newer-format": (_bad_ckpt_newer, 65, ["format version 99"]),
    "another-job": (_bad_ckpt_other_job, 65, ["another job"]),
    "bit-flip": (_bad_ckpt_flipped, 65, ["SHA-256"]),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nranks", [1, 2])
@pytest.mark.parametrize("name", sorted(BAD_CKPTS))
def test_hostile_checkpoint_explicit(name, nranks, good_run, tmp_path):
    """--resume PATH with a bad file: refused with the reason; the good ones untouched."""
    make, code, needles = BAD_CKPTS[name]
    job, out = _copy_run(good_run, tmp_path)
    before = _snapshot(out)
    bad = str(tmp_path / "bad.h5")
    make(sorted(before)[-1], bad)
    p, t = run(["run", job, "--out", out, "--resume", bad], nranks, timeout=30)
    assert p.returncode == code, p.stderr
    line = one_line_error(p.stderr, "unusable checkpoint")
    assert "bad.h5" in line
    for s in needles:
        assert s in line, line
    assert t < 10
    assert _snapshot(out) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["truncated", "newer-format", "bit-flip"])
def test_damaged_newest_checkpoint_skipped_by_auto(name, good_run, tmp_path):
    """--resume auto over a damaged newest file: a warning naming it, resume from step 5."""
    make, _, _ = BAD_CKPTS[name]
    job, out = _copy_run(good_run, tmp_path)
    before = _snapshot(out)
    bad = os.path.join(out, "checkpoints", "ckpt-000000006.h5")
    make(sorted(before)[-1], bad)
    p, _ = run(["run", job, "--out", out, "--resume", "auto", "--set", f"{CASE.cap}=6"], 2)
    assert p.returncode == 0, p.stderr
    assert "skipping checkpoint" in p.stderr and "ckpt-000000006.h5" in p.stderr
    assert "Traceback" not in p.stderr
    assert "at step 5" in p.stdout


def test_checkpoint_of_another_job_in_run_dir(good_run, tmp_path):
    """Resuming a run directory with a job whose settings changed: refused, named."""
    job, out = _copy_run(good_run, tmp_path)
    before = _snapshot(out)
    p, t = run(["run", job, "--out", out, "--resume", "auto", "--set", "model.l2=0.5"], 2)
    assert p.returncode == 65, p.stderr
    line = one_line_error(p.stderr, "unusable checkpoint")
    assert "another job" in line and "ckpt-000000005.h5" in line
    assert t < 10
    assert _snapshot(out) == before


def test_count():
    """The closing note's count of hostile inputs (each tried at 1 and 2 ranks)."""
    assert len(HOSTILE) + 1 + len(BAD_CKPTS) + 1 >= 25


# -- memory: every algorithm estimates its peak before allocating (issue 10 §4) ---------------
_AE = {"model": {"layers": [24, 12]}, "data": {"max_rows": 400},
       "solver": {"epochs": 1, "batch": 64, "recon_finetune_epochs": 1, "eval_rows": 100}}
_NET = {"model": {"hidden": [16, 6, 16]}, "data": {"max_rows": 400}}
MEMORY_JOBS = {  # algorithm → (dataset fixture, job sections, absurd [model] for the refusal)
    "sae-greedy": ("digits_h5", _AE, {"layers": [100_000_000]}),
    "dae-gradual": ("digits_h5", _AE, {"layers": [12, 100_000_000]}),
    "slp": ("digits_h5", _AE, {"layers": [100_000_000, 12]}),
    "sae-greedy/csr": ("synth_csr_h5", dict(_AE, model={"layers": [24, 12], "loss": "squared"}),
                       None),
    "mac": ("digits_h5", _NET, {"hidden": [100_000_000]}),
    "backprop": ("digits_h5", _NET, {"hidden": [100_000_000]}),
    "parmac-ba": ("digits_h5", {"model": {"bits": 8}, "solver": {"queries": 150, "K": 30}},
                  None),
    "fadl": ("rt_h5", {"data": {"max_rows": 2000}}, None),
    "fadl/dense-tall": ("tall_dense_h5", {"data": {"test": ""}}, None),  # tron's row vectors
    "psgd-mix": ("rt_h5", {"data": {"max_rows": 2000}}, None),
    "dasvrda": ("rt_h5", {"data": {"max_rows": 2000}}, None),
}
ABSURD_AT_2 = ("sae-greedy", "mac")  # the refusal at P = 2 too (collective, same line)


@pytest.fixture(scope="module")
def synth_csr_h5(ops_dir):
    """A small sparse set (CSR: the autoencoders keep it CSR, densified per minibatch)."""
    from mpitrain import datasets
    path = os.path.join(ops_dir, "synth-csr.h5")
    if not os.path.exists(path):
        datasets.synth(path, n=700, d=3000, nnz_per_row=10, seed=1)
    return path


@pytest.fixture(scope="module")
def tall_dense_h5(ops_dir):
    """A dense set with many rows and few features (40,000 × 20): the row-length vectors
    dominate a linear method's peak."""
    from test_faults import make_dense
    path = os.path.join(ops_dir, "tall-dense.h5")
    return path if os.path.exists(path) else make_dense(path, n=40_000, d=20, seed=2)


def _sections(name, data, extra, tmp):
    name = name.split("/")[0]  # "algorithm/variant" keys
    sec = {"job": {"algorithm": name, "seed": 1, "out": str(tmp / "run")},
           "data": {"train": data, "test": data}}
    for k, v in extra.items():
        sec.setdefault(k, {}).update(v)
    return sec


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(MEMORY_JOBS))
def test_memory_estimate_bounds_the_peak(name, request, world, tmp_path):
    """memory_bytes(job, train) is at least the peak that setup and two steps allocate
    (numpy arrays, traced by tracemalloc), and not wildly above it (≤ 3× + 2 MiB). Greedy's
    estimate serves dae-stacked (a subclass) and katyusha/prox-svrg share dasvrda's."""
    import tracemalloc

    from mpitrain import driver
    from mpitrain.algorithms import registry
    from mpitrain.algorithms.base import Context
    fixture, extra, _ = MEMORY_JOBS[name]
    cls = registry().get(name.split("/")[0]) or pytest.skip(f"{name} not registered")
    data = request.getfixturevalue(fixture)
    job = driver.load_job(world, write_job(str(tmp_path / "j.toml"),
                                           _sections(name, data, extra, tmp_path)))
    train, test = driver.load_data(world, job, cls)
    est = cls.memory_bytes(job, train)
    tracemalloc.start()
    try:
        alg = cls(Context(world, job, train, test))
        alg.setup()
        for _ in range(2):
            if alg.done:
                break
            alg.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= est <= 3 * peak + (2 << 20), (name, est, peak)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,nranks", [(n, 1) for n, v in sorted(MEMORY_JOBS.items()) if v[2]]
                         + [(n, 2) for n in ABSURD_AT_2])
def test_absurd_model_refused(name, nranks, tmp_path, dense_h5):
    """A model far too big for the node: exit 65 and one line with the sizes, before any
    allocation (no ArrayMemoryError, no traceback), at every P."""
    _, extra, absurd = MEMORY_JOBS[name]
    sec = _sections(name, dense_h5, dict(extra, model=dict(extra.get("model", {}), **absurd)),
                    tmp_path)
    sec["data"].pop("max_rows", None)
    sec["data"]["test"] = ""
    job = write_job(str(tmp_path / "job.toml"), sec)
    p, t = run(["run", job], nranks, timeout=30)
    assert p.returncode == 65, p.stderr[-3000:]
    line = one_line_error(p.stderr, "bad input data")
    key, value = next(iter(absurd.items()))
    for s in ("dense.h5", "GiB", f"[model] {key} = {value}", name):
        assert s in line, (s, line)
    assert t < 10, t


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(n for n, v in MEMORY_JOBS.items()
                                        if not v[2] and "/" not in n))
def test_absurd_width_refused_linear(name, tmp_path):
    """The linear methods' state scales with the width: a declared width of 4·10⁹ → 65."""
    path = _text(tmp_path, "train.svm", LIBSVM_OK)
    sec = _sections(name, path, {"data": {"features": 4_000_000_000, "test": ""}}, tmp_path)
    p, t = run(["run", write_job(str(tmp_path / "job.toml"), sec)], 1, timeout=30)
    assert p.returncode == 65, p.stderr[-3000:]
    line = one_line_error(p.stderr, "bad input data")
    assert "4000000000 features" in line and "GiB" in line, line
    assert name in line or "the dense copy" in line, line  # parmac-ba densifies CSR first
