"""mpitrain.fileio: the atomic writer and the line log, including write failures
(RLIMIT_FSIZE: EFBIG in the middle of a write, a missing directory)."""
import contextlib
import os
import resource

import numpy as np
import pytest

from mpitrain import fileio
from mpitrain.errors import OutputError

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def fsize_limit(nbytes):
    """Lower this process's RLIMIT_FSIZE soft limit for the block (Python ignores SIGXFSZ, so
    writes past it fail with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _leftovers(directory):
    return sorted(p for p in os.listdir(directory) if ".tmp" in p)


def test_atomic_write_bytes_str_and_memoryview(tmp_path):
    p = tmp_path / "a.bin"
    fileio.atomic_write(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    fileio.atomic_write(p, "héllo\n")
    assert p.read_text(encoding="utf-8") == "héllo\n"
    fileio.atomic_write(p, memoryview(bytearray(b"xyz" * 1000)))
    assert p.read_bytes() == b"xyz" * 1000
    assert _leftovers(tmp_path) == []


def test_failure_keeps_old_file_and_removes_temporary(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old\n")
    with fsize_limit(4096):
        with pytest.raises(OutputError) as e:
            fileio.atomic_write(p, b"x" * 100000, what="the thing")
    msg = str(e.value)
    assert str(p) in msg and "the thing" in msg and "\n" not in msg
    assert e.value.code == 73
    assert p.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_midway_hook_and_exception_in_body(tmp_path):
    p = tmp_path / "g.bin"
    p.write_bytes(b"old")
    seen = []

    def midway():
        seen.append(os.path.getsize(fileio.tmp_name(p)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(p, b"0123456789", midway=midway)
    assert seen == [5]
    assert p.read_bytes() == b"old" and _leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with fileio.atomic_open(p, "w") as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_missing_directory_is_output_error_or_created(tmp_path):
    p = tmp_path / "no" / "such" / "f.txt"
    with pytest.raises(OutputError, match="No such file"):
        fileio.atomic_write(p, "x")
    fileio.atomic_write(p, "x", makedirs=True)
    assert p.read_text() == "x"


def test_write_h5_roundtrip_and_full(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "m.h5"
    w = np.arange(5000, dtype=np.float64)

    def fill(f):
        f.create_dataset("w", data=w)
        f.attrs["k"] = 3

    fileio.write_h5(p, fill)
    with h5py.File(p, "r") as f:
        assert np.array_equal(f["w"][...], w) and f.attrs["k"] == 3
    with fsize_limit(8192):
        with pytest.raises(OutputError):
            fileio.write_h5(tmp_path / "n.h5", fill)
    assert not (tmp_path / "n.h5").exists() and _leftovers(tmp_path) == []


def test_line_log_append_fresh_keep_and_failure(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with fileio.LineLog(p, fresh=True) as log:
        log.append('{"step": 1}')
        log.append('{"step": 2}\n')
    assert p.read_text() == '{"step": 1}\n{"step": 2}\n'
    fileio.append_line(p, "three")
    assert p.read_text().splitlines()[-1] == "three"
    log = fileio.LineLog(p, keep=['{"step": 1}\n'])
    assert p.read_text() == '{"step": 1}\n'
    size = p.stat().st_size
    with fsize_limit(size + 10):
        with pytest.raises(OutputError) as e:
            log.append("y" * 100)
    assert str(p) in str(e.value)
    # the partial line was cut away: the log holds whole lines only
    assert p.read_text() == '{"step": 1}\n'
    log.close()
    assert _leftovers(tmp_path) == []


# -- the program's outputs, end to end --------------------------------------------------------
def _cli(args, nranks=1, preexec_fn=None, timeout=120):
    from test_faults import run
    p, _ = run(args, nranks, preexec_fn=preexec_fn, timeout=timeout)
    return p


def _fsize(nbytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


# A launcher that makes the whole-file write of one named file fail as a full disk would:
# the temporary is half written, then ENOSPC (fileio's own clean-up and error path run).
FAIL_WRITE = """\
import contextlib, errno, os, sys
from mpitrain import fileio
_orig = fileio._replacing
@contextlib.contextmanager
def _failing(path, what=None, makedirs=False):
    with _orig(path, what, makedirs) as tmp:
        if os.path.basename(os.fspath(path)) == os.environ["FAIL_WRITE"]:
            with open(tmp, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        yield tmp
fileio._replacing = _failing
from mpitrain.cli import main
sys.exit(main())
"""


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name,nranks", [("job.toml", 1), ("metrics.jsonl", 1),
                                         ("final.h5", 1), ("summary.json", 1),
                                         ("metrics.jsonl", 2), ("summary.json", 2)])
def test_run_output_write_failure(name, nranks, tmp_path):
    """A run-directory file whose write fails (ENOSPC half-way) ends the job with exit 73 and
    one line naming it, at every P; no temporary file is left behind."""
    import subprocess
    import sys

    from test_faults import CASES, make_dense, one_line_error
    from util import env, mpiexec, write_job
    data = make_dense(str(tmp_path / "dense.h5"))
    out = tmp_path / "run"
    job = write_job(str(tmp_path / "job.toml"), CASES[0].build(data, str(out)))
    launcher = tmp_path / "launch.py"
    launcher.write_text(FAIL_WRITE)
    cmd = [sys.executable, str(launcher), "run", job, "--set", "solver.max_iter=3"]
    if nranks > 1:
        cmd = [mpiexec(), "-n", str(nranks)] + cmd
    p = subprocess.run(cmd, env=env(FAIL_WRITE=name), capture_output=True, text=True,
                       timeout=100)
    assert p.returncode == 73, p.stderr
    line = one_line_error(p.stderr, "cannot write output")
    assert str(out / name) in line and "No space left" in line, line
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    assert not (out / name).exists()


def _svm(tmp_path, rows=2000, name="a.svm", label=1):
    path = tmp_path / name
    path.write_text("".join(f"{label if i % 2 else -label} 1:{i % 7}.5 3:1 {5 + i % 9}:0.25\n"
                            for i in range(rows)))
    return str(path)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", ["convert", "synth", "prepare"])
def test_data_outputs_file_size_limit(verb, tmp_path):
    """`data convert`/`synth`/`prepare` past RLIMIT_FSIZE: exit 73, one line, no crash,
    nothing left."""
    from test_faults import one_line_error
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    if verb == "prepare":
        pytest.importorskip("sklearn")
    args = {"convert": ["data", "convert", _svm(tmp_path, 20000), str(out)],
            "synth": ["data", "synth", str(out), "--n", "20000", "--d", "5000", "--nnz", "20"],
            "prepare": ["data", "prepare", "digits", str(out)]}[verb]
    p = _cli(args, preexec_fn=_fsize(300000))
    assert p.returncode == 73, p.stderr
    line = one_line_error(p.stderr, "cannot write output")
    assert str(out) in line and ("limit" in line or "too large" in line), line
    assert os.listdir(out.parent) == []


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_data_outputs_full_disk(tmp_path):
    """On a 1 MiB tmpfs (skipped where one cannot be mounted): synth and convert refuse with
    exit 73 and one line before HDF5 writes anything (no SIGSEGV/SIGBUS), nothing left."""
    from test_faults import _mount_tmpfs, _umount, one_line_error
    mnt = str(tmp_path / "mnt")
    _mount_tmpfs(mnt, "1m")
    try:
        for args in (["data", "synth", os.path.join(mnt, "s.h5"), "--n", "20000", "--d",
                      "5000", "--nnz", "20"],
                     ["data", "convert", _svm(tmp_path, 60000), os.path.join(mnt, "c.h5")]):
            p = _cli(args)
            assert p.returncode == 73, p.stderr
            line = one_line_error(p.stderr, "cannot write output")
            assert "No space left" in line, line
            assert os.listdir(mnt) == []
    finally:
        _umount(mnt)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_convert_adds_group_and_refuses_to_overwrite(tmp_path):
    h5py = pytest.importorskip("h5py")
    from test_faults import one_line_error
    out = str(tmp_path / "d.h5")
    assert _cli(["data", "convert", _svm(tmp_path, 50), out]).returncode == 0
    with h5py.File(out, "r") as f:
        train = {k: f["train"][k][()] for k in f["train"]}
    p = _cli(["data", "convert", _svm(tmp_path, 30, "t.svm"), out, "--group", "test"])
    assert p.returncode == 0, p.stderr
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["test", "train"]
        assert all(np.array_equal(f["train"][k][()], v) for k, v in train.items())
        assert f["test"]["y"].shape == (30,)
    p = _cli(["data", "convert", _svm(tmp_path, 10, "u.svm", label=2), out, "--group", "test"])
    assert p.returncode == 64, p.stderr
    line = one_line_error(p.stderr, "usage error")
    assert "--overwrite" in line and "'test'" in line
    p = _cli(["data", "convert", _svm(tmp_path, 10, "u.svm", label=2), out, "--group", "test",
              "--overwrite"])
    assert p.returncode == 0, p.stderr
    with h5py.File(out, "r") as f:
        assert f["test"]["y"].shape == (10,) and set(f["test"]["y"][()]) == {-2.0, 2.0}
        assert all(np.array_equal(f["train"][k][()], v) for k, v in train.items())
    not_h5 = tmp_path / "plain.h5"
    not_h5.write_text("hello")
    p = _cli(["data", "convert", _svm(tmp_path, 10), str(not_h5)])
    assert p.returncode == 64 and "--overwrite" in p.stderr
    assert not_h5.read_text() == "hello"
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
