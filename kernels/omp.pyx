# cython: language_level=3
"""OpenMP thread control for the kernels (omp_set_num_threads / omp_get_max_threads)."""
cimport openmp


def set_num_threads(int n):
    openmp.omp_set_num_threads(n)


def get_max_threads():
    return openmp.omp_get_max_threads()
