"""The algorithms: one module per method (and baseline), registered by name.

Each module defines Algorithm subclasses and lists them in `ALGORITHMS`; the registry is
built by importing the modules listed in `MODULES`, so adding a method is adding its module
name here.
"""
import importlib

MODULES = ["lbfgs", "fadl", "psgd_mix", "dasvrda", "autoencoders", "mac", "parmac"]

_REGISTRY = None


def registry():
    """name → Algorithm class, for every algorithm module that is present."""
    global _REGISTRY
    if _REGISTRY is None:
        reg = {}
        for mod in MODULES:
            try:
                m = importlib.import_module(f"{__name__}.{mod}")
            except ModuleNotFoundError as exc:
                if exc.name == f"{__name__}.{mod}":
                    continue  # module not written (yet)
                raise
            for cls in getattr(m, "ALGORITHMS", []):
                reg[cls.name] = cls
        _REGISTRY = reg
    return _REGISTRY


def resolve_job(raw, source, overrides=()):
    """config.resolve against this registry: the validated job of a parsed job file."""
    from ..config import resolve
    return resolve(raw, source, overrides, registry())


def job_hash(job):
    """config.job_hash of a resolved job, with its algorithm's schema."""
    from ..config import job_hash as _hash
    return _hash(job, registry()[job["job"]["algorithm"]])
