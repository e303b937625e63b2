"""ParMAC binary autoencoder on MNIST (precision vs tPCA/ITQ, strong scaling) and MAC vs backprop.

    mpitrain bench parmac [--quick] [--out DIR] [--data data/mnist.h5] [--digits data/digits.h5]
                          [--ranks 1,2] [--rows N]

Runs `parmac-ba` at L = 8 and 16 bits at each P in --ranks (same job, same data), reads each
run's summary/metrics (precision at K of the hash functions vs thresholded PCA and ITQ codes
computed in the same run; per-iteration W-step compute, ring communication and Z-step times),
fits the speed-up model T(P) = e·(M·N/P·t_w + M·t_c) + M·t_c + N/P·t_z from the measured costs
and projects it to P = 128, N = 10⁸. Then `mac` vs `backprop` on digits: nested error vs time.
"""
import argparse
import json
import os

from . import common


def _run(tmp, name, P, sections, sets=()):
    from mpitrain.config import dump_toml
    job = os.path.join(tmp, f"{name}.toml")
    with open(job, "w") as fh:
        fh.write(dump_toml(sections))
    out = os.path.join(tmp, f"{name}-P{P}")
    dt, rc = common.mpirun(P, job, out, sets)
    if rc != 0:
        raise SystemExit(f"bench parmac: run {name} at P={P} failed ({rc})")
    with open(os.path.join(out, "summary.json")) as fh:
        s = json.load(fh)
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        m = [json.loads(l) for l in fh]
    return dt, s, m


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench parmac", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k MNIST rows, 6 μ steps")
    ap.add_argument("--out", default="bench-out/parmac")
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--digits", default="data/digits.h5")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--rows", type=int, default=0, help="MNIST training rows (0 = all)")
    a = ap.parse_args(argv)
    ranks = [int(x) for x in a.ranks.split(",")]
    rows = a.rows or (10000 if a.quick else 0)
    steps = 6 if a.quick else 12
    tmp = os.path.join(a.out, "runs")
    os.makedirs(tmp, exist_ok=True)
    results = {"ba": [], "model": {}, "mac_vs_backprop": {}}
    prec_rows, time_rows = [], []
    for L in (8, 16):
        for P in ranks:
            sec = {"job": {"algorithm": "parmac-ba", "seed": 0},
                   "data": {"train": a.data, "test": a.data, "max_rows": rows},
                   "model": {"bits": L, "init": "pca"},
                   "solver": {"mu_steps": steps, "epochs": 2, "queries": 500, "K": 50,
                              "mu0": 0.02},
                   "checkpoint": {"every": 0}}
            dt, s, m = _run(tmp, f"ba-L{L}", P, sec)
            it = s["iterations"]
            last = m[-1]
            per = {k: last.get(f"t_{k}", 0.0) / it for k in ("wstep_compute", "ring_comm",
                                                              "zstep")}
            t_iter = sum(x["t_wstep"] for x in m) / it + per["zstep"]
            r = {"L": L, "P": P, "iterations": it, "wall": dt, "t_iter": t_iter, **per,
                 "precision": s.get("best_precision"), "tpca": s.get("precision_tpca"),
                 "itq": s.get("precision_itq"), "stop": s["stop_reason"],
                 "N": None, "hops": s["ring_hops"]}
            results["ba"].append(r)
    base = {r["L"]: r for r in results["ba"] if r["P"] == ranks[0]}
    for r in results["ba"]:
        b = base[r["L"]]
        r["speedup"] = b["t_iter"] * ranks[0] / r["t_iter"] / 1.0 if r["t_iter"] else 0.0
        prec_rows.append([r["L"], r["P"], r["precision"], r["tpca"], r["itq"], r["iterations"],
                          r["stop"]])
        time_rows.append([r["L"], r["P"], r["t_iter"], r["wstep_compute"], r["ring_comm"],
                          r["zstep"], b["t_iter"] / r["t_iter"]])
    # speed-up model from the measured costs (L = 16, first and last P)
    N = rows or 60000
    D, e = 784, 2
    m16 = [r for r in results["ba"] if r["L"] == 16]
    r1, rP = m16[0], m16[-1]
    M = 16 + D
    t_w = r1["wstep_compute"] * r1["P"] / (e * M * N)
    t_z = r1["zstep"] * r1["P"] / N
    hops = max(1, e * rP["P"] - 1) if rP["P"] > 1 else 1
    t_c = rP["ring_comm"] / ((hops + 1) * M / rP["P"]) if rP["P"] > 1 else 0.0

    def T(P, n):
        return e * (M * n / P * t_w + M * t_c) + M * t_c + n / P * t_z
    proj = [[P, n, T(P, n), T(1, n) / T(P, n)] for n in (N, 10 ** 8)
            for P in (1, 2, 16, 128)]
    results["model"] = {"t_w": t_w, "t_z": t_z, "t_c": t_c, "M": M, "e": e, "N": N,
                        "projection": proj}
    # mac vs backprop on digits
    curves = {}
    for alg, solver in (("mac", {"mu_steps": 10 if a.quick else 20, "mu0": 0.1}),
                        ("backprop", {"epochs": 40 if a.quick else 100})):
        sec = {"job": {"algorithm": alg, "seed": 0},
               "data": {"train": a.digits, "test": a.digits},
               "model": {"hidden": [32, 8, 32]}, "solver": solver,
               "checkpoint": {"every": 0}}
        dt, s, m = _run(tmp, alg, 1, sec)
        curves[alg] = [(x["time"], x["nested_error"], x.get("test_nested_error")) for x in m]
    results["mac_vs_backprop"] = curves
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for alg, c in curves.items():
            ax[0].plot([x[0] for x in c], [x[1] for x in c], label=alg)
        ax[0].set_xlabel("wall time (s)")
        ax[0].set_ylabel("nested error (train, per point)")
        ax[0].legend()
        for L in (8, 16):
            rr = [r for r in results["ba"] if r["L"] == L]
            ax[1].plot([r["P"] for r in rr], [base[L]["t_iter"] / r["t_iter"] for r in rr],
                       "o-", label=f"L={L} measured")
        ax[1].plot([1, 2, 16, 128], [T(1, 10 ** 8) / T(P, 10 ** 8) for P in (1, 2, 16, 128)],
                   "--", label="model, N=1e8")
        ax[1].set_xscale("log", base=2)
        ax[1].set_yscale("log", base=2)
        ax[1].set_xlabel("P")
        ax[1].set_ylabel("speed-up per iteration")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "parmac.png"), dpi=80)
    except Exception as exc:  # plotting is optional
        print(f"bench parmac: no plot ({exc})")
    load = os.getloadavg()
    mac_last = curves["mac"][-1]
    bp_last = curves["backprop"][-1]
    sections = [
        f"Load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"(shared machine: timings are noisy). MNIST rows: {N}; μ steps ≤ {steps}.",
        "## Retrieval precision at K = 50 (500 test queries vs the training set)",
        common.table(["L", "P", "BA (ParMAC)", "tPCA", "ITQ", "iterations", "stop"],
                     prec_rows),
        "## Time per MAC iteration (s) and strong scaling",
        common.table(["L", "P", "t/iter", "W-step compute", "ring comm", "Z-step",
                      "speed-up"], time_rows),
        "## Speed-up model T(P) = e·(M·N/P·t_w + M·t_c) + M·t_c + N/P·t_z",
        f"Fitted (L = 16, M = {M}, e = {e}): t_w = {t_w:.3g} s per point per submodel, "
        f"t_z = {t_z:.3g} s per point, t_c = {t_c:.3g} s per submodel hop.",
        common.table(["P", "N", "T(P) s/iter", "S(P)"], proj),
        "## MAC vs backprop (digits, 64-32-8-32-64 sigmoidal autoencoder, P = 1)",
        common.table(["method", "steps", "wall (s)", "train nested error", "test nested error"],
                     [["mac", len(curves["mac"]), mac_last[0], mac_last[1], mac_last[2]],
                      ["backprop", len(curves["backprop"]), bp_last[0], bp_last[1],
                       bp_last[2]]]),
        "![plots](parmac.png)",
    ]
    path = common.write_report(a.out, "ParMAC / MAC benchmark", sections, results)
    print(open(path).read())
    return 0
