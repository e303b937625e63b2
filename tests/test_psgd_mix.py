"""psgd-mix (parameter-mixing SGD): rounds against a NumPy reference, averaging across
ranks, and checkpoint/resume bit-identity (in process, through checkpoint.save/Reader)."""
import numpy as np
import pytest

from mpitrain import checkpoint, state
from mpitrain.models.fadl_local import orders_for

from test_fadl import run_inproc, sgd_reference
from mpitrain.algorithms import resolve_job

MODEL = {"l2": 1e-3}


def _alg(world, path, solver, rounds=None):
    from mpitrain import data
    from mpitrain.algorithms import registry
    from mpitrain.algorithms.base import Context
    raw = {"job": {"algorithm": "psgd-mix", "seed": 2}, "data": {"train": path},
           "model": MODEL, "solver": dict(solver)}
    job = resolve_job(raw, "test")
    train = data.load(world, path, group="train", binary=True)
    ctx = Context(world, job, train, None)
    alg = registry()["psgd-mix"](ctx)
    alg.setup()
    return alg


def test_psgd_mix_serial_equals_sgd_reference(world, digits2_h5):
    eta, decay = 0.2, 0.5
    alg = _alg(world, digits2_h5, {"max_iter": 3, "step_size": eta, "decay": decay})
    sh = alg.ctx.train
    w = np.zeros(sh.d)
    for r in range(3):
        alg.step()
        order = orders_for(alg.ctx.rng("psgd-mix", r, sh.start), sh.rows, 1)[0]
        w = sgd_reference(sh.X, sh.y, order, 0, 1.0, eta / (1 + decay * r), MODEL["l2"],
                          np.zeros(sh.d), w)[-1]
        np.testing.assert_allclose(alg.w, w, rtol=1e-11, atol=1e-13)
    assert alg.done and alg.dvec == 3


def _roundtrip(world, path, tmp):
    solver = {"max_iter": 6}
    ref = _alg(world, path, solver)
    while not ref.done:
        ref.step()
    a = _alg(world, path, solver)
    for _ in range(3):
        a.step()
    ck = checkpoint.save(world, tmp, 3, state.collect(a), {"algorithm": "psgd-mix"})
    ck = world.bcast_obj(ck)
    b = _alg(world, path, solver)
    reader = checkpoint.Reader(ck, checkpoint.verify(ck))
    state.restore(b, reader)
    b.restored()
    reader.close()
    while not b.done:
        b.step()
    np.testing.assert_array_equal(b.w, ref.w)
    assert b.f == ref.f and b.eta == ref.eta


def test_psgd_mix_resume_bit_identical(world, digits2_h5, tmp_path):
    _roundtrip(world, digits2_h5, str(tmp_path))


def test_psgd_mix_decreases_objective(world, digits2_h5):
    alg, objs = run_inproc(world, "psgd-mix", digits2_h5, MODEL, {"max_iter": 5})
    assert objs[-1] < np.log(2.0) - 0.1 and alg.eta > 0


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_psgd_mix_averages_local_sgd(world, digits2_h5):
    alg = _alg(world, digits2_h5, {"max_iter": 1, "step_size": 0.3})
    sh = alg.ctx.train
    order = orders_for(alg.ctx.rng("psgd-mix", 0, sh.start), sh.rows, 1)[0]
    mine = sgd_reference(sh.X, sh.y, order, 0, 1.0, 0.3, MODEL["l2"], np.zeros(sh.d),
                         np.zeros(sh.d))[-1]
    every = np.array(world.comm.allgather(mine))
    alg.step()
    np.testing.assert_allclose(alg.w, every.mean(axis=0), rtol=1e-11, atol=1e-13)
    allw = np.array(world.comm.allgather(alg.w))
    assert np.all(allw == allw[0])  # replicated bit for bit


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(60)
def test_psgd_mix_resume_bit_identical_mpi(world, digits2_h5, shared_tmp):
    _roundtrip(world, digits2_h5, shared_tmp)
