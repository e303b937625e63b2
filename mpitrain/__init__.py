"""mpitrain: train models with parallel and distributed algorithms under MPI.

Layers (imports point down): _kernels (Cython, no MPI) → models (math on one shard) →
algorithms (the MPI loops) → runtime services (comm, data, checkpoint, metrics, config) → cli.

`mpitrain.load(RUN_DIR)` returns a trained model to use from Python (mpitrain/api.py; no MPI).
"""
__version__ = "0.1.0"


def load(path):
    """The trained model of a run directory or final.h5: `predict`, `decision_function`,
    `predict_proba` (linear), `encode`/`reconstruct` (autoencoders), `codes` (ParMAC)."""
    from .api import load as _load
    return _load(path)
