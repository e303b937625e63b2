"""CLI papercuts and following a run: --help on every verb and subverb with every argument
described, bench --help, inspect (exit 66, run directories), plot (per-family quantity, bad
--y, damaged metrics.jsonl), progress-line format, the stop reason on the `done:` line, and
communication counters that continue across a resume."""
import argparse
import io
import json
import os
import re

import pytest

from util import cli, write_job

pytestmark = pytest.mark.timeout(180)


def _subcommands(parser, path=()):
    yield list(path), parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _subcommands(sub, path + (name,))


def _all_commands():
    from mpitrain.cli import _parser
    return [p for p, _ in _subcommands(_parser())]


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "mpitrain")
def test_help_of_every_verb(path, capsys):
    from mpitrain.cli import _parser, main
    parser = dict((tuple(p), sp) for p, sp in _subcommands(_parser()))[tuple(path)]
    undescribed = [a.dest for a in parser._actions
                   if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
                   and not a.help]
    assert not undescribed, f"{' '.join(path)}: arguments without help: {undescribed}"
    try:
        code = main(path + ["--help"])  # bench lists its benchmarks and returns 0
    except SystemExit as exc:  # argparse's help exits 0
        code = exc.code
    out = capsys.readouterr().out
    assert code == 0 and ("usage:" in out or "mpitrain bench NAME" in out)


def test_bench_help_lists_benchmarks():
    res = cli(["bench", "--help"])
    assert res.returncode == 0 and "linear" in res.stdout
    sub = cli(["bench", "linear", "--help"])  # reaches the benchmark's own parser
    assert sub.returncode == 0 and "--quick" in sub.stdout


@pytest.fixture(scope="module")
def lin_run(tmp_path_factory, digits2_h5):
    from mpitrain import driver
    from mpitrain.comm import World
    tmp = tmp_path_factory.mktemp("cli")
    job = write_job(str(tmp / "lin.toml"), {
        "job": {"algorithm": "lbfgs"}, "data": {"train": digits2_h5, "test": digits2_h5},
        "solver": {"max_iter": 8}, "checkpoint": {"every": 4}})
    run = str(tmp / "run")
    stream = io.StringIO()
    driver.run(World(), job, out=run, fresh=True, stream=stream)
    return job, run, stream.getvalue()


def test_progress_lines_and_done_reason(lin_run):
    _, _, text = lin_run
    lines = [ln for ln in text.splitlines() if re.match(r"\[lbfgs\] step ", ln)]
    assert len(lines) == 8
    pat = (r"^\[lbfgs\] step +(\d+)/8  objective [-\d.e+]+  grad_norm \S+  .*"
           r"[\d.e+-]+ s/step  ETA \d+:\d\d:\d\d  elapsed [\d.]+s  comm [\d.]+s/\d+ calls  "
           r"\d\d:\d\d:\d\d$")
    for k, ln in enumerate(lines, 1):
        m = re.match(pat, ln)
        assert m and int(m.group(1)) == k, ln
    done = text.splitlines()[-1]
    assert re.match(r"^\[lbfgs\] done: 8 steps in [\d.]+s \(stop: max_iter\); model ", done)


def test_progress_with_budget_shows_total_and_eta(tmp_path):
    from mpitrain.metrics import Metrics

    class W:
        rank = 0

        def counters(self):
            return {"comm_calls": 3, "comm_bytes": 24, "comm_seconds": 0.5}
    out = io.StringIO()
    m = Metrics(W(), str(tmp_path), "x", stream=out)
    state = {"epoch": 0}
    m.budget = lambda: (state["epoch"], 10, "epoch")
    state["epoch"] = 2
    m.log(1, 1.0, {"loss": 0.5, "rows": 1000})
    m.budget = lambda: (state["epoch"], 4, "step")
    m.log(2, 2.0, {"loss": 0.4})
    m.close()
    first, second = out.getvalue().splitlines()
    assert re.search(r"step +1  epoch 2/10  loss 0\.5  .* s/step  [\d.e+]+ rows/s  "
                     r"ETA \d+:\d\d:\d\d  elapsed 1\.00s  comm 0\.50s/3 calls", first), first
    assert "step     2/4" in second


@pytest.mark.e2e
def test_comm_counters_continue_across_resume(tmp_path, digits2_h5):
    job = write_job(str(tmp_path / "j.toml"), {
        "job": {"algorithm": "lbfgs"}, "data": {"train": digits2_h5},
        "solver": {"max_iter": 6}})
    run = str(tmp_path / "r")
    first = cli(["run", job, "--out", run, "--set", "job.time_limit=1e-9"], nranks=2)
    assert first.returncode == 75, first.stderr
    again = cli(["run", job, "--out", run, "--resume", "auto"], nranks=2)
    assert again.returncode == 0, again.stderr
    recs = [json.loads(ln) for ln in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["step"] for r in recs] == list(range(1, 7))
    for key in ("comm_calls", "comm_bytes", "comm_seconds"):
        vals = [r[key] for r in recs]
        assert vals == sorted(vals) and vals[-1] > vals[0], (key, vals)


def test_inspect_missing_and_run_directory(lin_run, tmp_path):
    missing = cli(["inspect", str(tmp_path / "nope.h5")])
    assert missing.returncode == 66 and missing.stderr.count("\n") == 1
    _, run, _ = lin_run
    res = cli(["inspect", run])
    assert res.returncode == 0, res.stderr
    assert "family: linear" in res.stdout and "model/w" in res.stdout
    assert "job_toml: (" in res.stdout and "checkpoints (" in res.stdout
    empty = cli(["inspect", str(tmp_path)])
    assert empty.returncode == 66 and "not a run directory" in empty.stderr


@pytest.mark.e2e
def test_plot_damaged_metrics_and_bad_metric(lin_run, tmp_path):
    import shutil
    _, run, _ = lin_run
    damaged = str(tmp_path / "damaged")
    shutil.copytree(run, damaged)
    with open(os.path.join(damaged, "metrics.jsonl"), "a") as fh:
        fh.write('{"step": 9, "objec\n[1, 2]\n')
    png = str(tmp_path / "m.png")
    res = cli(["plot", damaged, run, "-o", png])
    assert res.returncode == 0, res.stderr
    assert "skipped 2 damaged line(s)" in res.stdout and os.path.getsize(png) > 1000
    gap = cli(["plot", run, "-o", png, "--gap", "0.01"])
    assert gap.returncode == 0 and "F* = 0.01 (given)" in gap.stdout
    bad = cli(["plot", run, "--y", "nosuch", "-o", png])
    assert bad.returncode == 64 and "objective" in bad.stderr and "grad_norm" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_plot_chooses_quantity_by_family(tmp_path):
    from mpitrain.plot import certified_lower, plot_runs
    pytest.importorskip("matplotlib")
    run = tmp_path / "ae"
    run.mkdir()
    (run / "job.toml").write_text('[job]\nalgorithm = "sae-greedy"\n')
    recs = [{"step": k, "time": 0.1 * k, "loss": 5.0 - k, "recon": 20.0 - k,
             "comm_calls": k} for k in range(1, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    _, notes = plot_runs([str(run)], str(tmp_path / "a.png"))
    # an autoencoder: its reconstruction error, plain (no F*, no gap)
    assert notes == ["plotted recon against wall time and communication calls (rank 0)"]
    # a linear run with a certified bound: F* = max(objective - certified_gap)
    assert certified_lower([{"objective": 1.0, "certified_gap": 0.5},
                            {"objective": 0.8, "certified_gap": 0.1}]) == pytest.approx(0.7)
