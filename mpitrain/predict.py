"""`mpitrain predict RUN_DIR DATA --out OUT.h5`: a trained model applied to new rows.

Serial, or under mpiexec: each rank reads only its rows of DATA (any format the data loader
reads; labels are not needed: an HDF5 group without y, LIBSVM lines that start with a feature
`idx:val`, or with `no_labels` (--no-labels) CSV rows and LIBSVM lines of features only; a
CSV label, read and ignored, is column 0 or `label_column` (--label-column K, 0-based,
negative from the end)),
computes them with the same code as `mpitrain.load(...)` (api.py), and rank 0 gathers them
(Gatherv) in input order and writes OUT.h5 atomically. Datasets:
    linear               score (n, float64), label (n, the data's original label values)
    autoencoder          code (n × code size, float32) [+ reconstruction with --reconstruct]
    binary-autoencoder   code (n × L, uint8 0/1)        [+ reconstruction]
    nested (mac, backprop) code (n × narrowest layer)   [+ reconstruction]
OUT.h5's root attributes name the model, its algorithm and job hash, and the data.
"""
import os

import numpy as np

from . import data, fileio
from .api import load as load_model
from .errors import DataError, UsageError
from .runtime import collectively


def predict(world, run, data_path, out, *, reconstruct=False, group="test", fmt="auto",
            no_labels=False, label_column=None):
    """Collective: predict every row of `data_path`; rank 0 writes `out`. Returns the row
    count. `no_labels`: no row of the data holds a label (every CSV column and every LIBSVM
    token is a feature). `label_column` (CSV only; None = column 0): the 0-based column of
    the label, negative from the end (-1 = the last)."""
    model = collectively(world, load_model, run)
    meta = model.meta
    column = collectively(world, _label_column, data_path, fmt, label_column, no_labels)
    shard = data.load(world, data_path, fmt=fmt, group=group, features=model.features,
                      zero_based=bool(meta.get("zero_based", 0)), binary=False,
                      normalize="none", dtype=model.dtype, what="prediction",
                      no_labels=no_labels, label_column=column)
    local = collectively(world, model.outputs, shard.X, reconstruct)
    counts = np.array(world.gather_obj(shard.rows), dtype=np.int64)
    label_values = None
    if "label" in local and model.loss != "squared":
        # labels travel as class indices (the classes may be strings); mapped on rank 0
        label_values = model.classes
        local["label"] = _index_of(label_values, local["label"])
    gathered = {k: world.gather_rows(np.ascontiguousarray(v), counts)
                for k, v in local.items()}

    def write():
        if world.rank != 0:
            return
        if label_values is not None:
            gathered["label"] = np.asarray(label_values)[gathered["label"]]

        def fill(f):
            import h5py
            for k, v in gathered.items():
                if v.dtype.kind == "U":
                    v = np.array(v.tolist(), dtype=h5py.string_dtype())
                f.create_dataset(k, data=v)
            f.attrs.update(model=os.path.abspath(meta["path"]), algorithm=meta["algorithm"],
                           family=meta["family"], job_hash=str(meta.get("job_hash", "")),
                           data=os.path.abspath(data_path), rows=int(counts.sum()))
        fileio.write_h5(out, fill, what="the predictions")
    collectively(world, write)
    return int(counts.sum())


def _label_column(data_path, fmt, label_column, no_labels):
    """--label-column K checked against the option, the format and each CSV file's columns
    (errors name the file and the column); returns the label column as data.load takes it."""
    if label_column is None:
        return "0"
    opt = f"--label-column {label_column}"
    if no_labels:
        raise UsageError(f"{opt} and --no-labels contradict each other: --no-labels reads "
                         "every column as a feature")
    fmt = data.detect_format(data_path, fmt)
    if fmt != "csv":
        raise UsageError(f"{data_path}: {opt} applies to CSV rows only, not to {fmt} data "
                         + ("(a LIBSVM label is a line's first token; --no-labels reads "
                            "lines of features only)" if fmt == "libsvm" else
                            "(an HDF5 group's y, column 0 of an .npy, y of an .npz)"))
    try:
        k = int(str(label_column).strip())
    except ValueError:
        raise UsageError(f"{data_path}: {opt}: not a column number (0-based; negative counts "
                         "from the end, -1 = the last)") from None
    paths = data.expand(data_path)
    if all(os.path.isfile(p) for p in paths):  # else data.load names what is missing
        for p, (_, _, _, width) in zip(paths, data._csv_header(paths, None)):
            if not -width <= k < width:
                raise DataError(f"{p}: {opt}: the rows have {width} columns (0 to "
                                f"{width - 1}, or -{width} to -1 from the end)")
    return str(k)


def _index_of(values, labels):
    idx = np.zeros(labels.shape, np.int64)
    for i, v in enumerate(values):
        idx[labels == v] = i
    return idx

