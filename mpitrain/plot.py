"""`mpitrain plot`: metrics of one or several runs against time and against communication
rounds, overlaid, to one PNG (matplotlib, the `plot` extra)."""
import os

from .errors import InputMissing, UsageError
from .metrics import read


def plot_runs(runs, output, y="objective", fstar=None, raw=False):
    """Plot metric `y` of each run against time and against communication calls.

    For the objective, the default is the gap to `fstar` on a log scale, with fstar = the
    lowest objective any of the runs reached when not given (`raw` plots the values)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'mpitrain[plot]'")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if y == "objective" and fstar is None and not raw:
        seen = [r[y] for run in runs if os.path.exists(os.path.join(run, "metrics.jsonl"))
                for r in read(run) if isinstance(r.get(y), (int, float))]
        fstar = min(seen) if seen else None
    # communication axis: d-vector Allreduces when every run counts them (linear methods:
    # scalar line-search Allreduces are not rounds), else all collectives of rank 0
    comm_key = "dvec_allreduces" if all(
        os.path.exists(os.path.join(run, "metrics.jsonl"))
        and all("dvec_allreduces" in r for r in read(run)) for run in runs) else "comm_calls"
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
        axes[1].plot([r.get(comm_key, r["step"]) for r in recs], vals, label=label)
    ylabel = f"{y} − F*" if fstar is not None else y
    comm_label = ("d-vector Allreduces" if comm_key == "dvec_allreduces"
                  else "communication calls (rank 0)")
    for ax, xl in zip(axes, ("wall time (s)", comm_label)):
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
