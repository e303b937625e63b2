"""Autoencoder reconstruction quality against calibration baselines (mean image, PCA).

Runs each algorithm (default sae-greedy) on the same data with its defaults for pre-training
and end-to-end reconstruction fine-tuning of the unrolled stack, and reports the unrolled
test error after pre-training and after fine-tuning next to the baselines every autoencoder
run computes on the same rows: the mean image, PCA with as many components as the code
(fitted on the training rows), and the floor (entropy of the targets, cross-entropy only).
"""
import argparse
import os
import statistics

from ..algorithms import registry
from ..metrics import read
from .common import job_file, mpirun, table, write_report


def _job(a, out, algorithm, seed, layers):
    data = os.path.abspath(a.data)
    solver = {"epochs": a.epochs, "lr": a.lr, "recon_finetune_epochs": a.recon_epochs,
              "eval_rows": a.eval_rows, "eval_every": a.eval_every}
    if a.momentum is not None:
        solver["momentum"] = a.momentum
    return job_file(out, f"{algorithm}-s{seed}", {
        "job": {"algorithm": algorithm, "seed": seed},
        # --eval-on train: no test set, so every error and baseline is on training rows
        "data": dict({"train": data, "max_rows": a.rows},
                     **({"test": data} if a.eval_on == "test" else {})),
        "model": {"layers": layers},
        "solver": solver,
        "checkpoint": {"every": 0}})


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench ae-recon", description=__doc__)
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--out", default="bench-out/ae-recon")
    ap.add_argument("--algorithms", default="sae-greedy")
    ap.add_argument("--layers", default="1000,500,250,30")
    ap.add_argument("--epochs", type=int, default=10, help="pre-training epochs per layer")
    ap.add_argument("--lr", type=float, default=0.02, help="pre-training learning rate")
    ap.add_argument("--momentum", type=float, default=None,
                    help="pre-training momentum (default: the algorithm's default)")
    ap.add_argument("--eval-on", choices=["test", "train"], default="test",
                    help="rows every error and baseline is measured on: the test set, or the "
                    "training rows (to choose a setting without looking at the test set)")
    ap.add_argument("--recon-epochs", type=int, default=20)
    ap.add_argument("--rows", type=int, default=0, help="training rows (0 = all)")
    ap.add_argument("--eval-rows", type=int, default=0, help="test rows (0 = all)")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--quick", action="store_true", help="5,000 training rows")
    a = ap.parse_args(argv)
    if a.quick:
        a.rows = a.rows or 5000
    layers = [int(x) for x in a.layers.split(",")]
    os.makedirs(a.out, exist_ok=True)
    rows, results = [], {}
    for alg in a.algorithms.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            d = os.path.join(a.out, f"{alg}-s{seed}")
            wall, rc = mpirun(a.ranks, _job(a, a.out, alg, seed, layers), d)
            if rc:
                return rc
            recs = read(d)
            end = next(r for r in recs if "recon_pretrain" in r)
            curve = [(r["time"], r["recon"]) for r in recs
                     if "recon" in r and r.get("phase") == "recon-finetune"]
            res = {k: end[k] for k in ("recon_pretrain", "baseline_mean", "baseline_pca",
                                        "baseline_pca_k", "baseline_floor") if k in end}
            res.update(recon_final=recs[-1]["recon_final"], time_pretrain=end["time"],
                       time=recs[-1]["time"], wall=wall, curve=curve)
            results[f"{alg} seed {seed}"] = res
            rows.append([alg, seed, res["recon_pretrain"], res["recon_final"],
                         res["baseline_mean"], res.get("baseline_pca", "n/a"),
                         res.get("baseline_floor", "n/a"), res["time_pretrain"], res["time"]])
    k = layers[-1]
    algs = a.algorithms.split(",")
    mom = a.momentum if a.momentum is not None else \
        "/".join(sorted({str(registry()[x].SOLVER_SCHEMA["momentum"].default) for x in algs}))
    where = "training rows (no test set)" if a.eval_on == "train" else "test rows"
    secs = [
        f"Data {a.data}: first {a.rows or 'all'} training rows; errors = mean per-row "
        f"reconstruction cross-entropy on the first {a.eval_rows or 'all'} {where}. Hidden "
        f"layers {'-'.join(map(str, layers))} (sigmoid), {a.ranks} ranks × 1 thread, pre-training "
        f"E = {a.epochs} epochs per layer at lr {a.lr} (momentum {mom}, batch 100), then "
        + (f"{a.recon_epochs} epochs of end-to-end reconstruction fine-tuning of the unrolled "
           "stack (the defaults: Adam, lr 0.001, clean input)" if a.recon_epochs else
           "no reconstruction fine-tuning") + ". Baselines on the same rows: mean "
        f"image, PCA-{k} (fitted on the training rows), floor = entropy of the targets.",
        table(["algorithm", "seed", "after pre-training", "after fine-tuning", "mean image",
               f"PCA-{k}", "floor", "pre-training s", "total s"], rows),
    ]
    summary = []
    for alg in algs:
        runs = [r for key, r in results.items() if key.startswith(f"{alg} seed ")]
        cells = [_spread([r[c] for r in runs]) for c in ("recon_pretrain", "recon_final",
                                                          "baseline_mean")]
        beat = sum(r["recon_pretrain"] < r["baseline_mean"] for r in runs)
        summary.append([alg, len(runs)] + cells + [f"{beat} of {len(runs)}"])
        results[f"{alg} summary"] = {"pretrain_beats_mean_image": beat, "seeds": len(runs)}
    secs.append(table(["algorithm", "seeds", "after pre-training", "after fine-tuning",
                       "mean image", "pre-training beats the mean image"], summary))
    secs.append("Cells of the summary: mean ± sample standard deviation over the seeds "
                "[min – max].")
    try:
        secs.append(f"Load average at the end: {os.getloadavg()}")
    except OSError:
        pass
    print(write_report(a.out, "Autoencoder reconstruction vs mean image and PCA", secs,
                       {"runs": results, "args": vars(a)}))
    print(secs[1])
    print(secs[2])
    return 0


def _spread(v):
    """mean ± sample standard deviation [min – max] of a few seeds' figures."""
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.4g} ± {sd:.2g} [{min(v):.4g} – {max(v):.4g}]"
