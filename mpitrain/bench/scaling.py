"""every method's time per iteration at P = 1, 2, over shared memory and an emulated network

For each method (fadl, lbfgs, dasvrda, sae-greedy: the data-parallel autoencoder, slp,
parmac-ba) the same small job runs at P = 1 and 2 over shared memory and at P = 2 over the
emulated network of mpitrain/netem.py (two namespaces, MPI over OFI/TCP, one-way latency α
and bandwidth 1/β as set, tbf's burst two packets) at several (α, β). From each run's
metrics.jsonl: time per iteration, split into compute (wall − time in MPI calls),
communication (the per-call model's share) and waiting (the rest of the time in MPI calls),
with the calls and bytes per iteration.

The model (no free parameter per method): every collective call costs what the same call
costs on the link, measured before the runs by netem's call probe (2 ranks, back-to-back
Allreduce, Allgatherv, Bcast with alternating roots and Sendrecv of 8 B .. 2 MiB, powers of
two, linear in n between them), so a method's time per iteration over the network is
    T_net = T_shm(P=2) + Σ_calls t_link(kind, n)      (rank 0's calls of one iteration)
with the calls by kind and size recorded by tracing each run's World calls. Beside it the
former α–β model, T_shm(P=2) + m·c_α·α + b·c_β·β (m calls, b bytes; c_α, c_β from the
probe's Allreduce of 8 B and 1 MiB), which charges every call an 8-byte Allreduce's latency.
On this stack (MPICH ch4:ofi, libfabric tcp) a call is dearer than that: a send of more than
about 128 bytes completes only when the receiver acknowledges it (MPICH asks for delivery
completion because MPI RMA is enabled), so one exchange round costs c_r ≈ 2 one-way
latencies; MPICH's Allreduce of more than 8 bytes at P = 2 takes two rounds; its Allgatherv
of 256 KiB or more per rank is a ring pipelined in 32 KiB pieces, a round each. These are
properties of the MPI stack on any TCP network, not of the emulation, so the model charges
them instead of removing them. The control: each link's probe is repeated without RMA
(MPIR_CVAR_CH4_OFI_ENABLE_RMA=0; mpitrain uses none), where a round costs one latency.

Projections to P = 64 … 1024 use Rabenseifner's Allreduce (2⌈log₂P⌉α_r + 2n(P−1)/P·β)
for the Allreduce methods and the ring for ParMAC (P hops of M/P submodels per epoch), where a
round costs α_r = c_r·α (c_r measured: the probe's Sendrecv of 256 B .. 16 KiB), with the
compute part T_c(P) = a + b/P fitted on P = 1, 2 (strong scaling, this data) and kept per
rank (weak scaling, cluster-sized data).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

from .common import mpiexec, table, write_report

METHODS = {
    "lbfgs": ("rt-polarity", {"job": {"algorithm": "lbfgs"},
                              "model": {"l2": 1e-5}, "solver": {"max_iter": 15}}),
    "fadl": ("rt-polarity", {"job": {"algorithm": "fadl"},
                             "model": {"l2": 1e-5}, "solver": {"max_iter": 8}}),
    "dasvrda": ("rt-polarity", {"job": {"algorithm": "dasvrda"},
                                "data": {"normalize": "unit_rows"},
                                "model": {"l2": 1e-5, "l1": 1e-5},
                                "solver": {"max_stages": 2}}),
    "sae-greedy": ("mnist", {"job": {"algorithm": "sae-greedy"},
                             "data": {"max_rows": 3000},
                             "model": {"layers": [256, 64]},
                             "solver": {"epochs": 1, "recon_finetune_epochs": 0,
                                        "eval_every": 0, "eval_rows": 500}}),
    "slp": ("mnist", {"job": {"algorithm": "slp"}, "data": {"max_rows": 3000},
                      "model": {"layers": [256, 64]},
                      "solver": {"epochs": 2, "recon_finetune_epochs": 0, "eval_every": 0,
                                 "eval_rows": 500}}),
    "parmac-ba": ("digits", {"job": {"algorithm": "parmac-ba"}, "model": {"bits": 8},
                             "solver": {"mu_steps": 6}}),
}
NETS = [(0.0005, "1gbit"), (0.002, "1gbit"), (0.002, "200mbit")]
# The control experiment for the round's cost: MPICH asks libfabric for delivery completion
# (a send completes when the receiver acknowledges it) because MPI RMA is enabled; without
# RMA (mpitrain uses none) a send completes when written, and a round costs one latency.
NO_RMA = {"MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0"}
NO_RMA_SIZES = (8, 1024, 16384)
TAG = 0


def _data(name, ddir):
    from mpitrain import datasets
    path = os.path.join(ddir, f"{name}.h5")
    if not os.path.exists(path):
        datasets.prepare(name, path)
    return path


def _job(path, method, train, solver=None):
    from mpitrain.config import dump_toml
    from mpitrain.fileio import atomic_write
    _, sections = METHODS[method]
    job = {s: dict(v) for s, v in sections.items()}
    job["solver"] = dict(job.get("solver", {}), **(solver or {}))
    job.setdefault("data", {})["train"] = train
    job.setdefault("checkpoint", {})["every"] = 0
    atomic_write(path, dump_toml(job), makedirs=True)
    return path


def _run(argv_prefix, job, out, timeout=1800):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = argv_prefix + [sys.executable, "-m", "mpitrain.bench.scaling", "_traced", "run", job,
                         "--out", out, "--fresh"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    recs = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl")) if x.strip()]
    first, last = recs[0], recs[-1]  # deltas from the end of step 1: set-up excluded
    steps = last["step"] - first["step"]
    if steps < 1:
        raise RuntimeError(f"{out}: fewer than 2 steps, nothing to time")

    def per_step(key):
        return (last.get(key, 0) - first.get(key, 0)) / steps
    per = {"steps": last["step"], "launch_wall": wall, "t_iter": per_step("time"),
           "t_mpi": per_step("comm_seconds"), "calls": per_step("comm_calls"),
           "bytes": per_step("comm_bytes")}
    per["t_compute"] = per["t_iter"] - per["t_mpi"]
    per["by_call"] = _calls_per_step(os.path.join(out, "calls-rank0.json"), first["step"],
                                     last["step"])
    return per


def _run_median(argv_prefix, job, out, repeat):
    """`repeat` runs of `job` (into OUT, OUT-r2, ...); the record of the run whose time per
    iteration is the median (the lower middle one for an even count), with every run's time
    per iteration in "t_iter_runs"."""
    runs = [_run(argv_prefix, job, out if k == 0 else f"{out}-r{k + 1}")
            for k in range(repeat)]
    order = sorted(runs, key=lambda r: r["t_iter"])
    pick = dict(order[(len(order) - 1) // 2])
    pick["t_iter_runs"] = [r["t_iter"] for r in runs]
    return pick


def _calls_per_step(path, first, last):
    """[[kind, bytes, calls per iteration], ...] of rank 0 from traced_run's record: the calls
    made after the metrics record of step `first` up to that of step `last` (the driver's step
    is k while step k + 1 runs and while step k's end is agreed), so they add up to the
    metrics' comm_calls and comm_bytes deltas. [] where there is no record (P = 1)."""
    if not os.path.exists(path):
        return []
    acc = {}
    for step, kind, nbytes, count in json.load(open(path)):
        if first <= step < last:
            acc[(kind, nbytes)] = acc.get((kind, nbytes), 0) + count
    return [[k, n, c / (last - first)] for (k, n), c in sorted(acc.items(), key=str)]


# World's collective names (comm._tracked) → the probe's kinds. The iteration-boundary
# agreement is an Allreduce MAX; the pickled-object collectives and Gatherv/Alltoallv are
# charged as their buffer counterparts; a call no collective is named for (None: a passive
# wait or barrier, 0 bytes) as one small Allreduce, i.e. one exchange.
PROBE_KIND = {"Allreduce": "allreduce", "the iteration-boundary agreement": "allreduce",
              "allreduce": "allreduce", "Bcast": "bcast", "bcast": "bcast",
              "Sendrecv": "sendrecv", "Allgatherv": "allgatherv", "allgather": "allgatherv",
              "Gatherv": "allgatherv", "Alltoallv": "allgatherv"}


def model_comm(by_call, net):
    """Seconds of communication per iteration that the per-call model charges: every call
    [kind, n bytes, calls per iteration] of `by_call` costs what the probe measured for that
    kind and size on link `net` (call_cost). Returns (total, {probe kind: seconds})."""
    parts = {}
    for call in by_call:
        k = PROBE_KIND.get(call[0], "allreduce")
        parts[k] = parts.get(k, 0.0) + call[2] * call_cost(net, call)
    return sum(parts.values()), parts


def call_cost(net, call):
    """Seconds of one call [kind, n, ...] on link `net`: netem.call_seconds on the probe's
    table {probe kind: [[n, seconds], ...]} in net["calls"] for the call's kind."""
    from mpitrain.netem import call_seconds
    return call_seconds(net["calls"][PROBE_KIND.get(call[0], "allreduce")], call[1])


def _proj_allreduce(P, m, b, a_c, b_c, alpha, beta):
    """Time per iteration at P ranks: T_c(P) + m Allreduces of b/m bytes (Rabenseifner)."""
    lg = math.ceil(math.log2(P)) if P > 1 else 0
    n = b / max(m, 1.0)
    return a_c + b_c / P + m * (2 * lg * alpha + 2 * n * (P - 1) / P * beta)


def _proj_ring(P, m2, b, a_c, b_c, alpha, beta):
    """ParMAC: the submodels go round the ring; at 2 ranks m2 messages per iteration, each
    epoch's P hops carry M/P submodels each: messages ∝ P, bytes per rank constant."""
    return a_c + b_c / P + (m2 * P / 2) * alpha + b * beta


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mpitrain bench scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/scaling", help="report directory")
    ap.add_argument("--data-dir", default="bench-out/data", help="prepared datasets")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--nets", default=";".join(f"{a},{r}" for a, r in NETS),
                    help="emulated links 'alpha_seconds,rate;...' (rate as tc says it)")
    ap.add_argument("--no-net", action="store_true", help="shared memory only")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per method and network; the one with the median time per "
                    "iteration is reported (every run's time in results.json)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    from mpitrain import netem
    methods = [m for m in args.methods.split(",") if m]
    nets = [] if args.no_net else [(float(a), r) for a, r in
                                   (x.split(",") for x in args.nets.split(";") if x)]
    note = ""
    if nets:
        try:
            netem.check()
        except netem.Unavailable as exc:
            note = f"No emulated network on this machine ({exc}): shared memory only."
            nets = []
    load0 = os.getloadavg()
    res = {"methods": {}, "nets": [], "load_before": load0}
    jobs = {}
    for m in [m for m in ("fadl", "lbfgs") if m in methods]:  # iterations to converge
        train = _data(METHODS[m][0], args.data_dir)
        job = _job(os.path.join(args.out, "jobs", f"{m}-solve.toml"), m, train,
                   solver={"max_iter": 500})
        r = _run([mpiexec(), "-n", "2"], job, os.path.join(args.out, "runs", f"{m}-solve"))
        res.setdefault("solve", {})[m] = r["steps"]
        print(f"{m} P=2 solve: {r['steps']} iterations", flush=True)
    for m in methods:
        train = _data(METHODS[m][0], args.data_dir)
        jobs[m] = _job(os.path.join(args.out, "jobs", f"{m}.toml"), m, train)
        res["methods"][m] = {"shm": {}}
        for P in (1, 2):
            out = os.path.join(args.out, "runs", f"{m}-P{P}")
            res["methods"][m]["shm"][P] = _run_median([mpiexec(), "-n", str(P)], jobs[m], out,
                                                      args.repeat)
            print(f"{m} P={P} shm: {res['methods'][m]['shm'][P]['t_iter']:.4g} s/iter",
                  flush=True)
    for i, (alpha, rate) in enumerate(nets):
        netem.up(alpha, rate, TAG)
        try:
            probe = netem.measure(TAG)
            tables = netem.measure_calls(TAG)
            no_rma = netem.measure_calls(TAG, NO_RMA_SIZES, env=NO_RMA)
            c_a = probe["allreduce_8"] / probe["alpha"]
            c_b = ((probe["allreduce_1048576"] - probe["allreduce_8"])
                   / (1 << 20) / probe["beta"])
            net = {"alpha_set": alpha, "rate": rate, "beta_set": 1 / netem._rate_bps(rate),
                   **probe, "c_alpha": c_a, "c_beta": c_b, "calls": tables,
                   "calls_no_rma": no_rma}
            res["nets"].append(net)
            print(f"link {alpha * 1e3:g} ms {rate}: alpha {probe['alpha'] * 1e3:.3g} ms, "
                  f"beta {probe['beta']:.3g} s/B", flush=True)
            for m in methods:
                out = os.path.join(args.out, "runs", f"{m}-net{i}")
                r = _run_median(netem.mpiexec_argv(TAG, 2, []), jobs[m], out, args.repeat)
                shm = res["methods"][m]["shm"][2]
                ab = r["calls"] * c_a * probe["alpha"] + r["bytes"] * c_b * probe["beta"]
                r["predicted_ab"] = shm["t_iter"] + ab
                r["error_ab"] = r["predicted_ab"] / r["t_iter"] - 1.0
                r["model_comm"], r["model_parts"] = model_comm(shm["by_call"], net)
                r["predicted"] = shm["t_iter"] + r["model_comm"]
                r["wait"] = max(0.0, r["t_mpi"] - r["model_comm"])
                r["error"] = r["predicted"] / r["t_iter"] - 1.0
                res["methods"][m][f"net{i}"] = r
                print(f"{m} P=2 net{i}: {r['t_iter']:.4g} s/iter (model {r['predicted']:.4g})",
                      flush=True)
        finally:
            netem.down(TAG)
    res["load_after"] = os.getloadavg()
    return _report(args, res, methods, note)


def _report(args, res, methods, note):
    sections = [f"Command: `mpitrain bench scaling {' '.join(sys.argv[3:])}`".rstrip(),
                f"Load average before / after: {res['load_before'][0]:.2f} / "
                f"{res['load_after'][0]:.2f} (a 2-core machine; other work may have been "
                "running, see the load)." + (
                    f" Every time per iteration below is the median of {args.repeat} runs "
                    "(each run's in results.json, t_iter_runs)." if args.repeat > 1 else ""),
                __doc__.split("\n", 1)[1].strip()]
    if note:
        sections.append(note)
    if res["nets"]:
        rows = [[f"{n['alpha_set'] * 1e3:g} ms", n["rate"], n["alpha"] * 1e3,
                 n["beta_set"] * 1e9, n["beta"] * 1e9, n["allreduce_8"] * 1e3,
                 n["allreduce_1048576"] * 1e3, n["c_alpha"], n["c_beta"]]
                for n in res["nets"]]
        sections.append("## The links: set and measured (2 ranks, medians)\n\n" + table(
            ["α set", "rate", "α measured (ms)", "β set (ns/B)", "β measured (ns/B)",
             "Allreduce 8 B (ms)", "Allreduce 1 MiB (ms)", "c_α", "c_β"], rows))
        sections.append(_call_tables(res["nets"]))
    rows = []
    for m in methods:
        r = res["methods"][m]
        for key, run in sorted(r.items(), key=lambda kv: str(kv[0])):
            if key == "shm":
                for P, x in sorted(run.items()):
                    rows.append([m, P, "shared memory", x["steps"], x["t_iter"],
                                 x["t_compute"], "", x["t_mpi"], x["calls"],
                                 x["bytes"] / 1e3, "", ""])
            else:
                i = int(key[3:])
                n = res["nets"][i]
                rows.append([m, 2, f"{n['alpha_set'] * 1e3:g} ms, {n['rate']}", run["steps"],
                             run["t_iter"], run["t_compute"], run["model_comm"], run["wait"],
                             run["calls"], run["bytes"] / 1e3, run["predicted"],
                             f"{100 * run['error']:+.0f}%", f"{100 * run['error_ab']:+.0f}%"])
    sections.append("## Time per iteration (seconds; rank 0)\n\n" + table(
        ["method", "P", "network", "iterations", "time/iter", "compute", "comm (model)",
         "wait (MPI − model)" if res["nets"] else "in MPI", "calls/iter", "kB/iter",
         "model time/iter", "model error", "α–β model error"], rows))
    if res["nets"]:
        sections.append(_where(res, methods))
    if res["nets"]:
        sections.append(_projection(res, methods))
        sections.append(_claims(res, methods))
    pngs = _plots(args.out, res, methods)
    if pngs:
        sections.append("Plots: " + ", ".join(f"`{os.path.basename(p)}`" for p in pngs)
                        + " (beside this report).")
    write_report(args.out, "Scaling: every method at P = 1, 2, shared memory and an emulated "
                 "network", sections, res)
    print(open(os.path.join(args.out, "report.md")).read())
    return 0


def _call_tables(nets):
    """The call probe on each link: ms per call by kind and size, beside one round α + n·β."""
    out = ["## Seconds per call on each link (the probe: 2 ranks, mean of back-to-back calls)",
           "n is World's count: the buffer, for Allgatherv each rank's share. In brackets the "
           "time in one-way latencies α (measured); the last column is one round, α + n·β."]
    for net in nets:
        tab, a, b = net["calls"], net["alpha"], net["beta"]
        kinds = sorted(tab)
        rows = [[n] + [f"{tab[k][j][1] * 1e3:.3g} ({tab[k][j][1] / a:.1f})" for k in kinds]
                + [f"{(a + n * b) * 1e3:.3g}"] for j, (n, _) in enumerate(tab[kinds[0]])]
        off = dict(net, calls=net["calls_no_rma"]) if "calls_no_rma" in net else None
        out.append(f"### {net['alpha_set'] * 1e3:g} ms, {net['rate']}: round c_r = "
                   f"{round_factor(net):.2f} α"
                   + (f" ({round_factor(off):.2f} α with {_env_text(NO_RMA)})" if off else "")
                   + "\n\n"
                   + table(["n (B)"] + [f"{k} ms" for k in kinds] + ["α + nβ ms"], rows))
    return "\n\n".join(out)


def _env_text(env):
    return ", ".join(f"{k}={v}" for k, v in env.items())


def _where(res, methods):
    """Per network run: the per-call model's seconds per iteration by kind, and the calls
    (those of the P = 2 shared-memory run, which the model charges) that cost it most."""
    rows = []
    for m in methods:
        for i, n in enumerate(res["nets"]):
            run = res["methods"][m][f"net{i}"]
            top = sorted(res["methods"][m]["shm"][2]["by_call"],
                         key=lambda c: -c[2] * call_cost(n, c))
            rows.append([m, f"{n['alpha_set'] * 1e3:g} ms, {n['rate']}", run["t_iter"]]
                        + [run["model_parts"].get(k, 0.0) for k in sorted(n["calls"])]
                        + ["; ".join(f"{c[2]:.3g}× {c[0]} {c[1]} B" for c in top[:3])])
    kinds = sorted(res["nets"][0]["calls"])
    return ("## Where the time goes (per-call model, seconds per iteration; rank 0)\n\n"
            + table(["method", "network", "time/iter"] + [f"{k} (model)" for k in kinds]
                    + ["dearest calls per iteration"], rows))


def _projection(res, methods):
    n = res["nets"][-1]
    alpha, beta = alpha_round(n), n["beta"]
    rows = []
    for m in methods:
        a_c, b_c, calls, nbytes = _fit(res, m)
        t1 = a_c + b_c
        fn = _proj_ring if m == "parmac-ba" else _proj_allreduce
        strong = [fn(P, calls, nbytes, a_c, b_c, alpha, beta) for P in (64, 256, 1024)]
        weak = [fn(P, calls, nbytes, a_c + b_c / 2, 0.0, alpha, beta) for P in (64, 256, 1024)]
        rows.append([m, a_c, b_c] + [t1 / s for s in strong] + weak)
    return ("## Projections (α–β model, the last link's β and its measured round α_r = "
            f"{round_factor(n):.2f}·α)\n\n"
            "Strong scaling keeps this data (speed-up T(1)/T(P)); weak scaling keeps each "
            "rank's share of the P = 2 run (time per iteration, seconds). T_c(P) = a + b/P is "
            "fitted on the P = 1 and P = 2 compute times.\n\n" + table(
                ["method", "a (s)", "b (s)", "speed-up P=64", "P=256", "P=1024",
                 "weak s/iter P=64", "P=256", "P=1024"], rows))


def _plots(outdir, res, methods):
    """time_per_iteration.png (measured and modelled, per link) and projection.png
    (projected strong-scaling speed-up to 1024 ranks); [] when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(outdir, exist_ok=True)
    paths = []
    if res["nets"]:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels = ["shm P=1", "shm P=2"] + [f"{n['alpha_set'] * 1e3:g} ms {n['rate']}"
                                           for n in res["nets"]]
        width = 0.8 / max(1, len(methods))
        for j, m in enumerate(methods):
            r = res["methods"][m]
            meas = [r["shm"][1]["t_iter"], r["shm"][2]["t_iter"]] + \
                [r[f"net{i}"]["t_iter"] for i in range(len(res["nets"]))]
            xs = [i + j * width for i in range(len(labels))]
            ax.bar(xs, meas, width, label=m)
            ax.plot(xs[2:], [r[f"net{i}"]["predicted"] for i in range(len(res["nets"]))],
                    "k_", markersize=12)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
        ax.set_yscale("log")
        ax.set_ylabel("seconds per iteration (bars: measured, dashes: model)")
        ax.set_title("Time per iteration, P = 2 over shared memory and emulated links")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(outdir, "time_per_iteration.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
        n = res["nets"][-1]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        Ps = [2 ** k for k in range(0, 11)]
        for m in methods:
            a_c, b_c, calls, nbytes = _fit(res, m)
            fn = _proj_ring if m == "parmac-ba" else _proj_allreduce
            t1 = a_c + b_c
            ax.plot(Ps, [t1 / fn(P, calls, nbytes, a_c, b_c, alpha_round(n), n["beta"])
                         for P in Ps], marker=".", label=m)
        ax.plot(Ps, Ps, "k:", label="ideal")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("ranks P")
        ax.set_ylabel("projected speed-up T(1)/T(P), this data")
        ax.set_title(f"α_r = {alpha_round(n) * 1e3:.3g} ms, β = {n['beta'] * 1e9:.3g} ns/B")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(outdir, "projection.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _fit(res, m):
    """(a, b, calls, bytes) of method m: T_c(P) = a + b/P from the P = 1, 2 compute times."""
    r = res["methods"][m]["shm"]
    t1, t2 = r[1]["t_compute"], r[2]["t_compute"]
    b_c = max(0.0, 2 * (t1 - t2))
    return max(0.0, t1 - b_c), b_c, r[2]["calls"], r[2]["bytes"]


def _claims(res, methods):
    n = res["nets"][-1]
    beta, c_r = n["beta"], round_factor(n)
    out = ["## The papers' claims placed on the model",
           f"Every α below is a one-way latency; each algorithm round costs c_r·α with c_r = "
           f"{c_r:.2f}, this stack's measured round (see the projections)."]
    if {"fadl", "lbfgs"} <= set(methods) and "solve" in res:
        it_f, it_l = res["solve"]["fadl"], res["solve"]["lbfgs"]
        rows = []
        for alpha in (1e-5, 1e-4, 1e-3, 1e-2):
            row = [f"{alpha * 1e3:g} ms"]
            for P in (2, 64, 1024):
                tf = it_f * _proj_allreduce(P, *_reorder(_fit(res, "fadl")), c_r * alpha, beta)
                tl = it_l * _proj_allreduce(P, *_reorder(_fit(res, "lbfgs")), c_r * alpha, beta)
                row.append(tf / tl)
            rows.append(row)
        out.append(f"FADL vs SQM-style L-BFGS (Mahajan et al.: FADL wins when communication is "
                   f"expensive): time to converge = iterations × time per iteration; "
                   f"iterations at P = 2 with the default tolerance: FADL {it_f}, L-BFGS "
                   f"{it_l} (assumed independent of P). Ratio FADL / L-BFGS (< 1: FADL "
                   f"faster), β = {beta * 1e9:.3g} ns/B:\n\n"
                   + table(["α", "P=2", "P=64", "P=1024"], rows))
    if "parmac-ba" in methods:
        a_c, b_c, calls, nbytes = _fit(res, "parmac-ba")
        N = 1500.0  # digits training rows in this run
        rows = []
        for Nbig in (1e6, 1e8):
            scale = Nbig / N
            t1 = a_c + b_c * scale
            row = [f"{Nbig:.0e}"]
            for P in (16, 128, 1024):
                row.append(t1 / _proj_ring(P, calls, nbytes, a_c, b_c * scale,
                                           alpha_round(n), beta))
            rows.append(row)
        out.append("ParMAC (Carreira-Perpiñán & Alizadeh: nearly perfect speed-up on 128 "
                   "processors for 100M points): the compute part scaled to N points, the ring "
                   f"at α_r = {alpha_round(n) * 1e3:.3g} ms, β = {beta * 1e9:.3g} ns/B. Speed-up "
                   "T(1)/T(P):\n\n" + table(["N", "P=16", "P=128", "P=1024"], rows))
    if {"sae-greedy", "slp"} <= set(methods):
        rows = []
        for P in (2, 4, 16, 64):
            tg = _proj_allreduce(P, *_reorder(_fit(res, "sae-greedy")), alpha_round(n), beta)
            ts = _proj_allreduce(P, *_reorder(_fit(res, "slp")), alpha_round(n), beta)
            rows.append([P, tg, ts])
        out.append("SLP vs data-parallel greedy (Santara et al.) as P grows past the number "
                   "of layers: seconds per iteration (greedy: one epoch of one layer; SLP: one "
                   "round), the Allreduce model applied to each one's measured calls and bytes "
                   "(SLP's per-round Bcasts treated as Allreduces of the same size: an upper "
                   "bound):\n\n" + table(["P", "greedy s/iter", "SLP s/iter"], rows))
    return "\n\n".join(out)


def round_factor(net):
    """c_r: one round of a collective algorithm on this link in units of the one-way α, the
    median over the probe's Sendrecv of 256 B .. 16 KiB of (t − n·β)/α (a symmetric exchange
    is one round). 1 where the link has no call probe (results of older runs)."""
    pts = [(t - n * net["beta"]) / net["alpha"] for n, t in net.get("calls", {}).get(
        "sendrecv", []) if 256 <= n <= 16384]
    if not pts:
        return 1.0
    pts.sort()
    h = len(pts) // 2
    return pts[h] if len(pts) % 2 else (pts[h - 1] + pts[h]) / 2


def alpha_round(net):
    """The seconds of one algorithm round on link `net`: c_r·α."""
    return round_factor(net) * net["alpha"]


def _reorder(fit):
    a, b, calls, nbytes = fit
    return calls, nbytes, a, b


def traced_run(argv):
    """`mpitrain ARGV` (a `run`), recording every World call of this rank as (step, kind,
    bytes) with the driver's step at the time of the call; written at exit to
    OUT/calls-rank<r>.json as [[step, kind, bytes, count], ...]. Observes only: the calls,
    their order and their results are those of an untraced run."""
    from mpitrain import cli, comm
    counts = {}
    account = comm.World._account

    def traced(self, nbytes, t0):
        if self.size > 1:
            key = (comm.ACTIVITY.step, comm.ACTIVITY.collective, int(nbytes))
            counts[key] = counts.get(key, 0) + 1
        account(self, nbytes, t0)
    comm.World._account = traced
    code = cli.main(argv)
    out = argv[argv.index("--out") + 1]
    from mpi4py import MPI
    with open(os.path.join(out, f"calls-rank{MPI.COMM_WORLD.rank}.json"), "w") as fh:
        json.dump([list(k) + [c] for k, c in sorted(counts.items(), key=str)], fh)
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["_traced"]:
        sys.exit(traced_run(sys.argv[2:]))
    sys.exit(main())
