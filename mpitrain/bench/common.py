"""Helpers shared by the benchmarks: machine facts, launching runs, medians, reports."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def machine():
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from mpi4py import MPI
        mpi = MPI.Get_library_version().splitlines()[0].strip()
    except Exception:
        mpi = "?"
    import numpy
    return {"cpus": cpus, "cpu": cpu, "python": platform.python_version(),
            "numpy": numpy.__version__, "mpi": mpi, "host": platform.node(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def mpirun(nranks, job, out, sets=(), threads=1, extra_env=None, timeout=3600, quiet=True):
    """Run `mpiexec -n P mpitrain run JOB` as a subprocess; returns (seconds, returncode)."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads)})
    env.update(extra_env or {})
    cmd = [mpiexec(), "-n", str(nranks), sys.executable, "-m", "mpitrain", "run", job,
           "--out", out, "--fresh"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, timeout=timeout,
                         stdout=subprocess.PIPE if quiet else None,
                         stderr=subprocess.PIPE if quiet else None, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        sys.stderr.write(f"bench: {' '.join(cmd)} failed ({res.returncode}):\n"
                         f"{(res.stderr or '')[-3000:]}\n")
    return dt, res.returncode


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else "mpiexec"


def job_file(out, name, sections):
    """Write the job OUT/NAME.toml from {section: {key: value}}; returns its path."""
    from ..config import dump_toml
    path = os.path.join(out, f"{name}.toml")
    with open(path, "w") as fh:
        fh.write(dump_toml(sections))
    return path


def counts(text):
    """An argparse type: distinct positive integers, comma-separated ("1,2,4"), in the order
    given (rank or thread counts)."""
    import argparse
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not out or min(out) < 1 or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"counts must be distinct and ≥ 1: {text!r}")
    return out


def median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_report(outdir, title, sections, results):
    """report.md (title, machine, markdown sections) and results.json."""
    os.makedirs(outdir, exist_ok=True)
    mach = machine()
    results = dict(results, machine=mach)
    with open(os.path.join(outdir, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    lines = [f"# {title}", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in mach.items()), ""]
    for s in sections:
        lines.append(s)
        lines.append("")
    with open(os.path.join(outdir, "report.md"), "w") as fh:
        fh.write("\n".join(lines))
    return os.path.join(outdir, "report.md")


def table(headers, rows):
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(x) for x in r) + " |")
    return "\n".join(out)


def _fmt(x):
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)
