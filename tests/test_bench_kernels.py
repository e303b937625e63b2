"""bench kernels --threads: every kernel row at each thread count, the 2-thread ratio line
kept, one ratio line per extra thread count. The kernels run for real on a small matrix; the
parse step (mpiexec subprocesses) is faked."""
import json

import pytest

from mpitrain.bench import kernels as K


def _run(tmp_path, monkeypatch, *extra):
    small = K._matrix
    monkeypatch.setattr(K, "_matrix", lambda n, d, nnz, seed=0: small(2000, 4096, 20, seed))
    monkeypatch.setattr(K, "_parse_rates", lambda path, repeats: (
        {"ours_parse_1r": 100.0, "ours_parse_2r": 180.0, "sklearn_parse": 50.0}, 1000))
    out = tmp_path / "out"
    assert K.main(["--quick", "--repeats", "1", "--out", str(out), *extra]) == 0
    return (out / "report.md").read_text(), json.load(open(out / "results.json"))


def _threads_of(text, what):
    return [int(line.split(" | ")[1]) for line in text.splitlines()
            if line.startswith(f"| {what} |")]


@pytest.mark.timeout(120)
def test_threads_option_adds_rows_and_a_ratio_line_per_thread_count(tmp_path, monkeypatch):
    text, res = _run(tmp_path, monkeypatch, "--threads", "3,1")
    assert res["threads"] == [1, 2, 3]        # 1 and 2 always measured, in order
    for what in ("ours, split layout, float64 values", "ours, split layout, float32 values",
                 "previous: CSR rows + Xᵀ CSR copy, float64"):
        assert _threads_of(text, what) == [1, 2, 3], what
    k = res["kernels_nnz_per_s"]
    assert all(k[f"{v}_3t"] > 0 for v in ("split_float64", "split_float32", "csr_xt"))
    r3 = k["split_float64_3t"] / k["scipy_matvec_1t"]
    assert res["ratios"]["grad_3t_vs_scipy_matvec_1t"] == pytest.approx(r3)
    assert f"Ratio ours (3 threads) / scipy matvec (1 thread): **{r3:.2f}** with float64" \
        in text
    assert "Ratio ours (2 threads) / scipy matvec (1 thread): **" in text
    # the stage breakdown stays at 1 and 2 threads
    assert sorted(res["kernel_parts_s"]) == [f"split_{v}_{t}t" for v in ("float32", "float64")
                                             for t in (1, 2)]


@pytest.mark.timeout(120)
def test_default_threads_are_one_and_two(tmp_path, monkeypatch):
    text, res = _run(tmp_path, monkeypatch)
    assert res["threads"] == [1, 2]
    assert _threads_of(text, "ours, split layout, float64 values") == [1, 2]
    assert "Ratio ours (2 threads)" in text and "(3 threads)" not in text
    assert not any(k.startswith("grad_3t") for k in res["ratios"])
    with pytest.raises(SystemExit) as ex:
        K.main(["--threads", "0,2"])
    assert ex.value.code == 2
