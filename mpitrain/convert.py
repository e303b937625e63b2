"""`mpitrain data convert`: LIBSVM text → HDF5 CSR, streaming in blocks of whole lines, so
memory stays constant whatever the file size. Errors name the file and line.

The output is written atomically (:func:`mpitrain.fileio.atomic_h5`): a first pass counts
lines and ``:`` characters to bound the output size and reserve the disk space, so a full disk
or a file-size limit is one clear error (exit 73) before anything is written. Converting into
an existing HDF5 file adds the group and keeps the file's other groups; a group that already
exists, or an existing file that is not HDF5, is refused unless ``overwrite`` is set.
"""
import os

import numpy as np

from . import fileio
from .errors import DataError, InputMissing, UsageError

BLOCK_BYTES = 32 << 20


def _count(src, block_bytes):
    """Upper bounds of (rows, non-zeros) of a LIBSVM file: lines + 1, and ``:`` characters."""
    lines = colons = 0
    with open(src, "rb") as fh:
        while True:
            chunk = fh.read(block_bytes)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            colons += chunk.count(b":")
    return lines + 1, colons


def _groups_to_keep(dst, group, overwrite):
    """The groups of an existing `dst` to carry over into the new file (all but `group`)."""
    import h5py
    if not os.path.exists(dst):
        return []
    try:
        with h5py.File(dst, "r", locking=False) as f:
            names = list(f.keys())
    except OSError:
        if overwrite:
            return []
        raise UsageError(f"{dst}: exists and is not an HDF5 file; pass --overwrite to "
                         "replace it")
    if group in names and not overwrite:
        raise UsageError(f"{dst}: already has a group '{group}' (groups: {', '.join(names)}); "
                         "pass --overwrite to replace that group (the others are kept)")
    return [n for n in names if n != group]


def libsvm_to_h5(src, dst, *, zero_based=False, features=0, group="train", overwrite=False,
                 block_bytes=BLOCK_BYTES):
    """Convert LIBSVM file `src` into group `group` of HDF5 file `dst` (CSR layout of
    :mod:`mpitrain.datasets`). Returns {"n", "d", "nnz"}."""
    import h5py

    from ._kernels.libsvm import ParseError, parse
    from .datasets import _CSRWriter
    if not os.path.exists(src):
        raise InputMissing(f"{os.path.abspath(src)}: not found")
    if os.path.isdir(src):
        raise InputMissing(f"{os.path.abspath(src)}: is a directory, not a LIBSVM file")
    keep = _groups_to_keep(dst, group, overwrite)
    rows, colons = _count(src, block_bytes)
    reserve = _CSRWriter.bound(rows, colons) + (os.path.getsize(dst) if keep else 0)
    line_base = 0
    width = 0
    n = 0
    with fileio.atomic_h5(dst, reserve, what="the converted data") as f:
        if keep:
            with h5py.File(dst, "r", locking=False) as old:
                for k, v in old.attrs.items():
                    f.attrs[k] = v
                for name in keep:
                    old.copy(old[name], f, name=name)
        out = _CSRWriter(f, group, 0, 1 << 16, 1 << 18)
        with open(src, "rb") as fh:
            carry = b""
            while True:
                chunk = fh.read(block_bytes)
                text = carry + chunk
                if chunk:
                    cut = text.rfind(b"\n") + 1
                    text, carry = text[:cut], text[cut:]
                else:
                    carry = b""
                if text:
                    try:
                        y, indptr, indices, data, max_index, _ = parse(text, zero_based)
                    except ParseError as exc:
                        raise DataError(f"{src}: line {line_base + exc.line + 1}: "
                                        f"{exc.reason}")
                    line_base += text.count(b"\n")
                    _sort_rows(src, n, indptr, indices, data)
                    out.add(np.diff(indptr), indices, data, y)
                    n += len(y)
                    width = max(width, int(max_index) + 1)
                if not chunk:
                    break
        if n == 0:
            raise DataError(f"{src}: no data rows (empty file)")
        if features:
            if width > features:
                raise DataError(f"{src}: feature index {width} beyond the declared width "
                                f"{features}")
            width = features
        out.d = width
        out.close()
        out.g.attrs["source"] = f"converted from {os.path.basename(src)}"
        if "source" not in f.attrs:
            f.attrs["source"] = f"converted from {os.path.basename(src)}"
    return {"n": out.n, "d": width, "nnz": out.nnz}


def _sort_rows(src, first_row, indptr, indices, data):
    """Sort indices within rows (in place) and reject duplicates."""
    for r in range(len(indptr) - 1):
        a, b = indptr[r], indptr[r + 1]
        if b - a > 1:
            seg = indices[a:b]
            if np.any(np.diff(seg) <= 0):
                order = np.argsort(seg, kind="stable")
                indices[a:b], data[a:b] = seg[order], data[a:b][order]
                if np.any(np.diff(indices[a:b]) == 0):
                    raise DataError(f"{src}: row {first_row + r}: a feature index appears "
                                    "twice")
