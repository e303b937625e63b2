"""Autoencoder training throughput: time per epoch, ours (numpy BLAS + kernels) vs PyTorch CPU.

Same network, batch, dtype (float32), loss (sigmoid cross-entropy, summed over pixels, mean
over the batch), optimizer (SGD lr 0.1, momentum 0.9) and thread count, on MNIST rows: one
784→1000→784 layer, and the full unrolled 784-1000-500-250-30-250-500-1000-784 autoencoder.
Each configuration runs in its own process (thread counts are fixed at start-up): one
warm-up epoch, then the median of R timed epochs. PyTorch is optional (`pip install
torch==2.13.0`); without it only our times are reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from .common import table, write_report

NETS = {"layer": [784, 1000], "deep": [784, 1000, 500, 250, 30]}


def _load(path, rows):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        return np.ascontiguousarray(f["train/X"][:rows], dtype=np.float32)


def _ours(X, dims, batch, epochs):
    import numpy as np
    from ..models import autoencoder as AE
    from .._kernels import ae_fast as K
    Kn = len(dims) - 1
    net = AE.stack_net(Kn, "sigmoid", "xent", False)
    rng = np.random.default_rng(0)
    P = {}
    for k in range(1, Kn + 1):
        P[f"W{k}"] = AE.glorot(rng, dims[k - 1], dims[k], "sigmoid")
        P[f"b{k}"] = np.zeros(dims[k], np.float32)
        P[f"V{k}"] = AE.glorot(rng, dims[k], dims[k - 1], "sigmoid")
        P[f"c{k}"] = np.zeros(dims[k - 1], np.float32)
    names = sorted(P)
    G = {n: np.empty_like(P[n]) for n in names}
    V = {n: np.zeros_like(P[n]) for n in names}
    tset = frozenset(names)
    lr, mu, wd = np.float32(0.1), np.float32(0.9), np.float32(0.0)
    times = []
    for e in range(epochs):
        perm = rng.permutation(X.shape[0])
        t0 = time.perf_counter()
        for s in range(0, X.shape[0], batch):
            xb = X[perm[s:s + batch]]
            net.loss_grad(P, xb, xb, G, tset, 1.0 / xb.shape[0])
            for n in names:
                K.momentum_step(P[n].reshape(-1), V[n].reshape(-1), G[n].reshape(-1), lr, mu,
                                wd)
        times.append(time.perf_counter() - t0)
    return times


def _torch(X, dims, batch, epochs, threads):
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for k in range(1, len(dims)):
        layers += [torch.nn.Linear(dims[k - 1], dims[k]), torch.nn.Sigmoid()]
    for k in range(len(dims) - 1, 0, -1):
        layers += [torch.nn.Linear(dims[k], dims[k - 1]), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers[:-1])  # logits out; the loss applies the sigmoid
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="sum")
    Xt = torch.from_numpy(X)
    rng = np.random.default_rng(0)
    times = []
    for e in range(epochs):
        perm = torch.from_numpy(rng.permutation(X.shape[0]))
        t0 = time.perf_counter()
        for s in range(0, X.shape[0], batch):
            xb = Xt[perm[s:s + batch]]
            opt.zero_grad(set_to_none=False)
            loss = lossf(model(xb), xb) / xb.shape[0]
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def worker(spec):
    impl, net, threads, data, rows, batch, epochs = spec.split(",")
    X = _load(data, int(rows))
    dims = NETS[net]
    if impl == "ours":
        from .._kernels import omp
        omp.set_num_threads(int(threads))
        t = _ours(X, dims, int(batch), int(epochs))
    else:
        t = _torch(X, dims, int(batch), int(epochs), int(threads))
    print(json.dumps({"times": t}))


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench ae-throughput", description=__doc__)
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--out", default="bench-out/ae-throughput")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="2000 rows, 2 timed epochs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker)
        return 0
    if a.quick:
        a.rows, a.repeats = min(a.rows, 2000), 2
    try:
        import importlib.util
        have_torch = importlib.util.find_spec("torch") is not None
    except ImportError:
        have_torch = False
    results, rows = {}, []
    for net in NETS:
        for th in [int(t) for t in a.threads.split(",")]:
            got = {}
            for impl in ["ours"] + (["torch"] if have_torch else []):
                env = dict(os.environ, OMP_NUM_THREADS=str(th), OPENBLAS_NUM_THREADS=str(th),
                           MKL_NUM_THREADS=str(th), OMP_WAIT_POLICY="PASSIVE")
                spec = ",".join(map(str, [impl, net, th, a.data, a.rows, a.batch,
                                          a.repeats + 1]))
                res = subprocess.run([sys.executable, "-m", "mpitrain", "bench",
                                      "ae-throughput", "--worker", spec], env=env,
                                     capture_output=True, text=True)
                if res.returncode:
                    sys.stderr.write(res.stderr[-2000:])
                    return 1
                t = json.loads(res.stdout.strip().splitlines()[-1])["times"][1:]
                got[impl] = statistics.median(t)
            results[f"{net}-t{th}"] = got
            ratio = got["ours"] / got["torch"] if "torch" in got else float("nan")
            rows.append([net, th, got["ours"], got.get("torch", float("nan")), ratio])
    load = os.getloadavg()
    secs = [f"{a.rows} MNIST rows per epoch, batch {a.batch}, float32, median of {a.repeats} "
            f"epochs after one warm-up; layer = 784→1000→784, deep = 784-1000-500-250-30 "
            f"unrolled (8 weight matrices). Both run with OMP_WAIT_POLICY=PASSIVE: with the "
            "default spinning OpenMP threads our kernels' threads and OpenBLAS's threads "
            "fight over the cores (up to 10x slower on a loaded 2-core box). "
            f"Load average at the end: {load}.",
            table(["net", "threads", "ours s/epoch", "PyTorch s/epoch", "ours / PyTorch"],
                  rows)]
    if not have_torch:
        secs.append("PyTorch is not installed: `pip install torch==2.13.0` for the comparison.")
    print(write_report(a.out, "Autoencoder throughput: ours vs PyTorch CPU", secs,
                       {"results": results, "rows": a.rows, "batch": a.batch, "load": load}))
    print(secs[1])
    return 0
