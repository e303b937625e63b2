"""bench linear --alpha-sweep's report: the table of time / d-vector Allreduces / all
collectives to a certified 1e-4 per latency, and the α–β projection to P = 64..1024 from what
the smallest latency's FADL and L-BFGS runs measured (compute seconds, d-vector Allreduces,
other collectives: the model checked by hand). The link, the runs and the reference are faked
(the sweep itself needs root for its network namespaces)."""
import json
import math
import os
import types

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain import netem
from mpitrain.bench import linear as L


def _records(n, dvec, calls, trials, local=0.0, d=400):
    """metrics.jsonl records of a faked P = 2 run: gap 10^-i at record i; per step 0.1 s of job
    clock, 0.03 s inside MPI (0.5 s more before the first record: set-up's) and `local` s of
    local solve; dvec(i) d-vector Allreduces, calls(i) collectives, `trials` line-search
    trials per step; bytes: 8·(d+1) per d-vector Allreduce, 40 per other collective."""
    return [{"step": i, "time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** -i),
             "comm_seconds": 0.5 + 0.03 * i, "comm_calls": calls(i), "ls_evals": trials,
             "dvec_allreduces": dvec(i),
             "comm_bytes": 8 * (d + 1) * dvec(i) + 40 * (calls(i) - dvec(i)),
             **({"t_local": local * i} if local else {})} for i in range(1, n + 1)]


def _allreduce(P, m, alpha, beta):
    return 2 * math.log2(P) * alpha + 2 * (P - 1) / P * m * beta


@pytest.mark.timeout(30)
def test_measured_model_and_projection_by_hand():
    """FADL-like run: 2i + 1 d-vector Allreduces and 10 + 5i collectives after step i, 2
    trials per step; gap 1e-4 at step 4."""
    recs = _records(11, lambda i: 2 * i + 1, lambda i: 10 + 5 * i, 2, local=0.02)
    m = L._measured(recs, 0.5, 1e-4)
    # other collectives: 9 + 3i after step i; per later step 3 = 2 trials + 1 more.
    # S to step 4 = step 1 (2 trials + 1) + steps 2..4 (3 each) = 12; set-up 9 + 3 − 3 = 9
    assert (m["iterations"], m["dvec"], m["scalar"], m["setup"]) == (4, 9, 12, 9)
    # compute: local 0.02·4 + 4 × (0.1 − 0.03 − 0.02) per step = 0.28 (set-up's 0.5 s of MPI
    # before step 1 is not subtracted)
    assert m["compute"] == pytest.approx(0.28, rel=1e-9)
    assert L._scalar_bytes(m, 400) == pytest.approx(40.0)
    d, P, alpha, beta = 400, 256, 1e-3, 1e-9
    comm = 9 * (2 * 8 * alpha + 2 * 255 / 256 * 8 * 401 * beta) \
        + 12 * (2 * 8 * alpha + 2 * 255 / 256 * 40 * beta)
    total, c = L._projected(m, d, P, alpha, beta, scale=1000)
    assert c == pytest.approx(comm, rel=1e-12)
    assert total == pytest.approx(0.28 * 2 * 1000 / 256 + comm, rel=1e-12)
    # P = 2, data ×1: the measured compute plus one exchange per collective
    assert L._projected(m, d, 2, alpha, beta, scale=1)[0] == pytest.approx(
        0.28 + 9 * (2 * alpha + 8 * 401 * beta) + 12 * (2 * alpha + 40 * beta), rel=1e-12)
    # never within the gap: no model; a run of one record: step 1's rest of compute
    assert L._measured(recs, 0.5, 1e-13) is None
    one = L._measured(_records(1, lambda i: 1, lambda i: 4, 2), 0.5, 0.2)
    assert (one["scalar"], one["compute"]) == (2, 0.0)


@pytest.mark.timeout(60)
def test_alpha_sweep_report_and_projection(tmp_path, monkeypatch):
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "data"))
    open(os.path.join(out, "data", "rt-polarity.h5"), "w").close()
    X = sp.random(50, 400, density=0.05, format="csr", random_state=0)
    monkeypatch.setattr(netem, "check", lambda: None)
    link = {}      # each link probes at 5× its set latency: the check uses each link's own
    monkeypatch.setattr(netem, "up", lambda alpha, rate, tag: link.update(alpha=alpha) or {
        "alpha": alpha})
    monkeypatch.setattr(netem, "down", lambda tag: None)
    monkeypatch.setattr(netem, "measure", lambda tag: {"alpha": 5 * link["alpha"], "beta": 1e-8})
    monkeypatch.setattr(netem, "measure_calls", lambda tag: {"allreduce": [[8, 2e-3],
                                                                          [1024, 4e-3]]})
    monkeypatch.setattr(L, "_certified_ref", lambda o, tag, path, l2: (0.5, {}))
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(50)))
    monkeypatch.setattr(L, "_mpirun", lambda *a, **k: 0.1)

    def trace(rdir):     # the slow link doubles FADL's iterations
        tag, algo = rdir.rsplit("-", 1)
        if algo == "dasvrda":
            recs = _records(11, lambda i: 0, lambda i: 5 * i, 0)
            for r in recs:
                del r["dvec_allreduces"]
            return recs, {"communication": "columns"}
        if algo == "lbfgs":
            return _records(11, lambda i: i + 1, lambda i: 12 + 4 * i, 3), {}
        recs = _records(11, lambda i: 2 * i, lambda i: 10 + 5 * i, 2, local=0.02)
        if "0.002" in tag:
            for i, r in enumerate(recs, 1):
                r["objective"] = 0.5 * (1 + 10.0 ** (-i / 2))
        return recs, {}
    monkeypatch.setattr(L, "_trace", trace)
    args = types.SimpleNamespace(alpha_sweep="0.002,0.0002", rate="1gbit", repeat=1)
    assert L._alpha_sweep(args, out, 1e-4, (1.0, 1.0, 1.0)) == 0
    text = open(os.path.join(out, "report.md")).read()
    # gap 1e-4 at record 4 (record 8 for FADL over the slow link)
    assert "| 0.2 ms | 1 ms | 0.4s / 8 / 30 | 0.4s / 5 / 28 | 0.4s / n/a / 20 |" in text
    assert "| 2 ms | 10 ms | 0.8s / 16 / 50 | 0.4s / 5 / 28 | 0.4s / n/a / 20 |" in text
    assert "its inner exchange: columns" in text
    # the projection takes the 0.2 ms runs: FADL K = 4, D = 8, S = 3 + 3·3 = 12 (other
    # collectives 10 + 3i: 2 trials and 1 more per step), C = 0.08 + 4·0.05 = 0.28;
    # L-BFGS K = 4, D = 5, S = 3 + 3·3 = 12 (other 11 + 3i: 3 trials a step), C = 4·0.07
    d, P, alpha = 400, 256, 1e-3
    assert "| rt-polarity l2=0.0001 | FADL | 4 | 0.28 (0.07) | 8 (2) | 12 (3) | 40 | 10 |" \
        in text
    assert "| rt-polarity l2=0.0001 | L-BFGS | 4 | 0.28 (0.07) | 5 (1.25) | 12 (3) | 40 | 11 |" \
        in text

    def t(C, D, S, P, alpha, beta=1e-9, scale=1000):
        comm = D * _allreduce(P, 8 * (d + 1), alpha, beta) + S * _allreduce(P, 40, alpha, beta)
        return C * 2 * scale / P + comm, comm
    tf, cf = t(0.28, 8, 12, P, alpha)
    tl, cl = t(0.28, 5, 12, P, alpha)
    assert f"| rt-polarity l2=0.0001 | 0.001 | 256 | {tf:.3g} | {cf:.3g} | {tl:.3g} | " \
        f"{cl:.3g} | {tl / tf:.2f} |" in text
    # the check at P = 2 with the probed α, β: the 0.2 ms inputs against each link's times
    for row, probed, tf_ in (("2 ms", 1e-2, 0.8), ("0.2 ms", 1e-3, 0.4)):
        mf, ml = t(0.28, 8, 12, 2, probed, 1e-8, 1)[0], t(0.28, 5, 12, 2, probed, 1e-8, 1)[0]
        assert f"| {row} | {tf_} | {mf:.3g} | 0.4 | {ml:.3g} |" in text
    assert L._proj_model() in text
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["projection_from_alpha"] == 0.0002 and res["sweep"]["0.0002/dasvrda"][
        "communication"] == "columns"
    assert res["projection_model"] == L._proj_model()


@pytest.mark.timeout(60)
def test_sklearn_comparator_is_seeded():
    """scikit-learn's saga samples rows at random: unseeded, two fits at the same tol reach
    different gaps, so the comparator's row would change from run to run."""
    X = sp.random(300, 50, density=0.2, format="csr", random_state=1)
    y = np.where(np.random.default_rng(0).random(300) < 0.5, 1.0, -1.0)
    a = L._sklearn(X, y, 1e-3, "saga", [1e-1, 1e-2], 0.1)
    b = L._sklearn(X, y, 1e-3, "saga", [1e-1, 1e-2], 0.1)
    assert [p[1:] for p in a] == [p[1:] for p in b]


def _repeat_trace(speeds, objective, dvec):
    """A fake bench-linear _trace for --repeat runs: repeat k (the ".rK" of the job name, 0
    without) runs with the clock ×speeds[k]; record i's objective and d-vector Allreduces are
    objective(algo, k, i) and dvec(algo, k, i)."""
    def trace(rdir):
        algo = os.path.basename(rdir).rsplit("-", 2)[-2]
        k = int(algo.split(".r")[1]) if ".r" in algo else 0
        algo, speed = algo.split(".r")[0], speeds[k]
        recs = [{"step": i, "time": 0.1 * i * speed, "objective": objective(algo, k, i),
                 "comm_calls": 5 * i, "dvec_allreduces": int(dvec(algo, k, i))}
                for i in range(1, 12)]
        return recs, {"objective": recs[-1]["objective"], "time": 1.1 * speed,
                      "stop_reason": "x", "start": "mix"}
    return trace


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
        recs = [{"step": i, "time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** (-i / slow)),
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


@pytest.mark.timeout(30)
def test_shape_table_names_the_start_fadl_auto_picks(tmp_path):
    """The shape table's "FADL start" is the start the FADL run reports (summary.json, read by
    _run): here what FADL's default resolves at P = 2, mix where rows per rank < features
    (n < 2d), zero from rows per rank = features on (fadl.py setup); never recomputed."""
    def run(dvec, start=None):
        return {"recs": [[0.1, 0.5 * (1 + 1e-3)]], "to_gap": {"0.0001": (0.4, dvec, 20)},
                "start": start}
    results = {"datasets": {name: {"n": n, "d": d, "runs": {"0.0001": {
        "f_lower": 0.5, "methods": {"fadl P=2": run(4, start), "lbfgs P=2": run(9)}}}}
        for name, n, d, start in (("wide", 100, 400, "mix"), ("square", 800, 400, "zero"),
                                  ("tall", 1000, 10, "zero"))}}
    text = L._shape_table(types.SimpleNamespace(), str(tmp_path), {}, 1e-4, results)
    assert "| wide | 0.125 | mix | 4 | 9 | 0.444 | 1.0e-03 |" in text
    assert "| square | 1 | zero | 4 | 9 |" in text and "| tall | 50 | zero | 4 | 9 |" in text
    assert [p["data"] for p in results["shape"]] == ["wide", "square", "tall"]
    assert [p["fadl_start"] for p in results["shape"]] == ["mix", "zero", "zero"]
    results["datasets"]["tall"]["runs"]["0.0001"]["methods"]["fadl P=2"]["start"] = None
    assert "| tall | 50 | — | 4 | 9 |" in L._shape_table(types.SimpleNamespace(), str(tmp_path),
                                                         {}, 1e-4, results)


@pytest.mark.timeout(60)
def test_repeat_takes_median_seconds_keeps_counts_and_runs_the_other_start(tmp_path,
                                                                          monkeypatch):
    """--repeat 3: every mpitrain job runs 3 times (psgd-mix once); the seconds to a gap are
    the median of the 3 (here the repeats' clocks are ×1, ×3, ×2), the Targets table prints
    the range, the counts are the median run's and said to agree. FADL's default start (the
    fake summary says mix) is judged against one more FADL run from the other start, zero,
    whose counts reach the shape table."""
    _fake_table(tmp_path, monkeypatch)
    seen = []

    def trace(rdir):
        name = os.path.basename(rdir)
        algo, P = name.rsplit("-", 2)[-2:]
        k = int(algo.split(".r")[1]) if ".r" in algo else 0
        algo = algo.split(".r")[0]
        seen.append((name, k))
        speed = (1, 3, 2)[k]
        zero = algo == "zero"
        recs = [{"step": i, "time": 0.1 * i * speed, "objective": 0.5 * (1 + 10.0 ** -i),
                 "comm_calls": 5 * i,
                 "dvec_allreduces": 2 * i + (1 if zero else 0) if algo in ("fadl", "zero")
                 else i + 1} for i in range(1, 12)]
        return recs, {"objective": recs[-1]["objective"], "time": 1.1 * speed,
                      "stop_reason": "x", "start": "zero" if zero else "mix"}
    monkeypatch.setattr(L, "_trace", trace)
    out = tmp_path / "out"
    assert L.main(["--sets", "synth", "--l2", "1e-4", "--repeat", "3", "--out",
                   str(out)]) == 0
    names = [n for n, _ in seen]
    assert sum(n.startswith("synth-0.0001-fadl-P2") or n.startswith("synth-0.0001-fadl.r")
               and n.endswith("-P2") for n in names) == 3
    assert sum("psgd-mix" in n for n in names) == 1
    assert sum("-fadl-zero" in n for n in names) == 3
    res = json.load(open(out / "results.json"))
    rr = res["datasets"]["synth"]["runs"]["0.0001"]
    f2 = rr["methods"]["fadl P=2"]
    # gap 1e-4 at record 4: 0.4 s × (1, 3, 2) -> median 0.8; 8 d-vector Allreduces (mix: 2i)
    assert f2["to_gap_times"]["0.0001"] == pytest.approx([0.4, 1.2, 0.8])
    assert f2["to_gap"]["0.0001"][0] == pytest.approx(0.8) and f2["to_gap"]["0.0001"][1] == 8
    assert f2["counts_agree"] and f2["repeats"] == 3
    assert rr["fadl_other_start"]["start"] == "zero"
    assert rr["fadl_other_start"]["to_gap"]["0.0001"][1] == 9
    text = (out / "report.md").read_text()
    assert "the median of 3 runs of each job (psgd-mix: one)" in text
    assert "were the same in every run" in text
    assert "| 0.8 (0.4–1.2) |" in text
    shape = next(p for p in res["shape"] if p["data"] == "synth")
    assert (shape["fadl_start"], shape["fadl_dvec"], shape["other_start"],
            shape["other_dvec"]) == ("mix", 8, "zero", 9)
    with pytest.raises(SystemExit):
        L.main(["--repeat", "0"])


def _fake_sweep(tmp_path, monkeypatch):
    """Fakes the sweep's link (α 1 ms, β 1e-8 s/B measured), data, reference and runs; the
    caller fakes _trace. Returns the bench's out directory."""
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "data"))
    open(os.path.join(out, "data", "rt-polarity.h5"), "w").close()
    X = sp.random(50, 400, density=0.05, format="csr", random_state=0)
    monkeypatch.setattr(netem, "check", lambda: None)
    monkeypatch.setattr(netem, "up", lambda alpha, rate, tag: {"alpha": alpha})
    monkeypatch.setattr(netem, "down", lambda tag: None)
    monkeypatch.setattr(netem, "measure", lambda tag: {"alpha": 1e-3, "beta": 1e-8})
    monkeypatch.setattr(netem, "measure_calls", lambda tag: {"allreduce": [[8, 2e-3],
                                                                          [1024, 4e-3]]})
    monkeypatch.setattr(L, "_certified_ref", lambda o, tag, path, l2: (0.5, {}))
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(50)))
    monkeypatch.setattr(L, "_mpirun", lambda *a, **k: 0.1)
    return out


@pytest.mark.timeout(30)
def test_alpha_sweep_repeat_reports_the_median_run(tmp_path, monkeypatch):
    """--repeat 3 in the sweep: each method runs 3 times per link; the cell is the run with the
    median time to the certified 1e-4 (clocks ×1, ×3, ×2 here: the ×2 run), all 3 times are
    kept, and the report says the counts agreed."""
    out = _fake_sweep(tmp_path, monkeypatch)

    def trace(rdir):
        name = os.path.basename(rdir)
        k = int(name.split(".r")[1]) if ".r" in name else 0
        recs = _records(11, lambda i: i + 1, lambda i: 12 + 4 * i, 3)
        for r in recs:
            r["time"] *= (1, 3, 2)[k]
        return recs, {}
    monkeypatch.setattr(L, "_trace", trace)
    args = types.SimpleNamespace(alpha_sweep="0.0002", rate="1gbit", repeat=3)
    assert L._alpha_sweep(args, out, 1e-4, (1.0, 1.0, 1.0)) == 0
    res = json.load(open(os.path.join(out, "results.json")))["sweep"]["0.0002/lbfgs"]
    t1 = res["times"][0]
    assert res["times"] == pytest.approx([t1, 2 * t1, 3 * t1]) and res["time"] == \
        pytest.approx(2 * t1)
    assert res["counts_agree"]
    text = open(os.path.join(out, "report.md")).read()
    assert "--repeat 3`" in text and "median time of 3 runs" in text
    assert "were the same in every run." in text


@pytest.mark.timeout(60)
def test_repeat_median_is_not_the_mean_and_differing_counts_are_named(tmp_path, monkeypatch):
    """--repeat 3 with clocks ×1, ×4, ×2 (mean ≠ median): FADL's seconds to 1e-4 are the
    median 0.8 (the mean would be 0.93), its trace and job time are the median run's (×2);
    L-BFGS's second repeat needs one more d-vector Allreduce: counts_agree is False for it and
    the report names it."""
    _fake_table(tmp_path, monkeypatch)

    monkeypatch.setattr(L, "_trace", _repeat_trace(
        (1, 4, 2), lambda algo, k, i: 0.5 * (1 + 10.0 ** -i),
        lambda algo, k, i: 2 * i if algo == "fadl" else i + 1 + (algo == "lbfgs" and k == 1)))
    out = tmp_path / "out"
    assert L.main(["--sets", "synth", "--l2", "1e-4", "--repeat", "3", "--out",
                   str(out)]) == 0
    m = json.load(open(out / "results.json"))["datasets"]["synth"]["runs"]["0.0001"]["methods"]
    f2 = m["fadl P=2"]
    assert f2["to_gap"]["0.0001"][0] == pytest.approx(0.8)
    assert f2["time"] == pytest.approx(2.2) and f2["recs"][0][0] == pytest.approx(0.2)
    assert f2["counts_agree"] and not m["lbfgs P=2"]["counts_agree"]
    text = (out / "report.md").read_text()
    assert "differed between runs for lbfgs P=1, lbfgs P=2 (the cells give the median run's)" \
        in text


@pytest.mark.timeout(30)
def test_alpha_sweep_repeat_names_differing_counts_and_sorts_a_miss_last(tmp_path, monkeypatch):
    """The sweep's --repeat: a repeat that never reaches 1e-4 is the slowest (the cell is the
    median of the two that did and the miss), and counts that differ between repeats are
    reported as differing."""
    out = _fake_sweep(tmp_path, monkeypatch)

    def trace(rdir):
        name = os.path.basename(rdir)
        k = int(name.split(".r")[1]) if ".r" in name else 0
        recs = _records(11, lambda i: i + 1 + (k == 2), lambda i: 12 + 4 * i, 3)
        for r in recs:
            r["time"] *= (1, 3, 2)[k]
            if k == 0:                      # the fastest clock never gets within 1e-4
                r["objective"] = 0.5 * (1 + 1e-3)
        return recs, {}
    monkeypatch.setattr(L, "_trace", trace)
    args = types.SimpleNamespace(alpha_sweep="0.0002", rate="1gbit", repeat=3)
    assert L._alpha_sweep(args, out, 1e-4, (1.0, 1.0, 1.0)) == 0
    res = json.load(open(os.path.join(out, "results.json")))["sweep"]["0.0002/lbfgs"]
    assert res["times"][-1] is None and res["time"] == pytest.approx(res["times"][1])
    assert res["times"][1] == pytest.approx(3 * res["times"][0] / 2)   # ×3 after ×2
    assert not res["counts_agree"]
    assert "their counts differed between runs." in open(os.path.join(out, "report.md")).read()


@pytest.mark.timeout(30)
def test_shape_table_subsets_run_fadl_from_the_other_start(tmp_path, monkeypatch):
    """A row subset's FADL default start (mix on rt-polarity's first 4000 rows) is judged
    against one more FADL run from zero; its count reaches the shape table's last columns."""
    monkeypatch.setattr(L, "_certified_ref", lambda o, tag, path, l2, max_rows=0: (0.5, {}))
    monkeypatch.setattr(L, "_mpirun", lambda *a, **k: 0.1)
    ran = []

    def trace(rdir):
        algo = os.path.basename(rdir).rsplit("-P2", 1)[0].split("0.0001-")[1]
        ran.append(algo)
        dvec = {"lbfgs": lambda i: i + 1, "fadl": lambda i: 2 * i,
                "fadl-zero": lambda i: 2 * i + 1}[algo]
        recs = [{"step": i, "time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** -i),
                 "comm_calls": 5 * i, "dvec_allreduces": dvec(i)} for i in range(1, 8)]
        return recs, {"start": {"fadl": "mix", "fadl-zero": "zero"}.get(algo)}
    monkeypatch.setattr(L, "_trace", trace)
    run = {"recs": [[0.1, 0.5 * (1 + 1e-3)]], "to_gap": {"0.0001": (0.4, 4, 20)}, "start": "mix"}
    results = {"datasets": {"rt-polarity": {"n": 10000, "d": 120000, "runs": {"0.0001": {
        "f_lower": 0.5, "methods": {"fadl P=2": run, "lbfgs P=2": dict(run, start=None)}}}}}}
    L._shape_table(types.SimpleNamespace(), str(tmp_path), {"rt-polarity": "x.h5"}, 1e-4,
                   results)
    assert ran == ["lbfgs", "fadl", "fadl-zero"]
    sub = next(p for p in results["shape"] if p["data"] == "rt-polarity (first 4000 rows)")
    assert (sub["fadl_start"], sub["fadl_dvec"], sub["other_start"], sub["other_dvec"]) == (
        "mix", 8, "zero", 9)


@pytest.mark.timeout(30)
def test_sweep_check_per_call_model_by_hand():
    """The per-call column: a run's own compute, its D d-vector Allreduces at 8·(d+1) bytes and
    S other collectives at their mean size, each charged the link's probed Allreduce time
    (linear between probed sizes). d = 99: 800 B -> 2 ms + 2 ms·792/1016; the other
    collectives' mean size is 0 B here (no bytes after step 1) -> the smallest size's 2 ms."""
    m = {"compute": 0.1, "dvec": 4, "scalar": 10, "iterations": 3,
         "tail": {"calls": 20, "dvec": 0, "bytes": 0}}
    res = {f"0.001/{a}": {"time": 0.2, "probe": {"alpha": 1e-3, "beta": 1e-8}, "model": m}
           for a in ("fadl", "lbfgs")}
    text = L._sweep_check(res, [0.001], "0.001", 99,
                          {"0.001": {"allreduce": [[8, 2e-3], [1024, 4e-3]]}})
    want = 0.1 + 4 * (2e-3 + 2e-3 * 792 / 1016) + 10 * 2e-3
    assert f"| {want:.3g} | {want:.3g} |" in text
    assert "FADL per-call s" in text


@pytest.mark.timeout(30)
def test_sweep_check_per_call_model_uses_each_links_table_and_run():
    """Two links: each per-call cell is that link's own run (compute, counts) charged that
    link's probed Allreduce times, the other collectives at their mean size (here 80 B: 120
    bytes of 3 calls after step 1, none a d-vector one)."""
    def model(compute, dvec, scalar):
        return {"compute": compute, "dvec": dvec, "scalar": scalar, "iterations": 3,
                "tail": {"calls": 3, "dvec": 0, "bytes": 240}}
    res = {}
    for a, (cf, cl) in {"0.001": (0.1, 0.2), "0.002": (0.3, 0.5)}.items():
        res[f"{a}/fadl"] = {"time": 1.0, "probe": {"alpha": float(a), "beta": 1e-8},
                            "model": model(cf, 4, 10)}
        res[f"{a}/lbfgs"] = {"time": 1.0, "probe": {"alpha": float(a), "beta": 1e-8},
                             "model": model(cl, 6, 20)}
    tables = {"0.001": {"allreduce": [[8, 1e-3], [1024, 3e-3]]},
              "0.002": {"allreduce": [[8, 4e-3], [1024, 9e-3]]}}
    text = L._sweep_check(res, [0.001, 0.002], "0.001", 99, tables)

    def t(tab, n):
        (n0, t0), (n1, t1) = tab
        return t0 + (t1 - t0) * (n - n0) / (n1 - n0)
    for a, (cf, cl) in {"0.001": (0.1, 0.2), "0.002": (0.3, 0.5)}.items():
        tab = tables[a]["allreduce"]
        f = cf + 4 * t(tab, 800) + 10 * t(tab, 80)
        lb = cl + 6 * t(tab, 800) + 20 * t(tab, 80)
        assert f"| {f:.3g} | {lb:.3g} |" in text, (a, f, lb, text)


@pytest.mark.timeout(60)
def test_targets_row_by_hand_goal_boundaries_and_the_comparators(tmp_path, monkeypatch):
    """The Targets table's claims, worked by hand: rows per rank / features = n/2/d (200 × 10:
    exactly 10, so the goal is ≤ 1/3), FADL's d-vector Allreduces over the CACHED-margin
    L-BFGS's (2 / 6 = 1/3: met, a ratio equal to its goal meets it), the best scikit-learn
    time is the fastest solver's; FADL's other start is the one its P = 2 run did not pick
    (the P = 1 run says otherwise here)."""
    calls = _fake_table(tmp_path, monkeypatch)   # (the psgd-mix runs are named "mix")
    X = sp.random(200, 10, density=0.5, format="csr", random_state=0)
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(200)))
    monkeypatch.setattr(L, "_sklearn", lambda X, y, l2, solver, tols, fstar: [
        ({"liblinear": 0.3, "lbfgs": 0.2, "saga": 0.5}[solver], 1e-5, 1e-4)])

    def trace(rdir):
        algo, P = os.path.basename(rdir).rsplit("-", 2)[-2:]
        dvec = {"fadl": lambda i: i - 2, "lbfgs": lambda i: i + (2 if P == "P2" else 3),
                "evaluate": lambda i: 3 * i}.get(algo, lambda i: i)   # P = 1 is not the row
        recs = [{"step": i, "time": 0.1 * i, "objective": 0.5 * (1 + 10.0 ** -i),
                 "comm_calls": 5 * i, "dvec_allreduces": dvec(i)} for i in range(1, 12)]
        start = {"fadl": "mix" if P == "P2" else "zero", "zero": "zero"}.get(algo)
        return recs, {"objective": recs[-1]["objective"], "time": 1.1, "stop_reason": "x",
                      "start": start}
    monkeypatch.setattr(L, "_trace", trace)
    out = tmp_path / "out"
    assert L.main(["--sets", "synth", "--l2", "1e-4", "--out", str(out)]) == 0
    assert ("zero", 2) in calls
    text = (out / "report.md").read_text()
    # data, q, FADL d-vec, L-BFGS d-vec, plain L-BFGS d-vec, ratio, goal, FADL all, L-BFGS all,
    # FADL s, L-BFGS s, best sklearn s
    assert "| synth l2=0.0001 | 10 | 2 | 6 | 12 | 0.333 | ≤ 0.33: met | 20 | 20 | 0.4 | " \
           "0.4 | 0.2 |" in text, text
    rr = json.load(open(out / "results.json"))["datasets"]["synth"]["runs"]["0.0001"]
    assert rr["fadl_other_start"]["start"] == "zero"
    t = rr["targets"]
    assert t["rows_per_rank_over_features"] == 10.0
    assert t["allreduce_ratio"] == pytest.approx(1 / 3)
    assert t["best_sklearn_time_to_1e-4"] == 0.2
    assert t["time_ratio_vs_best_sklearn"] == pytest.approx(0.4 / 0.2)
    # at half the rows per rank the goal is 1/2, and 3 / 6 meets it exactly
    X = sp.random(100, 10, density=0.5, format="csr", random_state=0)
    monkeypatch.setattr(L, "_load_all", lambda path: (X, np.ones(100)))
    dv = {"fadl": lambda i: i - 1, "lbfgs": lambda i: i + 2}

    def trace2(rdir):
        recs, summ = trace(rdir)
        algo = os.path.basename(rdir).rsplit("-", 2)[-2]
        for r in recs:
            r["dvec_allreduces"] = dv.get(algo, lambda i: r["dvec_allreduces"])(r["step"])
        return recs, summ
    monkeypatch.setattr(L, "_trace", trace2)
    assert L.main(["--sets", "synth", "--l2", "1e-4", "--out", str(tmp_path / "b")]) == 0
    assert "| synth l2=0.0001 | 5 | 3 | 6 | 12 | 0.5 | ≤ 0.5: met |" in (
        tmp_path / "b" / "report.md").read_text()


@pytest.mark.timeout(60)
def test_repeat_a_miss_on_any_repeat_leaves_no_seconds_to_the_gap(tmp_path, monkeypatch):
    """--repeat 3 where FADL's third repeat never gets within 1e-4: its seconds to 1e-4 are
    not the median of the two that did (a time not reached on every run is not claimed); the
    other cells keep theirs."""
    _fake_table(tmp_path, monkeypatch)

    monkeypatch.setattr(L, "_trace", _repeat_trace(
        (1, 3, 2),
        lambda algo, k, i: 0.5 * (1 + (2e-4 if algo == "fadl" and k == 2 else 10.0 ** -i)),
        lambda algo, k, i: 2 * i if algo == "fadl" else i + 1))
    out = tmp_path / "out"
    assert L.main(["--sets", "synth", "--l2", "1e-4", "--repeat", "3", "--out",
                   str(out)]) == 0
    m = json.load(open(out / "results.json"))["datasets"]["synth"]["runs"]["0.0001"]["methods"]
    assert m["fadl P=2"]["to_gap_times"]["0.0001"] == pytest.approx([0.4, 1.2, None])
    assert m["fadl P=2"]["to_gap"]["0.0001"][0] is None
    assert m["lbfgs P=2"]["to_gap"]["0.0001"][0] == pytest.approx(0.8)
    # 1e-3 is reached by every repeat (the third at its first record): 0.3, 0.9, 0.2
    assert m["fadl P=2"]["to_gap_times"]["0.001"] == pytest.approx([0.3, 0.9, 0.2])
    assert m["fadl P=2"]["to_gap"]["0.001"][0] == pytest.approx(0.3)


def test_spread_and_shape_order_by_hand():
    """A time cell shows the repeats' range from two runs on; the shape table is ordered by
    rows per rank / features, not by rows."""
    assert L._spread(0.5, [0.4, 0.6]) == "0.5 (0.4–0.6)" and L._spread(0.5, [0.5]) == "0.5"
    assert L._spread(None, [None, 0.3]) == "—"

    def run(start):
        return {"recs": [[0.1, 0.5 * (1 + 1e-3)]], "to_gap": {"0.0001": (0.4, 4, 20)},
                "start": start}
    results = {"datasets": {name: {"n": n, "d": d, "runs": {"0.0001": {
        "f_lower": 0.5, "methods": {"fadl P=2": run("zero"), "lbfgs P=2": run(None)}}}}
        for name, n, d in (("many-rows", 5000, 1000), ("few-rows", 1000, 10))}}
    L._shape_table(types.SimpleNamespace(), "unused", {}, 1e-4, results)
    assert [p["data"] for p in results["shape"]] == ["many-rows", "few-rows"]
