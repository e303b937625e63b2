"""DASVRDA vs prox-svrg, katyusha and scikit-learn SAGA on elastic-net logistic regression.

Objective gap vs passes and vs wall time on MNIST 2-vs-rest (dense, unit rows) and rt-polarity
(sparse, unit rows), for (l1, l2) in {(0, 1e-6), (1e-4, 1e-6), (1e-4, 0)}.

Gaps are certified, never "the best run": an independent reference solver (scipy L-BFGS-B on
the split w = u − v, u, v ≥ 0, run to machine precision) gives w_ref, and the lower bound
f_lower = max over w ∈ {w_ref, every run's final w} of f(w) − cert(w), with cert(w) the
smaller of dist(0, ∂f(w))²/(2·l2) (minimal-norm subgradient) and the Fenchel duality gap
(linear_family.duality_gap; the only bound when l2 = 0). Every reported gap is the relative
upper bound (f − f_lower)/f_lower ≥ (f − f*)/f*; the report states the certificate's width
(min f(w) − f_lower), below which gaps are not resolved. Our methods run as
`mpiexec -n P mpitrain run` (P = 1, 2, one thread per rank); SAGA is
LogisticRegression(solver="saga", C = 1/(n(l1+l2)), l1_ratio = l1/(l1+l2), no intercept) run
with max_iter = 1, 2, 4, ... epochs, each objective evaluated by us.

Steps: by default each method uses its own step rule (DASVRDA its practical c/L, c = [solver]
practical_c, with its default restarts, both recorded in results.json's "dasvrda_default";
Katyusha the theoretical step, ProxSVRG 1/L: its default 1/(4L) times 4). With `--eta-scales
1,4,16,64,256` every method is tuned by the same rule instead (_tune): P = 1 runs at each
multiplier of its default step on each job seed of `--tune-seeds` (default 1), the same stage
budget, judged on the training objective against the reference's certified f_lower: fewest MEAN
passes over those seeds to a certified `--stop-at` gap (default 1e-6), then the lowest final
objective; a multiplier that misses the gap on any tuning seed loses to every one that reaches
it on all; divergent scales lose. While the best scale is at an end of the grid, the grid grows
past that end by ×4 (at most EXTEND times), so no method is held to the grid's edge. With
`--refine` a second level follows: the winner's ×½ and ×2 run on the same tuning seeds, judged
by the same rule, and the best of all the multipliers tried is kept (the ×4 grid only locates
the best step within a factor 4); `--refine 2` adds a third level, the new winner's ×1/√2 and
×√2, judged alike (the ×2 level locates it within a factor 2 only, and passes to 1e-6 can change
by a tenth between steps √2 apart). results.json records the scales of every level under each
setting's "refined" and report.md's Tuning table lists them with the grid's. The P = 1 run of the kept
scale on the first tuning seed is the one reported, with a P = 2 run of it (the same seed).
Every run of ours stops at the certified `--stop-at` gap ([solver] target = f_lower·(1 + gap),
f_lower from the reference alone, which the final f_lower can only raise), so a stage budget
large enough to decide the comparison costs little where a method gets there. Passes are
counted the same way for our three methods (a full gradient = 1 pass, each sampled row 1/n);
SAGA's are sklearn's epochs.

`--seeds 4,5,6,7,8 --from RESULTS_JSON` evaluates a tuned run's comparison on held-out
sampling seeds (_seed_spread): each method at the multiplier that run kept, P = 1, every seed
stopping at the same certified gap against the same f_lower; report.md gives passes to it as
mean ± sample standard deviation per method and setting, and which method has the fewest on
average. Seeds the tuning ran on (its results' tune_seeds) are refused: model selection never
sees the evaluation sample.

MNIST: --mnist may be the 2-vs-rest file (`mpitrain data prepare mnist-2vr`) or the 10-class
file (labels 0-9), whose digit 2 is then +1 and the rest −1 ([data] positive = [2]) in the
runs and in the bench's own objective alike.

`--scaling` measures instead how DASVRDA scales with ranks: at each P of --ranks (default 1, 2),
the sparse exchange against the feature-parallel columns mode, on rt-polarity and the synthetic set of
jobs/dasvrda-synth.toml, with SAGA at the same settings (_scaling). There the certifying point is
a separate P = 1 run with 4× the stages, Newton-polished (the L-BFGS-B reference takes many
minutes at these sizes); the bound is as rigorous, only possibly wider (the report states it).
"""
import argparse
import json
import math
import os
import time
import warnings

import numpy as np

from . import common

SETTINGS = [(0.0, 1e-6), (1e-4, 1e-6), (1e-4, 0.0)]
METHODS = [("dasvrda", {}), ("prox-svrg", {"solver.eta_scale": 4.0}),
           ("katyusha", {})]
GAPS = (1e-4, 1e-6)
SYNTH_ARGS = ["--n", "60000", "--d", "262144", "--nnz", "50"]   # as jobs/dasvrda-synth.toml
EXTEND = 3     # --eta-scales: how many times the grid may grow past its best end (×4 each)
MNIST_POSITIVE = 2.0   # the digit that is +1 when --mnist has the 10 class labels


def _positive(path):
    """[data] positive for a dataset file: [2] (digit 2 vs rest) when its training labels
    have more than two values, else [] (already binary)."""
    import h5py
    with h5py.File(path, "r") as f:
        labels = np.unique(f["train"]["y"][()])
    return [MNIST_POSITIVE] if labels.size > 2 else []


def _load(path, max_rows, unit_rows=True, positive=()):
    import h5py
    import scipy.sparse as sp
    with h5py.File(path, "r") as f:
        g = f["train"]
        n = g["y"].shape[0] if not max_rows else min(max_rows, g["y"].shape[0])
        y = g["y"][:n].astype(np.float64)
        if positive:    # as [data] positive: these labels +1, all others −1
            y = np.where(np.isin(y, positive), 1.0, -1.0)
        if "X" in g:
            X = g["X"][:n].astype(np.float64)
            if unit_rows:
                X /= np.maximum(np.linalg.norm(X, axis=1), 1e-300)[:, None]
        else:
            ptr = g["indptr"][:n + 1]
            X = sp.csr_matrix((g["data"][:ptr[-1]], g["indices"][:ptr[-1]], ptr),
                              shape=(n, int(g.attrs["shape"][1])))
            if unit_rows:
                nr = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
                X = sp.csr_matrix(sp.diags(1.0 / np.maximum(nr, 1e-300)) @ X)
    return X, y


def _objective(X, y, w, l1, l2):
    m = X @ w
    return float(np.mean(np.logaddexp(0.0, -y * m)) + 0.5 * l2 * w @ w + l1 * np.abs(w).sum())


def _sums(X, y, w):
    """[Xᵀu, Σℓ] with u = ℓ'(y, Xw) (logistic): the (d+1)-vector of linear_family."""
    from ..models.losses import LOSSES
    L = LOSSES["logistic"]
    m = np.asarray(X @ w).ravel()
    u = L.deriv(y, m)
    return np.concatenate([np.asarray(X.T @ u).ravel(), [L.value(y, m).sum()]]), m


def _certificate(X, y, w, l1, l2):
    """(f(w), an upper bound on f(w) − f*) from linear_family's certificates."""
    from ..algorithms import linear_family as lf
    from ..models.losses import LOSSES
    n = X.shape[0]
    buf, m = _sums(X, y, w)
    s = lf.dual_scale(buf, n, l1, l2)
    conj = float(LOSSES["logistic"].conj(y, s * LOSSES["logistic"].deriv(y, m)).sum())
    dual = lf.duality_gap(buf, conj, s, w, n, l1, l2)
    g = buf[:-1] / n + l2 * w
    return _objective(X, y, w, l1, l2), lf.certified_gap(g, w, l1, l2, dual=max(dual, 0.0))


def _reference(X, y, l1, l2):
    """An independent optimum: L-BFGS-B on w = u − v (u, v ≥ 0), to machine precision."""
    from scipy.optimize import fmin_l_bfgs_b
    n, d = X.shape

    def fg(z):
        w = z[:d] - z[d:]
        buf, _ = _sums(X, y, w)
        gw = buf[:-1] / n + l2 * w
        f = buf[-1] / n + 0.5 * l2 * float(w @ w) + l1 * float(z.sum())
        return f, np.concatenate([gw + l1, -gw + l1])
    z = fmin_l_bfgs_b(fg, np.zeros(2 * d), bounds=[(0, None)] * (2 * d), factr=1.0,
                      pgtol=1e-14, maxiter=20000, m=20)[0]
    return _polish(X, y, z[:d] - z[d:], l1, l2)


def _polish(X, y, w, l1, l2, max_support=3000):
    """Newton steps on the support of w with its signs fixed (there f is smooth), so the
    gradient, and with it the dual point of the certificate, is exact to rounding. The step is
    the least-squares (minimum-norm) Newton step: at l2 = 0, columns of the support that are
    (nearly) collinear make the Hessian singular (as on rt-polarity's support at l1 = 1e-4,
    l2 = 0), f is flat along them, and a plain solve raised or flipped a sign, leaving the
    L-BFGS-B point and a looser certificate (commit 48794a8 has the figures). Skipped for supports
    wider than max_support; a step that would flip a sign or not decrease f is not taken."""
    S = np.flatnonzero(w)
    if not 0 < S.size <= max_support:
        return w
    n = X.shape[0]
    XS = X[:, S]
    XS = XS.toarray() if hasattr(XS, "toarray") else np.asarray(XS)
    sg = np.sign(w[S])
    f = _objective(X, y, w, l1, l2)
    for _ in range(30):
        m = XS @ w[S]
        sig = 1.0 / (1.0 + np.exp(y * m))            # σ(−y m)
        g = XS.T @ (-y * sig) / n + l2 * w[S] + l1 * sg
        H = (XS * (sig * (1 - sig))[:, None]).T @ XS / n + l2 * np.eye(S.size)
        step = np.linalg.lstsq(H, g, rcond=1e-12)[0]  # H singular where columns repeat
        wn = w.copy()
        wn[S] -= step
        if np.any(np.sign(wn[S]) != sg):
            break
        fn = _objective(X, y, wn, l1, l2)
        if not fn <= f:
            break
        w, f = wn, fn
        if np.linalg.norm(step) <= 1e-15 * max(np.linalg.norm(w), 1.0):
            break
    return w


def _final_w(run_dir):
    import h5py
    path = os.path.join(run_dir, "final.h5")
    if not os.path.exists(path):
        return None
    with h5py.File(path, "r") as f:
        return f["model/w"][()]


def _saga(X, y, l1, l2, max_epochs, stop_rel=0.0, flow=None):
    """Fresh fits with 1, 2, 4, ... epochs up to max_epochs (so SAGA's epochs and time to a gap
    are upper bounds at doubling granularity: the true count lies in (k/2, k]); with
    stop_rel > 0 the doubling stops once a fit's own certified bound is ≤ stop_rel·f, or with
    `flow` (a certified lower bound on f*) once f − flow ≤ stop_rel·flow (either way it is then
    below that gap for any f_lower the report certifies later)."""
    from sklearn.linear_model import LogisticRegression
    n = X.shape[0]
    C = 1.0 / (n * (l1 + l2))
    out = []
    ep = 1
    while ep <= max_epochs:
        clf = LogisticRegression(solver="saga", C=C, l1_ratio=l1 / (l1 + l2),
                                 fit_intercept=False, tol=1e-15, max_iter=ep,
                                 random_state=0)  # seeded: the same epochs every run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            clf.fit(X, y)
            dt = time.perf_counter() - t0
        out.append({"time": dt, "passes": float(np.max(clf.n_iter_)),
                    "objective": _objective(X, y, clf.coef_.ravel(), l1, l2),
                    "w": clf.coef_.ravel().copy()})
        if stop_rel and flow is not None:
            if out[-1]["objective"] - flow <= stop_rel * abs(flow):
                break
        elif stop_rel:
            f, bound = _certificate(X, y, out[-1]["w"], l1, l2)
            if bound <= stop_rel * abs(f):
                break
        ep *= 2
    return out


def _ours(job_dir, alg, data, max_rows, l1, l2, P, stages, sets, out, normalize="unit_rows",
          positive=(), target=0.0):
    """One `mpitrain run` at P ranks; its curve (time, passes, objective per stage), phase
    times, and the summary's stop reason and inner-step communication mode. `target` > 0
    stops the run once the objective is ≤ target ([solver] target)."""
    job = os.path.join(job_dir, "job.toml")
    with open(job, "w") as fh:
        fh.write(f'[job]\nalgorithm = "{alg}"\nseed = 1\nlog_every = 1000\n'
                 f'[data]\ntrain = "{data}"\nnormalize = "{normalize}"\nmax_rows = {max_rows}\n'
                 f'positive = {list(map(float, positive))!r}\n'
                 f'[model]\nloss = "logistic"\nl1 = {l1!r}\nl2 = {l2!r}\n'
                 f'[solver]\nmax_stages = {stages}\ntarget = {float(target)!r}\n'
                 f'[checkpoint]\nevery = 0\n')
    extra = [f"{k}={v}" for k, v in sets.items()]
    dt, rc = common.mpirun(P, job, out, sets=extra, threads=1)
    if rc != 0:
        return None
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    rows = [r for r in rows if "objective" in r]
    last = rows[-1] if rows else {}
    summ = os.path.join(out, "summary.json")
    summ = json.load(open(summ)) if os.path.exists(summ) else {}
    return {"wall": dt, "curve": [{"time": r["time"], "passes": r.get("passes", 0.0),
                                   "objective": r["objective"]} for r in rows],
            "phases": {k: v for k, v in last.items() if k.startswith(("t_", "comm_"))},
            "stop": summ.get("stop_reason", ""), "communication": summ.get("communication", "")}


def _tune(base, alg, path, max_rows, l1, l2, stages, sets, scales, flow, gap,
          positive=(), stop=True, seeds=(1,), refine=False):
    """The same rule for every method (module docstring): P = 1 runs at each multiplier of
    the method's default step on each tuning job seed in `seeds`, in order. A multiplier that
    reaches a certified `gap` against `flow` on every seed ranks by (mean passes to it, mean
    final objective); one that misses it on a seed ranks after all of those, by that run's
    final objective, and its later seeds are not run (they cannot change that); a failed or
    divergent run ranks last. While the best is at an end of the grid tried so far, one more
    multiplier ×4 past that end (at most EXTEND). With `refine` (the number of levels), then the
    winner's ×½ and ×2 (those not tried yet), at level 2 the new winner's ×1/√2 and ×√2, and
    the best of all is kept; a tie keeps the earlier-tried scale.
    With `stop` every run stops at that gap ([solver] target). Returns (best scale, its run on
    seeds[0], {scale: (mean passes or None, final objective: the mean, or the missing run's,
    [passes per seed run])}, the refinement's scales, two per level, or [])."""
    runs, tried, ranks = {}, {}, {}

    def trial(sc):
        per, finals = [], []
        for seed in seeds:
            d = os.path.join(base, "tune", f"{alg}-x{sc:g}-s{seed}")
            os.makedirs(d, exist_ok=True)
            r = _ours(d, alg, path, max_rows, l1, l2, 1, stages,
                      dict(sets, **{"solver.eta_scale": sc, "job.seed": seed}), d,
                      positive=positive, target=flow * (1 + gap) if stop else 0.0)
            if not per:
                runs[sc] = dict(r, dir=d) if r else None
            c = r["curve"] if r else []
            per.append(_first(c, flow, gap, "passes") if c else None)
            finals.append(c[-1]["objective"] if c else float("nan"))
            if per[-1] is None:
                break
        if not np.all(np.isfinite(finals)):
            ranks[sc] = (2, 0.0, 0.0)
        elif per[-1] is None:
            ranks[sc] = (1, finals[-1], 0.0)
        else:
            ranks[sc] = (0, float(np.mean(per)), float(np.mean(finals)))
        tried[sc] = (ranks[sc][1] if ranks[sc][0] == 0 else None,
                     ranks[sc][2] if ranks[sc][0] == 0 else finals[-1], per)

    for sc in sorted(set(scales)):
        trial(sc)
    for _ in range(EXTEND):
        best = min(runs, key=ranks.get)
        if ranks[best][0] == 2:
            break
        if best == max(runs):
            trial(best * 4)
        elif best == min(runs):
            trial(best / 4)
        else:
            break
    refined = []
    for f in (2.0, math.sqrt(2.0))[:int(refine)]:
        best = min(runs, key=ranks.get)
        if ranks[best][0] == 2:
            break
        refined += [best / f, best * f]
        for sc in refined[-2:]:
            if sc not in runs:
                trial(sc)
    best = min(runs, key=ranks.get)
    print(f"bench: {alg} tuned eta_scale = {best:g} (tried {sorted(runs)}, seeds "
          f"{list(seeds)})", flush=True)
    return best, runs[best], tried, refined


def _certify(X, y, l1, l2, runs, reference=None):
    """f_lower from a reference point and every run's final w (module docstring); drops SAGA's
    kept weights. The reference is the independent L-BFGS-B solve unless `reference` gives
    (name, w). Returns the setting's entry of results.json."""
    t0 = time.perf_counter()
    name, w = reference or ("reference (L-BFGS-B, split)", None)
    cands = {name: _reference(X, y, l1, l2) if w is None else w}
    for name, r in runs.items():
        if "dir" in r:
            cands[name] = _final_w(r["dir"])
        elif r["curve"] and "w" in r["curve"][-1]:
            cands[name] = r["curve"][-1]["w"]
        for pt in r["curve"]:
            pt.pop("w", None)
    certs = {k: _certificate(X, y, w, l1, l2) for k, w in cands.items() if w is not None}
    flow = max(f - c for f, c in certs.values())
    fbest = min(f for f, _ in certs.values())
    return {"l1": l1, "l2": l2, "f_lower": flow,
            "certificate_width_rel": (fbest - flow) / abs(flow),
            "certificates": {k: {"f": f, "bound": c} for k, (f, c) in certs.items()},
            "reference_seconds": time.perf_counter() - t0, "runs": runs}


def _first(curve, flow, gap, key):
    for pt in curve:
        if (pt["objective"] - flow) / abs(flow) <= gap:
            return pt[key]
    return None


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench elasticnet", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="MNIST subset, fewer stages")
    ap.add_argument("--out", default="bench-out/elasticnet")
    ap.add_argument("--mnist", default="data/mnist-2vr.h5",
                    help="MNIST 2-vs-rest, or the 10-class file (digit 2 is then +1)")
    ap.add_argument("--rt", default="data/rt-polarity.h5")
    ap.add_argument("--sets", default="",
                    help="comma-separated data sets to run (mnist-2vr, rt-polarity; default "
                    "both); a run split by set is merged with --report-from A.json,B.json. "
                    "With --scaling: rt-polarity, synthetic (default both)")
    ap.add_argument("--stages", type=int, default=0,
                    help="stage budget of every run (default 25 with --quick, else 60)")
    ap.add_argument("--stop-at", type=float, default=1e-6,
                    help="every run of ours stops at this certified relative gap (against "
                    "the reference's f_lower); with --eta-scales, the gap whose passes the "
                    "tuning minimises; SAGA's doubling stops there too (0 = run all stages)")
    ap.add_argument("--saga-epochs", type=int, default=0,
                    help="SAGA's largest fit (epochs; default 64 with --quick, else 256)")
    ap.add_argument("--eta-scales", default="",
                    help="comma-separated step multipliers to tune every method over (the "
                    "grid grows by x4 past an end that wins)")
    ap.add_argument("--tune-seeds", default="1", type=common.counts,
                    help="--eta-scales: comma-separated job seeds the tuning runs each "
                    "multiplier on (fewest MEAN passes; a miss on any seed loses); evaluate "
                    "the kept multipliers on other seeds (--seeds ... --from)")
    ap.add_argument("--refine", nargs="?", type=int, const=1, default=0, metavar="LEVELS",
                    help="--eta-scales: after the x4 grid, also try the winner's x1/2 and x2 "
                    "on the tuning seeds (same rule) and keep the best of all; --refine 2 "
                    "then also the new winner's x1/sqrt(2) and x sqrt(2)")
    ap.add_argument("--report-from", default="", metavar="RESULTS_JSON",
                    help="only re-render report.md (into --out) from saved results.json "
                    "files (comma-separated: their settings are merged in order)")
    ap.add_argument("--scaling", action="store_true",
                    help="instead: DASVRDA at each P of --ranks, sparse exchange vs columns "
                    "(feature-parallel), on rt-polarity and the synthetic set (--synth), "
                    "with SAGA; time per stage, its breakdown, time to a certified 1e-6")
    ap.add_argument("--ranks", default="1,2", type=common.counts,
                    help="--scaling: comma-separated rank counts P (default 1,2), one "
                    "thread per rank; the speed-up is against the smallest P's sparse run")
    ap.add_argument("--synth", default="data/synth.h5",
                    help="--scaling's larger sparse set; made with `mpitrain data synth "
                    f"{' '.join(SYNTH_ARGS)}` when missing")
    ap.add_argument("--repeat", type=int, default=3,
                    help="--scaling: runs per configuration; the fastest is reported")
    ap.add_argument("--seeds", type=common.counts,
                    help="instead: comma-separated job seeds to rerun every method of a "
                    "tuned run (--from) at its kept multiplier, P = 1: passes to the "
                    "certified --stop-at gap, mean ± sd over the seeds")
    ap.add_argument("--from", dest="from_", default="", metavar="RESULTS_JSON",
                    help="--seeds: the tuned run's results.json (settings, f_lower and kept "
                    "multipliers are taken from it; --mnist/--rt name its data files)")
    args = ap.parse_args(argv)
    if args.seeds:
        if not args.from_:
            ap.error("--seeds needs --from RESULTS_JSON (a tuned run's results)")
        tuned = _results(ap, "--from", args.from_)
        seeds = args.seeds
        seen = sorted(set(seeds) & set(tuned.get("tune_seeds", [1])))
        if seen:     # model selection never on the evaluation sample
            ap.error(f"--seeds {','.join(map(str, seen))}: {args.from_} was tuned on seeds "
                     f"{tuned.get('tune_seeds', [1])}; evaluate on held-out seeds")
        return _seed_spread(args, tuned, seeds)
    if args.report_from:
        results = _merge([_results(ap, "--report-from", p)
                          for p in args.report_from.split(",") if p])
        print((_render_scaling if "scaling" in results else
               _render_seeds if "seeds" in results else _render)(results, args.out))
        return 0
    if args.scaling:
        return _scaling(args)
    scales = [float(v) for v in args.eta_scales.split(",") if v.strip()]
    tune_seeds = args.tune_seeds
    stages = args.stages or (25 if args.quick else 60)
    gap = args.stop_at or GAPS[-1]
    names = [v for v in (args.sets or "mnist-2vr,rt-polarity").split(",") if v]
    for v in names:
        if v not in ("mnist-2vr", "rt-polarity"):
            ap.error(f"--sets: unknown data set {v!r} (mnist-2vr, rt-polarity)")
    datasets = [d for d in [("mnist-2vr", args.mnist, 5000 if args.quick else 0),
                            ("rt-polarity", args.rt, 0)] if d[0] in names]
    os.makedirs(args.out, exist_ok=True)
    results = {"settings": [], "stages": stages, "quick": args.quick, "stop_at": args.stop_at,
               "load": os.getloadavg(), "eta_scales": scales, "tune_seeds": tune_seeds,
               "refine": args.refine if scales else 0,
               "saga_epochs": args.saga_epochs or (64 if args.quick else 256),
               "dasvrda_default": _dasvrda_default()}
    for dname, path, max_rows in datasets:
        if not os.path.exists(path):
            print(f"bench: {path} missing (mpitrain data prepare ...); skipped")
            continue
        positive = _positive(path)
        X, y = _load(path, max_rows, positive=positive)
        for l1, l2 in SETTINGS:
            key = f"{dname} l1={l1:g} l2={l2:g}"
            print(f"bench: {key}", flush=True)
            ref = _reference(X, y, l1, l2)
            f_ref, c_ref = _certificate(X, y, ref, l1, l2)
            flow = f_ref - c_ref      # certified f_lower of the reference alone
            target = flow * (1 + args.stop_at) if args.stop_at else 0.0
            runs, tuned, tried, refined = {}, {}, {}, {}
            base = os.path.join(args.out, "runs", f"{dname}-{l1:g}-{l2:g}")
            for alg, sets in METHODS:
                label, p1 = "", None
                if scales:
                    sc, p1, tried[alg], refined[alg] = _tune(
                        base, alg, path, max_rows, l1, l2, stages, sets, scales, flow, gap,
                        positive, stop=bool(args.stop_at), seeds=tune_seeds,
                        refine=args.refine)
                    sets = dict(sets, **{"solver.eta_scale": sc, "job.seed": tune_seeds[0]})
                    tuned[alg] = sc
                    label = f" ×{sc:g}"
                for P in (1, 2):
                    d = os.path.join(base, f"{alg}-P{P}")
                    r = p1 if P == 1 and scales else None
                    if r is None:
                        os.makedirs(d, exist_ok=True)
                        r = _ours(d, alg, path, max_rows, l1, l2, P, stages, sets, d,
                                  positive=positive, target=target)
                        r = dict(r, dir=d) if r else None
                    if r:
                        runs[f"{alg}{label} P={P}"] = r
            saga = _saga(X, y, l1, l2, results["saga_epochs"], stop_rel=args.stop_at,
                         flow=flow)
            runs["sklearn saga"] = {"curve": saga}
            entry = dict(_certify(X, y, l1, l2, runs, ("reference (L-BFGS-B, split)", ref)),
                         dataset=dname, eta_scale=tuned, refined=refined,
                         tuning={a: {f"{k:g}": v for k, v in t.items()}
                                 for a, t in tried.items()})
            results["settings"].append(entry)
            _plot(args.out, key, runs, entry["f_lower"])
    results["load_after"] = os.getloadavg()
    print(_render(results, args.out))
    return 0


def _results(ap, option, path):
    """A results.json named by `option`; an unreadable one ends the bench with one line."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        ap.error(f"{option} {path}: not a readable results.json ({exc})")


def _seed_spread(args, tuned, seeds):
    """The --seeds mode (see its --help): `tuned` the --from results, `seeds` disjoint from
    its tuning seeds; report.md and results.json in --out."""
    gap = args.stop_at or GAPS[-1]
    paths = {"mnist-2vr": (args.mnist, 5000 if tuned.get("quick") else 0),
             "rt-polarity": (args.rt, 0)}
    os.makedirs(args.out, exist_ok=True)
    res = {"from": args.from_, "seeds": seeds, "stop_at": gap, "stages": tuned["stages"],
           "tune_seeds": tuned.get("tune_seeds", [1]), "load": os.getloadavg(), "settings": []}
    for e in tuned["settings"]:
        path, max_rows = paths[e["dataset"]]
        positive = _positive(path)
        flow, passes = e["f_lower"], {}
        for alg, sc in e["eta_scale"].items():
            passes[alg] = []
            for seed in seeds:
                d = os.path.join(args.out, "runs",
                                 f"{e['dataset']}-{e['l1']:g}-{e['l2']:g}-{alg}-s{seed}")
                os.makedirs(d, exist_ok=True)
                r = _ours(d, alg, path, max_rows, e["l1"], e["l2"], 1, tuned["stages"],
                          {"solver.eta_scale": sc, "job.seed": seed}, d, positive=positive,
                          target=flow * (1 + gap))
                passes[alg].append(_first(r["curve"], flow, gap, "passes") if r else None)
            print(f"bench: {e['dataset']} ({e['l1']:g}, {e['l2']:g}) {alg} ×{sc:g}: "
                  f"{passes[alg]}", flush=True)
        res["settings"].append({"dataset": e["dataset"], "l1": e["l1"], "l2": e["l2"],
                                "f_lower": flow, "eta_scale": e["eta_scale"],
                                "passes": passes})
    res["load_after"] = os.getloadavg()
    print(_render_seeds(res, args.out))
    return 0


def seed_stats(ps):
    """(mean, sample sd, reached) of passes over seeds; None where a seed did not reach the gap
    (the mean is then None: the method does not reliably get there)."""
    ok = [p for p in ps if p is not None]
    if len(ok) < len(ps) or not ok:
        return None, None, len(ok)
    m = sum(ok) / len(ok)
    sd = (sum((p - m) ** 2 for p in ok) / (len(ok) - 1)) ** 0.5 if len(ok) > 1 else 0.0
    return m, sd, len(ok)


TIE_REL = 1e-9   # mean passes this close are equal (the same counts summed in another order)


def fewest(means):
    """The methods with the fewest mean passes ({method: mean}), all of them on a tie."""
    low = min(means.values(), default=None)
    return sorted(a for a, m in means.items() if m <= low * (1 + TIE_REL))


def _render_seeds(res, out):
    """report.md and results.json of the --seeds mode; returns the report's text."""
    n = len(res["seeds"])
    rows = ["| data | (l1, l2) | DASVRDA | ProxSVRG | Katyusha | fewest on average |",
            "|---|---|---|---|---|---|"]
    for e in res["settings"]:
        cells, means = [], {}
        for alg in ("dasvrda", "prox-svrg", "katyusha"):
            m, sd, k = seed_stats(e["passes"][alg])
            sc = e["eta_scale"][alg]
            cells.append(f"{m:.1f} ± {sd:.1f} ×{sc:g}" if m is not None else
                         f"– ({k} of {n}) ×{sc:g}")
            if m is not None:
                means[alg] = m
        best = " = ".join(fewest(means)) or "none"
        rows.append(f"| {e['dataset']} | ({e['l1']:g}, {e['l2']:g}) | " + " | ".join(cells)
                    + f" | {best} |")
    intro = (f"From `{res['from']}`: every method at the multiplier that run kept, P = 1, job "
             f"seeds {', '.join(map(str, res['seeds']))}, each run stopping at a certified "
             f"relative gap {res['stop_at']:g} against the same f_lower (at most "
             f"{res['stages']} stages). Cells: passes to that gap, mean ± sample sd over the "
             f"{n} seeds (– (k of {n}): reached by only k seeds). The multipliers were "
             f"tuned on job seed{'s' if len(res['tune_seeds']) > 1 else ''} "
             f"{', '.join(map(str, res['tune_seeds']))}, none of the seeds here. "
             f"Load average (1 min) {res['load'][0]:.2f} before, {res['load_after'][0]:.2f} "
             "after.")
    path = common.write_report(out, "elasticnet: seed spread of the tuned comparison",
                               [intro, "\n".join(rows)], res)
    return open(path).read()


def _dasvrda_default():
    """DASVRDA's default step constant and strongly convex restart, which the bench's multipliers
    (×k of the default step) and default-step runs refer to."""
    from ..algorithms import registry
    schema = registry()["dasvrda"].SOLVER_SCHEMA
    return {k: schema[k].default for k in ("practical_c", "sc_restart")}


def _merge(parts):
    """One results dict from the results.json of runs split by data set: their settings in
    order, each part's loads kept (`parts`); a single part is returned as it is."""
    for r in parts:
        r.pop("machine", None)
    if len(parts) == 1:
        return parts[0]
    out = dict(parts[0], settings=[e for r in parts for e in r["settings"]])
    out["parts"] = [{"sets": sorted({e["dataset"] for e in r["settings"]}),
                     "load": r["load"], "load_after": r["load_after"]} for r in parts]
    return out


SCALING_SETS = ("rt-polarity", "synthetic")


def _scaling_modes(ranks):
    """--scaling's runs: at each P, the sparse exchange and the columns mode."""
    return [(P, comm) for P in ranks for comm in ("sparse", "columns")]


def _plist(ranks):
    """'1 and 2', '1, 2, 4 and 8'."""
    ps = [str(P) for P in ranks]
    return ps[0] if len(ps) == 1 else ", ".join(ps[:-1]) + " and " + ps[-1]


def _scaling(args):
    """The --scaling mode (see its --help); report.md and results.json in --out."""
    import subprocess
    import sys
    stages = args.stages or 30
    names = [v for v in (args.sets or ",".join(SCALING_SETS)).split(",") if v]
    for v in names:
        if v not in SCALING_SETS:
            print(f"bench: --sets: unknown data set {v!r} for --scaling "
                  f"({', '.join(SCALING_SETS)})", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    if "synthetic" in names and not os.path.exists(args.synth):
        print(f"bench: making {args.synth}", flush=True)
        subprocess.run([sys.executable, "-m", "mpitrain", "data", "synth"] + SYNTH_ARGS
                       + [args.synth], check=True, stdout=subprocess.DEVNULL)
    results = {"scaling": [], "stages": stages, "repeat": args.repeat, "ranks": args.ranks,
               "dasvrda_default": _dasvrda_default(),
               "load": os.getloadavg()}
    for dname, path, norm, l1, l2, sampling in [
            ("rt-polarity", args.rt, "unit_rows", 1e-4, 1e-6, "uniform"),
            ("synthetic", args.synth, "none", 1e-5, 1e-5, "importance")]:
        if dname not in names:
            continue
        if not os.path.exists(path):
            print(f"bench: {path} missing (mpitrain data prepare ...); skipped")
            continue
        print(f"bench: scaling on {dname}", flush=True)
        runs = {}
        for P, comm in _scaling_modes(args.ranks):
            best = None
            for rep in range(args.repeat):
                d = os.path.join(args.out, "runs", f"{dname}-P{P}-{comm}-{rep}")
                os.makedirs(d, exist_ok=True)
                r = _ours(d, "dasvrda", path, 0, l1, l2, P, stages,
                          {"solver.communication": f'"{comm}"',
                           "solver.sampling": f'"{sampling}"'}, d, normalize=norm)
                if r and r["curve"] and (best is None
                                         or r["curve"][-1]["time"] < best["curve"][-1]["time"]):
                    best = dict(r, dir=d)
            if best:
                runs[f"dasvrda P={P} {comm}"] = best
        # the certifying point: a separate P = 1 run with 4× the stages, Newton-polished on its
        # support (the L-BFGS-B reference of the main mode takes many minutes at this size)
        d = os.path.join(args.out, "runs", f"{dname}-certify")
        os.makedirs(d, exist_ok=True)
        _ours(d, "dasvrda", path, 0, l1, l2, 1, 4 * stages,
              {"solver.sampling": f'"{sampling}"'}, d, normalize=norm)
        X, y = _load(path, 0, unit_rows=norm == "unit_rows")
        ref = _final_w(d)
        ref = ("reference (DASVRDA P=1, 4x stages, polished)",
               None if ref is None else _polish(X, y, ref, l1, l2))
        runs["sklearn saga"] = {"curve": _saga(X, y, l1, l2, 128, stop_rel=1e-7)}
        entry = dict(_certify(X, y, l1, l2, runs, reference=ref), dataset=dname,
                     sampling=sampling, shape=list(X.shape), nnz=int(X.nnz))
        results["scaling"].append(entry)
    results["load_after"] = os.getloadavg()
    print(_render_scaling(results, args.out))
    return 0


def _render_scaling(results, out):
    """report.md and results.json of --scaling; returns the report's path."""
    rows, certs = [], []
    ranks = results.get("ranks", [1, 2])    # results of before --ranks: P = 1, 2
    for e in results["scaling"]:
        flow = e["f_lower"]
        r0 = e["runs"].get(f"dasvrda P={min(ranks)} sparse")
        base = r0["curve"][-1]["time"] / len(r0["curve"]) if r0 and r0["curve"] else None
        for name, r in e["runs"].items():
            c, ph = r["curve"], r.get("phases", {})
            p6, t6 = _first(c, flow, 1e-6, "passes"), _first(c, flow, 1e-6, "time")
            final = (c[-1]["objective"] - flow) / abs(flow) if c else None
            if "phases" in r:
                per = c[-1]["time"] / len(c)
                inner_comm = ph.get("t_allreduce", 0.0) + ph.get("t_allgatherv", 0.0)
                row = [f"{per * 1e3:.1f}", f"{base / per:.2f}" if base else "-",
                       f"{ph.get('t_inner', 0):.3f}",
                       f"{inner_comm:.3f}", f"{ph.get('comm_seconds', 0):.3f}",
                       ph.get("comm_calls", 0)]
            else:   # SAGA: fresh fits with 1, 2, 4, ... epochs, no stages
                row = ["-"] * 6
            rows.append([e["dataset"], name] + row
                        + [f"{p6:.0f}" if p6 is not None else "-",
                           f"{t6:.2f}" if t6 is not None else "-",
                           _gap(final)])
        certs.append([e["dataset"], "×".join(str(v) for v in e["shape"]), e["nnz"],
                      f"({e['l1']:g}, {e['l2']:g})", e["sampling"], f"{flow:.15g}",
                      _gap(e["certificate_width_rel"])])
    sections = [
        f"DASVRDA (default step, lazy updates) at P = {_plist(ranks)} ranks, one thread per "
        "rank: the "
        "sparse exchange (the mini-batch's (column, value) pairs by one Allgatherv per inner "
        "step; at P = 1 no collective) against the feature-parallel `columns` mode (each rank "
        "updates only its block of columns; one Allreduce of the b margins per inner step). "
        "The same iterates in every mode (up to summation order). "
        f"{results['stages']} stages per run, the fastest of {results['repeat']} runs "
        "(the run's own clock, data loading and setup excluded). Gaps are certified: "
        "(f − f_lower)/f_lower, f_lower = max over candidate points w of f(w) − cert(w) "
        "(module docstring), the candidates being every run's final w and a separate P = 1 "
        "run with 4× the stages, Newton-polished on its support; the Certificates table "
        "gives the smallest gap this resolves. SAGA: scikit-learn, fresh fits of 1, 2, 4, … "
        "epochs (fit time), uniform sampling, doubling until a fit's own certificate is below "
        "1e-7. The synthetic set is `mpitrain data synth "
        f"{' '.join(SYNTH_ARGS)}` (Zipf columns, rows of different norms, importance "
        "sampling for DASVRDA). "
        f"Load average (1, 5, 15 min) at start: {_loadavg(results['load'])}, at the end: "
        f"{_loadavg(results['load_after'])}; the "
        f"{results.get('machine', common.machine())['cpus']}-core machine was shared with "
        "other work.",
        "## Time per stage and to a certified 1e-6\n\n"
        f"ms/stage: wall time / stages; speed-up: P = {min(ranks)} sparse's ms/stage over "
        "this one's; "
        "t_inner: seconds in inner steps (rank 0, all stages), of which inner comm: in the "
        "inner step's collective (waiting for the other "
        + ("rank" if max(ranks) <= 2 else "ranks") + " included); comm: all "
        "collectives' seconds and count. Generated from results.json.\n\n"
        + common.table(["data", "run", "ms/stage", "speed-up", "t_inner s", "inner comm s",
                        "comm s", "collectives", "passes→1e-6", "s→1e-6", "final gap"], rows),
        "## Certificates\n\n" + common.table(["data", "n×d", "nnz", "(l1, l2)", "sampling",
                                              "f_lower", "width"], certs)]
    return common.write_report(out, "elasticnet --scaling: DASVRDA at P = "
                               f"{', '.join(map(str, ranks))} (sparse exchange vs columns) "
                               "and SAGA", sections, results)


def _gap(g):
    """A relative gap for the report: below 1e-15 it is rounding (f_lower may exceed f)."""
    return "-" if g is None else "< 1e-15" if g < 1e-15 else f"{g:.1e}"


def _render(results, out):
    """report.md and results.json from the collected results; returns the report's path."""
    table_rows, widths, summary, tuning = [], [], [], []
    tseeds = results.get("tune_seeds", [1])
    refine = results.get("refine", False)
    for e in results["settings"]:
        dname, l1, l2, flow, runs = e["dataset"], e["l1"], e["l2"], e["f_lower"], e["runs"]
        ref = e["certificates"]["reference (L-BFGS-B, split)"]["bound"]
        widths.append([dname, f"({l1:g}, {l2:g})", f"{flow:.15g}",
                       f"{e['certificate_width_rel']:.1e}", f"{ref / abs(flow):.1e}"])
        for name, r in runs.items():
            row = [dname, f"({l1:g}, {l2:g})", name]
            for g in GAPS:
                row += [_first(r["curve"], flow, g, "passes"),
                        _first(r["curve"], flow, g, "time")]
            row.append((r["curve"][-1]["objective"] - flow) / abs(flow) if r["curve"]
                       else None)
            row += [r.get("stop", ""), r.get("communication", "")]
            table_rows.append(["-" if v is None else v for v in row])
        for alg, tried in e.get("tuning", {}).items():
            cells = [f"×{k}: " + _tried_cell(v, flow, tseeds)
                     for k, v in sorted(tried.items(), key=lambda kv: float(kv[0]))]
            two = e.get("refined", {}).get(alg)
            tuning.append([dname, f"({l1:g}, {l2:g})", alg, f"×{e['eta_scale'][alg]:g}"]
                          + ([", ".join(f"×{v:g}" for v in two) or "–"] if refine else [])
                          + ["; ".join(cells)])
        pick = {w: [k for k in runs if k.startswith(w[0]) and k.endswith(w[1])]
                for w in [("dasvrda", "P=1"), ("dasvrda", "P=2"), ("prox-svrg", "P=1"),
                          ("katyusha", "P=1"), ("sklearn saga", "")]}
        summary.append([dname, f"({l1:g}, {l2:g})"]
                       + [_summary_cell(runs, v, flow) for v in pick.values()])
    headers = ["data", "(l1, l2)", "method", "passes→1e-4", "s→1e-4", "passes→1e-6",
               "s→1e-6", "final rel. gap", "stop", "inner exchange"]
    loads = (f"Load average (1, 5, 15 min) at start: {_loadavg(results['load'])}, at the end: "
             f"{_loadavg(results['load_after'])}" if "parts" not in results else
             "; ".join(f"{', '.join(pt['sets'])}: load average (1, 5, 15 min) at start "
                       f"{_loadavg(pt['load'])}, at the end {_loadavg(pt['load_after'])}"
                       for pt in results["parts"]))
    stop = results.get("stop_at", 0.0)
    sections = [
        "Relative gap (f − f_lower)/f_lower, an upper bound on (f − f*)/f*: f_lower is "
        "certified (module docstring), not the best run. "
        f"{loads}; the machine was shared with other work. "
        f"Stage budget per run: {results['stages']}"
        + (f", every run of ours stopping at a certified {stop:g} ([solver] target = "
           f"f_lower·(1 + {stop:g}) with the reference's f_lower; SAGA's doubling stops "
           "there too), so a final gap near it means 'reached'" if stop else "")
        + ". Times are wall seconds from the run's own clock (data "
        "loading excluded); SAGA's are sklearn fit times of a fresh fit with that many "
        "epochs (random_state 0" + (f"; fits of 1, 2, 4, … up to {results['saga_epochs']} "
                                    "epochs" if "saga_epochs" in results else "") + ").",
        "## Summary: passes / seconds to a certified relative gap 1e-6\n\n"
        "– (g @ k) = not reached; g is the final relative gap after k passes (SAGA: "
        "epochs). ProxSVRG and Katyusha at P = 1 "
        "(their P = 2 iterates are the same). Generated from results.json.\n\n"
        + common.table(["data", "(l1, l2)", "DASVRDA P=1", "DASVRDA P=2", "ProxSVRG",
                        "Katyusha", "SAGA"], summary),
        "## All runs\n\n" + common.table(headers, table_rows)]
    if tuning:
        sections.append(
            "## Tuning\n\nThe same rule for every method (module docstring): P = 1 runs "
            "at each multiplier of the method's default step on job seed"
            + (f"s {', '.join(map(str, tseeds))}" if len(tseeds) > 1 else f" {tseeds[0]}")
            + ", the grid " + ", ".join(f"{v:g}" for v in results["eta_scales"])
            + f" grown by ×4 past a winning end (at most {EXTEND} times)"
            + (", then a second level: the winner's ×½ and ×2 (column \"refined\"), run and "
               "judged alike" if refine else "")
            + (", then a third level: the new winner's ×1/√2 and ×√2 (also in \"refined\")"
               if refine > 1 else "") + (", the best of all kept" if refine else "") + "; fewest "
            + ("mean " if len(tseeds) > 1 else "") + "passes to a "
            "certified gap of " + f"{stop or GAPS[-1]:g}" + " against the reference's "
            "f_lower" + (" on every seed (a multiplier that misses it on a seed loses to "
                         "any that reaches it on all, and its later seeds are not run; "
                         "passes per seed in parentheses)" if len(tseeds) > 1 else "")
            + ", else the lowest final objective (– (g): not reached, g = the final "
            "gap against that f_lower" + (", on seed k" if len(tseeds) > 1 else "")
            + "). The tables above show the kept multiplier's run on seed "
            f"{tseeds[0]}" + (", a tuning seed: evaluate on held-out seeds (--seeds … "
                              "--from)" if len(tseeds) > 1 else "") + ".\n\n"
            + common.table(["data", "(l1, l2)", "method", "kept"]
                           + (["refined"] if refine else []) + ["runs"], tuning))
    sections += [
        "## Certificates\n\nf_lower per setting; the certificate's width "
        "(min f(w) − f_lower)/f_lower is the smallest gap the table can resolve; the "
        "reference solver's own certified relative gap.\n\n"
        + common.table(["data", "(l1, l2)", "f_lower", "width", "reference gap"], widths)]
    return common.write_report(out, "elasticnet: DASVRDA vs ProxSVRG, Katyusha, SAGA",
                               sections, results)


def _tried_cell(v, flow, seeds):
    """One multiplier of the Tuning table: (mean passes or None, final objective[, passes
    per seed run]) as _tune returns it."""
    p, fin, per = v[0], v[1], (v[2] if len(v) > 2 else [])
    if len(per) <= 1:
        return f"{p:.0f} passes" if p is not None else f"– ({(fin - flow) / abs(flow):.1e})"
    if p is not None:
        return f"{p:.1f} passes ({', '.join(f'{q:.0f}' for q in per)})"
    return f"– ({(fin - flow) / abs(flow):.1e}, seed {seeds[len(per) - 1]})"


def _summary_cell(runs, names, flow):
    if not names:
        return "n/a"
    r = runs[names[0]]
    label = names[0].split(" P=")[0].split(" ")[-1] if "×" in names[0] else ""
    p, t = _first(r["curve"], flow, 1e-6, "passes"), _first(r["curve"], flow, 1e-6, "time")
    if p is None:   # not reached: the final gap and the passes (SAGA: epochs) spent
        c = r["curve"]
        g = (c[-1]["objective"] - flow) / abs(flow) if c else float("nan")
        spent = f" @ {c[-1]['passes']:.0f}" if c else ""
        return f"– ({g:.1e}{spent})" + (f" {label}" if label else "")
    return f"{p:.0f} / {t:.2f} s" + (f" {label}" if label else "")


def _loadavg(avg):
    return ", ".join(f"{v:.2f}" for v in avg)


def _plot(outdir, key, runs, flow):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in runs.items():
        c = r["curve"]
        gap = [max((pt["objective"] - flow) / abs(flow), 1e-16) for pt in c]
        axes[0].semilogy([pt["passes"] for pt in c], gap, label=name)
        axes[1].semilogy([pt["time"] for pt in c], gap, label=name)
    axes[0].set_xlabel("passes over the data")
    axes[1].set_xlabel("seconds")
    for a in axes:
        a.set_ylabel("relative gap (certified bound)")
        a.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(key)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, key.replace(" ", "_").replace("=", "") + ".png"), dpi=90)
    plt.close(fig)
