"""mpitrain command line: run, data, inspect, eval, plot, bench, algorithms.

Exit codes (sysexits): 0 done · 64 usage · 65 bad data · 66 input missing · 73 cannot write
output · 75 stopped by a signal after a checkpoint · 78 bad job file · 1 internal error.
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
                       "summary.json. SIGTERM/SIGUSR1 → checkpoint and exit 75. See "
                       "`mpitrain algorithms` for every algorithm's keys.")
    r.add_argument("job", help="job file (TOML)")
    r.add_argument("--out", help="run directory (overrides [job] out)")
    r.add_argument("--resume", metavar="auto|PATH",
                   help="continue from the newest complete checkpoint (auto) or PATH")
    r.add_argument("--fresh", action="store_true",
                   help="discard checkpoints of an earlier run in the run directory")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a job-file key (value parsed as TOML); repeatable")

    d = sub.add_parser("data", help="convert, prepare, synthesise or describe datasets")
    dsub = d.add_subparsers(dest="data_verb", metavar="ACTION", parser_class=_Parser)
    c = dsub.add_parser("convert", help="LIBSVM text → HDF5 CSR (streaming)")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--zero-based", action="store_true", help="indices start at 0")
    c.add_argument("--features", type=int, default=0, help="declared width (0 = from data)")
    c.add_argument("--group", default="train", help="HDF5 group to write (default train); "
                   "added to an existing HDF5 output, whose other groups are kept")
    c.add_argument("--overwrite", action="store_true", help="replace the group if the output "
                   "already has it (or an existing output that is not HDF5)")
    pr = dsub.add_parser("prepare", help="write a built-in real dataset to HDF5 "
                         "(mnist, mnist-2vr, digits, digits-2vr, rt-polarity)")
    pr.add_argument("name")
    pr.add_argument("output")
    pr.add_argument("--seed", type=int, default=0)
    sy = dsub.add_parser("synth", help="seeded sparse classification set with Zipf-like "
                         "feature frequencies, written straight to HDF5")
    sy.add_argument("output")
    sy.add_argument("--n", type=int, default=200000)
    sy.add_argument("--d", type=int, default=2**20)
    sy.add_argument("--nnz", type=int, default=75, help="non-zeros per row")
    sy.add_argument("--seed", type=int, default=0)
    de = dsub.add_parser("describe", help="summary of a dataset file")
    de.add_argument("path")

    i = sub.add_parser("inspect", help="print a checkpoint's or final model's manifest and "
                       "arrays")
    i.add_argument("path")

    e = sub.add_parser("eval", help="objective/accuracy/reconstruction of a model on the "
                       "job's test data")
    e.add_argument("job")
    e.add_argument("model", help="final.h5 or a checkpoint")
    e.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")

    pl = sub.add_parser("plot", help="PNG of metrics, several runs overlaid")
    pl.add_argument("runs", nargs="+", help="run directories")
    pl.add_argument("-o", "--output", default="metrics.png")
    pl.add_argument("--y", default="objective", help="metric on the y axis")
    pl.add_argument("--gap", type=float, default=None, metavar="FSTAR",
                    help="plot objective − FSTAR on a log scale (default FSTAR: the lowest "
                    "objective of the runs)")
    pl.add_argument("--raw", action="store_true", help="plot the metric's values, not a gap")

    b = sub.add_parser("bench", help="side-by-side benchmarks (writes report.md, "
                       "results.json)", add_help=False)
    b.add_argument("name", nargs="?", help="benchmark name; `mpitrain bench` lists them")
    b.add_argument("args", nargs=argparse.REMAINDER)

    a = sub.add_parser("algorithms", help="list algorithms, or every job key of one")
    a.add_argument("name", nargs="?")
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
    signals = StopSignals().install()
    world = World()
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
        if not report_user_error(err, world.rank, world.size):
            abort(err.code, world.rank)
        code = err.code
    except BaseException:
        internal_error(world.rank, world.size)
    sys.stdout.flush()
    return code


def _serial(args):
    if args.verb == "data":
        return _data(args)
    if args.verb == "inspect":
        from .checkpoint import describe
        print(describe(args.path))
        return 0
    if args.verb == "eval":
        set_thread_env()
        from .comm import World
        from . import config, driver
        world = World()
        res = driver.evaluate(world, args.job, args.model, config.parse_set(args.set))
        if world.rank == 0:
            for k, v in res.items():
                print(f"{k}: {v:.10g}" if isinstance(v, float) else f"{k}: {v}")
        return 0
    if args.verb == "plot":
        from .plot import plot_runs
        path = plot_runs(args.runs, args.output, y=args.y, fstar=args.gap, raw=args.raw)
        print(f"wrote {path}")
        return 0
    if args.verb == "bench":
        from .bench import run_bench
        return run_bench(args.name, args.args)
    if args.verb == "algorithms":
        return _algorithms(args.name)
    return EX_USAGE


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
        print(f"wrote {args.output}: {info}")
        return 0
    if args.data_verb == "describe":
        if not os.path.exists(args.path):
            from .errors import InputMissing
            raise InputMissing(f"{args.path}: not found")
        print(datasets.describe(args.path))
        return 0
    return EX_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
