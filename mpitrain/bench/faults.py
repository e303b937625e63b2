"""Fault and bad-input matrix (issue 10): signals, stalls, damaged checkpoints, full disks, bad inputs, through the real CLI.

Every case runs `mpitrain` as a subprocess (under mpiexec at P = 2, directly at P = 1) with a
hard timeout, on tiny data made here (dense and CSR HDF5, LIBSVM, .npy), and judges what an
operator would see: the exit code, exactly one `mpitrain:` line and no traceback for errors,
every process of the job gone, checkpoints byte-identical or resumable, and for stops a
checkpoint, exit 75 and a resume bit-identical to an uninterrupted run. A case is clean when
every check holds; otherwise its row says what broke. The table and counts go to report.md and
results.json (compare with the 219 / 150 / 69 of issue 10).
"""
import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable

import numpy as np

from ..proctree import alive, descendants, kill_tree, rank_pids
from .common import mpiexec, table, write_report

# A launcher that slows every training step by MPITRAIN_TEST_STEP_DELAY seconds (numerics
# untouched) so that a signal sent from outside lands mid-run.
SHIM = """\
import os, sys, time
from mpitrain.algorithms import registry
_delay = float(os.environ.get("MPITRAIN_TEST_STEP_DELAY", "0"))
for _cls in registry().values():
    def _slow(self, _orig=_cls.step):
        time.sleep(_delay)
        return _orig(self)
    _cls.step = _slow
from mpitrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


# -- cases and bookkeeping ---------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """One row of the matrix: `run(bench)` returns (got, problems); clean = no problems."""
    name: str
    group: str
    expected: str
    run: Callable
    quick: bool = False


class Skip(Exception):
    """A case that cannot run here (reason); reported as skipped, counted neither way."""


@dataclasses.dataclass
class Outcome:
    name: str
    group: str
    expected: str
    got: str
    clean: object  # True, False, or None when skipped
    problems: list
    seconds: float


def judge(case, bench):
    """Run one case; a bench-side exception (the harness itself failing) is a non-clean row
    whose `got` says so, never a crash of the whole matrix."""
    t0 = time.perf_counter()
    try:
        got, problems = case.run(bench)
    except Skip as e:
        return Outcome(case.name, case.group, case.expected, f"skipped: {e}", None, [], 0.0)
    except Exception as e:  # noqa: BLE001 - the harness must finish every row
        got, problems = f"harness error: {type(e).__name__}: {e}", [
            "harness: " + traceback.format_exc().strip().splitlines()[-1]]
    finally:
        bench.cleanup()
    got, problems = got.replace(bench.root, "W"), [x.replace(bench.root, "W") for x in problems]
    return Outcome(case.name, case.group, case.expected, got, not problems, list(problems),
                   time.perf_counter() - t0)


def counts(outcomes):
    """(cases run, clean, defects); skipped cases (clean is None) count in none of them."""
    ran = [o for o in outcomes if o.clean is not None]
    clean = sum(1 for o in ran if o.clean)
    return len(ran), clean, len(ran) - clean


# -- processes ----------------------------------------------------------------------------------
def _env(delay=0.0, **extra):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith(("PMI_", "PMIX_", "MPI_LOCAL", "HYDRA_", "SLURM_", "MPITRAIN_")):
            del e[k]
    e.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    if delay:
        e["MPITRAIN_TEST_STEP_DELAY"] = str(delay)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def command(args, nranks=1, delay=0.0):
    py = [sys.executable, "-c", SHIM] if delay else [sys.executable, "-m", "mpitrain"]
    return ([mpiexec(), "-n", str(nranks)] if nranks > 1 else []) + py + list(args)


@dataclasses.dataclass
class Res:
    rc: object  # int, or None when it outlived its timeout (then killed)
    out: str
    err: str
    seconds: float
    strays: list


# -- checks -------------------------------------------------------------------------------------
def error_lines(err):
    return [ln for ln in err.splitlines() if ln.startswith("mpitrain:")]


WORKDIR = ["/nonexistent"]  # the bench's working directory, shown as W in the table


def show(res):
    """A short `got` text: exit code, time, the error line."""
    lines = error_lines(res.err)
    rc = "timeout (killed)" if res.rc is None else f"rc {res.rc}"
    msg = f"; `{lines[0].replace(WORKDIR[0], 'W')[:140]}`" if len(lines) == 1 else (f"; {len(lines)} error lines"
                                                          if lines else "")
    tb = "; traceback" if "Traceback" in res.err else ""
    return f"{rc} in {res.seconds:.1f}s{msg}{tb}".replace("|", "/")


def check_error(res, code, kind=None, names=(), bound=None):
    """Problems of a clean user-error exit: code, one `mpitrain: KIND` line naming NAMES, no
    traceback, no process left, within `bound` seconds."""
    probs = []
    if res.rc != code:
        probs.append(f"exit {res.rc}, expected {code}")
    lines = error_lines(res.err)
    if len(lines) != 1:
        probs.append(f"{len(lines)} mpitrain: lines")
    elif kind and not lines[0].startswith(f"mpitrain: {kind}"):
        probs.append(f"line is not `{kind}`")
    elif names:
        probs += [f"line does not name {n!r}" for n in names if n not in lines[0]]
    if "Traceback" in res.err:
        probs.append("traceback")
    if res.strays:
        probs.append(f"processes left: {res.strays}")
    if bound and res.seconds > bound:
        probs.append(f"took {res.seconds:.1f}s > {bound}s")
    return probs


def ckpt_files(out):
    from ..checkpoint import candidates
    d = os.path.join(out, "checkpoints")
    return sorted(candidates(d), reverse=True) if os.path.isdir(d) else []


def ckpt_step(path):
    return int(os.path.basename(path)[5:14])


def verify_all(out, ignore=()):
    """(newest step or None, problems): every complete-named checkpoint must verify (except
    the files in `ignore`: strays a case put there itself)."""
    from ..checkpoint import verify
    probs = []
    files = [f for f in ckpt_files(out) if f not in ignore]
    for f in files:
        try:
            verify(f)
        except Exception as e:  # noqa: BLE001
            probs.append(f"checkpoint {os.path.basename(f)} does not verify: {e}")
    return (ckpt_step(files[0]) if files else None), probs


def snapshot(out):
    res = {}
    for f in ckpt_files(out):
        with open(f, "rb") as fh:
            res[f] = fh.read()
    return res


def final_model(out):
    from ..driver import read_model
    return read_model(os.path.join(out, "final.h5"))


def same_model(a, b):
    if sorted(a) != sorted(b):
        return False
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


# -- data -------------------------------------------------------------------------------------------
def make_data(d):
    """Tiny seeded sets: dense HDF5 (300 × 12, values in [0,1]), CSR HDF5 (300 × 40), the
    same CSR rows as LIBSVM text and the dense rows as .npy (label column first)."""
    import h5py
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    n, p = 300, 12
    X = rng.random((n, p))
    w = rng.standard_normal(p)
    y = np.where((X - 0.5) @ w + 0.3 * rng.standard_normal(n) > 0, 1.0, -1.0)
    paths = {"dense": os.path.join(d, "dense.h5"), "csr": os.path.join(d, "csr.h5"),
             "svm": os.path.join(d, "train.svm"), "npy": os.path.join(d, "train.npy")}
    with h5py.File(paths["dense"], "w") as f:
        f["train/X"], f["train/y"] = X, y
    S = sp.random(n, 40, density=0.15, random_state=1, format="csr")
    S.data = np.round(S.data, 3) + 0.001
    ys = np.where(S @ rng.standard_normal(40) > 0, 1.0, -1.0)
    with h5py.File(paths["csr"], "w") as f:
        g = f.create_group("train")
        g["indptr"], g["indices"], g["data"], g["y"] = (S.indptr.astype(np.int64), S.indices,
                                                          S.data, ys)
        g.attrs["shape"] = np.array(S.shape)
    with open(paths["svm"], "w") as fh:
        for i in range(n):
            lo, hi = S.indptr[i], S.indptr[i + 1]
            feats = " ".join(f"{j + 1}:{v:g}" for j, v in zip(S.indices[lo:hi], S.data[lo:hi]))
            fh.write(f"{int(ys[i])} {feats}\n")
    np.save(paths["npy"], np.column_stack([y, X]))
    return paths


# -- algorithm families -------------------------------------------------------------------------
def _job(algorithm, model, solver, data, max_rows=0):
    d = {"train": data}
    if max_rows:
        d["max_rows"] = max_rows
    return {"job": {"algorithm": algorithm, "seed": 1, "log_every": 1},
            "data": d, "model": model, "solver": solver,
            "checkpoint": {"every": 1, "keep": 50}}


FAMILIES = {
    # name: (algorithm, model, solver, cap key (stops a run early; raised again, resumes))
    "lbfgs": ("lbfgs", {"loss": "logistic", "l2": 1e-3}, {"max_iter": 12, "tol": 0.0},
              "solver.max_iter"),
    "dasvrda": ("dasvrda", {"loss": "logistic", "l2": 1e-3}, {"max_stages": 10},
                "solver.max_stages"),
    "fadl": ("fadl", {"loss": "logistic", "l2": 1e-3}, {"max_iter": 10, "tol": 0.0},
             "solver.max_iter"),
    "dae-gradual": ("dae-gradual", {"layers": [8, 4], "loss": "squared", "noise": "gauss",
                                    "noise_level": 0.1},
                    {"epochs": 5, "batch": 30, "lr": 0.01, "eval_every": 0,
                     "recon_finetune_epochs": 0}, None),
    "mac": ("mac", {"hidden": [6, 3, 6]}, {"mu_steps": 10, "epochs": 1}, "solver.mu_steps"),
    "psgd-mix": ("psgd-mix", {"loss": "logistic", "l2": 1e-3}, {"max_iter": 10},
                 "solver.max_iter"),
    "parmac-ba": ("parmac-ba", {"bits": 4}, {"queries": 30, "K": 5, "val_size": 50,
                                             "mu0": 0.001, "mu_factor": 1.5, "mu_steps": 10},
                  "solver.mu_steps"),
}


class Bench:
    """Working directory, data, job files, cached reference runs, and the runner."""

    def __init__(self, root, timeout_scale=1.0):
        self.root = root
        WORKDIR[0] = root
        self.scale = timeout_scale
        self.data = make_data(os.path.join(root))
        self.refs = {}
        self.n = 0
        self.live = []
        self.mounts = []

    # directories and jobs
    def tmp(self, name="case"):
        self.n += 1
        d = os.path.join(self.root, f"{self.n:03d}-{name}")
        os.makedirs(d)
        return d

    def job(self, d, family="lbfgs", data=None, out=None, name="job.toml", **over):
        algorithm, model, solver, _ = FAMILIES[family]
        job = _job(algorithm, dict(model), dict(solver), data or self.data["dense"])
        job["job"]["out"] = out or os.path.join(d, "run")
        for key, value in over.items():
            sec, k = key.split("__")
            job.setdefault(sec, {})[k] = value
        from ..config import dump_toml
        path = os.path.join(d, name)
        with open(path, "w") as fh:
            fh.write(dump_toml(job))
        return path, job["job"]["out"]

    # running
    def run(self, args, nranks=1, timeout=60, delay=0.0, preexec_fn=None, **env):
        p = self.start(args, nranks, delay, preexec_fn=preexec_fn, **env)
        return self.finish(p, timeout)

    def start(self, args, nranks=1, delay=0.0, preexec_fn=None, **env):
        p = subprocess.Popen(command(args, nranks, delay), env=_env(delay, **env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=preexec_fn)
        p.t0 = time.perf_counter()
        p.tree = set()
        self.live.append(p)
        return p

    def track(self, p):
        p.tree |= set(descendants(p.pid))

    def finish(self, p, timeout=60, gone=5.0):
        """Wait for p (up to timeout × scale); then every process it started must be gone
        within `gone` seconds (else listed as strays and killed)."""
        self.track(p)
        try:
            out, err = p.communicate(timeout=timeout * self.scale)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
            out, err = p.communicate()
            rc = None
        dt = time.perf_counter() - p.t0
        t0 = time.time()
        while alive(p.tree) and time.time() - t0 < gone:
            time.sleep(0.05)
        strays = alive(p.tree)
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if p in self.live:
            self.live.remove(p)
        return Res(rc, out, err, dt, strays)

    def wait_ckpt(self, p, out, step, timeout=90):
        path = os.path.join(out, "checkpoints", f"ckpt-{step:09d}.h5")
        t0 = time.time()
        while not os.path.exists(path):
            self.track(p)
            if p.poll() is not None:
                raise RuntimeError(f"run ended (rc {p.returncode}) before checkpoint {step}")
            if time.time() - t0 > timeout * self.scale:
                raise RuntimeError(f"no checkpoint {step} within {timeout}s")
            time.sleep(0.02)
        self.track(p)

    def ranks(self, p, nranks, timeout=30):
        t0 = time.time()
        while True:
            r = rank_pids(p.pid)
            self.track(p)
            if len(r) == nranks or time.time() - t0 > timeout:
                return r
            time.sleep(0.05)

    def reference(self, family, nranks, data=None):
        """Final model of an uninterrupted run (once per family, P and data)."""
        key = (family, nranks, data)
        if key not in self.refs:
            d = self.tmp(f"ref-{family}-{nranks}")
            job, out = self.job(d, family, data=data)
            r = self.run(["run", job], nranks, timeout=300)
            if r.rc != 0:
                raise RuntimeError(f"reference run {family} P={nranks} failed: {show(r)}")
            self.refs[key] = final_model(out)
        return self.refs[key]

    def resume_identical(self, job, out, family, nranks, data=None, at_step=None):
        """Problems of `run JOB --resume auto`: must end 0 and bit-identical."""
        ref = self.reference(family, nranks, data)
        r = self.run(["run", job, "--resume", "auto"], nranks, timeout=300)
        if r.rc != 0:
            return [f"resume: {show(r)}"]
        probs = []
        if at_step is not None and f"at step {at_step}" not in r.out:
            probs.append(f"resume did not start at step {at_step}")
        if not same_model(final_model(out), ref):
            probs.append("resumed model differs from an uninterrupted run")
        return probs

    def mount(self, size):
        d = tempfile.mkdtemp(dir=self.root, prefix="mnt-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", d],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        self.mounts.append(d)
        return d

    def cleanup(self):
        for p in list(self.live):
            kill_tree(p.pid)
            try:
                p.communicate(timeout=5)
            except Exception:  # noqa: BLE001
                pass
            self.live.remove(p)
        for m in self.mounts:
            subprocess.run(["umount", "-l", m], capture_output=True)
        self.mounts = []


# -- §1 stops -----------------------------------------------------------------------------------
SIG = {"TERM": signal.SIGTERM, "USR1": signal.SIGUSR1, "HUP": signal.SIGHUP,
       "INT": signal.SIGINT}


def stop_case(family, nranks, sig, to_launcher, to_ranks, times=1, delay=0.3):
    """SIG delivered `times` times to mpiexec and/or every rank at once → one stop: a
    checkpoint, exit 75, the signal named, and a bit-identical resume."""
    def run(b):
        d = b.tmp(f"stop-{family}")
        b.reference(family, nranks)
        job, out = b.job(d, family)
        p = b.start(["run", job], nranks, delay=delay)
        b.wait_ckpt(p, out, 2)
        pids = list(b.ranks(p, nranks).values()) if nranks > 1 else [p.pid]
        targets = ([p.pid] if to_launcher and nranks > 1 else []) + (pids if to_ranks else [])
        for _ in range(times):
            for pid in targets:
                os.kill(pid, SIG[sig])
            time.sleep(0.05)
        r = b.finish(p, timeout=60)
        probs = []
        if r.rc != 75:
            probs.append(f"exit {r.rc}, expected 75")
        if f"stop requested (SIG{sig})" not in r.out:
            probs.append(f"SIG{sig} not named")
        if "Traceback" in r.err:
            probs.append("traceback")
        if r.strays:
            probs.append(f"processes left: {r.strays}")
        step, vp = verify_all(out)
        probs += vp
        if step is None or step < 2:
            probs.append("no stop checkpoint")
        if r.rc == 75 and not vp:
            probs += b.resume_identical(job, out, family, nranks, at_step=step)
        return f"{show(r)}; checkpoint {step}" + ("; resume identical" if not probs else ""), \
            probs
    return run


def ctrl_c_twice(family, nranks):
    """Ctrl-C typed twice, 1.5 s apart, at a slow step: ends at once without a new checkpoint
    (130; under mpiexec Hydra itself force-aborts on the second Ctrl-C: 255); the earlier
    checkpoints verify and resume bit-identical."""
    def run(b):
        d = b.tmp("ctrlc2")
        b.reference(family, nranks)
        job, out = b.job(d, family)
        p = b.start(["run", job], nranks, delay=3.0)
        b.wait_ckpt(p, out, 1)
        time.sleep(0.2)
        os.kill(p.pid, signal.SIGINT)
        time.sleep(1.5)
        os.kill(p.pid, signal.SIGINT)
        r = b.finish(p, timeout=30)
        probs = []
        if r.rc not in ((130, 255) if nranks > 1 else (130,)):
            probs.append(f"exit {r.rc}, expected 130" + (" (or Hydra's 255)" if nranks > 1
                                                          else ""))
        if r.strays:
            probs.append(f"processes left: {r.strays}")
        step, vp = verify_all(out)
        probs += vp
        if not vp:
            probs += b.resume_identical(job, out, family, nranks, at_step=step)
        return f"{show(r)}; newest checkpoint {step}", probs
    return run


def slow_step_case(b):
    """Steps of 1.2 s and a 1.5 s checkpoint write with a grace of 0.5 s: still 75."""
    d = b.tmp("slowstep")
    b.reference("lbfgs", 2)
    job, out = b.job(d)
    p = b.start(["run", job], 2, delay=1.2, MPITRAIN_STOP_GRACE="0.5",
                MPITRAIN_FAULT="ckpt:0:*:sleep1.5")
    b.wait_ckpt(p, out, 1, timeout=120)
    time.sleep(0.3)
    for pid in [p.pid] + list(b.ranks(p, 2).values()):
        os.kill(pid, signal.SIGTERM)
    r = b.finish(p, timeout=60)
    probs = [] if r.rc == 75 else [f"exit {r.rc}, expected 75"]
    if "not completed" in r.err or "Traceback" in r.err:
        probs.append("stop not completed / traceback")
    step, vp = verify_all(out)
    probs += vp
    if not probs:
        probs += b.resume_identical(job, out, "lbfgs", 2, at_step=step)
    return f"{show(r)}; checkpoint {step}", probs


def peer_never_arrives(b):
    d = b.tmp("grace")
    job, out = b.job(d)
    p = b.start(["run", job], 2, MPITRAIN_STOP_GRACE="1", MPITRAIN_FAULT="step:1:3:hang")
    b.wait_ckpt(p, out, 2)
    time.sleep(0.5)
    os.kill(b.ranks(p, 2)[0], signal.SIGTERM)
    r = b.finish(p, timeout=40)
    probs = check_error(r, 128 + signal.SIGTERM, None, ["rank 1"], bound=40)
    probs += verify_all(out)[1]
    return show(r), probs


def stop_rank1_only(b):
    d = b.tmp("rank1stop")
    job, out = b.job(d)
    p = b.start(["run", job], 2, delay=0.3)
    b.wait_ckpt(p, out, 2)
    os.kill(b.ranks(p, 2)[1], signal.SIGUSR1)
    r = b.finish(p, timeout=40)
    probs = [] if r.rc == 75 else [f"exit {r.rc}, expected 75"]
    if "stop requested (SIGUSR1)" not in r.out or "time limit" in r.out:
        probs.append("stop not named SIGUSR1 (or called a time limit)")
    return show(r), probs + verify_all(out)[1]


def time_limit_case(b):
    d = b.tmp("timelimit")
    b.reference("lbfgs", 2)
    job, out = b.job(d, job__time_limit=2.0)
    r = b.run(["run", job], 2, delay=0.5, timeout=60)
    probs = [] if r.rc == 75 else [f"exit {r.rc}, expected 75"]
    if "time limit" not in r.out:
        probs.append("time limit not named")
    step, vp = verify_all(out)
    probs += vp
    if not probs:
        # the limit counts per start; a resume without the delay finishes
        probs += b.resume_identical(job, out, "lbfgs", 2, at_step=step)
    return f"{show(r)}; checkpoint {step}", probs


# -- §4 stalls, deaths, divergence ----------------------------------------------------------------
def stall_case(family):
    def run(b):
        d = b.tmp(f"stall-{family}")
        b.reference(family, 2)
        job, out = b.job(d, family, job__stall_timeout=3.0)
        p = b.start(["run", job], 2, delay=0.2)
        b.wait_ckpt(p, out, 2)
        pids = b.ranks(p, 2)
        os.kill(pids[1], signal.SIGSTOP)
        try:
            r = b.finish(p, timeout=60, gone=1.0)
        finally:
            kill_tree(pids[1])
        r.strays = [s for s in r.strays if s != pids[1]]  # the frozen one is ours to kill
        probs = check_error(r, 69, "stalled job", ["rank 1"], bound=60)
        step, vp = verify_all(out)
        probs += vp
        if not vp:
            probs += b.resume_identical(job, out, family, 2, at_step=step)
        return show(r), probs
    return run


def kill9_case(family, where):
    """kill -9 of rank 1 mid-run ('step'), or of rank 0 inside a checkpoint write ('ckpt'):
    non-zero exit, no process left, checkpoints verify, resume bit-identical."""
    def run(b):
        d = b.tmp(f"kill9-{family}")
        b.reference(family, 2)
        job, out = b.job(d, family)
        if where == "step":
            p = b.start(["run", job], 2, MPITRAIN_FAULT="step:1:5:hang")
            b.wait_ckpt(p, out, 4)
            time.sleep(0.3)
            os.kill(b.ranks(p, 2)[1], signal.SIGKILL)
        else:
            p = b.start(["run", job], 2, MPITRAIN_FAULT="ckpt:0:4:kill")
            b.ranks(p, 2)
        r = b.finish(p, timeout=60)
        probs = [] if r.rc not in (0, None) else [f"exit {r.rc}"]
        if r.strays:
            probs.append(f"processes left: {r.strays}")
        step, vp = verify_all(out)
        probs += vp
        if step is None:
            probs.append("no checkpoint left")
        elif not vp:
            probs += b.resume_identical(job, out, family, 2, at_step=step)
        return f"{show(r)}; newest checkpoint {step}", probs
    return run


def kill9_launcher_case(family):
    """kill -9 of mpiexec alone (a launcher killed by an OOM killer or a careless kill): the
    ranks must not outlive it by more than 30 s; the resume takes over the lock, identical."""
    def run(b):
        d = b.tmp(f"kill9-mpiexec-{family}")
        b.reference(family, 2)
        job, out = b.job(d, family)
        p = b.start(["run", job], 2, delay=0.3)
        b.wait_ckpt(p, out, 2)
        ranks = list(b.ranks(p, 2).values())
        os.kill(p.pid, signal.SIGKILL)
        r = b.finish(p, timeout=30, gone=30.0)
        probs = [f"processes left 30 s after: {r.strays}"] if r.strays else []
        step, vp = verify_all(out)
        probs += vp
        if not vp:
            probs += b.resume_identical(job, out, family, 2, at_step=None)
        return f"ranks {ranks}: {'gone' if not r.strays else 'still running'}; newest " \
            f"checkpoint {step}", probs
    return run


def fifo_data_case(nranks):
    """A FIFO (nobody writing) as the training data: refused, or ended by the stall rule;
    never a silent hang."""
    def run(b):
        d = b.tmp("fifo")
        path = os.path.join(d, "train.svm")
        os.mkfifo(path)
        job, _ = b.job(d, data=path, job__stall_timeout=5.0)
        r = b.run(["run", job], nranks, timeout=60)
        if r.rc is None:
            return show(r), ["hung (killed by the bench after 60 s)"]
        return show(r), check_error(r, r.rc if r.rc in (65, 69) else 65, None, ["train.svm"])
    return run


def explicit_damaged_resume(nranks):
    """`--resume PATH` naming a damaged checkpoint: 65, one line naming it, nothing changed."""
    def run(b):
        d = b.tmp("resume-path")
        job, out = _capped(b, d, cap=4)
        path = ckpt_files(out)[0]
        with open(path, "r+b") as fh:
            fh.seek(os.path.getsize(path) // 2)
            byte = fh.read(1)[0]
            fh.seek(os.path.getsize(path) // 2)
            fh.write(bytes([byte ^ 4]))
        snap = snapshot(out)
        r = b.run(["run", job, "--resume", path], nranks, timeout=60)
        probs = check_error(r, 65, None, [os.path.basename(path)])
        if snapshot(out) != snap:
            probs.append("checkpoints changed")
        return show(r), probs
    return run


def fault_exit_case(action, code_ok, text):
    def run(b):
        d = b.tmp(f"fault-{action}")
        job, out = b.job(d)
        r = b.run(["run", job], 2, timeout=60, MPITRAIN_FAULT=f"step:1:4:{action}")
        probs = [] if code_ok(r.rc) else [f"exit {r.rc}"]
        if text and text not in r.err:
            probs.append(f"no {text!r} message")
        if action == "raise" and r.err.count("Traceback") != 1:
            probs.append(f"{r.err.count('Traceback')} tracebacks (expected the one rank's)")
        if os.path.exists(os.path.join(out, "final.h5")):
            probs.append("final.h5 written")
        if r.strays:
            probs.append(f"processes left: {r.strays}")
        return show(r), probs + verify_all(out)[1]
    return run


def divergence_case(family, nranks, **over):
    def run(b):
        d = b.tmp(f"diverge-{family}")
        job, out = b.job(d, family, **over)
        r = b.run(["run", job], nranks, timeout=120)
        if r.rc == 0:  # not every setting diverges: then the result must be finite
            m = final_model(out)
            bad = [k for k, v in m.items() if np.asarray(v).dtype.kind == "f"
                   and not np.all(np.isfinite(v))]
            return show(r) + "; did not diverge, final finite", \
                ([f"exit 0 with non-finite {bad}"] if bad else [])
        probs = check_error(r, 70, "diverged", ["step"])
        if os.path.exists(os.path.join(out, "final.h5")):
            probs.append("final.h5 written")
        return show(r), probs + verify_all(out)[1]
    return run


def memory_case(family, nranks, code=65, **over):
    """An absurd model size: refused before allocating (65 naming the GiB), or the key
    itself out of range (78). A declared width needs LIBSVM data (dense X fixes the width)."""
    def run(b):
        d = b.tmp(f"mem-{family}")
        data = b.data["svm"] if "data__features" in over else None
        job, _ = b.job(d, family, data=data, **over)
        r = b.run(["run", job], nranks, timeout=60)
        return show(r), check_error(r, code, None, ["GiB"] if code == 65 else [])
    return run


# -- §2 checkpoints chosen by what they are -----------------------------------------------------
def _capped(b, d, family="lbfgs", cap=6, nranks=1, **over):
    """A finished run capped at `cap` steps (checkpoints 1..cap), resumable to the end."""
    job, out = b.job(d, family, **over)
    key = FAMILIES[family][3]
    r = b.run(["run", job, "--set", f"{key}={cap}"], nranks, timeout=120)
    if r.rc != 0:
        raise RuntimeError(f"capped run failed: {show(r)}")
    return job, out


def flip_case(seed):
    """One random bit of the newest checkpoint flipped: the resume either detects it (says so,
    takes the one before) or it is harmless; the final model is bit-identical either way."""
    def run(b):
        src = b.flip_source()
        d = b.tmp(f"flip{seed}")
        out = os.path.join(d, "run")
        shutil.copytree(src["out"], out)
        job, _ = b.job(d, out=out)
        newest = ckpt_files(out)[0]
        rng = random.Random(seed)
        with open(newest, "r+b") as fh:
            size = os.path.getsize(newest)
            pos, bit = rng.randrange(size), rng.randrange(8)
            fh.seek(pos)
            byte = fh.read(1)[0]
            fh.seek(pos)
            fh.write(bytes([byte ^ (1 << bit)]))
        ref = b.reference("lbfgs", 1)
        r = b.run(["run", job, "--resume", "auto"], 1, timeout=120)
        probs = [] if r.rc == 0 else [f"exit {r.rc}"]
        if "Traceback" in r.err:
            probs.append("traceback")
        detected = "skipping" in r.err
        if r.rc == 0 and not same_model(final_model(out), ref):
            probs.append("final model differs (flip accepted silently)")
        return (f"byte {pos} bit {bit}: {show(r)}; "
                + ("detected, previous checkpoint taken" if detected else "accepted")), probs
    return run


def stray_case(kind):
    def run(b):
        d = b.tmp(f"stray-{kind}")
        job, out = _capped(b, d, cap=4)
        ck = os.path.join(out, "checkpoints")
        probs = []
        if kind == "backup":
            shutil.copy(os.path.join(ck, "ckpt-000000003.h5"), os.path.join(ck, "ckpt-backup.h5"))
            stray = os.path.join(ck, "ckpt-backup.h5")
        elif kind == "other-job":
            d2 = b.tmp("other")
            job2, out2 = _capped(b, d2, cap=9, job__seed=7)
            stray = os.path.join(ck, "ckpt-000000099.h5")  # a step this run never writes
            shutil.copy(os.path.join(out2, "checkpoints", "ckpt-000000009.h5"), stray)
        else:  # a damaged leftover with a higher step
            stray = os.path.join(ck, "ckpt-000000050.h5")
            with open(stray, "wb") as fh:
                fh.write(b"\x89HDF\r\n\x1a\n" + os.urandom(4000))
        before = open(stray, "rb").read()
        probs += b.resume_identical(job, out, "lbfgs", 1, at_step=4)
        if not os.path.exists(stray) or open(stray, "rb").read() != before:
            probs.append("the stray file was changed or removed")
        return "resume from step 4, stray kept" if not probs else "; ".join(probs), probs
    return run


def keep1_damaged_leftover(b):
    """keep = 1, a damaged ckpt-000000050.h5 left over; a run is killed at step 8: the
    newest real checkpoint (7) must survive the pruning and the resume start from it."""
    d = b.tmp("keep1")
    job, out = _capped(b, d, cap=3, checkpoint__keep=1)
    stray = os.path.join(out, "checkpoints", "ckpt-000000050.h5")
    with open(stray, "wb") as fh:
        fh.write(os.urandom(3000))
    r = b.run(["run", job, "--resume", "auto"], 1, timeout=60, MPITRAIN_FAULT="step:0:8:kill")
    step, vp = verify_all(out, ignore=[stray])
    probs = list(vp)
    if step != 7:
        probs.append(f"newest verified checkpoint is {step}, expected 7")
    if not probs:
        probs += b.resume_identical(job, out, "lbfgs", 1, at_step=7)
    return f"killed: {show(r)}; newest real checkpoint {step}", probs


# -- §3 one run per run directory ---------------------------------------------------------------
def concurrent_case(flag):
    def run(b):
        d = b.tmp("concurrent")
        b.reference("lbfgs", 2)
        job, out = b.job(d)
        p = b.start(["run", job], 2, delay=0.4)
        b.wait_ckpt(p, out, 2)
        snap = snapshot(out)
        r2 = b.run(["run", job] + flag, 2, timeout=60)
        probs = check_error(r2, 73, "run directory in use", ["pid"], bound=60)
        if any(not os.path.exists(f) for f in snap):
            probs.append("the second run removed the first one's checkpoints")
        r1 = b.finish(p, timeout=120)
        if r1.rc != 0:
            probs.append(f"first run: {show(r1)}")
        elif not same_model(final_model(out), b.reference("lbfgs", 2)):
            probs.append("first run's model changed")
        with open(os.path.join(out, "metrics.jsonl"), "rb") as fh:
            if b"\0" in fh.read():
                probs.append("NUL in metrics.jsonl")
        return f"second: {show(r2)}; first: rc {r1.rc}", probs
    return run


def stale_lock_case(b):
    """The whole job kill -9'd (mpiexec and ranks): the next --resume takes over the lock."""
    d = b.tmp("stalelock")
    b.reference("lbfgs", 2)
    job, out = b.job(d)
    p = b.start(["run", job], 2, delay=0.3)
    b.wait_ckpt(p, out, 2)
    kill_tree(p.pid)
    b.finish(p, timeout=20)
    r = b.run(["run", job, "--resume", "auto"], 2, timeout=120)
    probs = [] if r.rc == 0 else [f"resume: {show(r)}"]
    if "took over a stale lock" not in r.out + r.err:
        probs.append("no stale-lock take-over line")
    if r.rc == 0 and not same_model(final_model(out), b.reference("lbfgs", 2)):
        probs.append("model differs")
    return show(r), probs


def fresh_case(kind):
    def run(b):
        d = b.tmp(f"fresh-{kind}")
        job, out = _capped(b, d, cap=3)
        mine = os.path.join(out, "notes.txt")
        with open(mine, "w") as fh:
            fh.write("user file")
        if kind == "no-flag":
            r = b.run(["run", job], 1)
            return show(r), check_error(r, 64, None, [out])
        if kind == "fresh-resume":
            r = b.run(["run", job, "--fresh", "--resume", "auto"], 1)
            return show(r), check_error(r, 64)
        old = open(os.path.join(out, "final.h5"), "rb").read()
        r = b.run(["run", job, "--fresh", "--set", "solver.max_iter=2"], 1, timeout=120)
        probs = [] if r.rc == 0 else [f"exit {r.rc}"]
        prev = [n for n in os.listdir(out) if n.startswith("previous-")]
        if len(prev) != 1:
            probs.append(f"previous-* directories: {prev}")
        else:
            pdir = os.path.join(out, prev[0])
            if open(os.path.join(pdir, "final.h5"), "rb").read() != old:
                probs.append("earlier final.h5 not kept in previous-*")
            if len(ckpt_files(pdir)) != 3:
                probs.append("earlier checkpoints not moved whole")
        if not os.path.exists(mine):
            probs.append("a user file was touched")
        if sorted(ckpt_step(f) for f in ckpt_files(out)) != [1, 2]:
            probs.append("new run's checkpoints mixed with old ones")
        return show(r) + f"; {prev}", probs
    return run


# -- §2 write failures ---------------------------------------------------------------------------
def disk_full_case(free_bytes, nranks=2):
    """A run resumed on a tmpfs with only `free_bytes` left: exit 73 with one line (or 0 when
    it fits), earlier checkpoints byte-identical; once space is back the resume is
    bit-identical."""
    def run(b):
        mnt = b.mount("3m")
        if mnt is None:
            raise Skip("cannot mount a tmpfs here")
        d = b.tmp("diskfull")
        b.reference("lbfgs", nranks)
        job, out = b.job(d, out=os.path.join(mnt, "run"))
        r = b.run(["run", job, "--set", "solver.max_iter=4"], nranks, timeout=120)
        if r.rc != 0:
            raise RuntimeError(f"setup run failed: {show(r)}")
        snap = snapshot(out)
        st = os.statvfs(mnt)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as fh:
            try:
                fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_bytes))
            except OSError:
                pass
        r = b.run(["run", job, "--resume", "auto"], nranks, timeout=120)
        if r.rc == 0:
            probs = [] if same_model(final_model(out), b.reference("lbfgs", nranks)) \
                else ["finished with a different model"]
            return show(r) + "; fitted", probs
        probs = check_error(r, 73, "cannot write output", bound=60)
        if any(snapshot(out).get(f) != v for f, v in snap.items()):
            probs.append("earlier checkpoints changed")
        tmps = [n for n in os.listdir(os.path.join(out, "checkpoints")) if ".tmp" in n]
        if tmps:
            probs.append(f"temporary files left: {tmps}")
        os.unlink(filler)
        probs += b.resume_identical(job, out, "lbfgs", nranks)
        return show(r), probs
    return run


def fsize_case(limit):
    """RLIMIT_FSIZE = limit bytes on a resumed P = 1 run (set after start-up)."""
    def run(b):
        import resource
        d = b.tmp("fsize")
        b.reference("lbfgs", 1)
        job, out = _capped(b, d, cap=4)
        snap = snapshot(out)
        p = b.start(["run", job, "--resume", "auto"], 1, delay=0.5)
        line = p.stdout.readline()
        while line and "resumed from" not in line:
            line = p.stdout.readline()
        resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (limit, limit))
        r = b.finish(p, timeout=60)
        if r.rc == 0:
            probs = [] if same_model(final_model(out), b.reference("lbfgs", 1)) \
                else ["different model"]
            return show(r) + "; fitted", probs
        probs = check_error(r, 73, "cannot write output")
        if any(snapshot(out).get(f) != v for f, v in snap.items()):
            probs.append("earlier checkpoints changed")
        probs += b.resume_identical(job, out, "lbfgs", 1)
        return show(r), probs
    return run


def data_write_case(verb, how):
    """`data synth` / `data convert` onto a full tmpfs or under RLIMIT_FSIZE: 73, one line,
    no output or temporary file left."""
    def run(b):
        import resource
        if how == "tmpfs":
            d = b.mount("64k")
            if d is None:
                raise Skip("cannot mount a tmpfs here")
            pre = None
        else:
            d = b.tmp(f"{verb}-fsize")

            def pre():
                resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        dest = os.path.join(d, "out.h5")
        if verb == "synth":
            args = ["data", "synth", dest, "--n", "20000", "--d", "1000", "--nnz", "10"]
        else:
            big = os.path.join(b.root, "big.svm")
            if not os.path.exists(big):
                with open(big, "w") as fh:
                    for _ in range(30):
                        fh.write(open(b.data["svm"]).read())
            args = ["data", "convert", big, dest]
        r = b.run(args, 1, timeout=120, preexec_fn=pre)
        probs = check_error(r, 73, "cannot write output")
        left = [n for n in os.listdir(d) if n.startswith("out.h5")]
        if left:
            probs.append(f"left behind: {left}")
        return show(r), probs
    return run


def convert_group_case(kind):
    def run(b):
        import h5py
        d = b.tmp("convert-group")
        dest = os.path.join(d, "both.h5")
        r = b.run(["data", "convert", b.data["svm"], dest], 1)
        if r.rc != 0:
            raise RuntimeError(f"convert failed: {show(r)}")
        extra = ["--group", "test" if kind != "same" else "train"]
        if kind == "overwrite":
            extra = ["--group", "train", "--overwrite"]
        r = b.run(["data", "convert", b.data["svm"], dest] + extra, 1)
        with h5py.File(dest, "r") as f:
            groups = sorted(f)
        if kind == "same":
            probs = check_error(r, 65 if r.rc == 65 else 64, None, ["--overwrite"])
            if r.rc not in (64, 65, 73, 78):
                probs = [f"exit {r.rc}: not refused"]
        else:
            probs = [] if r.rc == 0 else [f"exit {r.rc}"]
        want = ["test", "train"] if kind == "test" else ["train"]
        if groups != want:
            probs.append(f"groups now {groups}, expected {want}")
        if [n for n in os.listdir(d) if ".tmp" in n]:
            probs.append("temporary file left")
        return f"{show(r)}; groups {groups}", probs
    return run


# -- §5 bad inputs ------------------------------------------------------------------------------
def _h5(path, fill):
    import h5py
    with h5py.File(path, "w") as f:
        fill(f)
    return path


def _csr(f, indices, data=None, n=4, d=10, y=None):
    g = f.create_group("train")
    k = len(indices)
    g["indptr"] = np.linspace(0, k, n + 1).astype(np.int64)
    g["indices"] = indices
    g["data"] = np.ones(k) if data is None else data
    g["y"] = np.array([1.0, -1.0] * (n // 2)) if y is None else y
    g.attrs["shape"] = np.array([n, d])


def _dense(f, X=None, y=None):
    f["train/X"] = np.ones((4, 3)) if X is None else X
    f["train/y"] = np.array([1.0, -1.0, 1.0, -1.0]) if y is None else y


LIBSVM_OK = "".join(f"{1 if i % 2 else -1} 1:{i / 10:.1f} 3:1\n" for i in range(8))


def _text(body):
    return lambda path: open(path, "wb").write(body if isinstance(body, bytes)
                                               else body.encode())


# name: (file name, writer(path), job overrides, exit code, error kind, names in the line)
BAD_DATA = {
    "libsvm-malformed": ("t.svm", _text(LIBSVM_OK + "1 2:abc\n"), {}, 65, ["line 9"]),
    "libsvm-truncated": ("t.svm", _text(LIBSVM_OK + "-1 2:"), {}, 65, ["line 9"]),
    "libsvm-nan": ("t.svm", _text(LIBSVM_OK + "1 1:nan\n"), {}, 65, ["line 9"]),
    "libsvm-inf": ("t.svm", _text("1 1:inf\n" + LIBSVM_OK), {}, 65, ["line 1"]),
    "libsvm-binary-garbage": ("t.svm", _text(LIBSVM_OK + "\x00\xff\xfe garbage\n"), {}, 65,
                              ["line 9"]),
    "libsvm-real-label": ("t.svm", _text(LIBSVM_OK + "0.5 1:1\n"), {}, 65, ["label 0.5"]),
    "libsvm-index-beyond-width": ("t.svm", _text(LIBSVM_OK + "1 9:1\n"),
                                  {"data__features": 5}, 65, ["features = 5"]),
    "libsvm-index-zero": ("t.svm", _text(LIBSVM_OK + "1 0:1\n"), {}, 65, ["line 9"]),
    "libsvm-empty": ("t.svm", _text(""), {}, 65, ["empty"]),
    "libsvm-index-overflow": ("t.svm", _text(LIBSVM_OK + "-1 3000000000:1\n"), {}, 65,
                              ["line 9"]),
    "libsvm-no-features": ("t.svm", _text("1\n-1\n1\n-1\n"), {}, 65, ["no features"]),
    "huge-width-by-data": ("t.svm", _text(LIBSVM_OK + "-1 2000000000:1\n"), {}, 65, ["GiB"]),
    "huge-width-by-key": ("t.svm", _text(LIBSVM_OK), {"data__features": 4_000_000_000}, 65,
                          ["GiB"]),
    "dense-nan": ("nan.h5", lambda p: _h5(p, lambda f: _dense(
        f, X=np.array([[1.0, np.nan, 0], [0.0, 1.0, 0], [1, 1, 1], [0, 0, 1]]))), {}, 65,
        ["NaN"]),
    "h5-missing-y": ("noy.h5", lambda p: _h5(p, lambda f: f.create_dataset(
        "train/X", data=np.ones((4, 2)))), {}, 65, ["'y'"]),
    "h5-misshaped-X": ("shape.h5", lambda p: _h5(p, lambda f: _dense(
        f, X=np.ones((3, 2)), y=np.ones(4))), {}, 65, ["(3, 2)"]),
    "h5-not-hdf5": ("fake.h5", _text("not hdf5"), {}, 65, ["HDF5"]),
    "h5-truncated": ("cut.h5", None, {}, 65, []),
    "csr-index-int64-2^32+1": ("ovf.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.array([1, 2**32 + 1, 3, 4], dtype=np.int64))), {}, 65, ["4294967297"]),
    "csr-width-beyond-int32": ("wide.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.array([1, 2**32 + 1, 3, 4], dtype=np.int64), d=2**32 + 5)), {}, 65, ["int32"]),
    "csr-index-float": ("fidx.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.array([1.0, 2.5, 3.0, 4.0]))), {}, 65, ["integer"]),
    "csr-index-negative": ("neg.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.array([1, -3, 3, 4], dtype=np.int64))), {}, 65, []),
    "csr-indptr-decreasing": ("iptr.h5", lambda p: _h5(p, lambda f: (
        _csr(f, np.arange(4)), f["train/indptr"].write_direct(
            np.array([0, 3, 1, 2, 4], dtype=np.int64)))), {}, 65, []),
    "csr-complex-values": ("cplx.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.arange(4), data=np.ones(4) * (1 + 1j))), {}, 65, ["complex"]),
    "dense-complex-values": ("cplxd.h5", lambda p: _h5(p, lambda f: _dense(
        f, X=np.ones((4, 3)) * (1 + 2j))), {}, 65, ["complex"]),
    "complex-labels": ("cplxy.h5", lambda p: _h5(p, lambda f: _dense(
        f, y=np.array([1, -1, 1, -1]) * (1 + 0.5j))), {}, 65, ["complex"]),
    "X-y-lengths-differ": ("len.h5", lambda p: _h5(p, lambda f: _dense(f, X=np.ones((6, 3)))),
                           {}, 65, ["6 rows", "4 labels"]),
    "dense-zero-columns": ("zcol.h5", lambda p: _h5(p, lambda f: _dense(f, X=np.ones((4, 0)))),
                           {}, 65, ["no features"]),
    "csr-zero-columns": ("zcsr.h5", lambda p: _h5(p, lambda f: _csr(
        f, np.zeros(0, dtype=np.int32), d=0)), {}, 65, ["no features"]),
    "labels-group": ("ygrp.h5", lambda p: _h5(p, lambda f: (
        f.create_dataset("train/X", data=np.ones((4, 3))), f.create_group("train/y"))), {}, 65,
        ["group"]),
    "train-is-a-dataset": ("tds.h5", lambda p: _h5(p, lambda f: f.create_dataset(
        "train", data=np.ones((4, 3)))), {}, 65, ["dataset"]),
    "labels-mixed-across-shards": ("mix.h5", lambda p: _h5(p, lambda f: _dense(
        f, X=np.ones((8, 3)), y=np.array([0.0, 1.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0]))),
        {"family": "dasvrda", "solver__max_stages": 3}, 65, ["label -1", "label 0"]),
    "labels-strings-and-numbers": ("mixed-*.h5", None, {}, 65, ["numbers in some rows"]),
    "npy-complex": ("c.npy", lambda p: np.save(p, np.ones((6, 3)) * (1 + 1j)), {}, 65,
                    ["complex"]),
    "npy-1d": ("one.npy", lambda p: np.save(p, np.ones(6)), {}, 65, []),
    "npy-nan": ("n.npy", lambda p: np.save(p, np.array([[1, 0.5, np.nan], [-1, 0, 1]] * 3)),
                {}, 65, ["NaN"]),
    "npy-not-npy": ("x.npy", _text("garbage"), {}, 65, []),
    "more-ranks-than-rows": ("one.svm", _text("1 1:1\n"), {}, 65, []),
}


def bad_data_case(name, nranks):
    fname, write, over, code, names = BAD_DATA[name]

    def run(b):
        d = b.tmp(f"bad-{name}")
        path = os.path.join(d, fname)
        if name == "h5-truncated":  # a good HDF5 file cut in half
            blob = open(b.data["dense"], "rb").read()
            open(path, "wb").write(blob[:len(blob) // 2])
        elif write is None:  # a glob of two parts: numeric labels, then strings
            _h5(path.replace("*", "1"), lambda f: _dense(f))
            _h5(path.replace("*", "2"), lambda f: _dense(
                f, y=np.array([b"yes", b"no", b"yes", b"no"])))
        else:
            write(path)
        over2 = dict(over)
        fam = over2.pop("family", "lbfgs")
        job, out = b.job(d, fam, data=path, **over2)
        r = b.run(["run", job], nranks, timeout=60)
        return show(r), check_error(r, code, None if code != 65 else "bad input data",
                                    [fname] + names, bound=60)
    return run


# name: (job text appended to a valid job, expected code, names)
BAD_JOB = {
    "threads-1e30": ("[job] threads = 1e30", 78, ["threads"]),
    "threads-huge-int": ("[job] threads = 1000000000000", 78, ["threads"]),
    "batch-1e12": ("[solver] batch = 1000000000000", (78, 65), []),
    "seed-2^64": ("[job] seed = 18446744073709551616", 78, ["seed"]),
    "seed-2^63": ("[job] seed = 9223372036854775808", 78, ["seed"]),
    "seed-negative": ("[job] seed = -1", 78, ["seed"]),
    "l2-nan": ("[model] l2 = nan", 78, ["l2"]),
    "l2-inf": ("[model] l2 = inf", 78, ["l2"]),
    "l2-negative": ("[model] l2 = -1.0", 78, ["l2"]),
    "max-iter-negative": ("[solver] max_iter = -5", 78, ["max_iter"]),
    "time-limit-nan": ("[job] time_limit = nan", 78, ["time_limit"]),
    "stall-timeout-negative": ("[job] stall_timeout = -3.0", 78, ["stall_timeout"]),
    "checkpoint-every-negative": ("[checkpoint] every = -1", 78, ["every"]),
    "checkpoint-keep-0": ("[checkpoint] keep = 0", 78, ["keep"]),
    "binary-garbage-job": (None, 78, ["job.toml"]),
    "job-bad-toml": ("[data\n", 78, ["line"]),
    "job-typo-key": ("[data] trian = 'x.h5'", 78, ["trian"]),
    "job-unknown-algorithm": ("[job] algorithm = 'lbgfs'", 78, ["lbgfs"]),
    "job-wrong-type": ("[solver] max_iter = '10'", 78, ["max_iter"]),
    "job-missing": ("", 66, ["nojob.toml"]),
    "data-missing": ("[data] train = 'nope.h5'", 66, ["nope.h5"]),
}


def three_classes_case(nranks):
    """{0, 1} rows on rank 0 and {-1, +1} rows on rank 1 for fadl (one-vs-rest): three classes
    at every P, decided over all ranks (not a binary encoding per shard)."""
    def run(b):
        d = b.tmp("three")
        path = os.path.join(d, "mix.h5")
        _h5(path, lambda f: _dense(f, X=np.random.default_rng(0).random((8, 3)),
                                   y=np.array([0.0, 1.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0])))
        job, out = b.job(d, "fadl", data=path)
        r = b.run(["run", job], nranks, timeout=60)
        if r.rc != 0:
            return show(r), [f"exit {r.rc}"]
        classes = list(final_model(out).get("meta/classes", []))
        return show(r) + f"; classes {classes}", ([] if classes == [-1.0, 0.0, 1.0]
                                                   else ["classes differ from {-1, 0, 1}"])
    return run


def bad_job_case(name, nranks):
    text, code, names = BAD_JOB[name]
    is_batch = name == "batch-1e12"

    def run(b):
        d = b.tmp(f"job-{name}")
        job, _ = b.job(d, "dae-gradual" if is_batch else "lbfgs")
        if name == "job-missing":
            job = os.path.join(d, "nojob.toml")
        elif text is None:
            open(job, "wb").write(bytes(range(256)) * 4)
        elif text.startswith("[data\n"):
            open(job, "a").write(text)
        else:
            import tomllib
            cfg = tomllib.load(open(job, "rb"))
            sec, rest = text[1:].split("] ", 1)
            key, raw = rest.split(" = ", 1)
            cfg.setdefault(sec, {}).pop(key, None)
            from ..config import dump_toml
            body = dump_toml(cfg).replace(f"[{sec}]\n", f"[{sec}]\n{key} = {raw}\n", 1)
            if f"[{sec}]\n" not in dump_toml(cfg):
                body = dump_toml(cfg) + f"\n[{sec}]\n{key} = {raw}\n"
            open(job, "w").write(body)
        r = b.run(["run", job], nranks, timeout=60)
        if isinstance(code, tuple):  # either refusal is clean: the key, or the memory check
            return show(r), check_error(r, r.rc if r.rc in code else code[0], None, names,
                                        bound=60)
        kind = {78: "bad job file", 66: "input missing"}[code]
        return show(r), check_error(r, code, kind, names, bound=60)
    return run


# -- the matrix ---------------------------------------------------------------------------------
def cases(flips=40):
    out = []

    def add(name, group, expected, fn, quick=False):
        out.append(Case(name, group, expected, fn, quick))

    stop_exp = "75, checkpoint, signal named, resume bit-identical"
    # §1 stops: the same signal to mpiexec and to every rank at once (Slurm/systemd/cgroup
    # delivery plus Hydra's forwarding), twice; HUP to the ranks (Hydra dies of HUP itself).
    for fam in ("lbfgs", "dasvrda", "fadl", "dae-gradual", "mac", "parmac-ba"):
        add(f"{fam} P=2 TERM to mpiexec+ranks, twice", "§1 stops", stop_exp,
            stop_case(fam, 2, "TERM", True, True, times=2), quick=fam in ("lbfgs", "mac"))
    for fam in ("lbfgs", "dae-gradual", "parmac-ba"):
        add(f"{fam} P=2 USR1 to mpiexec+ranks", "§1 stops", stop_exp,
            stop_case(fam, 2, "USR1", True, True))
        add(f"{fam} P=2 HUP to every rank, twice", "§1 stops", stop_exp,
            stop_case(fam, 2, "HUP", False, True, times=2), quick=fam == "dae-gradual")
    for sig in ("TERM", "USR1", "INT"):
        add(f"lbfgs P=2 {sig} to mpiexec only", "§1 stops", stop_exp,
            stop_case("lbfgs", 2, sig, True, False))
    for fam in ("lbfgs", "dae-gradual", "mac"):
        add(f"{fam} P=1 TERM twice", "§1 stops", stop_exp,
            stop_case(fam, 1, "TERM", False, True, times=2))
    add("lbfgs P=1 HUP", "§1 stops", stop_exp, stop_case("lbfgs", 1, "HUP", False, True))
    for p in (1, 2):
        add(f"lbfgs P={p} Ctrl-C twice (1.5 s apart)", "§1 stops",
            "130 at once (P=2: Hydra's 255), earlier checkpoints verify, resume bit-identical",
            ctrl_c_twice("lbfgs", p))
    add("slow step 1.2 s + checkpoint write 1.5 s > grace 0.5 s", "§1 stops",
        "75 with a checkpoint", slow_step_case, quick=True)
    add("stop pending, rank 1 hung in its step, grace 1 s", "§1 stops",
        "143, one line naming rank 1", peer_never_arrives)
    add("USR1 to rank 1 only", "§1 stops", "75, named SIGUSR1 (not time limit)",
        stop_rank1_only)
    add("[job] time_limit", "§1 stops", "75, time limit named, resume bit-identical",
        time_limit_case)
    # §2 checkpoints
    for i in range(flips):
        add(f"bit flip #{i} in newest checkpoint", "§2 bit flips",
            "detected (previous taken) or harmless; 0, bit-identical", flip_case(i),
            quick=i < 5)
    for kind in ("backup", "other-job", "damaged-leftover"):
        add(f"stray {kind} file among checkpoints", "§2 checkpoints",
            "resume from the real newest, bit-identical, stray untouched", stray_case(kind),
            quick=kind == "damaged-leftover")
    add("keep = 1 + damaged leftover, killed at step 8", "§2 checkpoints",
        "checkpoint 7 kept; resume from 7, bit-identical", keep1_damaged_leftover, quick=True)
    for fam in ("lbfgs", "dasvrda", "dae-gradual", "mac", "parmac-ba"):
        add(f"{fam} kill -9 rank 1 mid-run", "§2 checkpoints",
            "non-zero, nothing left running, resume bit-identical", kill9_case(fam, "step"),
            quick=fam == "parmac-ba")
        add(f"{fam} kill -9 rank 0 inside checkpoint write", "§2 checkpoints",
            "non-zero, half file ignored, resume bit-identical", kill9_case(fam, "ckpt"))
    for p in (1, 2):
        add(f"--resume PATH of a damaged checkpoint, P={p}", "§2 checkpoints",
            "65 naming the file, checkpoints unchanged", explicit_damaged_resume(p))
    # §2 write failures
    for free in (0, 300, 2000, 6000, 12000, 30000, 60000):
        add(f"disk full (tmpfs) with {free} B free, P=2", "§2 write failures",
            "73 one line, checkpoints byte-identical (or 0 if it fits); resume bit-identical",
            disk_full_case(free), quick=free == 6000)
    add("disk full (tmpfs) with 2000 B free, P=1", "§2 write failures",
        "73 one line, checkpoints byte-identical; resume bit-identical", disk_full_case(2000, 1))
    for limit in (100, 1500, 4000, 9000, 20000):
        add(f"RLIMIT_FSIZE {limit} B, P=1", "§2 write failures",
            "73 one line, checkpoints byte-identical (or 0 if it fits); resume bit-identical",
            fsize_case(limit), quick=limit == 4000)
    for verb in ("synth", "convert"):
        for how in ("tmpfs", "fsize"):
            add(f"data {verb} onto a full disk ({how})", "§2 write failures",
                "73 one line, nothing left behind", data_write_case(verb, how),
                quick=how == "fsize")
    add("convert --group test into an existing file", "§2 write failures",
        "0, train group kept", convert_group_case("test"), quick=True)
    add("convert --group train into a file that has it", "§2 write failures",
        "refused naming --overwrite, file unchanged", convert_group_case("same"))
    add("convert --group train --overwrite", "§2 write failures", "0, group replaced",
        convert_group_case("overwrite"))
    # §3
    for flag in ([], ["--fresh"], ["--resume", "auto"]):
        add(f"second run into a busy out {' '.join(flag) or '(no flag)'}", "§3 run directory",
            "73 naming the holder; first run unharmed", concurrent_case(flag), quick=not flag)
    add("whole job kill -9, then --resume", "§3 run directory",
        "stale lock taken over, bit-identical", stale_lock_case)
    add("rerun into a finished out without flags", "§3 run directory", "64 one line",
        fresh_case("no-flag"))
    add("--fresh --resume auto", "§3 run directory", "64 one line", fresh_case("fresh-resume"),
        quick=True)
    add("--fresh over a finished run", "§3 run directory",
        "old results moved whole to previous-*, user files kept", fresh_case("move"),
        quick=True)
    # §4
    for fam in ("lbfgs", "dae-gradual", "mac", "parmac-ba"):
        add(f"{fam} rank 1 SIGSTOP, stall_timeout 3 s", "§4 hang/failure",
            "69 naming rank 1, checkpoints intact, resume bit-identical", stall_case(fam),
            quick=fam == "lbfgs")
    for fam in ("lbfgs", "parmac-ba"):
        add(f"{fam} kill -9 of mpiexec alone", "§4 hang/failure",
            "ranks gone within 30 s, checkpoints verify, resume bit-identical",
            kill9_launcher_case(fam))
    for p in (1, 2):
        add(f"a FIFO nobody writes as training data, P={p}", "§4 hang/failure",
            "65 (or 69 by the stall rule), never a hang", fifo_data_case(p))
    add("rank 1 C exit(0) at step 4", "§4 hang/failure", "non-zero, message naming rank 1",
        fault_exit_case("exit0", lambda rc: rc not in (0, 75, None),
                        "rank 1 exited in the middle of the run"), quick=True)
    add("rank 1 os._exit(3) at step 4", "§4 hang/failure", "non-zero",
        fault_exit_case("exit", lambda rc: rc not in (0, 75, None), None))
    add("rank 1 raises at step 4", "§4 hang/failure", "1, one traceback",
        fault_exit_case("raise", lambda rc: rc == 1, None))
    for p in (1, 2):
        add(f"psgd-mix step 5000 diverges, P={p}", "§4 hang/failure",
            "70 one line naming step, no final.h5", divergence_case(
                "psgd-mix", p, model__loss="squared_hinge", model__l2=1e-6,
                solver__step_size=5000.0, solver__max_iter=20),
            quick=p == 2)
        add(f"dae-gradual lr 1e8, P={p}", "§4 hang/failure",
            "70 one line, or 0 with a finite model", divergence_case(
                "dae-gradual", p, solver__lr=1e8))
        add(f"mac eta 1e8, P={p}", "§4 hang/failure", "70 one line, or 0 with a finite model",
            divergence_case("mac", p, solver__eta=1e8))
    mem = [("lbfgs", {"data__features": 3_000_000_000}),
           ("dae-gradual", {"model__layers": [2_000_000_000, 4]}),
           ("mac", {"model__hidden": [2_000_000_000, 3, 6]}),
           ("parmac-ba", {"data__features": 300_000}),
           ("fadl", {"data__features": 3_000_000_000})]
    for alg in ("slp", "sae-greedy", "dae-stacked"):
        FAMILIES.setdefault(alg, (alg, {"layers": [8, 4]}, {"epochs": 2, "batch": 30}, None))
        mem.append((alg, {"model__layers": [200_000, 200_000, 4]}))
    FAMILIES.setdefault("backprop", ("backprop", {"hidden": [6, 3, 6]}, {"epochs": 3}, None))
    mem.append(("backprop", {"model__hidden": [2_000_000_000, 3, 6]}))
    for p in (1, 2):
        add(f"parmac-ba bits = 2e9, P={p}", "§4 memory", "78 naming the key",
            memory_case("parmac-ba", p, code=78, model__bits=2_000_000_000))
    for alg, over in mem:
        for p in (1, 2):
            add(f"{alg} absurd width/layers, P={p}", "§4 memory", "65 naming the size (GiB)",
                memory_case(alg, p, **over), quick=p == 2 and alg in ("mac", "dae-gradual"))
    # §5
    for name in BAD_DATA:
        for p in (1, 2):
            add(f"{name}, P={p}", "§5 bad data", f"{BAD_DATA[name][3]} one line naming the file",
                bad_data_case(name, p), quick=p == 2 and name.startswith(("csr-index-int64",
                                                                           "labels-mixed")))
    for p in (1, 2):
        add(f"fadl labels 0/1 on rank 0, -1/+1 on rank 1, P={p}", "§5 bad data",
            "0, classes [-1, 0, 1] at every P", three_classes_case(p))
    for name in BAD_JOB:
        for p in (1, 2):
            code = BAD_JOB[name][1]
            code = code if isinstance(code, int) else " or ".join(map(str, code))
            add(f"{name}, P={p}", "§5 bad job", f"{code} one line naming the key",
                bad_job_case(name, p), quick=p == 1 and name in ("seed-2^64", "l2-nan"))
    return out


def _flip_source(bench):
    if not hasattr(bench, "_flip"):
        d = bench.tmp("flip-source")
        job, out = _capped(bench, d, cap=6)
        bench._flip = {"job": job, "out": out}
    return bench._flip


Bench.flip_source = _flip_source


def render(outcomes, args, load_before, load_after, wall):
    n, clean, bad = counts(outcomes)
    rows = [(o.name, o.expected, o.got + ("" if o.clean else " — **" + "; ".join(o.problems)
                                          + "**"), {True: "yes", False: "NO", None: "skipped"}[o.clean])
            for o in outcomes]
    groups = {}
    for o in outcomes:
        g = groups.setdefault(o.group, [0, 0])
        g[0] += 1
        g[1] += bool(o.clean)
    gtab = table(["group", "cases", "clean", "defects"],
                 [(g, c, k, c - k) for g, (c, k) in groups.items()])
    cmd = "mpitrain bench faults" + (" --quick" if args.quick else "")
    sections = [
        f"Command: `flock /tmp/mpitrain-bench.lock {cmd} --out {args.out}`. "
        f"Load average before {load_before}, after {load_after}; {wall:.0f} s wall. The "
        "machine (2 cores) was shared with other engineers' builds and tests, so the time "
        "bounds are generous and the seconds below are not speeds.",
        f"**Counts: {n} cases, {clean} clean, {bad} defects** "
        "(issue 10 before the fixes: 219 cases, 150 clean, 69 failed).",
        gtab,
        "Each case runs the CLI as a subprocess on tiny data made by the bench (300 rows; dense "
        "and CSR HDF5, LIBSVM, .npy). `clean?` = every check held: exit code, exactly one "
        "`mpitrain:` line and no traceback for user errors, every process of the job gone, "
        "checkpoints verified (byte-identical where the case says so), and for stops a "
        "checkpoint, 75 and a resume bit-identical to an uninterrupted run. `W` is the bench's "
        "working directory; error lines are cut at 140 characters.",
        table(["case", "expected", "got", "clean?"], rows),
    ]
    return sections, {"cases": n, "clean": clean, "defects": bad,
                      "before": {"cases": 219, "clean": 150, "defects": 69},
                      "quick": args.quick, "wall_s": wall, "load_before": load_before,
                      "load_after": load_after,
                      "outcomes": [dataclasses.asdict(o) for o in outcomes]}


def _load():
    return open("/proc/loadavg").read().split()[:3]


def main(argv):
    """Run the matrix; writes OUT/report.md and OUT/results.json. Exit 0 (defects are data)."""
    ap = argparse.ArgumentParser(prog="mpitrain bench faults", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--out", default="bench-out/faults", help="report directory")
    ap.add_argument("--quick", action="store_true", help="a ~2 minute subset")
    ap.add_argument("--flips", type=int, default=40, help="bit-flip cases in the full matrix")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--group", default="", help="run only cases whose group contains this")
    ap.add_argument("--timeout-scale", type=float, default=2.0,
                    help="multiply every case's time limit (a loaded machine)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args(argv)
    todo = [c for c in cases(args.flips) if (c.quick or not args.quick)
            and args.only in c.name and args.group in c.group]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up started jobs
    root = tempfile.mkdtemp(prefix="mpitrain-faults-")
    bench = Bench(root, args.timeout_scale)
    load_before, t0, outcomes = _load(), time.perf_counter(), []
    try:
        for i, c in enumerate(todo):
            o = judge(c, bench)
            outcomes.append(o)
            mark = {True: "ok ", False: "BAD", None: "skip"}[o.clean]
            print(f"[{i + 1}/{len(todo)}] {mark} {o.name}: {o.got}"
                  + ("" if o.clean else f"  <- {'; '.join(o.problems)}"), flush=True)
    finally:
        bench.cleanup()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - t0
    sections, results = render(outcomes, args, " ".join(load_before), " ".join(_load()), wall)
    n, clean, bad = counts(outcomes)
    path = write_report(args.out, "Fault and bad-input matrix (issue 10)", sections, results)
    print(f"{n} cases, {clean} clean, {bad} defects -> {path}")
    with open(os.path.join(args.out, "results.json")) as fh:
        json.load(fh)
    return 0
