"""The types of a job-file schema: `Field` (one key: type, default, help, choices, range,
whether it determines the result) and the value checks. Algorithms declare their [model] and
[solver] sections with these; mpitrain/config.py builds and checks whole jobs from them."""
import math

from .errors import JobError

REQUIRED = object()


class Field:
    """One key of a job-file section.

    type: int | float | str | bool | "list[int]" | "list[float]" | "list[str]".
    affects_result: False for keys that may change between a run and its resume
    (iteration caps, tolerances, logging, output), so they are left out of the job hash.
    hash_omits: for a key added after runs were written, the value that reproduces what those
    runs did; at that value the key is left out of the job hash, so their checkpoints and
    models still match (a later change of the default does not change this value)."""

    def __init__(self, type, default=REQUIRED, help="", choices=None, min=None,
                 affects_result=True, max=None, hash_omits=None):
        self.type = type
        self.default = default
        self.help = help
        self.choices = choices
        self.min = min
        self.affects_result = affects_result
        self.max = max
        self.hash_omits = hash_omits

    def type_name(self):
        return self.type if isinstance(self.type, str) else self.type.__name__

    def check(self, value, where):
        t = self.type
        if isinstance(t, str) and t.startswith("list["):
            inner = {"int": int, "float": float, "str": str}[t[5:-1]]
            if not isinstance(value, list):
                raise JobError(f"{where} must be a list of {t[5:-1]}, got {value!r}")
            return [_coerce(inner, v, where) for v in value]
        value = _coerce(t, value, where)
        if self.choices is not None and value not in self.choices:
            raise JobError(f"{where} = {value!r} is not allowed; allowed values: "
                           + ", ".join(repr(c) for c in self.choices))
        if self.min is not None and value < self.min:
            raise JobError(f"{where} = {value!r} must be >= {self.min}")
        if self.max is not None and value > self.max:
            raise JobError(f"{where} = {value!r} must be at most {self.max}")
        return value


INT_RANGE = (-2**63, 2**63 - 1)  # what checkpoints, manifests and numpy can hold


def _coerce(t, value, where):
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise JobError(f"{where} = {value} is out of range")
        return float(value)
    if t is int and isinstance(value, bool) or not isinstance(value, t):
        raise JobError(f"{where} must be of type {t.__name__}, got {type(value).__name__} "
                       f"{value!r}")
    if t is float and not math.isfinite(value):
        raise JobError(f"{where} = {value!r} must be a finite number")
    if t is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise JobError(f"{where} = {value} is out of range (at most {INT_RANGE[1]}, a 64-bit "
                       "integer)")
    return value
