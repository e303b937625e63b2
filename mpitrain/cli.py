"""mpitrain command line: run, data, inspect, eval, predict, export, plot, bench, algorithms.

Exit codes (sysexits): 0 done · 64 usage · 65 bad data · 66 input missing · 69 stalled
job · 70 diverged · 73 cannot write output or run directory in use · 75 stopped by a signal
after a checkpoint · 78 bad job file · 1 internal error (or a rank exited mid-run) · 128+N
a stop signal N that could not be completed (errors.py, docs/operations.md).
"""
import argparse
import os
import sys

from .errors import EX_TEMPFAIL, EX_USAGE, Stopped, UsageError, UserError
from .runtime import abort, internal_error, report_user_error, set_thread_env


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 64, not argparse's 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"mpitrain: usage error: {message}\n")
        sys.exit(EX_USAGE)


def _parser():
    p = _Parser(prog="mpitrain", description="Train models with parallel and distributed "
                "algorithms under MPI. Run `mpiexec -n N mpitrain run JOB.toml`.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    r = sub.add_parser("run", help="run a job (under mpiexec/srun for several ranks)",
                       description="Run JOB.toml. Progress goes to stdout (rank 0); the run "
                       "directory gets job.toml, metrics.jsonl, checkpoints/, final.h5, "
                       "summary.json. SIGTERM/SIGUSR1/SIGHUP/SIGINT → checkpoint and exit 75 "
                       "(a stop delivered several times is one stop; Ctrl-C again after 1 s "
                       "ends at once). One run per run directory (a lock). See "
                       "`mpitrain algorithms` for every algorithm's keys; docs/operations.md "
                       "for exit codes.")
    r.add_argument("job", help="job file (TOML)")
    r.add_argument("--out", help="run directory (overrides [job] out)")
    r.add_argument("--resume", metavar="auto|PATH",
                   help="continue from the newest complete checkpoint (auto) or PATH")
    r.add_argument("--fresh", action="store_true",
                   help="start over: move an earlier run's results (checkpoints/, final.h5, "
                   "summary.json, metrics.jsonl, job.toml) into OUT/previous-<time>/")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a job-file key (value parsed as TOML); repeatable")

    d = sub.add_parser("data", help="convert, prepare, synthesise or describe datasets")
    dsub = d.add_subparsers(dest="data_verb", metavar="ACTION", parser_class=_Parser)
    c = dsub.add_parser("convert", help="LIBSVM text → HDF5 CSR (streaming)")
    c.add_argument("input", help="LIBSVM/svmlight text file")
    c.add_argument("output", help="HDF5 file to write (a CSR group)")
    c.add_argument("--zero-based", action="store_true", help="indices start at 0")
    c.add_argument("--features", type=int, default=0, help="declared width (0 = from data)")
    c.add_argument("--group", default="train", help="HDF5 group to write (default train); "
                   "added to an existing HDF5 output, whose other groups are kept")
    c.add_argument("--overwrite", action="store_true", help="replace the group if the output "
                   "already has it (or an existing output that is not HDF5)")
    pr = dsub.add_parser("prepare", help="write a built-in real dataset to HDF5 "
                         "(mnist, mnist-2vr, digits, digits-2vr, rt-polarity)")
    pr.add_argument("name", help="dataset name (see above)")
    pr.add_argument("output", help="HDF5 file to write (train and test groups)")
    pr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sy = dsub.add_parser("synth", help="seeded sparse classification set with Zipf-like "
                         "feature frequencies, written straight to HDF5")
    sy.add_argument("output", help="HDF5 file to write")
    sy.add_argument("--n", type=int, default=200000, help="rows in all, train and test "
                    "together: the last 10%% form the test group (default 200000)")
    sy.add_argument("--d", type=int, default=2**20, help="features (default 2^20)")
    sy.add_argument("--nnz", type=int, default=75, help="non-zeros per row")
    sy.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    de = dsub.add_parser("describe", help="summary of a dataset file")
    de.add_argument("path", help="dataset file (HDF5, LIBSVM, CSV, .npy or .npz) or a glob "
                    "of parts")

    i = sub.add_parser("inspect", help="print a checkpoint's or final model's manifest and "
                       "arrays", description="Print the manifest (algorithm, job hash, model "
                       "metadata) and the arrays of a checkpoint or final.h5. Given a run "
                       "directory: its final.h5 and a list of its checkpoints.")
    i.add_argument("path", help="checkpoint .h5, final.h5, or a run directory")

    e = sub.add_parser("eval", help="objective/accuracy/reconstruction of a run's model",
                       description="Evaluate a run's model on its job's test data (train "
                       "data if the job has none) with the run's own resolved job "
                       "(RUN_DIR/job.toml). The older form `eval JOB.toml MODEL.h5` checks "
                       "that the model's job hash matches the job (exit 65 if not).")
    e.add_argument("run", metavar="RUN_DIR|JOB",
                   help="run directory (uses its job.toml and final.h5), or a job file")
    e.add_argument("model", nargs="?", help="final.h5 or a checkpoint (default: the run's "
                   "final.h5; required with a job file)")
    e.add_argument("--data", metavar="FILE", help="evaluate on FILE instead of the job's "
                   "test data (same [data] options; an HDF5 file's `test` group if it has one)")
    e.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a job key (value parsed as TOML); the result must still "
                   "be the model's job (hash checked)")

    pd = sub.add_parser("predict", help="apply a trained model to new rows (under mpiexec: "
                        "each rank its rows)",
                        description="Predict every row of DATA with the model of RUN_DIR and "
                        "write OUT.h5 (rows in input order): linear models `score` and "
                        "`label` (original label values); autoencoders `code` (float32); "
                        "parmac-ba `code` (uint8 0/1); mac/backprop `code` (narrowest "
                        "layer). Rows are normalised as in training.")
    pd.add_argument("run", metavar="RUN_DIR", help="run directory (or its final.h5)")
    pd.add_argument("data", metavar="DATA", help="rows to predict: HDF5, LIBSVM, CSV or "
                    ".npy, with the model's feature count; labels are not needed (HDF5 "
                    "without y, LIBSVM lines that start with idx:val, or --no-labels)")
    pd.add_argument("--out", required=True, metavar="OUT.h5", help="output file (written "
                    "atomically by rank 0)")
    pd.add_argument("--reconstruct", action="store_true", help="autoencoders: also write "
                    "`reconstruction` (n × features)")
    pd.add_argument("--group", default="test", help="HDF5 group to read (default test; the "
                    "file's root when it has no such group)")
    pd.add_argument("--format", default="auto", choices=["auto", "h5", "libsvm", "csv",
                                                         "npy", "npz"],
                    help="input format (default: from the file name)")
    pd.add_argument("--no-labels", action="store_true", help="no row holds a label: every "
                    "CSV column and every LIBSVM token is a feature (a CSV with a label "
                    "column, e.g. a dummy one, needs no flag: column 0 is the label, or "
                    "the --label-column one)")
    pd.add_argument("--label-column", metavar="K", help="CSV only: the label (read and "
                    "ignored) is column K, 0-based; negative counts from the end (-1 = the "
                    "last). Default 0")

    ex = sub.add_parser("export", help="write a run's model as .npz or a scikit-learn "
                        "estimator", description="Export the model of RUN_DIR: `npz` (every "
                        "array plus a `metadata` JSON string) or `sklearn` (a pickled fitted "
                        "LogisticRegression / LinearSVC / Ridge whose predictions equal "
                        "mpitrain's; linear models only).")
    ex.add_argument("run", metavar="RUN_DIR", help="run directory (or its final.h5)")
    ex.add_argument("--format", required=True, choices=["npz", "sklearn"],
                    help="npz: arrays + metadata; sklearn: pickled estimator")
    ex.add_argument("--out", help="output file (default RUN_DIR/model.npz or model.pkl)")

    pl = sub.add_parser("plot", help="PNG of metrics, several runs overlaid",
                        description="Plot a metric of one or several runs against wall time "
                        "and against communication. The default quantity depends on the "
                        "model family: linear runs the objective (its gap to F* on a log "
                        "scale when F* is given or the run recorded a certified lower bound), "
                        "autoencoders the reconstruction error, parmac-ba the precision, "
                        "mac/backprop the nested error. Damaged lines of metrics.jsonl are "
                        "skipped (and counted).")
    pl.add_argument("runs", nargs="+", help="run directories")
    pl.add_argument("-o", "--output", default="metrics.png", help="PNG file (default "
                    "metrics.png)")
    pl.add_argument("--y", default=None, help="metric on the y axis (default: by family; a "
                    "wrong name lists the recorded ones)")
    pl.add_argument("--gap", type=float, default=None, metavar="FSTAR",
                    help="plot the metric − FSTAR on a log scale (FSTAR: a certified optimum "
                    "or lower bound)")
    pl.add_argument("--raw", action="store_true", help="plot the metric's values, never a gap")

    b = sub.add_parser("bench", help="side-by-side benchmarks (writes report.md, "
                       "results.json)", add_help=False,
                       description="Run benchmark NAME; `mpitrain bench` lists them and "
                       "`mpitrain bench NAME --help` shows a benchmark's options.")
    b.add_argument("-h", "--help", action="store_true", dest="bench_help",
                   help="list the benchmarks")
    b.add_argument("name", nargs="?", help="benchmark name; `mpitrain bench` lists them")
    b.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")

    a = sub.add_parser("algorithms", help="list algorithms, or every job key of one",
                       description="List the algorithms, or every job-file key of one.")
    a.add_argument("name", nargs="?", help="algorithm name (e.g. fadl)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.verb is None:
        _parser().print_help()
        return EX_USAGE
    if args.verb == "run":
        return _run(args)
    try:
        return _serial(args)
    except UserError as err:
        report_user_error(err, 0, 1)
        return err.code


def _threads_from_job(path):
    try:
        import tomllib
        with open(path, "rb") as fh:
            t = tomllib.load(fh).get("job", {}).get("threads", 0)
        return t if isinstance(t, int) and t > 0 else None
    except Exception:
        return None


def _run(args):
    threads = set_thread_env(_threads_from_job(args.job))
    import mpi4py.MPI  # noqa: F401  (initialises MPI)
    from .comm import World
    from .runtime import StopSignals, check_launch, collectively
    world = World()
    signals = StopSignals().install(world.comm)
    try:
        from ._kernels import omp
        omp.set_num_threads(threads)
        from . import config, driver
        collectively(world, check_launch, world)
        overrides = collectively(world, config.parse_set, args.set)
        driver.run(world, args.job, out=args.out, resume=args.resume, overrides=overrides,
                   fresh=args.fresh, signals=signals)
        code = 0
    except Stopped:
        code = EX_TEMPFAIL
    except UserError as err:
        code = _collective_user_error(err, world)
    except BaseException:
        internal_error(world.rank, world.size)
    signals.close()
    sys.stdout.flush()
    return code


def _serial(args):
    if args.verb == "data":
        return _data(args)
    if args.verb == "inspect":
        print(_inspect(args.path))
        return 0
    if args.verb == "eval":
        return _eval(args)
    if args.verb == "predict":
        return _predict(args)
    if args.verb == "export":
        from .export import export
        print(f"wrote {export(args.run, args.format, args.out)}")
        return 0
    if args.verb == "plot":
        from .plot import plot_runs
        path, notes = plot_runs(args.runs, args.output, y=args.y, fstar=args.gap,
                                raw=args.raw)
        for line in notes:
            print(line)
        print(f"wrote {path}")
        return 0
    if args.verb == "bench":
        from .bench import run_bench
        return run_bench(None if args.bench_help else args.name, args.args)
    if args.verb == "algorithms":
        return _algorithms(args.name)
    return EX_USAGE


def _inspect(path):
    from .checkpoint import candidates
    from .errors import InputMissing
    if not os.path.exists(path):
        raise InputMissing(f"{path}: not found")
    if not os.path.isdir(path):
        return _describe(path)
    final = os.path.join(path, "final.h5")
    cks = candidates(os.path.join(path, "checkpoints"))
    if not os.path.exists(final) and not cks:
        raise InputMissing(f"{path}: no final.h5 and no checkpoints (not a run directory?)")
    lines = [_describe(final)] if os.path.exists(final) else [f"{path}: no final.h5 yet"]
    lines.append(f"checkpoints ({len(cks)}):" if cks else "no checkpoints")
    lines += [f"  {c}" for c in cks]
    return "\n".join(lines)


def _describe(path):
    """checkpoint.describe, with a final model's resolved job shown as one line."""
    from .checkpoint import describe
    from .model_file import manifest
    text = describe(path)
    job = manifest(path).get("job_toml")
    if isinstance(job, str) and job:
        text = text.replace(job, f"({job.count(chr(10))} lines: the resolved job)")
    return text


def _eval(args):
    """`eval RUN_DIR [MODEL]` (the run's job.toml) or `eval JOB MODEL` (hash checked)."""
    from .errors import InputMissing
    if not os.path.exists(args.run):
        raise InputMissing(f"{args.run}: no such run directory or job file")
    if os.path.isdir(args.run):
        job = os.path.join(args.run, "job.toml")
        if not os.path.exists(job):
            raise InputMissing(f"{args.run}: no job.toml (not a run directory?)")
        model = args.model or os.path.join(args.run, "final.h5")
    else:
        job, model = args.run, args.model
        if model is None:
            raise UsageError("eval JOB.toml needs the model file too: `mpitrain eval JOB.toml "
                             "MODEL.h5` (or pass a run directory: `mpitrain eval RUN_DIR`)")
    set_thread_env()
    from .comm import World
    from . import config, driver
    world = World()
    res = driver.evaluate(world, job, model, config.parse_set(args.set), data_path=args.data)
    if world.rank == 0:
        for k, v in res.items():
            print(f"{k}: {v:.10g}" if isinstance(v, float) else f"{k}: {v}")
    return 0


def _collective_user_error(err, world):
    """A user error under mpiexec: one line when every rank shares it, else this rank's line
    and an abort of the job (runtime.report_user_error); returns the exit code."""
    if not report_user_error(err, world.rank, world.size):
        abort(err.code, world.rank)
    return err.code


def _predict(args):
    set_thread_env()
    from .comm import World
    from .predict import predict
    world = World()
    try:
        n = predict(world, args.run, args.data, args.out, reconstruct=args.reconstruct,
                    group=args.group, fmt=args.format, no_labels=args.no_labels,
                    label_column=args.label_column)
    except UserError as err:
        return _collective_user_error(err, world)
    except BaseException:   # one rank's failure must end the job, not leave it in a collective
        internal_error(world.rank, world.size)
    if world.rank == 0:
        print(f"wrote {args.out}: {n} rows")
    return 0


def _algorithms(name):
    from .algorithms import registry
    from .config import describe
    reg = registry()
    if name is None:
        for n, cls in sorted(reg.items()):
            print(f"{n:14s} {cls.summary}")
        return 0
    if name not in reg:
        raise UsageError(f"unknown algorithm {name!r}; known: {', '.join(sorted(reg))}")
    print(f"{name}: {reg[name].summary}\n")
    print(describe(reg[name]))
    return 0


def _data(args):
    if args.data_verb is None:
        raise UsageError("data needs an action: convert, prepare, synth, describe")
    if args.data_verb == "convert":
        from .convert import libsvm_to_h5
        info = libsvm_to_h5(args.input, args.output, zero_based=args.zero_based,
                            features=args.features, group=args.group,
                            overwrite=args.overwrite)
        print(f"wrote {args.output}: {info['n']} rows x {info['d']} features, "
              f"{info['nnz']} non-zeros")
        return 0
    from . import datasets
    if args.data_verb == "prepare":
        if args.name not in datasets.NAMES:
            raise UsageError(f"unknown dataset {args.name!r}; known: {', '.join(datasets.NAMES)}")
        try:
            info = datasets.prepare(args.name, args.output, seed=args.seed)
        except datasets.MissingPackage as exc:
            from .errors import InputMissing
            raise InputMissing(str(exc))
        print(f"wrote {args.output}: {info}")
        return 0
    if args.data_verb == "synth":
        info = datasets.synth(args.output, n=args.n, d=args.d, nnz_per_row=args.nnz,
                              seed=args.seed)
        print(f"wrote {args.output}: {info['n_train']} training rows (group train) + "
              f"{info['n_test']} test rows (group test) = {args.n} rows x {info['d']} "
              f"features, {info['nnz']} non-zeros")
        return 0
    if args.data_verb == "describe":
        from .data import describe
        print(describe(args.path))
        return 0
    return EX_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
