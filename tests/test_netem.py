"""The emulated network (mpitrain/netem.py): two namespaces, MPI over OFI/TCP through a TUN
link with a set one-way latency (our forwarder) and bandwidth (tbf). Skips, with the reason,
where the machine cannot (not root, no iproute2, no TUN)."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mpitrain import netem
from util import ROOT, cli, env, write_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TAG = 7  # a link of its own: never the one a benchmark may be using (0)


@pytest.fixture(scope="module")
def link():
    try:
        netem.check()
    except netem.Unavailable as exc:
        pytest.skip(f"no emulated network here: {exc}")
    yield netem.up(latency=0.002, rate="100mbit", tag=TAG)
    netem.down(TAG)


def test_measured_alpha_and_beta_match_what_was_set(link):
    m = netem.measure(TAG)
    # the delay is never shorter than set (a forwarder that did not hold packets fails) and
    # only the forwarder's own overhead is added (loaded 2-core machine: a few ms at most)
    assert 0.002 <= m["alpha"] < 0.002 + 0.010, m
    # 100 Mbit/s = 12.5 MB/s; TCP/IP headers at MTU 16000 add ~0.3 %
    want = 1 / netem._rate_bps("100mbit")
    assert 0.8 * want < m["beta"] < 1.35 * want, m
    assert m["allreduce_8"] >= 0.002, m  # the Allreduce crosses the link


def test_training_over_the_link_is_bit_identical_to_shared_memory(link, tmp_path, digits2_h5):
    job = write_job(tmp_path / "j.toml", {
        "job": {"algorithm": "lbfgs"}, "data": {"train": digits2_h5},
        "model": {"l2": 1e-3}, "solver": {"max_iter": 8}, "checkpoint": {"every": 0}})
    ref = cli(["run", job, "--out", str(tmp_path / "shm")], nranks=2)
    assert ref.returncode == 0, ref.stderr

    def tx():
        return int(subprocess.run(["ip", "netns", "exec", netem.ns_name(TAG, 1), "cat",
                                   "/sys/class/net/mtdata/statistics/tx_bytes"],
                                  capture_output=True, text=True).stdout or 0)
    before = tx()
    argv = netem.mpiexec_argv(TAG, 2, [sys.executable, "-m", "mpitrain", "run", job, "--out",
                                       str(tmp_path / "net")])
    p = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    # 9 evaluations of a 65-float gradient and more: every byte went through the link
    assert tx() - before > 8 * 65 * 8
    a = h5py.File(tmp_path / "shm" / "final.h5")["model/w"][()]
    b = h5py.File(tmp_path / "net" / "final.h5")["model/w"][()]
    assert np.array_equal(a, b)
    assert os.path.exists(tmp_path / "net" / "summary.json")


def test_call_probe_times_each_call_across_the_link(link):
    # every kind waits for the other node once per call at least (Bcast alternates its root,
    # so back-to-back calls cannot overlap): never below the set one-way delay
    tab = netem.measure_calls(TAG, sizes=(8, 1024))
    assert sorted(tab) == sorted(netem.CALL_KINDS)
    for kind, rows in tab.items():
        assert [n for n, _ in rows] == [8, 1024], tab
        assert all(0.002 <= t < 0.1 for _, t in rows), (kind, rows)


def test_a_message_after_a_pause_is_shaped_too(link):
    # tbf's burst is two packets: Bcasts that alternate their root leave each direction idle
    # half the time, and the 128 KiB burst used before let about half of a 256 KiB message
    # through at line rate after such a pause (about 0.6·n·β per call at 100 Mbit/s); shaped,
    # each call carries its n bytes at the set rate (a lower bound: load only adds time)
    tab = netem.measure_calls(TAG, sizes=(1 << 18,))
    (n, t), = tab["bcast"]
    assert t >= 0.8 * n / netem._rate_bps("100mbit"), tab
