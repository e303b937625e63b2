"""Training and test data: each rank reads only its own rows.

Formats (chosen by `[data] format`, or by the file's extension when "auto"):
- HDF5 `.h5`/`.hdf5`: in group `train`/`test` when the file has it, else the root: dense
  `X` (n, d), or CSR `indptr`/`indices`/`data` with attribute `shape`; labels `y`. A rank
  reads the slice of its rows.
- LIBSVM/svmlight text: the file is split into P byte ranges aligned to line starts; a rank
  parses only its range (Cython parser) and the ranks agree on the row counts and the width.
- `.npy`: a 2-D array whose column 0 is the label and the rest the features (memory-mapped;
  a rank copies only its rows).

Rows are split in contiguous blocks (`comm.block_range`) for HDF5/npy, and by bytes for
LIBSVM, so a shard's global row range is known (`Shard.start`, `Shard.stop`).
Every problem with the data is a `DataError` (exit 65) naming the file and the line or row.
"""
import os

import numpy as np
import scipy.sparse as sp

from .comm import block_range
from .errors import DataError, InputMissing
from .runtime import collectively


class Shard:
    """One rank's rows of a dataset.

    X: scipy CSR (float64, sorted indices) or a C-contiguous ndarray; y: float64 labels;
    start/stop: global row range; n: global row count; d: number of features."""

    def __init__(self, X, y, start, stop, n, d, path):
        self.X = X
        self.y = y
        self.start = int(start)
        self.stop = int(stop)
        self.n = int(n)
        self.d = int(d)
        self.path = path
        self._XT = None

    @property
    def sparse(self):
        return sp.issparse(self.X)

    @property
    def rows(self):
        return self.stop - self.start

    @property
    def nnz(self):
        return int(self.X.nnz) if self.sparse else int(self.X.size)

    @property
    def XT(self):
        """The transpose in CSR form (built once), for deterministic Xᵀv kernels."""
        if self._XT is None and self.sparse:
            t = self.X.T.tocsr()
            t.sort_indices()
            self._XT = _csr64(t)
        return self._XT


def mem_available():
    """Bytes of memory available to new allocations on this node (Linux MemAvailable), or
    None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def densify(shard, what="train"):
    """Make a CSR shard dense in place (for algorithms that need dense rows), refusing with a
    DataError naming the sizes when the dense copy cannot fit in this node's memory."""
    if shard is None or not shard.sparse:
        return shard
    itemsize = np.dtype(shard.X.dtype).itemsize
    need = shard.rows * shard.d * itemsize
    avail = mem_available()
    if avail is not None and need > avail:
        gib = 2.0 ** 30
        raise DataError(f"{shard.path}: {what} data is CSR with {shard.d} features: the dense "
                        f"copy of this rank's {shard.rows} rows needs {need / gib:.1f} GiB > "
                        f"{avail / gib:.1f} GiB available; check [data] features, or use more "
                        "ranks or nodes")
    shard.X = np.ascontiguousarray(shard.X.toarray())
    shard._XT = None
    return shard


def dense_rows(shard, idx):
    """Rows `idx` of a shard as a dense C-contiguous array (CSR densified per call: for
    minibatches of algorithms that need dense rows)."""
    X = shard.X[idx]
    return np.ascontiguousarray(X.toarray() if sp.issparse(X) else X)


def _csr64(m):
    """CSR with int64 indptr and int32 indices (the kernels' layout)."""
    m.indptr = m.indptr.astype(np.int64, copy=False)
    m.indices = m.indices.astype(np.int32, copy=False)
    return m


def detect_format(path, fmt="auto"):
    if fmt != "auto":
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5", ".he5"):
        return "h5"
    if ext == ".npy":
        return "npy"
    return "libsvm"


def load(world, path, *, fmt="auto", group=None, features=0, zero_based=False,
         positive=(), binary=False, normalize="none", max_rows=0, dtype=np.float64,
         width_from=None, what="train"):
    """Load this rank's shard of `path` collectively (a DataError on any rank is raised on
    every rank). `binary`: labels must be ±1 (or 1/0, mapped to ±1) after `positive`.
    `width_from`: a training Shard whose width the test data must fit."""
    if not os.path.exists(path):
        err = InputMissing(f"{path}: {what} data file not found")
        collectively(world, _raise, err)
    fmt = detect_format(path, fmt)
    reader = {"h5": _read_h5, "npy": _read_npy, "libsvm": _read_libsvm}[fmt]
    if fmt == "libsvm":
        shard = reader(world, path, zero_based=zero_based, max_rows=max_rows)
    else:
        shard = collectively(world, reader, world, path, group=group, max_rows=max_rows)
    collectively(world, _finish, world, shard, features=features, positive=positive,
                 binary=binary, normalize=normalize, dtype=dtype, width_from=width_from,
                 what=what)
    return shard


def _raise(err):
    raise err


# -- HDF5 ----------------------------------------------------------------------------------
def _open_h5(path):
    import h5py
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})")


def _read_h5(world, path, group=None, max_rows=0):
    with _open_h5(path) as f:
        g = f[group] if group and group in f else f
        where = f"{path}:{g.name}"
        if "y" not in g:
            raise DataError(f"{where}: dataset 'y' (labels) is missing")
        y_ds = g["y"]
        if y_ds.ndim != 1:
            raise DataError(f"{where}/y: expected 1-D labels, got shape {y_ds.shape}")
        n = y_ds.shape[0]
        if max_rows:
            n = min(n, max_rows)
        _check_rows(n, world.size, where)
        start, stop = block_range(n, world.size, world.rank)
        if "X" in g:
            X_ds = g["X"]
            if X_ds.ndim != 2 or X_ds.shape[0] < n:
                raise DataError(f"{where}/X: shape {X_ds.shape} does not match {y_ds.shape[0]} "
                                "labels")
            d = X_ds.shape[1]
            X = np.ascontiguousarray(X_ds[start:stop])
        elif all(k in g for k in ("indptr", "indices", "data")):
            shape = g.attrs.get("shape")
            if shape is None or len(shape) != 2:
                raise DataError(f"{where}: CSR group needs attribute 'shape' = (n, d)")
            d = int(shape[1])
            indptr = g["indptr"]
            if indptr.shape[0] < n + 1 or int(shape[0]) != y_ds.shape[0]:
                raise DataError(f"{where}: indptr has {indptr.shape[0]} entries and shape is "
                                f"{tuple(shape)}, but there are {y_ds.shape[0]} labels")
            ptr = indptr[start:stop + 1].astype(np.int64)
            if np.any(np.diff(ptr) < 0):
                raise DataError(f"{where}/indptr: not monotone in rows {start}..{stop}")
            lo, hi = int(ptr[0]), int(ptr[-1])
            if hi > g["indices"].shape[0] or hi > g["data"].shape[0]:
                raise DataError(f"{where}: indptr points past the end of indices/data")
            indices = g["indices"][lo:hi].astype(np.int32)
            data = g["data"][lo:hi].astype(np.float64)
            if indices.size and (indices.min() < 0 or indices.max() >= d):
                bad = int(np.flatnonzero((indices < 0) | (indices >= d))[0])
                row = start + int(np.searchsorted(ptr, lo + bad, side="right")) - 1
                raise DataError(f"{where}: row {row}: feature index {indices[bad]} outside "
                                f"the declared width {d}")
            X = sp.csr_matrix((data, indices, ptr - lo), shape=(stop - start, d))
        else:
            raise DataError(f"{where}: needs dataset 'X' (dense) or 'indptr', 'indices', "
                            "'data' (CSR)")
        y = np.asarray(y_ds[start:stop], dtype=np.float64)
    return Shard(X, y, start, stop, n, d, where)


# -- .npy ----------------------------------------------------------------------------------
def _read_npy(world, path, group=None, max_rows=0):
    try:
        a = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})")
    if a.ndim != 2 or a.shape[1] < 2:
        raise DataError(f"{path}: expected a 2-D array (label in column 0, features after), "
                        f"got shape {a.shape}")
    n = a.shape[0] if not max_rows else min(a.shape[0], max_rows)
    _check_rows(n, world.size, path)
    start, stop = block_range(n, world.size, world.rank)
    block = np.array(a[start:stop])
    return Shard(np.ascontiguousarray(block[:, 1:]), block[:, 0].astype(np.float64), start,
                 stop, n, a.shape[1] - 1, path)


# -- LIBSVM ------------------------------------------------------------------------------
def _line_aligned_range(fh, size, size_p, rank):
    """Byte range [a, b) of rank's part: each boundary moved to the next line start."""
    def align(pos):
        if pos <= 0:
            return 0
        if pos >= size:
            return size
        fh.seek(pos - 1)
        fh.readline()
        return fh.tell()
    return align(size * rank // size_p), align(size * (rank + 1) // size_p)


def _read_libsvm(world, path, zero_based=False, max_rows=0):
    """Parse this rank's byte range; agree on rows, line numbers and width collectively."""
    from ._kernels.libsvm import ParseError, parse

    def local():
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as fh:
                a, b = _line_aligned_range(fh, size, world.size, world.rank)
                fh.seek(a)
                text = fh.read(b - a)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})")
        return text

    text = collectively(world, local)
    lines_before = world.comm.exscan(text.count(b"\n")) if world.size > 1 else 0
    lines_before = lines_before or 0

    def parse_local():
        try:
            return parse(text, zero_based)
        except ParseError as exc:
            raise DataError(f"{path}: line {lines_before + exc.line + 1}: {exc.reason}")
        except UnicodeDecodeError as exc:  # pragma: no cover - parse works on bytes
            raise DataError(f"{path}: undecodable bytes ({exc})")

    y, indptr, indices, data, max_index, _ = collectively(world, parse_local)
    counts = np.array(world.comm.allgather(len(y)), dtype=np.int64)
    n = int(counts.sum())
    start = int(counts[:world.rank].sum())
    if max_rows and n > max_rows:
        keep = max(0, min(len(y), max_rows - start))
        y, indptr = y[:keep], indptr[:keep + 1]
        indices, data = indices[:indptr[-1]], data[:indptr[-1]]
        counts = np.minimum(counts, np.maximum(0, max_rows - np.concatenate(
            [[0], np.cumsum(counts)[:-1]])))
        n = max_rows
    d = int(world.comm.allreduce(int(max_index) + 1, op=_max())) if world.size > 1 \
        else int(max_index) + 1
    collectively(world, _check_counts, counts, n, path)
    X = sp.csr_matrix((data, indices, indptr), shape=(len(y), max(d, 0)))
    return Shard(X, y, start, start + len(y), n, d, path)


def _max():
    from mpi4py import MPI
    return MPI.MAX


def _check_rows(n, size, where):
    if n == 0:
        raise DataError(f"{where}: no rows")
    if n < size:
        raise DataError(f"{where}: {n} rows cannot be split over {size} ranks (an empty "
                        "shard); use fewer ranks")


def _check_counts(counts, n, path):
    if n == 0:
        raise DataError(f"{path}: no data rows (empty file)")
    if np.any(counts == 0):
        p = int(np.flatnonzero(counts == 0)[0])
        if n < len(counts):
            raise DataError(f"{path}: {n} rows cannot be split over {len(counts)} ranks (an "
                            "empty shard); use fewer ranks")
        raise DataError(f"{path}: splitting the text by bytes left rank {p} with an empty shard"
                        f" ({n} rows of very uneven length); convert it to HDF5 with `mpitrain "
                        "data convert` (split by rows) or use fewer ranks")


# -- shared post-processing ----------------------------------------------------------------
def _finish(world, s, *, features, positive, binary, normalize, dtype, width_from, what):
    where = s.path
    if features:
        if s.d > features:
            raise DataError(f"{where}: the data has {s.d} features but [data] features = "
                            f"{features}")
        if not s.sparse and s.d != features:
            raise DataError(f"{where}: dense X has {s.d} columns but [data] features = "
                            f"{features}")
        s.d = features
    if width_from is not None:
        if s.d > width_from.d:
            raise DataError(f"{where}: {what} data has {s.d} features, more than the "
                            f"{width_from.d} of the training data (train/test width mismatch)")
        if not s.sparse and s.d != width_from.d:
            raise DataError(f"{where}: {what} data has {s.d} features but the training data "
                            f"has {width_from.d} (train/test width mismatch)")
        s.d = width_from.d
    if s.sparse:
        X = s.X
        if X.shape[1] != s.d:
            X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], s.d))
        if not X.has_sorted_indices:
            X.sort_indices()
        if X.nnz and np.any(np.diff(X.indices) == 0):
            rowsof = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
            dup = np.flatnonzero((np.diff(X.indices) == 0) & (np.diff(rowsof) == 0))
            if dup.size:
                raise DataError(f"{where}: row {s.start + int(rowsof[dup[0]])}: feature index "
                                f"{int(X.indices[dup[0]])} appears twice")
        bad = ~np.isfinite(X.data)
        if bad.any():
            row = s.start + int(np.searchsorted(X.indptr, int(np.flatnonzero(bad)[0]),
                                                side="right")) - 1
            raise DataError(f"{where}: row {row}: NaN or Inf feature value")
        s.X = _csr64(X.astype(np.float64, copy=False))
    else:
        if not np.issubdtype(s.X.dtype, np.floating) and not np.issubdtype(s.X.dtype,
                                                                           np.integer):
            raise DataError(f"{where}: X has non-numeric dtype {s.X.dtype}")
        X = np.ascontiguousarray(s.X, dtype=dtype)
        finite = np.isfinite(X).all(axis=1)
        if not finite.all():
            raise DataError(f"{where}: row {s.start + int(np.flatnonzero(~finite)[0])}: NaN or "
                            "Inf feature value")
        s.X = X
    if not np.isfinite(s.y).all():
        raise DataError(f"{where}: row {s.start + int(np.flatnonzero(~np.isfinite(s.y))[0])}: "
                        "NaN or Inf label")
    s.label_values = np.unique(s.y)  # raw labels of this shard, for the model file
    if positive:
        s.y = np.where(np.isin(s.y, np.asarray(positive, dtype=np.float64)), 1.0, -1.0)
    elif binary:
        vals = np.unique(s.y)
        if np.all(np.isin(vals, (0.0, 1.0))) and not np.any(s.y == -1):
            s.y = np.where(s.y == 1.0, 1.0, -1.0)
        elif not np.all(np.isin(vals, (-1.0, 1.0))):
            badrow = int(np.flatnonzero(~np.isin(s.y, (-1.0, 1.0)))[0])
            raise DataError(f"{where}: row {s.start + badrow}: label {s.y[badrow]:g} is not "
                            "binary (need +1/-1 or 1/0; or set [data] positive = [...])")
    if normalize == "unit_rows":
        if s.sparse:
            norms = np.sqrt(np.asarray(s.X.multiply(s.X).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            s.X = _csr64(sp.csr_matrix(sp.diags(1.0 / norms) @ s.X))
        else:
            norms = np.linalg.norm(s.X, axis=1)
            norms[norms == 0] = 1.0
            s.X = np.ascontiguousarray(s.X / norms[:, None].astype(s.X.dtype))
