"""SLP's streamed codes (issue 14 part 2): the layer-1 group publishes its codes after each
round instead of the upper groups regenerating them. Asserted: float32 streaming (all rows,
or the share that balances the cost model) gives the bits of regeneration; float16 codes are
the rounded regenerated codes, in the right rows; a run whose cached codes are dropped (as
after a resume) regenerates them and continues bit for bit; the cost model's share; and the
SLP benchmark's protocol (validation rows of the training data, never test rows); codes
travel in messages below MPI's 2³¹-byte count limit, cut so that the bits do not change."""
import json
import os

import h5py
import numpy as np
import pytest

from mpitrain import comm
from mpitrain.algorithms import ae_slp
from mpitrain.algorithms.ae_slp import (byte_pieces, group_cost, layout, stream_costs,
                                        stream_share)
from test_autoencoders import run_inproc

# 64-48-40-16 on digits: at P = 2 the layout is [1] | [2, 3] and the balancing share of
# the layer-1 group is strictly between 0 and 1 (0.4), so "split" streams part of the rows
MODEL = {"layers": [48, 40, 16]}
SOLVER = {"epochs": 3, "eval_every": 0}


def test_stream_share_balances_the_cost_model():
    dims = [784, 1000, 500, 250, 30]
    two = layout(dims, 2)
    assert stream_costs(dims, two, share=0.0) == [group_cost(dims, g[2]) for g in two]
    s = stream_share(dims, two)
    # rank 0: 5·c1 + s·c1, rank 1: 5(c2+c3+c4) + (1−s)c1 + c2 + c3, c = 784k, 500k, ...
    assert 0.40 <= s <= 0.43
    c0, c1 = stream_costs(dims, two, share=s)
    assert abs(c0 - c1) <= 0.01 * 784000 + 1 and max(c0, c1) < max(stream_costs(dims, two))
    # one rank per layer: layer 1 is the bottleneck already, publishing would add to it
    assert stream_share(dims, layout(dims, 4)) == 0.0
    assert stream_share([64, 48, 40, 16], layout([64, 48, 40, 16], 2)) == 0.4
    assert stream_share(dims, layout(dims, 1)) == 0.0


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_streamed_codes_equal_regenerated_bit_for_bit(world, digits_h5):
    """Same weights → same codes: float32 streaming of all rows (stream) or of the balancing
    share (split) trains exactly what regeneration trains, at P = 2 ([1] | [2, 3]) and
    P = 3 (one rank per layer), and the codes really travelled."""
    runs = {c: run_inproc(world, "slp", digits_h5, MODEL, dict(SOLVER, codes=c))[0]
            for c in ("regenerate", "stream", "split")}
    ref = runs["regenerate"]
    for c in ("stream", "split"):
        for n in ref.P:
            np.testing.assert_array_equal(runs[c].P[n], ref.P[n], err_msg=f"{c} {n}")
    assert ref.codes_rows == 0
    n = ref.ctx.train.n
    if ref.gi > 0:  # receivers: layer 1 trains in rounds 0..2 and publishes after round
        # r to the groups with a layer active in round r + 1 (layer k starts in round k − 1)
        k = min(ref.mine)
        assert runs["stream"].codes_rows == (3 - max(0, k - 2)) * n
        if world.size == 2:
            assert runs["split"].share == 0.4
            assert runs["split"].codes_rows == 3 * 600
    else:
        assert runs["stream"].codes_rows == 0


@pytest.mark.timeout(10)
def test_byte_pieces_cut_a_message_below_the_count_limit(monkeypatch):
    """The pieces are views of the array's bytes, in order, none longer than CHUNK_BYTES
    (the default keeps a count below 2³¹), and writing them fills the array."""
    assert comm.CHUNK_BYTES < 2**31
    a = np.arange(1, 7 * 3 + 1, dtype=np.float32).reshape(7, 3)
    assert [len(b) for b in byte_pieces(a)] == [84]
    monkeypatch.setattr(comm, "CHUNK_BYTES", 10)
    pieces = byte_pieces(a[2:6])  # 48 bytes, cut inside values
    assert [len(b) for b in pieces] == [10, 10, 10, 10, 8]
    assert b"".join(b.tobytes() for b in pieces) == a[2:6].tobytes()
    for b in pieces:
        b[...] = 0
    assert not a[2:6].any() and a[:2].all() and a[6].all()


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_codes_in_pieces_give_the_same_bits(world, digits_h5, monkeypatch):
    """With a message limit of 1000 bytes (not a whole number of 48-float32 rows) the
    streamed codes travel in many pieces per transfer, all of them, and train exactly what
    regeneration trains under the same limit."""
    sizes = []

    def spy(arr):
        out = byte_pieces(arr)
        sizes.append([len(b) for b in out])
        return out

    monkeypatch.setattr(comm, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(ae_slp, "byte_pieces", spy)
    ref, _ = run_inproc(world, "slp", digits_h5, MODEL, dict(SOLVER, codes="regenerate"))
    assert not sizes
    alg, _ = run_inproc(world, "slp", digits_h5, MODEL, dict(SOLVER, codes="stream"))
    for n in ref.P:
        np.testing.assert_array_equal(alg.P[n], ref.P[n], err_msg=n)
    if alg.gi == 0 or alg.codes_rows:  # a sender, or a receiver: every transfer was cut
        assert sizes and all(len(s) > 1 and max(s) <= 1000 for s in sizes)
    else:
        assert not sizes
    if alg.gi > 0:  # the pieces cover exactly the received codes
        assert sum(map(sum, sizes)) == alg.codes_rows * MODEL["layers"][0] * 4


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_float16_codes_are_the_rounded_codes_and_survive_a_resume(world, digits_h5):
    """float16 streaming: after a round, a receiver's input h₁ is exactly the float16
    rounding of enc₁(x) with the synchronised weights on the published rows and the float32
    code elsewhere. Dropping every cached code (what a resumed run starts with) and going on
    gives the uninterrupted run's bits."""
    # at P = 3 the balancing share is 0 (layer 1 is the bottleneck): stream every row
    s = dict(SOLVER, codes="split" if world.size == 2 else "stream", code_dtype="float16")
    alg, _ = run_inproc(world, "slp", digits_h5, MODEL, s, steps=2)
    if alg.gi > 0:
        assert alg.fill  # the rows not published are regenerated when the next round starts
        alg._fill()
        X = alg.GX.astype(np.float64)
        h = alg.H[2]
        z = 1 / (1 + np.exp(-(X @ alg.P["W1"].astype(np.float64) + alg.P["b1"])))
        pub = sum(([(u, v)] for _, u, v in alg._published(alg.glo, alg.ghi)), [])
        assert pub and alg.codes_rows > 0
        mask = np.zeros(h.shape[0], bool)
        for u, v in pub:
            mask[u - alg.glo:v - alg.glo] = True
            want = alg._encode(alg.GX, u, v, [1]).astype(np.float16)
            np.testing.assert_array_equal(h[u - alg.glo:v - alg.glo], want.astype(np.float32))
        np.testing.assert_allclose(h[mask], z[mask], atol=1e-3)  # float16 of codes in (0,1)
        if not mask.all():  # the rows regenerated here stay float32
            np.testing.assert_allclose(h[~mask], z[~mask], atol=1e-5)
            assert not np.array_equal(h[~mask], h[~mask].astype(np.float16))
    ref, _ = run_inproc(world, "slp", digits_h5, MODEL, s)
    while not alg.done:
        alg.step()
        if alg.round == 3:
            alg.restored()  # what a resume starts from: no codes, no trainers
    for n in ref.P:
        np.testing.assert_array_equal(alg.P[n], ref.P[n], err_msg=n)
    f32, _ = run_inproc(world, "slp", digits_h5, MODEL, dict(s, code_dtype="float32"))
    if world.size == 2:  # the rounding changes layer 2's training (and only above layer 1)
        assert not np.array_equal(ref.P["W2"], f32.P["W2"])
        np.testing.assert_array_equal(ref.P["W1"], f32.P["W1"])


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_bench_slp_protocol(tmp_path, digits_h5):
    """The fair SLP benchmark on a tiny stack: it evaluates on validation rows of the
    training data (the split file's 'test' group is training rows, no test row is read),
    target = greedy P=1's final error × (1+tol), times without evaluation, every codes
    variant stops at the target, per-rank CPU and phases reported."""
    from mpitrain.bench import slp as bench
    out = str(tmp_path / "b")
    assert bench.main(["--data", digits_h5, "--out", out, "--layers", "16,8", "--epochs",
                       "10", "--eval-rows", "200", "--rows", "1000", "--seeds", "0",
                       "--lr", "0.1", "--batch", "50", "--codes", "regenerate,stream"]) == 0
    with h5py.File(digits_h5, "r") as src, h5py.File(os.path.join(out, "split.h5")) as f:
        np.testing.assert_array_equal(f["train/X"][()], src["train/X"][:1000])
        np.testing.assert_array_equal(f["test/X"][()], src["train/X"][1000:1200])
    res = json.load(open(os.path.join(out, "results.json")))
    r = res["runs"]["0"]
    g1 = r["greedy P=1"]["final"]
    assert r["target"] == pytest.approx(g1 * 1.01)
    assert r["greedy P=1"]["reached"]
    for c in ("regenerate", "stream"):
        s = r[f"slp P=2 {c}"]
        job = open(os.path.join(out, f"slp-s0-{c}.toml")).read()
        assert f'codes = "{c}"' in job and "split.h5" in job
        assert s["steady"] and all(len(x) == 2 and min(x) >= 0 for x in s["steady"])
        assert sum(map(sum, s["steady"])) > 0  # per-rank times are rounded to 0.1 ms
        if s["reached"]:  # it stopped at the first round at or below the target
            assert s["final"] <= r["target"] and s["rec"].get("reached_target") == 1
            rec = s["rec"]
            assert s["t"] == pytest.approx(rec["time"] - rec["t_eval"])
            assert len(rec["rank_cpu"]) == 2 and len(rec["rank_t_wait"]) == 2
    report = open(os.path.join(out, "report.md")).read()
    assert "time to target" in report and "Calibration on the same validation rows" in report
    assert "The cost model against the measured work per round" in report
    recs = [json.loads(x) for x in open(os.path.join(out, "s0-greedy-P1", "metrics.jsonl"))]
    assert sum(1 for x in recs if "recon" in x) == 20  # evaluated every epoch, like SLP
    t, rec = bench.time_to([{"recon_layers": 2, "recon": 5.0, "time": 3.0, "t_eval": 1.0},
                            {"recon_layers": 2, "recon": 4.0, "time": 4.0, "t_eval": 1.5}],
                           2, 4.5)
    assert t == 2.5 and rec["recon"] == 4.0
