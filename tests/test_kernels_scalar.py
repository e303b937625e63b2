"""The linear kernels' scalar fallback (kernels/linear.pyx built without __SSE2__, as on a
host without SSE2) gives the bits of the SSE2 hot loops this build uses: the kernel module
is built again into a temporary folder with -U__SSE2__, and both run on the same data."""
import importlib.util
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mpitrain._kernels import linear as K
from mpitrain.data import Shard
from mpitrain.models import linear as linear_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def scalar_kernels(tmp_path_factory):
    """mpitrain._kernels.linear built from this tree's kernels/linear.pyx with -U__SSE2__."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    tmp = tmp_path_factory.mktemp("scalar")
    os.makedirs(tmp / "kernels")
    os.makedirs(tmp / "mpitrain" / "_kernels")  # where --inplace puts the module
    shutil.copy(os.path.join(ROOT, "setup.py"), tmp)
    for name in ("linear.pyx", "losses.pxd"):
        shutil.copy(os.path.join(ROOT, "kernels", name), tmp / "kernels")
    env = dict(os.environ, MPITRAIN_KERNELS="linear",
               CFLAGS=os.environ.get("CFLAGS", "") + " -U__SSE2__")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tmp,
                   env=env, check=True, capture_output=True)
    (path,) = (tmp / "mpitrain" / "_kernels").glob("linear*")
    spec = importlib.util.spec_from_file_location("linear", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scalar_build_has_no_sse2_path(scalar_kernels):
    """The fallback is what was built: no packed float32 → float64 conversion in it (the
    SSE2 path's cvtps2pd), while this build has one on x86-64."""
    if platform.machine() not in ("x86_64", "AMD64") or shutil.which("objdump") is None:
        pytest.skip("x86-64 with objdump only")

    def count(path):
        out = subprocess.run(["objdump", "-d", path], capture_output=True, text=True).stdout
        return out.count("cvtps2pd")
    assert count(scalar_kernels.__file__) == 0 and count(K.__file__) > 0


@pytest.mark.parametrize("values", [np.float64, np.float32])
def test_hot_loops_scalar_fallback_same_bits(scalar_kernels, values):
    """Rows of every length 0..13 (each remainder mod 4, padded or not), 16-bit indices with
    repeats, values and w over many orders of magnitude: the margins (mpt_dot) and the panel
    partials (mpt_scatter) of both builds are equal bit for bit."""
    rng = np.random.default_rng(5)
    lens = np.tile(np.arange(14), 40)
    ptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
    idx = rng.integers(0, 3000, ptr[-1]).astype(np.uint16)
    val = (rng.normal(size=ptr[-1]) * np.exp(4 * rng.normal(size=ptr[-1]))).astype(values)
    w = rng.normal(size=3000) * np.exp(4 * rng.normal(size=3000))
    coef = rng.normal(size=lens.size) * np.exp(4 * rng.normal(size=lens.size))
    panels = np.array([0, 200, lens.size], dtype=np.int64)
    res = []
    for mod in (K, scalar_kernels):
        m = np.empty(lens.size)
        part = np.empty((2, 3000))
        mod.csr_margins(ptr, idx, val, w, m)
        mod.split_scatter(ptr, idx, val, panels, part, coef)
        res.append((m, part))
    (m1, p1), (m2, p2) = res
    assert np.array_equal(m1, m2) and np.array_equal(p1, p2)
    assert np.unique(m1).size > 400 and np.isfinite(m1).all()


@pytest.mark.parametrize("values", ["float64", "float32"])
@pytest.mark.parametrize("direct", [0, 1 << 17])
def test_split_layout_scalar_fallback_same_bits(scalar_kernels, monkeypatch, values, direct):
    """A whole SplitCSR loss + gradient (hot block padded, tail by column, several panels)
    with either build: the same margins, derivatives, loss and gradient, bit for bit."""
    monkeypatch.setattr(linear_model, "HOT_COLUMNS", 40)
    monkeypatch.setattr(linear_model, "PANEL_NNZ", 3000)
    monkeypatch.setattr(linear_model, "DIRECT_COLUMNS", direct)
    rng = np.random.default_rng(3)
    n, d, per_row = 3000, 700, 11
    p = 1.0 / np.arange(1, d + 1) ** 1.1
    cols = rng.permutation(d)[np.minimum(np.searchsorted(np.cumsum(p / p.sum()),
                                                         rng.random(n * per_row)), d - 1)]
    X = sp.csr_matrix((rng.normal(size=n * per_row), (np.repeat(np.arange(n), per_row), cols)),
                      shape=(n, d))
    X.sum_duplicates()
    X.sort_indices()
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    shard = Shard(X, y, 0, n, n, d, "skewed")
    w = 3.0 * rng.normal(size=d)
    res = []
    for mod in (K, scalar_kernels):
        monkeypatch.setattr(linear_model, "K", mod)
        lm = linear_model.LinearShard(shard, "logistic", values=values)
        assert lm.layout.hot.size == 40 and lm.layout.tcol.size > 0
        buf = np.empty(d + 1)
        m = lm.loss_grad_sums(w, buf)
        res.append((m.copy(), lm._coef.copy(), buf, lm.margins(w).copy()))
    for a, b in zip(*res):
        assert np.array_equal(a, b)
