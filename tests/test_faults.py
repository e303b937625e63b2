"""Faults without Slurm (issue 7, part 3), run end to end through the CLI under mpiexec.

- kill -9 of one rank mid-run: mpiexec exits non-zero within 10 s, every checkpoint left
  behind verifies, and `--resume auto` finishes with the SAME final model (bit-identical) as
  an uninterrupted run;
- a kill in the middle of a checkpoint write: the half-written file is ignored (and cleaned
  up), the resume starts from the checkpoint before it, same final model;
- a truncated newest checkpoint (a non-atomic file system, a copy cut short): skipped;
- SIGTERM to mpiexec alone: checkpoint, exit 75, resume, same final model;
- an unwritable run directory, a disk that fills up mid-write (a small tmpfs when root can
  mount one) and a file-size limit (RLIMIT_FSIZE: needs nothing): a one-line error, exit 73,
  the earlier checkpoints intact, and the resume once space is back ends bit-identical.

The tests run over CASES: (algorithm, job builder). Adding an algorithm is one entry; a case
whose algorithm is not registered (not merged yet) is skipped.
"""
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import pytest

from mpitrain.bench.faults import SHIM
from mpitrain.proctree import descendants, kill_tree, rank_pids, stat as _stat
from util import env as _env, mpiexec, write_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the algorithms under test ---------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """algorithm: registry name. build(data, out) → job sections for a run of `steps` steps.
    cap: the --set key that stops a run early at step k and, raised again, lets a resume go on.
    elastic_rtol: relative tolerance of a resume at another P against an uninterrupted run
    at that P (None: the algorithm refuses to change P and must say why)."""
    algorithm: str
    build: Callable
    steps: int
    cap: Optional[str]
    elastic_rtol: Optional[float] = 1e-12
    full: bool = True  # False: only the kill -9 tests (keeps the suite in its time budget)


def _lbfgs(data, out):
    return {"job": {"algorithm": "lbfgs", "seed": 1, "out": out, "log_every": 1000},
            "data": {"train": data},
            "model": {"loss": "logistic", "l2": 1e-4},
            "solver": {"max_iter": 14, "tol": 0.0, "memory": 5},
            "checkpoint": {"every": 1, "keep": 50}}


def _linear(algorithm, solver):
    def build(data, out):
        return {"job": {"algorithm": algorithm, "seed": 1, "out": out, "log_every": 1000},
                "data": {"train": data}, "model": {"loss": "logistic", "l2": 1e-3},
                "solver": dict(solver), "checkpoint": {"every": 1, "keep": 50}}
    return build


def _dae_gradual(data, out):
    # float32 data-parallel SGD over the global batch: another P changes only the summation
    # order of the gradient Allreduce (float32), hence the looser tolerance.
    return {"job": {"algorithm": "dae-gradual", "seed": 1, "out": out, "log_every": 1000},
            "data": {"train": data, "max_rows": 1200},
            "model": {"layers": [16, 8], "loss": "squared", "noise": "gauss",
                      "noise_level": 0.1},
            "solver": {"epochs": 6, "batch": 60, "lr": 0.01, "eval_every": 0},
            "checkpoint": {"every": 1, "keep": 50}}


CASES = [
    # L-BFGS: replicated state; at another P only the Allreduce summation order changes, so
    # the model differs from an uninterrupted run at the new P by rounding only (≤ 1e-12).
    Case("lbfgs", _lbfgs, steps=14, cap="solver.max_iter"),
    # The SGD-based methods: bit-identical resume at the same P is asserted; at another P
    # their local shards (and so their trajectories) change, which has no 1e-12 reference.
    Case("fadl", _linear("fadl", {"max_iter": 10, "tol": 0.0, "gap_tol": 0.0}), steps=10,
         cap="solver.max_iter", elastic_rtol=None, full=False),
    Case("psgd-mix", _linear("psgd-mix", {"max_iter": 10}), steps=10, cap="solver.max_iter",
         elastic_rtol=None, full=False),
    # DASVRDA draws the global mini-batch from one stream shared by all ranks, so its iterates
    # depend on P only through the Allreduce summation order: resuming at another P matches
    # an uninterrupted run at that P to rounding (asserted 1e-9 over 10 stages).
    Case("dasvrda", _linear("dasvrda", {"max_stages": 10}), steps=10, cap="solver.max_stages",
         elastic_rtol=1e-9, full=False),
    Case("dae-gradual", _dae_gradual, steps=12, cap=None, elastic_rtol=1e-4,
         full=False),
]


def registered():
    from mpitrain.algorithms import registry
    return registry()


def case_params(cases=None):
    return [pytest.param(c, id=c.algorithm if c else "none") for c in (cases or CASES)]


def need(case):
    if case.algorithm not in registered():
        pytest.skip(f"algorithm {case.algorithm!r} is not registered in this tree")


# -- data --------------------------------------------------------------------------------------
def make_dense(path, n=3000, d=30, seed=0):
    """A small, seeded, dense binary classification set (group train)."""
    import h5py
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    y = np.where(X @ w + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        g["X"] = X
        g["y"] = y
    return path


@pytest.fixture(scope="session")
def ops_dir():
    d = tempfile.mkdtemp(prefix="mpitrain-ops-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def dense_h5(ops_dir):
    return make_dense(os.path.join(ops_dir, "dense.h5"))


# -- running the CLI -----------------------------------------------------------------------------
# SHIM: a launcher that slows every training step by MPITRAIN_TEST_STEP_DELAY seconds
# (numerics untouched), so that a signal sent from outside reliably lands mid-run.


def command(args, nranks=1, delay=0.0):
    py = [sys.executable, "-c", SHIM] if delay else [sys.executable, "-m", "mpitrain"]
    cmd = py + list(args)
    return [mpiexec(), "-n", str(nranks)] + cmd if nranks > 1 else cmd


def environ(delay=0.0, **extra):
    e = _env(1, **extra)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    if delay:
        e["MPITRAIN_TEST_STEP_DELAY"] = str(delay)
    return e


def run(args, nranks=1, delay=0.0, timeout=120, preexec_fn=None, **extra):
    """Run the CLI to the end; returns (CompletedProcess, seconds)."""
    t0 = time.perf_counter()
    p = subprocess.run(command(args, nranks, delay), env=environ(delay, **extra), cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
    return p, time.perf_counter() - t0


def start(args, nranks=1, delay=0.0, **extra):
    proc = subprocess.Popen(command(args, nranks, delay), env=environ(delay, **extra),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    STARTED.add(proc)
    return proc


def finish(proc, timeout=10.0):
    """Wait for a started run; returns (rc, stdout, stderr, seconds waited). If it outlives
    `timeout`, its whole process tree is killed and rc is None (the test then fails)."""
    t0 = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        return None, out, err, time.perf_counter() - t0
    waited = time.perf_counter() - t0
    STARTED.discard(proc)
    return proc.returncode, out, err, waited


def wait_for_checkpoint(out, step, proc=None, timeout=60.0):
    t0 = time.time()
    path = os.path.join(out, "checkpoints", f"ckpt-{step:09d}.h5")
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before checkpoint {step}: "
                                 + proc.stderr.read()[-2000:])
        if time.time() - t0 > timeout:
            raise TimeoutError(f"no checkpoint {step} in {timeout}s")
        time.sleep(0.02)


STARTED = set()


@pytest.fixture(autouse=True)
def _no_strays():
    """Whatever a test started and did not see finish is killed (whole tree) afterwards."""
    yield
    for proc in list(STARTED):
        kill_tree(proc.pid)
        try:
            proc.communicate(timeout=5)
        except Exception:
            pass
        STARTED.discard(proc)


# -- results -------------------------------------------------------------------------------------
def final_model(out):
    """Every array of OUT/final.h5 (path → array)."""
    from mpitrain.driver import read_model
    return read_model(os.path.join(out, "final.h5"))


def assert_same_model(a, b, rtol=0.0):
    assert sorted(a) == sorted(b)
    for k in a:
        if rtol == 0.0:
            assert np.array_equal(a[k], b[k]), f"{k} differs (max |Δ| = " \
                f"{np.max(np.abs(np.asarray(a[k], float) - np.asarray(b[k], float)))})"
        else:
            x, y = np.asarray(a[k], float), np.asarray(b[k], float)
            rel = np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-300)
            assert rel <= rtol, f"{k}: relative difference {rel:.3g} > {rtol:g}"


def checkpoints(out):
    """Checkpoint files of a run directory, newest first."""
    from mpitrain.checkpoint import candidates
    return sorted(candidates(os.path.join(out, "checkpoints")), reverse=True)


def assert_checkpoints_intact(out, at_least=1):
    """Every complete-named checkpoint verifies (CRCs, complete flag, version)."""
    from mpitrain.checkpoint import verify
    files = checkpoints(out)
    assert len(files) >= at_least, f"only {len(files)} checkpoints in {out}"
    for f in files:
        verify(f)
    return files


def ckpt_step(path):
    return int(os.path.basename(path)[5:14])


def one_line_error(stderr, code_kind):
    """The stderr of a clean failure: exactly one `mpitrain: KIND...` line, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("mpitrain:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"mpitrain: {code_kind}"), lines[0]
    return lines[0]


_REFS = {}


def reference(case, data, ops_dir, nranks):
    """Final model of an uninterrupted run of `case` at `nranks` (made once per session)."""
    key = (case.algorithm, data, nranks)
    if key not in _REFS:
        out = os.path.join(ops_dir, f"ref-{case.algorithm}-{nranks}")
        job = write_job(os.path.join(ops_dir, f"ref-{case.algorithm}-{nranks}.toml"),
                        case.build(data, out))
        p, _ = run(["run", job, "--fresh"], nranks)
        assert p.returncode == 0, p.stderr
        _REFS[key] = final_model(out)
    return _REFS[key]


def new_job(case, data, tmp_path, name="job"):
    out = str(tmp_path / name)
    return write_job(str(tmp_path / f"{name}.toml"), case.build(data, out)), out


# -- kill -9 ---------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params())
def test_kill9_one_rank_midrun_then_resume(case, dense_h5, ops_dir, tmp_path):
    """Rank 1 hangs inside step 6 (MPITRAIN_FAULT hang) while rank 0 waits in the next
    collective; we kill -9 rank 1 from outside. mpiexec must notice and exit non-zero."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, MPITRAIN_FAULT="step:1:6:hang")
    wait_for_checkpoint(out, 5, p)
    time.sleep(0.3)
    pids = rank_pids(p.pid)
    assert set(pids) == {0, 1}, pids
    tree = [p.pid] + descendants(p.pid)
    os.kill(pids[1], signal.SIGKILL)
    rc, _, err, waited = finish(p, timeout=10)
    assert rc is not None, f"mpiexec still running 10 s after kill -9 of rank 1: {err}"
    assert rc != 0
    assert waited < 10
    time.sleep(0.2)
    strays = [pid for pid in tree if _stat(pid) and _stat(pid)[0] != "Z"]
    assert not strays, f"processes of the killed job still running: {strays}"
    files = assert_checkpoints_intact(out)
    assert ckpt_step(files[0]) == 5
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert "at step 5" in p2.stdout
    assert_same_model(final_model(out), ref)
    FIGURES.append(f"kill -9 rank 1 at step 6 ({case.algorithm}, P=2): mpiexec rc {rc} after "
                   f"{waited:.2f}s; resumed from step 5, final model bit-identical")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.full]))
def test_self_kill9_rank0_after_step(case, dense_h5, ops_dir, tmp_path):
    """Rank 0 SIGKILLs itself right after step 4 (before any collective of the stop check)."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, MPITRAIN_FAULT="step:0:4:kill")
    rc, _, err, waited = finish(p, timeout=30)
    assert rc not in (None, 0), err
    assert waited < 10 + 5  # includes start-up
    files = assert_checkpoints_intact(out)
    assert ckpt_step(files[0]) == 3
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert_same_model(final_model(out), ref)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params())
def test_kill_during_checkpoint_write(case, dense_h5, ops_dir, tmp_path):
    """Rank 0 is SIGKILLed in the middle of writing checkpoint 5 (datasets written, not yet
    marked complete nor renamed). The half file must be ignored and removed later."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, MPITRAIN_FAULT="ckpt:0:5:kill")
    rc, _, err, waited = finish(p, timeout=30)
    assert rc not in (None, 0), err
    ckdir = os.path.join(out, "checkpoints")
    half = [f for f in os.listdir(ckdir) if ".tmp" in f]
    assert half and half[0].startswith("ckpt-000000005.h5.tmp"), os.listdir(ckdir)
    from mpitrain.checkpoint import verify
    from mpitrain.errors import CheckpointError
    with pytest.raises(CheckpointError):
        verify(os.path.join(ckdir, half[0]))
    files = assert_checkpoints_intact(out)
    assert ckpt_step(files[0]) == 4
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert "at step 4" in p2.stdout
    assert not [f for f in os.listdir(ckdir) if ".tmp" in f], "half-written file not removed"
    assert_same_model(final_model(out), ref)
    FIGURES.append(f"kill -9 of rank 0 inside checkpoint write 5 ({case.algorithm}, P=2): rc "
                   f"{rc} after {waited:.2f}s incl. start-up; half file ignored and removed; "
                   "resumed from step 4, bit-identical")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.full]))
def test_truncated_newest_checkpoint_is_skipped(case, dense_h5, ops_dir, tmp_path):
    """A checkpoint with a complete name but cut short (non-atomic copy, broken file system):
    --resume auto says so on stderr and takes the one before."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 1)
    job, out = new_job(case, dense_h5, tmp_path)
    p, _ = run(["run", job, "--set", f"{case.cap}=6"], 1)
    assert p.returncode == 0, p.stderr
    files = checkpoints(out)
    assert ckpt_step(files[0]) == 6
    with open(files[0], "rb") as fh:
        head = fh.read(os.path.getsize(files[0]) // 2)
    with open(files[0], "wb") as fh:
        fh.write(head)
    p2, _ = run(["run", job, "--resume", "auto"], 1)
    assert p2.returncode == 0, p2.stderr
    assert "skipping" in p2.stderr and os.path.basename(files[0]) in p2.stderr
    assert "at step 5" in p2.stdout
    assert_same_model(final_model(out), ref)


# -- SIGTERM -----------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.full]))
def test_sigterm_to_mpiexec_checkpoints_and_resumes(case, dense_h5, ops_dir, tmp_path):
    """SIGTERM to the mpiexec process only (what a batch system or a user's kill does): Hydra
    forwards it to the ranks; they agree at the next step, checkpoint, exit 75."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, delay=0.15)
    wait_for_checkpoint(out, 3, p)
    os.kill(p.pid, signal.SIGTERM)
    rc, stdout, err, waited = finish(p, timeout=10)
    assert rc == 75, (rc, err)
    assert waited < 10
    assert "stop requested (SIGTERM)" in stdout
    files = assert_checkpoints_intact(out)
    stopped_at = ckpt_step(files[0])
    assert 3 <= stopped_at < case.steps
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert f"at step {stopped_at}" in p2.stdout
    assert_same_model(final_model(out), ref)
    FIGURES.append(f"SIGTERM to mpiexec ({case.algorithm}, P=2): exit 75 after {waited:.2f}s "
                   f"with checkpoint {stopped_at}; resume bit-identical")


# -- output problems ------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("nranks", [1, 2])
def test_unwritable_output_dir(nranks, dense_h5, tmp_path):
    """The run directory lies below a regular file (ENOTDIR, fails even for root)."""
    case = CASES[0]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = str(blocker / "run")
    job = write_job(str(tmp_path / "job.toml"), case.build(dense_h5, out))
    p, t = run(["run", job], nranks)
    assert p.returncode == 73, p.stderr
    line = one_line_error(p.stderr, "cannot write output")
    assert out in line
    assert t < 10


def _mount_tmpfs(path, size, opts=""):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{opts}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")


def _umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.full]))
def test_readonly_then_full_disk(case, dense_h5, ops_dir, tmp_path):
    """On a small tmpfs: run to step 4; remount read-only → resume refuses cleanly (73);
    fill the disk to the last few KiB → the next checkpoint write fails cleanly (73), the
    earlier checkpoints verify; free the space → resume ends bit-identical."""
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    mnt = str(tmp_path / "mnt")
    _mount_tmpfs(mnt, "4m")
    try:
        out = os.path.join(mnt, "run")
        job = write_job(str(tmp_path / "job.toml"), case.build(dense_h5, out))
        p, _ = run(["run", job, "--set", f"{case.cap}=4"], 2)
        assert p.returncode == 0, p.stderr
        before = {f: os.path.getsize(f) for f in assert_checkpoints_intact(out)}

        subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
        p, t = run(["run", job, "--resume", "auto"], 2)
        assert p.returncode == 73, p.stderr
        one_line_error(p.stderr, "cannot write output")
        assert t < 10
        subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)

        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        ck = max(before.values())
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as fh:  # leave less than one checkpoint free
            fh.write(b"\0" * max(0, free - ck // 2))
        p, t = run(["run", job, "--resume", "auto"], 2)
        assert p.returncode == 73, p.stderr
        line = one_line_error(p.stderr, "cannot write output")
        assert "earlier checkpoints are intact" in line or "No space" in line, line
        assert t < 10
        after = assert_checkpoints_intact(out)
        assert {f: os.path.getsize(f) for f in after} == before
        with open(filler, "ab") as fh:  # now to the last byte: the progress log fails first
            try:
                fh.write(b"\0" * (ck * 2))
            except OSError:
                pass
        p, t = run(["run", job, "--resume", "auto"], 2)
        assert p.returncode == 73, p.stderr
        line = one_line_error(p.stderr, "cannot write output")
        assert t < 10
        assert {f: os.path.getsize(f) for f in assert_checkpoints_intact(out)} == before
        os.unlink(filler)
        p, _ = run(["run", job, "--resume", "auto"], 2)
        assert p.returncode == 0, p.stderr
        assert_same_model(final_model(out), ref)
        FIGURES.append(f"read-only run dir / disk full mid-write ({case.algorithm}, P=2): exit "
                       f"73 in {t:.2f}s, checkpoints 1-4 intact, resume bit-identical")
    finally:
        _umount(mnt)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.full]))
def test_file_size_limit_mid_write(case, dense_h5, ops_dir, tmp_path):
    """RLIMIT_FSIZE below one checkpoint's size (no mount needed): EFBIG in the middle of the
    write → clean exit 73, earlier checkpoints intact, resume bit-identical."""
    need(case)
    import resource
    ref = reference(case, dense_h5, ops_dir, 1)
    job, out = new_job(case, dense_h5, tmp_path)
    p, _ = run(["run", job, "--set", f"{case.cap}=4"], 1)
    assert p.returncode == 0, p.stderr
    before = {f: os.path.getsize(f) for f in assert_checkpoints_intact(out)}
    limit = min(before.values()) - 512
    assert os.path.getsize(os.path.join(out, "metrics.jsonl")) < limit // 2

    # MPI start-up itself needs to write files (UCX), so the limit is put on the running
    # process (prlimit) once it has resumed, before its first checkpoint write.
    p = start(["run", job, "--resume", "auto"], 1, delay=0.5)
    line = p.stdout.readline()
    while line and "resumed from" not in line:
        line = p.stdout.readline()
    assert "resumed from" in line, p.stderr.read()
    resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (limit, limit))
    rc, _, err, t = finish(p, timeout=20)
    assert rc == 73, err
    one_line_error(err, "cannot write output")
    assert {f: os.path.getsize(f) for f in assert_checkpoints_intact(out)} == before
    p, _ = run(["run", job, "--resume", "auto"], 1)
    assert p.returncode == 0, p.stderr
    assert_same_model(final_model(out), ref)


FIGURES = []


@pytest.fixture(scope="session", autouse=True)
def _print_figures():
    yield
    if FIGURES and os.environ.get("MPITRAIN_OPS_FIGURES"):
        with open(os.environ["MPITRAIN_OPS_FIGURES"], "a") as fh:
            fh.writelines(line + "\n" for line in FIGURES)


# -- no silent hang, no silent failure (issue 10 §4) ------------------------------------------
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_stalled_rank_is_named_and_ends_the_job(dense_h5, ops_dir, tmp_path):
    """Rank 1 is frozen (SIGSTOP) mid-run with [job] stall_timeout = 3: rank 0, waiting in a
    collective, asks its peers, gets no answer from rank 1 and ends the job with exit 69 and
    one line naming rank 1. Checkpoints stay intact; the resume takes over the stale run lock
    and ends bit-identical."""
    case = CASES[0]
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job, "--set", "job.stall_timeout=3"], 2, delay=0.1)
    wait_for_checkpoint(out, 3, p)
    pids = rank_pids(p.pid)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        rc, _, err, waited = finish(p, timeout=40)
    finally:
        kill_tree(pids[1])  # SIGKILL ends a stopped process too
    assert rc == 69, (rc, err)
    line = one_line_error(err, "stalled job")
    assert "rank 1 (no answer" in line, line
    assert waited < 30  # 3 s timeout + up to 3 s asking + abort (≈ 6.3 s on an idle machine)
    assert_checkpoints_intact(out, at_least=3)
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert "took over a stale lock" in p2.stdout + p2.stderr
    assert_same_model(final_model(out), ref)
    FIGURES.append(f"rank 1 SIGSTOPped, stall_timeout 3 s (lbfgs, P=2): exit 69 after "
                   f"{waited:.2f}s naming rank 1; resume bit-identical")


def _all_state_finite(path):
    import h5py
    bad = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset)
                     and o.dtype.kind == "f" and not np.all(np.isfinite(o[()])) else None)
    return not bad


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_divergence_is_an_error(dense_h5, tmp_path):
    """A huge SGD step makes psgd-mix's squared-hinge objective overflow: exit 70, one line
    naming the step and the quantity, no final.h5, every checkpoint left is finite."""
    if "psgd-mix" not in registered():
        pytest.skip("psgd-mix not registered")
    out = str(tmp_path / "div")
    job = write_job(str(tmp_path / "div.toml"), {
        "job": {"algorithm": "psgd-mix", "seed": 1, "out": out},
        "data": {"train": dense_h5}, "model": {"loss": "squared_hinge", "l2": 1e-6},
        "solver": {"max_iter": 30, "step_size": 5000.0}, "checkpoint": {"every": 1}})
    for nranks in (1, 2):
        p, _ = run(["run", job, "--fresh"], nranks)
        assert p.returncode == 70, (p.returncode, p.stderr)
        line = one_line_error(p.stderr, "diverged")
        assert "step " in line and "objective" in line and "not finite" in line, line
        assert not os.path.exists(os.path.join(out, "final.h5"))
        assert not os.path.exists(os.path.join(out, "summary.json"))
        assert all(_all_state_finite(f) for f in checkpoints(out))


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_rank_exiting_0_mid_run_fails_the_job(dense_h5, tmp_path):
    """Rank 1 calls C exit(0) after step 4 (a library giving up): the launcher must report a
    failure with a message, not a success without final.h5."""
    case = CASES[0]
    job, out = new_job(case, dense_h5, tmp_path)
    p, t = run(["run", job], 2, MPITRAIN_FAULT="step:1:4:exit0")
    assert p.returncode not in (0, 75), (p.returncode, p.stderr)
    assert "rank 1 exited in the middle of the run" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(out, "final.h5"))
    assert t < 30
