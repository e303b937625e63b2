"""What every algorithm provides to the driver, and what the driver gives it.

An algorithm is a class with
    name, summary             registry name and one line for --help
    MODEL_SCHEMA, SOLVER_SCHEMA   its [model] and [solver] keys (schema.Field)
    DATA = dict(binary=..., dtype=...)   how its data is loaded
    RESHARDABLE               may a checkpoint be resumed at another world size?
and the methods
    setup()                   build the initial state (after data is loaded)
    step() -> dict            one iteration (collective); returns the metrics of that step
    done -> bool              finished (converged, or its budget is spent)
    STATE = {name: kind}      everything a bit-identical continuation needs, declared once
                              (mpitrain/state.py; merged along the class hierarchy, or
                              state_fields() when names depend on the instance)
    restored()                rebuild caches after a restore (optional)
    final_model() -> dict     arrays for final.h5 (path → array), e.g. {"model/w": w}
    summary_info() -> dict    extra figures for summary.json (optional)
    evaluate(ctx, model) -> dict  (classmethod) test metrics of a final model (`mpitrain eval`)
The collectives an algorithm makes are written in its step(), through ctx.world.
"""
import abc
import hashlib
import time

import numpy as np

from ..state import Bool, Str


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
        digest = hashlib.sha256(purpose.encode()).digest()
        words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
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
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.acc[self.name] = self.acc.get(self.name, 0.0) + time.perf_counter() - self.t0


class Algorithm(abc.ABC):
    name = "?"
    summary = ""
    MODEL_SCHEMA = {}  # its [model] keys (schema.Field); every algorithm sets its own
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

    # The declared state of every algorithm: whether it has finished, and why.
    STATE = {"finished": Bool(), "reason": Str()}
    # Stop reasons that only mean "the budget is spent": {reason: (counter attribute, solver
    # key of the cap)}. A resumed job whose cap was raised goes on (see restored()).
    CAPS = {}

    finished = False  # set with finish(reason) when converged or the budget is spent
    reason = ""

    @property
    def done(self):
        return self.finished

    def finish(self, reason):
        self.finished, self.reason = True, reason

    BUDGET_UNIT = "step"  # what one count of the first cap in CAPS is, for progress lines

    def budget(self):
        """(done, total, unit) for progress lines (step k/max, ETA), from the first cap in
        CAPS; None when the algorithm cannot say."""
        for counter, key in self.CAPS.values():
            try:
                return int(getattr(self, counter)), int(self.ctx.solver[key]), self.BUDGET_UNIT
            except (AttributeError, KeyError, TypeError, ValueError):
                return None
        return None

    def state_fields(self):
        """{name: kind} of the state a checkpoint holds: the STATE dicts of the class and its
        bases (a subclass's entry wins). Override to add names that depend on the instance."""
        out = {}
        for klass in reversed(type(self).__mro__):
            out.update(klass.__dict__.get("STATE", {}))
        return out

    def restored(self):
        """Called after the declared state was restored. A run that ended only because it hit
        its cap goes on when the resumed job raised the cap. Subclasses rebuilding caches
        call super().restored()."""
        if self.finished and self.reason in self.CAPS:
            counter, key = self.CAPS[self.reason]
            if getattr(self, counter) < self.ctx.solver[key]:
                self.finished, self.reason = False, ""

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

