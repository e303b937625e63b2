"""The slurm/ batch scripts on a real Slurm (Debian's slurmctld + slurmd on localhost, started
by tests/slurm_localhost.sh under /tmp; skipped with the reason when that cannot be done: not
root, no apt, packages not installable, daemons not starting).

- a 2-rank job through slurm/single-node.sbatch, launched by `mpiexec` and by
  `srun --mpi=pmi2`: the final model is bit-identical to the same job run under plain mpiexec;
- slurm/requeue.sbatch signalled mid-run (`scancel --signal=USR1 --batch`): the batch shell
  forwards USR1, the ranks checkpoint and exit 75, the script requeues, the job restarts with
  SLURM_RESTART_COUNT=1, resumes, and ends with the bit-identical final model;
- a job killed by its time limit (state TIMEOUT) leaves checkpoints that verify, and a resume
  from them ends bit-identical;
- `scancel` of a running job leaves no process of it behind (both launch modes).

The time-limit job is submitted first and runs (mostly asleep) beside the others: Slurm's
limits are whole minutes and checked about every 30 s. The node advertises 8 CPUs
(config_overrides) so that it can.
"""
import os
import shutil
import subprocess
import time

import pytest

from test_faults import (CASES, SHIM, ROOT, assert_checkpoints_intact, assert_same_model,
                         ckpt_step, dense_h5, environ, final_model, need, ops_dir,
                         reference, run)  # noqa: F401 (fixtures)
from util import write_job

SCRIPT = os.path.join(ROOT, "tests", "slurm_localhost.sh")
CASE = CASES[0]
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED")


class Slurm:
    def __init__(self, base):
        self.base = base
        self.conf = os.path.join(base, "etc", "slurm.conf")

    def env(self, **extra):
        e = environ(**extra)
        e["SLURM_CONF"] = self.conf
        return e

    def cmd(self, *args, check=True):
        p = subprocess.run(list(args), env=self.env(), capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: rc {p.returncode}: {p.stderr}")
        return p.stdout.strip()

    def submit(self, script, workdir, job, out, *, ntasks=2, launch="mpiexec", delay=0.0,
               extra=()):
        export = {"JOB": job, "OUT": out, "LAUNCH": launch,
                  "VENV": os.path.dirname(os.path.dirname(_python())),
                  "MPITRAIN_SCRIPTS": os.path.join(ROOT, "slurm")}
        if delay:
            shim = os.path.join(workdir, "slow_steps.py")
            with open(shim, "w") as fh:
                fh.write(SHIM)
            export["MPITRAIN"] = f"python {shim}"
            export["MPITRAIN_TEST_STEP_DELAY"] = str(delay)
        p = subprocess.run(["sbatch", "--parsable", "-n", str(ntasks), "-c", "1",
                            "-o", os.path.join(workdir, "slurm.log"), *extra,
                            os.path.join(ROOT, "slurm", script)],
                           env=self.env(**export), cwd=workdir, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip().split(";")[0]

    def show(self, jid):
        out = self.cmd("scontrol", "show", "job", "-o", jid)
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait(self, jid, states=TERMINAL, timeout=120.0):
        t0 = time.time()
        while True:
            info = self.show(jid)
            if info["JobState"] in states:
                return info
            if time.time() - t0 > timeout:
                raise TimeoutError(f"job {jid} still {info['JobState']} after {timeout}s")
            time.sleep(0.1)


def _python():
    import sys
    return sys.executable


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (slurmd runs as root); skipped")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("no apt-get and no Slurm installed: cannot start a local Slurm")
    base = os.environ.get("MPITRAIN_SLURM_DIR", "/tmp/mpitrain-slurm")
    env = dict(os.environ, MPITRAIN_SLURM_DIR=base,
               MPITRAIN_SLURM_CPUS=os.environ.get("MPITRAIN_SLURM_CPUS", "8"))
    for step, limit in (("install", 600), ("up", 90)):
        p = subprocess.run([SCRIPT, step], env=env, capture_output=True, text=True,
                           timeout=limit)
        if p.returncode != 0:
            pytest.skip(f"cannot start a local Slurm ({step} failed, rc {p.returncode}): "
                        f"{p.stderr.strip()[-500:]}")
    yield Slurm(base)
    subprocess.run([SCRIPT, "down"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def timelimit_job(slurm, dense_h5, tmp_path_factory):
    """Submitted at the first test of the module: a job whose steps take 7 s each, under
    --time=1 (minute): Slurm kills it at 60-90 s, long before its 14 steps are done."""
    need(CASE)
    wd = str(tmp_path_factory.mktemp("timelimit"))
    out = os.path.join(wd, "run")
    job = write_job(os.path.join(wd, "job.toml"), CASE.build(dense_h5, out))
    jid = slurm.submit("single-node.sbatch", wd, job, out, delay=7.0, extra=["--time=1"])
    return jid, wd, job, out, time.time()


@pytest.fixture(autouse=True)
def _start_timelimit_first(timelimit_job):
    yield


def _log(wd):
    with open(os.path.join(wd, "slurm.log")) as fh:
        return fh.read()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_two_rank_job(slurm, launch, dense_h5, ops_dir, tmp_path):
    need(CASE)
    ref = reference(CASE, dense_h5, ops_dir, 2)
    wd = str(tmp_path)
    out = os.path.join(wd, "run")
    job = write_job(os.path.join(wd, "job.toml"), CASE.build(dense_h5, out))
    jid = slurm.submit("single-node.sbatch", wd, job, out, launch=launch)
    info = slurm.wait(jid)
    log = _log(wd)
    assert info["JobState"] == "COMPLETED", log
    assert f"start: 2 ranks x 1 threads on" in log and f"({launch})" in log
    assert "P=2 ranks x 1 threads" in log
    assert "mpitrain exited with 0" in log
    assert_same_model(final_model(out), ref)


@pytest.mark.timeout(180)
def test_usr1_checkpoint_requeue_resume(slurm, dense_h5, ops_dir, tmp_path):
    need(CASE)
    ref = reference(CASE, dense_h5, ops_dir, 2)
    wd = str(tmp_path)
    out = os.path.join(wd, "run")
    job = write_job(os.path.join(wd, "job.toml"), CASE.build(dense_h5, out))
    jid = slurm.submit("requeue.sbatch", wd, job, out, delay=0.3)
    t0 = time.time()
    while not os.path.exists(os.path.join(out, "checkpoints", "ckpt-000000003.h5")):
        assert slurm.show(jid)["JobState"] in ("PENDING", "RUNNING"), _log(wd)
        assert time.time() - t0 < 90, "no checkpoint 3"
        time.sleep(0.05)
    slurm.cmd("scancel", "--signal=USR1", "--batch", jid)
    info = slurm.wait(jid, states=("PENDING",) + TERMINAL, timeout=60)
    assert info["JobState"] == "PENDING" and info["Restarts"] == "1", (info, _log(wd))
    stopped = ckpt_step(assert_checkpoints_intact(out)[0])
    assert 3 <= stopped < CASE.steps
    # a requeued job is held (BeginTime) ~2 min; release it once the old steps are gone (a
    # start while they are still being torn down fails with "Job credential revoked")
    t0 = time.time()
    while subprocess.run(["pgrep", "-f", f"slurmstepd: \\[{jid}\\."],
                         capture_output=True).returncode == 0 and time.time() - t0 < 30:
        time.sleep(0.1)
    time.sleep(1.0)
    slurm.cmd("scontrol", "update", f"JobId={jid}", "StartTime=now")
    info = slurm.wait(jid, timeout=120)
    log = _log(wd)
    assert info["JobState"] == "COMPLETED", log
    assert "got USR1: forwarding to the ranks" in log
    assert "stop requested (SIGUSR1)" in log
    assert "exit 75): requeueing" in log
    assert "SLURM_RESTART_COUNT=1" in log
    assert f"at step {stopped} (P=2)" in log
    assert_same_model(final_model(out), ref)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_scancel_leaves_no_strays(slurm, launch, dense_h5, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    out = os.path.join(wd, "run")
    job = write_job(os.path.join(wd, "job.toml"), CASE.build(dense_h5, out))
    jid = slurm.submit("requeue.sbatch", wd, job, out, launch=launch, delay=0.5)
    t0 = time.time()
    while not os.path.exists(os.path.join(out, "checkpoints", "ckpt-000000002.h5")):
        assert time.time() - t0 < 90, _log(wd)
        time.sleep(0.05)
    slurm.cmd("scancel", jid)
    info = slurm.wait(jid, timeout=30)
    assert info["JobState"] == "CANCELLED"
    t0 = time.time()
    while _procs_mentioning(out) and time.time() - t0 < 10:
        time.sleep(0.1)
    assert not _procs_mentioning(out), "stray processes after scancel"
    assert_checkpoints_intact(out)


def _procs_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{pid}/stat") as fh:
                    zombie = fh.read().rsplit(") ", 1)[1][0] == "Z"
            except (OSError, IndexError):
                continue
            if text in cmd and not zombie:
                found.append((int(pid), cmd))
    return found


@pytest.mark.timeout(200)
def test_time_limit_leaves_usable_checkpoint(slurm, timelimit_job, dense_h5, ops_dir):
    """Runs last: waits for the job submitted at the start of the module."""
    ref = reference(CASE, dense_h5, ops_dir, 2)
    jid, wd, job, out, t_submit = timelimit_job
    info = slurm.wait(jid, timeout=150)
    log = _log(wd)
    assert info["JobState"] == "TIMEOUT", (info["JobState"], log)
    assert "DUE TO TIME LIMIT" in log
    files = assert_checkpoints_intact(out)
    at = ckpt_step(files[0])
    assert 1 <= at < CASE.steps
    p, _ = run(["run", job, "--resume", "auto"], 2)
    assert p.returncode == 0, p.stderr
    assert f"at step {at}" in p.stdout
    assert_same_model(final_model(out), ref)
