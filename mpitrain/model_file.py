"""Self-describing models: what final.h5 carries besides the arrays, written and read here.

final.h5 holds the algorithm's arrays (`model/w` for a linear model; `model/W1`, `model/b1`,
... for networks; `model/A`, `model/a`, `model/B`, `model/c` for ParMAC's binary autoencoder)
and, as attributes of the group `manifest`, everything prediction needs:

    algorithm, family         the method, and what kind of model it made: "linear",
                              "autoencoder", "binary-autoencoder" or "nested" (the class
                              attribute FAMILY of each algorithm)
    features, train_rows      input width; rows the model was trained on
    normalize, dtype          the row scaling applied to inputs ("none" | "unit_rows") and the
                              dtype the arithmetic runs in (float64, float32 for autoencoders)
    zero_based                LIBSVM index base of the training data (prediction inputs)
    mpitrain_version, job_hash, seed, step, world_size, job_toml (the resolved job's text)
  linear:
    loss, l2, l1, fit_intercept (1: `model/intercept` holds b, K values for K classes),
                              intercept (b of a binary model; 0.0 for K classes)
    multiclass                K classes: "multinomial" or "ovr"; `model/w` is then d × K and
                              meta/classes holds the K class values, in sorted order
    label_rule                "classes": the labels' own values, sorted (models/glm.py);
                              "binary": labels were ±1 or 1/0; "positive": [data] positive
                              listed the +1 labels (label_positive, JSON), every other value -1
    dataset meta/classes      the label values of class 0 (score ≤ 0) and class 1 (score > 0),
                              in that order, as they appear in the data: [0, 1], [-1, 1], or
                              [other, positive] when `positive` names one value and the data
                              has one other; [-1, 1] when several values map to one side.
                              A general array (string labels may follow).
  autoencoder:
    layers (widths, input first), activation, loss ("xent": sigmoid output, "squared":
    linear), tied, decoder ("stack": the unrolled stack; "direct": dae-gradual's D_K),
    code_size, finetuned (1 when a softmax S/s was fine-tuned)
  binary-autoencoder:  code_size (L bits); layers [D, L, D]
  nested (mac, backprop): layers [D, h1, ..., D] (sigmoid hidden units, linear output),
    code_layer (1-based: the narrowest hidden layer), code_size

`contents()` (collective: it gathers the label values) builds them for driver._write_final;
`read()` opens a final.h5 or a run directory and returns (metadata, arrays), without MPI.
"""
import json
import os

import numpy as np

from .checkpoint import _plain
from .errors import DataError, InputMissing

FAMILIES = ("linear", "autoencoder", "binary-autoencoder", "nested")


def _label_classes(world, train, positive):
    """(classes array, rule) of a binary linear model, from the raw label values of every
    shard (`label_values`, recorded by the data loader before the ±1 mapping)."""
    local = getattr(train, "label_values", None)
    if local is None:  # a loader that did not record them: the ±1 coding itself
        return np.array([-1.0, 1.0]), "positive" if positive else "binary"
    values = np.unique(np.asarray(local))  # each rank's distinct values, not its rows
    if world is not None and world.size > 1:
        values = np.unique(np.concatenate([np.asarray(v) for v in world.gather_obj(values)]))
    if positive:
        pos = np.unique(np.asarray(positive, dtype=values.dtype))
        neg = values[~np.isin(values, pos)]
        if pos.size == 1 and neg.size == 1:
            return np.array([neg[0], pos[0]]), "positive"
        return np.array([-1.0, 1.0]), "positive"
    if np.all(np.isin(values, (0.0, 1.0))):
        return np.array([0.0, 1.0]), "binary"
    return np.array([-1.0, 1.0]), "binary"


def _code_layer(hidden):
    return int(np.argmin(hidden)) + 1


def contents(world, cls, job, train, model, base):
    """(arrays, manifest attributes) of final.h5: the algorithm's `model` arrays, the `base`
    manifest plus the metadata above (collective over `world`: label values are gathered)."""
    from . import __version__, config
    family = getattr(cls, "FAMILY", None)
    if family not in FAMILIES:
        raise ValueError(f"{cls.name}: FAMILY {family!r} not one of {FAMILIES}")
    d, m = job["data"], job["model"]
    arrays = dict(model)
    attrs = dict(base)
    attrs.update(family=family, features=int(train.d), train_rows=int(train.n),
                 normalize=d["normalize"], zero_based=int(bool(d["zero_based"])),
                 dtype=np.dtype(getattr(cls, "DATA", {}).get("dtype", np.float64)).name,
                 mpitrain_version=__version__, job_toml=config.dump_toml(job))
    if family == "linear":
        classes, rule = _label_classes(world, train, d["positive"])
        if "meta/classes" in model:  # models/glm.py decided them: the values, sorted
            rule = "classes"
        arrays.setdefault("meta/classes", classes)
        b = model.get("model/intercept")
        attrs.update(loss=m["loss"], l2=float(m["l2"]), l1=float(m.get("l1", 0.0)),
                     fit_intercept=int(b is not None),
                     intercept=float(np.asarray(b).reshape(-1)[0]) if b is not None else 0.0,
                     label_rule=rule, label_positive=json.dumps(list(d["positive"])))
        if np.ndim(model["model/w"]) == 2:  # K classes (models/glm.py): w is d × K
            from .models.glm import multiclass_kind
            attrs.update(multiclass=multiclass_kind(cls.name, m), intercept=0.0)
    elif family == "autoencoder":
        dims = [int(train.d)] + [int(k) for k in m["layers"]]
        decoder = m.get("decoder", "stack")
        attrs.update(layers=np.asarray(dims, np.int64), activation=m["activation"],
                     loss=m["loss"], tied=int(bool(m["tied"])),
                     decoder="stack" if decoder == "mirrored" else decoder,
                     code_size=dims[-1], finetuned=int("model/S" in model))
    elif family == "binary-autoencoder":
        L = int(np.asarray(model["model/A"]).shape[0])
        attrs.update(layers=np.asarray([train.d, L, train.d], np.int64), code_size=L)
    else:  # nested
        hidden = [int(k) for k in m["hidden"]]
        attrs.update(layers=np.asarray([train.d] + hidden + [train.d], np.int64),
                     activation="sigmoid", code_layer=_code_layer(hidden),
                     code_size=min(hidden))
    return arrays, attrs


def model_path(path):
    """final.h5 of a run directory, or `path` itself (InputMissing when absent)."""
    if os.path.isdir(path):
        f = os.path.join(path, "final.h5")
        if not os.path.exists(f):
            raise InputMissing(f"{path}: no final.h5 in this run directory (the run has not "
                               "finished; `mpitrain inspect` shows its checkpoints)")
        return f
    if not os.path.exists(path):
        raise InputMissing(f"{path}: model not found")
    return path


def read_arrays(path):
    """Every dataset of a final model but its manifest (name → array; strings decoded), or
    None for a checkpoint (its arrays are an algorithm's state, not a model)."""
    import h5py
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 model file ({exc})")
    with f:
        if "state" in f:
            return None
        arrays = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("manifest"):
                a = obj[()]
                arrays[name] = np.array([_plain(x) for x in a]) if a.dtype.kind == "O" else a
        f.visititems(visit)
        return arrays


def read(path):
    """(metadata dict, arrays dict) of a final model (a run directory or its final.h5).
    Array names keep their paths (`model/w`, `meta/classes`)."""
    path = model_path(path)
    arrays = read_arrays(path)
    if arrays is None:
        raise DataError(f"{path}: a checkpoint, not a final model; use the run's final.h5 "
                        "(or `mpitrain eval JOB CHECKPOINT`)")
    meta = manifest(path)
    if meta.get("family") not in FAMILIES:
        raise DataError(f"{path}: no model metadata (written by an mpitrain older than "
                        "0.2, or not a model): run the job again to get a self-describing "
                        "final.h5")
    meta["path"] = path
    return meta, arrays

def manifest(path):
    """The manifest attributes of a final model or a checkpoint ({} when it has none)."""
    import h5py
    try:
        with h5py.File(path, "r", locking=False) as f:
            return {k: _plain(v) for k, v in f["manifest"].attrs.items()} \
                if "manifest" in f else {}
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 model file ({exc})")


def check_job(path, job, job_path):
    """Refuse (DataError, exit 65) a model or checkpoint `path` that another job made: its
    algorithm or job hash differs from the resolved `job`'s."""
    from .algorithms import job_hash, registry
    from .config import older_defaults_hint
    m = manifest(path)
    alg = job["job"]["algorithm"]
    if m.get("algorithm") not in (None, alg):
        raise DataError(f"{path}: a {m['algorithm']} model, but {job_path} runs {alg}")
    want = job_hash(job)
    if m.get("job_hash") != want:
        hint = older_defaults_hint(job, registry()[alg], m.get("job_hash"))
        raise DataError(f"{path}: model of another job (job hash {m.get('job_hash')}; "
                        f"{job_path} with these --set values gives {want}): "
                        + (f"{hint} to evaluate it" if hint else "the data, model or solver "
                           "settings differ; evaluate the run directory itself "
                           "(`mpitrain eval RUN_DIR`), which uses the run's own job.toml"))
