"""HDF5 checkpoints: complete state, atomic writes, safe resume.

What is saved is the algorithm's business (`Algorithm.state()`); when it is saved is the
driver's. A state is a flat dict name → value, where value is
- a numpy array or scalar, identical on every rank (written once, by rank 0);
- a string (e.g. an RNG state as JSON);
- `Sharded(local_rows, start, total)`: rows [start, start+len) of a global array that is
  split over the ranks (ParMAC's coordinates Z, per-row state). It is gathered to rank 0 and
  stored as ONE global dataset by global row, so a resume at another P reads other slices.

File layout: /state/<name> datasets (attribute `sharded` on row-split ones), attributes of
/manifest (format version, algorithm, job hash, world size, step, versions, time), a CRC32
of every dataset, and `complete = 1` written last. A write goes to a temporary name, is
fsync'ed, renamed, the directory fsync'ed, and then the `latest` pointer file is replaced the
same way; the newest K checkpoints are kept. A crash at any moment leaves the earlier
checkpoints intact, and `--resume auto` skips a file that is incomplete or fails its CRC.
"""
import glob
import io
import json
import os
import time
import zlib

import numpy as np

from . import __version__
from .errors import CheckpointError, InputMissing, OutputError
from .runtime import collectively, fault_point

FORMAT_VERSION = 1
PATTERN = "ckpt-{step:09d}.h5"


class Sharded:
    """Rows [start, start + len(local)) of a global array with `total` rows."""

    def __init__(self, local, start, total):
        self.local = np.ascontiguousarray(local)
        self.start = int(start)
        self.total = int(total)


def _crc(arr):
    a = np.ascontiguousarray(arr)
    return zlib.crc32(a.view(np.uint8).reshape(-1)) if a.size else 0


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _gather_sharded(world, value, name):
    counts = np.array(world.comm.allgather(value.local.shape[0]), dtype=np.int64)
    starts = np.array(world.comm.allgather(value.start), dtype=np.int64)
    if world.rank == 0 and (int(counts.sum()) != value.total
                            or np.any(starts != np.concatenate([[0], np.cumsum(counts)[:-1]]))):
        raise RuntimeError(f"checkpoint: sharded state {name!r} is not a row partition")
    return world.gather_rows(value.local, counts)


def save(world, ckdir, step, state, manifest, keep=3):
    """Write checkpoint `step` (collective: every rank calls it). Returns the path on rank 0."""
    gathered = {}
    for name in sorted(state):
        value = state[name]
        if isinstance(value, Sharded):
            gathered[name] = (_gather_sharded(world, value, name), True)
        else:
            gathered[name] = (value, False)

    def write():
        if world.rank != 0:
            return None
        import h5py
        final = os.path.join(ckdir, PATTERN.format(step=step))
        tmp = final + f".tmp{os.getpid()}"
        try:
            os.makedirs(ckdir, exist_ok=True)
            # The HDF5 file is built in memory and written with plain file I/O: HDF5 writing
            # straight to a disk that fills up (ENOSPC/EFBIG) can crash the process.
            image = io.BytesIO()
            with h5py.File(image, "w", locking=False) as f:
                m = f.create_group("manifest")
                full = dict(manifest, step=int(step), format_version=FORMAT_VERSION,
                            mpitrain_version=__version__, world_size=world.size,
                            time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                for k, v in full.items():
                    m.attrs[k] = v
                g = f.create_group("state")
                crcs = {}
                for name, (value, sharded) in gathered.items():
                    if isinstance(value, str):
                        g.attrs["str:" + name] = value
                        continue
                    ds = g.create_dataset(name, data=np.asarray(value))
                    if sharded:
                        ds.attrs["sharded"] = 1
                    crcs[name] = _crc(np.asarray(value))
                m.attrs["crc32"] = json.dumps(crcs, sort_keys=True)
                f.attrs["complete"] = 1
            data = image.getbuffer()
            with open(tmp, "wb") as fh:
                fh.write(data[:len(data) // 2])
                fh.flush()
                fault_point("ckpt", world.rank, step)
                fh.write(data[len(data) // 2:])
                fh.flush()
                os.fsync(fh.fileno())
            del data
            os.replace(tmp, final)
            _fsync_dir(ckdir)
            _write_latest(ckdir, os.path.basename(final))
            _prune(ckdir, keep)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise OutputError(f"{ckdir}: cannot write checkpoint {step}: "
                              f"{exc.strerror or exc}; earlier checkpoints are intact")
        return final

    return collectively(world, write)


def _write_latest(ckdir, name):
    tmp = os.path.join(ckdir, f".latest.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(ckdir, "latest"))
    _fsync_dir(ckdir)


def _prune(ckdir, keep):
    files = sorted(glob.glob(os.path.join(ckdir, "ckpt-*.h5")))
    for old in files[:-keep] if keep > 0 else []:
        try:
            os.unlink(old)
        except OSError:
            pass
    for stale in glob.glob(os.path.join(ckdir, "ckpt-*.h5.tmp*")):
        try:  # half-written files of a crashed run
            os.unlink(stale)
        except OSError:
            pass


def verify(path):
    """Open a checkpoint and check it is complete and intact; returns its manifest dict or
    raises CheckpointError saying what is wrong."""
    import h5py
    try:
        f = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{exc})")
    with f:
        if f.attrs.get("complete", 0) != 1 or "manifest" not in f or "state" not in f:
            raise CheckpointError(f"{path}: incomplete checkpoint (the write did not finish)")
        manifest = {k: _plain(v) for k, v in f["manifest"].attrs.items()}
        version = int(manifest.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}; this mpitrain "
                                  f"({__version__}) reads version {FORMAT_VERSION} only")
        try:
            crcs = json.loads(manifest.get("crc32", "{}"))
            for name, crc in crcs.items():
                if _crc(f["state"][name][()]) != crc:
                    raise CheckpointError(f"{path}: dataset state/{name} fails its checksum "
                                          "(corrupt file)")
        except (OSError, KeyError) as exc:
            raise CheckpointError(f"{path}: corrupt checkpoint ({exc})")
    return manifest


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def candidates(ckdir):
    """Checkpoint files of a run directory, newest first."""
    return sorted(glob.glob(os.path.join(ckdir, "ckpt-*.h5")), reverse=True)


def find(ckdir, resume):
    """Rank-0 helper: (path, manifest) for --resume auto|PATH, or (None, None) when auto finds
    nothing. `auto` skips damaged files (and says so on stderr)."""
    import sys
    if resume != "auto":
        if not os.path.exists(resume):
            raise InputMissing(f"{resume}: checkpoint not found")
        return resume, verify(resume)
    for path in candidates(ckdir):
        try:
            return path, verify(path)
        except CheckpointError as exc:
            sys.stderr.write(f"mpitrain: skipping damaged checkpoint: {exc}\n")
    return None, None


class Reader:
    """Read access to a checkpoint's state on every rank (replicated or a row slice)."""

    def __init__(self, path, manifest):
        import h5py
        self.path = path
        self.manifest = manifest
        self._f = h5py.File(path, "r", locking=False)
        self._g = self._f["state"]

    def close(self):
        self._f.close()

    def __contains__(self, name):
        return name in self._g or ("str:" + name) in self._g.attrs

    def get(self, name):
        if ("str:" + name) in self._g.attrs:
            return _plain(self._g.attrs["str:" + name])
        if name not in self._g:
            raise CheckpointError(f"{self.path}: state/{name} is missing")
        value = self._g[name][()]
        return value.item() if isinstance(value, np.generic) else value

    def rows(self, name, start, stop):
        """Rows [start, stop) of a sharded dataset (this rank's part at the current P)."""
        ds = self._g[name]
        if stop > ds.shape[0]:
            raise CheckpointError(f"{self.path}: state/{name} has {ds.shape[0]} rows, need "
                                  f"{stop}")
        return np.ascontiguousarray(ds[start:stop])


def describe(path):
    """Human-readable summary of a checkpoint or a final model file (for `mpitrain inspect`)."""
    import h5py
    lines = [path]
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({exc})")
    with f:
        lines.append(f"  complete: {bool(f.attrs.get('complete', 0))}")
        if "manifest" in f:
            lines.append("  manifest:")
            for k, v in sorted(f["manifest"].attrs.items()):
                if k == "crc32":
                    continue
                lines.append(f"    {k}: {_plain(v)}")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()] if obj.size <= 1 else None
                extra = f" = {a}" if a is not None else ""
                if obj.size > 1 and obj.dtype.kind in "fi":
                    arr = obj[()]
                    extra = (f"  min {arr.min():.4g} max {arr.max():.4g} "
                             f"norm {np.linalg.norm(arr.astype(np.float64)):.6g}")
                shard = " (sharded by row)" if obj.attrs.get("sharded") else ""
                lines.append(f"  {name}: {obj.dtype} {obj.shape}{shard}{extra}")
            for k, v in obj.attrs.items():
                if isinstance(k, str) and k.startswith("str:"):
                    lines.append(f"  {name}/{k[4:]}: str ({len(str(_plain(v)))} chars)")
        f.visititems(visit)
    return "\n".join(lines)
