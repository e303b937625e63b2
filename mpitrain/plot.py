"""`mpitrain plot`: metrics of one or several runs against time and against communication
rounds, overlaid, to one PNG (matplotlib, the `plot` extra)."""
import os

from .errors import InputMissing, UsageError
from .metrics import read


def plot_runs(runs, output, y="objective", fstar=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'mpitrain[plot]'")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        if not os.path.exists(os.path.join(run, "metrics.jsonl")):
            raise InputMissing(f"{run}: no metrics.jsonl (not a run directory?)")
        recs = [r for r in read(run) if isinstance(r.get(y), (int, float))]
        if not recs:
            raise UsageError(f"{run}: metric {y!r} not recorded")
        vals = [r[y] - fstar if fstar is not None else r[y] for r in recs]
        if fstar is not None:
            vals = [max(v, 1e-16) for v in vals]
        label = os.path.basename(os.path.normpath(run))
        axes[0].plot([r["time"] for r in recs], vals, label=label)
        axes[1].plot([r.get("comm_calls", r["step"]) for r in recs], vals, label=label)
    ylabel = f"{y} − F*" if fstar is not None else y
    for ax, xl in zip(axes, ("wall time (s)", "communication calls (rank 0)")):
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        if fstar is not None:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
