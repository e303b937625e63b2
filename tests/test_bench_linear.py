"""bench linear --alpha-sweep's report: the table of time / d-vector Allreduces / all
collectives to a certified 1e-4 per latency, and the α–β projection to P = 64..1024 from the
smallest latency's counts and the measured kernel times. The link, the runs and the reference
are faked (the sweep itself needs root for its network namespaces)."""
import json
import math
import os
import types

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain import netem
from mpitrain.bench import linear as L


@pytest.mark.timeout(60)
def test_alpha_sweep_report_and_projection(tmp_path, monkeypatch):
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "data"))
    open(os.path.join(out, "data", "rt-polarity.h5"), "w").close()
    X = sp.random(50, 400, density=0.05, format="csr", random_state=0)
    X.indptr = X.indptr.astype(np.int64)
    X.indices = X.indices.astype(np.int32)
    monkeypatch.setattr(netem, "check", lambda: None)
    monkeypatch.setattr(netem, "up", lambda alpha, rate, tag: {"alpha": alpha})
    monkeypatch.setattr(netem, "down", lambda tag: None)
    monkeypatch.setattr(netem, "measure", lambda tag: {"alpha": 1e-3})
    monkeypatch.setattr(L, "_certified_ref", lambda o, tag, path, l2: (0.5, {}))
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(50)))
    monkeypatch.setattr(L, "_mpirun", lambda *a, **k: 0.1)
    kern = {"fadl sgd_csr (1 epoch, svrg)": 2e-3, "csr_margins (foundation)": 1e-3,
            "csr_rmatvec (foundation)": 3e-3}
    monkeypatch.setattr(L, "_throughput", lambda X, y, l2: {
        k: {"seconds": t, "nnz_per_s": X.nnz / t} for k, t in kern.items()})

    def trace(rdir):     # gap 10^-i after record i; the slow link doubles FADL's iterations
        tag, algo = rdir.rsplit("-", 1)
        slow = 2 if "0.002" in tag and algo == "fadl" else 1
        recs = [{"time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** (-i / slow)),
                 "comm_calls": 5 * i,
                 **({} if algo == "dasvrda" else {"dvec_allreduces": 2 * i + 1})}
                for i in range(1, 12)]
        return recs, {"communication": "columns"} if algo == "dasvrda" else {}
    monkeypatch.setattr(L, "_trace", trace)
    args = types.SimpleNamespace(alpha_sweep="0.002,0.0002", rate="1gbit", epochs=0)
    assert L._alpha_sweep(args, out, 1e-4, (1.0, 1.0, 1.0)) == 0
    text = open(os.path.join(out, "report.md")).read()
    # gap 1e-4 at record 4 (record 8 for FADL over the slow link)
    assert "| 0.2 ms | 1 ms | 0.4s / 9 / 20 | 0.4s / 9 / 20 | 0.4s / n/a / 20 |" in text
    assert "| 2 ms | 1 ms | 0.8s / 17 / 40 | 0.4s / 9 / 20 | 0.4s / n/a / 20 |" in text
    assert "its inner exchange: columns" in text
    # the projection uses the 0.2 ms counts: FADL 9 d-vector Allreduces = 4 outer iterations
    from mpitrain.algorithms.fadl import FADL
    epochs = FADL.SOLVER_SCHEMA["epochs"].default
    nnz, d, P, alpha = X.nnz * 1000, X.shape[1], 256, 1e-3
    t_sgd, t_pass = 2e-3 / X.nnz, 0.5 * (1e-3 + 3e-3) / X.nnz

    def ar(m):
        return 2 * math.log2(P) * alpha + 2 * (P - 1) / P * m * 1e-9
    tf = 4 * (nnz * (epochs * t_sgd + 3 * t_pass) / P + 2 * ar(8 * (d + 1)) + ar(16)) \
        + ar(8 * (d + 1))
    tl = 9 * (2 * nnz * t_pass / P + ar(8 * (d + 1)))
    assert f"| rt-polarity l2=0.0001 | 0.001 | 256 | {tf:.3g} | {tl:.3g} | {tl / tf:.2f} |" \
        in text
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["projection_from_alpha"] == 0.0002 and res["sweep"]["0.0002/dasvrda"][
        "communication"] == "columns"


@pytest.mark.timeout(60)
def test_sklearn_comparator_is_seeded():
    """scikit-learn's saga samples rows at random: unseeded, two fits at the same tol reach
    different gaps, so the comparator's row would change from run to run."""
    X = sp.random(300, 50, density=0.2, format="csr", random_state=1)
    y = np.where(np.random.default_rng(0).random(300) < 0.5, 1.0, -1.0)
    a = L._sklearn(X, y, 1e-3, "saga", [1e-1, 1e-2], 0.1)
    b = L._sklearn(X, y, 1e-3, "saga", [1e-1, 1e-2], 0.1)
    assert [p[1:] for p in a] == [p[1:] for p in b]


def _fake_table(tmp_path, monkeypatch):
    """Fakes the full table's data, reference, runs and comparators: a run's gap is 10^-i at
    record i (FADL at P ≥ 3: 10^-(i/2)); FADL makes 2i + 1 d-vector Allreduces, L-BFGS i + 1,
    both 5i collectives. Returns the (algo, P) of every `mpitrain run`."""
    X = sp.random(50, 400, density=0.05, format="csr", random_state=0)
    calls = []
    monkeypatch.setattr(L, "_data", lambda out, quick, n, d, names: {
        k: str(tmp_path / f"{k}.h5") for k in names})
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(50)))
    monkeypatch.setattr(L, "_certified_ref", lambda o, tag, path, l2, max_rows=0: (
        0.5, {"cert_gap": 1e-15, "stop_reason": "converged"}))
    monkeypatch.setattr(L, "_throughput", lambda X, y, l2: {
        k: {"seconds": 1e-3, "nnz_per_s": X.nnz / 1e-3}
        for k in ("fadl sgd_csr (1 epoch, svrg)", "csr_margins (foundation)",
                  "csr_rmatvec (foundation)")})
    monkeypatch.setattr(L, "_sklearn", lambda X, y, l2, solver, tols, fstar: [
        (0.3, 1e-5, 1e-4)])
    monkeypatch.setattr(L, "_plots", lambda out, plots: None)

    def mpirun(P, job, rdir, sets, net=False):
        calls.append((os.path.basename(rdir).rsplit("-", 2)[-2], P))
        return 0.1
    monkeypatch.setattr(L, "_mpirun", mpirun)

    def trace(rdir):
        algo, P = os.path.basename(rdir).rsplit("-", 2)[-2:]
        slow = 2 if algo == "fadl" and int(P[1:]) >= 3 else 1
        recs = [{"time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** (-i / slow)),
                 "comm_calls": 5 * i, "dvec_allreduces": 2 * i + 1 if algo == "fadl" else i + 1}
                for i in range(1, 12)]
        return recs, {"objective": recs[-1]["objective"], "time": 1.1, "stop_reason": "x"}
    monkeypatch.setattr(L, "_trace", trace)
    return calls


@pytest.mark.timeout(60)
def test_ranks_adds_fadl_and_lbfgs_against_p_reusing_the_tables_runs(tmp_path, monkeypatch):
    calls = _fake_table(tmp_path, monkeypatch)
    out = tmp_path / "out"
    assert L.main(["--sets", "synth-tall", "--l2", "1e-4", "--ranks", "1,2,3",
                   "--out", str(out)]) == 0
    # the table's runs once each (P = 1, 2 reused), FADL and L-BFGS at P = 3 added
    assert sorted(calls) == sorted([("lbfgs", 1), ("lbfgs", 2), ("evaluate", 2), ("fadl", 1),
                                    ("fadl", 2), ("mix", 2), ("fadl", 3), ("lbfgs", 3)])
    text = (out / "report.md").read_text()
    assert "## FADL and L-BFGS against P (certified 1e-4)" in text
    assert "strong scaling" in text.lower()
    # gap 1e-4 at record 4 (FADL at P = 3: record 8): FADL 9 / 17 d-vec, L-BFGS 5
    assert "| synth-tall l2=0.0001 | 1 | 0.125 | 9 | 5 | 1.8 | 20 | 20 | 1 | 0.4 | 0.4 | 1 |" \
        in text
    assert "| synth-tall l2=0.0001 | 3 | 0.0417 | 17 | 5 | 3.4 | 40 | 20 | 2 | 0.8 | 0.4 | 2 |" \
        in text
    res = json.load(open(out / "results.json"))
    assert sorted(res["datasets"]["synth-tall"]["runs"]["0.0001"]["ranks"]) == [
        f"{a} P={P}" for a in ("fadl", "lbfgs") for P in (1, 2, 3)]
    # the main table keeps its rows: no P = 3 run in it
    assert "| synth-tall l2=0.0001 | fadl P=3 |" not in text


@pytest.mark.timeout(60)
def test_without_ranks_no_section_and_no_extra_runs(tmp_path, monkeypatch, capsys):
    calls = _fake_table(tmp_path, monkeypatch)
    out = tmp_path / "out"
    assert L.main(["--sets", "synth-tall", "--l2", "1e-4", "--out", str(out)]) == 0
    assert max(P for _, P in calls) == 2 and len(calls) == 6
    assert "against P" not in (out / "report.md").read_text()
    with pytest.raises(SystemExit) as ex:
        L.main(["--ranks", "2,x"])
    assert ex.value.code == 2 and "--ranks" in capsys.readouterr().err
