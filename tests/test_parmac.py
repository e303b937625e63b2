"""ParMAC binary autoencoder: Z-step kernels vs brute force, the SVM W-step (dual CD) vs a
certified optimum, the decoder's normal equations vs lstsq, the ring's circulation
(instrumented, P = 2 and 3), validation and revert, end-to-end runs whose precision is
recomputed here from the final model's codes (LIBSVM and CSR test data at P = 1, 2, 3), and
checkpoint/resume (also at another P)."""
import itertools
import os

import h5py
import numpy as np
import pytest

from mpitrain.models import binary_autoencoder as ba
from util import cli, write_job
from mpitrain.algorithms import resolve_job


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


def _svm_gap(W, X, Zcol, C):
    """Certified primal gap of one squared-hinge SVM: P is 1-strongly convex, so
    P(w) − P* ≤ ‖∇P(w)‖²/2; also returns P(w)."""
    Xt = np.hstack([X, np.ones((X.shape[0], 1))])
    y = 2.0 * Zcol - 1.0
    m = np.maximum(0.0, 1.0 - y * (Xt @ W))
    g = W - 2.0 * C * (m * y) @ Xt
    return g @ g / 2.0, 0.5 * W @ W + C * m @ m


def test_svm_dcd_reaches_certified_optimum_in_blocks():
    """Dual CD visiting two blocks in turn (the ring at P = 2, duals kept per block) reaches
    the certified optimum of each bit's SVM; w = Σ α y x̃ holds throughout."""
    r = np.random.default_rng(7)
    n, D, L = 60, 5, 3
    X = r.standard_normal((n, D))
    Z = (r.random((n, L)) > 0.5).astype(np.uint8)
    X[:, 0] += np.where(X[:, 0] > 0, 1.0, -1.0)
    Z[:, 0] = X[:, 0] > 0                                   # one separable bit (margin ≥ 1)
    W, alpha = np.zeros((L, D + 1)), np.zeros((n, L))
    qd = np.einsum("ij,ij->i", X, X) + 1.0
    blocks = [np.arange(0, 25), np.arange(25, n)]
    for it in range(1500):
        for b in blocks:
            ba.svm_block(W, np.arange(L), X, Z, alpha, qd, b, 1.0, 2, 0.0, it)
    Xt = np.hstack([X, np.ones((n, 1))])
    for l in range(L):
        gap, P = _svm_gap(W[l], X, Z[:, l], 1.0)
        assert gap <= 1e-8 * P, (l, gap, P)
        np.testing.assert_allclose(W[l], (alpha[:, l] * (2.0 * Z[:, l] - 1)) @ Xt, atol=1e-10)
    assert np.all(ba.encode(X, W[:1, :D], W[:1, D])[:, 0] == Z[:, 0])   # separable: no error
    # relabelling keeps w = Σ α y x̃ for the new labels, and a refit reaches the new optimum
    Znew = Z.copy()
    Znew[:30, 1] ^= 1
    Zfit = Z.copy()
    assert ba.svm_relabel(W[1:2], [1], X, Znew, Zfit, alpha) == 30
    np.testing.assert_allclose(W[1], (alpha[:, 1] * (2.0 * Znew[:, 1] - 1)) @ Xt, atol=1e-10)
    assert np.array_equal(Zfit, Znew)
    sub = np.ascontiguousarray(W[1:2])
    ba.svm_block(sub, [1], X, Znew, alpha, qd, np.arange(n), 1.0, 3000, 0.0, 1)
    gap, P = _svm_gap(sub[0], X, Znew[:, 1], 1.0)
    assert gap <= 1e-8 * P


def test_svm_dcd_thread_independent():
    from mpitrain._kernels import omp
    r = np.random.default_rng(8)
    X = r.standard_normal((200, 6))
    Z = (r.random((200, 4)) > 0.5).astype(np.uint8)
    qd = np.einsum("ij,ij->i", X, X) + 1.0
    outs = []
    for t in (1, 2):
        omp.set_num_threads(t)
        W, al = np.zeros((4, 7)), np.zeros((200, 4))
        ba.svm_block(W, np.arange(4), X, Z, al, qd, np.arange(200), 10.0, 5, 0.0, 3)
        outs.append((W, al))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])


def test_decoder_normal_equations_equal_lstsq():
    r = np.random.default_rng(9)
    Z = (r.random((300, 5)) > 0.5).astype(np.uint8)
    Z[:, 3] = 1                                               # a constant bit: G singular
    X = r.random((300, 7))
    normal = ba.decoder_normal(Z[:100], X[:100]) + ba.decoder_normal(Z[100:], X[100:])
    Wd = ba.decoder_solve(normal, 5)
    ref = np.linalg.lstsq(np.hstack([Z, np.ones((300, 1))]), X, rcond=None)[0].T
    Zf = np.hstack([Z, np.ones((300, 1))])
    np.testing.assert_allclose(Zf @ Wd.T, Zf @ ref.T, atol=1e-9)   # same fitted values


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


def _job(tmp, train, test, name="ba.toml", **solver):
    sections = {"job": {"algorithm": "parmac-ba", "seed": 3},
                "data": {"train": train, "test": test},
                "model": {"bits": 8},
                "solver": dict({"queries": 150, "K": 30, "val_size": 200}, **solver),
                "checkpoint": {"every": 2}}
    return write_job(os.path.join(tmp, name), sections)


def _final(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def _summary(out):
    import json
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)


def _metrics(out):
    import json
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _digits(digits_h5):
    with h5py.File(digits_h5, "r") as f:
        return (f["train/X"][()].astype(np.float64), f["train/y"][()],
                f["test/X"][()].astype(np.float64), f["test/y"][()])


def _precision_ref(Q, Xdb, A, a, K):
    """Precision at K computed here from the codes: Euclidean K-NN of each query in Xdb vs
    Hamming ranking of h(q) = step(Aq + a) against h(Xdb), ties by row index (stable sorts)."""
    d2 = ((Q[:, None, :] - Xdb[None, :, :]) ** 2).sum(-1)
    true = np.argsort(d2, axis=1, kind="stable")[:, :K]
    hq, hd = Q @ A.T + a > 0, Xdb @ A.T + a > 0
    ham = (hq[:, None, :] != hd[None, :, :]).sum(-1)
    ret = np.argsort(ham, axis=1, kind="stable")[:, :K]
    return float(np.mean([len(np.intersect1d(t, g)) / K for t, g in zip(true, ret)]))


def _tpca(X, L):
    m = X.mean(0)
    w, V = np.linalg.eigh(np.cov((X - m).T, bias=True))
    A = V[:, ::-1][:, :L].T
    return A, -A @ m


def _write_libsvm(path, X, y, dense_rows):
    """LIBSVM text whose first `dense_rows` lines list every feature (zeros included): line
    lengths are very uneven, so byte-range shards get uneven row counts."""
    with open(path, "w") as fh:
        for i in range(X.shape[0]):
            idx = np.arange(X.shape[1]) if i < dense_rows else np.flatnonzero(X[i])
            fh.write(f"{int(y[i])} " + " ".join(f"{j + 1}:{X[i, j]:.17g}" for j in idx) + "\n")
    return path


def _write_csr_h5(path, Xtr, ytr, Xte, yte):
    import scipy.sparse as sp
    with h5py.File(path, "w") as f:
        f.create_dataset("train/X", data=Xtr)
        f["train/y"] = ytr
        C = sp.csr_matrix(Xte)
        g = f.create_group("test")
        g["indptr"], g["indices"], g["data"], g["y"] = C.indptr, C.indices, C.data, yte
        g.attrs["shape"] = C.shape
    return path


def _eval_precision(stdout):
    return float(next(l.split()[1] for l in stdout.splitlines() if l.startswith("precision:")))


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_parmac_uneven_libsvm_and_csr_test_data(tmp_path, digits_h5):
    """LIBSVM train/test files with uneven line lengths, trained at P = 3 and evaluated at
    P = 1, 2, 3, and CSR test data at P = 2, 3: `eval`'s precision equals the precision
    computed here from the final model's codes (wrong gathered query rows or per-rank counts
    would change it), and BA beats thresholded PCA on the test queries."""
    Xtr, ytr, Xte, yte = _digits(digits_h5)
    tr = _write_libsvm(str(tmp_path / "tr.svm"), Xtr, ytr, dense_rows=600)
    te = _write_libsvm(str(tmp_path / "te.svm"), Xte, yte, dense_rows=120)
    job = _job(str(tmp_path), tr, te)
    out = str(tmp_path / "r3")
    res = cli(["run", job, "--out", out, "--set", "data.features=64"], nranks=3)
    assert res.returncode == 0, res.stderr
    s = _summary(out)
    assert s["stop_reason"] in ("Z = h(X)", "mu schedule ended")
    m = _final(os.path.join(out, "final.h5"))
    A, a = m["A"], m["a"]
    ref = _precision_ref(Xte[:150], Xtr, A, a, 30)
    At, at = _tpca(Xtr, 8)
    assert ref > _precision_ref(Xte[:150], Xtr, At, at, 30) + 0.02
    for P in (1, 2, 3):
        ev = cli(["eval", job, os.path.join(out, "final.h5"), "--set", "data.features=64"],
                 nranks=P)
        assert ev.returncode == 0, ev.stderr
        assert abs(_eval_precision(ev.stdout) - ref) < 2e-3, (P, ev.stdout, ref)
    # CSR test data (dense train): densified like train, trained at P = 2, evaluated at P = 3
    csr = _write_csr_h5(str(tmp_path / "csr.h5"), Xtr, ytr, Xte, yte)
    job2 = _job(str(tmp_path), csr, csr, name="csr.toml")
    out2 = str(tmp_path / "csr")
    res = cli(["run", job2, "--out", out2], nranks=2)
    assert res.returncode == 0, res.stderr
    m2 = _final(os.path.join(out2, "final.h5"))
    ev = cli(["eval", job2, os.path.join(out2, "final.h5")], nranks=3)
    assert ev.returncode == 0, ev.stderr
    ref2 = _precision_ref(Xte[:150], Xtr, m2["A"], m2["a"], 30)
    assert abs(_eval_precision(ev.stdout) - ref2) < 2e-3, (ev.stdout, ref2)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_parmac_ba_validates_on_training_points_only(tmp_path, digits_h5):
    """The model is the last accepted iterate: its precision on the validation queries
    (training points) equals the recorded one, every rejected step left the model alone, and
    the test set is not read during training (a missing test file does not matter)."""
    job = _job(str(tmp_path), digits_h5, digits_h5)
    out = str(tmp_path / "r")
    res = cli(["run", job, "--out", out, "--set", "data.test=''"], nranks=2)
    assert res.returncode == 0, res.stderr
    s, ms = _summary(out), _metrics(out)
    acc = [x for x in ms if x.get("accepted") == 1]
    assert s["val_precision"] == acc[-1]["val_precision"]
    assert all(x["val_precision"] < max(y["val_precision"] for y in acc if y["step"] < x["step"])
               for x in ms if x.get("accepted") == 0)
    assert ms[0]["wrong_bits"] < 0.1             # the SVMs fit the ITQ codes almost exactly
    assert s["stop_reason"] == "Z = h(X)" and s["violation"] == 0.0


def test_validation_drop_reverts_state(tmp_path, digits_h5, world):
    """In process: a step whose validation precision drops restores h, f, Z and the dual
    variables bit for bit; one that does not drop keeps the new iterate."""
    if world.size != 1:
        pytest.skip("serial")
    from mpitrain import config
    from mpitrain.algorithms.base import Context
    from mpitrain.algorithms.parmac import ParMACBA
    from mpitrain.driver import load_data
    job = resolve_job(config.read_toml(_job(str(tmp_path), digits_h5, digits_h5)), "job")
    train, test = load_data(world, job, ParMACBA)
    alg = ParMACBA(Context(world, job, train, test))
    alg.setup()
    alg.step()                                        # the fit to the initial codes
    keys = ("enc", "dec")
    for drop, same in ((True, True), (False, False)):
        before = ({k: alg.params[k].copy() for k in keys}, alg.Z.copy(), alg.alpha.copy())
        prev = alg.val_prec
        alg._precision = lambda A, a, p=prev, d=drop: p - 0.1 if d else p + 0.1
        info = alg.step()
        assert info["accepted"] == (0 if drop else 1)
        eq = (all(np.array_equal(alg.params[k], before[0][k]) for k in keys)
              and np.array_equal(alg.Z, before[1]) and np.array_equal(alg.alpha, before[2]))
        assert eq == same
        assert alg.val_prec == (prev if drop else prev + 0.1)


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_parmac_ba_resume_bit_identical_and_other_p(tmp_path, digits_h5):
    job = _job(str(tmp_path), digits_h5, digits_h5, mu0=0.001, mu_factor=1.3)
    ref = str(tmp_path / "ref")
    assert cli(["run", job, "--out", ref], nranks=2).returncode == 0
    # interrupted after its first step (a time limit that has always passed → checkpoint →
    # exit 75, whatever the machine's speed), resumed at the same P
    cut = str(tmp_path / "cut")
    r1 = cli(["run", job, "--out", cut, "--set", "job.time_limit=1e-9"], nranks=2)
    assert r1.returncode == 75, r1.stderr
    r2 = cli(["run", job, "--out", cut, "--resume", "auto"], nranks=2)
    assert r2.returncode == 0, r2.stderr
    a, b = _final(os.path.join(ref, "final.h5")), _final(os.path.join(cut, "final.h5"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # resumed at P = 3 from a P = 2 checkpoint: Z and the duals are resharded, the run ends
    cut3 = str(tmp_path / "cut3")
    assert cli(["run", job, "--out", cut3, "--set", "job.time_limit=1e-9"],
               nranks=2).returncode == 75
    r3 = cli(["run", job, "--out", cut3, "--resume", "auto"], nranks=3)
    assert r3.returncode == 0, r3.stderr
    s = _summary(cut3)
    assert s["world_size"] == 3 and s["stop_reason"] == "Z = h(X)"


def test_bad_job_is_clean_error(tmp_path, digits_h5):
    job = _job(str(tmp_path), digits_h5, digits_h5, zstep="enumerate")
    res = cli(["run", job, "--out", str(tmp_path / "x"), "--set", "model.bits=30"])
    assert res.returncode == 78 and "enumerate" in res.stderr
