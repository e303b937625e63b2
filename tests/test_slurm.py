"""The slurm/ batch scripts on a real Slurm: Debian's slurmctld and two slurmd (nodes n1 and n2
on this one host), started by tests/slurm_localhost.sh under /tmp; skipped with the reason when
that cannot be done (not root, no apt, packages not installable, daemons not starting).

Every job is submitted from a scratch directory, not the checkout, with a relative JOB path:
the scripts find common.sh and the quick start's .venv themselves.

- the scripts' own errors (no virtualenv, no JOB, a missing job file, a bad LAUNCH, no
  common.sh) end at once with one line and mpitrain's exit codes (no Slurm needed);
- a 2-rank job through slurm/single-node.sbatch, launched by `mpiexec` and by
  `srun --mpi=pmi2`: the final model is bit-identical to the same job run under plain mpiexec;
- slurm/multi-node.sbatch with -N 2, one rank per node, both launchers: SLURM_NODEID 0 and 1
  on n1 and n2, `--cpus-per-task` OpenMP threads in each rank, the same model;
- USR1 (`scancel --signal=USR1`, to the batch shell with --batch and to the ranks without):
  stop checkpoint, exit 75, requeue, restart 1, resume, bit-identical model; a failed
  `scontrol requeue` ends the job FAILED, not COMPLETED;
- `scancel` and the time limit (both launchers, one and two nodes): a stop checkpoint (periodic
  checkpoints are off, so a checkpoint is the stop's), no process left behind, and a resume
  from it ends bit-identical;
- a rank on node n2 killed: the rank on n1 ends within seconds (under srun, which sends it
  SIGTERM, after MPITRAIN_STOP_GRACE = 5 s), the job ends FAILED;
- slurm/sweep.sbatch as a job array passes each task's --set line;
- mpitrain run straight from a batch script of 2 tasks (no launcher) is refused (exit 64).

The time-limit jobs are submitted when the module starts and run (mostly asleep) beside the
others: Slurm's limits are whole minutes and checked about every 30 s. The nodes advertise
8 CPUs each (config_overrides) so that they can.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

from test_faults import SHIM as FAULTS_SHIM
from test_faults import (CASES, ROOT, assert_checkpoints_intact, assert_same_model,
                         checkpoints, ckpt_step, dense_h5, final_model, need, ops_dir,
                         run)  # noqa: F401 (fixtures)
from util import env as _env, write_job

SCRIPT = os.path.join(ROOT, "tests", "slurm_localhost.sh")
SLURM_DIR = os.path.join(ROOT, "slurm")
CASE = CASES[0]
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED")
ONE_NODE = ("-N", "1", "--ntasks-per-node=2", "-c", "1")
TWO_NODES = ("-N", "2", "--ntasks-per-node=1", "-c", "1")

# test_faults.SHIM slows every step by MPITRAIN_TEST_STEP_DELAY s (numerics untouched) so that
# a signal lands mid-run; before it, each rank writes where it runs (MPITRAIN_TEST_RANK_INFO=DIR)
# at its first step.
SHIM = """\
import json, os
from mpitrain.algorithms import registry
_info = [os.environ.get("MPITRAIN_TEST_RANK_INFO")]
for _cls in registry().values():
    def _where(self, _orig=_cls.step):
        if _info[0]:
            from mpi4py import MPI
            from mpitrain._kernels import omp
            with open(os.path.join(_info[0], f"rank-{MPI.COMM_WORLD.rank}.json"), "w") as fh:
                json.dump({k: os.environ.get(k) for k in ("SLURM_NODEID", "SLURMD_NODENAME",
                                                           "SLURM_JOB_ID")}
                          | {"threads": omp.get_max_threads(), "pid": os.getpid()}, fh)
            _info[0] = None
        return _orig(self)
    _cls.step = _where
""" + FAULTS_SHIM


def _venv():
    """VENV for the scripts: none (their default, the checkout's .venv) when that is ours."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return None if os.path.realpath(venv) == os.path.realpath(os.path.join(ROOT, ".venv")) \
        else venv


def script_env(**extra):
    """The submitting shell's environment: no MPI/Slurm variables of ours, PYTHONPATH on the
    checkout (a rank in another directory imports this tree)."""
    e = _env(1)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    for k in ("JOB", "OUT", "SET", "LAUNCH", "VENV", "MPITRAIN", "MPITRAIN_HOME", "SWEEP"):
        e.pop(k, None)
    if _venv():
        e["VENV"] = _venv()
    e.update({k: str(v) for k, v in extra.items()})
    return e


class Slurm:
    def __init__(self, base):
        self.base = base
        self.conf = os.path.join(base, "etc", "slurm.conf")

    def cmd(self, *args, check=True):
        p = subprocess.run(list(args), env=dict(script_env(), SLURM_CONF=self.conf),
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: rc {p.returncode}: {p.stderr}")
        return p.stdout.strip()

    def submit(self, script, workdir, *sbatch_args, delay=0.0, **export):
        """sbatch slurm/SCRIPT from workdir (log: workdir/slurm.log); export: JOB, OUT, ..."""
        e = script_env(SLURM_CONF=self.conf, **export)
        if export.get("LAUNCH") == "srun":
            # Slurm 22.05's pmi2 plugin now and then misreads the MPICH wheel's long UCX
            # address exchange under load (slurm/README.md); OFI's addresses are short
            e.setdefault("MPIR_CVAR_CH4_NETMOD", "ofi")
        if delay:
            shim = os.path.join(workdir, "slow_steps.py")
            with open(shim, "w") as fh:
                fh.write(SHIM)
            e.update(MPITRAIN=f"{sys.executable} {shim}", MPITRAIN_TEST_STEP_DELAY=str(delay),
                     MPITRAIN_TEST_RANK_INFO=workdir)
        p = subprocess.run(["sbatch", "--parsable", "-o", os.path.join(workdir, "slurm.log"),
                            *sbatch_args, os.path.join(SLURM_DIR, script)],
                           env=e, cwd=workdir, capture_output=True, text=True, timeout=60)
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

    def release(self, jid):
        """Start a requeued job now (Slurm holds it ~2 min, Reason=BeginTime), once the old
        steps are gone (a start while they are torn down fails: "Job credential revoked")."""
        t0 = time.time()
        while subprocess.run(["pgrep", "-f", f"slurmstepd: \\[{jid}\\."],
                             capture_output=True).returncode == 0 and time.time() - t0 < 40:
            time.sleep(0.1)
        time.sleep(1.0)
        self.cmd("scontrol", "update", f"JobId={jid}", "StartTime=now")


def _free_ports(n):
    """A base port p with p .. p+n-1 free (slurmctld, then one slurmd per node)."""
    import socket
    for _ in range(50):
        base = random.randrange(20000, 40000)
        try:
            for port in range(base, base + n):
                with socket.socket() as sk:
                    sk.bind(("", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def slurm():
    """A Slurm of this test run's own (directory and ports), so that concurrent runs of the
    suite on one machine do not cancel each other's jobs or stop each other's daemons."""
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (slurmd runs as root); skipped")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("no apt-get and no Slurm installed: cannot start a local Slurm")
    import tempfile
    base = tempfile.mkdtemp(prefix="mpitrain-slurm-")
    os.chmod(base, 0o755)  # munged wants every directory above its socket searchable by all
    env = dict(os.environ, MPITRAIN_SLURM_DIR=base, MPITRAIN_SLURM_NODES="2",
               MPITRAIN_SLURM_PORT=str(_free_ports(3)),
               MPITRAIN_SLURM_FIRST_JOB_ID=str(random.randrange(1000, 60000) * 1000),
               MPITRAIN_SLURM_CPUS=os.environ.get("MPITRAIN_SLURM_CPUS", "8"))
    try:
        for step, limit in (("install", 600), ("up", 90)):
            p = subprocess.run([SCRIPT, step], env=env, capture_output=True, text=True,
                               timeout=limit)
            if p.returncode != 0:
                pytest.skip(f"cannot start a local Slurm ({step} failed, rc {p.returncode}):"
                            f" {p.stderr.strip()[-500:]}")
        yield Slurm(base)
    finally:
        subprocess.run([SCRIPT, "purge"], env=env, capture_output=True, timeout=120)


def _job(wd, data, every=1000, name="job.toml"):
    """A job file in wd whose run directory is wd/run; periodic checkpoints off by default,
    so that any checkpoint is a stop checkpoint."""
    sections = CASE.build(data, os.path.join(wd, "run"))
    sections["checkpoint"]["every"] = every
    return write_job(os.path.join(wd, name), sections)


_REFS = {}


def reference(data, ops_dir):
    """Final model of an uninterrupted 2-rank run under plain mpiexec (once per session)."""
    if "ref" not in _REFS:
        wd = os.path.join(ops_dir, "slurm-ref")
        os.makedirs(wd, exist_ok=True)
        p, _ = run(["run", _job(wd, data), "--fresh"], 2)
        assert p.returncode == 0, p.stderr
        _REFS["ref"] = final_model(os.path.join(wd, "run"))
    return _REFS["ref"]


def _log(wd):
    with open(os.path.join(wd, "slurm.log")) as fh:
        return fh.read()


def _rank_info(wd, n):
    infos = []
    for r in range(n):
        with open(os.path.join(wd, f"rank-{r}.json")) as fh:
            infos.append(json.load(fh))
    return infos


def _wait_in_steps(slurm, jid, wd, timeout=90):
    """Wait until the ranks are inside their steps (the shim wrote where they run)."""
    t0 = time.time()
    while not os.path.exists(os.path.join(wd, "rank-0.json")):
        assert slurm.show(jid)["JobState"] in ("PENDING", "RUNNING"), _log(wd)
        assert time.time() - t0 < timeout, "the job never started a step"
        time.sleep(0.05)
    time.sleep(1.0)  # a step or two in


def _resume_matches(wd, job, data, ops_dir, at):
    """A stop checkpoint at step `at`, resumed under plain mpiexec, ends bit-identical."""
    p, _ = run(["run", job, "--resume", "auto"], 2)
    assert p.returncode == 0, p.stderr
    assert f"at step {at}" in p.stdout, p.stdout
    assert_same_model(final_model(os.path.join(wd, "run")), reference(data, ops_dir))


def _stop_checkpoint(wd):
    """The one checkpoint of a run whose periodic checkpoints are off: the stop's."""
    files = assert_checkpoints_intact(os.path.join(wd, "run"))
    assert len(files) == 1, files
    at = ckpt_step(files[0])
    assert 1 <= at < CASE.steps
    return at


# -- time limits: submitted first, checked last ----------------------------------------------
TIME_LIMIT = {"one-node-mpiexec": ("mpiexec", ONE_NODE), "one-node-srun": ("srun", ONE_NODE),
              "two-nodes-mpiexec": ("mpiexec", TWO_NODES)}


@pytest.fixture(scope="module")
def timelimit_jobs(slurm, dense_h5, tmp_path_factory):
    """Jobs whose steps take 8 s each (14 steps) under --time=1 (minute): Slurm sends TERM
    at 60-90 s, long before they are done, and SIGKILL KillWait (30 s) later."""
    need(CASE)
    jobs = {}
    for name, (launch, shape) in TIME_LIMIT.items():
        wd = str(tmp_path_factory.mktemp(f"timelimit-{name}"))
        _job(wd, dense_h5)
        jid = slurm.submit("single-node.sbatch" if shape is ONE_NODE else "multi-node.sbatch",
                           wd, *shape, "--time=1", delay=8.0, JOB="job.toml", LAUNCH=launch)
        jobs[name] = (jid, wd)
    return jobs


@pytest.fixture(autouse=True)
def _start_timelimit_first(request):
    if "slurm" in request.fixturenames:
        request.getfixturevalue("timelimit_jobs")
    yield


# -- the scripts' own errors (no Slurm needed) --------------------------------------------------
@pytest.mark.timeout(60)
def test_script_errors_are_one_line(tmp_path, dense_h5):
    job = _job(str(tmp_path), dense_h5)
    cases = [({"VENV": str(tmp_path / "novenv"), "JOB": job}, 78, "no virtualenv at VENV="),
             ({}, 64, "set JOB="),
             ({"JOB": "nope.toml"}, 66, "JOB=nope.toml: no such file"),
             ({"JOB": job, "LAUNCH": "ssh"}, 64, "LAUNCH must be mpiexec or srun"),
             ({"JOB": job, "MPITRAIN_SETUP": "/nonexistent"}, 66, "MPITRAIN_SETUP"),
             ({"JOB": job, "MPITRAIN_HOME": str(tmp_path)}, 78, "no common.sh in")]
    for export, code, text in cases:
        e = script_env(MPITRAIN_HOME=ROOT, SLURM_JOB_ID="1", SLURM_NTASKS="1")
        e.update(export)
        p = subprocess.run(["bash", os.path.join(SLURM_DIR, "single-node.sbatch")], env=e,
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
        assert p.returncode == code, (export, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mpitrain-slurm: ") and text in lines[0], \
            (export, p.stderr)


# -- runs -----------------------------------------------------------------------------------
@pytest.mark.timeout(180)
@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_two_rank_job_from_another_directory(slurm, launch, dense_h5, ops_dir, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    jid = slurm.submit("single-node.sbatch", wd, *ONE_NODE, JOB="job.toml", LAUNCH=launch)
    info = slurm.wait(jid)
    log = _log(wd)
    assert info["JobState"] == "COMPLETED", log
    assert "start: 2 ranks x 1 threads on" in log and f"({launch})" in log
    assert "P=2 ranks x 1 threads" in log
    assert "mpitrain exited with 0" in log
    assert_same_model(final_model(os.path.join(wd, "run")), reference(dense_h5, ops_dir))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_two_nodes_one_rank_each(slurm, launch, dense_h5, ops_dir, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    jid = slurm.submit("multi-node.sbatch", wd, "-N", "2", "--ntasks-per-node=1", "-c", "2",
                       delay=0.01, JOB="job.toml", LAUNCH=launch)
    info = slurm.wait(jid)
    log = _log(wd)
    assert info["JobState"] == "COMPLETED", log
    assert f"2 ranks on 2 nodes (n[1-2]), 2 threads each ({launch})" in log
    ranks = _rank_info(wd, 2)
    assert [r["SLURM_NODEID"] for r in ranks] == ["0", "1"], ranks
    assert [r["SLURMD_NODENAME"] for r in ranks] == ["n1", "n2"], ranks
    assert [r["threads"] for r in ranks] == [2, 2], ranks
    assert_same_model(final_model(os.path.join(wd, "run")), reference(dense_h5, ops_dir))


# -- USR1: checkpoint, requeue, resume --------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("shape,launch,to", [
    (ONE_NODE, "mpiexec", "--batch"),   # Slurm's B:USR1 warning: the batch shell forwards it
    (TWO_NODES, "mpiexec", "steps"),    # without --batch: Slurm signals the steps only
    (TWO_NODES, "srun", "steps")], ids=["one-node-mpiexec-batch", "two-nodes-mpiexec-steps",
                                        "two-nodes-srun-steps"])
def test_usr1_checkpoint_requeue_resume(slurm, shape, launch, to, dense_h5, ops_dir, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    jid = slurm.submit("requeue.sbatch", wd, *shape, delay=0.3, JOB="job.toml", LAUNCH=launch)
    _wait_in_steps(slurm, jid, wd)
    slurm.cmd("scancel", "--signal=USR1", *([to] if to == "--batch" else []), jid)
    info = slurm.wait(jid, states=("PENDING",) + TERMINAL, timeout=60)
    assert info["JobState"] == "PENDING" and info["Restarts"] == "1", (info, _log(wd))
    stopped = _stop_checkpoint(wd)
    slurm.release(jid)
    info = slurm.wait(jid, timeout=120)
    log = _log(wd)
    assert info["JobState"] == "COMPLETED", log
    assert ("got USR1: forwarding to the ranks" in log) == (to == "--batch"), log
    assert "SIGUSR1" in log and "exit 75): requeueing" in log
    assert "SLURM_RESTART_COUNT=1" in log
    assert f"at step {stopped} (P=2)" in log
    assert_same_model(final_model(os.path.join(wd, "run")), reference(dense_h5, ops_dir))


@pytest.mark.timeout(120)
def test_failed_requeue_fails_the_job(slurm, dense_h5, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    jid = slurm.submit("requeue.sbatch", wd, *ONE_NODE, "--no-requeue", delay=0.3,
                       JOB="job.toml")
    _wait_in_steps(slurm, jid, wd)
    slurm.cmd("scancel", "--signal=USR1", "--batch", jid)
    info = slurm.wait(jid, timeout=60)
    log = _log(wd)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "75:0", (info, log)
    assert "scontrol requeue failed" in log
    _stop_checkpoint(wd)


# -- scancel: stop checkpoint, nothing left behind, resume -----------------------------------
@pytest.mark.timeout(180)
@pytest.mark.parametrize("shape,launch", [(ONE_NODE, "mpiexec"), (ONE_NODE, "srun"),
                                          (TWO_NODES, "srun")],
                         ids=["one-node-mpiexec", "one-node-srun", "two-nodes-srun"])
def test_scancel_stop_checkpoint_and_resume(slurm, shape, launch, dense_h5, ops_dir, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    job = _job(wd, dense_h5)
    jid = slurm.submit("requeue.sbatch", wd, *shape, delay=0.5, JOB="job.toml", LAUNCH=launch)
    _wait_in_steps(slurm, jid, wd)
    slurm.cmd("scancel", jid)
    info = slurm.wait(jid, timeout=60)
    log = _log(wd)
    assert info["JobState"] == "CANCELLED", log
    t0 = time.time()
    while _procs_mentioning(wd) and time.time() - t0 < 10:
        time.sleep(0.1)
    assert not _procs_mentioning(wd), "stray processes after scancel"
    assert "SIGTERM" in log, log
    assert "requeueing" not in log
    _resume_matches(wd, job, dense_h5, ops_dir, _stop_checkpoint(wd))


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


# -- a node's rank dies ------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_rank_killed_on_one_node_ends_the_job(slurm, launch, dense_h5, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    # srun's --kill-on-bad-exit sends the other ranks SIGTERM (SIGKILL KillWait = 30 s later):
    # a stop whose agreement a dead peer never joins ends after MPITRAIN_STOP_GRACE
    jid = slurm.submit("multi-node.sbatch", wd, *TWO_NODES, delay=0.5, JOB="job.toml",
                       LAUNCH=launch, MPITRAIN_STOP_GRACE=5)
    _wait_in_steps(slurm, jid, wd)
    survivor, victim = _rank_info(wd, 2)
    assert victim["SLURMD_NODENAME"] == "n2"
    t0 = time.time()
    os.kill(victim["pid"], 9)
    while _alive(survivor["pid"]) and time.time() - t0 < 30:
        time.sleep(0.05)
    took = time.time() - t0
    assert took < 20, f"rank 0 on n1 still runs {took:.1f}s after rank 1 on n2 died"
    # srun itself may linger up to KillWait + 2 s after its tasks are gone
    info = slurm.wait(jid, timeout=60)
    log = _log(wd)
    assert info["JobState"] == "FAILED", log
    assert "mpitrain exited with 0" not in log


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# -- sweeps and launch mistakes ------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_sweep_array_passes_set_per_task(slurm, dense_h5, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    job = _job(wd, dense_h5, every=1)
    with open(os.path.join(wd, "sweep.txt"), "w") as fh:
        fh.write("# l2 sweep\nmodel.l2=1e-3\n\nmodel.l2=1e-2 solver.max_iter=5\n")
    jid = slurm.submit("sweep.sbatch", wd, "--array=0-1", "-N", "1", "--ntasks-per-node=1",
                       "-o", os.path.join(wd, "slurm-%a.log"), JOB="job.toml",
                       SWEEP="sweep.txt")
    for task in ("0", "1"):
        info = slurm.wait(f"{jid}_{task}")
        with open(os.path.join(wd, f"slurm-{task}.log")) as fh:
            log = fh.read()
        assert info["JobState"] == "COMPLETED", log
        assert f"sweep task {task}: model.l2=1e-" in log
    out = os.path.join(wd, "sweep-job")
    p, _ = run(["run", job, "--out", os.path.join(wd, "plain"), "--set", "model.l2=1e-2",
                "--set", "solver.max_iter=5"], 1)
    assert p.returncode == 0, p.stderr
    assert_same_model(final_model(os.path.join(out, "task-1")),
                      final_model(os.path.join(wd, "plain")))
    with open(os.path.join(out, "task-0", "job.toml")) as fh:
        assert "l2 = 0.001" in fh.read().replace("1e-3", "0.001").replace("1e-03", "0.001")
    assert ckpt_step(checkpoints(os.path.join(out, "task-1"))[0]) == 5


@pytest.mark.timeout(120)
def test_batch_script_without_launcher_is_refused(slurm, dense_h5, tmp_path):
    need(CASE)
    wd = str(tmp_path)
    _job(wd, dense_h5)
    p = subprocess.run(["sbatch", "--parsable", "-n", "2", "-o", os.path.join(wd, "slurm.log"),
                        "--wrap", f"{sys.executable} -m mpitrain run job.toml"],
                       env=script_env(SLURM_CONF=slurm.conf), cwd=wd, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    info = slurm.wait(p.stdout.strip())
    log = _log(wd)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "64:0", (info, log)
    assert "SLURM_NTASKS=2 but this MPI world has 1 rank" in log
    assert "without a launcher" in log
    assert not os.path.exists(os.path.join(wd, "run", "final.h5"))


# -- time limits (submitted at the start of the module) ------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(TIME_LIMIT))
def test_time_limit_stop_checkpoint_and_resume(slurm, timelimit_jobs, name, dense_h5,
                                                ops_dir):
    jid, wd = timelimit_jobs[name]
    info = slurm.wait(jid, timeout=200)
    log = _log(wd)
    assert info["JobState"] == "TIMEOUT", (info["JobState"], log)
    assert "DUE TO TIME LIMIT" in log and "SIGTERM" in log, log
    assert "mpitrain exited with 75" in log, log
    _resume_matches(wd, os.path.join(wd, "job.toml"), dense_h5, ops_dir, _stop_checkpoint(wd))
