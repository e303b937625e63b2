"""mpitrain: train models with parallel and distributed algorithms under MPI.

Layers (imports point down): _kernels (Cython, no MPI) → models (math on one shard) →
algorithms (the MPI loops) → runtime services (comm, data, checkpoint, metrics, config) → cli.
"""
__version__ = "0.1.0"
