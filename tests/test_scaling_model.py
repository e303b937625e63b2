"""The runtime model of `mpitrain bench scaling`: Rabenseifner's Allreduce, the ring, and the
fit of the compute part, against values worked out by hand."""
import math

import pytest

from mpitrain.bench import scaling


def test_allreduce_model_by_hand():
    # 3 Allreduces of 1000 bytes in all at P = 8: 3·(2·3·α + 2·(1000/3)·(7/8)·β) + a + b/8
    a, b, alpha, beta = 0.5, 4.0, 1e-3, 1e-8
    got = scaling._proj_allreduce(8, 3, 1000, a, b, alpha, beta)
    want = a + b / 8 + 3 * (2 * 3 * alpha + 2 * (1000 / 3) * (7 / 8) * beta)
    assert got == pytest.approx(want, rel=1e-12)
    # one rank: no communication at all
    assert scaling._proj_allreduce(1, 3, 1000, a, b, alpha, beta) == pytest.approx(a + b)


def test_ring_model_messages_grow_with_p():
    t16 = scaling._proj_ring(16, 4, 100, 0.0, 1.0, 1e-3, 0.0)
    t32 = scaling._proj_ring(32, 4, 100, 0.0, 1.0, 1e-3, 0.0)
    assert t16 == pytest.approx(1 / 16 + 4 * 8 * 1e-3)
    assert t32 - 1 / 32 == pytest.approx(2 * (t16 - 1 / 16))


def test_compute_fit_from_two_points():
    res = {"methods": {"m": {"shm": {1: {"t_compute": 3.0, "calls": 1, "bytes": 8},
                                     2: {"t_compute": 2.0, "calls": 5, "bytes": 80}}}}}
    a, b, calls, nbytes = scaling._fit(res, "m")
    assert (a, b, calls, nbytes) == (1.0, 2.0, 5, 80)
    assert math.isclose(a + b / 2, 2.0)
