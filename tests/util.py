"""Test helpers: run the CLI as a subprocess (under mpiexec), write job files."""
import os
import signal
import subprocess
import sys
import time

from mpitrain.proctree import descendants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else "mpiexec"


def env(threads=1, **extra):
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
              "PYTHONUNBUFFERED": "1"})
    for k in list(e):
        if k.startswith(("PMI_", "PMIX_", "MPI_LOCAL", "HYDRA_", "SLURM_")):
            del e[k]  # a test run inside mpiexec must not leak its PMI into the child
    e.update({k: str(v) for k, v in extra.items()})
    return e


def cli(args, nranks=1, timeout=120, threads=1, extra_env=None, cwd=None):
    """Run `mpitrain ARGS` (under mpiexec -n nranks when > 1); returns CompletedProcess."""
    cmd = [sys.executable, "-m", "mpitrain"] + list(args)
    if nranks > 1:
        cmd = [mpiexec(), "-n", str(nranks)] + cmd
    return subprocess.run(cmd, env=env(threads, **(extra_env or {})), timeout=timeout,
                          capture_output=True, text=True, cwd=cwd)


def start(args, nranks=1, threads=1, extra_env=None):
    """Start `mpitrain ARGS` in the background (its own process group)."""
    cmd = [sys.executable, "-m", "mpitrain"] + list(args)
    if nranks > 1:
        cmd = [mpiexec(), "-n", str(nranks)] + cmd
    return subprocess.Popen(cmd, env=env(threads, **(extra_env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path_fn, timeout=60.0, interval=0.05):
    """Poll until path_fn() is true; returns the time waited."""
    t0 = time.time()
    while not path_fn():
        if time.time() - t0 > timeout:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
    return time.time() - t0


def kill_group(proc, sig=signal.SIGKILL):
    """Send sig to proc, its process group and every descendant (ranks included)."""
    pids = descendants(proc.pid)
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def sigterm_after_steps(args, out, steps, nranks=2, timeout=90):
    """Start `mpitrain ARGS`, wait until OUT/metrics.jsonl has `steps` records, send SIGTERM
    to the launcher, and return (returncode, stderr) once it has exited."""
    # rank 0 sleeps 0.2 s after each step (numerics untouched), so that the signal lands
    # mid-run however fast the machine is
    p = start(args, nranks=nranks, extra_env={"MPITRAIN_FAULT": "step:0:*:sleep0.2"})
    metrics = os.path.join(out, "metrics.jsonl")
    try:
        wait_for(lambda: os.path.exists(metrics)
                 and sum(1 for _ in open(metrics)) >= steps, timeout)
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        kill_group(p)
    return p.returncode, err


def write_job(path, sections):
    """Write a job file from {section: {key: value}}, atomically (temporary name, rename), so
    that ranks of an MPI test may all write the same file while others read it."""
    from mpitrain.config import dump_toml
    from mpitrain.fileio import atomic_write
    atomic_write(path, dump_toml(sections))
    return str(path)


def reseal_checkpoint(path):
    """Recompute a checkpoint's SHA-256 header after a test edited its HDF5 body with h5py
    (to fake another job's or a newer format's file that is otherwise intact)."""
    import hashlib
    from mpitrain import checkpoint
    with open(path, "rb") as fh:
        body = fh.read()[checkpoint.USERBLOCK:]
    head = checkpoint.MAGIC + (f"length {len(body)}\nsha256 "
                               f"{hashlib.sha256(body).hexdigest()}\n").encode()
    with open(path, "r+b") as fh:
        fh.write(head.ljust(checkpoint.USERBLOCK, b"\0"))
