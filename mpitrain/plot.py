"""`mpitrain plot`: a metric of one or several runs against wall time and against
communication, overlaid, to one PNG (matplotlib, the `plot` extra).

The default quantity depends on the model family (final.h5's manifest, or the algorithm of
the run's job.toml while it runs):
    linear               objective; on a log scale as objective − F* when F* is known: given
                         with --gap, or the best certified lower bound the run recorded
                         (max over records of objective − certified_gap, or `lower_bound`)
    autoencoder          recon (unrolled reconstruction error), else the training loss
    binary-autoencoder   precision (retrieval precision at K), else nested_error
    nested               nested_error
Lines of metrics.jsonl that are not JSON objects (a damaged or interleaved file) are skipped
and counted; the notes returned say so.
"""
import math
import os

from .errors import InputMissing, UsageError, UserError
from .metrics import read

DEFAULT_Y = {"linear": ("objective",), "autoencoder": ("recon", "loss"),
             "binary-autoencoder": ("precision", "nested_error"),
             "nested": ("nested_error", "objective")}


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run_family(run):
    """(family, algorithm) of a run directory, from final.h5 or job.toml (None if unknown)."""
    final = os.path.join(run, "final.h5")
    if os.path.exists(final):
        try:
            from .model_file import manifest
            m = manifest(final)
            if m.get("family"):
                return m["family"], m.get("algorithm")
        except UserError:
            pass
    try:
        from .algorithms import registry
        from .config import read_toml
        alg = read_toml(os.path.join(run, "job.toml")).get("job", {}).get("algorithm")
        return getattr(registry().get(alg), "FAMILY", None), alg
    except (UserError, OSError):
        return None, None


def certified_lower(recs):
    """The best certified lower bound on F* the records carry (None if none)."""
    lows = [r["lower_bound"] for r in recs if _number(r.get("lower_bound"))]
    lows += [r["objective"] - r["certified_gap"] for r in recs
             if _number(r.get("objective")) and _number(r.get("certified_gap"))]
    return max(lows) if lows else None


def plot_runs(runs, output, y=None, fstar=None, raw=False):
    """Plot; returns (output path, notes: lines for the user)."""
    notes, data = [], []
    for run in runs:
        if not os.path.exists(os.path.join(run, "metrics.jsonl")):
            raise InputMissing(f"{run}: no metrics.jsonl (not a run directory?)")
        recs = read(run)
        if recs.skipped:
            notes.append(f"{run}: skipped {recs.skipped} damaged line(s) of metrics.jsonl")
        family, alg = run_family(run)
        data.append((run, recs, family, alg))
    families = {f for _, _, f, _ in data}
    keys = sorted({k for _, recs, _, _ in data for r in recs for k, v in r.items()
                   if _number(v)})
    if y is None:
        family = data[0][2] if len(families) == 1 else None
        choices = DEFAULT_Y.get(family, ("objective", "loss"))
        y = next((c for c in choices if all(any(_number(r.get(c)) for r in recs)
                                           for _, recs, _, _ in data)), None)
        if y is None:
            raise UsageError(f"no common default metric for these runs (families "
                             f"{sorted(str(f) for f in families)}); choose one with --y: "
                             + ", ".join(keys))
    missing = [run for run, recs, _, _ in data if not any(_number(r.get(y)) for r in recs)]
    if missing:
        raise UsageError(f"{missing[0]}: metric {y!r} not recorded; recorded: "
                         + ", ".join(keys))
    gap_src = None
    if not raw and fstar is not None:
        gap_src = "given"
    elif not raw and y == "objective" and families == {"linear"}:
        lows = [certified_lower(recs) for _, recs, _, _ in data]
        if all(v is not None for v in lows):
            fstar, gap_src = max(lows), "certified lower bound"
    if gap_src:
        notes.append(f"F* = {fstar:.12g} ({gap_src})")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'mpitrain[plot]'")
    # communication axis: d-vector Allreduces when every run counts them (linear methods:
    # scalar line-search Allreduces are not rounds), else all collectives of rank 0
    comm_key = "dvec_allreduces" if all(all("dvec_allreduces" in r for r in recs)
                                        for _, recs, _, _ in data) else "comm_calls"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for run, recs, _, alg in data:
        recs = [r for r in recs if _number(r.get(y))]
        vals = [r[y] - fstar for r in recs] if gap_src else [r[y] for r in recs]
        if gap_src:
            vals = [max(v, 1e-16) for v in vals]
        label = f"{os.path.basename(os.path.normpath(run))} ({alg})" if alg else \
            os.path.basename(os.path.normpath(run))
        axes[0].plot([r.get("time", 0.0) for r in recs], vals, label=label)
        axes[1].plot([r.get(comm_key, r.get("step", 0)) for r in recs], vals, label=label)
    ylabel = f"{y} − F*" if gap_src else y
    comm_label = ("d-vector Allreduces" if comm_key == "dvec_allreduces"
                  else "communication calls (rank 0)")
    for ax, xl in zip(axes, ("wall time (s)", comm_label)):
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        if gap_src:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    title = ylabel + (f"   (F* = {fstar:.10g}, {gap_src})" if gap_src else "")
    notes.append(f"plotted {ylabel} against wall time and {comm_label}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output, notes
