"""`mpitrain predict RUN_DIR DATA --out OUT.h5`: a trained model applied to new rows.

Serial, or under mpiexec: each rank reads only its rows of DATA (any format the data loader
reads; labels are not needed: an HDF5 group without y, LIBSVM lines that start with a feature
`idx:val`, or with `no_labels` (--no-labels) CSV rows and LIBSVM lines of features only),
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
from .runtime import collectively


def predict(world, run, data_path, out, *, reconstruct=False, group="test", fmt="auto",
            no_labels=False):
    """Collective: predict every row of `data_path`; rank 0 writes `out`. Returns the row
    count. `no_labels`: no row of the data holds a label (every CSV column and every LIBSVM
    token is a feature)."""
    model = collectively(world, load_model, run)
    meta = model.meta
    shard = data.load(world, data_path, fmt=fmt, group=group, features=model.features,
                      zero_based=bool(meta.get("zero_based", 0)), binary=False,
                      normalize="none", dtype=model.dtype, what="prediction",
                      no_labels=no_labels)
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


def _index_of(values, labels):
    idx = np.zeros(labels.shape, np.int64)
    for i, v in enumerate(values):
        idx[labels == v] = i
    return idx

