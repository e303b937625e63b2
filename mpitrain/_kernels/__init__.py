"""Compiled Cython kernels (built from kernels/*.pyx). No MPI, no I/O."""
