"""Data in (issue 13 part 4): CSV (label column by name or index, header detection), .npz,
string labels, several files or a glob as one dataset, data paths relative to the job file,
`data describe` for every format, and `data synth` saying what it writes.

In-process loads compare with NumPy references built from the same arrays; the MPI test
checks that sharded reads of a multi-file dataset equal the serial read row for row."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain import data
from mpitrain.errors import DataError, InputMissing

pytestmark = pytest.mark.timeout(60)

RNG = np.random.default_rng(7)
X0 = np.round(RNG.normal(size=(12, 3)), 4)
NAMES = np.array(["spam", "ham", "eggs"])[RNG.integers(0, 3, 12)]


def _csv(path, X, labels, header=True, label_at=0, delim=","):
    cols = [f"f{j}" for j in range(X.shape[1])]
    cols.insert(label_at, "kind")
    lines = [delim.join(cols)] if header else []
    for x, lab in zip(X, labels):
        fields = [f"{v:.4f}" for v in x]
        fields.insert(label_at, str(lab))
        lines.append(delim.join(fields))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _classes(labels):
    names = sorted(set(labels))
    return names, np.array([names.index(v) for v in labels], dtype=np.float64)


def test_csv_header_label_by_name_and_string_labels(world, tmp_path):
    p = _csv(tmp_path / "a.csv", X0, NAMES, label_at=2)
    s = data.load(world, p, label_column="kind")
    names, y = _classes(NAMES)
    assert s.classes == names == ["eggs", "ham", "spam"]
    np.testing.assert_array_equal(s.y, y)
    np.testing.assert_allclose(s.X, X0, atol=1e-12)
    assert (s.n, s.d) == (12, 3)


def test_csv_without_header_label_by_index_and_tsv(world, tmp_path):
    y = np.where(X0[:, 0] > 0, 1.0, -1.0)
    p = _csv(tmp_path / "b.csv", X0, [f"{v:g}" for v in y], header=False, label_at=3)
    s = data.load(world, p, label_column="-1", binary=True)
    np.testing.assert_array_equal(s.y, y)
    np.testing.assert_allclose(s.X, X0, atol=1e-12)
    assert not hasattr(s, "classes")
    t = _csv(tmp_path / "c.tsv", X0, [f"{v:g}" for v in y], header=True, delim="\t")
    np.testing.assert_allclose(data.load(world, t).X, X0, atol=1e-12)


def test_csv_errors_name_file_and_line(world, tmp_path):
    p = _csv(tmp_path / "e.csv", X0, NAMES)
    with pytest.raises(DataError, match="no column named 'label'"):
        data.load(world, p, label_column="label")
    lines = open(p).read().splitlines()
    lines[5] = lines[5] + ",9"
    bad = tmp_path / "f.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"f\.csv: line 6: 5 fields, expected 4"):
        data.load(world, str(bad))
    lines = open(p).read().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "abc")
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 4: feature 'abc' is not a number"):
        data.load(world, str(bad))


def test_npz_dense_and_csr_and_string_labels_npy_h5(world, tmp_path):
    h5py = pytest.importorskip("h5py")
    y = np.where(X0[:, 1] > 0, 1.0, -1.0)
    np.savez(tmp_path / "d.npz", X=X0, y=y)
    s = data.load(world, str(tmp_path / "d.npz"), binary=True)
    np.testing.assert_array_equal(s.X, X0)
    np.testing.assert_array_equal(s.y, y)
    M = sp.random(12, 50, density=0.2, random_state=1, format="csr")
    np.savez(tmp_path / "c.npz", indptr=M.indptr, indices=M.indices, data=M.data,
             shape=np.array(M.shape), y=NAMES)
    s = data.load(world, str(tmp_path / "c.npz"))
    assert s.sparse and abs(s.X - M).max() == 0
    np.testing.assert_array_equal(s.y, _classes(NAMES)[1])
    arr = np.column_stack([NAMES, X0.astype(str)])
    np.save(tmp_path / "s.npy", arr)
    s = data.load(world, str(tmp_path / "s.npy"))
    np.testing.assert_allclose(s.X, X0)
    assert s.classes == ["eggs", "ham", "spam"]
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["train/X"] = X0
        f["train/y"] = NAMES.astype("S")
    s = data.load(world, str(tmp_path / "s.h5"), group="train")
    np.testing.assert_array_equal(s.y, _classes(NAMES)[1])
    np.savez(tmp_path / "noy.npz", X=X0)
    with pytest.raises(DataError, match="'y'"):
        data.load(world, str(tmp_path / "noy.npz"))


def _parts(tmp_path, fmt):
    """The 12 rows of X0 in three files part-0..2 of `fmt` (uneven sizes)."""
    h5py = pytest.importorskip("h5py")
    y = np.where(X0[:, 2] > 0, 1.0, -1.0)
    cuts = [(0, 5), (5, 6), (6, 12)]
    for k, (a, b) in enumerate(cuts):
        p = tmp_path / f"part-{k}.{fmt}"
        if fmt == "svm":
            p.write_text("".join(f"{y[i]:g} " + " ".join(f"{j + 1}:{X0[i, j]:.4f}"
                                                        for j in range(3)) + "\n"
                                 for i in range(a, b)).rstrip("\n"))  # no final newline
        elif fmt == "csv":
            _csv(p, X0[a:b], [f"{v:g}" for v in y[a:b]], header=k != 1)
        else:
            with h5py.File(p, "w") as f:
                f["train/X"] = X0[a:b]
                f["train/y"] = y[a:b]
    return str(tmp_path / f"part-*.{fmt}"), y


@pytest.mark.parametrize("fmt", ["svm", "csv", "h5"])
def test_glob_reads_parts_as_one_dataset(world, tmp_path, fmt):
    pattern, y = _parts(tmp_path, fmt)
    s = data.load(world, pattern, group="train", binary=True)
    X = s.X.toarray() if s.sparse else s.X
    np.testing.assert_allclose(X, X0, atol=1e-12)
    np.testing.assert_array_equal(s.y, y)
    assert s.n == 12
    with pytest.raises(InputMissing, match="pattern matches no file"):
        data.load(world, str(tmp_path / "nothing-*.h5"))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("fmt", ["svm", "csv", "h5"])
def test_glob_sharded_equals_serial(world, shared_tmp, fmt):
    """Each rank reads only its rows of the parts; gathered, they are the serial rows."""
    from mpi4py import MPI

    from mpitrain.comm import World
    import pathlib
    tmp = pathlib.Path(shared_tmp) / fmt
    if world.rank == 0:
        tmp.mkdir()
        _parts(tmp, fmt)
    world.comm.Barrier()
    pattern = str(tmp / f"part-*.{fmt}")
    s = data.load(world, pattern, group="train", binary=True)
    X = s.X.toarray() if s.sparse else s.X
    rows = world.comm.allgather((s.start, X, s.y))
    serial = data.load(World(MPI.COMM_SELF), pattern, group="train", binary=True)
    Xs = serial.X.toarray() if serial.sparse else serial.X
    got = np.concatenate([r[1] for r in sorted(rows, key=lambda r: r[0])])
    np.testing.assert_array_equal(got, Xs)
    np.testing.assert_array_equal(np.concatenate([r[2] for r in sorted(rows, key=lambda r:
                                                                        r[0])]), serial.y)
    assert s.n == 12 and s.rows > 0


def test_strings_classes_agree_across_shards(world, tmp_path):
    """Class indices come from the sorted names over every shard (serially: all rows)."""
    p = _csv(tmp_path / "g.csv", X0, NAMES)
    s = data.load(world, p)
    assert s.classes == sorted(set(NAMES))


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "mpitrain"] + args, cwd=cwd, timeout=120,
                          capture_output=True, text=True)


@pytest.mark.e2e
def test_paths_relative_to_job_file(tmp_path):
    """train = "d.csv" beside the job file works from another working directory; the run's
    job.toml records the resolved path; a missing file names the resolved path."""
    from util import write_job
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    y = np.where(X0 @ [1.0, -1.0, 0.5] > 0, "yes", "no")
    _csv(jobs / "d.csv", np.tile(X0, (5, 1)), np.tile(y, 5))
    job = write_job(str(jobs / "j.toml"), {
        "job": {"algorithm": "lbfgs", "out": str(tmp_path / "run")},
        "data": {"train": "d.csv", "label_column": "kind"},
        "solver": {"max_iter": 3}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = _run(["run", job], cwd=str(elsewhere))
    assert p.returncode == 0, p.stderr
    recorded = open(tmp_path / "run" / "job.toml").read()
    assert f'train = "{jobs / "d.csv"}"' in recorded
    write_job(job, {"job": {"algorithm": "lbfgs", "out": str(tmp_path / "run2")},
                    "data": {"train": "nope.csv"}})
    p = _run(["run", job], cwd=str(elsewhere))
    assert p.returncode == 66, p.stderr
    assert str(jobs / "nope.csv") in p.stderr and "Traceback" not in p.stderr


@pytest.mark.e2e
def test_describe_every_format_and_synth_says_what_it_writes(tmp_path):
    y = np.where(X0[:, 0] > 0, 1.0, -1.0)
    files = [_csv(tmp_path / "a.csv", X0, NAMES)]
    np.save(tmp_path / "a.npy", np.column_stack([y, X0]))
    np.savez(tmp_path / "a.npz", X=X0, y=y)
    (tmp_path / "a.svm").write_text("1 1:0.5 3:1\n-1 2:2\n")
    files += [str(tmp_path / f"a.{e}") for e in ("npy", "npz", "svm")]
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "root.h5", "w") as f:  # no train/test groups: the root
        f["X"], f["y"] = X0, y
    files.append(str(tmp_path / "root.h5"))
    (tmp_path / "fake.h5").write_text("not hdf5")
    p = _run(["data", "describe", str(tmp_path / "fake.h5")], cwd=str(tmp_path))
    assert p.returncode == 65 and "not a readable HDF5 file" in p.stderr
    assert "Traceback" not in p.stderr
    for f in files:
        p = _run(["data", "describe", f], cwd=str(tmp_path))
        assert p.returncode == 0 and "Traceback" not in p.stderr, (f, p.stderr)
        assert "labels {" in p.stdout, p.stdout
    p = _run(["data", "describe", files[0]], cwd=str(tmp_path))
    assert "eggs:" in p.stdout and "dense 12x3" in p.stdout
    p = _run(["data", "describe", str(tmp_path / "missing.svm")], cwd=str(tmp_path))
    assert p.returncode == 66 and str(tmp_path / "missing.svm") in p.stderr
    p = _run(["data", "synth", str(tmp_path / "s.h5"), "--n", "1000", "--d", "50", "--nnz",
              "5"], cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "900 training rows (group train) + 100 test rows (group test) = 1000 rows" \
        in p.stdout
    assert glob.glob(str(tmp_path / "s.h5*")) == [str(tmp_path / "s.h5")]
    assert os.path.getsize(tmp_path / "s.h5") > 0


def test_glob_error_names_the_part_and_its_line(world, tmp_path):
    pattern, _ = _parts(tmp_path, "svm")
    part = tmp_path / "part-2.svm"
    lines = part.read_text().splitlines()
    lines[3] = "1 1:oops"
    part.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"part-2\.svm: line 4: "):
        data.load(world, pattern, binary=True)


@pytest.mark.mpi(min_size=2)
def test_glob_error_names_the_part_and_its_line_mpi(world, tmp_path):
    """The same at P ≥ 2 (each rank writes identical parts in its own tmp_path): the line
    number is counted within the part, over the ranks' byte ranges."""
    test_glob_error_names_the_part_and_its_line(world, tmp_path)
