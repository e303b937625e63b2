"""What every algorithm provides to the driver, and what the driver gives it.

An algorithm is a class with
    name, summary             registry name and one line for --help
    MODEL_SCHEMA, SOLVER_SCHEMA   its [model] and [solver] keys (config.Field)
    DATA = dict(binary=..., dtype=...)   how its data is loaded
    RESHARDABLE               may a checkpoint be resumed at another world size?
and the methods
    setup()                   build the initial state (after data is loaded)
    step() -> dict            one iteration (collective); returns the metrics of that step
    done -> bool              finished (converged, or its budget is spent)
    state() -> dict           everything a bit-identical continuation needs (checkpoint.py)
    load_state(reader)        restore it from a checkpoint.Reader
    final_model() -> dict     arrays for final.h5 (path → array), e.g. {"model/w": w}
    summary_info() -> dict    extra figures for summary.json (optional)
    evaluate(ctx, model) -> dict  (classmethod) test metrics of a final model (`mpitrain eval`)
The collectives an algorithm makes are written in its step(), through ctx.world.
"""
import abc
import json

import numpy as np

from ..config import LINEAR_MODEL_SCHEMA


class Context:
    """What an algorithm may use: the world, the resolved job, the data shards, RNG streams,
    the progress printer and a phase timer."""

    def __init__(self, world, job, train, test, metrics=None):
        self.world = world
        self.job = job
        self.model = job["model"]
        self.solver = job["solver"]
        self.seed = job["job"]["seed"]
        self.train = train
        self.test = test
        self.metrics = metrics
        self.phase_seconds = {}

    def rng(self, purpose, *key):
        """A numpy Generator for `purpose` (and e.g. a global shard index), from the job seed.

        Streams depend only on (seed, purpose, key), never on the rank count."""
        words = [int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little") % (2**63)]
        ss = np.random.SeedSequence(self.seed, spawn_key=tuple(words) + tuple(int(k) for k in key))
        return np.random.Generator(np.random.PCG64(ss))

    def say(self, text):
        if self.metrics is not None:
            self.metrics.say(text)

    def phase(self, name):
        return _Phase(self.phase_seconds, name)

    def phase_info(self):
        return {f"t_{k}": round(v, 6) for k, v in self.phase_seconds.items()}


class _Phase:
    def __init__(self, acc, name):
        self.acc = acc
        self.name = name

    def __enter__(self):
        import time
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        import time
        self.acc[self.name] = self.acc.get(self.name, 0.0) + time.perf_counter() - self.t0


class Algorithm(abc.ABC):
    name = "?"
    summary = ""
    MODEL_SCHEMA = LINEAR_MODEL_SCHEMA
    SOLVER_SCHEMA = {}
    DATA = {"binary": True, "dtype": np.float64}
    RESHARDABLE = True
    RESHARD_REASON = ""
    # BLAS threads: results of threaded BLAS depend on the thread count, so algorithms whose
    # BLAS use is O(d) vector work run it single-threaded (bit-identical for any thread
    # count); GEMM-heavy ones (dense networks) set True to use the rank's threads.
    BLAS_THREADS = False
    SMOOTH_ONLY = False  # True: the job's [model] l1 must be 0 (checked by config.resolve)

    def __init__(self, ctx):
        self.ctx = ctx
        self.world = ctx.world

    @abc.abstractmethod
    def setup(self):
        """See the module docstring."""

    @abc.abstractmethod
    def step(self):
        """See the module docstring."""

    finished = False  # set with finish(reason) when converged or the budget is spent
    reason = ""

    @property
    def done(self):
        return self.finished

    def finish(self, reason):
        self.finished, self.reason = True, reason

    def restore_finish(self, reader, cap_reason=None, count=0, cap=0):
        """Restore finished/reason from a checkpoint. A run that ended only because it hit
        its cap (cap_reason) goes on when the resumed job raised the cap (count < cap)."""
        self.finished = bool(reader.get("finished"))
        self.reason = "" if reader.get("reason") == "-" else reader.get("reason")
        if self.finished and self.reason == cap_reason and count < cap:
            self.finished = False

    @abc.abstractmethod
    def state(self):
        """See the module docstring."""

    @abc.abstractmethod
    def load_state(self, reader):
        """See the module docstring."""

    @abc.abstractmethod
    def final_model(self):
        """See the module docstring."""

    def summary_info(self):
        return {}

    @classmethod
    def validate_job(cls, job, source):
        """Cross-key checks of a resolved job (raise JobError); none by default."""

    @classmethod
    def evaluate(cls, ctx, model):
        from ..errors import UsageError
        raise UsageError(f"{cls.name}: `mpitrain eval` is not defined for this algorithm")


def rng_state(gen):
    """A Generator's state as a JSON string (for checkpoints)."""
    return json.dumps(gen.bit_generator.state)


def set_rng_state(gen, text):
    gen.bit_generator.state = json.loads(text)
