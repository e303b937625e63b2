"""Build the Cython kernels in kernels/ (OpenMP) into mpitrain._kernels.

Every kernels/NAME.pyx becomes the extension module mpitrain._kernels.NAME.
Set MPITRAIN_NO_OPENMP=1 to build without OpenMP (e.g. compilers without it).
Set MPITRAIN_KERNELS=name1,name2 to build only those kernels (development).
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = os.environ.get("MPITRAIN_NO_OPENMP", "0") != "1"
omp_flags = ["-fopenmp"] if openmp else []

extensions = [
    Extension(
        "mpitrain._kernels." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), "kernels"],
        extra_compile_args=["-O3", "-fno-fast-math"] + omp_flags,
        extra_link_args=omp_flags,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob("kernels/*.pyx"))
    if not os.environ.get("MPITRAIN_KERNELS")
    or os.path.splitext(os.path.basename(path))[0] in os.environ["MPITRAIN_KERNELS"].split(",")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
