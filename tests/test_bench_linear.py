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
