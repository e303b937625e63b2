"""ParMAC binary autoencoder: Z-step kernels vs brute force, SGD vs references, the ring's
circulation (instrumented, P = 2 and 3), end-to-end runs, checkpoint/resume (also at another P)."""
import itertools
import os
import signal

import h5py
import numpy as np
import pytest

from mpitrain.models import binary_autoencoder as ba
from util import cli, write_job


def _problem(seed, n=40, D=12, L=6):
    r = np.random.default_rng(seed)
    X = r.random((n, D))
    B = r.standard_normal((D, L))
    c = r.standard_normal(D) * 0.1
    H = (r.random((n, L)) > 0.5).astype(np.uint8)
    return X, B, c, H


def _brute(X, B, c, H, mu):
    L = B.shape[1]
    codes = np.array(list(itertools.product([0, 1], repeat=L)), dtype=np.uint8)
    E = np.empty((X.shape[0], len(codes)))
    for j, z in enumerate(codes):
        R = X - z @ B.T - c
        E[:, j] = np.einsum("ij,ij->i", R, R) + mu * np.count_nonzero(H != z, axis=1)
    return E.min(axis=1), codes[E.argmin(axis=1)]


def _energy(X, B, c, H, Z, mu):
    R = X - Z.astype(float) @ B.T - c
    return np.einsum("ij,ij->i", R, R) + mu * np.count_nonzero(H != Z, axis=1)


@pytest.mark.parametrize("mu", [0.0, 0.3, 5.0, 100.0])
def test_enumeration_equals_brute_force(mu):
    X, B, c, H = _problem(1)
    emin, _ = _brute(X, B, c, H, mu)
    Z, cost, visited = ba.zstep_enumerate(X, B, c, H, mu)
    np.testing.assert_allclose(_energy(X, B, c, H, Z, mu), emin, rtol=1e-12, atol=1e-10)
    const = np.einsum("ij,ij->i", X - c, X - c)
    np.testing.assert_allclose(cost + const, emin, rtol=1e-10, atol=1e-9)
    assert visited.max() <= 2 ** B.shape[1]
    if mu >= 100.0:
        assert np.array_equal(Z, H) and visited.max() < 2 ** B.shape[1]  # pruned


def test_alternating_never_increases_and_is_near_exact():
    X, B, c, H = _problem(2, n=200, L=8)
    for mu in (0.1, 1.0, 10.0):
        Z, cost, sweeps = ba.zstep_alternate(X, B, c, H, mu, max_sweeps=20)
        e = _energy(X, B, c, H, Z, mu)
        emin, _ = _brute(X, B, c, H, mu)
        assert np.all(e <= _energy(X, B, c, H, H, mu) + 1e-9)      # never worse than h(x)
        assert np.all(e >= emin - 1e-9)
        const = np.einsum("ij,ij->i", X - c, X - c)
        np.testing.assert_allclose(cost + const, e, rtol=1e-10, atol=1e-9)
        # local optimality: no single bit flip lowers the objective
        for j in range(B.shape[1]):
            Zf = Z.copy()
            Zf[:, j] ^= 1
            assert np.all(_energy(X, B, c, H, Zf, mu) >= e - 1e-9)
        assert np.mean(e - emin) < 0.05 * np.mean(emin)


def test_zstep_kernels_thread_independent():
    from mpitrain._kernels import omp
    X, B, c, H = _problem(3, n=300, L=7)
    outs = []
    for t in (1, 2):
        omp.set_num_threads(t)
        outs.append((ba.zstep_enumerate(X, B, c, H, 0.7)[0],
                     ba.zstep_alternate(X, B, c, H, 0.7)[1]))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])


def test_exact_zstep_does_not_increase_eq():
    X, B, c, _ = _problem(4, n=100, L=6)
    r = np.random.default_rng(0)
    A, a = r.standard_normal((6, 12)), r.standard_normal(6)
    H = ba.encode(X, A, a)
    Z0 = (r.random((100, 6)) > 0.5).astype(np.uint8)
    for mu in (0.01, 1.0):
        Z, _, _ = ba.zstep_enumerate(X, B, c, H, mu)
        assert _energy(X, B, c, H, Z, mu).sum() <= _energy(X, B, c, H, Z0, mu).sum()
        # exact decoder W-step (least squares) does not increase E_Q either
        Zf = np.hstack([Z.astype(float), np.ones((100, 1))])
        Wd = np.linalg.lstsq(Zf, X, rcond=None)[0].T
        assert (_energy(X, Wd[:, :6], Wd[:, 6], H, Z, mu).sum()
                <= _energy(X, B, c, H, Z, mu).sum() + 1e-9)


def test_ls_sgd_reaches_least_squares():
    r = np.random.default_rng(5)
    Z = (r.random((400, 5)) > 0.5).astype(np.uint8)
    W = r.standard_normal((3, 6))
    T = Z @ W[:, :5].T + W[:, 5] + 0.01 * r.standard_normal((400, 3))
    Wm, t = np.zeros((3, 6)), np.zeros(3, dtype=np.int64)
    for e in range(60):
        ba.ls_sgd(Wm, t, Z, T, r.permutation(400), 16, 1.0 / 6, 1e-3)
    ref = np.linalg.lstsq(np.hstack([Z, np.ones((400, 1))]), T, rcond=None)[0].T
    np.testing.assert_allclose(Wm, ref, atol=0.02)
    assert np.all(t == 60 * 25)


def test_hinge_sgd_one_batch_matches_formula():
    r = np.random.default_rng(6)
    X = r.random((8, 4))
    Zb = (r.random((8, 2)) > 0.5).astype(np.uint8)
    Wm = r.standard_normal((2, 5))
    ref = Wm.copy()
    t = np.array([0, 3], dtype=np.int64)
    ba.hinge_sgd(Wm, t, X, Zb, np.arange(8), 8, 0.1, 0.01, 0.5)
    for k in range(2):
        y = 2.0 * Zb[:, k] - 1
        m = X @ ref[k, :4] + ref[k, 4]
        act = (y * m < 1) * y
        lr = 0.1 / np.sqrt(1 + 0.5 * [0, 3][k])
        ref[k, :4] -= lr * (0.01 * ref[k, :4] - act @ X / 8)
        ref[k, 4] -= lr * (-act.sum() / 8)
    np.testing.assert_allclose(Wm, ref, rtol=1e-12)
    assert list(t) == [1, 4]


def _ring_check(world, epochs=2):
    from mpitrain.algorithms.mac_ring import Ring
    groups = {"a": (5, 3), "b": (2, 4)}      # M not a multiple of P
    ring = Ring(world, groups)
    params = {g: np.zeros((M, w)) for g, (M, w) in groups.items()}
    counters = {g: np.zeros(M, dtype=np.int64) for g, (M, w) in groups.items()}
    seen = []

    def train(name, ids, Wm, t, epoch, hop):
        Wm[:, 0] += world.rank + 1          # leaves a trace of every shard visited
        Wm[:, 1] = Wm[:, 1] * 10 + world.rank + 1
        t += 1
        seen.append((name, tuple(ids), epoch, hop))

    ring.w_step(params, counters, epochs, train)
    P = world.size
    for g, (M, w) in groups.items():
        assert np.all(ring.visits[g] == epochs)   # every submodel, this shard, e times
        np.testing.assert_array_equal(params[g][:, 0], epochs * P * (P + 1) / 2)
        assert np.all(counters[g] == epochs * P)
    return params, ring


def test_ring_serial(world):
    if world.size != 1:
        pytest.skip("serial")
    _ring_check(world)


@pytest.mark.mpi(min_size=2)
def test_ring_circulation_mpi(world):
    params, ring = _ring_check(world, epochs=3)
    # every rank ends with the same submodels; visit order is the ring order
    P = world.size
    for g in params:
        allp = world.allgatherv(params[g].reshape(1, -1), np.ones(P, dtype=np.int64))
        assert np.all(allp == allp[0])
    assert ring.hops == 3 * P - 1
    # submodel m of group a starts at its home rank and visits home, home+1, ...
    from mpitrain.comm import block_range
    for m in range(5):
        home = next(p for p in range(P) if block_range(5, P, p)[0] <= m
                    < block_range(5, P, p)[1])
        digits = str(int(params["a"][m, 1]))
        assert digits == "".join(str((home + j) % P + 1) for j in range(3 * P))[-len(digits):]


def _job(tmp, h5, name="ba.toml", **solver):
    sections = {"job": {"algorithm": "parmac-ba", "seed": 3},
                "data": {"train": h5, "test": h5},
                "model": {"bits": 8},
                "solver": dict({"queries": 150, "K": 30}, **solver),
                "checkpoint": {"every": 2}}
    return write_job(os.path.join(tmp, name), sections)


def _final(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def _summary(out):
    import json
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)


@pytest.mark.timeout(120)
def test_parmac_ba_terminates_and_beats_tpca(tmp_path, digits_h5):
    job = _job(str(tmp_path), digits_h5)
    for P in (1, 2):
        out = str(tmp_path / f"r{P}")
        res = cli(["run", job, "--out", out], nranks=P)
        assert res.returncode == 0, res.stderr
        s = _summary(out)
        assert s["stop_reason"] == "Z = h(X)" and s["violation"] == 0.0
        assert s["best_precision"] > s["precision_tpca"] + 0.02, s
        ev = cli(["eval", job, os.path.join(out, "final.h5")], nranks=P)
        assert ev.returncode == 0, ev.stderr
        assert f"{s['best_precision']:.4f}"[:5] in ev.stdout or "precision" in ev.stdout


@pytest.mark.timeout(150)
def test_parmac_ba_resume_bit_identical_and_other_p(tmp_path, digits_h5):
    job = _job(str(tmp_path), digits_h5, mu0=0.001, mu_factor=1.3)
    ref = str(tmp_path / "ref")
    assert cli(["run", job, "--out", ref], nranks=2).returncode == 0
    # interrupted after ~1 s (time limit → checkpoint → exit 75), resumed at the same P
    cut = str(tmp_path / "cut")
    r1 = cli(["run", job, "--out", cut, "--set", "job.time_limit=0.5"], nranks=2)
    assert r1.returncode == 75, r1.stderr
    r2 = cli(["run", job, "--out", cut, "--resume", "auto"], nranks=2)
    assert r2.returncode == 0, r2.stderr
    a, b = _final(os.path.join(ref, "final.h5")), _final(os.path.join(cut, "final.h5"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # resumed at P = 3 from a P = 2 checkpoint: Z is resharded, the run finishes
    cut3 = str(tmp_path / "cut3")
    assert cli(["run", job, "--out", cut3, "--set", "job.time_limit=0.5"],
               nranks=2).returncode == 75
    r3 = cli(["run", job, "--out", cut3, "--resume", "auto"], nranks=3)
    assert r3.returncode == 0, r3.stderr
    s = _summary(cut3)
    assert s["world_size"] == 3 and s["stop_reason"] == "Z = h(X)"
    assert s["best_precision"] > s["precision_tpca"]


def test_bad_job_is_clean_error(tmp_path, digits_h5):
    job = _job(str(tmp_path), digits_h5, zstep="enumerate")
    res = cli(["run", job, "--out", str(tmp_path / "x"), "--set", "model.bits=30"])
    assert res.returncode == 78 and "enumerate" in res.stderr
