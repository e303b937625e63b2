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
    assert "target 3×:\nreached)" in doctables.render_kernels(kernels_results(3.0))


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
