"""A checkpoint or model written with an older default (a Field's `hash_omits`, or another
choice of a key this job leaves at its default) is refused with the TOML lines that make the
job its job again (config.older_defaults): the search on a toy schema and on the shipped
algorithms' released hashes, and end to end (resume and eval refused naming the lines; with
them added, both succeed)."""
import os
import re

import pytest

from mpitrain import config
from mpitrain.algorithms import registry
from mpitrain.schema import Field

from util import cli, write_job

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


class Toy:
    name = "toy"
    MODEL_SCHEMA = {"l2": Field(float, 0.0, "penalty")}
    SOLVER_SCHEMA = {
        "c2": Field(float, 0.1, "changed default", hash_omits=0.9),
        "search": Field(str, "plane", "changed default", choices=["plane", "line"],
                        hash_omits="line"),
        "mode": Field(str, "a", "a choice never changed", choices=["a", "b", "c"]),
        "fast": Field(bool, True, "a bool"),
        "eta": Field(float, 0.0, "no choices, no hash_omits"),
        "cap": Field(int, 10, "not in the hash", affects_result=False),
    }


def _toy(**solver):
    return config.resolve({"job": {"algorithm": "toy"}, "data": {"train": "x.h5"},
                           "solver": solver}, "job.toml", [], {"toy": Toy})


def _found(new, old):
    """What older_defaults finds in the job `new` for the job hash of the job `old`."""
    return config.older_defaults(new, Toy, config.job_hash(old, Toy))


@pytest.mark.timeout(30)
def test_one_changed_default():
    assert _found(_toy(), _toy(c2=0.9)) == [("solver", "c2", 0.9)]
    hint = config.older_defaults_hint(_toy(), Toy, config.job_hash(_toy(c2=0.9), Toy))
    assert hint == "written with older defaults: set in the job [solver] c2 = 0.9"


@pytest.mark.timeout(30)
def test_two_changed_defaults_in_schema_order_as_toml():
    old = _toy(search="line", c2=0.9)
    assert _found(_toy(), old) == [("solver", "c2", 0.9), ("solver", "search", "line")]
    hint = config.older_defaults_hint(_toy(cap=3), Toy, config.job_hash(old, Toy))
    assert hint == ('written with older defaults: set in the job [solver] c2 = 0.9 and '
                    'search = "line"')


@pytest.mark.timeout(30)
def test_other_choice_and_bool_of_a_key_left_at_its_default():
    """A key whose default changed before hash_omits existed (dasvrda restart) is found
    through its choices; such a set is not called an older default."""
    assert _found(_toy(), _toy(mode="c")) == [("solver", "mode", "c")]
    old = _toy(fast=False, c2=0.9)
    assert _found(_toy(), old) == [("solver", "c2", 0.9), ("solver", "fast", False)]
    hint = config.older_defaults_hint(_toy(), Toy, config.job_hash(old, Toy))
    assert hint == ("written with other values of keys this job leaves at their defaults: "
                    "set in the job [solver] c2 = 0.9 and fast = false")


@pytest.mark.timeout(30)
def test_no_match():
    assert _found(_toy(), _toy(eta=0.5)) is None          # a key without alternatives
    assert _found(_toy(), _toy(c2=0.5)) is None           # a value other than hash_omits
    other = config.resolve({"job": {"algorithm": "toy"}, "data": {"train": "y.h5"},
                            "solver": {"c2": 0.9}}, "job.toml", [], {"toy": Toy})
    assert _found(_toy(), other) is None                  # other data
    assert config.older_defaults_hint(_toy(), Toy, "0123456789abcdef") is None
    assert config.older_defaults(_toy(), Toy, None) is None


@pytest.mark.timeout(30)
def test_a_key_set_explicitly_is_never_changed():
    # the job sets mode = "b": the old run had mode = "a" (and c2 = 0.9), not found
    assert _found(_toy(mode="b"), _toy(c2=0.9)) is None
    # the old run had mode = "b" too: only c2 is named
    assert _found(_toy(mode="b"), _toy(mode="b", c2=0.9)) == [("solver", "c2", 0.9)]
    # c2 set explicitly to a non-default value is not turned into its hash_omits
    assert _found(_toy(c2=0.5), _toy(c2=0.9)) is None


@pytest.mark.timeout(30)
def test_at_most_three_keys_and_a_budget():
    old = _toy(c2=0.9, search="line", mode="b", fast=False)
    assert _found(_toy(), old) is None
    assert config.older_defaults(_toy(), Toy, config.job_hash(old, Toy), most=4) == [
        ("solver", "c2", 0.9), ("solver", "search", "line"), ("solver", "mode", "b"),
        ("solver", "fast", False)]
    assert config.older_defaults(_toy(), Toy, config.job_hash(_toy(fast=False), Toy),
                                 budget=3) is None


def _changed(cls):
    """Every key of `cls`'s schema whose default changed with its hash_omits kept."""
    return [(s, k, f.hash_omits) for s, fields in config._sections(cls).items()
            for k, f in fields.items() if f.hash_omits not in (None, f.default)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("algorithm, released, before", [
    ("fadl", "b2d36695e53e4e08", []),
    ("dasvrda", "05c9e922fc379400", [("solver", "restart", "adaptive")])])
def test_released_runs_of_the_shipped_algorithms(algorithm, released, before):
    """The default jobs of the last release (tests/test_config.py) against today's default
    job: every changed default with its hash_omits, and `before`, the defaults changed
    without one (dasvrda restarted adaptively)."""
    cls = registry()[algorithm]
    job = config.resolve({"job": {"algorithm": algorithm}, "data": {"train": "x.h5"}},
                         "job.toml", [], registry())
    order = [(s, k) for s, fields in config._sections(cls).items() for k in fields]
    want = sorted(_changed(cls) + before, key=lambda t: order.index(t[:2]))
    assert config.older_defaults(job, cls, released) == want


def _lines(message, tail):
    """The TOML the refusal asks for, as {section: {key: value}}."""
    m = re.search(r"set in the job (.*) " + tail, message)
    assert m, message
    text = re.sub(r"(, | and )(?=\w+ = )", "\n", m.group(1))
    text = re.sub(r"\[(\w+)\] ", r"\n[\1]\n", text)
    return tomllib.loads(text)


@pytest.mark.e2e
@pytest.mark.timeout(240)
@pytest.mark.parametrize("algorithm, solver, changed", [
    ("fadl", {"max_iter": 6, "tol": 0.0, "gap_tol": 0.0}, ("ls_c2", 0.9)),
    ("dasvrda", {"max_stages": 4}, ("practical_c", 4.0))])
def test_resume_and_eval_name_the_lines_of_older_defaults(tmp_path, digits2_h5, algorithm,
                                                          solver, changed):
    """A FADL (DASVRDA) run written with every changed default at its old value explicitly (as
    a run of an older release; DASVRDA: practical_c = 4.0, sc_restart = "off"): resuming and
    evaluating it with a job that lacks those lines is refused (checkpoint: exit 65) naming
    them; with the lines the message names, both succeed."""
    old = {}
    for section, key, value in _changed(registry()[algorithm]):
        old.setdefault(section, {})[key] = value
    assert old.get("solver", {}).get(changed[0]) == changed[1], old
    sections = {"job": {"algorithm": algorithm},
                "data": {"train": digits2_h5, "test": digits2_h5},
                "model": {"l2": 1e-3}, "solver": solver, "checkpoint": {"every": 1}}
    with_old = {s: dict(v, **old.get(s, {})) for s, v in sections.items()}
    out = str(tmp_path / "run")
    first = cli(["run", write_job(tmp_path / "old.toml", with_old), "--out", out,
                 "--set", "job.time_limit=1e-9"])
    assert first.returncode == 75, first.stderr
    new = write_job(tmp_path / "new.toml", sections)
    refused = cli(["run", new, "--out", out, "--resume", "auto"])
    assert refused.returncode == 65, refused.stderr  # CheckpointError (EX_DATAERR)
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert "checkpoint of another job" in line and "older defaults" in line, line
    assert line.endswith("to resume it, or start this job with --fresh"), line
    assert _lines(line, "to resume it") == old
    fixed = write_job(tmp_path / "fixed.toml",
                      {s: dict(v, **_lines(line, "to resume it").get(s, {}))
                       for s, v in sections.items()})
    resumed = cli(["run", fixed, "--out", out, "--resume", "auto"])
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr
    model = os.path.join(out, "final.h5")
    ev = cli(["eval", new, model])
    assert ev.returncode == 65 and "Traceback" not in ev.stderr, ev.stderr
    assert ev.stderr.strip().endswith("to evaluate it"), ev.stderr
    assert _lines(ev.stderr, "to evaluate it") == old
    ev = cli(["eval", fixed, model])
    assert ev.returncode == 0 and "accuracy:" in ev.stdout, ev.stderr
