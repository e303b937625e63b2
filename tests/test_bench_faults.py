"""The bookkeeping of `mpitrain bench faults` (no subprocess runs): how a case is judged and
counted. The matrix itself is a benchmark, not part of the suite."""
import pytest

from mpitrain.bench import faults


class _Bench:
    cleaned = 0
    root = "/work-dir"

    def cleanup(self):
        self.cleaned += 1


def _case(fn):
    return faults.Case("c", "g", "expected", fn)


def _res(rc, err="", seconds=1.0, strays=()):
    return faults.Res(rc, "", err, seconds, list(strays))


@pytest.mark.timeout(30)
def test_judge_clean_defect_harness_error_and_skip():
    b = _Bench()
    ok = faults.judge(_case(lambda _: ("rc 0: /work-dir/x", [])), b)
    bad = faults.judge(_case(lambda _: ("rc 1", ["exit 1, expected 0"])), b)
    boom = faults.judge(_case(lambda _: 1 / 0), b)

    def skip(_):
        raise faults.Skip("no tmpfs")
    sk = faults.judge(_case(skip), b)
    assert ok.got == "rc 0: W/x"  # the working directory is shown as W
    assert (ok.clean, bad.clean, boom.clean, sk.clean) == (True, False, False, None)
    assert boom.got.startswith("harness error: ZeroDivisionError") and boom.problems
    assert sk.got == "skipped: no tmpfs"
    assert b.cleaned == 4  # every case cleans up after itself, whatever happened
    assert faults.counts([ok, bad, boom, sk]) == (3, 1, 2)  # skipped counts neither way


@pytest.mark.timeout(30)
def test_check_error_flags_each_way_to_fail():
    line = "mpitrain: bad input data: /d/x.h5: row 1: complex values\n"
    assert faults.check_error(_res(65, line), 65, "bad input data", ["x.h5"], bound=10) == []
    assert faults.check_error(_res(1, line), 65) == ["exit 1, expected 65"]
    assert faults.check_error(_res(65, line + line), 65) == ["2 mpitrain: lines"]
    assert faults.check_error(_res(65, line), 65, "bad job file") == [
        "line is not `bad job file`"]
    assert faults.check_error(_res(65, line), 65, None, ["y.h5"]) == [
        "line does not name 'y.h5'"]
    assert faults.check_error(_res(65, "Traceback (most recent call last):\n" + line), 65) \
        == ["traceback"]
    assert faults.check_error(_res(65, line, strays=[42]), 65) == ["processes left: [42]"]
    assert faults.check_error(_res(65, line, seconds=20), 65, bound=10) == [
        "took 20.0s > 10s"]
    assert faults.check_error(_res(None, ""), 65)[0] == "exit None, expected 65"


@pytest.mark.timeout(30)
def test_matrix_covers_every_section_and_quick_is_a_subset():
    all_cases = faults.cases()
    names = [c.name for c in all_cases]
    assert len(names) == len(set(names)), "case names must be unique"
    groups = {c.group.split()[0] for c in all_cases}
    assert groups == {"§1", "§2", "§3", "§4", "§5"}
    assert len(all_cases) >= 219
    quick = [c for c in all_cases if c.quick]
    assert 10 <= len(quick) <= 40
    assert {c.group.split()[0] for c in quick} == groups
