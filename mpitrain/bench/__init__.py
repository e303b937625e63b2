"""`mpitrain bench NAME`: side-by-side benchmarks, one module per benchmark.

Each module mpitrain/bench/<name>.py (dashes in NAME become underscores) has
`main(argv) -> int` and a docstring whose first line is listed by `mpitrain bench`.
Benchmarks run our methods and their comparators in one process tree on the same data and
write report.md + results.json (times as medians of repeats, ratios to the comparator,
objective reached, communication counts, and the machine).
"""
import importlib
import pkgutil

from ..errors import UsageError


def available():
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "main"):
            out[info.name.replace("_", "-")] = (mod.__doc__ or "").strip().splitlines()[0]
    return out


def run_bench(name, argv):
    benches = available()
    if not name or name in ("-h", "--help"):
        print("usage: mpitrain bench NAME [options]   (mpitrain bench NAME --help)\n")
        for n, doc in sorted(benches.items()):
            print(f"  {n:16s} {doc}")
        return 0
    if name not in benches:
        raise UsageError(f"unknown benchmark {name!r}; known: {', '.join(sorted(benches))}")
    mod = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    return mod.main(argv)
