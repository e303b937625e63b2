"""SLP vs greedy layer-wise pre-training: time to greedy's unrolled reconstruction error.

Protocol (ALGORITHMS.md §3, issue 14 part 3), for each seed:
  1. sae-greedy at 1 rank (the paper's setting) and at 2 ranks (data-parallel, equal cores
     with SLP), E epochs per layer;
  2. the target: greedy P=1's final unrolled validation error g₁ times (1 + tol); greedy P=2 must
     agree with g₁ within tol (a learning rate at which the result does not hang on float32
     summation order), the report says whether it does;
  3. slp at 2 ranks with target_error = the target (it stops there, or after E epochs per
     layer), once per [solver] codes variant (--codes: regenerate, stream, split).
The target and the errors are measured on a VALIDATION split of the training rows, never on
test rows: the benchmark writes `split.h5` whose train group is the first --rows training
rows and whose test group (what the runs evaluate) is the next --eval-rows training rows.
Every run evaluates the unrolled error of the layers so far after every epoch (greedy) or
round (SLP) on the same validation rows, and the times exclude that evaluation for both (rank 0's
`t_eval` is subtracted: evaluation is off the critical path of both methods). The time to
target of a run is its first record with all K layers whose error is ≤ target. Reconstruction
and softmax fine-tuning are off. One thread per rank. Per-rank CPU seconds (process time:
busy-waiting counts, a passive wait does not) and SLP's per-rank phases (train, regen,
exchange = publishing the weights and the codes, wait = passive wait for the slowest rank,
eval) come from
the algorithms' `rank_cpu` / `rank_t_*` records.
"""
import argparse
import os
import statistics

import h5py
import numpy as np

from ..algorithms import registry
from ..algorithms.ae_slp import layout, pipeline_ceiling, stream_costs, stream_share
from ..metrics import read
from .common import job_file, mpirun, table, write_report

PHASES = ("train", "allreduce", "regen", "exchange", "wait", "eval")


def validation_file(src, out, rows, val):
    """`out`: train = the first `rows` training rows of `src` (all but the last `val` when
    rows = 0), test = the `val` training rows after them: the runs evaluate on validation
    rows of the training data and never see a test row. Returns (path, rows)."""
    with h5py.File(src, "r") as f:
        X, y = f["train/X"], f["train/y"]
        n = X.shape[0]
        rows = min(rows or n - val, n - val)
        if rows <= 0:
            raise SystemExit(f"bench slp: {src} has {n} training rows, too few for "
                             f"{val} validation rows")
        with h5py.File(out, "w") as g:
            for grp, lo, hi in (("train", 0, rows), ("test", rows, rows + val)):
                g.create_dataset(f"{grp}/X", data=np.asarray(X[lo:hi], np.float32))
                g.create_dataset(f"{grp}/y", data=np.asarray(y[lo:hi]))
                g[grp].attrs["format"] = "dense"
            g.attrs["description"] = (f"bench slp: training rows [0, {rows}) of {src}; "
                                      f"'test' = validation training rows [{rows}, "
                                      f"{rows + val})")
    return out, rows


def _job(a, out, algorithm, seed, layers, tag=None, **extra):
    data = os.path.abspath(a.split)
    return job_file(out, f"{algorithm}-s{seed}" + (f"-{tag}" if tag else ""), {
        "job": {"algorithm": algorithm, "seed": seed},
        "data": {"train": data, "test": data},
        "model": {"layers": layers},
        "solver": dict({"epochs": a.epochs, "batch": a.batch, "lr": a.lr,
                        "eval_rows": 0, "eval_every": 1,
                        "recon_finetune_epochs": 0, "finetune_epochs": 0}, **extra),
        "checkpoint": {"every": 0}})


def time_to(recs, K, target):
    """(seconds without evaluation, record) of the first record with the K-layer unrolled
    error ≤ target, or (None, last K-layer record)."""
    last = None
    for r in recs:
        if r.get("recon_layers") == K and "recon" in r:
            last = r
            if r["recon"] <= target:
                return r["time"] - r.get("t_eval", 0.0), r
    return None, last


def steady_rounds(recs, K):
    """Per-rank seconds of work (train + regen) of each round in which every layer had
    started (round ≥ K), from the differences of the cumulative per-rank phase times:
    [[rank 0, rank 1, ...] per round]."""
    recs = [r for r in recs if "rank_t_train" in r and "round" in r]
    out = []
    for a, b in zip(recs, recs[1:]):
        if b["round"] > K:
            # each difference on its own: (tb - ta) + (gb - ga) is never negative, where
            # tb + gb - ta - ga could round below 0 when a round's times did not change
            out.append([(tb - ta) + (gb - ga) for ta, ga, tb, gb in zip(
                a["rank_t_train"], a["rank_t_regen"], b["rank_t_train"], b["rank_t_regen"])])
    return out


def _ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.3g}"
    return f"{statistics.mean(xs):.3g} ± {statistics.stdev(xs):.2g}"


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench slp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--out", default="bench-out/slp")
    ap.add_argument("--layers", default="1000,500,250,30")
    ap.add_argument("--epochs", type=int, default=10, help="E, epochs per layer (≥ 10)")
    ap.add_argument("--rows", type=int, default=0, help="training rows (0 = all)")
    ap.add_argument("--eval-rows", type=int, default=2000,
                    help="validation rows (training rows after the --rows ones)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--codes", default="split,regenerate,stream,split/float16",
                    help="SLP [solver] codes variants to run, CODES or CODES/CODE_DTYPE "
                    "(the first one is the headline)")
    ap.add_argument("--tol", type=float, default=0.01,
                    help="relative tolerance of the target (default 1%%)")
    ap.add_argument("--quick", action="store_true",
                    help="5,000 training rows, 1,000 validation rows (E and seeds unchanged)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rows, a.eval_rows = a.rows or 5000, min(a.eval_rows, 1000)
    layers = [int(x) for x in a.layers.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    codes = a.codes.split(",")
    K = len(layers)
    os.makedirs(a.out, exist_ok=True)
    a.split, a.rows = validation_file(a.data, os.path.join(a.out, "split.h5"), a.rows,
                                      a.eval_rows)
    slps = [f"slp P=2 {c}" for c in codes]
    names = ("greedy P=1", "greedy P=2", *slps)
    runs = {}
    for seed in seeds:
        res = runs[seed] = {}
        gjob = _job(a, a.out, "sae-greedy", seed, layers)
        for p in (1, 2):
            d = os.path.join(a.out, f"s{seed}-greedy-P{p}")
            wall, rc = mpirun(p, gjob, d)
            if rc:
                return rc
            recs = read(d)
            res[f"greedy P={p}"] = {"dir": d, "wall": wall, "recs": recs,
                                    "final": [r for r in recs if "recon" in r][-1]["recon"]}
        g1 = res["greedy P=1"]["final"]
        target = g1 * (1 + a.tol)
        res["target"] = target
        res["agree"] = abs(res["greedy P=2"]["final"] - g1) / g1
        for c, name in zip(codes, slps):
            tag = c.replace("/", "-")
            mode, _, dtype = c.partition("/")
            d = os.path.join(a.out, f"s{seed}-slp-P2-{tag}")
            sjob = _job(a, a.out, "slp", seed, layers, tag=tag, target_error=target,
                        codes=mode, code_dtype=dtype or "float32")
            wall, rc = mpirun(2, sjob, d)
            if rc:
                return rc
            recs = read(d)
            res[name] = {"dir": d, "wall": wall, "recs": recs,
                         "final": [r for r in recs if "recon" in r][-1]["recon"]}
        for name in slps:
            res[name]["steady"] = steady_rounds(res[name]["recs"], K)
        for name in names:
            r = res[name]
            t, rec = time_to(r["recs"], K, target)
            r["t"], r["rec"] = t, rec
            r["reached"] = t is not None
            r["cpu"] = rec.get("rank_cpu") if rec else None
            r.pop("recs")
    rows = []
    for seed in seeds:
        res = runs[seed]
        for name in names:
            r = res[name]
            rows.append([seed, name, r["final"], "yes" if r["reached"] else "no",
                         r["t"] if r["t"] is not None else "n/a", r["wall"],
                         " / ".join(f"{c:.1f}" for c in r["cpu"]) if r["cpu"] else "n/a"])

    def speedup(ref, name):
        return [runs[s][ref]["t"] / runs[s][name]["t"] for s in seeds
                if runs[s][name]["t"] and runs[s][ref]["t"]]
    cpu = {n: [sum(runs[s][n]["cpu"]) for s in seeds if runs[s][n]["cpu"]] for n in names}
    with h5py.File(a.split, "r") as fh:
        dims = [int(fh["train/X"].shape[1])] + layers
    lay = layout(dims, 2)
    # where SLP's time goes, per rank, at the record where it reached the target (or its
    # last evaluated record)
    prow, mrow = [], []
    for c, name in zip(codes, slps):
        share = {"regenerate": 0.0, "stream": 1.0,
                 "split": stream_share(dims, lay)}[c.partition("/")[0]]
        model = stream_costs(dims, lay, share=share)
        steady = [x for s in seeds for x in runs[s][name]["steady"]]
        if steady and len(lay) == 2:
            med = [statistics.median(x[i] for x in steady) for i in range(2)]
            mrow.append([c, share, len(steady), med[0], med[1], med[1] / med[0],
                         model[0] / 1e6, model[1] / 1e6, model[1] / model[0]])
        for seed in seeds:
            rec = runs[seed][name]["rec"]
            for rank in range(2 if rec else 0):
                gi = next(i for i, (f, n, _) in enumerate(lay) if f <= rank < f + n)
                prow.append([c, seed, rank, ",".join(map(str, lay[gi][2])),
                             rec["rank_cpu"][rank]]
                            + [rec[f"rank_t_{p}"][rank] for p in PHASES if p != "allreduce"]
                            + [model[gi] / 1e6])
    agree = [runs[s]["agree"] for s in seeds]
    base = next((runs[s][n]["rec"] for s in seeds for n in names
                 if runs[s][n]["rec"] and "baseline_mean" in runs[s][n]["rec"]), {})
    mom = registry()["sae-greedy"].SOLVER_SCHEMA["momentum"].default
    sp_lines = []
    for name in slps:
        sp1, sp2 = speedup("greedy P=1", name), speedup("greedy P=2", name)
        sp_lines.append(f"**{name} vs greedy at 1 rank: {_ms(sp1)}× faster; vs data-parallel "
                        f"greedy at 2 ranks (equal cores): {_ms(sp2)}×** (mean ± standard "
                        f"deviation over the seeds where it reached the target: {len(sp2)} "
                        f"of {len(seeds)})")
    secs = [
        f"Data {a.data}: training rows [0, {a.rows}), unrolled cross-entropy on the "
        f"{a.eval_rows} validation rows [{a.rows}, {a.rows + a.eval_rows}) of the training "
        f"set (no test row is read); stack {'-'.join(map(str, dims))}, sigmoid, "
        f"cross-entropy, batch {a.batch}, lr {a.lr}, momentum {mom} (the default), "
        f"E = {a.epochs} epochs per layer, SLP τ = 1, SLP codes variants {codes}, seeds "
        f"{seeds}, 1 thread per rank, reconstruction and softmax fine-tuning off for all. "
        f"Target per seed: greedy P=1's final unrolled validation error × (1 + {a.tol}). "
        "Times: seconds from the start of training to the first evaluation at or below the "
        "target, minus the evaluation seconds (evaluation off the critical path for both "
        "methods): the critical-path time; wall = the whole mpiexec, start-up, data loading "
        "and evaluations included. CPU = per-rank process seconds at that point (rank 0 / "
        "rank 1).",
        table(["seed", "run", "final unrolled error", "reached target", "time to target s",
               "wall s", "CPU s per rank"], rows),
        "Calibration on the same validation rows: mean image "
        f"{base.get('baseline_mean', float('nan')):.4g}, PCA-{base.get('baseline_pca_k')} "
        f"{base.get('baseline_pca', float('nan')):.4g}, floor (entropy of the targets) "
        f"{base.get('baseline_floor', float('nan')):.4g}. "
        f"Greedy P=2 vs P=1 final error: relative difference {_ms(agree)} (tolerance "
        f"{a.tol}): {'within' if max(agree) <= a.tol else 'NOT within'} the tolerance for "
        "every seed.",
        "; ".join(sp_lines) + ". The paper reports 1.26×. Pipeline ceiling with one rank "
        f"per layer (Σtₖ/max tₖ·E/(E+K−1)): {pipeline_ceiling(dims, a.epochs):.2f}. Total "
        "CPU seconds to target: " + "; ".join(f"{n} {_ms(v)}" for n, v in cpu.items()) + ".",
        "The cost model against the measured work per round once every layer has started "
        "(seconds of train + regen per rank, median over the seeds' rounds; model = "
        "multiply-adds per training row and round, millions; share = rows the layer-1 rank "
        "publishes):",
        table(["codes", "share", "rounds", "rank 0 s", "rank 1 s", "measured 1/0",
               "model rank 0", "model rank 1", "model 1/0"], mrow),
        "Where SLP's time goes, per rank, up to the round that reached the target (seconds; "
        "regen = regenerating inputs, or encoding the codes to publish; exchange = "
        "publishing: Bcast of the layers once every rank has arrived and the codes' "
        "transfer; wait = passive wait for the slowest rank; model = the cost model's "
        "multiply-adds per training row and round, millions):",
        table(["codes", "seed", "rank", "layers", "CPU", "train", "regen", "exchange",
               "wait", "eval", "model Mmac"], prow),
    ]
    try:
        secs.append(f"Load average at the end: {os.getloadavg()}")
    except OSError:
        pass
    results = {"runs": {str(s): {k: v for k, v in r.items()} for s, r in runs.items()},
               "speedup_vs_greedy_P1": {n: speedup("greedy P=1", n) for n in slps},
               "speedup_vs_greedy_P2": {n: speedup("greedy P=2", n) for n in slps},
               "seeds": seeds, "tol": a.tol, "agree": agree, "momentum": mom,
               "args": vars(a)}
    print(write_report(a.out, "SLP vs greedy layer-wise pre-training", secs, results))
    print("\n\n".join(secs[1:4]))
    return 0
