"""Elastic resume (issue 7, part 4): a checkpoint written at P ranks, resumed at P' ≠ P, ends
equal to an uninterrupted run at P'.

What "equal" means depends on the algorithm and is stated per case (Case.elastic_rtol):
- L-BFGS keeps w and its history replicated; at another P only the order in which the
  Allreduce sums the ranks' partial gradients changes, so a run at P' and a resumed run
  differ by floating-point rounding, not bit for bit. Over the 14 iterations here that is
  ≤ 1e-12 relative (measured ≈ 1e-14); the test asserts 1e-12.
- An algorithm that cannot change P (Algorithm.RESHARDABLE = False) must refuse with its
  reason, exit 65, and leave the checkpoint untouched.
The stop at step k is made with the case's cap key (--set CAP=k); the resume raises it again.
"""
import os

import pytest

from test_faults import (CASES, assert_checkpoints_intact, assert_same_model, case_params,
                         dense_h5, final_model, need, one_line_error, ops_dir,  # noqa: F401
                         reference, registered, run)
from util import write_job

STOP_AT = 6


def _refuses(name):
    cls = registered().get(name)
    return cls is not None and not cls.RESHARDABLE


@pytest.mark.timeout(120)
@pytest.mark.parametrize("p_from,p_to", [(2, 1), (2, 3), (1, 2)])
@pytest.mark.parametrize("case", case_params([c for c in CASES if c.elastic_rtol]))
def test_resume_at_another_world_size(case, p_from, p_to, dense_h5, ops_dir, tmp_path):
    need(case)
    if not registered()[case.algorithm].RESHARDABLE:
        pytest.fail(f"{case.algorithm} declares RESHARDABLE = False but its Case has an "
                    "elastic tolerance")
    ref = reference(case, dense_h5, ops_dir, p_to)
    out = str(tmp_path / "run")
    job = write_job(str(tmp_path / "job.toml"), case.build(dense_h5, out))
    if case.cap:
        p, _ = run(["run", job, "--set", f"{case.cap}={STOP_AT}"], p_from)
        resume = "auto"
    else:  # no cap counts steps: run it all, then resume from the step-STOP_AT checkpoint
        p, _ = run(["run", job], p_from)
        resume = os.path.join(out, "checkpoints", f"ckpt-{STOP_AT:09d}.h5")
    assert p.returncode == 0, p.stderr
    assert_checkpoints_intact(out, at_least=1)
    p, _ = run(["run", job, "--resume", resume], p_to)
    assert p.returncode == 0, p.stderr
    assert f"at step {STOP_AT} (P={p_to})" in p.stdout
    assert_same_model(final_model(out), ref, rtol=case.elastic_rtol)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", case_params([c for c in CASES if not c.elastic_rtol
                                              and _refuses(c.algorithm)] or [None]))
def test_refusal_names_the_reason(case, dense_h5, tmp_path):
    if case is None:
        pytest.skip("every algorithm in CASES can resume at another P")
    need(case)
    cls = registered()[case.algorithm]
    out = str(tmp_path / "run")
    job = write_job(str(tmp_path / "job.toml"), case.build(dense_h5, out))
    p, _ = run(["run", job, "--set", f"{case.cap}={STOP_AT}"], 2)
    assert p.returncode == 0, p.stderr
    before = {f: open(f, "rb").read() for f in assert_checkpoints_intact(out)}
    p, t = run(["run", job, "--resume", "auto"], 1)
    assert p.returncode == 65, p.stderr
    line = one_line_error(p.stderr, "unusable checkpoint")
    assert "written by 2 ranks" in line and "cannot resume on 1" in line
    if cls.RESHARD_REASON:
        assert cls.RESHARD_REASON in line
    assert t < 10
    assert {f: open(f, "rb").read() for f in assert_checkpoints_intact(out)} == before
