"""Process-level rules of an MPI job: never hang, stop cleanly, pick thread counts.

- `collectively(world, fn)`: run `fn` on every rank; if it raises a `UserError` on any rank,
  every rank raises the same error (the lowest failing rank's message), so all exit together
  with one clean message.
- `abort_on_exception`: anything else that escapes on one rank is printed once (that rank's
  traceback) and the whole job is aborted with `MPI.COMM_WORLD.Abort`, so peers blocked in a
  collective do not wait forever.
- `StopSignals`: SIGTERM / SIGUSR1 / SIGHUP / SIGINT only set a flag; the driver agrees on it
  at the next iteration boundary (one Allreduce MAX), checkpoints and exits 75. Its monitor
  thread ends a job whose ranks stopped meeting (stall_timeout, stop grace) naming the ranks.
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
    failed = world.reduce_obj(world.rank if err is not None else world.size, op="min")
    if failed < world.size:
        payload = (type(err).__name__, err.code, err.message) if world.rank == failed else None
        name, code, message = world.bcast_obj(payload, root=failed)
        if err is None or world.rank != failed:
            err = _rebuild(name, code, message)
        err.collective = True
        raise err
    return result


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


ABORT_FLUSH_S = 0.3  # seconds between the last line and MPI Abort


def abort(code, rank=0):
    """End the whole MPI job now (all ranks), with `code` where the launcher passes it on."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        from mpi4py import MPI
        if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
            # the launcher forwards this rank's output through a pipe and tears the job down
            # on Abort; a moment first, so the line just written is not lost in that race
            # (seen once in a full-suite run: exit 143 with an empty stderr)
            time.sleep(ABORT_FLUSH_S)
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
    """Stop signals, the stop grace, the stall detector and the exit guard of one rank.

    Stops. SIGTERM, SIGUSR1, SIGHUP and SIGINT go to a C handler (kernels/signals.pyx) that
    records the first one, even while this rank is blocked in MPI; the driver polls
    `signum` at iteration boundaries and all ranks agree (`World.agree`), checkpoint and
    exit 75. Repeated deliveries (Slurm, systemd, docker and cgroups signal every process and
    the launcher forwards the same signal) are one stop; only a second SIGINT at least 1 s
    after the first (Ctrl-C typed again) ends the process at once (130).

    Monitor thread (P > 1), every `POLL` seconds:
    - answers peers' status queries on a private duplicate of COMM_WORLD;
    - if this rank has waited inside one World collective longer than the limit, asks every
      peer what it is doing (inside a collective / computing, in which phase and step /
      no answer within `ASK` seconds) and the lowest waiting rank ends the job with one line
      naming the ranks that did not arrive. The limit is `[job] stall_timeout` (exit 69);
      while a stop signal is pending and not yet agreed it is `grace` (MPITRAIN_STOP_GRACE,
      exit 128 + signal). The wait counts only time spent waiting for peers: this rank's own
      step or checkpoint write never counts, and once the stop is agreed (every rank reached
      the boundary) the grace no longer applies, so a long checkpoint write still completes.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGHUP", "SIGINT")
    POLL = 0.2
    _QUERY, _REPLY = 1, 2

    def __init__(self, grace=None):
        self.grace = float(os.environ.get("MPITRAIN_STOP_GRACE", "120")) if grace is None \
            else grace
        self.stall_timeout = 0.0
        self.agreed_stop = False
        self._side = None
        self._thread = None
        self._closing = False
        self._pending = []
        self._qid = 0

    def install(self, comm=None):
        """Install the C handler; with a communicator of several ranks (collective over it),
        start the monitor thread."""
        from ._kernels import signals as csig
        self._c = csig
        csig.install([getattr(signal, n) for n in self.SIGNALS if hasattr(signal, n)])
        if comm is not None and comm.Get_size() > 1:
            import threading
            self._side = comm.Dup()
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
            self._thread = threading.Thread(target=self._monitor, name="mpitrain-monitor",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self):
        """Stop the monitor thread (before MPI finalises)."""
        self._closing = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def guard(self, running, rank=0):
        """Arm the exit guard while the training loop runs: a C-level exit of this process
        (any status) then becomes status 1 with one line, never a silent success."""
        msg = (f"mpitrain: rank {rank} exited in the middle of the run (a library called "
               "exit()); the job failed, resume with --resume auto\n").encode()
        self._c.guard(running, msg)

    @property
    def signum(self):
        """The first stop signal's number (0: none)."""
        return self._c.received()

    # -- monitor thread ---------------------------------------------------------------------
    def _monitor(self):
        from mpi4py import MPI
        from .comm import ACTIVITY
        from .errors import EX_STALLED
        reported, sig_seen = None, None
        while not self._closing:
            self._serve(MPI, ACTIVITY)
            coll, waited, phase, step = ACTIVITY.snapshot()
            sig = self._c.received()
            if sig and sig_seen is None:
                sig_seen = time.monotonic()
            if coll is not None and reported != ACTIVITY.since:
                stop_wait = min(waited, time.monotonic() - sig_seen) if sig else 0.0
                if sig and not self.agreed_stop and phase != "checkpoint" \
                        and 0 < self.grace < stop_wait:
                    reported = ACTIVITY.since
                    self._inquire(MPI, ACTIVITY, coll, stop_wait, self.grace, 128 + sig,
                                  f"stop ({signal.Signals(sig).name}) not completed within "
                                  f"MPITRAIN_STOP_GRACE={self.grace:g}s")
                elif 0 < self.stall_timeout < waited:
                    reported = ACTIVITY.since
                    self._inquire(MPI, ACTIVITY, coll, waited, self.stall_timeout,
                                  EX_STALLED, f"stalled job ([job] stall_timeout = "
                                  f"{self.stall_timeout:g}s)")
            time.sleep(self.POLL)

    def _send(self, obj, dest, tag):
        self._pending = [r for r in self._pending if not r.Test()]
        self._pending.append(self._side.isend(obj, dest=dest, tag=tag))

    def _serve(self, MPI, act):
        """Answer every pending status query."""
        st = MPI.Status()
        while self._side.Iprobe(source=MPI.ANY_SOURCE, tag=self._QUERY, status=st):
            qid = self._side.recv(source=st.Get_source(), tag=self._QUERY)
            self._send((qid, act.snapshot()), st.Get_source(), self._REPLY)

    def _inquire(self, MPI, act, coll, waited, limit, code, what):
        """Ask every peer what it is doing; the lowest waiting rank prints one line naming
        those that did not arrive and aborts the job with `code`."""
        since = act.since
        ask = max(3.0, min(10.0, limit / 2))
        peers = [r for r in range(self.size) if r != self.rank]
        self._qid += 1
        for r in peers:
            self._send(self._qid, r, self._QUERY)
        answers = {}
        st = MPI.Status()
        t0 = time.monotonic()
        while len(answers) < len(peers) and time.monotonic() - t0 < ask:
            self._serve(MPI, act)
            while self._side.Iprobe(source=MPI.ANY_SOURCE, tag=self._REPLY, status=st):
                qid, snap = self._side.recv(source=st.Get_source(), tag=self._REPLY)
                if qid == self._qid:
                    answers[st.Get_source()] = snap
            time.sleep(0.05)
        if act.since != since:  # this rank moved on meanwhile: no stall
            return
        waiting = [self.rank] + [r for r, a in answers.items() if a[0] is not None]
        if min(waiting) != self.rank:  # the lowest waiting rank reports (one line)
            time.sleep(ask + 5.0)
            if act.since != since:
                return
        late = []
        for r in peers:
            a = answers.get(r)
            if a is None:
                late.append(f"rank {r} (no answer: stopped, dead or blocked)")
            elif a[0] is None:
                late.append(f"rank {r} (busy in {a[2]} for {a[1]:.1f}s at step {a[3]})")
        if not late:
            late = [f"rank {r} (waiting in {a[0]} at step {a[3]})"
                    for r, a in answers.items() if a[0] != coll]
        sys.stderr.write(f"mpitrain: {what}: rank {self.rank} waited {waited:.1f}s in {coll} "
                         f"at step {act.step} for {', '.join(late) or 'its peers'}; aborting "
                         "all ranks (checkpoints already written are intact)\n")
        sys.stderr.flush()
        abort(code, self.rank)


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
    write) with ACTION raise | kill (SIGKILL itself) | exit (os._exit(3)) | exit0 (C exit(0),
    as a library calling exit would) | hang | sleepN (sleep N seconds, then go on). Unset in
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
    if action == "exit0":
        import ctypes
        sys.stdout.flush()
        ctypes.CDLL(None).exit(0)
    if action.startswith("sleep"):
        time.sleep(float(action[5:]))
    if action == "hang":
        while True:
            time.sleep(1)
