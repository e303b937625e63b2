"""`mpitrain data convert`: LIBSVM text → HDF5 CSR, streaming in blocks of whole lines, so
memory stays constant whatever the file size. Errors name the file and line."""
import os

import numpy as np

from .errors import DataError, InputMissing

BLOCK_BYTES = 32 << 20


def libsvm_to_h5(src, dst, *, zero_based=False, features=0, group="train",
                 block_bytes=BLOCK_BYTES):
    import h5py
    from ._kernels.libsvm import ParseError, parse
    if not os.path.exists(src):
        raise InputMissing(f"{src}: not found")
    tmp = dst + ".tmp"
    n = nnz = 0
    width = 0
    line_base = 0
    with open(src, "rb") as fh, h5py.File(tmp, "w") as f:
        g = f.require_group(group)
        ds_ptr = g.create_dataset("indptr", shape=(1,), maxshape=(None,), dtype=np.int64,
                                  chunks=(1 << 16,))
        ds_ptr[0] = 0
        ds_ind = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32,
                                  chunks=(1 << 18,))
        ds_val = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float64,
                                  chunks=(1 << 18,))
        ds_y = g.create_dataset("y", shape=(0,), maxshape=(None,), dtype=np.float64,
                                chunks=(1 << 16,))
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
                    y, indptr, indices, data, max_index, lines = parse(text, zero_based)
                except ParseError as exc:
                    raise DataError(f"{src}: line {line_base + exc.line + 1}: {exc.reason}")
                line_base += text.count(b"\n")
                # sort indices within rows and reject duplicates
                for r in range(len(y)):
                    a, b = indptr[r], indptr[r + 1]
                    if b - a > 1:
                        seg = indices[a:b]
                        if np.any(np.diff(seg) <= 0):
                            order = np.argsort(seg, kind="stable")
                            indices[a:b], data[a:b] = seg[order], data[a:b][order]
                            if np.any(np.diff(indices[a:b]) == 0):
                                raise DataError(f"{src}: row {n + r}: a feature index appears "
                                                "twice")
                k = len(y)
                ds_y.resize((n + k,))
                ds_y[n:] = y
                ds_ptr.resize((n + k + 1,))
                ds_ptr[n + 1:] = indptr[1:] + nnz
                m = len(indices)
                ds_ind.resize((nnz + m,))
                ds_ind[nnz:] = indices
                ds_val.resize((nnz + m,))
                ds_val[nnz:] = data
                n += k
                nnz += m
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
        g.attrs["shape"] = np.array([n, width], dtype=np.int64)
        g.attrs["format"] = "csr"
        f.attrs["source"] = f"converted from {os.path.basename(src)}"
    os.replace(tmp, dst)
    return {"n": n, "d": width, "nnz": nnz}
