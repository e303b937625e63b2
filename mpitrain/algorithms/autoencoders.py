"""Stacked autoencoders: sae-greedy, slp, dae-stacked, dae-gradual (ALGORITHMS.md §3, §4).

The exact objectives are in the docstrings of ae_layerwise (greedy, stacked, gradual) and
ae_slp (synchronized layer-wise pre-training); the shared SGD/data-parallel machinery is in
ae_common, the model math in mpitrain/models/autoencoder.py, the elementwise kernels in
kernels/ae_fast.pyx.
"""
from .ae_layerwise import Gradual, Greedy, Stacked
from .ae_slp import SLP, layout, pipeline_ceiling

ALGORITHMS = [Greedy, SLP, Stacked, Gradual]

__all__ = ["ALGORITHMS", "Greedy", "SLP", "Stacked", "Gradual", "layout", "pipeline_ceiling"]
