"""Checkpoints: atomic, checksummed, K kept, damaged files skipped, resharding by row."""
import os

import h5py
import numpy as np
import pytest

from mpitrain import checkpoint
from mpitrain.comm import World, block_range
from mpitrain.errors import CheckpointError


def _save(world, d, step, extra=None, keep=3):
    state = {"w": np.arange(5.0) * step, "it": np.int64(step), "rng": '{"a": 1}',
             "Z": checkpoint.Sharded(np.arange(12.0).reshape(6, 2) + step, 0, 6)}
    state.update(extra or {})
    return checkpoint.save(world, d, step, state, {"algorithm": "x", "job_hash": "h"}, keep)


def test_save_load_keep_and_latest(tmp_path):
    world = World()
    d = str(tmp_path / "ck")
    for step in (1, 2, 3, 4):
        _save(world, d, step, keep=2)
    files = checkpoint.candidates(d)
    assert [os.path.basename(f) for f in files] == ["ckpt-000000004.h5", "ckpt-000000003.h5"]
    assert open(os.path.join(d, "latest")).read().strip() == "ckpt-000000004.h5"
    path, man = checkpoint.find(d, "auto")
    assert path == files[0] and man["step"] == 4 and man["world_size"] == 1
    r = checkpoint.Reader(path, man)
    np.testing.assert_array_equal(r.get("w"), np.arange(5.0) * 4)
    assert r.get("it") == 4 and r.get("rng") == '{"a": 1}'
    # resharding: another P reads another row slice of the same global array
    for P in (2, 3):
        parts = [r.rows("Z", *block_range(6, P, p)) for p in range(P)]
        np.testing.assert_array_equal(np.vstack(parts), np.arange(12.0).reshape(6, 2) + 4)
    r.close()


def test_damaged_checkpoints_are_skipped(tmp_path, capsys):
    world = World()
    d = str(tmp_path / "ck")
    _save(world, d, 1)
    _save(world, d, 2)
    p3 = _save(world, d, 3)
    with open(p3, "r+b") as fh:  # truncate the newest
        fh.truncate(os.path.getsize(p3) // 2)
    p2 = os.path.join(d, "ckpt-000000002.h5")
    with h5py.File(p2, "r+") as f:  # flip data in the second newest: CRC catches it
        f["state/w"][0] = 123.0
    path, man = checkpoint.find(d, "auto")
    assert path.endswith("ckpt-000000001.h5") and man["step"] == 1
    err = capsys.readouterr().err
    assert "ckpt-000000003.h5" in err and "checksum" in err
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.find(d, p3)


def test_incomplete_and_future_versions_refused(tmp_path):
    world = World()
    d = str(tmp_path / "ck")
    p = _save(world, d, 1)
    with h5py.File(p, "r+") as f:
        f["manifest"].attrs["format_version"] = 99
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.verify(p)
    with h5py.File(p, "r+") as f:
        f["manifest"].attrs["format_version"] = checkpoint.FORMAT_VERSION
        f.attrs["complete"] = 0
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.verify(p)


def test_write_failure_leaves_earlier_checkpoints(tmp_path):
    from mpitrain.errors import OutputError
    world = World()
    d = str(tmp_path / "ck")
    _save(world, d, 1)
    os.chmod(d, 0o500)
    try:
        if os.access(d, os.W_OK):  # root ignores permissions: use a path under a file
            with pytest.raises(OutputError):
                _save(world, os.path.join(d, "ckpt-000000001.h5", "sub"), 2)
        else:
            with pytest.raises(OutputError, match="earlier checkpoints are intact"):
                _save(world, d, 2)
    finally:
        os.chmod(d, 0o700)
    assert checkpoint.find(d, "auto")[1]["step"] == 1
