"""Stacked vs gradual DAE on MNIST across training-set sizes: test reconstruction and error.

For each training-set size and seed, dae-stacked and dae-gradual (direct decoder, as printed)
run with the same network, noise, learning rate and budget: U weight updates (global batches)
per stage, then both fine-tuned the same way: R epochs of end-to-end reconstruction
fine-tuning of their deep DAE (stacked: the unrolled enc₁..enc_K, dec_K..dec₁; gradual:
enc₁..enc_K then its decoder to x), then at most the same number of softmax fine-tuning
updates (all layers); both fine-tuning phases stop early on a validation split of the
training rows (never the test set). Reported: test reconstruction cross-entropy after
pre-training and after the reconstruction fine-tuning, and the test classification error
after fine-tuning, mean ± 95 % confidence half-width over the seeds, on the 10,000 test rows.
"""
import argparse
import math
import os
import statistics

from ..algorithms import registry
from ..metrics import read
from .common import job_file, mpirun, table, write_report


def _job(path, out, name, size, seed, layers, updates, ft_updates, batch, lr, momentum,
         noise, recon_epochs, val_fraction, patience):
    ft_epochs = max(1, math.ceil(ft_updates * batch / size))
    data = os.path.abspath(path)
    return job_file(out, f"{name}-{size}-{seed}", {
        "job": {"algorithm": name, "seed": seed},
        "data": {"train": data, "test": data, "max_rows": size},
        "model": {"layers": layers, "noise": "mask", "noise_level": noise},
        "solver": {"epochs": 1, "updates": updates, "batch": batch, "lr": lr,
                   **({} if momentum is None else {"momentum": momentum}),
                   "recon_finetune_epochs": recon_epochs, "finetune_epochs": ft_epochs,
                   "finetune_lr": 0.1, "eval_every": 0, "val_fraction": val_fraction,
                   "patience": patience},
        "checkpoint": {"every": 0}})


def _ms(v):
    """(mean, half-width of the 95 % confidence interval of the mean: Student t)."""
    if len(v) < 2:
        return (statistics.mean(v), 0.0)
    from scipy.stats import t
    return (statistics.mean(v), t.ppf(0.975, len(v) - 1) * statistics.stdev(v) / len(v) ** 0.5)


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench gradual", description=__doc__)
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--out", default="bench-out/gradual")
    ap.add_argument("--sizes", default=None,
                    help="training-set sizes (default 1000,5000,10000,20000,60000; "
                    "--quick: 1000,5000,10000)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--val-fraction", type=float, default=0.1,
                    help="validation split of the training rows for early stopping of both "
                    "fine-tuning phases (both methods)")
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--layers", default="1000,1000,1000")
    ap.add_argument("--updates", type=int, default=3000, help="weight updates per stage")
    ap.add_argument("--ft-updates", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=None,
                    help="pre-training momentum of both methods (default: the algorithms' "
                    "default)")
    ap.add_argument("--noise", type=float, default=0.25)
    ap.add_argument("--recon-epochs", type=int, default=5,
                    help="reconstruction fine-tuning epochs, both methods (0 = off)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="3x256 units; 150 updates per stage, 300 fine-tuning; sizes 1k,5k,10k "
                    "unless --sizes is given")
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes = a.sizes or "1000,5000,10000"
        a.layers, a.updates, a.ft_updates = "256,256,256", 150, 300
    a.sizes = a.sizes or "1000,5000,10000,20000,60000"
    sizes = [int(s) for s in a.sizes.split(",")]
    layers = [int(x) for x in a.layers.split(",")]
    os.makedirs(a.out, exist_ok=True)
    res = {}
    for size in sizes:
        for name in ("dae-stacked", "dae-gradual"):
            for seed in range(a.seeds):
                job = _job(a.data, a.out, name, size, seed, layers, a.updates, a.ft_updates,
                           a.batch, a.lr, a.momentum, a.noise, a.recon_epochs, a.val_fraction,
                           a.patience)
                d = os.path.join(a.out, f"{name}-{size}-{seed}")
                wall, rc = mpirun(a.ranks, job, d)
                if rc:
                    return rc
                recs = read(d)
                recon = [r["recon_final"] for r in recs if "recon_final" in r][-1]
                pre = [r["recon_pretrain"] for r in recs if "recon_pretrain" in r][-1]
                err = [r["test_error"] for r in recs if "test_error" in r][-1]
                res.setdefault(f"{name}/{size}", []).append(
                    {"seed": seed, "recon": recon, "recon_pretrain": pre, "test_error": err,
                     "wall": wall})
                print(f"{name} n={size} seed={seed}: recon {recon:.3f} test error {err:.4f} "
                      f"({wall:.1f}s)", flush=True)
    rows = []
    for size in sizes:
        st, gr = res[f"dae-stacked/{size}"], res[f"dae-gradual/{size}"]
        rs, rg = _ms([r["recon"] for r in st]), _ms([r["recon"] for r in gr])
        ps, pg = _ms([r["recon_pretrain"] for r in st]), _ms([r["recon_pretrain"] for r in gr])
        es, eg = _ms([r["test_error"] for r in st]), _ms([r["test_error"] for r in gr])
        wins = sum(g["test_error"] < s["test_error"] for g, s in zip(gr, st))
        rows.append([size, f"{ps[0]:.2f} ± {ps[1]:.2f}", f"{pg[0]:.2f} ± {pg[1]:.2f}",
                     f"{rs[0]:.2f} ± {rs[1]:.2f}", f"{rg[0]:.2f} ± {rg[1]:.2f}",
                     f"{100 * es[0]:.2f} ± {100 * es[1]:.2f}",
                     f"{100 * eg[0]:.2f} ± {100 * eg[1]:.2f}", f"{wins}/{len(gr)}"])
    mom = a.momentum if a.momentum is not None else \
        registry()["dae-stacked"].SOLVER_SCHEMA["momentum"].default
    secs = [f"MNIST, 784-{'-'.join(map(str, layers))} sigmoid, masking noise "
            f"{a.noise}, batch {a.batch}, lr {a.lr}, momentum {mom}, {a.updates} "
            f"updates per stage, then {a.recon_epochs} epochs of reconstruction fine-tuning "
            f"(Adam, lr 0.001) and at most {a.ft_updates} softmax fine-tuning updates (lr 0.1, "
            "momentum 0.9), both "
            f"phases stopped early on a {a.val_fraction} validation split of the training rows "
            f"(patience {a.patience}); {a.seeds} seeds, mean ± 95 % confidence half-width; "
            f"{a.ranks} ranks data-parallel; test = the 10,000 MNIST test rows. Load "
            f"average at the end: {os.getloadavg()}.",
            table(["train rows", "pre-trained recon stacked", "pre-trained recon gradual",
                   "fine-tuned recon stacked", "fine-tuned recon gradual", "test err % stacked",
                   "test err % gradual", "gradual better (seeds)"], rows)]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for name in ("dae-stacked", "dae-gradual"):
            for ax, key in zip(axes, ("recon", "test_error")):
                m = [_ms([r[key] for r in res[f"{name}/{s}"]]) for s in sizes]
                ax.errorbar(sizes, [x[0] for x in m], yerr=[x[1] for x in m], marker="o",
                            capsize=3, label=name)
                ax.set_xscale("log")
                ax.set_xlabel("training rows")
                ax.set_ylabel({"recon": "test reconstruction xent",
                               "test_error": "test error after fine-tuning"}[key])
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "error_vs_size.png"), dpi=100)
        secs.append("![error vs training-set size](error_vs_size.png)")
    except ImportError:
        pass
    print(write_report(a.out, "Stacked vs gradual denoising autoencoders", secs,
                       {"runs": res, "sizes": sizes, "layers": layers}))
    print(secs[1])
    return 0
