"""LIBSVM parsing: the kernel against scikit-learn's loader, the byte-range split against a
serial parse for P = 1..4, errors with line numbers, and convert to HDF5."""
import os

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain._kernels.libsvm import ParseError, parse
from mpitrain.data import _align

TEXT = (b"# a comment line\n"
        b"+1 3:0.5 1:1.25 7:2e-1  # trailing comment\r\n"
        b"\n"
        b"-1 qid:4 2:1 4:-3.5\n"
        b"   \t\n"
        b"1 1:1e3\n"
        b"-1\n"
        b"0 5:7 6:8 2:9")  # last line without newline, unsorted indices


def _csr(y, indptr, indices, data, d):
    m = sp.csr_matrix((data, indices, indptr), shape=(len(y), d))
    m.sort_indices()
    return m


def test_parse_matches_sklearn(tmp_path):
    from sklearn.datasets import load_svmlight_file
    path = tmp_path / "a.svm"
    sorted_text = TEXT.replace(b"3:0.5 1:1.25 7:2e-1", b"1:1.25 3:0.5 7:2e-1").replace(
        b"5:7 6:8 2:9", b"2:9 5:7 6:8")  # scikit-learn needs sorted indices; we do not
    path.write_bytes(sorted_text)
    y, indptr, indices, data, maxi, lines = parse(TEXT, False)
    Xs, ys = load_svmlight_file(str(path), zero_based=False, n_features=maxi + 1)
    np.testing.assert_array_equal(y, ys)
    assert (abs(_csr(y, indptr, indices, data, maxi + 1) - Xs)).max() == 0
    assert lines == TEXT.count(b"\n") + 1 and maxi == 6 and len(y) == 5


@pytest.mark.parametrize("P", [1, 2, 3, 4])
def test_byte_ranges_equal_serial_parse(tmp_path, P):
    rng = np.random.default_rng(P)
    lines = []
    for i in range(57):
        idx = rng.choice(40, size=rng.integers(0, 6), replace=False) + 1
        toks = " ".join(f"{j}:{rng.normal():.6g}" for j in idx)
        end = "\r\n" if i % 5 == 0 else "\n"
        lines.append(f"{rng.choice([-1, 1])} {toks}{' # c' if i % 7 == 0 else ''}{end}")
        if i % 11 == 0:
            lines.append("\n")
    text = "".join(lines).rstrip("\n").encode()
    path = tmp_path / "b.svm"
    path.write_bytes(text)
    serial = parse(text, False)
    ys, parts = [], []
    with open(path, "rb") as fh:
        for rank in range(P):
            a = _align(fh, len(text), len(text) * rank // P)
            b = _align(fh, len(text), len(text) * (rank + 1) // P)
            y, indptr, indices, data, _, _ = parse(text[a:b], False)
            ys.append(y)
            parts.append(_csr(y, indptr, indices, data, 40))
    np.testing.assert_array_equal(np.concatenate(ys), serial[0])
    whole = _csr(*serial[:4], 40)
    assert (abs(sp.vstack(parts) - whole)).max() == 0


@pytest.mark.parametrize("text, reason", [
    (b"1 1:2\n1 3:x\n", "malformed token"),
    (b"1 1:2\nabc 1:1\n", "malformed label"),
    (b"1 1:nan\n", "not finite"),
    (b"1 0:1\n", "index 0"),
    (b"1 1:2 garbage\n", "malformed token"),
    (b"inf 1:2\n", "label is not finite"),
])
def test_parse_errors_name_the_line(text, reason):
    with pytest.raises(ParseError) as e:
        parse(text, False)
    assert reason in e.value.reason
    assert e.value.line == text.rstrip(b"\n").count(b"\n")


def test_convert_streams_to_h5(tmp_path):
    import h5py
    from mpitrain.convert import libsvm_to_h5
    from mpitrain.errors import DataError
    src = tmp_path / "c.svm"
    src.write_bytes(TEXT)
    info = libsvm_to_h5(str(src), str(tmp_path / "c.h5"), block_bytes=16)  # many tiny blocks
    y, indptr, indices, data, maxi, _ = parse(TEXT, False)
    with h5py.File(tmp_path / "c.h5") as f:
        g = f["train"]
        got = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]),
                            shape=tuple(g.attrs["shape"]))
        np.testing.assert_array_equal(g["y"][()], y)
    assert info == {"n": 5, "d": 7, "nnz": len(indices)}
    assert got.has_sorted_indices and (abs(got - _csr(y, indptr, indices, data, 7))).max() == 0
    bad = tmp_path / "bad.svm"
    bad.write_bytes(b"1 1:1\n" * 10 + b"1 2:oops\n")
    with pytest.raises(DataError, match="line 11"):
        libsvm_to_h5(str(bad), str(tmp_path / "bad.h5"), block_bytes=16)
    assert not os.path.exists(tmp_path / "bad.h5")
