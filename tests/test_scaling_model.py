"""The runtime model of `mpitrain bench scaling`: Rabenseifner's Allreduce, the ring, and the
fit of the compute part, against values worked out by hand."""
import math

import pytest

from mpitrain.bench import scaling


def test_allreduce_model_by_hand():
    # 3 Allreduces of 1000 bytes in all at P = 8: 3·(2·3·α + 2·(1000/3)·(7/8)·β) + a + b/8
    a, b, alpha, beta = 0.5, 4.0, 1e-3, 1e-8
    got = scaling._proj_allreduce(8, 3, 1000, a, b, alpha, beta)
    want = a + b / 8 + 3 * (2 * 3 * alpha + 2 * (1000 / 3) * (7 / 8) * beta)
    assert got == pytest.approx(want, rel=1e-12)
    # one rank: no communication at all
    assert scaling._proj_allreduce(1, 3, 1000, a, b, alpha, beta) == pytest.approx(a + b)


def test_ring_model_messages_grow_with_p():
    t16 = scaling._proj_ring(16, 4, 100, 0.0, 1.0, 1e-3, 0.0)
    t32 = scaling._proj_ring(32, 4, 100, 0.0, 1.0, 1e-3, 0.0)
    assert t16 == pytest.approx(1 / 16 + 4 * 8 * 1e-3)
    assert t32 - 1 / 32 == pytest.approx(2 * (t16 - 1 / 16))


def test_compute_fit_from_two_points():
    res = {"methods": {"m": {"shm": {1: {"t_compute": 3.0, "calls": 1, "bytes": 8},
                                     2: {"t_compute": 2.0, "calls": 5, "bytes": 80}}}}}
    a, b, calls, nbytes = scaling._fit(res, "m")
    assert (a, b, calls, nbytes) == (1.0, 2.0, 5, 80)
    assert math.isclose(a + b / 2, 2.0)


# -- the per-call model: a call costs what the link's probe measured for its kind and size --
TABLE = [[8, 1e-3], [64, 2e-3], [1024, 4e-3]]


def test_call_seconds_interpolates_between_probed_sizes_by_hand():
    from mpitrain.netem import call_seconds
    assert call_seconds(TABLE, 0) == 1e-3 and call_seconds(TABLE, 8) == 1e-3  # floor
    assert call_seconds(TABLE, 36) == pytest.approx(1.5e-3)                  # halfway 8..64
    assert call_seconds(TABLE, 64) == pytest.approx(2e-3)
    assert call_seconds(TABLE, 544) == pytest.approx(3e-3)                   # halfway 64..1024
    # past the largest size: the line through the last two points (2e-3 s per 960 B)
    assert call_seconds(TABLE, 1984) == pytest.approx(6e-3)


def test_model_comm_charges_each_call_by_kind_and_size():
    net = {"calls": {"allreduce": TABLE, "sendrecv": [[8, 1e-2], [1024, 3e-2]],
                     "allgatherv": [[8, 5.0], [1024, 5.0]], "bcast": [[8, 7.0], [1024, 7.0]]}}
    by_call = [["Allreduce", 36, 2.0],                            # 2 × 1.5 ms
               ["the iteration-boundary agreement", 8, 1.0],     # an Allreduce: 1 ms
               [None, 0, 1.0],                                   # a passive wait: 1 ms
               ["Sendrecv", 516, 0.5]]                           # 0.5 × 20 ms
    total, parts = scaling.model_comm(by_call, net)
    assert parts == {"allreduce": pytest.approx(5e-3), "sendrecv": pytest.approx(1e-2)}
    assert total == pytest.approx(1.5e-2)


def test_calls_per_step_keeps_the_calls_between_the_two_records(tmp_path):
    # the driver's step is k while step k + 1 runs: records at steps 2 and 4 enclose the
    # calls traced at steps 2 and 3 (those of step 0 and 1 are set-up and step 2's own)
    path = tmp_path / "calls-rank0.json"
    path.write_text('[[1, "Allreduce", 8, 5], [2, "Allreduce", 8, 3], [3, "Allreduce", 8, 1],'
                    ' [3, "Bcast", 64, 2], [4, "Allreduce", 8, 7]]')
    got = scaling._calls_per_step(str(path), 2, 4)
    assert got == [["Allreduce", 8, 2.0], ["Bcast", 64, 1.0]]
    assert scaling._calls_per_step(str(tmp_path / "none.json"), 2, 4) == []


def test_round_factor_is_the_median_exchange_in_alphas():
    # α = 1 ms, β = 1e-6 s/B: (t − nβ)/α over the Sendrecv sizes 256 B .. 16 KiB only
    net = {"alpha": 1e-3, "beta": 1e-6, "calls": {"sendrecv": [
        [8, 1e-3], [256, 2.256e-3], [1024, 4.024e-3], [16384, 2.5e-3 + 16384e-6],
        [65536, 9.0]]}}
    assert scaling.round_factor(net) == pytest.approx(2.5)       # median of 2, 2.5, 3
    assert scaling.alpha_round(net) == pytest.approx(2.5e-3)
    assert scaling.round_factor({"alpha": 1e-3, "beta": 1e-6}) == 1.0   # no probe: plain α


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_traced_run_records_the_calls_the_metrics_count(tmp_path, digits2_h5):
    # the per-call record of `bench scaling` adds up, kind by kind and size by size, to the
    # calls and bytes the run's own metrics count between its first and last record
    import json
    import subprocess
    import sys
    from util import ROOT, env, mpiexec, write_job
    job = write_job(tmp_path / "j.toml", {
        "job": {"algorithm": "lbfgs"}, "data": {"train": digits2_h5},
        "model": {"l2": 1e-3}, "solver": {"max_iter": 6}, "checkpoint": {"every": 0}})
    out = tmp_path / "run"
    p = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "mpitrain.bench.scaling",
                        "_traced", "run", job, "--out", str(out)], env=env(),
                       capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in open(out / "metrics.jsonl") if x.strip()]
    first, last = recs[0], recs[-1]
    assert last["step"] - first["step"] >= 3
    by_call = scaling._calls_per_step(str(out / "calls-rank0.json"), first["step"],
                                      last["step"])
    steps = last["step"] - first["step"]
    assert {c[0] for c in by_call} >= {"Allreduce", "the iteration-boundary agreement"}
    assert sum(c[2] for c in by_call) * steps == pytest.approx(
        last["comm_calls"] - first["comm_calls"])
    assert sum(c[1] * c[2] for c in by_call) * steps == pytest.approx(
        last["comm_bytes"] - first["comm_bytes"])


def test_run_median_reports_the_middle_run(monkeypatch):
    times = iter([0.5, 0.1, 0.3, 0.9])
    outs = []

    def fake(argv, job, out):
        outs.append(out)
        return {"t_iter": next(times), "out": out}
    monkeypatch.setattr(scaling, "_run", fake)
    got = scaling._run_median(["x"], "j.toml", "o/m-P2", 3)
    assert outs == ["o/m-P2", "o/m-P2-r2", "o/m-P2-r3"]
    assert got == {"t_iter": 0.3, "out": "o/m-P2-r3", "t_iter_runs": [0.5, 0.1, 0.3]}
    # an even count: the lower middle one
    times = iter([0.4, 0.2])
    assert scaling._run_median(["x"], "j.toml", "o", 2)["t_iter"] == 0.2


def test_model_comm_charges_bcast_and_allgatherv_by_their_own_probe():
    # World's Bcast and Allgatherv (and their pickled and gather counterparts) are charged
    # their own kinds' measured seconds, not an Allreduce's
    net = {"calls": {"allreduce": [[8, 1.0], [1024, 1.0]], "sendrecv": [[8, 2.0], [1024, 2.0]],
                     "allgatherv": [[8, 3.0], [1024, 3.0]], "bcast": [[8, 5.0], [1024, 5.0]]}}
    total, parts = scaling.model_comm([["Bcast", 64, 1.0], ["bcast", 8, 1.0],
                                       ["Allgatherv", 64, 1.0], ["allgather", 8, 1.0],
                                       ["Gatherv", 8, 1.0]], net)
    assert parts == {"bcast": 10.0, "allgatherv": 9.0} and total == 19.0


def test_projection_charges_a_round_of_c_r_alpha():
    # the projections use the link's measured round c_r·α (here c_r = 2), not the one-way α
    net = {"alpha": 1e-3, "beta": 1e-9, "calls": {"sendrecv": [
        [256, 2e-3 + 256e-9], [1024, 2e-3 + 1024e-9], [16384, 2e-3 + 16384e-9]]}}
    res = {"nets": [net], "methods": {"m": {"shm": {
        1: {"t_compute": 3.0, "calls": 1, "bytes": 8},
        2: {"t_compute": 2.0, "calls": 5, "bytes": 80}}}}}
    text = scaling._projection(res, ["m"])
    assert "α_r = 2.00·α" in text
    weak = [scaling._proj_allreduce(P, 5, 80, 2.0, 0.0, 2e-3, 1e-9) for P in (64, 256, 1024)]
    assert "| " + " | ".join(f"{w:.4g}" for w in weak) + " |" in text


@pytest.mark.timeout(30)
def test_repeat_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as ex:
        scaling.main(["--repeat", "0"])
    assert ex.value.code == 2 and "--repeat" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_main_charges_the_shared_memory_p2_run_plus_its_calls_on_the_link(monkeypatch,
                                                                           tmp_path):
    """main's model per method and link, worked by hand: T_net = T_shm(P = 2) + Σ t_link(kind,
    n) over the P = 2 shared-memory run's calls (not P = 1's, not its compute alone, not the
    network run's own calls); the α–β model charges the network run's calls and bytes; the
    control probe runs with MPIR_CVAR_CH4_OFI_ENABLE_RMA=0 and is kept apart. Runs and link
    faked."""
    from mpitrain import netem
    shm = {1: {"t_iter": 1.0, "t_compute": 1.0, "t_mpi": 0.0, "calls": 0, "bytes": 0,
               "by_call": []},
           2: {"t_iter": 0.25, "t_compute": 0.2, "t_mpi": 0.05, "calls": 3.0, "bytes": 2112.0,
               "by_call": [["Allreduce", 1024, 2.0], ["Bcast", 64, 1.0]]}}
    net_run = {"t_iter": 0.5, "t_compute": 0.2, "t_mpi": 0.3, "calls": 4.0, "bytes": 4096.0,
               "by_call": [["Allreduce", 8, 1.0]], "steps": 5}

    def run_median(argv, job, out, repeat):
        assert repeat == 1
        return dict(net_run) if argv == ["NET"] else dict(shm[int(argv[-1])])
    tables = {k: [[8, 1e-3], [1024, 3e-3]] for k in netem.CALL_KINDS}
    tables["bcast"] = [[8, 7e-3], [1024, 7e-3]]
    no_rma = {k: [[8, 5e-4]] for k in netem.CALL_KINDS}
    probes = []

    def measure_calls(tag, sizes=netem.CALL_SIZES, env=None):
        probes.append((tag, tuple(sizes), env))
        return no_rma if env else tables
    probe = {"alpha": 1e-3, "beta": 1e-8, "allreduce_8": 2e-3, "allreduce_1048576": 0.03}
    got = {}
    for name, fake in [("check", lambda: None), ("up", lambda *a: None),
                       ("down", lambda tag: None), ("measure", lambda tag: dict(probe)),
                       ("measure_calls", measure_calls),
                       ("mpiexec_argv", lambda tag, n, cmd: ["NET"])]:
        monkeypatch.setattr(netem, name, fake)
    for name, fake in [("_data", lambda name, ddir: "d.h5"),
                       ("_job", lambda path, m, train, solver=None: path),
                       ("_run_median", run_median), ("mpiexec", lambda: "mpiexec"),
                       ("_report", lambda args, res, methods, note: got.update(res) or 0)]:
        monkeypatch.setattr(scaling, name, fake)
    assert scaling.main(["--methods", "dasvrda", "--nets", "0.001,100mbit",
                         "--out", str(tmp_path)]) == 0
    r = got["methods"]["dasvrda"]["net0"]
    comm = 2 * 3e-3 + 7e-3              # P = 2's two 1 KiB Allreduces and one 64 B Bcast
    assert r["model_comm"] == pytest.approx(comm)
    assert r["model_parts"] == {"allreduce": pytest.approx(6e-3), "bcast": pytest.approx(7e-3)}
    assert r["predicted"] == pytest.approx(0.25 + comm)
    assert r["error"] == pytest.approx((0.25 + comm) / 0.5 - 1)
    assert r["wait"] == pytest.approx(0.3 - comm)
    # α–β: c_α·α = the 8 B Allreduce per call, c_β·β = its slope to 1 MiB per byte
    ab = 4.0 * 2e-3 + 4096.0 * (0.03 - 2e-3) / (1 << 20)
    assert r["predicted_ab"] == pytest.approx(0.25 + ab)
    assert r["error_ab"] == pytest.approx((0.25 + ab) / 0.5 - 1)
    n = got["nets"][0]
    assert n["calls"] is tables and n["calls_no_rma"] is no_rma
    assert n["c_alpha"] == pytest.approx(2.0) and n["beta_set"] == pytest.approx(8e-8)
    assert probes == [(scaling.TAG, netem.CALL_SIZES, None),
                      (scaling.TAG, scaling.NO_RMA_SIZES, {"MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0"})]


def test_round_factor_of_an_even_count_is_the_mean_of_the_middle_two():
    # the control probe's sizes (8, 1024, 16384) leave two Sendrecvs in 256 B .. 16 KiB, both
    # ends included: (t − nβ)/α = 1.0 and 1.5, so c_r = 1.25
    net = {"alpha": 1e-3, "beta": 1e-6, "calls": {"sendrecv": [
        [8, 9.0], [256, 1e-3 + 256e-6], [16384, 1.5e-3 + 16384e-6], [32768, 9.0]]}}
    assert scaling.round_factor(net) == pytest.approx(1.25)


def test_compute_fit_is_never_negative():
    # P = 2 slower than P = 1 in compute: no 1/P part (b = 0, a = T_c(1)); more than twice
    # as fast: all of it 1/P (a = 0, b = 2·(T_c(1) − T_c(2)))
    def res(t1, t2):
        return {"methods": {"m": {"shm": {1: {"t_compute": t1},
                                          2: {"t_compute": t2, "calls": 5, "bytes": 80}}}}}
    assert scaling._fit(res(2.0, 2.5), "m") == (2.0, 0.0, 5, 80)
    assert scaling._fit(res(3.0, 1.0), "m") == (0.0, 4.0, 5, 80)


def _net_c2():
    """A link of α = 1 ms, β = 1 ns/B whose measured round is c_r = 2 (α_r = 2 ms)."""
    return {"alpha": 1e-3, "beta": 1e-9, "alpha_set": 0.001, "rate": "1gbit", "calls": {
        "sendrecv": [[256, 2e-3 + 256e-9], [1024, 2e-3 + 1024e-9], [16384, 2e-3 + 16384e-9]],
        "allreduce": [[8, 1e-3], [1024, 3e-3]], "bcast": [[8, 7e-3], [1024, 7e-3]],
        "allgatherv": [[8, 1e-3]]}}


def _T(P, m, b, a, bc, al, be):
    """Rabenseifner by hand: a + bc/P + m·(2⌈log₂P⌉·al + 2·(b/m)·(P−1)/P·be)."""
    return a + bc / P + m * (2 * math.ceil(math.log2(P)) * al + 2 * (b / m) * (P - 1) / P * be)


def test_projection_strong_speed_up_is_t1_over_tp():
    res = {"nets": [_net_c2()], "methods": {"m": {"shm": {
        1: {"t_compute": 3.0}, 2: {"t_compute": 2.0, "calls": 5, "bytes": 80}}}}}
    text = scaling._projection(res, ["m"])
    strong = [3.0 / _T(P, 5, 80, 1.0, 2.0, 2e-3, 1e-9) for P in (64, 256, 1024)]
    assert "| m | 1 | 2 | " + " | ".join(f"{s:.4g}" for s in strong) + " |" in text


def test_claims_tables_by_hand():
    """The papers' claims: FADL / L-BFGS time to converge (iterations × the Allreduce model at
    a round of c_r·α), ParMAC's ring speed-up with the compute scaled to N rows, greedy vs SLP
    seconds per iteration at α_r."""
    def shm(t1, t2, calls, nbytes):
        return {"shm": {1: {"t_compute": t1}, 2: {"t_compute": t2, "calls": calls,
                                                     "bytes": nbytes}}}
    res = {"nets": [_net_c2()], "solve": {"fadl": 10, "lbfgs": 40}, "methods": {
        "fadl": shm(3.0, 2.0, 5, 80), "lbfgs": shm(1.0, 0.6, 20, 400),
        "parmac-ba": shm(2.0, 1.2, 4, 1000), "sae-greedy": shm(4.0, 2.5, 6, 6000),
        "slp": shm(5.0, 3.0, 30, 9000)}}
    text = scaling._claims(res, list(res["methods"]))
    assert "with c_r = 2.00" in text and "FADL 10, L-BFGS 40" in text
    for alpha, label in ((1e-5, "0.01 ms"), (1e-3, "1 ms")):
        r = [10 * _T(P, 5, 80, 1.0, 2.0, 2 * alpha, 1e-9)
             / (40 * _T(P, 20, 400, 0.2, 0.8, 2 * alpha, 1e-9)) for P in (2, 64, 1024)]
        assert f"| {label} | " + " | ".join(f"{x:.4g}" for x in r) + " |" in text, label
    # ParMAC: a = 0.4, b = 1.6 at 1,500 rows; the ring a + b/P + (m2·P/2)·α_r + bytes·β
    for N, label in ((1e6, "1e+06"), (1e8, "1e+08")):
        b = 1.6 * N / 1500
        s = [(0.4 + b) / (0.4 + b / P + (4 * P / 2) * 2e-3 + 1000 * 1e-9) for P in (16, 128, 1024)]
        assert f"| {label} | " + " | ".join(f"{x:.4g}" for x in s) + " |" in text, label
    for P in (2, 4, 16, 64):
        tg, ts = _T(P, 6, 6000, 1.0, 3.0, 2e-3, 1e-9), _T(P, 30, 9000, 1.0, 4.0, 2e-3, 1e-9)
        assert f"| {P} | {tg:.4g} | {ts:.4g} |" in text, P


def test_where_names_the_dearest_calls_of_the_shared_memory_run():
    # the calls the model charges are the P = 2 shared-memory run's: per iteration 10 × 1 ms
    # (8 B Allreduce), 7 ms (Bcast), 2 × 3 ms (1 KiB Allreduce), 0.5 × 1 ms (Sendrecv)
    res = {"nets": [_net_c2()], "methods": {"m": {
        "shm": {2: {"by_call": [["Allreduce", 1024, 2.0], ["Bcast", 64, 1.0],
                                ["Allreduce", 8, 10.0], ["Sendrecv", 8, 0.5]]}},
        "net0": {"t_iter": 0.5, "by_call": [["Allreduce", 8, 99.0]],
                 "model_parts": {"allreduce": 0.016, "bcast": 0.007}}}}}
    text = scaling._where(res, ["m"])
    assert "| m | 1 ms, 1gbit | 0.5 | 0 | 0.016 | 0.007 | 0 | 10× Allreduce 8 B; 1× " \
           "Bcast 64 B; 2× Allreduce 1024 B |" in text, text
