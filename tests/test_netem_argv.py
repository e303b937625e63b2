"""The emulated network's command lines (mpitrain/netem.py), without a link: what reaches the
ranks' environment. The link itself is tested in tests/test_netem.py (root only)."""
import json
import types

import pytest

from mpitrain import netem


def _genv(argv):
    """{name: value} of every `-genv NAME VALUE` in an mpiexec command line."""
    return {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "-genv"}


def test_mpiexec_argv_sets_the_link_variables_and_the_callers_on_every_rank():
    argv = netem.mpiexec_argv(3, 2, ["python", "x.py"], mpiexec="mpiexec",
                              env={"MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0", "FI_PROVIDER": "x"})
    got = _genv(argv)
    # the caller's variables are added to MPI_ENV, and win where they name the same one
    assert got == {**netem.MPI_ENV, "MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0", "FI_PROVIDER": "x"}
    assert argv[-2:] == ["python", "x.py"] and "10.231.3.1:1,10.231.3.2:1" in argv
    assert _genv(netem.mpiexec_argv(3, 2, ["c"], mpiexec="mpiexec")) == netem.MPI_ENV


@pytest.mark.timeout(30)
def test_measure_calls_passes_its_environment_to_the_probe_ranks(monkeypatch):
    # bench scaling's control probe (MPIR_CVAR_CH4_OFI_ENABLE_RMA=0) is only a control if the
    # variable reaches the ranks that time the calls
    seen = []
    table = {k: [[8, 1e-3]] for k in netem.CALL_KINDS}

    def run(argv, **kw):
        seen.append(argv)
        return types.SimpleNamespace(returncode=0, stdout="noise\n" + json.dumps(table),
                                     stderr="")
    monkeypatch.setattr(netem.subprocess, "run", run)
    assert netem.measure_calls(5, sizes=(8, 1024),
                               env={"MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0"}) == table
    argv, = seen
    assert _genv(argv) == {**netem.MPI_ENV, "MPIR_CVAR_CH4_OFI_ENABLE_RMA": "0"}
    assert argv[argv.index("_probe_calls") + 1:] == ["--sizes", "8,1024"]
    assert netem.measure_calls(5, sizes=(8,)) == table and _genv(seen[-1]) == netem.MPI_ENV
