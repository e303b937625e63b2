"""Process-level rules of an MPI job: never hang, stop cleanly, pick thread counts.

- `collectively(world, fn)`: run `fn` on every rank; if it raises a `UserError` on any rank,
  every rank raises the same error (the lowest failing rank's message), so all exit together
  with one clean message.
- `abort_on_exception`: anything else that escapes on one rank is printed once (that rank's
  traceback) and the whole job is aborted with `MPI.COMM_WORLD.Abort`, so peers blocked in a
  collective do not wait forever.
- `StopSignals`: SIGTERM / SIGUSR1 only set a flag; the driver agrees on it at the next
  iteration boundary (one Allreduce MAX), checkpoints and exits 75.
"""
import os
import signal
import sys
import time
import traceback

from .errors import ERROR_CLASSES, UsageError, UserError


def collectively(world, fn, *args, **kwargs):
    """Call fn on every rank; a UserError on any rank becomes the same error on all ranks."""
    err = None
    result = None
    try:
        result = fn(*args, **kwargs)
    except UserError as exc:
        err = exc
    failed = world.comm.allreduce(world.rank if err is not None else world.size, op=_min_op())
    if failed < world.size:
        payload = (type(err).__name__, err.code, err.message) if world.rank == failed else None
        name, code, message = world.bcast_obj(payload, root=failed)
        if err is None or world.rank != failed:
            err = _rebuild(name, code, message)
        err.collective = True
        raise err
    return result


def _min_op():
    from mpi4py import MPI
    return MPI.MIN


def _rebuild(name, code, message):
    from . import errors
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, UserError)):
        cls = ERROR_CLASSES.get(code, UserError)
    return cls(message)


def report_user_error(err, rank, size):
    """Print a user error once: by rank 0 when all ranks share it, else by the rank that has it."""
    collective = getattr(err, "collective", False) or size == 1
    if not collective or rank == 0:
        where = "" if collective else f" (rank {rank})"
        sys.stderr.write(f"mpitrain: {err.kind}{where}: {err.message}\n")
        sys.stderr.flush()
    return collective


def abort(code, rank=0):
    """End the whole MPI job now (all ranks), with `code` where the launcher passes it on."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        from mpi4py import MPI
        if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
            MPI.COMM_WORLD.Abort(code)
    except Exception:  # pragma: no cover - best effort on the way out
        pass
    os._exit(code)


def internal_error(rank, size):
    """Print the current exception once, as this rank's, then abort the job."""
    tb = traceback.format_exc()
    prefix = f"[rank {rank}] " if size > 1 else ""
    sys.stderr.write("".join(prefix + line + "\n" for line in tb.rstrip().splitlines()))
    sys.stderr.write(f"mpitrain: internal error on rank {rank}; aborting all ranks\n")
    abort(1, rank)


class StopSignals:
    """SIGTERM / SIGUSR1 / SIGINT set a flag (a C handler: it works even while this rank is
    blocked in MPI); the driver polls `requested` at iteration boundaries and all ranks agree.
    A second signal ends the process at once. If the agreed stop has not ended the process
    `grace` seconds after the first signal (a peer is hung, so the boundary never comes), a
    watchdog thread ends it with status 128 + signal."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")

    def __init__(self, grace=None):
        self.grace = float(os.environ.get("MPITRAIN_STOP_GRACE", "120")) if grace is None \
            else grace

    def install(self):
        from ._kernels import signals as csig
        self._c = csig
        csig.install([getattr(signal, n) for n in self.SIGNALS if hasattr(signal, n)])
        import threading
        threading.Thread(target=self._watchdog, name="mpitrain-stop-watchdog",
                         daemon=True).start()
        return self

    def _watchdog(self):
        while not self._c.received():
            time.sleep(0.2)
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.grace:
            time.sleep(0.2)
        sig = self._c.received()
        sys.stderr.write(f"mpitrain: no clean stop {self.grace:.0f}s after "
                         f"{signal.Signals(sig).name} (a peer rank is not responding); "
                         "exiting without a new checkpoint\n")
        sys.stderr.flush()
        os._exit(128 + sig)

    @property
    def received(self):
        sig = self._c.received()
        return signal.Signals(sig).name if sig else None

    @property
    def requested(self):
        return bool(self._c.received())


def check_launch(world):
    """Refuse P singletons: Slurm asked for several tasks but MPI sees a world of 1."""
    ntasks = int(os.environ.get("SLURM_NTASKS", "1") or "1")
    in_job = "SLURM_JOB_ID" in os.environ or "SLURM_STEP_ID" in os.environ
    if (world.size == 1 and ntasks > 1 and in_job
            and os.environ.get("MPITRAIN_ALLOW_SINGLETON") != "1"):
        how = ("the tasks were started as unconnected singletons (plain `srun` without a "
               "working PMI)" if "SLURM_STEP_ID" in os.environ else
               "mpitrain was started without a launcher in the batch script")
        raise UsageError(
            f"SLURM_NTASKS={ntasks} but this MPI world has 1 rank: {how}. Launch with "
            "`srun --mpi=pmi2 ...` or `mpiexec -n $SLURM_NTASKS ...`; set "
            "MPITRAIN_ALLOW_SINGLETON=1 if you really want independent single-rank runs.")


def default_threads():
    """Threads per rank when the user sets none: the CPUs this process may use divided by the
    ranks sharing the node (MPICH's MPI_LOCALNRANKS, or Slurm's task layout)."""
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count() or 1
    local = 1
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"):
        v = os.environ.get(var, "").split("(")[0].split(",")[0]
        if v.isdigit() and int(v) > 0:
            local = int(v)
            break
    return max(1, cpus // local)


def set_thread_env(threads=None):
    """Export the thread count before numpy/BLAS/OpenMP start (call before importing them)."""
    n = threads or default_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    # Idle OpenMP threads sleep instead of spinning: several ranks per node, BLAS threads and
    # shared machines otherwise steal each other's cores (set ACTIVE on dedicated cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return int(os.environ["OMP_NUM_THREADS"])


class Clock:
    """Wall time of this run plus the time of earlier runs of the same job (after resume)."""

    def __init__(self, offset=0.0):
        self.t0 = time.perf_counter()
        self.offset = offset

    def elapsed(self):
        return self.offset + time.perf_counter() - self.t0


def fault_point(point, rank, step=None):
    """Test hook: MPITRAIN_FAULT="POINT:RANK:STEP:ACTION" (STEP may be *) makes rank RANK
    misbehave at POINT ("step" after a training step, "ckpt" in the middle of a checkpoint
    write) with ACTION raise | kill (SIGKILL itself) | exit (os._exit(3)) | hang. Unset in
    normal use; costs one dict lookup."""
    spec = os.environ.get("MPITRAIN_FAULT")
    if not spec:
        return
    try:
        p, r, s, action = spec.split(":")
    except ValueError:
        return
    if p != point or int(r) != rank or (s != "*" and step is not None and int(s) != step):
        return
    if action == "raise":
        raise RuntimeError(f"injected fault at {point} (step {step}) on rank {rank}")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "exit":
        os._exit(3)
    if action == "hang":
        while True:
            time.sleep(1)
