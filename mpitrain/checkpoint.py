"""HDF5 checkpoints: a declared state, written atomically, verified whole, chosen by content.

What is saved is the algorithm's declaration (mpitrain/state.py); when it is saved is the
driver's. `save` takes a flat dict name → value, where value is
- a numpy array or scalar, identical on every rank (written once, by rank 0);
- a string (an RNG state as JSON, a phase name, a stop reason);
- `Sharded(local_rows, start, total)`: rows [start, start+len) of a global array split over
  the ranks (ParMAC's codes Z). Gathered to rank 0 and stored as ONE dataset by global row,
  so a resume at another P reads other slices;
- `OwnedValue(array, rank)`: an array held by one rank (SLP's per-layer momenta), sent to
  rank 0.

File layout: an HDF5 file with a 512-byte user block in front. The user block holds
"MPITRAIN-CHECKPOINT 2", the length of the HDF5 part and its SHA-256, then zeros. The HDF5
part holds /state/<name> (datasets; strings as attributes str:<name>; attribute `sharded` on
row-split datasets) and the attributes of /manifest (format version, algorithm, job hash,
world size, step, versions, time). The digest covers every byte after the user block, so a
flipped bit anywhere (data, strings, manifest, HDF5 metadata) is detected, and a flipped bit
in the user block breaks its own text or its zero padding: no bit of a checkpoint can change
unnoticed.

A write goes through fileio.atomic_write (temporary name, fsync, rename, directory fsync), is
read back and verified, and only then are older checkpoints pruned. Pruning and
`--resume auto` look only at files named ckpt-<9 digits>.h5 whose content verifies, belongs
to this job (algorithm and job hash) and states the step its name says: a user's copy
(ckpt-backup.h5), another job's file or a damaged leftover is never picked and never counts
towards `keep`, and it is never deleted.
"""
import hashlib
import io
import os
import re
import sys
import time

import numpy as np

from . import __version__, fileio
from .errors import CheckpointError, InputMissing, OutputError
from .runtime import collectively, fault_point
from .state import OwnedValue, Sharded  # noqa: F401  (Sharded: the dict value of a Rows field)

FORMAT_VERSION = 2
PATTERN = "ckpt-{step:09d}.h5"
NAME_RE = re.compile(r"^ckpt-(\d{9})\.h5$")
USERBLOCK = 512
MAGIC = b"MPITRAIN-CHECKPOINT 2\n"


def _gather_sharded(world, value, name):
    counts = np.array(world.gather_obj(value.local.shape[0]), dtype=np.int64)
    starts = np.array(world.gather_obj(value.start), dtype=np.int64)
    if world.rank == 0 and (int(counts.sum()) != value.total
                            or np.any(starts != np.concatenate([[0], np.cumsum(counts)[:-1]]))):
        raise RuntimeError(f"checkpoint: sharded state {name!r} is not a row partition")
    return world.gather_rows(value.local, counts)


def _gather_owned(world, value, name):
    """Rank `value.rank`'s array, on rank 0 (None elsewhere). One Gatherv in which only the
    owner contributes rows; the shape and dtype travel first."""
    meta = world.bcast_obj(None if value.value is None else
                           (np.asarray(value.value).shape, np.asarray(value.value).dtype.str),
                           root=value.rank)
    if meta is None:
        return None
    shape, dtype = meta
    if world.rank == value.rank:
        local = np.ascontiguousarray(value.value).reshape((1, -1))
    else:
        local = np.zeros((0, int(np.prod(shape))), dtype=np.dtype(dtype))
    counts = np.zeros(world.size, dtype=np.int64)
    counts[value.rank] = 1
    out = world.gather_rows(local, counts)
    return None if out is None else out.reshape(shape)


def _image(world, step, gathered, manifest):
    """The checkpoint file as bytes (user block with the digest + HDF5)."""
    import h5py

    def fill(f):
        m = f.create_group("manifest")
        full = dict(manifest, step=int(step), format_version=FORMAT_VERSION,
                    mpitrain_version=__version__, world_size=world.size,
                    time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        for k, v in full.items():
            m.attrs[k] = v
        g = f.create_group("state")
        for name, (value, sharded) in gathered.items():
            if isinstance(value, str):
                g.attrs["str:" + name] = value
                continue
            ds = g.create_dataset(name, data=np.asarray(value))
            if sharded:
                ds.attrs["sharded"] = 1
        f.attrs["complete"] = 1

    buf = io.BytesIO()
    with h5py.File(buf, "w", locking=False, userblock_size=USERBLOCK) as f:
        fill(f)
    data = bytearray(buf.getbuffer())
    body = memoryview(data)[USERBLOCK:]
    head = MAGIC + f"length {len(body)}\nsha256 {hashlib.sha256(body).hexdigest()}\n".encode()
    data[:USERBLOCK] = head.ljust(USERBLOCK, b"\0")
    return data


def save(world, ckdir, step, state, manifest, keep=3):
    """Write checkpoint `step` (collective: every rank calls it). Returns the path on rank 0.

    The new file is read back and verified before any older checkpoint is pruned."""
    gathered = {}
    for name in sorted(state):
        value = state[name]
        if isinstance(value, Sharded):
            gathered[name] = (_gather_sharded(world, value, name), True)
        elif isinstance(value, OwnedValue):
            arr = _gather_owned(world, value, name)
            if arr is not None:
                gathered[name] = (arr, False)
        else:
            gathered[name] = (value, False)

    def write():
        if world.rank != 0:
            return None
        final = os.path.join(ckdir, PATTERN.format(step=step))
        data = _image(world, step, gathered, manifest)
        fileio.atomic_write(final, data, what=f"checkpoint {step} (earlier checkpoints are "
                            "intact)", makedirs=True,
                            midway=lambda: fault_point("ckpt", world.rank, step))
        try:
            verify(final, want=manifest)
        except CheckpointError as exc:
            raise OutputError(f"{final}: the checkpoint just written does not read back "
                              f"intact ({exc.message}); earlier checkpoints are kept")
        _prune(ckdir, keep, manifest)
        return final

    return collectively(world, write)


def _digest_ok(path):
    """Check the user block and the SHA-256 of everything after it; raise CheckpointError."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputMissing(f"{path}: checkpoint not found")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})")
    with fh:
        head = fh.read(USERBLOCK)
        if len(head) < USERBLOCK or not head.startswith(MAGIC):
            if head[:8] == b"\x89HDF\r\n\x1a\n":
                raise CheckpointError(f"{path}: checkpoint format version 1 (an older mpitrain);"
                                      f" this mpitrain ({__version__}) reads version "
                                      f"{FORMAT_VERSION} only")
            raise CheckpointError(f"{path}: not an mpitrain checkpoint, or its header is "
                                  "damaged")
        try:
            text, pad = head.split(b"\0", 1)[0], head[head.index(b"\0"):]
            lines = text[len(MAGIC):].decode("ascii").split("\n")
            length = int(lines[0].split(" ")[1])
            want = lines[1].split(" ")[1]
            if lines[0].split(" ")[0] != "length" or lines[1].split(" ")[0] != "sha256" \
                    or len(want) != 64 or lines[2:] != [""] or pad.strip(b"\0"):
                raise ValueError("layout")
        except (ValueError, IndexError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: checkpoint header is damaged")
        h = hashlib.sha256()
        got = 0
        while True:
            chunk = fh.read(1 << 24)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
    if got != length:
        raise CheckpointError(f"{path}: truncated or extended checkpoint ({got} bytes after the"
                              f" header, {length} written)")
    if h.hexdigest() != want:
        raise CheckpointError(f"{path}: checkpoint fails its SHA-256 (corrupt file)")


def verify(path, want=None):
    """Check a checkpoint is complete and intact; returns its manifest dict or raises
    CheckpointError saying what is wrong. With `want` (a manifest with algorithm and
    job_hash), a checkpoint of another job is refused too."""
    import h5py
    _digest_ok(path)
    try:
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("complete", 0) != 1 or "manifest" not in f or "state" not in f:
                raise CheckpointError(f"{path}: incomplete checkpoint")
            manifest = {k: _plain(v) for k, v in f["manifest"].attrs.items()}
    except CheckpointError:
        raise
    except Exception as exc:  # h5py can raise many types on a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})")
    version = manifest.get("format_version", -1)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}; this mpitrain "
                              f"({__version__}) reads version {FORMAT_VERSION} only")
    if want is not None:
        _same_job(path, manifest, want)
    return manifest


def _same_job(path, manifest, want):
    """Refuse a checkpoint of another job, saying what to do. want["explain"] (optional): the
    checkpoint's job hash → what this job lacks to be its job, or None (driver._resume)."""
    advice = "resume it with its own job file, or start this job with --fresh"
    if manifest.get("algorithm") != want.get("algorithm"):
        raise CheckpointError(f"{path}: checkpoint of algorithm {manifest.get('algorithm')!r}, "
                              f"not {want.get('algorithm')!r}: it belongs to another job; "
                              + advice)
    if manifest.get("job_hash") != want.get("job_hash"):
        hint = want["explain"](manifest.get("job_hash")) if "explain" in want else None
        raise CheckpointError(f"{path}: checkpoint of another job (job hash "
                              f"{manifest.get('job_hash')}, this job {want.get('job_hash')}): "
                              + (f"{hint} to resume it, or start this job with --fresh" if hint
                                 else "the data, model or solver settings differ; " + advice))


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def candidates(ckdir):
    """Files of a run directory named like checkpoints (ckpt-<9 digits>.h5), any content."""
    try:
        names = os.listdir(ckdir)
    except OSError:
        return []
    return sorted(os.path.join(ckdir, n) for n in names if NAME_RE.match(n))


def scan(ckdir, want, say=None, foreign=None):
    """[(step, path, manifest)] of the verified checkpoints of this job in `ckdir`, highest
    step first. Files that fail (damaged, another job, a name that disagrees with the step
    inside) are reported through `say` and left alone; intact checkpoints of another job are
    appended to the list `foreign` (their messages) instead."""
    found = []
    for path in candidates(ckdir):
        try:
            manifest = verify(path)
            step = int(manifest.get("step", -1))
            if step != int(NAME_RE.match(os.path.basename(path)).group(1)):
                raise CheckpointError(f"{path}: holds step {step}, not the step its name "
                                      "says (renamed by hand?)")
        except (CheckpointError, InputMissing) as exc:
            if say is not None:
                say(exc.message)
            continue
        try:
            _same_job(path, manifest, want)
        except CheckpointError as exc:
            if foreign is not None:
                foreign.append(exc.message)
            continue
        found.append((step, path, manifest))
    found.sort(key=lambda t: t[0], reverse=True)
    return found


def _prune(ckdir, keep, want):
    """Keep the newest `keep` verified checkpoints of this job; delete older ones of this job
    only, and temporary files of crashed writes (ckpt-*.h5.tmp<pid>)."""
    if keep > 0:
        for _, old, _ in scan(ckdir, want)[keep:]:
            try:
                os.unlink(old)
            except OSError:
                pass
    try:
        names = os.listdir(ckdir)
    except OSError:
        names = []
    for n in names:
        if re.match(r"^ckpt-\d{9}\.h5\.tmp\d+$", n):
            try:
                os.unlink(os.path.join(ckdir, n))
            except OSError:
                pass


def find(ckdir, resume, want):
    """Rank-0 helper: (path, manifest) for --resume auto|PATH, or (None, None) when auto finds
    nothing. `auto` takes the highest verified step of this job and says on stderr what it
    skipped; when the directory holds intact checkpoints of another job only, it refuses
    (CheckpointError) rather than start over. An explicit PATH must verify and belong to this
    job."""
    if resume != "auto":
        if not os.path.exists(resume):
            raise InputMissing(f"{resume}: checkpoint not found")
        return resume, verify(resume, want)

    def say(msg):
        sys.stderr.write(f"mpitrain: skipping checkpoint: {msg}\n")
    foreign = []
    found = scan(ckdir, want, say, foreign)
    if not found and foreign:  # never restart silently over another job's progress
        raise CheckpointError(foreign[-1])
    if not found:
        return None, None
    if foreign:
        sys.stderr.write(f"mpitrain: note: {len(foreign)} checkpoint(s) of another job in "
                         f"{ckdir} ignored\n")
    return found[0][1], found[0][2]


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
        if name not in self._g:
            raise CheckpointError(f"{self.path}: state/{name} is missing")
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
        _digest_ok(path)
        lines.append("  integrity: SHA-256 verified")
    except CheckpointError as exc:
        lines.append(f"  integrity: {exc.message}")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({exc})")
    with f:
        lines.append(f"  complete: {bool(f.attrs.get('complete', 0))}")
        if "manifest" in f:
            lines.append("  manifest:")
            for k, v in sorted(f["manifest"].attrs.items()):
                lines.append(f"    {k}: {_plain(v)}")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()] if obj.size <= 1 else None
                extra = f" = {a}" if a is not None else ""
                if obj.size > 1 and obj.dtype.kind in "fiu":
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
