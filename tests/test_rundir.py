"""One run per run directory (issue 10 §3): the run lock, its stale-lock rule, --fresh.

Unit tests drive mpitrain.rundir directly (a holder in a child process, forged lock files for
another host, a requeued Slurm job, a recycled pid); the end-to-end tests run the CLI: two
concurrent runs into one directory, --fresh after a finished run then a kill -9, and
--fresh with --resume.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import test_faults
from test_faults import (CASES, assert_same_model, final_model, finish, new_job, one_line_error,
                         rank_pids, reference, run, start, wait_for_checkpoint)
from mpitrain import rundir
from mpitrain.errors import RunDirBusy

ops_dir, dense_h5, _no_strays = test_faults.ops_dir, test_faults.dense_h5, test_faults._no_strays

HOLDER = """
import sys, time
from mpitrain import rundir
rundir.lock(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def _forge(out, **fields):
    os.makedirs(out, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": 1, "pid_start": None, "boot_id": "",
              "started": "2026-01-01 00:00:00 +0000", "slurm_job": "", "slurm_restart": "0"}
    holder.update(fields)
    path = os.path.join(out, rundir.LOCK)
    with open(path, "w") as fh:
        json.dump(holder, fh)
    return path


@pytest.mark.timeout(30)
def test_live_holder_refused_then_stale_after_kill9(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    child = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy) as exc:
            rundir.lock(out)
        msg = str(exc.value)
        assert f"pid {child.pid}" in msg and socket.gethostname() in msg and "started" in msg
        child.kill()  # kill -9: the lock file stays behind
        child.wait()
        assert os.path.exists(os.path.join(out, rundir.LOCK))
        lk, note = rundir.lock(out)
        assert f"pid {child.pid} is not running" in note
        lk.release()
        assert not os.path.exists(os.path.join(out, rundir.LOCK))
    finally:
        child.kill()
        child.wait()


@pytest.mark.timeout(30)
def test_stale_rules(tmp_path, monkeypatch):
    # another host, heartbeat fresh: busy; not refreshed for longer than STALE_AFTER: stale
    path = _forge(str(tmp_path / "a"), host="elsewhere", pid=4242)
    with pytest.raises(RunDirBusy, match="host elsewhere, pid 4242"):
        rundir.lock(str(tmp_path / "a"))
    old = time.time() - rundir.STALE_AFTER - 5
    os.utime(path, (old, old))
    lk, note = rundir.lock(str(tmp_path / "a"))
    assert "not refreshed" in note
    lk.release()
    # this host, a live pid that is another process now (recycled pid): stale
    _forge(str(tmp_path / "b"), pid=os.getppid(), pid_start=1)
    lk, note = rundir.lock(str(tmp_path / "b"))
    assert "another process now" in note
    lk.release()
    # this host, the live pid that really holds it: busy
    _forge(str(tmp_path / "c"), pid=os.getppid(), pid_start=rundir._pid_start(os.getppid()))
    with pytest.raises(RunDirBusy):
        rundir.lock(str(tmp_path / "c"))
    # the same Slurm job, requeued (another restart count), on another host: stale at once
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    _forge(str(tmp_path / "d"), host="n7", pid=9, slurm_job="77", slurm_restart="0")
    lk, note = rundir.lock(str(tmp_path / "d"))
    assert "requeued" in note
    lk.release()
    # an unreadable lock file: busy while young (being written), stale once old
    path = str(tmp_path / "e" / rundir.LOCK)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(b"\x00garbage")
    with pytest.raises(RunDirBusy):
        rundir.lock(str(tmp_path / "e"))
    os.utime(path, (old, old))
    lk, note = rundir.lock(str(tmp_path / "e"))
    assert "unreadable" in note
    lk.release()


@pytest.mark.timeout(30)
def test_set_aside_moves_only_results(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt-000000001.h5").write_bytes(b"x")
    for name in ("final.h5", "summary.json", "metrics.jsonl", "job.toml", "notes.txt"):
        (out / name).write_text(name)
    dest = rundir.set_aside(str(out))
    assert os.path.basename(dest).startswith("previous-")
    assert sorted(os.listdir(out)) == sorted(["notes.txt", os.path.basename(dest)])
    assert sorted(os.listdir(dest)) == sorted(rundir.RESULTS)
    assert rundir.set_aside(str(out)) is None


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_second_concurrent_run_is_refused(dense_h5, ops_dir, tmp_path):
    """While a run is going, a second one into the same directory (plain, --fresh, or
    --resume auto) is refused with one line naming the holder; the first is unharmed."""
    case = CASES[0]
    ref = reference(case, dense_h5, ops_dir, 2)
    job, out = new_job(case, dense_h5, tmp_path)
    first = start(["run", job], 2, delay=0.2)
    wait_for_checkpoint(out, 1, first)
    ranks = rank_pids(first.pid)
    for pid in ranks.values():  # hold the first run still, however slow the machine is
        os.kill(pid, signal.SIGSTOP)
    try:
        for extra in ([], ["--fresh"], ["--resume", "auto"]):
            p, _ = run(["run", job] + extra, 2)
            assert p.returncode == 73, (extra, p.stderr)
            line = one_line_error(p.stderr, "run directory in use")
            assert f"pid {ranks[0]}" in line and socket.gethostname() in line, line
    finally:
        for pid in ranks.values():
            os.kill(pid, signal.SIGCONT)
    rc, _, err, _ = finish(first, timeout=60)
    assert rc == 0, err
    assert_same_model(final_model(out), ref)
    steps = [json.loads(x)["step"] for x in open(os.path.join(out, "metrics.jsonl"))]
    assert steps == list(range(1, case.steps + 1))
    assert not [d for d in os.listdir(out) if d.startswith("previous-")]
    assert not os.path.exists(os.path.join(out, rundir.LOCK))


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_fresh_moves_results_aside_and_conflicts_with_resume(dense_h5, ops_dir, tmp_path):
    case = CASES[0]
    ref = reference(case, dense_h5, ops_dir, 1)
    job, out = new_job(case, dense_h5, tmp_path)
    p, _ = run(["run", job], 1)
    assert p.returncode == 0, p.stderr
    both, _ = run(["run", job, "--fresh", "--resume", "auto"], 1)
    assert both.returncode == 64
    one_line_error(both.stderr, "usage error")
    # --fresh, killed (-9) at step 2: no stale final.h5 / summary.json beside the new run
    p, _ = run(["run", job, "--fresh"], 1, MPITRAIN_FAULT="step:0:2:kill")
    assert p.returncode == -signal.SIGKILL, p.stderr
    previous = [d for d in os.listdir(out) if d.startswith("previous-")]
    assert len(previous) == 1
    assert os.path.exists(os.path.join(out, previous[0], "final.h5"))
    assert not os.path.exists(os.path.join(out, "final.h5"))
    assert not os.path.exists(os.path.join(out, "summary.json"))
    assert os.path.exists(os.path.join(out, rundir.LOCK))  # left by the kill -9
    p, _ = run(["run", job, "--resume", "auto"], 1)
    assert p.returncode == 0, p.stderr
    assert "took over a stale lock" in p.stdout and "at step 1" in p.stdout
    assert_same_model(final_model(out), ref)
