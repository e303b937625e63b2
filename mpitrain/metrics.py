"""Progress a person can follow in a batch log, and metrics.jsonl for plots.

Rank 0 alone prints and writes. Each record has `step`, `time` (seconds since the job
started, over resumes), the algorithm's values (`objective`, `loss`, ...), this rank's
`comm_calls`/`comm_bytes`/`comm_seconds` so far, and per-phase times (`t_<phase>`).
"""
import json
import math
import os
import sys
import time

from . import fileio
from .errors import OutputError


class Metrics:
    def __init__(self, world, out, name, log_every=1, resume_step=None, stream=None):
        self.world = world
        self.name = name
        self.log_every = log_every
        self.stream = stream or sys.stdout
        self._budget = self._done0 = None
        self._wall0, self._step0 = time.perf_counter(), resume_step or 0  # this session
        self._rows = 0
        self.path = os.path.join(out, "metrics.jsonl")
        self.log_file = None
        if world.rank == 0:
            keep = None if resume_step is None else self._kept_lines(resume_step)
            self.log_file = fileio.LineLog(self.path, fresh=True, keep=keep, what="progress")

    def _kept_lines(self, step):
        """The records up to the resumed step (a crash may have left later ones)."""
        kept = []
        try:
            with open(self.path, errors="replace") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and isinstance(rec.get("step", 0), int) \
                            and rec.get("step", 0) <= step:
                        kept.append(line)
        except FileNotFoundError:
            pass
        return kept

    def log(self, step, elapsed, info, force=False):
        rec = {"step": int(step), "time": round(float(elapsed), 6)}
        rec.update({k: _jsonable(v) for k, v in info.items()})
        rec.update({k: (round(v, 6) if isinstance(v, float) else v)
                    for k, v in self.world.counters().items()})
        if self.world.rank != 0:
            return rec
        try:
            self.log_file.append(json.dumps(rec))
        except OutputError as exc:
            raise OutputError(f"{exc}; earlier checkpoints are intact") from None
        if force or step % self.log_every == 0:
            self.print_line(rec)
        return rec

    @property
    def budget(self):
        return self._budget

    @budget.setter
    def budget(self, fn):
        """The algorithm's optional `budget()`: (done, total, unit), e.g. (3, 10, "epoch"),
        or None when it does not know; read now for the rate of this session."""
        self._budget = fn
        got = fn() if fn is not None else None
        self._done0 = got[0] if got else None

    def print_line(self, rec):
        """One progress line: step k[/max] (or the algorithm's unit of its budget), the
        step's values, rate (s/step; rows/s where the step reports `rows`), ETA, elapsed
        time over resumes, MPI seconds/calls of rank 0, and the wall-clock time."""
        now = time.perf_counter()
        got = self._budget() if self._budget is not None else None
        step = f"[{self.name}] step {rec['step']:>5}"
        if got and got[2] == "step":
            step += f"/{got[1]}"
        parts = [step] + ([f"{got[2]} {got[0]}/{got[1]}"] if got and got[2] != "step" else [])
        for key in ("objective", "loss", "gap", "grad_norm", "error", "test_error",
                    "recon", "precision"):
            if key in rec and isinstance(rec[key], (int, float)):
                parts.append(f"{key} {rec[key]:.10g}" if key == "objective"
                             else f"{key} {rec[key]:.4g}")
        for key, value in rec.items():
            if key.startswith("show_"):
                parts.append(f"{key[5:]} {value}")
        spent, steps = now - self._wall0, rec["step"] - self._step0
        if steps > 0 and spent > 0:
            parts.append(f"{spent / steps:.3g} s/step")
            if isinstance(rec.get("rows"), (int, float)):
                self._rows += rec["rows"]
                parts.append(f"{self._rows / spent:.3g} rows/s")
        if got and self._done0 is not None and got[0] > self._done0 and spent > 0:
            eta = (got[1] - got[0]) * spent / (got[0] - self._done0)
            parts.append(f"ETA {_hms(eta)}")
        parts.append(f"elapsed {rec['time']:.2f}s")
        parts.append(f"comm {rec.get('comm_seconds', 0.0):.2f}s/{rec.get('comm_calls', 0)} calls")
        parts.append(time.strftime("%H:%M:%S"))
        self.say("  ".join(parts))

    def say(self, text):
        """Print one whole line from rank 0 (lines from several ranks would interleave)."""
        if self.world.rank == 0:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self):
        if self.log_file is not None:
            log, self.log_file = self.log_file, None
            log.close()


def _hms(seconds):
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _jsonable(v):
    if hasattr(v, "item") and getattr(v, "size", 2) == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class Records(list):
    """The records of a metrics.jsonl; `skipped`: lines that were not a JSON object (a
    damaged or interleaved file)."""
    skipped = 0


def read(run_dir):
    """The records of a run's metrics.jsonl (for plots and benchmarks); damaged lines are
    skipped and counted in the result's `skipped`."""
    path = os.path.join(run_dir, "metrics.jsonl")
    out = Records()
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                out.append(rec)
            else:
                out.skipped += 1
    return out
