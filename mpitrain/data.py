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
    collectively(world, _finish, world, shard, features=features, normalize=normalize,
                 dtype=dtype, width_from=width_from, what=what)
    collectively(world, _labels, world, shard, positive=positive, binary=binary)
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


def _numeric(where, dtype, what, integer=False):
    """Refuse arrays that would be silently reinterpreted: complex, strings, objects, and
    (with `integer`) non-integer indices."""
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise DataError(f"{where}: {what} has complex dtype {dtype}; mpitrain needs real "
                        "values")
    if kind in "SUOV":
        raise DataError(f"{where}: {what} holds strings or objects (dtype {dtype}); "
                        "mpitrain needs numbers")
    if integer and kind not in "iu":
        raise DataError(f"{where}: {what} has dtype {dtype}; feature indices must be "
                        "integers")
    if kind not in "iufb":
        raise DataError(f"{where}: {what} has non-numeric dtype {dtype}")


def _read_h5(world, path, group=None, max_rows=0):
    import h5py
    with _open_h5(path) as f:
        g = f[group] if group and group in f else f
        where = f"{path}:{g.name}"
        if isinstance(g, h5py.Dataset):
            raise DataError(f"{path}: '{group}' is a dataset, not a group: store the rows as "
                            f"datasets X (or indptr/indices/data) and y inside a group "
                            f"'{group}'")
        if "y" not in g:
            raise DataError(f"{where}: dataset 'y' (labels) is missing")
        y_ds = g["y"]
        if not isinstance(y_ds, h5py.Dataset):
            raise DataError(f"{where}/y: is a group, not a dataset of labels")
        if y_ds.ndim != 1:
            raise DataError(f"{where}/y: expected 1-D labels, got shape {y_ds.shape}")
        if y_ds.dtype.kind in "SUOV":
            raise DataError(f"{where}/y: labels stored as strings (dtype {y_ds.dtype}) are "
                            "not supported; store numeric labels")
        _numeric(f"{where}/y", y_ds.dtype, "the label dataset")
        n = y_ds.shape[0]
        if max_rows:
            n = min(n, max_rows)
        _check_rows(n, world.size, where)
        start, stop = block_range(n, world.size, world.rank)
        if "X" in g:
            X_ds = g["X"]
            if not isinstance(X_ds, h5py.Dataset) or X_ds.ndim != 2:
                raise DataError(f"{where}/X: expected a 2-D dataset (rows x features), got "
                                f"{getattr(X_ds, 'shape', 'a group')}")
            if X_ds.shape[0] != y_ds.shape[0]:
                raise DataError(f"{where}/X: shape {X_ds.shape}: {X_ds.shape[0]} rows but y "
                                f"has {y_ds.shape[0]} labels")
            _numeric(f"{where}/X", X_ds.dtype, "the feature matrix")
            d = X_ds.shape[1]
            X = np.ascontiguousarray(X_ds[start:stop])
        elif all(k in g for k in ("indptr", "indices", "data")):
            shape = g.attrs.get("shape")
            if shape is None or len(shape) != 2:
                raise DataError(f"{where}: CSR group needs attribute 'shape' = (n, d)")
            d = int(shape[1])
            indptr = g["indptr"]
            for name in ("indptr", "indices"):
                _numeric(f"{where}/{name}", g[name].dtype, name, integer=True)
            _numeric(f"{where}/data", g["data"].dtype, "the CSR values")
            if indptr.shape[0] < n + 1 or int(shape[0]) != y_ds.shape[0]:
                raise DataError(f"{where}: indptr has {indptr.shape[0]} entries and shape is "
                                f"{tuple(shape)}, but there are {y_ds.shape[0]} labels")
            ptr = indptr[start:stop + 1].astype(np.int64)
            if np.any(np.diff(ptr) < 0):
                raise DataError(f"{where}/indptr: not monotone in rows {start}..{stop}")
            lo, hi = int(ptr[0]), int(ptr[-1])
            if hi > g["indices"].shape[0] or hi > g["data"].shape[0]:
                raise DataError(f"{where}: indptr points past the end of indices/data")
            indices = g["indices"][lo:hi]  # stored dtype: checked before narrowing to int32
            data = g["data"][lo:hi].astype(np.float64)
            if indices.size and (indices.min() < 0 or indices.max() >= d):
                bad = int(np.flatnonzero((indices < 0) | (indices >= d))[0])
                row = start + int(np.searchsorted(ptr, lo + bad, side="right")) - 1
                raise DataError(f"{where}: row {row}: feature index {indices[bad]} outside "
                                f"the declared width {d}")
            X = sp.csr_matrix((data, indices.astype(np.int32), ptr - lo),
                              shape=(stop - start, d))
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
    _numeric(path, a.dtype, "the array")
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
def _finish(world, s, *, features, normalize, dtype, width_from, what):
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
    if s.d == 0:
        raise DataError(f"{where}: no features (every row is empty; 0 columns)")
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
    if normalize == "unit_rows":
        if s.sparse:
            norms = np.sqrt(np.asarray(s.X.multiply(s.X).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            s.X = _csr64(sp.csr_matrix(sp.diags(1.0 / norms) @ s.X))
        else:
            norms = np.linalg.norm(s.X, axis=1)
            norms[norms == 0] = 1.0
            s.X = np.ascontiguousarray(s.X / norms[:, None].astype(s.X.dtype))


def _labels(world, s, *, positive, binary):
    """Map the labels to ±1 for binary algorithms, deciding on the encoding over ALL ranks
    (three small Allreduce MIN): the first global row of a label 0, of a label −1 and of a
    label outside {−1, 0, 1}. So a 0/1 shard and a ±1 shard are refused together at any P, as
    they would be in one file at P = 1. Collective: every rank reaches the reductions."""
    if positive:
        s.y = np.where(np.isin(s.y, np.asarray(positive, dtype=np.float64)), 1.0, -1.0)
        return
    if not binary:
        return

    def first(mask):
        rows = np.flatnonzero(mask)
        return int(world.reduce_obj(s.start + int(rows[0]) if rows.size else s.n, op="min"))

    other = first(~np.isin(s.y, (-1.0, 0.0, 1.0)))
    zero, minus = first(s.y == 0.0), first(s.y == -1.0)
    if other < s.n:
        if s.start <= other < s.stop:
            raise DataError(f"{s.path}: row {other}: label {s.y[other - s.start]:g} is not "
                            "binary (need +1/-1 or 1/0; or set [data] positive = [...])")
        return  # the rank holding that row raises; collectively() reports it on every rank
    if zero < s.n and minus < s.n:
        raise DataError(f"{s.path}: row {minus}: label -1, but row {zero} has label 0: the "
                        "labels mix the 1/0 and +1/-1 encodings (or set [data] positive = "
                        "[...])")
    if zero < s.n:
        s.y = np.where(s.y == 1.0, 1.0, -1.0)
