"""Stops as real systems deliver them (issue 10 §1), end to end under mpiexec.

- Slurm, systemd, docker and cgroups signal EVERY process and Hydra forwards the signal to
  the ranks as well: each rank gets it twice. That is one stop: checkpoint, exit 75, and
  `--resume auto` ends bit-identical to an uninterrupted run (one algorithm per family).
- A step or a checkpoint write longer than MPITRAIN_STOP_GRACE still checkpoints: the grace
  counts only waits for peers, not this rank's own work.
- A peer that never reaches the agreement is named when the grace expires (128 + signal).
- A stop that reached only rank 1 is reported as that signal, not as the time limit.
- The C handler: repeated SIGTERM/HUP are one stop; only Ctrl-C typed again (≥ 1 s later)
  is urgent.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

import test_faults
from test_faults import (CASES, Case, assert_checkpoints_intact, assert_same_model, ckpt_step,
                         final_model, finish, need, new_job, rank_pids, reference, run, start,
                         wait_for_checkpoint)

# fixtures shared with test_faults (data, reference runs, clean-up of started processes)
ops_dir, dense_h5, _no_strays = test_faults.ops_dir, test_faults.dense_h5, test_faults._no_strays


def _parmac(data, out):
    return {"job": {"algorithm": "parmac-ba", "seed": 3, "out": out, "log_every": 1000},
            "data": {"train": data, "max_rows": 600},
            "model": {"bits": 4},
            "solver": {"queries": 60, "K": 10, "val_size": 100, "mu0": 0.001,
                       "mu_factor": 1.5},
            "checkpoint": {"every": 1, "keep": 50}}


FAMILIES = {c.algorithm: c for c in CASES}
FAMILIES["parmac-ba"] = Case("parmac-ba", _parmac, steps=0, cap=None)

# (algorithm family, signal, delivered to mpiexec too?). Hydra's mpiexec does not catch
# SIGHUP (it dies and takes the job with it), so HUP goes to the ranks only, as a cgroup or
# systemd kill, or srun's forwarding, delivers it.
DELIVERIES = [("lbfgs", signal.SIGTERM, True), ("dasvrda", signal.SIGUSR1, True),
              ("dae-gradual", signal.SIGHUP, False), ("parmac-ba", signal.SIGTERM, True)]


@pytest.mark.e2e
@pytest.mark.timeout(150)
@pytest.mark.parametrize("algorithm,sig,to_launcher", DELIVERIES,
                         ids=[f"{a}-{s.name}" for a, s, _ in DELIVERIES])
def test_double_delivery_is_one_stop(algorithm, sig, to_launcher, dense_h5, ops_dir,
                                     tmp_path):
    case = FAMILIES[algorithm]
    need(case)
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, delay=0.2)
    wait_for_checkpoint(out, 2, p)
    pids = rank_pids(p.pid)
    assert set(pids) == {0, 1}, pids
    for pid in ([p.pid] if to_launcher else []) + list(pids.values()):
        os.kill(pid, sig)  # every process at once, and Hydra forwards it too
    rc, stdout, err, waited = finish(p, timeout=20)
    assert rc == 75, (rc, err)
    assert f"stop requested ({sig.name})" in stdout, stdout
    assert "Traceback" not in err, err
    files = assert_checkpoints_intact(out)
    stopped_at = ckpt_step(files[0])
    assert stopped_at >= 2
    p2, _ = run(["run", job, "--resume", "auto"], 2)
    assert p2.returncode == 0, p2.stderr
    assert f"at step {stopped_at}" in p2.stdout
    assert_same_model(final_model(out), ref)


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_slow_step_and_slow_checkpoint_longer_than_grace(dense_h5, tmp_path):
    """Every step takes 1.2 s and rank 0 spends 1.5 s inside each checkpoint write, with a
    grace of 0.5 s: SIGTERM to every process still ends in a stop checkpoint and exit 75."""
    case = FAMILIES["lbfgs"]
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, delay=1.2, MPITRAIN_STOP_GRACE="0.5",
              MPITRAIN_FAULT="ckpt:0:*:sleep1.5")
    wait_for_checkpoint(out, 1, p, timeout=60)
    time.sleep(0.3)  # inside step 2 (or rank 1 waiting for rank 0's checkpoint write)
    for pid in [p.pid] + list(rank_pids(p.pid).values()):
        os.kill(pid, signal.SIGTERM)
    rc, stdout, err, _ = finish(p, timeout=30)
    assert rc == 75, (rc, err)
    assert "stop requested (SIGTERM)" in stdout and "not completed" not in err, err
    assert ckpt_step(assert_checkpoints_intact(out)[0]) >= 2


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_grace_names_the_peer_that_never_arrives(dense_h5, tmp_path):
    """Rank 1 hangs in its computation of step 3; SIGTERM reaches rank 0 only, which waits
    for rank 1 at the next collective. After the grace (1 s) the job ends with 128+15 and one
    line naming rank 1 as busy in its step — not blaming the wait on rank 0's own work."""
    case = FAMILIES["lbfgs"]
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, MPITRAIN_STOP_GRACE="1", MPITRAIN_FAULT="step:1:3:hang")
    wait_for_checkpoint(out, 2, p)
    time.sleep(0.5)
    os.kill(rank_pids(p.pid)[0], signal.SIGTERM)
    rc, _, err, waited = finish(p, timeout=20)
    assert rc == 128 + signal.SIGTERM, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("mpitrain:")]
    assert len(lines) == 1, err
    assert "MPITRAIN_STOP_GRACE=1s" in lines[0] and "rank 1 (busy in step" in lines[0], lines
    assert waited < 15
    assert_checkpoints_intact(out)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_stop_seen_only_by_rank1_names_the_signal(dense_h5, tmp_path):
    case = FAMILIES["lbfgs"]
    job, out = new_job(case, dense_h5, tmp_path)
    p = start(["run", job], 2, delay=0.2)
    wait_for_checkpoint(out, 2, p)
    os.kill(rank_pids(p.pid)[1], signal.SIGUSR1)
    rc, stdout, err, _ = finish(p, timeout=20)
    assert rc == 75, (rc, err)
    assert "stop requested (SIGUSR1)" in stdout and "time limit" not in stdout, stdout


HANDLER = """
import os, signal, sys, time
from mpitrain._kernels import signals as s
s.install([signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT])
me = os.getpid()
for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
    os.kill(me, sig)
print("first", s.received(), flush=True)
os.kill(me, signal.SIGINT)
os.kill(me, signal.SIGINT)  # the launcher's copy of the same Ctrl-C: not urgent
print("alive", s.received(), flush=True)
time.sleep(1.2)
os.kill(me, signal.SIGINT)  # typed again: ends the process at once
print("not reached", flush=True)
"""


@pytest.mark.timeout(30)
def test_c_handler_repeated_deliveries_and_second_ctrl_c():
    p = subprocess.run([sys.executable, "-c", HANDLER], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 130, p
    assert p.stdout.split() == ["first", str(int(signal.SIGTERM)), "alive",
                                str(int(signal.SIGTERM))], p.stdout
