"""Job files: TOML validated against a schema built from the chosen algorithm.

A job has the stable sections [job], [data], [model], [solver], [checkpoint]. [job] and
[data] and [checkpoint] are common to every algorithm; [model] and [solver] come from the
algorithm module (`MODEL_SCHEMA`, `SOLVER_SCHEMA`). Any unknown key, wrong type or missing
required value is a `JobError` (exit 78) naming the file, the section, the key and what is
allowed. `--set section.key=value` overrides are applied before validation.
"""
import copy
import difflib
import hashlib
import itertools
import json
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from .errors import InputMissing, JobError, UsageError
from .schema import REQUIRED, Field

JOB_SCHEMA = {
    "algorithm": Field(str, help="which method to run (see `mpitrain run --help`)"),
    "seed": Field(int, 0, "seed of every random stream (numpy SeedSequence)", min=0),
    "out": Field(str, "", "run directory (default runs/<job file name>)", affects_result=False),
    "threads": Field(int, 0, "OpenMP/BLAS threads per rank; 0 = CPUs on the node / local "
                     "ranks", min=0, affects_result=False, max=4096),
    "log_every": Field(int, 1, "print a progress line every N iterations", min=1,
                       affects_result=False),
    "time_limit": Field(float, 0.0, "seconds; checkpoint and exit 75 when exceeded (0 = none)",
                        min=0.0, affects_result=False),
    "stall_timeout": Field(float, 600.0, "seconds a rank may wait for its peers in one "
                           "collective before the job ends (exit 69) naming the ranks that "
                           "did not arrive (0 = never)", min=0.0, affects_result=False),
}

DATA_SCHEMA = {
    "train": Field(str, help="training data: .h5 (dense X or CSR), LIBSVM text, CSV, .npy "
                   "or .npz; a glob pattern (data/part-*) reads the matches as one dataset; "
                   "a relative path is relative to the job file"),
    "test": Field(str, "", "test data (same formats); optional"),
    "format": Field(str, "auto", "file format (auto: from the extension; LIBSVM otherwise)",
                    choices=["auto", "h5", "libsvm", "csv", "npy", "npz"]),
    "label_column": Field(str, "0", "CSV: the label column, by header name or 0-based index "
                          "(a header line is detected when a field is not a number)"),
    "train_group": Field(str, "train", "HDF5 group of the training rows (root if absent)"),
    "test_group": Field(str, "test", "HDF5 group of the test rows (root if absent)"),
    "features": Field(int, 0, "number of features; 0 = from the data", min=0),
    "zero_based": Field(bool, False, "LIBSVM feature indices start at 0 (default 1)"),
    "positive": Field("list[float]", [], "labels mapped to +1 (all others to -1); empty = "
                      "labels must already be binary (+1/-1 or 1/0)"),
    "normalize": Field(str, "none", "row scaling", choices=["none", "unit_rows"]),
    "max_rows": Field(int, 0, "use only the first N training rows (0 = all)", min=0),
}

CHECKPOINT_SCHEMA = {
    "every": Field(int, 10, "write a checkpoint every N iterations (0 = only on stop/end)",
                   min=0, affects_result=False),
    "keep": Field(int, 3, "keep the newest K checkpoints", min=1, affects_result=False),
}

def _sections(algo_cls):
    return {
        "job": JOB_SCHEMA,
        "data": DATA_SCHEMA,
        "model": algo_cls.MODEL_SCHEMA,
        "solver": getattr(algo_cls, "SOLVER_SCHEMA", {}),
        "checkpoint": CHECKPOINT_SCHEMA,
    }


def read_toml(path):
    if not os.path.exists(path):
        raise InputMissing(f"{path}: job file not found")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{path}: not valid TOML: {exc}")
    except UnicodeDecodeError as exc:
        raise JobError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.object[exc.start]:#04x}"
                       f" at offset {exc.start})")
    except OSError as exc:
        raise InputMissing(f"{path}: cannot read job file: {exc.strerror}")


def parse_set(items):
    """['solver.max_iter=50', ...] → [(section, key, value)]; values parsed as TOML."""
    out = []
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UsageError(f"--set {item!r}: expected section.key=value")
        lhs, rhs = item.split("=", 1)
        section, key = lhs.strip().split(".", 1)
        try:
            value = tomllib.loads(f"v = {rhs}")["v"]
        except tomllib.TOMLDecodeError:
            value = rhs
        out.append((section, key, value))
    return out


def resolve(raw, source, overrides, registry):
    """Validate a parsed job against the schema of its algorithm (`registry`: name → class,
    handed in by the caller, so this module knows no algorithm); return a dict of sections
    with defaults."""
    raw = copy.deepcopy(raw)
    for section, key, value in overrides:
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise JobError(f"{source}: [{section}] must be a table")
        raw[section][key] = value
    job = raw.get("job")
    if not isinstance(job, dict) or "algorithm" not in job:
        raise JobError(f"{source}: [job] algorithm is required; allowed values: "
                       + ", ".join(sorted(registry)))
    name = job["algorithm"]
    if name not in registry:
        hint = difflib.get_close_matches(str(name), list(registry), n=1)
        raise JobError(f"{source}: [job] algorithm = {name!r} is unknown"
                       + (f" (did you mean {hint[0]!r}?)" if hint else "")
                       + "; allowed values: " + ", ".join(sorted(registry)))
    schema = _sections(registry[name])
    for section in raw:
        if section not in schema:
            hint = difflib.get_close_matches(section, list(schema), n=1)
            raise JobError(f"{source}: unknown section [{section}]"
                           + (f" (did you mean [{hint[0]}]?)" if hint else "")
                           + "; allowed sections: " + ", ".join(f"[{s}]" for s in schema))
    out = {}
    for section, fields in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise JobError(f"{source}: [{section}] must be a table")
        for key in given:
            if key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1)
                allowed = ", ".join(sorted(fields)) or "(none for this algorithm)"
                raise JobError(f"{source}: [{section}] unknown key {key!r}"
                               + (f" (did you mean {hint[0]!r}?)" if hint else "")
                               + f"; allowed keys: {allowed}")
        sec = {}
        for key, field in fields.items():
            where = f"{source}: [{section}] {key}"
            if key in given:
                sec[key] = field.check(given[key], where)
            elif field.default is REQUIRED:
                raise JobError(f"{where} is required ({field.type_name()}: {field.help})")
            else:
                sec[key] = copy.deepcopy(field.default)
        out[section] = sec
    cls = registry[name]
    if getattr(cls, "SMOOTH_ONLY", False) and out["model"].get("l1", 0.0) != 0.0:
        raise JobError(f"{source}: [model] l1 = {out['model']['l1']} is not supported by "
                       f"{name} (smooth objectives only); use dasvrda, prox-svrg or katyusha "
                       "for l1 > 0")
    if "intercept" in out.get("model", {}):  # the linear family (models/glm.py)
        from .models.glm import check_job
        check_job(name, out, source)
    if hasattr(cls, "validate_job"):
        cls.validate_job(out, source)
    return out


def job_hash(job, algo_cls):
    """Hash of everything in the job that determines the result (not caps, logs, paths)."""
    schema = _sections(algo_cls)
    keep = {s: {k: v for k, v in job[s].items()
                if schema[s][k].affects_result
                and (schema[s][k].hash_omits is None or v != schema[s][k].hash_omits)}
            for s in job}
    # Data paths: the file's name, not its directory, so a moved run directory still resumes.
    for key in ("train", "test"):
        if key in keep.get("data", {}):
            keep["data"][key] = os.path.basename(keep["data"][key])
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def older_defaults(job, algo_cls, want_hash, most=3, budget=20000):
    """The keys this resolved job leaves at their defaults which, set to other values, give
    the job hash `want_hash` (that of a checkpoint or model written with an older default):
    [(section, key, value)] of the smallest such set (schema order), or None.

    Tried for each key that determines the result and whose value is its default: its
    `hash_omits` (the value of runs written before the key existed or its default changed),
    then its other `choices`, or the other bool. Sets of 1 to `most` keys, smaller sets first,
    at most `budget` hashes; a key set to a value other than its default is never changed, so
    a job whose data or explicit settings differ finds nothing."""
    if not want_hash:
        return None
    options = []  # (section, key, [values to try])
    for section, fields in _sections(algo_cls).items():
        for key, f in fields.items():
            if not f.affects_result or job.get(section, {}).get(key, REQUIRED) != f.default:
                continue
            alts = [f.hash_omits] if f.hash_omits not in (None, f.default) else []
            alts += [c for c in f.choices or () if c != f.default and c not in alts]
            if f.type is bool and (not f.default) not in alts:
                alts.append(not f.default)
            if alts:
                options.append((section, key, alts))
    tried = 0
    for size in range(1, most + 1):
        for keys in itertools.combinations(options, size):
            for values in itertools.product(*(alts for _, _, alts in keys)):
                tried += 1
                if tried > budget:
                    return None
                trial = dict(job)
                for (section, key, _), value in zip(keys, values):
                    trial[section] = {**trial[section], key: value}
                if job_hash(trial, algo_cls) == want_hash:
                    return [(s, k, v) for (s, k, _), v in zip(keys, values)]
    return None


def older_defaults_hint(job, algo_cls, want_hash):
    """'written with older defaults: set in the job [solver] ls_c2 = 0.9 and search = "line"'
    (TOML lines a user can paste) when `older_defaults` finds the keys, else None."""
    found = older_defaults(job, algo_cls, want_hash)
    if not found:
        return None
    schema = _sections(algo_cls)
    older = all(schema[s][k].hash_omits == v for s, k, v in found)
    parts = [("" if i and found[i - 1][0] == s else f"[{s}] ") + f"{k} = {_toml_value(v)}"
             for i, (s, k, v) in enumerate(found)]
    keys = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    what = ("older defaults" if older
            else "other values of keys this job leaves at their defaults")
    return f"written with {what}: set in the job {keys}"


def dump_toml(job):
    """The resolved job as TOML text (written to OUT/job.toml)."""
    lines = []
    for section, values in job.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def describe(algo_cls):
    """Help text: every key of every section for one algorithm."""
    lines = []
    for section, fields in _sections(algo_cls).items():
        lines.append(f"[{section}]")
        for key, f in fields.items():
            d = "required" if f.default is REQUIRED else f"default {f.default!r}"
            ch = f"; one of {', '.join(map(repr, f.choices))}" if f.choices else ""
            lines.append(f"  {key} ({f.type_name()}, {d}{ch}): {f.help}")
    return "\n".join(lines)
