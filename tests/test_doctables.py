"""tools/doctables.py: a section rendered from a tiny synthetic results dict, and its
replacement in a file (between markers, or between anchors) leaving the rest untouched."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import doctables  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def kernels_results(f32_ratio):
    return {
        "loadavg_1min": [1.25, 0.5],
        "matrix": {"n": 1234, "nnz": 5_500_000},
        "libsvm_bytes": 12_340_000,
        "kernels_nnz_per_s": {"split_float64_1t": 101e6, "split_float64_2t": 202e6,
                              "split_float32_2t": 303e6, "csr_xt_2t": 404e6,
                              "scipy_matvec_1t": 505e6, "scipy_grad_1t": 606e6},
        "parse_MB_per_s": {"ours_parse_1r": 11.4, "ours_parse_2r": 22.6, "sklearn_parse": 3.0},
        "ratios": {"grad_2t_vs_scipy_matvec_1t": 1.234, "grad_f32_2t_vs_scipy_matvec_1t": f32_ratio,
                   "csr_xt_2t_vs_scipy_matvec_1t": 0.5, "grad_1t_vs_scipy_grad_1t": 0.25,
                   "parse_2r_vs_sklearn": 7.53},
    }


def test_kernels_section_is_rendered_from_the_results():
    s = doctables.render_kernels(kernels_results(2.5))
    assert s.startswith("### Kernels and parsing (`mpitrain bench kernels`, load 1.2 / 0.5)\n")
    assert s.endswith("scikit-learn's loader.\n\n")
    assert "1,234 × 2²⁰ CSR, 5.5 M non-zeros" in s
    assert "| ours: loss + gradient, split layout, float32 values | 2 | 303 |\n" in s
    assert "| scipy gradient X·w, Xᵀ·coef (2 passes) | 1 | 606 |\n" in s
    assert "| LIBSVM parser (12.3 MB of text) | MB/s |" in s
    assert "| ours, 2 ranks (byte ranges) | 23 |" in s
    assert "1.23× scipy's single matvec" in s and "Parsing at 2 ranks is 7.5× faster" in s
    assert "target 3×:\nmissed)" in s
    assert "target 3×:\nreached with float32 values only)" in doctables.render_kernels(
        kernels_results(3.0))
    both = kernels_results(3.0)
    both["ratios"]["grad_2t_vs_scipy_matvec_1t"] = 3.0
    assert "target 3×:\nreached with both value types)" in doctables.render_kernels(both)
    f64 = kernels_results(2.99)
    f64["ratios"]["grad_2t_vs_scipy_matvec_1t"] = 3.1
    assert "target 3×:\nreached with float64 values only)" in doctables.render_kernels(f64)
    # the machine's state as the load shows it, no more: shared at 1 or above, else below 1
    assert "parse times medians of 5; the 2-core machine was shared:" in s
    quiet = dict(kernels_results(2.5), loadavg_1min=[0.7, 0.9])
    assert "medians of 5; a load average below 1 on the 2-core machine:" in \
        doctables.render_kernels(quiet)


DOC = ("# Title\n\nintro line\n\n"
       "<!-- doctables:kernels -->\nOLD SECTION\n\nmore old\n<!-- /doctables:kernels -->\n"
       "### Linear models: FADL vs distributed L-BFGS\n\ntail text\n")


def test_replacement_between_markers_leaves_the_rest_untouched():
    new = doctables.splice(DOC, "kernels", "NEW\n")
    head, tail = DOC.split("OLD SECTION\n\nmore old\n")
    assert new == head + "NEW\n" + tail
    # idempotent, and the markers stay for the next run
    assert doctables.splice(new, "kernels", "NEW\n") == new
    assert doctables.splice(new, "kernels", "OLD SECTION\n\nmore old\n") == DOC


def test_replacement_between_anchors_without_markers():
    doc = ("a\n### Kernels and parsing (x)\nold\n\n### Linear models: FADL vs distributed "
           "L-BFGS y\nz\n")
    assert doctables.splice(doc, "kernels", "### Kernels and parsing (new)\n\n") == (
        "a\n### Kernels and parsing (new)\n\n### Linear models: FADL vs distributed L-BFGS y\nz\n")


def test_a_missing_closing_marker_or_section_is_an_error_naming_the_file():
    broken = DOC.replace("<!-- /doctables:kernels -->", "")
    with pytest.raises(doctables.Error, match="README.md: marker .* no closing"):
        doctables.splice(broken, "kernels", "NEW\n", where="README.md")
    with pytest.raises(doctables.Error, match="section 'kernels' not found"):
        doctables.splice("# nothing here\n", "kernels", "NEW\n", where="README.md")


def test_write_and_check_in_a_tree(tmp_path, capsys):
    res = tmp_path / "results.json"
    res.write_text(json.dumps(kernels_results(2.5)))
    (tmp_path / "README.md").write_text(DOC)
    root = ["--root", str(tmp_path)]
    assert doctables.main(root + ["--check", "kernels", str(res)]) == 1
    assert "stale: kernels" in capsys.readouterr().out
    assert doctables.main(root + ["--write", "kernels", str(res)]) == 0
    text = (tmp_path / "README.md").read_text()
    head, tail = DOC.split("OLD SECTION\n\nmore old\n")
    assert text == head + doctables.render_kernels(kernels_results(2.5)) + tail
    assert doctables.main(root + ["--check", "kernels", str(res)]) == 0
    # a user error: one line naming the file and the key, exit 2, nothing written
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"loadavg_1min": [1, 2]}))
    capsys.readouterr()
    assert doctables.main(root + ["--write", "kernels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("doctables: ") and str(bad) in err and err.count("\n") == 1
    assert (tmp_path / "README.md").read_text() == text


def test_passes_claim_over_seeds_uses_the_means():
    """With a --seeds run, DASVRDA 'wins' a setting only when its mean passes are below both
    others' means; a method missing the gap on some seed has no mean (counts as more), and
    DASVRDA missing it on some seed is not a win."""
    from mpitrain.bench.elasticnet import seed_stats
    seeds = {"seeds": [1, 2, 3], "settings": [
        {"dataset": "a", "l1": 0.0, "l2": 1e-6,
         "passes": {"dasvrda": [10, 30, 20], "prox-svrg": [18, 18, 21], "katyusha": [40, 40, 40]}},
        {"dataset": "b", "l1": 0.0, "l2": 1e-6,
         "passes": {"dasvrda": [10, 12, 14], "prox-svrg": [5, 5, None], "katyusha": [40, 40, 40]}},
        {"dataset": "c", "l1": 0.0, "l2": 1e-6,
         "passes": {"dasvrda": [10, None, 14], "prox-svrg": [50, 50, 50], "katyusha": [40, 40, 40]}}]}
    means = doctables.seed_means(seeds, seed_stats)
    assert means[("a", 0.0, 1e-6)]["dasvrda"] == (20.0, 10.0, 3)
    assert not doctables.fewer_on_average(means[("a", 0.0, 1e-6)])   # 20 > 19 (ProxSVRG)
    assert doctables.fewer_on_average(means[("b", 0.0, 1e-6)])       # ProxSVRG missed once
    assert not doctables.fewer_on_average(means[("c", 0.0, 1e-6)])   # DASVRDA missed once
    tie = {"dasvrda": (24.94729650595354, 4.2, 5), "prox-svrg": (24.947296505953542, 6.8, 5),
           "katyusha": (128.7, 0.0, 5)}
    assert not doctables.fewer_on_average(tie)       # equal to the last bits: a tie, no win
    assert "ProxSVRG reached by 2 of 3 seeds" in doctables.seed_detail(
        "b", means[("b", 0.0, 1e-6)], 3)
    # a win by no more than DASVRDA's own sd is named as narrow; a wider one is not
    narrow = {"dasvrda": (55.3, 1.7, 5), "prox-svrg": (74.0, 1.8, 5), "katyusha": (56.9, 0.0, 5)}
    assert doctables.fewer_on_average(narrow) and doctables.narrow_win(narrow)
    assert doctables.narrow_win(dict(narrow, katyusha=(56.95, 0.0, 5)))    # 1.65 apart: narrow
    assert not doctables.narrow_win(dict(narrow, katyusha=(57.1, 0.0, 5)))
    assert not doctables.narrow_win(means[("b", 0.0, 1e-6)])   # 12 ± 2 against Katyusha's 40


def test_elasticnet_command_names_the_refinement_only_when_it_ran():
    res = {"stages": 200, "saga_epochs": 512, "eta_scales": [1.0, 4.0], "tune_seeds": [1, 2],
           "refine": True}
    assert doctables.default_cmd(res).endswith(" --eta-scales 1,4 --tune-seeds 1,2 --refine")
    for old in (dict(res, refine=False), {k: v for k, v in res.items() if k != "refine"}):
        assert "--refine" not in doctables.default_cmd(old)
    assert doctables.default_cmd(dict(res, refine=1)).endswith(" --tune-seeds 1,2 --refine")
    assert doctables.default_cmd(dict(res, refine=2)).endswith(" --tune-seeds 1,2 --refine 2")


# ---------------------------------------------------------------- parmac

MAC_REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "bench",
                          "mac-quick.md")


def parmac_results(ba16=0.3289, ba32=0.4566, rows=5000, s_err=1.0):
    def p(mean, std):
        return {"mean": mean, "std": std, "min": mean - std, "max": mean + std, "n": 5}

    # bench parmac's runtime model, seconds per iteration (no communication at P = 1)
    t_comp, t_hop, t_coll = 0.00055279, 0.033935, 0.066346

    def T(P, n):
        return t_comp * n / P + (P > 1) * ((2 * P - 1) * t_hop + t_coll)

    def step(i, mu, wrong, val, accepted):
        return {"step": i, "mu": mu, "wrong_bits": wrong, "val_precision": val,
                "accepted": accepted}
    return {
        "rows": rows, "queries": 500, "K": 50,
        "precision": {"8": {"BA": p(0.1867, 0.007), "ITQ": p(0.1865, 0.007),
                            "tPCA": p(0.1829, 0.0)},
                      "16": {"BA": p(ba16, 0.009), "ITQ": p(0.3315, 0.0089),
                             "tPCA": p(0.2987, 0.0)},
                      "32": {"BA": p(ba32, 0.0037), "ITQ": p(0.4614, 0.0045),
                             "tPCA": p(0.3813, 0.0)}},
        "scaling": [{"P": 1, "t_iter": 2.7643}, {"P": 2, "t_iter": 1.5453}],
        # docs/mac.md only: the runtime model, the per-step run (L = 16, seed 0), every run
        "model": {"t_comp": t_comp, "t_hop": t_hop, "t_coll": t_coll, "e": 2,
                  "projection": [[P, n, T(P, n), T(1, n) / T(P, n) * s_err] for n in (rows, 10**8)
                                 for P in (1, 2, 16, 128)]},
        "steps": [step(1, None, 0.00106, 0.3657, 1), step(2, 0.0, 0.1036, 0.3638, 0),
                  step(3, 0.005, 0.094, 0.3678, 1), step(4, 0.0075, 0.105, 0.3619, 0),
                  step(5, 0.01125, 0.26, 0.3523, 0), step(6, 0.016875, 0.0, None, None)],
        "runs": [{"L": 16, "seed": 0, "steps": 6, "rejected": 3},
                 {"L": 32, "seed": 0, "steps": 7, "rejected": 4}],
        "machine": {"cpus": 2}}


PARMAC_REPORT = ("# ParMAC\n\nLoad average before 12.83 13.87 15.30, after 11.73 11.76 12.35 "
                 "(shared).\n\n## One run step by step (L = 16, seed 0)\n\n"
                 "## Strong scaling (L = 16, seed 0): seconds per iteration\n\n"
                 "## Runtime model T(P) = t_comp·N/P + (e·P − 1)·t_hop + t_coll\n")


def test_parmac_section_is_rendered_from_the_results_and_the_mac_report():
    s = doctables.render_parmac(parmac_results(), PARMAC_REPORT, doctables.read(MAC_REPORT))
    assert s.startswith("### ParMAC binary autoencoder (`mpitrain bench parmac --quick`, "
                        "load 12.83–11.73)\n\n")
    assert "mean ± std over 5 seeds" in s and "(load 12.83 before, 11.73 after):" in s
    assert "| 16 | 0.3289 ± 0.0090 | 0.3315 ± 0.0089 | 0.2987 ± 0.0000 | -0.0026 | no |" in s
    assert "(L = 16: -0.0026, L = 32: -0.0048)" in s
    assert "P = 1: 2.76 s/iteration, P = 2: 1.55 s/iteration (speed-up 1.79 at P = 2)" in s
    # the bench mac --quick figures, from docs/bench/mac-quick.md's tables
    assert "mac stops at μ step 27 of 40 (violation 4.04e-06) after 0.486 s and 2.17 MB" in s
    assert "taken at its last epoch, 200, after 0.631 s and 144 MB" in s
    assert "P = 2: 1.26, P = 4: 1.89, P = 16: 6.24, P = 128: 8.94." in s
    assert "validation 1.478 against MAC's 4.121" in s
    assert s.endswith("[docs/bench/parmac-quick.md](docs/bench/parmac-quick.md).\n\n")


def test_parmac_claims_fail_on_altered_input():
    mac = doctables.read(MAC_REPORT)
    # BA beyond the seed spread at L = 16: "BA is not above ITQ ..." would be false
    with pytest.raises(doctables.Error, match="seed spread at any L ≥ 16"):
        doctables.render_parmac(parmac_results(ba16=0.36), PARMAC_REPORT, mac)
    # backprop meeting its stop rule before its last epoch
    early = mac.replace("| backprop | 200 | 200 |", "| backprop | 150 | 200 |")
    assert early != mac
    with pytest.raises(doctables.Error, match="backprop never meets its rule"):
        doctables.render_parmac(parmac_results(), PARMAC_REPORT, early)
    # a projected ratio that does not grow with P
    flat = mac.replace("| 1.233 | 11.02 | 8.939 |", "| 1.233 | 11.02 | 6.0 |")
    assert flat != mac
    with pytest.raises(doctables.Error, match="grows with P"):
        doctables.render_parmac(parmac_results(), PARMAC_REPORT, flat)


def test_parmac_doc_is_rendered_from_the_results_and_the_mac_report():
    mac = doctables.read(MAC_REPORT)
    doc = doctables.render_parmac_doc(parmac_results(), PARMAC_REPORT, mac)
    # prose wrapped at 96 columns, heading and table lines whole
    assert all(len(line) <= 96 for line in doc.splitlines() if not line.startswith(("#", "|")))
    s = " ".join(doc.split())       # the text, line breaks aside
    assert doc.startswith("### Results (`mpitrain bench parmac --quick`: MNIST, first 5000 "
                        "training rows (a subset), 500 held-out test queries, precision at K "
                        "= 50, mean ± std over 5 seeds (ITQ rotation seeds included; tPCA is "
                        "deterministic), 2-core VM shared with other engineers (load 12.83 "
                        "before, 11.73 after))\n\n| L | BA (ParMAC) |")
    assert "| 32 | 0.4566 ± 0.0037 | 0.4614 ± 0.0045 | 0.3813 ± 0.0000 | -0.0048 | no |" in s
    assert ("(L = 16: -0.0026, L = 32: -0.0048): on this MNIST subset the paper's claim is not "
            "reproduced. Per step (L = 16, seed 0, [docs/bench/parmac-quick.md]") in s
    assert ("Strong scaling (L = 16, seed 0): P = 1: 2.76 s/iteration, P = 2: 1.55 s/iteration "
            "(speed-up 1.79 at P = 2); fitted T(P) = t_comp·N/P + (e·P − 1)·t_hop + t_coll with "
            "t_comp = 0.000553 s, t_hop = 0.0339 s, t_coll = 0.0663 s projects S(16) = 2.1, "
            "S(128) = 0.3 at N = 5000 and S(128) = 125.5 at N = 10⁸. Timings are from a loaded "
            "2-core machine") in s
    # bench mac --quick's layouts table, from docs/bench/mac-quick.md
    assert ("Layouts (digits 1500 × 64, 64-32-8-32-64, per iteration): ring P = 1: 0.0402 "
            "s/iteration, 0.0804 MB sent by rank 0, P = 2: 0.0235 s/iteration") in s
    assert "; layers P = 1: 0.039 s/iteration, 1.03 MB sent by rank 0, P = 2: 0.0295" in s
    assert ("Final nested error: layers 4.676, 4.676, 4.676 (equal to the ring at P = 1, "
            "4.676); ring at P = 2, 3: 4.685, 4.672. Fitted α = 0.00122 s/call, β = 0 "
            "s/byte.") in s
    assert ("MAC vs backprop (P = 2, 1200 training rows, 300 validation rows of the digits "
            "training set, fair stop)") in s
    assert "mac stops at μ step 27 of 40 (violation 4.04e-06) after 0.486 s and 2.17 MB" in s
    assert "the projection keeps the P = 2 iteration counts" in s
    assert "(and at L = 32 is slightly below it" in s and "uses 5,000 rows" in s
    assert doc.endswith("and other image sets.\n")
    # computed, not fixed: BA slightly below ITQ at L = 16 instead, 4000 rows
    s = " ".join(doctables.render_parmac_doc(parmac_results(ba16=0.32, ba32=0.46, rows=4000),
                                             PARMAC_REPORT, mac).split())
    assert "(and at L = 16 is slightly below it" in s and "uses 4,000 rows" in s
    assert "S(128) = 0.3 at N = 4000 and S(128) = 125.5 at N = 10⁸" in s
    assert doctables.power_of_ten(100000000) == "10⁸"
    assert doctables.power_of_ten(12345) == "12345"


def test_parmac_doc_claims_fail_on_altered_input():
    mac = doctables.read(MAC_REPORT)

    def fails(match, res=None, rep=PARMAC_REPORT, mac_rep=mac):
        with pytest.raises(doctables.Error, match=match):
            doctables.render_parmac_doc(res or parmac_results(), rep, mac_rep)
    # layers no longer giving the ring's P = 1 result
    row = "| layers | 2 | 0.02947 | 0.006533 | 75 | 2432088 | 0.5059 | 0.1113 | 4.676 |"
    assert row in mac
    fails("layers layout gives the ring's P = 1", mac_rep=mac.replace(row, row[:-7] + "4.677 |"))
    # a quiet machine: "Timings are from a loaded 2-core machine" would be false
    fails("loaded machine", rep=PARMAC_REPORT.replace("before 12.83", "before 0.83"))
    # the first μ step's wrong bits not far above step 1's, its validation not worse; a run
    # whose rule accepted half its μ steps; a late μ step accepted
    for key, i, field, value, match in [
            ("steps", 1, "wrong_bits", 0.005, "far above"),
            ("steps", 1, "val_precision", 0.37, "validation precision drops"),
            ("runs", 1, "rejected", 3, "reverts most μ steps"),
            ("steps", 4, "accepted", 1, "early μ step")]:
        res = parmac_results()
        res[key][i][field] = value
        fails(match, res)
    # BA within the spread everywhere (no L to name), or far below ITQ
    fails("within the seed spread except", parmac_results(ba32=0.4600))
    fails("within the seed spread except", parmac_results(ba32=0.45))
    # a projection that does not follow from the stated T(P) and fitted constants
    fails("the projected S", parmac_results(s_err=1.01))
    # the claims shared with README still hold here
    fails("seed spread at any L ≥ 16", parmac_results(ba16=0.36))


def test_parmac_writes_readme_and_docs_mac(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(parmac_results()))
    (out / "report.md").write_text(PARMAC_REPORT)
    readme = ("# R\n\n<!-- doctables:parmac -->\nold\n<!-- /doctables:parmac -->\n"
              "### Scaling past one machine (x)\n")
    doc = "# M\n\nkept\n\n<!-- doctables:parmac-doc -->\nold\n<!-- /doctables:parmac-doc -->\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "mac.md").write_text(doc)
    argv = ["--root", str(tmp_path), "parmac", str(out), "--mac", MAC_REPORT]
    assert doctables.main(["--check"] + argv) == 1
    assert "stale: parmac, parmac-doc" in capsys.readouterr().out
    assert doctables.main(["--write"] + argv) == 0
    assert doctables.main(["--check"] + argv) == 0
    new = (tmp_path / "docs" / "mac.md").read_text()
    assert new.startswith("# M\n\nkept\n\n<!-- doctables:parmac-doc -->\n### Results (")
    assert new.endswith("other image sets.\n<!-- /doctables:parmac-doc -->\n")
    assert (tmp_path / "README.md").read_text().endswith(
        "<!-- /doctables:parmac -->\n### Scaling past one machine (x)\n")


# ---------------------------------------------------------------- scaling-net

def scaling_probe(a, b, r):
    """A call-probe table for one-way latency a, β = b and a round of r·a: an Allreduce of
    8 B one latency, of 16 B two, of 1 KiB two rounds; an Allgatherv of 1 MiB 80 latencies."""
    big = 1 << 21
    return {"allreduce": [[8, a], [16, 2 * a], [1024, 2 * r * a + 1024 * b],
                          [big, 2 * r * a + big * b]],
            "sendrecv": [[8, a], [256, r * a + 256 * b], [16384, r * a + 16384 * b],
                         [big, r * a + big * b]],
            "allgatherv": [[8, a], [1 << 20, 80 * a], [big, 160 * a]],
            "bcast": [[8, a], [big, a + big * b]]}


def scaling_results(error=None):
    nets = [{"alpha_set": 0.0005, "rate": "1gbit", "beta_set": 8e-9, "alpha": 0.0005886,
             "beta": 8.074e-9, "allreduce_8": 0.0006058, "allreduce_1048576": 0.009047},
            {"alpha_set": 0.002, "rate": "200mbit", "beta_set": 40e-9, "alpha": 0.002109,
             "beta": 40.08e-9, "allreduce_8": 0.003268, "allreduce_1048576": 0.04226}]
    for n in nets:
        n["calls"] = scaling_probe(n["alpha"], n["beta"], 2.0)
        n["calls_no_rma"] = scaling_probe(n["alpha"], n["beta"], 1.0)

    def net(t, pred, ab):
        return {"t_iter": t, "predicted": pred, "error": pred / t - 1, "error_ab": ab / t - 1,
                "wait": 0.0}
    res = {"nets": nets, "load_before": [2.8467, 6.1, 9.3], "load_after": [4.41, 5.9, 9.0],
           "methods": {
               "lbfgs": {"shm": {"1": {"t_iter": 0.003841},
                                 "2": {"t_iter": 0.004859, "by_call": [
                                     ["Allreduce", 16, 1.07], ["Allreduce", 967296, 1.0],
                                     ["the iteration-boundary agreement", 48, 1.0]]}},
                         "net0": net(0.02227, 0.0220, 0.01451),
                         "net1": net(0.05475, 0.0560, 0.05086)},
               "dasvrda": {"shm": {"1": {"t_iter": 0.02}, "2": {"t_iter": 0.015, "by_call": [
                   ["Allreduce", 808, 101.0], ["Allgatherv", 984368, 1.0]]}},
                           "net0": net(0.35, 0.33, 0.09), "net1": net(1.1, 1.09, 0.26)}}}
    if error is not None:
        res["methods"]["lbfgs"]["net1"]["error"] = error
    return res


SCALING_REPORT = ("# Scaling\n\n| method | a (s) | b (s) | speed-up P=64 | P=256 | P=1024 |\n"
                  "\nPlots: `time_per_iteration.png`, `projection.png` (beside this report).\n")


def test_scaling_net_section_and_report_copy():
    doc, s = doctables.render_scaling_net(scaling_results(), SCALING_REPORT)
    assert doc == SCALING_REPORT.replace(
        "(beside this report).",
        "(beside this report; copied to docs/bench/scaling-time.png and scaling-projection.png).")
    assert s.startswith("### Scaling past one machine (`mpitrain bench scaling`, load 2.8 / 4.4)")
    # round 2 α (1 without RMA); Allreduce 8 B 1 α, 1 KiB 2·2 α + 1024β/α; Allgatherv 1 MiB
    # 80 α against α + 2^20·β = 1 + 14.4 α at 0.5 ms
    assert ("| 0.5 ms, 1gbit | 0.589 ms | 8.07 ns/B (set 8) | 2.00 α (1.00 α) | 1.0 α | "
            "4.0 α | 80 α (15.4) |") in s
    assert "| 2 ms, 200mbit | 2.11 ms | 40.1 ns/B (set 40) | 2.00 α (1.00 α) |" in s
    assert "| method | s/iter P=1 shm | P=2 shm | P=2 0.5 ms 1gbit | P=2 2 ms 200mbit |\n" \
           "|---|---|---|---|---|\n" in s
    assert "| lbfgs | 0.00384 | 0.00486 | 0.0223 (-1% / -35%) | 0.0548 (+2% / -7%) |" in s
    assert "| dasvrda | 0.02 | 0.015 | 0.35 (-6% / -74%) | 1.1 (-1% / -76%) |" in s
    flat = " ".join(s.split())      # the worst errors of both models, computed
    assert "is within 6% on all 4 runs (worst: dasvrda at 0.5 ms, 1gbit, -6%)" in flat
    assert "under-predicted 4 of 4 runs, by up to 76%" in flat
    assert "costs c_r = 2.00–2.00 one-way latencies" in flat
    assert "and 1.00 or less with MPIR_CVAR_CH4_OFI_ENABLE_RMA=0" in flat
    # the dearest call per method on the link with the most latencies per byte (0.5 ms 1gbit)
    assert ("at 0.5 ms, 1gbit: lbfgs 1 × Allreduce of 967296 B (17.3 α each); dasvrda 101 × "
            "Allreduce of 808 B (3.6 α each)." in flat)  # 2 + (792/1008)·2.014 α
    assert "projections to 64–1024 ranks" in s


def test_scaling_net_names_the_median_of_repeated_runs():
    res = scaling_results()
    for m in res["methods"].values():
        for r in [m["shm"]["1"], m["shm"]["2"], m["net0"], m["net1"]]:
            r["t_iter_runs"] = [r["t_iter"]] * 3
    _, s = doctables.render_scaling_net(res, SCALING_REPORT)
    assert "Seconds per iteration (rank 0; the median of 3 runs each)," in s
    assert "Seconds per iteration (rank 0)," in doctables.render_scaling_net(
        scaling_results(), SCALING_REPORT)[1]
    res["methods"]["lbfgs"]["net1"]["t_iter_runs"] = [1.0]
    with pytest.raises(doctables.Error, match="same number of times"):
        doctables.render_scaling_net(res, SCALING_REPORT)


def test_scaling_net_claims_fail_on_altered_input():
    with pytest.raises(doctables.Error, match="within 25% on every run"):
        doctables.render_scaling_net(scaling_results(error=-0.3), SCALING_REPORT)
    off = scaling_results()
    off["nets"][0]["alpha"] = 0.0009          # 0.4 ms above the set latency: not "as set"
    with pytest.raises(doctables.Error, match="α within 0.15 ms"):
        doctables.render_scaling_net(off, SCALING_REPORT)
    one = scaling_results()                   # a round of one latency: "about two" fails
    one["nets"][1]["calls"] = scaling_probe(0.002109, 40.08e-9, 1.0)
    with pytest.raises(doctables.Error, match="about two one-way latencies"):
        doctables.render_scaling_net(one, SCALING_REPORT)
    rma = scaling_results()                   # the control without RMA no cheaper
    rma["nets"][0]["calls_no_rma"] = rma["nets"][0]["calls"]
    with pytest.raises(doctables.Error, match="a round costs about one latency"):
        doctables.render_scaling_net(rma, SCALING_REPORT)
    old = scaling_results()                   # results of the bench before the call probe
    del old["nets"][1]["calls_no_rma"]
    with pytest.raises(doctables.Error, match="call probe"):
        doctables.render_scaling_net(old, SCALING_REPORT)


def test_scaling_net_more_claims_fail_on_altered_input():
    """The probe claims at their other ends: a round of three latencies is not "about two", a
    β 10 % off the set rate is not "as set", an Allreduce of 1 KiB in one round is not two."""
    three = scaling_results()
    three["nets"][1]["calls"] = scaling_probe(0.002109, 40.08e-9, 3.0)
    with pytest.raises(doctables.Error, match="about two one-way latencies"):
        doctables.render_scaling_net(three, SCALING_REPORT)
    slow = scaling_results()
    slow["nets"][0]["beta"] = 1.1 * slow["nets"][0]["beta_set"]
    with pytest.raises(doctables.Error, match="β within 5 %"):
        doctables.render_scaling_net(slow, SCALING_REPORT)
    one = scaling_results()
    n = one["nets"][0]
    n["calls"]["allreduce"][2] = [1024, 2 * n["alpha"] + 1024 * n["beta"]]
    with pytest.raises(doctables.Error, match="of 1 KiB two rounds"):
        doctables.render_scaling_net(one, SCALING_REPORT)


def test_scaling_net_write_copies_the_report_and_plots_then_check(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(scaling_results()))
    (out / "report.md").write_text(SCALING_REPORT)
    for png in ("time_per_iteration.png", "projection.png"):
        (out / png).write_bytes(b"\x89PNG" + png.encode())
    (tmp_path / "docs" / "bench").mkdir(parents=True)
    (tmp_path / "docs" / "bench" / "scaling.md").write_text("old\n")
    readme = ("intro\n<!-- doctables:scaling-net -->\nOLD\n<!-- /doctables:scaling-net -->\n"
              "### Operations (x)\n")
    (tmp_path / "README.md").write_text(readme)
    root = ["--root", str(tmp_path)]
    assert doctables.main(root + ["--check", "scaling-net", str(out)]) == 1
    assert "stale: scaling-net, docs/bench/scaling.md" in capsys.readouterr().out
    assert doctables.main(root + ["--write", "scaling-net", str(out)]) == 0
    doc, s = doctables.render_scaling_net(scaling_results(), SCALING_REPORT)
    assert (tmp_path / "README.md").read_text() == readme.replace("OLD\n", s)
    assert (tmp_path / "docs" / "bench" / "scaling.md").read_text() == doc
    assert (tmp_path / "docs" / "bench" / "scaling-time.png").read_bytes() == \
        b"\x89PNGtime_per_iteration.png"
    assert (tmp_path / "docs" / "bench" / "scaling-projection.png").read_bytes() == \
        b"\x89PNGprojection.png"
    assert doctables.main(root + ["--check", "scaling-net", str(out)]) == 0


def test_double_step_note_names_where_8_over_l_needs_fewer_and_more_passes():
    """The step decision's ×2 sentence is computed per setting from the tuning runs (mean
    passes over the tuning seeds; None = not reached); no sentence without both scales."""
    def row(name, p1, p2):
        return {"name": name, "e": {"tuning": {"dasvrda": {"1": [p1, 0.5], "2": [p2, 0.5]}}}}
    text = doctables._double_step_note([row("a", 70.0, 52.5), row("b", 112.0, 157.25),
                                 row("c", None, 30.0), row("d", 40.0, None)], 8.0)
    assert "fewer on a 52.5 vs 70.0; c 30.0 vs not reached; more on b 157.2 vs 112.0; " \
           "d not reached vs 40.0." in text, text
    # the default step's c as the run recorded it: ×2 of 8/L is 16/L
    assert text.startswith(" ×2 (16/L) against ×1") and "The default (8/L) was not" in text
    assert doctables._double_step_note([{"name": "a", "e": {"tuning": {"dasvrda": {"1": [3, 0]}}}}], 8.0) == ""


def test_slp_model_ceiling_is_read_from_the_report_cost_table():
    rep = ("text\n\n| codes | share | rounds | rank 0 s | rank 1 s | measured 1/0 | model rank 0 "
           "| model rank 1 | model 1/0 |\n|---|---|---|---|---|---|---|---|---|\n"
           "| split | 0.42 | 33 | 0.4 | 0.4 | 1 | 4.249 | 4.242 | 0.99 |\n"
           "| regenerate | 0 | 33 | 0.3 | 0.4 | 1.2 | 3.92 | 4.572 | 1.17 |\n")
    # the slower rank's modelled work: 4.572 under regenerate, 4.249 under split
    assert doctables.model_ceiling(rep, "regenerate", "split") == "4.572/4.249 = 1.08"
    with pytest.raises(doctables.Error):
        doctables.model_ceiling(rep, "regenerate", "stream")
    with pytest.raises(doctables.Error):
        doctables.model_ceiling("no table here", "regenerate", "split")


def test_fadl_start_rule_text_counts_fewer_same_and_more():
    def row(name, start, dvec, other, odvec):
        return {"data": name, "fadl_start": start, "fadl_dvec": dvec, "other_start": other,
                "other_dvec": odvec}
    text = doctables.start_rule_text([row("a", "mix", 4, "zero", 5), row("b", "zero", 3, "mix", 3),
                                      row("c", "mix", 4, "zero", 3), row("d", "zero", 7, "mix", 8)])
    assert "fewer d-vector Allreduces on 2 of 4 sets and subsets, as many on 1, more on 1: " \
           "c (zero 3 against mix 4)." in text
    assert text.endswith("more on none.") is False
    assert doctables.start_rule_text([row("a", "mix", 4, "zero", 5)]).endswith(
        "as many on 0, more on none.")


def linear_quick_inputs(repeats=1):
    """A minimal bench linear --quick output: rt-polarity and synth wide (mix start), synth-tall
    tall (zero); targets met on rt-polarity (4/9) and synth-tall (3/10), not on synth (4/6),
    whose first outer iteration ends above 1e-4 from both starts."""
    def ds(n, d, start, fa, lb, t):
        m = {"fadl P=2": {"start": start, "to_gap": {"0.0001": [t, fa, fa + 2]}},
             "lbfgs P=2": {"to_gap": {"0.0001": [0.4, lb, lb + 20]}},
             "fadl P=1": {"to_gap": {"0.0001": [0.3, 5, 9]}},
             "psgd-mix P=2": {"final_gap": 1e-2}}
        for v in m.values():
            v.update(repeats=repeats, counts_agree=True)
        return {"n": n, "d": d, "runs": {"0.0001": {"methods": m, "targets": {
            "fadl_P2_allreduces_to_1e-4": fa, "lbfgs_P2_allreduces_to_1e-4": lb,
            "fadl_P2_collectives_to_1e-4": fa + 2, "lbfgs_P2_collectives_to_1e-4": lb + 20,
            "rows_per_rank_over_features": n / 2 / d, "allreduce_ratio": fa / lb,
            "fadl_P2_time_to_1e-4": t, "lbfgs_P2_time_to_1e-4": 0.4,
            "best_sklearn_time_to_1e-4": 0.3}}}}

    def shape(name, n, d, start, fa, lb, g1, other, oc, og1):
        return {"data": name, "n": n, "d": d, "fadl_start": start, "fadl_dvec": fa,
                "lbfgs_dvec": lb, "fadl_gap_after_1": g1, "other_start": other,
                "other_dvec": oc, "other_gap_after_1": og1}
    res = {"load_before": [1.0], "load_after": [1.5], "datasets": {
        "rt-polarity": ds(10000, 100000, "mix", 4, 9, 0.2),
        "synth": ds(18000, 262144, "mix", 4, 6, 0.5),
        "synth-tall": ds(36000, 1024, "zero", 3, 10, 0.2)},
        "shape": [shape("rt-polarity", 10000, 100000, "mix", 4, 9, 1.5e-3, "zero", 5, 2.3e-3),
                  shape("synth", 18000, 262144, "mix", 4, 6, 1.5e-3, "zero", 5, 1.2e-4),
                  shape("synth-tall", 36000, 1024, "zero", 3, 10, 8e-5, "mix", 4, 2.5e-4)]}
    rep = ("# r\n\n## Time / d-vector\n\n| a |\n|---|\n| t |\n\n## Targets\n\n| b |\n|---|\n"
           "| g |\n\n## FADL / L-BFGS against rows\n\n| c |\n|---|\n| s |\n")
    return rep, res


def test_linear_quick_start_rule_repeats_and_not_met_claims_are_checked():
    rep, res = linear_quick_inputs()
    fadl, readme = doctables.render_linear_quick(rep, res, "", "", "ALPHA")
    flat, rflat = " ".join(fadl.split()), " ".join(readme.split())
    assert "the rule's start needs fewer d-vector Allreduces on 3 of 3 sets and subsets, " \
           "as many on 0, more on none." in flat
    assert "seconds are noisy (single runs)." in flat
    assert "**not met** on synth 4 vs 6 (0.67, goal ≤ 1/2)" in rflat
    assert "FADL's first outer iteration ends above 1e-4 from either start" in rflat
    rep, res = linear_quick_inputs(repeats=5)
    assert "seconds are noisy (each mpitrain time is the median of 5 runs; the Targets table " \
           "gives their range)." in " ".join(doctables.render_linear_quick(
               rep, res, "", "", "ALPHA")[0].split())
    # synth from zero within 1e-4 after one outer iteration: "from either start" is false
    rep, res = linear_quick_inputs()
    res["shape"][1]["other_gap_after_1"] = 5e-5
    with pytest.raises(doctables.Error, match="above 1e-4 from either start on synth"):
        doctables.render_linear_quick(rep, res, "", "", "ALPHA")
    res["shape"][1].update(other_gap_after_1=1.2e-4, fadl_gap_after_1=5e-5)
    with pytest.raises(doctables.Error, match="above 1e-4 from either start on synth"):
        doctables.render_linear_quick(rep, res, "", "", "ALPHA")
    # results without the other start's runs (before 82ca3a3): no start-rule claim
    rep, res = linear_quick_inputs()
    for p in res["shape"]:
        p["other_dvec"] = None
    with pytest.raises(doctables.Error, match="runs from the other start"):
        doctables.render_linear_quick(rep, res, "", "", "ALPHA")


def test_scaling_net_call_claims_and_the_dearest_calls_link():
    # "an Allreduce of 16 B takes two latencies": fails where the probe says one
    one = scaling_results()
    one["nets"][0]["calls"]["allreduce"][1] = [16, one["nets"][0]["alpha"]]
    with pytest.raises(doctables.Error, match="of 16 B two"):
        doctables.render_scaling_net(one, SCALING_REPORT)
    # "an Allgatherv of 1 MiB per rank costs several times α + nβ": fails at one round
    ag = scaling_results()
    n = ag["nets"][1]
    n["calls"]["allgatherv"] = [[8, n["alpha"]], [1 << 20, n["alpha"] + (1 << 20) * n["beta"]],
                                [1 << 21, n["alpha"] + (1 << 21) * n["beta"]]]
    with pytest.raises(doctables.Error, match="several times"):
        doctables.render_scaling_net(ag, SCALING_REPORT)
    # the dearest calls are named on the link with the most latencies per byte: the second
    # link once it runs at 1 Gbit/s (2 ms / 8 ns per byte against 0.5 ms / 8 ns per byte)
    fast = scaling_results()
    n = fast["nets"][1]
    n.update(rate="1gbit", beta_set=8e-9, beta=8.07e-9)
    n["calls"] = scaling_probe(n["alpha"], n["beta"], 2.0)
    n["calls_no_rma"] = scaling_probe(n["alpha"], n["beta"], 1.0)
    flat = " ".join(doctables.render_scaling_net(fast, SCALING_REPORT)[1].split())
    assert "The dearest call per iteration at 2 ms, 1gbit: lbfgs 1 × Allreduce of 967296 B" \
        in flat


def test_scaling_p2_speedups_read_from_the_table():
    table = ("| data | run | ms/stage | speed-up | x |\n|---|---|---|---|---|\n"
             "| a | dasvrda P=1 sparse | 10 | 1.00 | 0 |\n"
             "| a | dasvrda P=2 sparse | 12 | 0.83 | 0 |\n"
             "| a | dasvrda P=2 columns | 7 | 1.43 | 0 |\n"
             "| b | dasvrda P=2 sparse | 9 | 1.10 | 0 |\n"
             "| b | dasvrda P=2 columns | 6 | 1.50 | 0 |\n")
    text = doctables.p2_speedups(table)
    assert "columns a 1.43×; b 1.50×; the sparse exchange a 0.83×; b 1.10×" in text
    assert "faster than P = 1 on every set and faster than the sparse exchange" in text
    slow = table.replace("| 7 | 1.43 |", "| 13 | 0.77 |")
    assert "not faster than P = 1 on every set" in doctables.p2_speedups(slow)
    assert "not faster than the sparse exchange" in doctables.p2_speedups(slow)
    with pytest.raises(doctables.Error):
        doctables.p2_speedups(table.replace("| b | dasvrda P=2 columns | 6 | 1.50 | 0 |\n", ""))


def test_linear_quick_figures_by_hand_and_goal_boundaries():
    """docs/fadl.md's and README's figures from linear_quick_inputs, worked by hand, with two
    boundaries moved onto the goal: synth-tall at exactly 10 rows per rank per feature (goal
    1/3) and 3 vs 9 (ratio = 1/3: met); rt-polarity's FADL time equal to L-BFGS's (not
    slower), above scikit-learn's best."""
    rep, res = linear_quick_inputs()
    D = res["datasets"]
    D["synth-tall"]["n"] = 20480
    D["synth-tall"]["runs"]["0.0001"]["targets"].update({
        "rows_per_rank_over_features": 10.0, "lbfgs_P2_allreduces_to_1e-4": 9,
        "lbfgs_P2_collectives_to_1e-4": 29, "allreduce_ratio": 3 / 9})
    D["rt-polarity"]["runs"]["0.0001"]["targets"]["fadl_P2_time_to_1e-4"] = 0.4
    fadl, readme = doctables.render_linear_quick(rep, res, "", "", "ALPHA")
    flat, rflat = " ".join(fadl.split()), " ".join(readme.split())
    met = ("rt-polarity 4 vs 9 (0.44, goal ≤ 1/2); synth-tall 3 vs 9 (0.33, goal ≤ 1/3)")
    assert f"**Met**: {met}. **Not met**: synth 4 vs 6 (0.67, goal ≤ 1/2)." in flat
    assert f"The goal is **met** on {met} and **not met** on synth 4 vs 6" in rflat
    # synth-tall: first outer iteration at 8.0e-05, one more makes 3 + 2 = 5 (5/10 = 0.5)
    assert "landing at 8.0e-05, just below 1e-4: one more iteration would make it 5 (0.5)" \
        in flat
    # the wide sets: L-BFGS 9 - 1 and 6 - 1 iterations; FADL's first iteration gaps; P = 1
    assert "L-BFGS needs only 5–8 iterations" in flat
    assert "the first outer iteration ends at 1.5e-03 to 1.5e-03" in flat
    assert "FADL gets there in 2 outer iterations" in flat
    # the shape table's ratios: synth 4/6 the highest, synth-tall 3/10 the lowest
    assert "from 0.67 (synth, 9,000 rows per rank) to 0.3 (synth-tall, 18,000 rows per rank)" \
        in flat
    assert "slower than L-BFGS to 1e-4 on: synth; slower than scikit-learn's best on: " \
           "rt-polarity, synth; ALPHApsgd-mix stalls at gaps of 1e-02 to 1e-02" in flat


def test_linear_quick_claims_fail_on_altered_input():
    """Every check of render_linear_quick fails where its claim is false."""
    def fails(alter, match):
        rep, res = linear_quick_inputs()
        alter(res["datasets"], res["shape"])
        with pytest.raises(doctables.Error, match=match):
            doctables.render_linear_quick(rep, res, "", "", "ALPHA")

    def tg(D, dn):
        return D[dn]["runs"]["0.0001"]["targets"]

    def meth(D, dn, m):
        return D[dn]["runs"]["0.0001"]["methods"][m]
    # as many d-vector Allreduces, or as many collectives, as L-BFGS is not fewer
    fails(lambda D, S: tg(D, "synth").update({"lbfgs_P2_allreduces_to_1e-4": 4}),
          "fewer d-vector Allreduces than L-BFGS on synth")
    fails(lambda D, S: tg(D, "synth").update({"lbfgs_P2_collectives_to_1e-4": 6}),
          "fewer collectives than L-BFGS on synth")
    # synth-tall's first outer iteration above 1e-4
    fails(lambda D, S: S[2].update(fadl_gap_after_1=2e-4), "synth-tall's first outer")
    # the start: 750 rows per rank < 1,024 features but started from zero; a wide set from zero
    fails(lambda D, S: D["synth-tall"].update(n=1500), "mixing round")
    fails(lambda D, S: meth(D, "synth", "fadl P=2").update(start="zero"), "mixing round")
    # an even count from w = 0
    fails(lambda D, S: meth(D, "synth-tall", "fadl P=2")["to_gap"]["0.0001"].__setitem__(1, 4),
          "counts even after the mixing start")


def alpha_inputs(late, ratios):
    """A bench linear --alpha-sweep output: α = 0.2 and 2 ms, FADL 0.1 s, L-BFGS 0.2 s and
    DASVRDA 0.5 s at 0.2 ms, `late` = their times at 2 ms; the projection's L-BFGS/FADL
    ratios `ratios` at P = 64, 1024."""
    sweep = {}
    for a, times, calls in (("0.0002", (0.1, 0.2, 0.5), (32, 47, 339)),
                            ("0.002", late, (33, 48, 340))):
        for m, t, c in zip(("fadl", "lbfgs", "dasvrda"), times, calls):
            sweep[f"{a}/{m}"] = {"time": t, "calls": c,
                                 "communication": "sparse" if m == "dasvrda" else ""}
    res = {"sweep": sweep, "projection_model": "MODEL", "load_before": [1.2],
           "load_after": [1.7], "rate": "1gbit", "l2": 1e-4}
    proj = "\n".join(f"| rt-polarity l2=0.0001 | 1e-05 | {P} | 1 | 0.1 | 1 | 0.1 | {r:.2f} |"
                     for P, r in zip((64, 1024), ratios))
    rep = ("# r\n\n| α set | α measured | FADL | L-BFGS (cached line search) | DASVRDA |\n"
           "|---|---|---|---|---|\n| 0.2 ms | 0.28 ms | SWEEP0 |\n| 2 ms | 2.08 ms | SWEEP1 |\n\n"
           "| data | α (s) | P | FADL s | FADL comm s | L-BFGS s | L-BFGS comm s | L-BFGS/FADL |\n"
           "|---|---|---|---|---|---|---|---|\n" + proj + "\n\n"
           "| α set | FADL measured s | FADL α–β s | L-BFGS measured s | L-BFGS α–β s | "
           "FADL per-call s | L-BFGS per-call s |\n|---|---|---|---|---|---|---|\n"
           "| 0.2 ms | 0.0755 | 0.0689 | 0.119 | 0.124 | 0.0706 | 0.128 |\n"
           "| 2 ms | 0.152 | 0.123 | 0.264 | 0.239 | 0.138 | 0.279 |\n")
    return rep, res


def test_alpha_paragraph_by_hand():
    """README's latency-sweep paragraph and docs/fadl.md's sentence, worked by hand: each α's
    times and L-BFGS/FADL, what the latency adds from the first α to the last (with the first
    α's collectives), the paper's-regime clause only where it adds least to FADL, the
    projection's ratio range and who is ahead, the P = 2 check's cells in their columns."""
    readme, fadl = doctables.render_alpha(*alpha_inputs((0.15, 0.45, 3.0), (1.24, 1.99)))
    flat, fflat = " ".join(readme.split()), " ".join(fadl.split())
    measured = ("at α = 0.2 ms FADL 0.1 s, L-BFGS 0.2 s (×2.00 FADL's), DASVRDA 0.5 s; at α = "
                "2 ms FADL 0.15 s, L-BFGS 0.45 s (×3.00 FADL's), DASVRDA 3 s. From α = 0.2 to "
                "2 ms the latency adds 0.05 s to FADL's time (32 collectives), 0.25 s to "
                "L-BFGS's (47) and 2.5 s to DASVRDA's (339: one per inner step): FADL's fewer "
                "rounds pay least, the paper's regime.")
    assert "Measured: " + measured in flat and measured in fflat
    assert "--alpha-sweep 0.0002,0.002`" in flat and "load 1.2 / 1.7" in flat
    assert "DASVRDA with its default inner exchange, sparse)" in flat
    assert "projects to P = 64..1024 with a stated α–β model (MODEL): there the ratio of " \
           "L-BFGS's time to FADL's ranges from 1.24 to 1.99 (FADL ahead in every projected " \
           "case)." in flat
    assert "L-BFGS/FADL time ratio 1.24 to 1.99" in fflat
    assert "α = 0.2 ms: FADL 0.0689 / 0.0706 / 0.0755, L-BFGS 0.124 / 0.128 / 0.119; α = 2 ms: " \
           "FADL 0.123 / 0.138 / 0.152, L-BFGS 0.239 / 0.279 / 0.264." in flat
    assert "| 0.2 ms | 0.28 ms | SWEEP0 |" in readme
    # the latency adds as much to FADL as to L-BFGS (1 s each, exactly): no paper's-regime
    # clause
    readme, _ = doctables.render_alpha(*alpha_inputs((1.1, 1.2, 3.0), (0.5, 0.9)))
    flat = " ".join(readme.split())
    assert "1 s to FADL's time (32 collectives), 1 s to L-BFGS's (47) and 2.5 s to " \
           "DASVRDA's (339: one per inner step). The report" in flat
    assert "ranges from 0.50 to 0.90 (L-BFGS ahead in every projected case)" in flat
    readme, _ = doctables.render_alpha(*alpha_inputs((1.1, 1.2, 3.0), (0.9, 1.1)))
    assert "ranges from 0.90 to 1.10 (below 1: L-BFGS ahead)" in " ".join(readme.split())


# ---------------------------------------------------------------- elasticnet claims

def en_cell(passes=None, spent=400.0, time=None, last_time=1.0):
    return {"passes": passes, "spent": spent, "time": time, "last_time": last_time,
            "gap": 1e-3}


def test_elasticnet_fewer_and_faster_by_hand():
    """The two counted claims: DASVRDA's passes to 1e-6 below both ProxSVRG's and Katyusha's
    (a tie is no win; one not reached counts as more once it spent at least DASVRDA's passes,
    else undecided), and DASVRDA P = 2's time ≤ SAGA's (a tie is a win; SAGA not reached: its
    last fit's time bounds it from below)."""
    def fw(d, p, k):
        return doctables.fewer({"d1": en_cell(d), "p": p, "k": k})
    assert fw(10, en_cell(12), en_cell(15)) == "yes"
    assert fw(10, en_cell(10), en_cell(15)) == "no"                   # a tie
    assert fw(10, en_cell(15), en_cell(9)) == "no"
    assert fw(10, en_cell(None, spent=10), en_cell(12)) == "yes"      # spent 10, not there
    assert fw(10, en_cell(12), en_cell(None, spent=8)) == "undecided"  # stopped short of 10
    assert fw(None, en_cell(None), en_cell(None)) == "undecided"
    assert fw(None, en_cell(None), en_cell(30)) == "no"

    def fs(t, s):
        return doctables.faster({"d2": en_cell(time=t), "s": s})
    assert fs(1.0, en_cell(16, time=1.0)) == "yes"                    # a tie
    assert fs(1.5, en_cell(16, time=1.0)) == "no"
    assert fs(1.0, en_cell(None, last_time=1.0)) == "yes"
    assert fs(2.0, en_cell(None, last_time=1.0)) == "undecided"
    assert fs(None, en_cell(16, time=1.0)) == "no"
    assert fs(None, en_cell(None)) == "undecided"


def en_results():
    """Three settings, passes to a certified 1e-6 (None: not reached after 400) of DASVRDA
    P = 1, P = 2, ProxSVRG, Katyusha, SAGA: a wins on passes, b ties ProxSVRG, c is
    reached by none of them at P = 1 (undecided); DASVRDA P = 2 within SAGA's time on a only."""
    def curve(p, t):
        if p is None:
            return [{"time": t, "passes": 400.0, "objective": 1.0 + 1e-3}]
        return [{"time": t / 2, "passes": p / 2, "objective": 1.1},
                {"time": t, "passes": p, "objective": 1.0 + 5e-7}]
    settings = []
    for name, d1, d2, p, k, s in (("a", 10, (10, 0.5), 12, 15, (16, 1.0)),
                                  ("b", 10, (10, 2.0), 10, 30, (16, 1.0)),
                                  ("c", None, (20, 3.0), None, None, (None, 1.0))):
        runs = {"dasvrda ×1 P=1": {"curve": curve(d1, 1.0)},
                "dasvrda ×1 P=2": {"curve": curve(*d2), "communication": "sparse"},
                "prox-svrg ×1 P=1": {"curve": curve(p, 1.0)},
                "katyusha ×1 P=1": {"curve": curve(k, 1.0)},
                "sklearn saga": {"curve": curve(*s)}}
        settings.append({"dataset": name, "l1": 0.0, "l2": 1e-6, "f_lower": 1.0, "runs": runs,
                         "certificate_width_rel": 1e-12,
                         "eta_scale": {"dasvrda": 1.0, "prox-svrg": 1.0, "katyusha": 1.0}})
    res = {"settings": settings, "stages": 200, "saga_epochs": 512, "load": [1.0],
           "load_after": [2.0], "eta_scales": [1.0, 4.0]}
    rep = "# r\n\n| data | (l1, l2) | DASVRDA P=1 | x |\n|---|---|---|---|\n| SUMMARY |\n"
    return rep, res


def test_elasticnet_quick_reading_counts_reached_and_fewest():
    from mpitrain.bench.elasticnet import _first
    rep, res = en_results()
    text = " ".join(doctables.render_elasticnet_quick(rep, res, "CMD", _first).split())
    assert "Reading: with the defaults DASVRDA reaches a certified 1e-6 in 2 of 3 settings, " \
           "ProxSVRG in 2, Katyusha in 2, SAGA in 2; DASVRDA needs the fewest passes of the " \
           "three variance-reduced methods in 1 of 3 (a (0, 1e-06))." in text
    assert "Load average 1.0–2.0" in text and "| SUMMARY |" in text


def test_elasticnet_tuned_claims_count_settings_by_hand():
    from mpitrain.bench.elasticnet import _first
    rep, res = en_results()
    readme, doc, _ = doctables.render_elasticnet_tuned(rep, res, "CMD", _first)
    flat = " ".join(readme.split())
    assert "**Fewer passes to a certified 1e-6 than ProxSVRG and Katyusha: 1 of 3 settings** " \
           "(a (0, 1e-06)); not in b (0, 1e-06); c (0, 1e-06) (b (0, 1e-06): DASVRDA 10 " \
           "passes (a tie with ProxSVRG), ProxSVRG 10, Katyusha 30; c (0, 1e-06): DASVRDA not " \
           "reached, ProxSVRG not reached (gap 1.0e-03 after 400), Katyusha not reached (gap " \
           "1.0e-03 after 400))." in flat
    assert "DASVRDA reaches 1e-6 in 2 of 3 settings, ProxSVRG in 2, Katyusha in 2, SAGA in 2 " \
           "(within 512 epochs)." in flat
    assert "**Time to 1e-6 at P = 2 ≤ SAGA's: 1 of 3** (not in: b (0, 1e-06): DASVRDA P = 2 " \
           "2.00 s, SAGA 1.00 s (16 epochs); c (0, 1e-06): DASVRDA P = 2 3.00 s, SAGA not " \
           "reached in 400 epochs (gap 1.0e-03, 1.00 s))." in flat


def test_elasticnet_tuned_names_the_grid_run_and_each_refinement_level():
    """The Tuning sentence names the grid the results ran (not a typed one) and the levels
    that ran: none, the ×½/×2 level (refine 1), and the ×1/√2, ×√2 one too (refine 2)."""
    from mpitrain.bench.elasticnet import _first
    rep, res = en_results()
    texts = [" ".join(doctables.render_elasticnet_tuned(rep, dict(res, refine=r), "CMD",
                                                        _first)[0].split()) for r in (0, 1, 2)]
    grid = "the method's default step over the grid 1, 4, grown ×4 past an end that wins"
    second = ", then the winner's ×½ and ×2 (a second level, run and judged alike)"
    third = ", then the new winner's ×1/√2 and ×√2 (a third level, alike)"
    assert grid + "; kept:" in texts[0]
    assert grid + second + "; kept:" in texts[1]
    assert grid + second + third + "; kept:" in texts[2]
