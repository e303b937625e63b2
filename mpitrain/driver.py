"""The training loop every algorithm runs in: data, resume, steps, checkpoints, stop, output.

    for each step:  info = algorithm.step()           (the algorithm's collectives)
                    metrics.log(step, info)
                    stop = any rank got SIGTERM/SIGUSR1 or passed the time limit (Allreduce MAX)
                    checkpoint if stop or step % every == 0;  exit 75 if stop
    final.h5, summary.json, and a last checkpoint (so a requeued finished job ends at once)

The run directory holds job.toml (the resolved job), metrics.jsonl, checkpoints/, final.h5
and summary.json.
"""
import functools
import json
import os
import signal
import time

import numpy as np

from . import checkpoint, config, data, fileio, rundir, state
from . import model_file
from .algorithms import job_hash, registry, resolve_job
from .algorithms.base import Context
from .comm import ACTIVITY
from .errors import CheckpointError, Diverged, OutputError, Stopped, UsageError
from .metrics import Metrics
from .runtime import Clock, collectively, fault_point


def load_job(world, path, overrides=()):
    """The resolved job; its data paths resolved once (data.resolve_path: relative to the job
    file), so the run's job.toml records where the data was found."""
    raw = collectively(world, config.read_toml, path)
    job = collectively(world, resolve_job, raw, path, overrides)
    for key in ("train", "test"):
        job["data"][key] = data.resolve_path(job["data"][key], path)
    return job


def run_dir(job, job_path, out=None):
    if out:
        return out
    if job["job"]["out"]:
        return job["job"]["out"]
    stem = os.path.splitext(os.path.basename(job_path))[0]
    return os.path.join("runs", stem)


def load_data(world, job, cls, which=("train", "test")):
    d = job["data"]
    spec = dict(getattr(cls, "DATA", {}))
    common = dict(fmt=d["format"], features=d["features"], zero_based=d["zero_based"],
                  positive=d["positive"], binary=spec.get("binary", True),
                  normalize=d["normalize"], dtype=spec.get("dtype", np.float64),
                  label_column=d["label_column"])
    train = test = None
    if "train" in which:
        train = data.load(world, d["train"], group=d["train_group"], max_rows=d["max_rows"],
                          what="train", **common)
    if "test" in which and d["test"]:
        test = data.load(world, d["test"], group=d["test_group"], width_from=train,
                         what="test", **common)
    if spec.get("dense"):  # the algorithm needs dense rows: densify train and test alike
        for sh, name in ((train, "train"), (test, "test")):
            collectively(world, data.densify, sh, name)
    return train, test


def check_memory(cls, job, train):
    """Refuse, before anything is allocated, a model whose state cannot fit in this node's
    memory (a huge declared width: [data] features, a stray LIBSVM index). The estimate is
    the algorithm's `memory_bytes(job, train)` when it has one, else four dense float64
    vectors of the width (every algorithm here holds at least w, a gradient and two more)."""
    est = getattr(cls, "memory_bytes", None)
    need = int(est(job, train)) if est else 4 * 8 * int(train.d)
    avail = data.mem_available()
    if avail is None:
        return
    local = 1
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            local = int(v)
            break
    if need * local > avail:
        from .errors import DataError
        gib = 2.0 ** 30
        sizes = "".join(f", [model] {k} = {v}" for k, v in job["model"].items()
                        if isinstance(v, list) or (isinstance(v, int)
                                                   and not isinstance(v, bool)))
        raise DataError(f"{train.path}: {train.d} features, {train.rows} rows on this rank"
                        f"{sizes}: {cls.name} needs about {need / gib:.1f} GiB per rank, "
                        f"x {local} ranks on this node > {avail / gib:.1f} GiB available; "
                        "check [data] features, the data's feature indices and the model's "
                        "sizes")


def _prepare_out(world, out, fresh, resume):
    """Rank 0 makes the run directory, takes its run lock (rundir.py; released at the end of
    run(), or found stale after a crash) and, with --fresh, moves an earlier run's results
    into OUT/previous-<time>/. Without --fresh or --resume, earlier results are refused."""
    def make():
        if fresh and resume:
            raise UsageError("--fresh and --resume contradict each other: --resume continues "
                             "the run in the directory, --fresh sets its results aside")
        if world.rank != 0:
            return None
        try:
            os.makedirs(out, exist_ok=True)
            probe = os.path.join(out, f".write-test{os.getpid()}")
            with open(probe, "w") as fh:
                fh.write("ok")
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"{out}: run directory is not writable ({exc.strerror})")
        _, note = rundir.lock(out)
        try:
            found = rundir.earlier_results(out)
            if found and not resume and not fresh:
                raise UsageError(f"{out} already holds the results of an earlier run "
                                 f"({', '.join(found)}): continue it with --resume auto, or "
                                 "pass --fresh to move them into OUT/previous-<time>/ and "
                                 "start over")
            aside = rundir.set_aside(out) if fresh else None
            os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
        except BaseException:
            rundir.release(out)
            raise
        return [m for m in (note, aside and f"{out}: earlier results moved to {aside}") if m]
    for line in collectively(world, make) or []:
        print(f"mpitrain: {line}", flush=True)


def _driver_state(world, step, clock):
    # calls, bytes and microseconds inside MPI: all three continue across a resume
    counters = np.array([[world.calls, world.bytes, round(world.seconds * 1e6)]],
                        dtype=np.int64)
    return {"_step": np.int64(step), "_elapsed": np.float64(clock.elapsed()),
            "_comm": checkpoint.Sharded(counters, world.rank, world.size)}


def _resume(world, alg, cls, job, ckdir, resume, want):
    def locate():
        if world.rank != 0:
            return None
        explain = functools.lru_cache(None)(lambda h: config.older_defaults_hint(job, cls, h))
        return checkpoint.find(ckdir, resume, dict(want, explain=explain))
    found = world.bcast_obj(collectively(world, locate))
    path, manifest = found
    if path is None:
        return None

    def check():
        if int(manifest["world_size"]) != world.size and not cls.RESHARDABLE:
            raise CheckpointError(f"{path}: written by {manifest['world_size']} ranks; "
                                  f"{cls.name} cannot resume on {world.size}: "
                                  f"{cls.RESHARD_REASON or 'its state is tied to the layout'}")
        reader = checkpoint.Reader(path, manifest)
        try:
            state.restore(alg, reader)
            alg.restored()
            step = int(reader.get("_step"))
            elapsed = float(reader.get("_elapsed"))
            if int(manifest["world_size"]) == world.size:
                row = reader.rows("_comm", world.rank, world.rank + 1)[0]
                world.restore_counters(row[0], row[1])
                world.seconds = float(row[2]) / 1e6 if len(row) > 2 else 0.0
        finally:
            reader.close()
        return step, elapsed
    step, elapsed = collectively(world, check)
    return path, step, elapsed


def _write_final(world, out, model, manifest):
    def fill(f):
        m = f.create_group("manifest")
        for k, v in manifest.items():
            m.attrs[k] = v
        for name, arr in model.items():
            f.create_dataset(name, data=np.asarray(arr))
        f.attrs["complete"] = 1

    def write():
        if world.rank == 0:
            fileio.write_h5(os.path.join(out, "final.h5"), fill, what="the final model")
    collectively(world, write)


def _write_rank0(world, path, text, what):
    """Rank 0 writes a small text file of the run directory atomically (collective)."""
    collectively(world, lambda: fileio.atomic_write(path, text, what=what)
                 if world.rank == 0 else None)


def run(world, job_path, *, out=None, resume=None, overrides=(), fresh=False, signals=None,
        stream=None):
    """Run a job to completion (returns the summary dict) or raise Stopped after a checkpoint."""
    job = load_job(world, job_path, overrides)
    cls = registry()[job["job"]["algorithm"]]
    out = run_dir(job, job_path, out)
    job["job"]["out"] = out
    if signals is not None:
        signals.stall_timeout = job["job"]["stall_timeout"]
    _prepare_out(world, out, fresh, resume)
    ckdir = os.path.join(out, "checkpoints")
    _write_rank0(world, os.path.join(out, "job.toml"),
                 config.dump_toml(job) if world.rank == 0 else None, "the resolved job")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    blas_threads = _limit_blas(threads if cls.BLAS_THREADS else 1)
    t_load = time.perf_counter()
    train, test = load_data(world, job, cls)
    t_load = time.perf_counter() - t_load
    collectively(world, check_memory, cls, job, train)
    ctx = Context(world, job, train, test)
    alg = cls(ctx)
    alg.setup()

    manifest = {"algorithm": cls.name, "job_hash": job_hash(job),
                "seed": job["job"]["seed"]}
    step, clock, resumed_from = 0, Clock(), None
    if resume:
        got = _resume(world, alg, cls, job, ckdir, resume, manifest)
        if got is not None:
            resumed_from, step, elapsed = got
            clock = Clock(elapsed)
    metrics = Metrics(world, out, cls.name, job["job"]["log_every"],
                      resume_step=step if resumed_from else None, stream=stream)
    ctx.metrics = metrics
    metrics.budget = getattr(alg, "budget", None)  # optional: (done, total, unit) or None
    if resumed_from:
        metrics.say(f"[{cls.name}] resumed from {resumed_from} at step {step} "
                    f"(P={world.size})")
    elif resume:
        metrics.say(f"[{cls.name}] no checkpoint in {ckdir}: starting from the beginning")
    metrics.say(f"[{cls.name}] P={world.size} ranks x {threads} threads (BLAS {blas_threads}); "
                f"train "
                f"{train.n} x {train.d} ({'CSR' if train.sparse else 'dense'}"
                f"{', nnz %d' % _global_nnz(world, train) if train.sparse else ''}); "
                f"data loaded in {t_load:.2f}s; out {out}")

    every = job["checkpoint"]["every"]
    keep = job["checkpoint"]["keep"]
    limit = job["job"]["time_limit"]
    start_wall = time.perf_counter()

    def save(step):
        ACTIVITY.phase = "checkpoint"
        values = state.collect(alg)
        values.update(_driver_state(world, step, clock))
        path = checkpoint.save(world, ckdir, step, values, manifest, keep)
        ACTIVITY.phase = "step"
        return path

    ACTIVITY.phase, ACTIVITY.step = "step", step
    if signals is not None:
        signals.guard(True, world.rank)
    try:
        while not alg.done:
            info = alg.step()
            step += 1
            ACTIVITY.step = step
            fault_point("step", world.rank, step)
            info.update(ctx.phase_info())
            metrics.log(step, clock.elapsed(), info)
            over_time = bool(limit) and time.perf_counter() - start_wall > limit
            # One Allreduce MAX per step: the stop (signal number, time limit) and divergence.
            sig, over_time, *bad = world.agree(
                [signals.signum if signals is not None else 0, over_time] + _nonfinite(info))
            if any(bad):
                _diverged(step, [q for q, b in zip(FINITE_KEYS, bad) if b])
            if sig or over_time:
                if signals is not None:
                    signals.agreed_stop = True
                path = save(step)
                why = signal.Signals(sig).name if sig else "time limit"
                metrics.say(f"[{cls.name}] stop requested ({why}): checkpoint {path} at step "
                            f"{step}; resume with --resume auto")
                raise Stopped(path)
            if every and step % every == 0:
                save(step)
        model = alg.final_model()
        bad = world.agree([int(not _finite(model))])
        if bad[0]:
            _diverged(step, ["the final model's weights"])
        path = save(step)
        model, attrs = model_file.contents(world, cls, job, train, model,
                                           dict(manifest, step=step, world_size=world.size))
        _write_final(world, out, model, attrs)
        calls = world.calls
        total_bytes = world.reduce_obj(int(world.bytes))
        summary = {"algorithm": cls.name, "steps": step, "time": clock.elapsed(),
                   "world_size": world.size, "threads": threads,
                   "comm_calls_rank0": calls, "comm_bytes_all_ranks": int(total_bytes),
                   "final_checkpoint": path}
        summary.update(alg.summary_info())
        _write_rank0(world, os.path.join(out, "summary.json"),
                     json.dumps(summary, indent=2, default=float), "the summary")
        metrics.say(f"[{cls.name}] done: {step} steps in {clock.elapsed():.2f}s "
                    f"(stop: {alg.reason or 'budget spent'}); model "
                    f"{os.path.join(out, 'final.h5')}")
        return summary
    finally:
        if signals is not None:
            signals.guard(False)
        ACTIVITY.phase = "end"
        metrics.close()
        if world.rank == 0:
            rundir.release(out)


FINITE_KEYS = ("objective", "loss", "grad_norm", "recon")  # what a step may report


def _nonfinite(info):
    """Flags for the step's reported quantities that are NaN or infinite (one per key)."""
    return [int(k in info and isinstance(info[k], (int, float, np.floating))
                and not np.isfinite(info[k])) for k in FINITE_KEYS]


def _finite(model):
    return all(np.all(np.isfinite(a)) for a in map(np.asarray, model.values())
               if a.dtype.kind in "fc")


def _diverged(step, what):
    """Every rank raises the same Diverged error (the flags came from World.agree)."""
    err = Diverged(f"step {step}: {' and '.join(what)} not finite (NaN or infinity); no "
                   "checkpoint or final model written for it, earlier checkpoints are intact; "
                   "lower the step size or learning rate, or check the data")
    err.collective = True
    raise err


_BLAS_LIMIT = None


def _limit_blas(n):
    """Set the BLAS thread count of this process (threadpoolctl); returns it."""
    global _BLAS_LIMIT
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    _BLAS_LIMIT = threadpool_limits(limits=n, user_api="blas")
    return n


def _global_nnz(world, shard):
    return int(world.reduce_obj(shard.nnz))


read_model = model_file.read_arrays  # arrays of a final.h5 (path → array); None: a checkpoint


def evaluate(world, job_path, model_path, overrides=(), data_path=None):
    """Test metrics of a final model or a checkpoint, on the job's test data (or train; or
    `data_path` in place of the test data). The model must be this job's: the job hash in
    its manifest must equal the job's (else a DataError, exit 65)."""
    job = load_job(world, job_path, overrides)
    cls = registry()[job["job"]["algorithm"]]
    if not os.path.exists(model_path):
        from .errors import InputMissing
        collectively(world, _raise, InputMissing(f"{model_path}: model file not found"))
    collectively(world, model_file.check_job, model_path, job, job_path)
    if data_path:
        job["data"]["test"] = data_path
    train, test = load_data(world, job, cls)
    ctx = Context(world, job, train, test)
    model = collectively(world, read_model, model_path)
    if model is None:  # a checkpoint: restore the algorithm and ask it for its model
        manifest = collectively(world, checkpoint.verify, model_path)
        alg = cls(ctx)
        alg.setup()
        reader = checkpoint.Reader(model_path, manifest)
        try:
            state.restore(alg, reader)
            alg.restored()
        finally:
            reader.close()
        model = alg.final_model()
    try:
        return cls.evaluate(ctx, model)
    except KeyError as exc:  # guarded by the job hash; a hand-made file may still miss one
        from .errors import DataError
        raise DataError(f"{model_path}: the model has no array {exc} that "
                        f"{job['job']['algorithm']} with this job's [model] needs")


def _raise(err):
    raise err
