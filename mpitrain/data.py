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
import glob
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


def describe(path, fmt="auto"):
    """`mpitrain data describe`: a summary of a dataset in any format (HDF5 files through
    datasets.describe, with their provenance; other formats are read serially)."""
    if not _exists(path):
        raise InputMissing(f"{os.path.abspath(path)}: not found")
    fmt = detect_format(path, fmt)
    if fmt == "h5" and not glob.has_magic(path):
        from . import datasets
        with _open_h5(path) as f:
            grouped = "train" in f or "test" in f
        if grouped:  # the layout of datasets.py, with provenance
            return datasets.describe(path)
    from mpi4py import MPI

    from .comm import World
    s = load(World(MPI.COMM_SELF), path, fmt=fmt, group="train")
    lines = [f"{path}  ({fmt}, {_size(path) / 2**20:.1f} MiB)"]
    if s.sparse:
        lines.append(f"  csr {s.n}x{s.d} nnz={s.nnz} ({s.nnz / max(s.n, 1):.1f}/row, density "
                     f"{s.nnz / max(s.n * s.d, 1):.2e})")
    else:
        lines.append(f"  dense {s.n}x{s.d} {s.X.dtype}")
    vals, cnts = np.unique(s.y, return_counts=True)
    names = getattr(s, "classes", None)
    lab = ", ".join(f"{names[int(v)] if names is not None else format(v, 'g')}:{c}"
                    for v, c in zip(vals, cnts)) if vals.size <= 20 \
        else f"{vals.size} distinct values"
    lines.append(f"  labels {{{lab}}}")
    return "\n".join(lines)


def _size(path):
    return sum(os.path.getsize(p) for p in (sorted(glob.glob(path)) if glob.has_magic(path)
                                            else [path]))


def _csr64(m):
    """CSR with int64 indptr and int32 indices (the kernels' layout)."""
    m.indptr = m.indptr.astype(np.int64, copy=False)
    m.indices = m.indices.astype(np.int32, copy=False)
    return m


def resolve_path(path, job_path):
    """Where a data path of job file `job_path` points: `~` expanded; an absolute path as
    given; a relative one against the job file's directory, or against the working
    directory when the file (or, for a glob pattern, a match) is only there (job files
    written before paths were relative to the job file). Returns an absolute path."""
    if not path:
        return path
    p = os.path.expanduser(path)
    if os.path.isabs(p):
        return p
    beside = os.path.join(os.path.dirname(os.path.abspath(job_path)), p)
    if _exists(beside) or not _exists(p):
        return os.path.normpath(beside)
    return os.path.abspath(p)


def _exists(path):
    return bool(glob.glob(path)) if glob.has_magic(path) else os.path.exists(path)


def detect_format(path, fmt="auto"):
    """The format of `path` (a file or a glob pattern): `fmt` unless "auto", else from the
    extension: .h5/.hdf5 HDF5, .npy, .npz, .csv/.tsv CSV, anything else LIBSVM text."""
    if fmt != "auto":
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5", ".he5"):
        return "h5"
    if ext in (".npy", ".npz"):
        return ext[1:]
    if ext in (".csv", ".tsv"):
        return "csv"
    return "libsvm"


def expand(path):
    """The files of a data path: a glob pattern (`part-*`) is every match in sorted order,
    read as one dataset; a plain path is itself."""
    if glob.has_magic(path):
        return sorted(p for p in glob.glob(path) if os.path.isfile(p))
    return [path]


def load(world, path, *, fmt="auto", group=None, features=0, zero_based=False,
         positive=(), binary=False, normalize="none", max_rows=0, dtype=np.float64,
         width_from=None, what="train", label_column="0", no_labels=False):
    """Load this rank's shard of `path` collectively (a DataError on any rank is raised on
    every rank). `path` may be a glob pattern: the matching files in sorted order form one
    dataset, split by rows (HDF5, .npy, .npz) or bytes (LIBSVM, CSV) so that a rank reads
    only the files, and the parts of files, that hold its rows. `binary`: labels must be ±1
    (or 1/0, mapped to ±1) after `positive`. `width_from`: a training Shard whose width the
    test data must fit. String labels (CSV, HDF5, .npy, .npz) become class indices 0..K-1
    in sorted order over all ranks; the names are `Shard.classes`. Rows to predict
    (`what` = "prediction") may lack labels: an HDF5 group without y, LIBSVM lines that
    start with a feature `idx:val`; `no_labels`: no row has one (LIBSVM lines and CSV rows
    are features only; an HDF5 y is read but ignored). A row without a label gets label 0."""
    paths = expand(path)
    if not paths or not os.path.exists(paths[0]):
        err = InputMissing(f"{os.path.abspath(path)}: {what} data "
                           + ("file not found" if not glob.has_magic(path) else
                              "pattern matches no file"))
        collectively(world, _raise, err)
    special = [p for p in paths if not os.path.isfile(p)]
    if special:  # a FIFO, a device or a directory: reading it could block or mean nothing
        collectively(world, _raise, DataError(f"{special[0]}: {what} data is not a regular "
                                                "file (a FIFO, device or directory)"))
    fmt = detect_format(path, fmt)
    if no_labels and fmt in ("npy", "npz"):
        collectively(world, _raise, DataError(
            f"{path}: a .{fmt} file keeps its labels in the array (column 0 of .npy, y of "
            ".npz); rows without labels: store them as HDF5 X, CSV or LIBSVM text"))
    if fmt in ("libsvm", "csv"):
        shard = _read_text(world, path, paths, fmt, zero_based=zero_based,
                           label_column=label_column,
                           labels=0 if no_labels else -1 if what == "prediction" else 1)
        if max_rows:
            shard = collectively(world, _cap_rows, world, shard, max_rows)
    else:
        if fmt == "h5" and what != "prediction":  # only predict reads rows without labels
            collectively(world, _h5_require_labels, paths, group)
        shard = collectively(world, _read_rows, world, path, paths, fmt, group, max_rows)
        if no_labels:
            shard.y = np.zeros(shard.rows)
    collectively(world, _class_labels, world, shard)
    collectively(world, _finish, world, shard, features=features, normalize=normalize,
                 dtype=dtype, width_from=width_from, what=what,
                 label_hint=fmt == "csv" and not no_labels)
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



# -- row-indexed formats: HDF5, .npy, .npz --------------------------------------------------
def _read_rows(world, path, paths, fmt, group, max_rows):
    """This rank's block of rows of one or several files: every rank reads every file's
    header (row count and width), then only the slices of the files its block covers."""
    meta, read = {"h5": (_h5_meta, _h5_slice), "npy": (_npy_meta, _npy_slice),
                  "npz": (_npz_meta, _npz_slice)}[fmt]
    metas = [meta(p, group) for p in paths]
    sizes = np.array([m[0] for m in metas], dtype=np.int64)
    n = int(sizes.sum())
    where = metas[0][2] if len(paths) == 1 else f"{path} ({len(paths)} files)"
    if max_rows:
        n = min(n, max_rows)
    _check_rows(n, world.size, where)
    dense = [m[3] for m in metas]
    if len(set(dense)) > 1:
        raise DataError(f"{path}: the files mix dense and CSR layouts "
                        f"({paths[dense.index(True)]} is dense, "
                        f"{paths[dense.index(False)]} is CSR)")
    widths = [m[1] for m in metas]
    if dense[0] and len(set(widths)) > 1:
        i = widths.index(max(widths))
        raise DataError(f"{paths[i]}: {widths[i]} columns, but {paths[0]} has {widths[0]}")
    d = max(widths)
    start, stop = block_range(n, world.size, world.rank)
    Xs, ys = [], []
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for i, p in enumerate(paths):
        a, b = max(start, offsets[i]), min(stop, offsets[i + 1])
        if a < b:
            X, y = read(p, group, int(a - offsets[i]), int(b - offsets[i]), int(offsets[i]))
            Xs.append(X if dense[0] else sp.csr_matrix(X, shape=(X.shape[0], d)))
            ys.append(y)
    if len({y.dtype.kind for y in ys}) > 1:
        raise DataError(f"{where}: the labels are numbers in some rows and strings in "
                        "others; use one kind")
    X = np.concatenate(Xs) if dense[0] else sp.vstack(Xs, format="csr")
    if not dense[0]:
        X.indices = X.indices.astype(np.int32, copy=False)
    return Shard(X, np.concatenate(ys), start, stop, n, d, where)


def _h5_group(f, path, group):
    import h5py
    g = f[group] if group and group in f else f
    if isinstance(g, h5py.Dataset):
        raise DataError(f"{path}: '{group}' is a dataset, not a group: store the rows as "
                        f"datasets X (or indptr/indices/data) and y inside a group '{group}'")
    return g, f"{path}:{g.name}"


def _h5_meta(path, group):
    """(rows, width, where, dense) of an HDF5 file's group, every layout check done."""
    import h5py
    with _open_h5(path) as f:
        g, where = _h5_group(f, path, group)
        if "y" in g:  # labels; absent only in files to predict (load checks the rest)
            y_ds = g["y"]
            if not isinstance(y_ds, h5py.Dataset):
                raise DataError(f"{where}/y: is a group, not a dataset of labels")
            if y_ds.ndim != 1:
                raise DataError(f"{where}/y: expected 1-D labels, got shape {y_ds.shape}")
            if y_ds.dtype.kind not in "SUO":  # strings are class names (_class_labels)
                _numeric(f"{where}/y", y_ds.dtype, "the label dataset")
            n = y_ds.shape[0]
        elif "X" in g and isinstance(g["X"], h5py.Dataset) and g["X"].ndim == 2:
            n = g["X"].shape[0]
        else:
            n = int(g.attrs["shape"][0]) if len(g.attrs.get("shape", ())) == 2 else -1
        if "X" in g:
            X_ds = g["X"]
            if not isinstance(X_ds, h5py.Dataset) or X_ds.ndim != 2:
                raise DataError(f"{where}/X: expected a 2-D dataset (rows x features), got "
                                f"{getattr(X_ds, 'shape', 'a group')}")
            if X_ds.shape[0] != n:
                raise DataError(f"{where}/X: shape {X_ds.shape}: {X_ds.shape[0]} rows but y "
                                f"has {n} labels")
            _numeric(f"{where}/X", X_ds.dtype, "the feature matrix")
            return n, X_ds.shape[1], where, True
        if all(k in g for k in ("indptr", "indices", "data")):
            shape = g.attrs.get("shape")
            if shape is None or len(shape) != 2:
                raise DataError(f"{where}: CSR group needs attribute 'shape' = (n, d)")
            for name in ("indptr", "indices"):
                _numeric(f"{where}/{name}", g[name].dtype, name, integer=True)
            _numeric(f"{where}/data", g["data"].dtype, "the CSR values")
            if g["indptr"].shape[0] != n + 1 or int(shape[0]) != n:
                raise DataError(f"{where}: indptr has {g['indptr'].shape[0]} entries and shape "
                                f"is {tuple(shape)}, but there are {n} labels")
            _check_index_width(int(shape[1]), where)
            return n, int(shape[1]), where, False
        raise DataError(f"{where}: needs dataset 'X' (dense) or 'indptr', 'indices', "
                        "'data' (CSR)")


def _h5_require_labels(paths, group):
    for path in paths:
        with _open_h5(path) as f:
            g, where = _h5_group(f, path, group)
            if "y" not in g:
                raise DataError(f"{where}: dataset 'y' (labels) is missing")


def _h5_slice(path, group, start, stop, first):
    """Rows [start, stop) of an HDF5 file (checked by _h5_meta); `first`: the global row of
    the file's row 0 (for messages)."""
    with _open_h5(path) as f:
        g, where = _h5_group(f, path, group)
        y = g["y"][start:stop] if "y" in g else np.zeros(stop - start)
        if "X" in g:
            return np.ascontiguousarray(g["X"][start:stop]), _label_array(y)
        d = int(g.attrs["shape"][1])
        ptr = g["indptr"][start:stop + 1].astype(np.int64)
        if np.any(np.diff(ptr) < 0):
            raise DataError(f"{where}/indptr: not monotone in rows {start}..{stop}")
        lo, hi = int(ptr[0]), int(ptr[-1])
        if lo < 0 or hi > g["indices"].shape[0] or hi > g["data"].shape[0]:
            raise DataError(f"{where}: indptr points past the end of indices/data")
        indices = g["indices"][lo:hi]  # stored dtype: checked before narrowing to int32
        data = g["data"][lo:hi].astype(np.float64)
        if indices.size and (indices.min() < 0 or indices.max() >= d):
            bad = int(np.flatnonzero((indices < 0) | (indices >= d))[0])
            row = first + start + int(np.searchsorted(ptr, lo + bad, side="right")) - 1
            raise DataError(f"{where}: row {row}: feature index {indices[bad]} outside "
                            f"the declared width {d}")
        X = sp.csr_matrix((data, indices.astype(np.int32), ptr - lo),
                          shape=(stop - start, d))
        return X, _label_array(y)


def _check_index_width(d, where):
    """CSR feature indices are int32 in the kernels: a wider declared shape cannot be held."""
    if d > np.iinfo(np.int32).max:
        raise DataError(f"{where}: CSR width {d} does not fit the int32 feature indices "
                        f"(at most {np.iinfo(np.int32).max} features)")


def _label_array(y):
    """Labels as float64, or as str when they are strings (class names)."""
    y = np.asarray(y)
    if y.dtype.kind in "SO":
        try:
            return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y])
        except UnicodeDecodeError as exc:
            raise DataError(f"labels are not UTF-8 text ({exc})")
    if y.dtype.kind == "U":
        return y
    return y.astype(np.float64)


def _npy_meta(path, group=None):
    a = _npy(path)
    return a.shape[0], a.shape[1] - 1, path, True


def _npy(path):
    try:
        a = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})")
    if a.ndim != 2 or a.shape[1] < 2:
        raise DataError(f"{path}: expected a 2-D array (label in column 0, features after), "
                        f"got shape {a.shape}")
    if a.dtype.kind not in "US":
        _numeric(path, a.dtype, "the array")
    return a


def _npy_slice(path, group, start, stop, first):
    block = np.array(_npy(path)[start:stop])
    X = block[:, 1:]
    if block.dtype.kind in "US":  # string labels in column 0: the features must be numbers
        try:
            X = X.astype(np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: rows {first + start}..{first + stop - 1}: a feature is "
                            f"not a number ({exc})")
    return np.ascontiguousarray(X), _label_array(block[:, 0])


def _npz(path):
    """The arrays of an .npz: X (dense, 2-D) or CSR (indptr, indices, data, shape: the
    layout of scipy.sparse.save_npz), and y."""
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})")
    if "y" not in arrays:
        raise DataError(f"{path}: array 'y' (labels) is missing (has: "
                        f"{', '.join(sorted(arrays)) or 'nothing'})")
    y = arrays["y"]
    if y.ndim != 1:
        raise DataError(f"{path}: y: expected 1-D labels, got shape {y.shape}")
    if "X" in arrays:
        X = arrays["X"]
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise DataError(f"{path}: X has shape {X.shape} but y has {y.shape[0]} labels")
        _numeric(f"{path}: X", X.dtype, "the feature matrix")
        return X, y
    if all(k in arrays for k in ("indptr", "indices", "data", "shape")):
        for k in ("indptr", "indices"):
            _numeric(f"{path}: {k}", arrays[k].dtype, k, integer=True)
        _numeric(f"{path}: data", arrays["data"].dtype, "the CSR values")
        shape = tuple(int(s) for s in arrays["shape"])
        if len(shape) != 2 or shape[0] != y.shape[0] or arrays["indptr"].shape != (shape[0] + 1,):
            raise DataError(f"{path}: CSR shape {shape} and indptr do not match "
                            f"{y.shape[0]} labels")
        _check_index_width(shape[1], path)
        ind = arrays["indices"]
        if ind.size and (ind.min() < 0 or ind.max() >= shape[1]):
            raise DataError(f"{path}: a feature index is outside the width {shape[1]}")
        X = sp.csr_matrix((arrays["data"].astype(np.float64), ind.astype(np.int32),
                           arrays["indptr"].astype(np.int64)), shape=shape)
        return X, y
    raise DataError(f"{path}: needs arrays X and y (dense) or indptr, indices, data, shape "
                    "and y (CSR)")


def _npz_meta(path, group=None):
    X, _ = _npz(path)
    return X.shape[0], X.shape[1], path, not sp.issparse(X)


def _npz_slice(path, group, start, stop, first):
    X, y = _npz(path)  # an .npz is read whole (zip members cannot be sliced)
    X = X[start:stop]
    return (np.ascontiguousarray(X) if not sp.issparse(X) else X), _label_array(y[start:stop])


# -- text formats: LIBSVM, CSV ---------------------------------------------------------------
def _text_share(world, paths):
    """This rank's share of the files read as one byte stream, split at line starts:
    [(file index, bytes, newlines before it in its file)]. A file that does not end in a
    newline gets one. The line offsets come from one allgather of the segments' newline
    counts: no rank reads bytes of another's share."""
    def local():
        try:
            sizes = [os.path.getsize(p) for p in paths]
            total = sum(sizes)
            lo, hi = total * world.rank // world.size, total * (world.rank + 1) // world.size
            segs, off = [], 0
            for i, (p, size) in enumerate(zip(paths, sizes)):
                a, b = min(max(lo - off, 0), size), min(max(hi - off, 0), size)
                off += size
                if a >= b:
                    continue
                with open(p, "rb") as fh:
                    a, b = _align(fh, size, a), _align(fh, size, b)
                    if a >= b:
                        continue
                    fh.seek(a)
                    text = fh.read(b - a)
                if not text.endswith(b"\n"):
                    text += b"\n"
                segs.append((i, a, text))
            return segs
        except OSError as exc:
            raise DataError(f"{exc.filename or paths[0]}: cannot read ({exc.strerror})")

    segs = collectively(world, local)
    mine = [(i, a, t.count(b"\n")) for i, a, t in segs]
    every = world.gather_obj(mine)
    flat = [s for part in every for s in part]
    out = []
    for i, a, text in segs:
        before = sum(c for j, b, c in flat if j == i and b < a)
        out.append((i, text, before))
    return out


def _align(fh, size, pos):
    """`pos` moved to the next line start of the open file (0 and `size` stay)."""
    if pos <= 0 or pos >= size:
        return min(max(pos, 0), size)
    fh.seek(pos - 1)
    fh.readline()
    return fh.tell()


def _read_text(world, path, paths, fmt, *, zero_based, label_column, labels=1):
    """LIBSVM or CSV text, one file or several, split by bytes; the ranks agree on the row
    counts and the width. Errors name the file and its line. `labels` as libsvm.parse's:
    1 every row has a label, -1 LIBSVM lines may lack it, 0 no row has one (CSV: every
    column is a feature)."""
    segs = _text_share(world, paths)
    if fmt == "csv":
        header = collectively(world, _csv_header, paths, label_column if labels else None)
        parts = collectively(world, _parse_csv_segments, paths, segs, header)
    else:
        parts = collectively(world, _parse_libsvm_segments, paths, segs, zero_based, labels)
    ys = [p[0] for p in parts]
    y = np.concatenate(ys) if ys else np.zeros(0)
    counts = np.array(world.gather_obj(len(y)), dtype=np.int64)
    n = int(counts.sum())
    start = int(counts[:world.rank].sum())
    where = path if len(paths) == 1 else f"{path} ({len(paths)} files)"
    if fmt == "csv":
        d = int(world.reduce_obj(max([p[1].shape[1] for p in parts], default=-1), op="max"))
        collectively(world, _check_width, paths, segs, parts, d)
        X = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, max(d, 0)))
    else:
        d = int(world.reduce_obj(max([p[1] for p in parts], default=-1), op="max")) + 1
        X = sp.vstack([sp.csr_matrix(p[2], shape=(p[2].shape[0], max(d, 0))) for p in parts],
                      format="csr") if parts else sp.csr_matrix((0, max(d, 0)))
        X.indptr = X.indptr.astype(np.int64)
        X.indices = X.indices.astype(np.int32)
    collectively(world, _check_counts, counts, n, where)
    return Shard(X, y, start, start + len(y), n, max(d, 0), where)


def _parse_libsvm_segments(paths, segs, zero_based, labels):
    from ._kernels.libsvm import ParseError, parse
    out = []
    for i, text, before in segs:
        try:
            y, indptr, indices, data, max_index, _ = parse(text, zero_based, labels)
        except ParseError as exc:
            raise DataError(f"{paths[i]}: line {before + exc.line + 1}: {exc.reason}")
        X = sp.csr_matrix((data, indices, indptr), shape=(len(y), int(max_index) + 1))
        out.append((y, int(max_index), X))
    return out


def _check_width(paths, segs, parts, d):
    for (i, _, _), (_, X) in zip(segs, parts):
        if X.shape[1] != d:
            raise DataError(f"{paths[i]}: {X.shape[1]} feature columns, but other files have "
                            f"{d}")


def _csv_dialect(line):
    return "\t" if b"\t" in line and b"," not in line else ","


def _csv_header(paths, label_column):
    """Per file: (delimiter, has a header line, label column index, column count). A first
    line is a header when one of its fields (other than the label) is not a number.
    `label_column` None: the rows have no label (index None)."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as fh:
                first = fh.readline()
        except OSError as exc:
            raise DataError(f"{p}: cannot read ({exc.strerror})")
        delim = _csv_dialect(first)
        try:
            fields = [f.strip() for f in first.decode("utf-8").rstrip("\r\n").split(delim)]
        except UnicodeDecodeError:
            raise DataError(f"{p}: line 1: not UTF-8 text")
        if label_column is None:
            out.append((delim, not all(map(_is_number, fields)), None, len(fields)))
            continue
        label = str(label_column).strip()
        has_header = label in fields and not label.lstrip("-").isdigit() or any(
            not _is_number(f) for j, f in enumerate(fields) if j != _col(label, fields, p))
        if has_header and not label.lstrip("-").isdigit() and label not in fields:
            raise DataError(f"{p}: line 1: no column named {label!r} (columns: "
                            f"{', '.join(fields)}); set [data] label_column")
        col = _col(label, fields, p) if has_header or label.lstrip("-").isdigit() else None
        if col is None:
            raise DataError(f"{p}: [data] label_column = {label!r} names a column, but the "
                            "file has no header line")
        out.append((delim, has_header, col, len(fields)))
    return out


def _col(label, fields, path):
    if label.lstrip("-").isdigit():
        j = int(label)
        if not -len(fields) <= j < len(fields):
            raise DataError(f"{path}: [data] label_column = {j} but the rows have "
                            f"{len(fields)} columns")
        return j % len(fields)
    return fields.index(label) if label in fields else -1


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parse_csv_segments(paths, segs, header):
    out = []
    for i, text, before in segs:
        delim, has_header, col, width = header[i]
        lines = text.decode("utf-8", errors="replace").splitlines()
        first_line = before + 1
        if has_header and before == 0:
            lines, first_line = lines[1:], 2
        labels, rows, at = [], [], []
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            fields = line.split(delim)
            if len(fields) != width:
                raise DataError(f"{paths[i]}: line {first_line + k}: {len(fields)} fields, "
                                f"expected {width}")
            at.append(first_line + k)
            if col is None:
                rows.append(fields)
                continue
            labels.append(fields[col].strip())
            rows.append(fields[:col] + fields[col + 1:])
        try:
            X = np.array(rows, dtype=np.float64).reshape(len(rows), width - (col is not None))
        except ValueError:
            for k, r in enumerate(rows):
                for f in r:
                    if not _is_number(f):
                        raise DataError(f"{paths[i]}: line {at[k]}: feature {f!r} is not a "
                                        "number")
            raise
        out.append((np.array(labels, dtype=str) if col is not None else np.zeros(len(rows)),
                    X))  # labels: numbers or names (_class_labels)
    return out


def _cap_rows(world, s, max_rows):
    """The first `max_rows` rows of a text shard (every rank keeps its part of them)."""
    if s.n <= max_rows:
        return s
    keep = max(0, min(s.rows, max_rows - s.start))
    X = s.X[:keep]
    return Shard(X, s.y[:keep], s.start, s.start + keep, max_rows, s.d, s.path)


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


def _class_labels(world, s):
    """Labels read as text: numbers when every label on every rank is one, else class
    names → class indices 0..K−1 in sorted order of the names over all ranks (one
    allgather of the names), the names kept as `s.classes` (for the model file). Collective:
    every rank takes the same branch (no rank raises before a reduction another skips)."""
    text = s.y.dtype.kind == "U"
    any_text = world.reduce_obj(int(text and s.rows > 0), op="max")
    if not any_text:
        if text:
            s.y = np.zeros(0)
        return
    any_num = world.reduce_obj(int(not text and s.rows > 0), op="max")
    numeric = world.reduce_obj(int(not text or all(map(_is_number, s.y.tolist()))), op="min")
    if any_num:
        raise DataError(f"{s.path}: the labels are numbers in some rows and strings in "
                        "others; use one kind")
    if numeric:
        s.y = s.y.astype(np.float64)
        return
    mine = sorted(set(s.y.tolist()))
    names = sorted(set().union(*world.gather_obj(mine)))
    s.classes = names
    s.y = np.searchsorted(np.array(names), s.y).astype(np.float64)


# -- shared post-processing ----------------------------------------------------------------
def _finish(world, s, *, features, normalize, dtype, width_from, what, label_hint=False):
    where = s.path
    if features:
        want = f"[data] features = {features}" if what != "prediction" else \
            f"the model has {features} features"
        if s.d > features:
            raise DataError(f"{where}: the data has {s.d} features but {want}")
        if not s.sparse and s.d != features:
            hint = "; if no column is a label, pass --no-labels" \
                if label_hint and what == "prediction" and s.d + 1 == features else ""
            raise DataError(f"{where}: dense X has {s.d} columns but {want}{hint}")
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
            v = s.y[other - s.start]
            name = s.classes[int(v)] if getattr(s, "classes", None) else f"{v:g}"
            raise DataError(f"{s.path}: row {other}: label {name} is not binary (need +1/-1 "
                            "or 1/0, or set [data] positive = [...]; lbfgs, fadl and psgd-mix "
                            "fit more than two classes, and real labels with loss = "
                            "\"squared\")")
        return  # the rank holding that row raises; collectively() reports it on every rank
    if zero < s.n and minus < s.n:
        raise DataError(f"{s.path}: row {minus}: label -1, but row {zero} has label 0: the "
                        "labels mix the 1/0 and +1/-1 encodings (or set [data] positive = "
                        "[...])")
    if zero < s.n:
        s.y = np.where(s.y == 1.0, 1.0, -1.0)
