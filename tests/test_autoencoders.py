"""Autoencoders (sae-greedy, slp, dae-stacked, dae-gradual): kernels against NumPy references,
gradients against finite differences, P-independence of data-parallel training, SLP layer 1
against greedy bit for bit, gradual = single DAE at one stage, frozen layers, SLP layouts, and
SIGTERM → exit 75 → bit-identical resume.

Tolerance of the P = 2, 3 vs P = 1 comparisons: the gradients are float32 sums over a
different split of the same global batch, so parameters agree to ~1e-6 after a few epochs;
we assert max |Δ| ≤ 1e-4 (and a typical weight is O(0.1..1))."""
import json
import os

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import config, data
from mpitrain.algorithms import registry
from mpitrain.algorithms.ae_slp import layout
from mpitrain.algorithms.base import Context
from mpitrain.comm import World
from mpitrain.errors import JobError
from mpitrain.models import autoencoder as AE
from mpitrain._kernels import ae_fast as K
from util import cli, sigterm_after_steps, write_job

F32 = np.float32


# ------------------------------------------------------------------------ kernels
def _rand(shape, seed=0, lo=-3, hi=3):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(F32)


@pytest.mark.parametrize("act", ["sigmoid", "relu", "tanh", "linear"])
def test_bias_act_and_backward_match_numpy(act):
    Z, b = _rand((37, 23), 1), _rand(23, 2)
    ref = AE.ref_act(Z.astype(np.float64) + b, act)
    got = Z.copy()
    K.bias_act(got, b, AE.ACT[act])
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-7)
    D = _rand((37, 23), 3)
    g2 = D.copy()
    K.act_backward(g2, got, AE.ACT[act])
    np.testing.assert_allclose(g2, D * AE.ref_dact(got, act), rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("loss", ["xent", "squared", "softmax"])
def test_output_heads_match_numpy(loss):
    n, m = 29, 11
    Z, c = _rand((n, m), 4, -8, 8), _rand(m, 5)
    T = _rand((n, m), 6, 0, 1)
    lab = np.random.default_rng(7).integers(0, m, n).astype(np.int32)
    rl, g = AE.ref_head(Z.astype(np.float64) + c, T, loss, lab)
    got, rows, pred = Z.copy(), np.empty(n), np.empty(n, np.int32)
    if loss == "xent":
        K.sigmoid_xent(got, c, T, F32(0.5), rows)
    elif loss == "squared":
        K.linear_squared(got, c, T, F32(0.5), rows)
    else:
        K.softmax_xent(got, c, lab, F32(0.5), rows, pred)
        np.testing.assert_array_equal(pred, np.argmax(Z.astype(np.float64) + c, 1))
    np.testing.assert_allclose(rows, rl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, 0.5 * g, rtol=1e-5, atol=1e-6)


def test_noise_and_momentum_kernels_match_numpy():
    X, U, N = _rand((13, 9), 8, 0, 1), _rand((13, 9), 9, 0, 1), _rand((13, 9), 10)
    out = np.empty_like(X)
    K.mask_noise(X, U, F32(0.3), out)
    np.testing.assert_array_equal(out, np.where(U >= F32(0.3), X, 0))
    K.gauss_noise(X, N, F32(0.2), out)
    np.testing.assert_array_equal(out, X + F32(0.2) * N)
    W, V, G = _rand(50, 11), _rand(50, 12), _rand(50, 13)
    rW, rV = AE.ref_momentum(W.astype(np.float64), V.astype(np.float64),
                             G.astype(np.float64), 0.1, 0.9, 0.01)
    K.momentum_step(W, V, G, F32(0.1), F32(0.9), F32(0.01))
    np.testing.assert_allclose(V, rV, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(W, rW, rtol=1e-6, atol=1e-7)


def test_kernels_independent_of_thread_count():
    from mpitrain._kernels import omp
    Z, b, T = _rand((301, 57), 14), _rand(57, 15), _rand((301, 57), 16, 0, 1)
    outs = []
    for t in (1, 2, 3):
        omp.set_num_threads(t)
        z = Z.copy()
        K.bias_act(z, b, 0)
        r = np.empty(301)
        K.sigmoid_xent(z, b, T, F32(1.0), r)
        outs.append((z, r.sum()))
    omp.set_num_threads(1)
    for z, s in outs[1:]:
        np.testing.assert_array_equal(z, outs[0][0])
        assert s == outs[0][1]


# ------------------------------------------------------------- gradients (finite differences)
def _params(net, dims, seed=0):
    rng = np.random.default_rng(seed)
    P = {}
    for ly, (din, dout) in zip(net.layers, dims):
        shape = (dout, din) if ly.t else (din, dout)
        if ly.w not in P:
            P[ly.w] = (0.5 * rng.standard_normal(shape)).astype(F32)
        P[ly.b] = (0.1 * rng.standard_normal(dout)).astype(F32)
    return P


NETS = {
    "layer-xent": (lambda: AE.layer_net(1, "sigmoid", "xent", False), [(7, 5), (5, 7)]),
    "layer-tied-squared": (lambda: AE.layer_net(1, "tanh", "squared", True),
                           [(7, 5), (5, 7)]),
    "stack-relu": (lambda: AE.stack_net(2, "relu", "squared", False),
                   [(7, 5), (5, 3), (3, 5), (5, 7)]),
    "gradual-direct": (lambda: AE.direct_net(2, "sigmoid", "xent"),
                       [(7, 5), (5, 3), (3, 7)]),
    "finetune": (lambda: AE.finetune_net(2, "sigmoid"), [(7, 5), (5, 3), (3, 4)]),
}


@pytest.mark.parametrize("which", sorted(NETS))
def test_gradients_match_finite_differences(which):
    make, dims = NETS[which]
    net = make()
    P = _params(net, dims)
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (6, 7)).astype(F32)
    lab = rng.integers(0, 4, 6).astype(np.int32)
    names = sorted(P)
    G = {n: np.empty_like(P[n]) for n in names}
    net.loss_grad(P, X, X, G, frozenset(names), 1.0, lab)

    def f():
        return net.loss_sum(P, X, labels=lab)[0]
    eps = 1e-2
    for n in names:
        flat = P[n].reshape(-1)
        for i in rng.choice(flat.size, min(6, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + F32(eps)
            fp = f()
            flat[i] = old - F32(eps)
            fm = f()
            flat[i] = old
            fd = (fp - fm) / (2 * eps)
            g = float(G[n].reshape(-1)[i])
            assert abs(fd - g) <= 2e-2 * max(1.0, abs(fd)), (which, n, i, fd, g)


def test_frozen_layers_get_no_gradient_and_backprop_stops():
    net = AE.stack_net(2, "sigmoid", "xent", False)
    P = _params(net, [(7, 5), (5, 3), (3, 5), (5, 7)])
    X = np.random.default_rng(2).uniform(0, 1, (4, 7)).astype(F32)
    G = {n: np.full_like(P[n], 7.0) for n in P}
    train = frozenset(["W2", "b2", "V2", "c2", "V1", "c1"])
    net.loss_grad(P, X, X, G, train, 1.0)
    assert np.all(G["W1"] == 7.0)  # untouched
    Gall = {n: np.empty_like(P[n]) for n in P}
    net.loss_grad(P, X, X, Gall, frozenset(P), 1.0)
    for n in train:
        np.testing.assert_array_equal(G[n], Gall[n])


# ----------------------------------------------------------------------- in-process runs
def _job(path, name, model=None, solver=None, max_rows=0):
    raw = {"job": {"algorithm": name, "seed": 3},
           "data": {"train": path, "test": path, "max_rows": max_rows},
           "model": dict({"layers": [24, 12]}, **(model or {})),
           "solver": dict({"epochs": 2, "batch": 64, "lr": 0.1}, **(solver or {}))}
    return config.resolve(raw, "test.toml")


def run_inproc(world, name, path, model=None, solver=None, max_rows=0, steps=None):
    job = _job(path, name, model, solver, max_rows)
    cls = registry()[name]
    train = data.load(world, path, group="train", binary=False, max_rows=max_rows,
                      dtype=np.float32)
    test = data.load(world, path, group="test", binary=False, dtype=np.float32,
                     width_from=train)
    ctx = Context(world, job, train, test)
    alg = cls(ctx)
    alg.setup()
    infos = []
    while not alg.done and (steps is None or len(infos) < steps):
        infos.append(alg.step())
    return alg, infos


def test_greedy_learns_and_reports(world, digits_h5):
    alg, infos = run_inproc(world, "sae-greedy", digits_h5, solver={"finetune_epochs": 3})
    recons = [i["recon"] for i in infos if "recon" in i and i.get("recon_layers") == 1]
    assert recons[-1] < recons[0]
    assert infos[-1]["test_error"] < 0.5  # 10 classes: chance is 0.9
    assert [i["layer"] for i in infos if "layer" in i] == [1, 1, 2, 2]


def test_gradual_one_stage_equals_single_dae(world, digits_h5):
    m = {"layers": [20]}
    a, _ = run_inproc(world, "dae-stacked", digits_h5, m)
    b, _ = run_inproc(world, "dae-gradual", digits_h5, m)
    np.testing.assert_array_equal(a.P["W1"], b.P["W1"])
    np.testing.assert_array_equal(a.P["b1"], b.P["b1"])
    np.testing.assert_array_equal(a.P["V1"], b.P["D1"])
    np.testing.assert_array_equal(a.P["c1"], b.P["e1"])
    assert not np.array_equal(a.P["W1"], AE.glorot(a.ctx.rng("init", 1), 64, 20, "sigmoid"))


def test_stacked_never_changes_a_frozen_weight(world, digits_h5):
    alg, _ = run_inproc(world, "dae-stacked", digits_h5, steps=2)  # layer 1 done
    assert alg.layer == 2
    frozen = {n: alg.P[n].copy() for n in alg.layer_names(1)}
    while not alg.done:
        alg.step()
        for n, v in frozen.items():
            np.testing.assert_array_equal(alg.P[n], v)
    assert not np.array_equal(alg.P["W2"], AE.glorot(alg.ctx.rng("init", 2), 24, 12,
                                                       "sigmoid"))


def test_gradual_changes_lower_layers_and_mirrored_option(world, digits_h5):
    alg, _ = run_inproc(world, "dae-gradual", digits_h5, steps=2)
    W1 = alg.P["W1"].copy()
    alg.step()
    assert not np.array_equal(W1, alg.P["W1"])  # lower layers keep training
    for model in ({"decoder": "mirrored"}, {"decoder": "mirrored", "tied": True}):
        alg, infos = run_inproc(world, "dae-gradual", digits_h5, model,
                                {"updates": 30, "epochs": 1})
        assert alg.done and np.isfinite(infos[-1]["recon"])
        assert infos[-1]["updates"] == 30
        assert sum(1 for i in infos if i.get("layer") == 1) == 2  # 30 updates = 1.28 epochs
    with pytest.raises(JobError, match="tied"):
        _job(digits_h5, "dae-gradual", {"tied": True})


def test_update_budget_counts_weight_updates(world, digits_h5):
    alg, infos = run_inproc(world, "dae-stacked", digits_h5, solver={"updates": 40})
    per_layer = {}
    for i in infos:
        per_layer[i["layer"]] = i["updates"]
    assert per_layer == {1: 40, 2: 40}


def test_slp_layouts():
    dims = [784, 1000, 500, 250, 30]
    assert layout(dims, 4) == [(0, 1, [1]), (1, 1, [2]), (2, 1, [3]), (3, 1, [4])]
    six = layout(dims, 6)
    # cost per round: 6·d_{k-1}d_k (training) + Σ_{j<k} d_{j-1}d_j (input regeneration):
    # [4.70M, 3.78M, 2.03M, 1.45M]; extra ranks go where cost/ranks is largest
    assert [g[1] for g in six] == [2, 2, 1, 1]
    assert [g[0] for g in six] == [0, 2, 4, 5]
    assert [g[1] for g in layout(dims, 5)] == [2, 1, 1, 1]
    two = layout(dims, 2)
    assert two == [(0, 1, [1]), (1, 1, [2, 3, 4])]  # one rank owns the light layers
    assert layout(dims, 1) == [(0, 1, [1, 2, 3, 4])]
    three = layout([64, 32, 16, 8], 2)
    assert sorted(sum((g[2] for g in three), [])) == [1, 2, 3]


def test_slp_serial_equals_greedy_layer1_and_pipeline(world, digits_h5):
    s = {"epochs": 3, "eval_every": 0}
    slp, infos = run_inproc(world, "slp", digits_h5, solver=s)
    gr, _ = run_inproc(world, "sae-greedy", digits_h5, solver=s)
    for n in ("W1", "b1", "V1", "c1"):
        np.testing.assert_array_equal(slp.P[n], gr.P[n])
    # pipeline fill: layer 2 starts one round after layer 1; K−1+E rounds in all
    assert [i["epochs_L2"] for i in infos] == [0, 1, 2, 3]
    assert [i["epochs_L1"] for i in infos] == [1, 2, 3, 3]
    # layer 2 trained on moving inputs: differs from greedy's layer 2
    assert not np.array_equal(slp.P["W2"], gr.P["W2"])


def test_slp_target_error_stops_early(world, digits_h5):
    ref, infos = run_inproc(world, "slp", digits_h5, solver={"epochs": 6})
    target = infos[2]["recon"]
    alg, infos2 = run_inproc(world, "slp", digits_h5,
                             solver={"epochs": 6, "target_error": target})
    assert len(infos2) <= 3 and infos2[-1]["reached_target"] == 1


# ------------------------------------------------------------------------- MPI
def _compare(world, name, path, model=None, solver=None, tol=1e-4):
    par, _ = run_inproc(world, name, path, model, solver)
    ser, _ = run_inproc(World(MPI.COMM_SELF), name, path, model, solver)
    for n in ser.P:
        d = float(np.abs(par.P[n] - ser.P[n]).max())
        assert d <= tol, (name, n, d)
    return par, ser


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["sae-greedy", "dae-stacked", "dae-gradual", "slp"])
def test_parallel_equals_serial(world, digits_h5, name):
    solver = {"finetune_epochs": 1} if name in ("dae-gradual", "slp") else None
    par, ser = _compare(world, name, digits_h5, solver=solver)
    if name == "slp":
        # every rank has a layer; at P = 3 the heavy layer 1 is data-parallel on 2 ranks
        assert par.groups[-1][0] + par.groups[-1][1] == world.size
        assert par.groups[0][1] == world.size - 1


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_slp_three_layers_parallel_equals_serial(world, digits_h5):
    # P=2: one rank owns layers 2..3; P=3: one rank per layer
    _compare(world, "slp", digits_h5, model={"layers": [24, 12, 6]}, solver={"epochs": 2})


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_slp_layer1_bit_identical_to_greedy_serial(world, digits_h5):
    s = {"epochs": 3}
    slp, _ = run_inproc(world, "slp", digits_h5, solver=s)
    gr, _ = run_inproc(World(MPI.COMM_SELF), "sae-greedy", digits_h5, solver=s)
    if slp.groups[0][1] == 1:  # layer 1 trained by one rank alone: bit for bit
        for n in ("W1", "b1", "V1", "c1"):
            np.testing.assert_array_equal(slp.P[n], gr.P[n])


# ------------------------------------------------------------ SIGTERM and resume
def _cli_job(tmp_path, path, name, out):
    return write_job(tmp_path / f"{name}.toml", {
        "job": {"algorithm": name, "seed": 5, "out": str(tmp_path / out)},
        "data": {"train": path, "test": path},
        "model": {"layers": [200, 100, 50]},
        "solver": {"epochs": 12, "batch": 20, "eval_every": 1, "finetune_epochs": 2},
        "checkpoint": {"every": 0}})


def _final(run):
    with h5py.File(os.path.join(run, "final.h5"), "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def _stop_and_resume(tmp_path, job, out, nranks, resume_ranks=None):
    rc, err = sigterm_after_steps(["run", job, "--out", out], out, 3, nranks=nranks)
    assert rc == 75, err
    assert not os.path.exists(os.path.join(out, "final.h5"))
    r = cli(["run", job, "--out", out, "--resume", "auto"], nranks=resume_ranks or nranks,
            timeout=150)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name,nranks", [("slp", 2), ("dae-gradual", 2)])
def test_sigterm_resume_bit_identical(tmp_path, digits_h5, name, nranks):
    job = _cli_job(tmp_path, digits_h5, name, "run")
    ref = str(tmp_path / "ref")
    r = cli(["run", job, "--out", ref], nranks=nranks, timeout=150)
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "run")
    _stop_and_resume(tmp_path, job, out, nranks)
    a, b = _final(out), _final(ref)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    if name == "slp":  # the layout changes at P = 3; the state does not depend on it
        out3 = str(tmp_path / "run3")
        _stop_and_resume(tmp_path, job, out3, 2, resume_ranks=3)
        fa = json.load(open(os.path.join(out3, "summary.json")))["recon_final"]
        fb = json.load(open(os.path.join(ref, "summary.json")))["recon_final"]
        assert abs(fa - fb) <= 1e-3 * fb
