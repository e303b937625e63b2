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
